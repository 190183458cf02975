r"""Gradient ascent on the SE of problem P-R over a hybrid precoder and the RIS phases,
drop by drop — a probe of the SE landscape that the learned policy lives in.

The variables are free per drop: the analog phases :math:`\arg\mathbf W_{RF,m}`, the
baseband :math:`\mathbf W_{BB,m}` (complex, rescaled to :math:`\|\mathbf W_{RF,m}
\mathbf W_{BB,m}\|_F^2 = P_{\max}` at every step, :func:`~pegnn.wireless.ris.normalize_hybrid_power`)
and the RIS phases :math:`\arg\boldsymbol\theta`; Adam maximises the sum SE of
:func:`~pegnn.wireless.ris.ris_rate` (paper 002 Sec. II-C, the objective of P-R) from a
given start. It only climbs to a *local* maximum, so where it ends depends on where it
starts — which is what it is for:

* from a policy's output it tells whether that output is a local maximum (the one-UE
  solution of the RIS GNN is: ascent from it stays with one UE);
* from :func:`tagged_mrt` — RF chain ``r`` of BS ``m`` beams at UE ``r mod K`` of its cell
  (MRT on the effective channel with every phase 1), ``W_BB`` the assignment — it finds
  multi-UE solutions, above BCD's SE where BCD serves several UEs;
* with ``fix_theta=True`` it is the best precoder, from that start, for phases held
  fixed (e.g. the policy's phases).

:func:`dual_ascent` climbs in another parameterisation: the RIS phases and, per UE, two
powers of the sum-SE-optimal beamforming structure (:func:`dual_precoder`). From a
neutral start (equal powers, every phase 1) it reaches multi-UE solutions above BCD's.

``python -m tasks.ris_streams`` reports all three; ``results/ris_precoding/README.md``
says what they show.
"""
from __future__ import annotations

import torch

from .ris import (RISHybrid, _effective_rows, _per_sample, _rates_from_received, as_ris_channels,
                  hybrid_from_digital, normalize_hybrid_power, rf_assignment, ris_rate, ris_received,
                  unit_modulus)

__all__ = ["tagged_mrt", "ris_ascent", "dual_precoder", "dual_ascent"]


def _keep_best(best_se, best, se, current):
    """Per drop, the better of the best iterate so far and the current one: ``(best_se,
    best)`` with ``best`` a tuple of tensors whose first axis is the drop."""
    better = se.detach() > best_se
    pick = lambda x, b: torch.where(better.reshape(-1, *[1] * (x.dim() - 1)), x.detach(), b)
    return torch.where(better, se.detach(), best_se), tuple(pick(x, b) for x, b in zip(current, best))


def tagged_mrt(channels, N_RF: int) -> RISHybrid:
    r"""The multi-beam start of :func:`ris_ascent`: every phase 1, analog column ``r`` of
    BS ``m`` the phases of :math:`\sum_k a_{rk}\,\mathbf h_{m,k}` (MRT on the effective
    row of the chain's UE, :math:`a` = :func:`rf_assignment`), ``W_BB`` = :math:`a`
    restricted to the cell, scaled to ``P_max``. Each UE gets its own beam (from
    ``N_RF / K`` chains; none when ``N_RF < K`` leaves it without a chain).

    *Shapes*: channels as in :mod:`pegnn.wireless.ris` → :class:`RISHybrid` with
    ``baseband`` ``[B, M, N_RF, K]``, ``analog`` ``[B, M, N_B, N_RF]``, ``theta`` ``[B, N_RE]``.
    """
    ch = as_ris_channels(channels)
    B, M, U, N_B = ch.h_d.shape
    K = U // M
    theta = torch.ones(B, ch.G.shape[2], dtype=ch.h_d.dtype, device=ch.h_d.device)
    h = _effective_rows(ch.h_d, ch.G, ch.h_r, theta)                         # [B, M, U, N_B]
    a = rf_assignment(1, K, N_RF, h.real.dtype).to(h)                        # [N_RF, K], every cell
    own = torch.stack([h[:, m, m * K:(m + 1) * K] for m in range(M)], 1)     # [B, M, K, N_B]
    analog = unit_modulus(torch.einsum("rk,bmkt->bmtr", a, own.conj()))
    baseband = a.expand(B, M, N_RF, K).contiguous()
    return RISHybrid(normalize_hybrid_power(baseband, analog, ch.P_max), analog, theta)


def ris_ascent(channels, init: RISHybrid, iters: int = 1500, lr: float = 0.05, fix_theta: bool = False,
               progress: bool = False) -> tuple[RISHybrid, dict]:
    r"""Adam on the sum SE from ``init`` (a hybrid output, e.g. :func:`tagged_mrt` or a
    policy's), over the analog phases, the baseband and — unless ``fix_theta`` — the RIS
    phases, each drop on its own (the loss is a sum over drops, and Adam scales every
    entry on its own, so the drops do not interact). The baseband is rescaled to unit
    norm before the first step (the power is set by the normalisation, so its scale is
    free), which makes the step size mean the same for channels of any scale. Adam does
    not climb monotonically: each drop keeps its best iterate, so ``se >= se_init``.

    Returns the best feasible :class:`RISHybrid` (unit-modulus ``analog`` and ``theta``,
    ``P_max`` per BS) in complex128, and ``info`` with ``se`` and ``se_init`` ``[B]``
    (bits/s/Hz) and ``iters``.

    *Shapes*: channels as in :mod:`pegnn.wireless.ris`; ``init`` with ``baseband``
    ``[B, M, N_RF, K]``, ``analog`` ``[B, M, N_B, N_RF]``, ``theta`` ``[B, N_RE]`` (the
    single-cell forms without ``M`` too).
    """
    if iters < 0 or not lr > 0:
        raise ValueError(f"ris_ascent: need iters >= 0 and lr > 0, got iters={iters}, lr={lr}")
    if len(init) != 3 or any(x is None for x in init):
        raise ValueError("ris_ascent: init must be (baseband, analog, theta) tensors, e.g. a policy's "
                         "output or tagged_mrt(channels, N_RF)")
    ch = as_ris_channels(channels)
    cd = torch.complex128
    hd, G, hr = ch.h_d.to(cd), ch.G.to(cd), ch.h_r.to(cd)
    B, M, U, N_B = hd.shape
    bb, an, th = (torch.as_tensor(x).to(cd) for x in init)
    bb, an = (x if x.dim() == 4 else x.unsqueeze(1) for x in (bb, an))
    if (bb.shape[:2] != (B, M) or bb.shape[-1] != U // M or an.shape[:3] != (B, M, N_B)
            or an.shape[-1] != bb.shape[2] or th.shape != (B, G.shape[2])):
        raise ValueError(f"ris_ascent: init baseband {tuple(bb.shape)}, analog {tuple(an.shape)}, theta "
                         f"{tuple(th.shape)} do not fit the channels ({B} drops, M={M}, K={U // M}, "
                         f"N_B={N_B}, N_RE={G.shape[2]})")
    for name, x in (("baseband", bb), ("analog", an), ("theta", th)):
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"ris_ascent: init {name} has NaN/Inf entries")
    P, s2 = _per_sample(ch.P_max, B, hd), _per_sample(ch.noise_var, B, hd)
    bb = bb / bb.abs().square().sum((-2, -1), keepdim=True).clamp_min(1e-300).sqrt()
    phi_a, phi_t = an.angle().requires_grad_(), th.angle().requires_grad_(not fix_theta)
    x_bb = torch.view_as_real(bb).clone().requires_grad_()
    opt = torch.optim.Adam([phi_a, x_bb] + ([] if fix_theta else [phi_t]), lr=lr)

    def feasible():
        analog = torch.polar(torch.ones_like(phi_a), phi_a)
        theta = torch.polar(torch.ones_like(phi_t), phi_t)
        baseband = normalize_hybrid_power(torch.view_as_complex(x_bb), analog, P)
        return RISHybrid(baseband, analog, theta)

    def se_of(out):
        h = _effective_rows(hd, G, hr, out.theta)
        return _rates_from_received(ris_received(h, out.analog @ out.baseband), s2).sum(-1)

    from tqdm.auto import tqdm
    out = feasible()
    se = se_of(out)
    se_init = se.detach().clone()
    best_se, best = se_init.clone(), tuple(x.detach().clone() for x in out)
    for _ in tqdm(range(iters), desc="ris_ascent", disable=not progress, leave=False):
        opt.zero_grad()
        (-se.sum()).backward()
        opt.step()
        out = feasible()
        se = se_of(out)
        best_se, best = _keep_best(best_se, best, se, out)
    if not bool(torch.isfinite(best_se).all()):
        raise ValueError("ris_ascent: the SE became NaN/Inf (channels of extreme scale?)")
    return RISHybrid(*best), {"se": best_se, "se_init": se_init, "iters": iters}


def dual_precoder(h: torch.Tensor, q: torch.Tensor, p: torch.Tensor, P_max, noise_var) -> torch.Tensor:
    r"""The beamforming structure of the sum-SE optimum (uplink-downlink duality; Björnson,
    Bengtsson & Ottersten, "Optimal multiuser transmit beamforming: a difficult problem
    with a simple solution structure", IEEE SPM 2014), per BS ``m`` on the effective rows
    ``h`` (:func:`~pegnn.wireless.ris.ris_effective_channel`):

    .. math::
        \mathbf w_{m,k} = \sqrt{p_{m,k} P_m}\,
        \frac{\mathbf A_m^{-1}\mathbf h_{m,mK+k}}{\|\mathbf A_m^{-1}\mathbf h_{m,mK+k}\|},
        \qquad \mathbf A_m = \mathbf I_{N_B} + \frac{P_m}{\sigma^2}\sum_u q_u\,
        \mathbf h_{m,u}\mathbf h_{m,u}^H,

    with :math:`\mathbf h_{m,u}` the column whose conjugate transpose is the row ``h[:, m, u]``,
    the sum over every UE of the system (BS ``m`` regularises against the UEs of other
    cells too), ``q`` the dual uplink powers and ``p`` the downlink powers, each summing to
    1 within a cell. For ``M = 1`` every sum-SE optimum has this form for some ``(q, p)``;
    it is the ``N_R = 1`` counterpart of paper 000's CFP (eq. (6)), whose ``A``, ``U``
    play the part of ``q`` and ``p``. The power is ``P_m`` per BS by construction.

    *Shapes*: ``h`` ``[B, M, U, N_B]``, ``q`` and ``p`` ``[B, M, K]`` (``U = M K``, real,
    non-negative, summing to 1 over ``K``), ``P_max`` and ``noise_var`` floats or ``[B]``
    → ``W`` ``[B, M, N_B, K]`` in ``h``'s dtype.
    """
    B, M, U, N_B = h.shape
    K = U // M
    if q.shape != (B, M, K) or p.shape != (B, M, K):
        raise ValueError(f"dual_precoder: q and p must be [B, M, K] = {[B, M, K]}, got {tuple(q.shape)}, "
                         f"{tuple(p.shape)}")
    P, s2 = _per_sample(P_max, B, h), _per_sample(noise_var, B, h)
    snr = (P / s2).reshape(B, 1, 1, 1)
    q_all = q.reshape(B, U).to(h.real.dtype)                             # every UE's dual power
    A = torch.eye(N_B, dtype=h.dtype, device=h.device) + snr * torch.einsum(
        "bu,bmui,bmuj->bmij", q_all, h.conj(), h)                       # [B, M, N_B, N_B]
    own = torch.stack([h[:, m, m * K:(m + 1) * K] for m in range(M)], 1)  # [B, M, K, N_B]
    V = torch.linalg.solve(A, own.conj().transpose(-2, -1))              # [B, M, N_B, K]
    V = V / V.norm(dim=-2, keepdim=True).clamp_min(1e-300)
    return V * (p * P.reshape(B, 1, 1)).sqrt().to(h.dtype).unsqueeze(-2)


def dual_ascent(channels, N_RF: int, iters: int = 1500, lr: float = 0.05,
                progress: bool = False) -> tuple[RISHybrid, dict]:
    r"""Adam on the sum SE over the RIS phases and the logits of :func:`dual_precoder`'s
    ``q`` and ``p`` (a softmax per cell), from a neutral start: equal powers, every phase
    1 (so the first precoder is the MMSE one on the direct-plus-unphased channel). As in
    :func:`ris_ascent` each drop climbs on its own and keeps its best iterate. The
    digital optimum is then realised in hybrid form (:func:`~pegnn.wireless.ris.hybrid_from_digital`:
    exact when ``N_RF >= 2K``; otherwise an approximation whose SE is what ``info`` reports).

    Returns a feasible :class:`RISHybrid` in complex128 and ``info`` with ``se`` (of the
    hybrid output), ``se_digital``, ``se_init`` ``[B]``, and ``q``, ``p`` ``[B, M, K]`` (the
    dual and downlink power shares of the best iterate; ``p`` says which UEs are served).
    """
    if iters < 0 or not lr > 0:
        raise ValueError(f"dual_ascent: need iters >= 0 and lr > 0, got iters={iters}, lr={lr}")
    ch = as_ris_channels(channels)
    cd = torch.complex128
    hd, G, hr = ch.h_d.to(cd), ch.G.to(cd), ch.h_r.to(cd)
    B, M, U, N_B = hd.shape
    K = U // M
    s2 = _per_sample(ch.noise_var, B, hd)
    xq = torch.zeros(B, M, K, dtype=torch.float64, requires_grad=True)
    xp = torch.zeros(B, M, K, dtype=torch.float64, requires_grad=True)
    phi = torch.zeros(B, G.shape[2], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([xq, xp, phi], lr=lr)

    def step():
        theta = torch.polar(torch.ones_like(phi), phi)
        h = _effective_rows(hd, G, hr, theta)
        W = dual_precoder(h, xq.softmax(-1), xp.softmax(-1), ch.P_max, ch.noise_var)
        return W, theta, _rates_from_received(ris_received(h, W), s2).sum(-1)

    from tqdm.auto import tqdm
    W, theta, se = step()
    se_init = se.detach().clone()
    best_se, best = se_init.clone(), (W.detach(), theta.detach(), xq.detach().softmax(-1), xp.detach().softmax(-1))
    for _ in tqdm(range(iters), desc="dual_ascent", disable=not progress, leave=False):
        opt.zero_grad()
        (-se.sum()).backward()
        opt.step()
        W, theta, se = step()
        best_se, best = _keep_best(best_se, best, se, (W, theta, xq.softmax(-1), xp.softmax(-1)))
    if not bool(torch.isfinite(best_se).all()):
        raise ValueError("dual_ascent: the SE became NaN/Inf (channels of extreme scale?)")
    W, theta, q, p = best
    out = hybrid_from_digital(W, N_RF)._replace(theta=theta)
    se_h = ris_rate((hd, G, hr, ch.noise_var, ch.P_max), out)
    return out, {"se": se_h, "se_digital": best_se, "se_init": se_init, "q": q, "p": p, "iters": iters}
