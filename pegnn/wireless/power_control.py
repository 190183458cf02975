r"""Power control (problem P-C) and OFDMA bandwidth/power allocation (problem P-B), paper 002.

P-C (paper 002 eq. (18)): ``K`` Tx-Rx pairs, maximise
:math:`\sum_k \log_2(1 + \mathrm{SINR}_k)` over :math:`0 \le p_k \le P_{\max}`.

**Index order.** ``G[b, k, j]`` is the channel amplitude :math:`|g_{kj}|` **from Tx k to
Rx j** (the definition in the paper's text and in ``graphs/power_control_pc.yaml``;
``G`` holds amplitudes, as the paper's :math:`\mathbf{G} = [|g_{kj}|]`, so power gains
are ``|G|**2``; complex entries are allowed and only their modulus is used). The signal
of pair ``k`` reaches Rx ``k`` through ``G[k, k]`` and Tx ``j`` interferes at Rx ``k``
through ``G[j, k]``:

.. math::
    \mathrm{SINR}_k = \frac{|g_{kk}|^2 p_k}{\sum_{j\ne k}|g_{jk}|^2 p_j + \sigma_0^2}.

(Eq. (18a) prints :math:`|g_{kj}|^2 p_j` in the denominator; with the text's "Tx k to
Rx j" that would weight Tx ``j``'s power by Tx ``k``'s gain, so under this definition
the interference gain is :math:`g_{jk}`, as in the paper's own WMMSE update (21a), whose
denominator for Tx ``k`` sums :math:`|\mathbf{w}_k^T\mathbf{h}_j|^2`, Tx ``k`` → Rx ``j``.)

P-B (paper 002 eq. (9)): minimise the total bandwidth :math:`\sum_k B_k` subject to
:math:`B_k\log_2(1 + p_k g_k/(N_0 B_k)) \ge s_0`, :math:`\sum_k p_k \le P_{\max}`,
:math:`p_k, B_k \ge 0`. It is convex (the rate is the perspective of a concave
function, hence jointly concave in :math:`(p_k, B_k)`); :func:`ofdma_min_bandwidth`
solves its KKT conditions exactly (see there) instead of the paper's gradient descent.
"""
from __future__ import annotations

import math

import torch

from .rates import _check_finite, _noise, _non_negative_int

__all__ = ["pc_rates", "wmmse_power_control", "ofdma_rates", "ofdma_min_bandwidth"]

_LN2 = math.log(2.0)


def _check_gains(fn: str, G) -> torch.Tensor:
    if not isinstance(G, torch.Tensor) or not (G.is_floating_point() or G.is_complex()):
        raise ValueError(f"{fn}: G must be a real or complex tensor [B, K, K], got "
                         f"{getattr(G, 'dtype', type(G).__name__)}")
    if G.dim() != 3 or G.shape[1] != G.shape[2] or min(G.shape) == 0:
        raise ValueError(f"{fn}: G must have shape [B, K, K] (G[b, k, j]: Tx k -> Rx j), "
                         f"got {tuple(G.shape)}")
    _check_finite(fn, "G", G)
    return G.abs()  # amplitudes: only |g| enters


def _per_sample(fn: str, name: str, x, B: int, dtype, device) -> torch.Tensor:
    """Positive float or ``[B]`` tensor as a ``[B]`` tensor (same checks as noise_var)."""
    try:
        return _noise(fn, x, B, dtype, device)
    except ValueError as e:
        raise ValueError(str(e).replace("noise_var", name)) from None


def pc_rates(G: torch.Tensor, p: torch.Tensor, noise_var) -> torch.Tensor:
    r"""Per-pair rates of P-C, :math:`\log_2(1+\mathrm{SINR}_k)` in bits/s/Hz.

    *Shapes*:
        - ``G``: ``[B, K, K]`` real or complex, ``G[b, k, j]`` = amplitude Tx k → Rx j.
        - ``p``: ``[B, K]`` powers, >= 0.
        - ``noise_var``: :math:`\sigma_0^2`, float or ``[B]``.
        - returns ``[B, K]`` in the real dtype of ``G``/``p`` (differentiable in ``p``).
    """
    fn = "pc_rates"
    A = _check_gains(fn, G)
    B, K, _ = A.shape
    if not isinstance(p, torch.Tensor) or tuple(p.shape) != (B, K):
        raise ValueError(f"{fn}: p must be a tensor [B, K] = [{B}, {K}], got "
                         f"{tuple(getattr(p, 'shape', ())) or type(p).__name__}")
    _check_finite(fn, "p", p)
    if bool((p < 0).any()):
        raise ValueError(f"{fn}: p must be >= 0, got min {float(p.min()):.3g}")
    dtype = torch.promote_types(A.dtype, p.dtype)
    s2 = _noise(fn, noise_var, B, dtype, A.device)
    gain = A.to(dtype).square() / s2[:, None, None]        # |g|^2 / σ² (noise -> 1)
    rx = gain * p.to(dtype)[:, :, None]                    # rx[b, j, k] = power of Tx j at Rx k
    sig = rx.diagonal(dim1=1, dim2=2)
    off = 1 - torch.eye(K, dtype=dtype, device=A.device)
    interf = (rx * off).sum(1)                             # sum over Tx j != k
    return torch.log2(1 + sig / (interf + 1))


def wmmse_power_control(G: torch.Tensor, noise_var, P_max=1.0, max_iter: int = 100,
                        tol: float = 1e-4, return_history: bool = False):
    r"""Scalar WMMSE for P-C (Shi et al. 2011; paper 002 eq. (21) with :math:`p_k = v_k^2`).

    With :math:`a_{kj} = |g_{kj}|` (Tx k → Rx j), start from full power
    :math:`v_k = \sqrt{P_{\max}}` and iterate

    .. math::
        u_k = \frac{a_{kk} v_k}{\sum_j a_{jk}^2 v_j^2 + \sigma_0^2},\quad
        w_k = \frac{1}{1 - u_k a_{kk} v_k},\quad
        v_k = \Big[\frac{w_k u_k a_{kk}}{\sum_j w_j u_j^2 a_{kj}^2}\Big]_0^{\sqrt{P_{\max}}},

    in float64, batched; a sample stops when its sum rate changes by less than ``tol``
    (bits/s/Hz) in one iteration. The sum rate is non-decreasing over iterations.

    *Shapes*:
        - ``G``: ``[B, K, K]``; ``noise_var``, ``P_max``: float or ``[B]``.
        - returns ``(p, info)``: ``p`` ``[B, K]`` in ``[0, P_max]`` (real dtype of ``G``);
          ``info`` with ``iterations`` ``[B]``, ``sum_rate`` ``[B]``, ``converged`` ``[B]``
          and optionally ``history`` ``[B, T+1]`` (float64; last value repeated).
    """
    fn = "wmmse_power_control"
    A = _check_gains(fn, G)
    out_dtype = A.dtype
    A = A.to(torch.float64)
    B, K, _ = A.shape
    _non_negative_int(fn, "max_iter", max_iter)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
        raise ValueError(f"{fn}: tol must be a positive float, got {tol!r}")
    s2 = _noise(fn, noise_var, B, torch.float64, A.device)
    Pm = _per_sample(fn, "P_max", P_max, B, torch.float64, A.device)
    a = A / s2.sqrt()[:, None, None]                       # noise normalised to 1
    diag = a.diagonal(dim1=1, dim2=2)
    vmax = Pm.sqrt()[:, None]
    v = vmax.expand(B, K).clone()

    rate = _pc_sum(a, v)
    history = [rate.clone()] if return_history else None
    iterations = torch.zeros(B, dtype=torch.int64, device=A.device)
    active = torch.ones(B, dtype=torch.bool, device=A.device)
    a2 = a.square()
    for _ in range(max_iter):
        idx = active.nonzero().flatten()
        if idx.numel() == 0:
            break
        va, a2a, da = v[idx], a2[idx], diag[idx]
        u = da * va / ((a2a * va.square()[:, :, None]).sum(1) + 1)        # sum over Tx j
        w = 1 / (1 - u * da * va)
        den = (a2a * (w * u.square())[:, None, :]).sum(2)                  # sum over Rx j
        vn = torch.minimum(w * u * da / den.clamp_min(torch.finfo(den.dtype).tiny), vmax[idx])
        vn = vn.clamp_min(0)
        rn = _pc_sum(a[idx], vn)
        v[idx] = vn
        delta = rn - rate[idx]
        rate[idx] = rn
        iterations[idx] += 1
        active[idx[delta.abs() < tol]] = False
        if return_history:
            history.append(rate.clone())
    p = torch.minimum(v.square(), Pm[:, None])           # rounding of sqrt/square
    info = {"iterations": iterations, "sum_rate": rate.to(out_dtype), "converged": ~active}
    if return_history:
        info["history"] = torch.stack(history, 1)
    return p.to(out_dtype), info


def _pc_sum(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Sum rate for noise-normalised amplitudes ``a`` and amplitudes ``v = sqrt(p)``."""
    return pc_rates(a, v.square(), 1.0).sum(-1)


def ofdma_rates(p: torch.Tensor, Bw: torch.Tensor, g: torch.Tensor, N0: float = 1.0) -> torch.Tensor:
    r"""Data rates of P-B, :math:`s_k = B_k\log_2(1 + p_k g_k/(N_0 B_k))` (bits/s; 0 where
    :math:`B_k = 0`).

    *Shapes*: ``p``, ``Bw``, ``g``: ``[B, K]`` (``g`` power gains > 0) → ``[B, K]``.
    """
    fn = "ofdma_rates"
    for name, x in (("p", p), ("Bw", Bw), ("g", g)):
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or tuple(x.shape) != tuple(g.shape):
            raise ValueError(f"{fn}: p, Bw, g must be tensors of one shape [B, K], got "
                             f"{name} {tuple(getattr(x, 'shape', ())) or type(x).__name__}")
        _check_finite(fn, name, x)
    snr = p * g / (N0 * Bw.clamp_min(torch.finfo(Bw.dtype).tiny))
    return torch.where(Bw > 0, Bw * torch.log2(1 + snr), torch.zeros_like(Bw))


def _phi_inv(c: torch.Tensor, iters: int = 100) -> torch.Tensor:
    """Root x > 0 of φ(x) = (x-1)e^x + 1 = c (c > 0), by Newton from the right.

    φ is convex and increasing on x > 0, so Newton started right of the root
    (x0 = max(2, log c), where φ(x0) >= e^{x0} >= c) decreases monotonically to it.
    """
    x = torch.maximum(torch.full_like(c, 2.0), torch.log(c))
    for _ in range(iters):
        f = x * torch.exp(x) - torch.expm1(x) - c        # φ(x) - c, cancellation-free near 0
        step = f / (x * torch.exp(x))
        x = x - step
        if bool((step.abs() <= 1e-15 * x).all()):
            break
    return x


def ofdma_min_bandwidth(g: torch.Tensor, s0, P_max, N0: float = 1.0, tol: float = 1e-12,
                        infeasible: str = "raise"):
    r"""Global optimum of the convex problem P-B (paper 002 eq. (9)).

    At the optimum every rate constraint is tight (less bandwidth would suffice
    otherwise) and so is the power budget. With :math:`x_k = s_0\ln 2/B_k` (nats per
    Hz) the tight rate constraint gives :math:`p_k = N_0 B_k(e^{x_k}-1)/g_k`, and
    stationarity of :math:`\sum_k B_k + \lambda(\sum_k p_k - P_{\max})` in :math:`B_k`
    gives

    .. math::
        \varphi(x_k) = (x_k - 1)e^{x_k} + 1 = \frac{g_k}{\lambda N_0},

    so each :math:`x_k` follows from the multiplier :math:`\lambda` (Newton on the convex
    increasing :math:`\varphi`), and :math:`\lambda` is found by bisection (in
    :math:`\log\lambda`, to relative ``tol``) on :math:`\sum_k p_k(\lambda) = P_{\max}`
    (:math:`\sum_k p_k` decreases in :math:`\lambda`). The power is taken on the
    feasible side of the bracket. The problem is feasible iff
    :math:`P_{\max} > N_0 s_0\ln 2\sum_k 1/g_k` (the power needed as
    :math:`B_k \to \infty`).

    Optimality check: ``info["kkt_residual"]`` is
    :math:`\max_k |1 + \lambda\,\partial p_k/\partial B_k|` with
    :math:`\partial p_k/\partial B_k = -N_0\varphi(x_k)/g_k` (stationarity), and
    ``info["power_gap"]`` is :math:`(P_{\max} - \sum_k p_k)/P_{\max}` (complementary
    slackness, :math:`\lambda > 0`).

    *Shapes*:
        - ``g``: ``[B, K]`` power gains > 0; ``s0`` (bits/s), ``P_max``: float or ``[B]``;
          ``N0``: positive float.
        - returns ``(p, Bw, info)`` with ``p``, ``Bw`` ``[B, K]`` in the dtype of ``g``
          and ``info`` holding ``lambda``, ``kkt_residual``, ``power_gap``, ``feasible``
          ``[B]``. Infeasible samples raise ``ValueError`` (``infeasible="raise"``) or
          come back as NaN with ``feasible`` False (``infeasible="nan"``).
    """
    fn = "ofdma_min_bandwidth"
    if not isinstance(g, torch.Tensor) or not g.is_floating_point() or g.dim() != 2 or 0 in g.shape:
        raise ValueError(f"{fn}: g must be a real floating tensor [B, K], got "
                         f"{getattr(g, 'dtype', type(g).__name__)} {tuple(getattr(g, 'shape', ()))}")
    _check_finite(fn, "g", g)
    if bool((g <= 0).any()):
        raise ValueError(f"{fn}: channel gains g must be > 0")
    if infeasible not in ("raise", "nan"):
        raise ValueError(f"{fn}: infeasible must be 'raise' or 'nan', got {infeasible!r}")
    if isinstance(N0, bool) or not isinstance(N0, (int, float)) or not (0 < N0 < math.inf):
        raise ValueError(f"{fn}: N0 must be a positive float, got {N0!r}")
    B, K = g.shape
    gd = g.to(torch.float64)
    s = _per_sample(fn, "s0", s0, B, torch.float64, g.device)[:, None]
    P = _per_sample(fn, "P_max", P_max, B, torch.float64, g.device)
    p_inf = (N0 * s * _LN2 / gd).sum(-1)
    feasible = P > p_inf * (1 + 1e-12)
    if not bool(feasible.all()) and infeasible == "raise":
        idx = (~feasible).nonzero().flatten()[:5].tolist()
        raise ValueError(f"{fn}: infeasible for samples {idx}: P_max must exceed "
                         f"N0*s0*ln2*sum(1/g) (the power needed with unlimited bandwidth)")

    def alloc(t):                       # t = 1/λ  [B]
        x = _phi_inv(gd * t[:, None] / N0)
        Bw = s * _LN2 / x
        p = N0 * Bw * torch.expm1(x) / gd
        return p, Bw, x

    # bracket t = 1/λ: total power increases with t
    lo = torch.ones(B, dtype=torch.float64, device=g.device)
    hi = lo.clone()
    for _ in range(200):
        over = alloc(lo)[0].sum(-1) > P
        if not bool((over & feasible).any()):
            break
        lo = torch.where(over, lo / 16, lo)
    for _ in range(200):
        under = alloc(hi)[0].sum(-1) < P
        if not bool((under & feasible).any()):
            break
        hi = torch.where(under, hi * 16, hi)
    lo, hi = torch.minimum(lo, hi), torch.maximum(lo, hi)
    for _ in range(200):
        if not bool(((hi / lo - 1) > tol)[feasible].any()):
            break
        mid = (lo * hi).sqrt()
        over = alloc(mid)[0].sum(-1) > P
        hi = torch.where(over, mid, hi)
        lo = torch.where(over, lo, mid)
    p, Bw, x = alloc(lo)
    lam = 1 / lo
    phi = x * torch.exp(x) - torch.expm1(x)
    kkt = (1 - lam[:, None] * N0 * phi / gd).abs().amax(-1)
    gap = (P - p.sum(-1)) / P
    nan = torch.full_like(p, math.nan)
    p = torch.where(feasible[:, None], p, nan)
    Bw = torch.where(feasible[:, None], Bw, nan)
    info = {"lambda": torch.where(feasible, lam, math.nan), "kkt_residual": kkt,
            "power_gap": gap, "feasible": feasible}
    return p.to(g.dtype), Bw.to(g.dtype), info
