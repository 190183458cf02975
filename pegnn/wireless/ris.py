r"""RIS-aided multi-cell (hybrid) precoding: problem P-R of paper 002, Sec. IV-C.

System. ``M`` BSs with ``N_B`` antennas (``N_RF`` RF chains each) serve ``K``
single-antenna UEs per cell; one RIS with ``N_RE`` elements reflects for all of
them. UEs are numbered globally ``u = m K + k`` (UE ``k`` of cell ``m``), and the
data stream ``s = m K + k`` is sent by BS ``m`` to UE ``u = s``. Following Guo,
Liang, Chen, Larsson (IEEE TWC 2020) and ``papers/README.md``, the effective
channel from BS ``m`` to UE ``u`` is the row vector

.. math::
    \mathbf{h}_{m,u}^H = \mathbf{h}_{d,m,u}^H
        + \boldsymbol{\theta}^H \mathrm{diag}(\mathbf{h}_{r,u}^H)\, \mathbf{G}_m ,
    \qquad |\theta_n| = 1,

so the physical reflection matrix is :math:`\mathrm{diag}(\boldsymbol\theta)^*`
(this is Guo et al.'s variable; a policy that outputs ``theta`` is scored with
the same convention, so the choice never matters for learning). The precoder of
BS ``m`` is :math:`\mathbf{W}_m = \mathbf{W}_{RF,m}\mathbf{W}_{BB,m}` (hybrid) or
given directly (fully digital), with columns :math:`\mathbf{w}_{m,k}`, and

.. math::
    \gamma_u = \frac{|\mathbf{h}_{m_u,u}^H \mathbf{w}_u|^2}
                    {\sum_{s \ne u} |\mathbf{h}_{m_s,u}^H \mathbf{w}_s|^2 + \sigma^2},
    \qquad \mathrm{SE} = \sum_u \omega_u \log_2(1 + \gamma_u),

with inter-cell interference from every other BS included. The power constraint is
per BS, :math:`\|\mathbf{W}_m\|_F^2 \le P_{\max}` (one constraint in the single-cell
case of the paper's Sec. V).

Tensor layout (*Shapes*; ``U = M K`` UEs; complex64 or complex128). The tensors hold
the *rows* of the formula, already conjugated (as :mod:`pegnn.wireless.ris_channels`
stores them), so they apply to signals without a ``.conj()``:

- ``h_d`` ``[B, M, U, N_B]`` — ``h_d[b, m, u]`` is the row :math:`\mathbf{h}_{d,m,u}^H`
  (BS ``m`` → UE ``u``; UE ``u`` receives ``h_d[b, m, u] @ x_m`` directly);
- ``G`` ``[B, M, N_RE, N_B]`` — :math:`\mathbf{G}_m`, BS ``m`` → RIS;
- ``h_r`` ``[B, U, N_RE]`` — ``h_r[b, u]`` is the row :math:`\mathbf{h}_{r,u}^H` (RIS → UE ``u``);
- ``noise_var`` :math:`\sigma^2` and ``P_max`` (W, per BS): floats or tensors ``[B]``.

Single-cell tensors may drop the ``M`` axis (``h_d`` ``[B, K, N_B]``, ``G``
``[B, N_RE, N_B]``; precoders ``[B, N_B, K]``, ``[B, N_RF, K]``, ``[B, N_B, N_RF]``).
Functions take ``channels`` as an object with attributes ``h_d, G, h_r, noise_var,
P_max`` (e.g. :class:`RISTensors`, or the
:class:`pegnn.wireless.ris_channels.RISChannels` of
:func:`~pegnn.wireless.ris_channels.ris_channels`, which uses this layout), a mapping
with those keys, or a tuple ``(h_d, G, h_r[, noise_var[, P_max]])``; missing
``noise_var``/``P_max`` default to 1.
The classical baseline (BCD/FP of Guo et al.) is :func:`pegnn.wireless.ris_bcd.ris_bcd`,
also importable from here.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = [
    "RISTensors", "RISHybrid", "RISDigital", "as_ris_channels",
    "unit_modulus", "precoder_power", "normalize_power", "normalize_hybrid_power",
    "hybrid_precoder", "hybrid_from_digital", "ris_effective_channel", "ris_received",
    "ris_rate", "ris_bcd", "rf_assignment",
]


class RISTensors(NamedTuple):
    """Channels of problem P-R in the canonical layout of this module (see above)."""
    h_d: torch.Tensor
    G: torch.Tensor
    h_r: torch.Tensor
    noise_var: float | torch.Tensor = 1.0
    P_max: float | torch.Tensor = 1.0


class RISHybrid(NamedTuple):
    """A hybrid policy output: ``baseband`` ``[B, M, N_RF, K]``, ``analog``
    ``[B, M, N_B, N_RF]`` (unit modulus), ``theta`` ``[B, N_RE]`` (unit modulus)."""
    baseband: torch.Tensor
    analog: torch.Tensor
    theta: torch.Tensor


class RISDigital(NamedTuple):
    """A fully digital output: precoder ``W`` ``[B, M, N_B, K]`` and ``theta`` ``[B, N_RE]``."""
    W: torch.Tensor
    theta: torch.Tensor


def __getattr__(name):
    # ris_bcd and ris_single_ue live in their own modules (size); import them lazily to
    # avoid an import cycle (they import this module)
    if name == "ris_bcd":
        from .ris_bcd import ris_bcd
        return ris_bcd
    if name in ("ris_single_ue", "RISSingleUE"):
        from .ris_single_ue import RISSingleUE, ris_single_ue   # the package rebinds the module's name
        return {"ris_single_ue": ris_single_ue, "RISSingleUE": RISSingleUE}[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------- inputs
def _get(channels, name):
    if isinstance(channels, dict):
        return channels.get(name)
    return getattr(channels, name, None)


def as_ris_channels(channels, noise_var=None, P_max=None) -> RISTensors:
    """Canonicalise ``channels`` (object, mapping or tuple) to :class:`RISTensors`
    with an explicit cell axis; ``noise_var``/``P_max`` given here override the
    object's. Raises ``ValueError`` on inconsistent shapes or non-finite entries.

    *Shapes*: ``h_d`` ``[B, M, M K, N_B]``, ``G`` ``[B, M, N_RE, N_B]``,
    ``h_r`` ``[B, M K, N_RE]`` (complex), ``noise_var``/``P_max`` float or ``[B]``.
    """
    if isinstance(channels, (tuple, list)) and not hasattr(channels, "_fields"):
        if not 3 <= len(channels) <= 5:
            raise ValueError("channels tuple must be (h_d, G, h_r[, noise_var[, P_max]])")
        names = ("h_d", "G", "h_r", "noise_var", "P_max")
        fields = dict.fromkeys(names) | dict(zip(names, channels))   # the 3- and 4-tuple forms too
    else:
        fields = {k: _get(channels, k) for k in ("h_d", "G", "h_r", "noise_var", "P_max")}
    h_d, G, h_r = fields["h_d"], fields["G"], fields["h_r"]
    if h_d is None or G is None or h_r is None:
        raise ValueError("channels need h_d, G and h_r")
    h_d, G, h_r = (torch.as_tensor(x) for x in (h_d, G, h_r))
    if G.dim() == 3:  # single cell: add the cell axis
        h_d, G = h_d.unsqueeze(1), G.unsqueeze(1)
    if G.dim() != 4 or h_d.dim() != 4 or h_r.dim() != 3:
        raise ValueError(f"bad channel ranks: h_d {tuple(h_d.shape)}, G {tuple(G.shape)}, "
                         f"h_r {tuple(h_r.shape)}")
    B, M, N_RE, N_B = G.shape
    U = h_r.shape[1]
    if h_d.shape != (B, M, U, N_B) or h_r.shape != (B, U, N_RE) or U % M:
        raise ValueError(f"inconsistent shapes: h_d {tuple(h_d.shape)} (want {(B, M, U, N_B)}), "
                         f"G {tuple(G.shape)}, h_r {tuple(h_r.shape)} (want {(B, U, N_RE)})")
    dtype = torch.promote_types(torch.promote_types(h_d.dtype, G.dtype), h_r.dtype)
    if not dtype.is_complex:
        dtype = torch.complex64 if dtype != torch.float64 else torch.complex128
    h_d, G, h_r = h_d.to(dtype), G.to(dtype), h_r.to(dtype)
    for name, x in (("h_d", h_d), ("G", G), ("h_r", h_r)):
        if not torch.isfinite(x).all():
            raise ValueError(f"channels: {name} has NaN/Inf entries")
    nv = fields["noise_var"] if noise_var is None else noise_var
    pm = fields["P_max"] if P_max is None else P_max
    nv = 1.0 if nv is None else nv
    pm = 1.0 if pm is None else pm
    for name, v in (("noise_var", nv), ("P_max", pm)):
        t = torch.as_tensor(v, dtype=torch.float64)
        if not (torch.isfinite(t).all() and (t > 0).all()):
            raise ValueError(f"channels: {name} must be finite and > 0, got {v!r}")
    return RISTensors(h_d, G, h_r, nv, pm)


def _per_sample(v, B: int, like: torch.Tensor) -> torch.Tensor:
    """A float or tensor broadcastable to ``[B]`` as a real tensor ``[B]``."""
    real = like.real.dtype if like.is_complex() else like.dtype
    t = torch.as_tensor(v, dtype=real, device=like.device).reshape(-1)
    return t.expand(B) if t.numel() == 1 else t.reshape(B)


def _cells(x: torch.Tensor, rank: int) -> torch.Tensor:
    """Add the cell axis to a single-cell tensor of rank ``rank - 1``."""
    return x.unsqueeze(1) if x.dim() == rank - 1 else x


# ----------------------------------------------------------------------------- helpers
def unit_modulus(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    r"""Project onto the unit circle, :math:`x / |x|`; entries with :math:`|x| \le`
    ``eps`` map to 1 (phase 0) instead of NaN. Differentiable (for policy outputs).

    *Shapes*: any; complex input, or real input whose last axis holds (re, im) of
    size 2 (then the complex result drops that axis).
    """
    if not x.is_complex():
        if x.shape[-1] != 2:
            raise ValueError("unit_modulus: real input needs a last axis (re, im) of size 2")
        x = torch.view_as_complex(x.contiguous())
    mag = x.abs()
    safe = torch.where(mag > eps, x, torch.ones_like(x))
    return safe / safe.abs()


def precoder_power(W: torch.Tensor) -> torch.Tensor:
    r"""Per-BS transmit power :math:`\|\mathbf{W}_m\|_F^2`.

    *Shapes*: ``W`` ``[..., N_B, K]`` complex → ``[...]`` real.
    """
    return W.abs().square().sum((-2, -1))


def normalize_power(W: torch.Tensor, P_max, eps: float = 1e-30) -> torch.Tensor:
    r"""Scale each BS precoder to full power, :math:`\mathbf{W}_m \sqrt{P_{\max}} /
    \|\mathbf{W}_m\|_F` (scaling every precoder up together raises every SINR, so a
    policy's output layer usually does this).

    *Shapes*: ``W`` ``[B, M, N_B, K]`` (or ``[B, N_B, K]``); ``P_max`` float or ``[B]``.
    """
    p = _per_sample(P_max, W.shape[0], W).reshape((-1,) + (1,) * (W.dim() - 1))
    norm = precoder_power(W).clamp_min(eps).sqrt()[..., None, None]
    return W * (p.sqrt() / norm)


def hybrid_precoder(baseband: torch.Tensor, analog: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathbf{W}_m = \mathbf{W}_{RF,m} \mathbf{W}_{BB,m}`.

    *Shapes*: ``baseband`` ``[B, M, N_RF, K]``, ``analog`` ``[B, M, N_B, N_RF]``
    (cell axis optional) → ``[B, M, N_B, K]``.
    """
    return _cells(analog, 4) @ _cells(baseband, 4).to(analog.dtype)


def normalize_hybrid_power(baseband: torch.Tensor, analog: torch.Tensor, P_max,
                           eps: float = 1e-30) -> torch.Tensor:
    r"""Rescale the baseband precoder so that :math:`\|\mathbf{W}_{RF,m}
    \mathbf{W}_{BB,m}\|_F^2 = P_{\max}` for every BS; the analog part keeps its unit
    modulus, so only :math:`\mathbf{W}_{BB}` can carry the power.

    *Shapes*: as :func:`hybrid_precoder`; returns the baseband in its input shape
    (``[B, M, N_RF, K]``, or ``[B, N_RF, K]`` single-cell).
    """
    W = hybrid_precoder(baseband, analog)
    p = _per_sample(P_max, W.shape[0], W).reshape(-1, 1, 1, 1)
    scale = p.sqrt() / precoder_power(W).clamp_min(eps).sqrt()[..., None, None]
    return baseband * (scale if baseband.dim() == 4 else scale.squeeze(1))


def rf_assignment(M: int, K: int, N_RF: int, dtype=torch.float32) -> torch.Tensor:
    """``[M N_RF, M K]``: ±1 where RF chain ``r`` of cell ``m`` serves UE ``r mod K`` of
    cell ``m`` (sign + on even rounds ``r // K``, − on odd ones, so that two chains of
    one UE differ), 0 elsewhere — the layout of the exact two-chains-per-stream hybrid
    decomposition (Sohrabi & Yu 2016). It is the RIS GNN's ``rf_tag`` input
    (:class:`pegnn.ris_policy.RISPolicy`) and the assignment of
    :func:`~pegnn.wireless.ris_ascent.tagged_mrt`."""
    r = torch.arange(N_RF)
    one = torch.zeros(N_RF, K, dtype=dtype)
    one[r, r % K] = 1.0 - 2.0 * ((r // K) % 2).to(dtype)
    return torch.block_diag(*[one] * M)



# ----------------------------------------------------------------------------- hybrid
def hybrid_from_digital(W: torch.Tensor, n_rf: int, iters: int = 100, seed: int | None = None,
                        method: str = "auto") -> RISHybrid:
    r"""A hybrid realisation :math:`\mathbf{W}_{RF}\mathbf{W}_{BB} \approx \mathbf{W}`
    per BS, re-normalised to the power of :math:`\mathbf{W}` (``theta`` is left ``None``).

    - ``"exact"`` (needs ``n_rf >= 2K``; the ``"auto"`` choice then): column ``k`` is
      written entry-wise as :math:`w_{nk} = \mu_k(e^{j(\psi_{nk}+\delta_{nk})} +
      e^{j(\psi_{nk}-\delta_{nk})})` with :math:`\mu_k = \max_n |w_{nk}|/2`,
      :math:`\delta_{nk} = \arccos(|w_{nk}|/2\mu_k)` — two analog columns and two equal
      baseband entries per stream (Sohrabi & Yu, IEEE JSTSP 2016); spare RF chains get
      analog phase 0 and zero baseband rows. Reproduces :math:`\mathbf{W}` to rounding.
    - ``"altmin"`` (otherwise): phase extraction + least squares, alternating
      :math:`\mathbf{W}_{BB} = \mathbf{W}_{RF}^{+}\mathbf{W}`,
      :math:`\mathbf{W}_{RF} = e^{j\arg(\mathbf{W}\mathbf{W}_{BB}^H)}` (PE-AltMin of Yu,
      Shen, Zhang, Letaief 2016), ``iters`` rounds from the phases of :math:`\mathbf{W}`
      (spare columns: random phases from ``seed``), keeping the best Frobenius fit.
      Per drop it competes with the exact realisation of :math:`\mathbf{W}`'s best
      rank-:math:`\lfloor n_{RF}/2\rfloor` approximation :math:`\mathbf U_r\mathbf S_r
      \mathbf V_r^H` (the exact form on :math:`\mathbf U_r\mathbf S_r`, then
      :math:`\mathbf V_r^H` into the baseband), which is exact when :math:`\mathbf W` has
      that rank — a precoder that leaves UEs unserved; there the alternation's analog
      columns collapse onto few directions and its least squares grow without bound.
      The better fit is kept; then :math:`\mathbf{W}_{BB}` is scaled so that
      :math:`\|\mathbf{W}_{RF}\mathbf{W}_{BB}\|_F = \|\mathbf{W}\|_F`.

    *Shapes*: ``W`` ``[B, M, N_B, K]`` → :class:`RISHybrid` with ``baseband``
    ``[B, M, n_rf, K]``, ``analog`` ``[B, M, N_B, n_rf]`` (unit modulus), same dtype.
    """
    B, M, N_B, K = W.shape
    method = ("exact" if n_rf >= 2 * K else "altmin") if method == "auto" else method
    if method == "exact":
        if n_rf < 2 * K:
            raise ValueError(f"hybrid_from_digital: 'exact' needs n_rf >= 2K = {2 * K}")
        return _exact_hybrid(W, n_rf)
    if method != "altmin":
        raise ValueError(f"hybrid_from_digital: unknown method {method!r}")
    gen = torch.Generator(device=W.device).manual_seed(0 if seed is None else int(seed))
    phase = 2 * math.pi * torch.rand(B, M, N_B, n_rf, generator=gen, dtype=torch.float64)
    analog = torch.polar(torch.ones_like(phase), phase).to(W.dtype)
    analog[..., :min(K, n_rf)] = unit_modulus(W[..., :min(K, n_rf)])
    best_err = torch.full((B, M), float("inf"), dtype=W.real.dtype, device=W.device)
    best_a, best_b = analog.clone(), torch.zeros(B, M, n_rf, K, dtype=W.dtype, device=W.device)
    for _ in range(iters):
        baseband = torch.linalg.pinv(analog, rtol=1e-6) @ W   # near-coincident columns: no 1e11 entries
        err = (W - analog @ baseband).abs().square().sum((-2, -1))
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_a[better], best_b[better] = analog[better], baseband[better]
        analog = unit_modulus(W @ baseband.mH)
    r = min(n_rf // 2, K, N_B)
    if r >= 1:      # the exact realisation of the best rank-r approximation
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        low = _exact_hybrid(U[..., :r] * S[..., None, :r].to(W.dtype), n_rf)
        bb = low.baseband @ Vh[..., :r, :]
        err = (W - low.analog @ bb).abs().square().sum((-2, -1))
        better = err <= best_err
        best_a[better], best_b[better] = low.analog[better], bb[better]
    target = precoder_power(W)
    have = precoder_power(best_a @ best_b).clamp_min(1e-300)
    return RISHybrid(best_b * (target / have).sqrt()[..., None, None], best_a, None)


def _exact_hybrid(W: torch.Tensor, n_rf: int) -> RISHybrid:
    """The ``"exact"`` form of :func:`hybrid_from_digital` (``n_rf >= 2K``)."""
    B, M, N_B, K = W.shape
    mag, psi = W.abs(), W.angle()
    mu = mag.amax(-2, keepdim=True) / 2                              # [B, M, 1, K]
    delta = torch.arccos((mag / (2 * mu).clamp_min(1e-300)).clamp(0, 1))
    analog = torch.ones(B, M, N_B, n_rf, dtype=W.dtype, device=W.device)
    analog[..., 0:2 * K:2] = torch.polar(torch.ones_like(mag), psi + delta)
    analog[..., 1:2 * K:2] = torch.polar(torch.ones_like(mag), psi - delta)
    baseband = torch.zeros(B, M, n_rf, K, dtype=W.dtype, device=W.device)
    idx = torch.arange(K, device=W.device)
    baseband[..., 2 * idx, idx] = mu[..., 0, :].to(W.dtype)
    baseband[..., 2 * idx + 1, idx] = mu[..., 0, :].to(W.dtype)
    return RISHybrid(baseband, analog, None)


# ----------------------------------------------------------------------------- physics
def ris_effective_channel(channels, theta: torch.Tensor) -> torch.Tensor:
    r"""Effective channels :math:`\mathbf{h}_{m,u}^H = \mathbf{h}_{d,m,u}^H +
    \boldsymbol\theta^H \mathrm{diag}(\mathbf{h}_{r,u}^H)\mathbf{G}_m` (README step
    "effective channel"; Guo et al. 2020, Sec. II).

    *Shapes*: ``theta`` ``[B, N_RE]`` complex → ``[B, M, M K, N_B]`` (the rows
    :math:`\mathbf{h}_{m,u}^H`), in the promoted complex dtype.
    """
    ch = as_ris_channels(channels)
    return _effective_rows(ch.h_d, ch.G, ch.h_r, theta)


def _effective_rows(hd_row, G, hr_row, theta):
    """The same from plain tensors (no checks), for the inner loops of the BCD."""
    dtype = torch.promote_types(hd_row.dtype, theta.dtype)
    # theta^H diag(h_r,u^H) is the row conj(theta) * h_r,u^H; then one matmul with G_m.
    cascade = theta.to(dtype).conj().unsqueeze(1) * hr_row.to(dtype)       # [B, U, N_RE]
    return hd_row.to(dtype) + cascade.unsqueeze(1) @ G.to(dtype)            # [B, M, U, N_B]


def ris_received(h_eff: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    r"""Received amplitudes :math:`R_{u,s} = \mathbf{h}_{m_s,u}^H \mathbf{w}_s` of
    every stream ``s = m K + k`` at every UE ``u``.

    *Shapes*: ``h_eff`` ``[B, M, U, N_B]``, ``W`` ``[B, M, N_B, K]`` → ``[B, U, M K]``.
    """
    R = h_eff @ W.to(h_eff.dtype)                      # [B, M, U, K]: BS m's streams at UE u
    return R.permute(0, 2, 1, 3).flatten(2)


def _rates_from_received(R: torch.Tensor, noise_var: torch.Tensor) -> torch.Tensor:
    """Per-UE rates log2(1 + SINR) from received amplitudes ``[B, U, U]``."""
    # Divide by sigma before squaring: path-loss-scaled channels (|R|^2 ~ 1e-20 for a
    # cascaded link) stay far from float32 underflow, and the noise becomes 1.
    R = R / noise_var.sqrt()[:, None, None]
    P = R.real.square() + R.imag.square()
    sig = P.diagonal(dim1=-2, dim2=-1)
    # Interference summed off-diagonal (not total - signal): no cancellation at high SINR.
    off = 1 - torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)
    return torch.log2(1 + sig / ((P * off).sum(-1) + 1))


def ris_rate(channels, out, *, noise_var=None, weights=None, per_user=False) -> torch.Tensor:
    r"""Spectral efficiency of problem P-R, :math:`\sum_u \omega_u \log_2(1+\gamma_u)`
    (bits/s/Hz), differentiable in ``out`` (use ``-ris_rate(...).mean()`` as the
    unsupervised loss of paper 002 Sec. V).

    ``out`` is either hybrid, :class:`RISHybrid` or a 3-tuple ``(baseband, analog,
    theta)`` — the precoder of BS ``m`` is :math:`\mathbf{W}_{RF,m}\mathbf{W}_{BB,m}`
    — or fully digital, :class:`RISDigital` or a 2-tuple ``(W, theta)``; the
    ``(out, info)`` pair returned by :func:`~pegnn.wireless.ris_bcd.ris_bcd` is
    accepted as is (``ris_rate(ch, ris_bcd(ch))``). Neither the
    power nor the unit modulus is enforced here: a policy applies
    :func:`normalize_hybrid_power` and :func:`unit_modulus` in its output layer.

    *Shapes*: channels as in the module docstring; ``baseband`` ``[B, M, N_RF, K]``,
    ``analog`` ``[B, M, N_B, N_RF]``, ``W`` ``[B, M, N_B, K]`` (cell axis optional),
    ``theta`` ``[B, N_RE]``; ``weights`` ``[U]`` or ``[B, U]`` (default 1).
    Returns ``[B]`` real, or ``[B, U]`` per-UE rates (unweighted) if ``per_user``.
    """
    ch = as_ris_channels(channels, noise_var=noise_var)
    if len(out) == 2 and isinstance(out[1], dict):   # the (out, info) pair of ris_bcd
        out = out[0]
    if not all(torch.is_tensor(x) for x in out):
        raise ValueError("ris_rate: out must be tensors (baseband, analog, theta) or (W, theta), "
                         f"got ({', '.join(type(x).__name__ for x in out)})")
    if len(out) == 3:
        W, theta = hybrid_precoder(out[0], out[1]), out[2]
    elif len(out) == 2:
        W, theta = _cells(out[0], 4), out[1]
    else:
        raise ValueError("out must be (baseband, analog, theta) or (W, theta)")
    B, M, U, N_B = ch.h_d.shape
    for name, x in (("precoder", W), ("theta", theta)):
        if not bool(torch.isfinite(x).all()):    # say so here rather than return a NaN rate
            raise ValueError(f"ris_rate: {name} contains NaN or Inf entries; expected finite values")
    if W.shape != (B, M, N_B, U // M) or theta.shape != (B, ch.G.shape[2]):
        raise ValueError(f"precoder {tuple(W.shape)} / theta {tuple(theta.shape)} do not fit "
                         f"channels (want {(B, M, N_B, U // M)} / {(B, ch.G.shape[2])})")
    h = _effective_rows(ch.h_d, ch.G, ch.h_r, theta)
    rates = _rates_from_received(ris_received(h, W), _per_sample(ch.noise_var, B, h))
    if per_user:
        return rates
    if weights is not None:
        w = torch.as_tensor(weights, dtype=rates.dtype, device=rates.device)
        if w.shape not in ((U,), (B, U)) or not (torch.isfinite(w).all() and (w >= 0).all()):
            raise ValueError(f"ris_rate: weights must be finite, >= 0 and of shape [U] = [{U}] or [B, U] = "
                             f"[{B}, {U}], got shape {tuple(w.shape)}")
        rates = rates * w
    return rates.sum(-1)
