r"""The classical baseline "[34]" of paper 002: BCD/FP weighted-sum-rate maximisation
for RIS-aided downlinks (Guo, Liang, Chen, Larsson, IEEE TWC 2020), steps 1-4 of
``papers/README.md``, batched over samples, float64/complex128 internally.

Notation and tensor layout are those of :mod:`pegnn.wireless.ris` (UE ``u`` and
stream ``s`` both run over ``m K + k``; :math:`R_{u,s} = \mathbf{h}_{m_s,u}^H
\mathbf{w}_s`). The algorithm is written for the multi-cell case with per-BS power
constraints; the quadratic-transform objective separates over BSs, so step 3 is a
per-BS closed form and the single-cell algorithm of Guo et al. is the case ``M = 1``.

**What the SE ratio of paper 002 divides by.** Sec. V: "[34] is used to solve the
RIS-aided *baseband* precoding problem, which provides a performance upper bound of
baseband and analog hybrid precoding", and "the SE ratio [is] the ratio of the SE
achieved by the learned policy to the SE achieved by the BCD algorithm proposed in
[34]". So the denominator is the SE of the **fully digital** BCD solution,
``info["se"]``, not of a hybrid projection of it.
:func:`~pegnn.wireless.ris.hybrid_from_digital` gives a
hybrid (W_RF, W_BB) for side-by-side comparison (``info["se_hybrid"]``); when
``N_RF >= 2K`` it is exact (Sohrabi & Yu 2016: every entry of a column is the sum of
two unit-modulus numbers), so at the paper's sizes (N_RF = 6, K <= 3) both SEs agree.
"""
from __future__ import annotations

import math
import time
from typing import NamedTuple

import torch

from .ris import (RISDigital, RISHybrid, _effective_rows, _per_sample, _rates_from_received,
                  as_ris_channels, hybrid_from_digital, hybrid_precoder, precoder_power,
                  ris_received, unit_modulus)

__all__ = ["ris_bcd", "reflection_objective", "reflection_mm", "reflection_elementwise"]

_BISECTION_STEPS = 64   # halvings of [0, lambda_hi]: far below the WSR tolerance
_RANK_TOL = 1e-10       # eigenvalues below this (relative) are the null space of A_m


class _Rows(NamedTuple):
    """sigma-normalised channel rows h_d^H ``[B, M, U, N_B]``, G ``[B, M, N_RE, N_B]``,
    h_r^H ``[B, U, N_RE]``, complex128, without the input checks of the public API."""
    hd: torch.Tensor
    G: torch.Tensor
    hr: torch.Tensor

    def effective(self, theta):
        return _effective_rows(self.hd, self.G, self.hr, theta)

    def take(self, idx):
        # index_select: advanced indexing of complex tensors is ~10x slower on CPU
        return _Rows(*(x.index_select(0, idx) for x in self))


# ----------------------------------------------------------------------------- step 4
def reflection_objective(U: torch.Tensor, nu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    r""":math:`g(\boldsymbol\theta) = -\boldsymbol\theta^H\mathbf{U}\boldsymbol\theta +
    2\,\mathrm{Re}\{\boldsymbol\theta^H\boldsymbol\nu\}` (README step 4).

    *Shapes*: ``U`` ``[B, N, N]`` Hermitian PSD, ``nu``/``theta`` ``[B, N]`` → ``[B]`` real.
    """
    quad = (theta.conj() * (U @ theta.unsqueeze(-1)).squeeze(-1)).sum(-1).real
    return -quad + 2 * (theta.conj() * nu).sum(-1).real


def reflection_mm(U, nu, theta, iters: int = 50, rtol: float = 1e-9):
    r"""Maximise :math:`g(\boldsymbol\theta)` over :math:`|\theta_n| = 1` by
    majorisation-minimisation: with :math:`\lambda_{\max}` the largest eigenvalue of
    :math:`\mathbf{U}`, :math:`\mathbf{X} = \lambda_{\max}\mathbf{I} - \mathbf{U}
    \succeq 0` and (since :math:`\|\boldsymbol\theta\|^2 = N` is fixed) the linear
    minoriser of the convex :math:`\boldsymbol\theta^H\mathbf{X}\boldsymbol\theta`
    gives the closed form :math:`\boldsymbol\theta \leftarrow
    e^{j\arg(\mathbf{X}\boldsymbol\theta + \boldsymbol\nu)}`; every step is
    non-decreasing in :math:`g`. Stops after ``iters`` steps or when no sample
    improves by more than ``rtol`` (relative).

    *Shapes*: ``U`` ``[B, N, N]``, ``nu``/``theta`` ``[B, N]`` complex → ``theta`` ``[B, N]``.
    """
    lam = torch.linalg.eigvalsh(U)[..., -1]
    X = lam[:, None, None] * torch.eye(U.shape[-1], dtype=U.dtype, device=U.device) - U
    g = reflection_objective(U, nu, theta)
    for _ in range(iters):
        theta = unit_modulus((X @ theta.unsqueeze(-1)).squeeze(-1) + nu)
        g_new = reflection_objective(U, nu, theta)
        done = (g_new - g).abs() <= rtol * g_new.abs().clamp_min(1.0)
        g = g_new
        if bool(done.all()):
            break
    return theta


def reflection_elementwise(U, nu, theta, sweeps: int = 50, rtol: float = 1e-9):
    r"""Maximise :math:`g(\boldsymbol\theta)` one element at a time (Gauss-Seidel):
    with the others fixed :math:`g` depends on :math:`\theta_n` only through
    :math:`2\,\mathrm{Re}\{\theta_n^*(\nu_n - \sum_{m\ne n} U_{nm}\theta_m)\}`, so
    :math:`\theta_n \leftarrow e^{j\arg(\nu_n - \sum_{m \ne n} U_{nm}\theta_m)}` is
    optimal and never decreases :math:`g`. ``sweeps`` passes over all ``N`` elements.

    *Shapes*: as :func:`reflection_mm`.
    """
    theta = theta.clone()
    Ut = (U @ theta.unsqueeze(-1)).squeeze(-1)   # kept current by rank-one updates
    g = reflection_objective(U, nu, theta)
    for _ in range(sweeps):
        for n in range(theta.shape[-1]):
            z = nu[:, n] - Ut[:, n] + U[:, n, n] * theta[:, n]
            new = unit_modulus(z)
            Ut = Ut + U[:, :, n] * (new - theta[:, n]).unsqueeze(-1)
            theta[:, n] = new
        g_new = reflection_objective(U, nu, theta)
        done = (g_new - g).abs() <= rtol * g_new.abs().clamp_min(1.0)
        g = g_new
        if bool(done.all()):
            break
    return theta


# ----------------------------------------------------------------------------- step 3
def _own_rows(h: torch.Tensor) -> torch.Tensor:
    """Rows h_{m, mK+k}^H of each BS to its own UEs: ``[B, M, U, N] -> [B, M, K, N]``."""
    B, M, U, N = h.shape
    return torch.diagonal(h.reshape(B, M, M, U // M, N), dim1=1, dim2=2).permute(0, 3, 1, 2)


def _beamformer(h, beta, wt, P):
    r"""Step 3: :math:`\mathbf{w}_{m,k} = \sqrt{\tilde\omega_u}\beta_u(\lambda_m\mathbf{I}
    + \mathbf{A}_m)^{-1}\mathbf{h}_{m,u}`, :math:`\mathbf{A}_m = \sum_u |\beta_u|^2
    \mathbf{h}_{m,u}\mathbf{h}_{m,u}^H`, with the smallest :math:`\lambda_m \ge 0`
    meeting :math:`\|\mathbf{W}_m\|_F^2 \le P`. With :math:`\mathbf{A}_m =
    \mathbf{V}\mathrm{diag}(d)\mathbf{V}^H` and :math:`c_n = \|[\mathbf{V}^H
    \mathbf{C}]_n\|^2` the power is :math:`\sum_n c_n/(\lambda+d_n)^2`, decreasing in
    :math:`\lambda`, so one eigendecomposition serves the whole bisection. The right-hand
    side lies in the range of A_m, so its null space (N_B > number of UEs) is dropped:
    at :math:`\lambda = 0` this is the minimum-norm (pseudo-inverse) solution.
    """
    B, M, U, N = h.shape
    A = h.mH @ ((beta.abs().square())[:, None, :, None] * h)              # [B, M, N, N]
    coef = (wt.sqrt() * beta).reshape(B, M, U // M)
    C = _own_rows(h).mH * coef[:, :, None, :]                            # [B, M, N, K]
    d, V = torch.linalg.eigh(A)
    Q = V.mH @ C
    c = Q.abs().square().sum(-1)                                          # [B, M, N]
    keep = d > _RANK_TOL * d.amax(-1, keepdim=True).clamp_min(1e-300)
    d_safe = torch.where(keep, d, torch.ones_like(d))
    c = torch.where(keep, c, torch.zeros_like(c))

    def power(lam):
        return (c / (lam[..., None] + d_safe).square()).sum(-1)

    P = P[:, None].expand(B, M)
    lo = torch.zeros_like(P)
    hi = (c.sum(-1) / P).sqrt()          # power(hi) <= sum(c)/hi^2 = P: feasible
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        ok = power(mid) <= P
        hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
    # lambda = 0 when the (pseudo-)inverse solution is already feasible, else the
    # feasible end of the bracket, so the power constraint holds to rounding.
    lam = torch.where(power(torch.zeros_like(P)) <= P, torch.zeros_like(P), hi)
    scale = torch.where(keep, 1.0 / (lam[..., None] + d_safe), torch.zeros_like(d))
    return V @ (Q * scale[..., None].to(Q.dtype))


# ----------------------------------------------------------------------------- one BCD pass
def _cascade_terms(ch, W):
    r"""Step 4's :math:`\mathbf{a}_{s,u} = \mathrm{diag}(\mathbf{h}_{r,u}^H)\mathbf{G}_{m_s}
    \mathbf{w}_s` ``[B, U, S, N_RE]`` and :math:`b_{s,u} = \mathbf{h}_{d,m_s,u}^H
    \mathbf{w}_s` ``[B, U, S]``, so that :math:`R_{u,s} = b_{s,u} +
    \boldsymbol\theta^H\mathbf{a}_{s,u}`."""
    B, M, U, N = ch.hd.shape
    GW = (ch.G @ W).permute(0, 1, 3, 2).reshape(B, U, -1)                # [B, S, N_RE]
    a = ch.hr[:, :, None, :] * GW[:, None, :, :]
    b = (ch.hd @ W).permute(0, 2, 1, 3).reshape(B, U, U)
    return a, b


def _fp_ratio(R, wt):
    """beta / epsilon of steps 2 and 4: sqrt(w~_u) R_uu / (sum_s |R_us|^2 + 1)."""
    return wt.sqrt() * R.diagonal(dim1=-2, dim2=-1) / (R.abs().square().sum(-1) + 1)


def _reflection_problem(ch, W, theta, wt):
    r"""Step 4's :math:`(\mathbf{U}, \boldsymbol\nu)` at the point ``(W, theta)``:
    with :math:`\epsilon_u` computed like :math:`\beta_u`, the quadratic-transform
    objective :math:`\sum_u 2\sqrt{\tilde\omega_u}\mathrm{Re}\{\epsilon_u^* R_{u,u}\}
    - |\epsilon_u|^2(\sum_s |R_{u,s}|^2 + 1)` equals :math:`g(\boldsymbol\theta)` plus a
    constant when :math:`R_{u,s} = b_{s,u} + \boldsymbol\theta^H\mathbf{a}_{s,u}`.
    Returns ``U`` ``[B, N_RE, N_RE]``, ``nu`` ``[B, N_RE]``, ``eps`` ``[B, U]``."""
    a, b = _cascade_terms(ch, W)
    eps = _fp_ratio(ris_received(ch.effective(theta), W), wt)
    e2 = eps.abs().square()
    Aw = (a * e2.sqrt()[:, :, None, None]).flatten(1, 2)    # rows |eps_u| a_{s,u}
    U = Aw.mT @ Aw.conj()                                    # sum |eps_u|^2 a a^H
    U = 0.5 * (U + U.mH)                                     # exactly Hermitian for eigvalsh
    a_own = torch.diagonal(a, dim1=1, dim2=2).mT             # a_{u,u}: [B, U, N_RE]
    nu = ((wt.sqrt() * eps.conj())[..., None] * a_own).sum(1) \
        - ((e2[..., None] * b.conj())[..., None] * a).sum((1, 2))
    return U, nu, eps


def _bcd_pass(ch, W, theta, w, P, elementwise, inner_iter, fix_theta):
    h = ch.effective(theta)
    R = ris_received(h, W)
    Pw = R.abs().square()
    sig = Pw.diagonal(dim1=-2, dim2=-1)
    interf = (Pw * (1 - torch.eye(Pw.shape[-1], dtype=Pw.dtype, device=Pw.device))).sum(-1)
    gamma = sig / (interf + 1)                               # step 1: alpha = gamma
    wt = w * (1 + gamma)                                     # omega~ = omega (1 + alpha)
    W = _beamformer(h, _fp_ratio(R, wt), wt, P)              # steps 2-3
    if fix_theta:
        return W, theta
    U, nu, _ = _reflection_problem(ch, W, theta, wt)         # step 4 at the new W
    step = reflection_elementwise if elementwise else reflection_mm
    return W, step(U, nu, theta, inner_iter)


def _wsr(ch, W, theta, w):
    h = ch.effective(theta)
    return (_rates_from_received(ris_received(h, W), torch.ones_like(w[:, 0])) * w).sum(-1)


# ----------------------------------------------------------------------------- driver
def _init(ch, init, P, gen):
    B, M, U, N_B = ch.hd.shape
    K, N_RE = U // M, ch.G.shape[2]
    dt = ch.hd.dtype
    if isinstance(init, (tuple, list)):
        W, theta = init
        theta = unit_modulus(theta.to(dt))
        W = W.to(dt).reshape(B, M, N_B, K)
        # only scale down: a feasible starting point stays where the caller put it
        excess = (precoder_power(W) / P[:, None]).clamp_min(1.0).sqrt()
        return W / excess[..., None, None], theta
    phase = 2 * math.pi * torch.rand(B, N_RE, generator=gen, dtype=torch.float64)
    theta = torch.polar(torch.ones_like(phase), phase).to(dt)
    if init == "mrt":       # MRT on the effective channel, equal power per UE
        W = _own_rows(ch.effective(theta)).mH
        W = W / W.norm(dim=-2, keepdim=True).clamp_min(1e-300) * (P / K).sqrt()[:, None, None, None]
    elif init == "random":
        W = torch.view_as_complex(torch.randn(B, M, N_B, K, 2, generator=gen, dtype=torch.float64)).to(dt)
        W = W / precoder_power(W).sqrt()[..., None, None] * P.sqrt()[:, None, None, None]
    else:
        raise ValueError(f"ris_bcd: init must be 'mrt', 'random' or (W, theta), got {init!r}")
    return W, theta


def ris_bcd(channels, weights=None, max_iter: int = 200, tol: float = 1e-3, init="mrt",
            seed: int | None = None, elementwise: bool = False, *, n_rf: int | None = None,
            fix_theta: bool = False, inner_iter: int = 50, noise_var=None, P_max=None):
    r"""Block coordinate descent / fractional programming for the RIS-aided weighted
    sum rate :math:`\sum_u \omega_u \log_2(1+\gamma_u)` with a fully digital precoder
    (Guo et al. 2020; README steps 1-4), per-BS power :math:`P_{\max}`.

    Each pass: (1) Lagrangian dual transform :math:`\alpha_u = \gamma_u`,
    :math:`\tilde\omega_u = \omega_u(1+\alpha_u)`; (2) quadratic transform
    :math:`\beta_u = \sqrt{\tilde\omega_u} R_{u,u}/(\sum_s |R_{u,s}|^2 + \sigma^2)`;
    (3) closed-form beamformer with bisection on :math:`\lambda_m`; (4) :math:`\epsilon_u`
    like :math:`\beta_u` at the new beamformer, then the reflection subproblem
    :math:`\max -\boldsymbol\theta^H\mathbf{U}\boldsymbol\theta +
    2\mathrm{Re}\{\boldsymbol\theta^H\boldsymbol\nu\}` by MM (default) or element-wise
    (``elementwise=True``). Every block is optimal or non-decreasing for the transformed
    objective, so the WSR never decreases. A sample stops when its WSR (in bits/s/Hz)
    changes by less than ``tol``. As in the authors' code, channels are divided by
    :math:`\sigma` (so :math:`\sigma^2 = 1`) — this keeps cascaded gains of ~1e-20 well
    scaled.

    Convergence is slow where the reflected path carries much of the signal at high
    SINR: the quadratic-transform surrogate in :math:`\boldsymbol\theta` peaks where
    :math:`|R_{u,u}|` grows by a factor of only about :math:`1 + 1/\gamma_u`, so each
    pass moves the phases a little. Measured (K = 1, N_B = 1, N_RE = 6, SNR ~15 dB):
    ``tol=1e-3`` stops up to 0.24 bit/s/Hz below the closed-form optimum, ``tol=1e-8``
    within 0.008 after ~1700 passes. Where the RIS is weak (the paper's path loss on
    every link) it converges in ~5 passes. Use a smaller ``tol`` (and a larger
    ``max_iter``) when the baseline must be near-stationary.

    :param init: ``"mrt"`` (random phases from ``seed``, MRT of each BS to its own UEs
        on the resulting effective channel, equal power), ``"random"`` (random phases
        and a random Gaussian precoder at full power), or a pair ``(W, theta)``.
    :param seed: seeds the random phases; ``None`` means 0 (a baseline should be
        reproducible). The caller's global RNG is never touched.
    :param fix_theta: keep the initial phases and optimise only the beamformer (the
        "random phases, same beamformer algorithm" reference).
    :param n_rf: RF chains per BS; if given (or ``channels.N_RF`` exists) the hybrid
        realisation :func:`~pegnn.wireless.ris.hybrid_from_digital` and its SE are
        added to ``info``.
    :param inner_iter: MM steps / element-wise sweeps per reflection subproblem.

    *Shapes*: channels as in :mod:`pegnn.wireless.ris`; ``weights`` ``[U]`` or ``[B, U]``.
    Returns ``(out, info)``: ``out`` = :class:`RISDigital` with ``W`` ``[B, M, N_B, K]``
    and ``theta`` ``[B, N_RE]`` in the channels' complex dtype (cell axis always
    present); ``info`` holds float64 ``se`` ``[B]`` (unweighted SE: the SE-ratio
    denominator), ``wsr`` ``[B]``, ``wsr_history`` ``[B, T+1]`` (held after a sample
    stops), ``iterations`` ``[B]`` int64, ``converged`` ``[B]`` bool, ``nonfinite``
    ``[B]`` bool (a NaN/Inf iterate was rejected and the sample stopped), ``time_s``,
    and with ``n_rf``: ``hybrid`` (:class:`RISHybrid`) and ``se_hybrid`` ``[B]``.
    """
    t0 = time.perf_counter()
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:   # 0: the initial point
        raise ValueError(f"ris_bcd: max_iter must be a non-negative int, got {max_iter!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < float("inf"):
        raise ValueError(f"ris_bcd: tol must be a finite number >= 0, got {tol!r}")
    ch = as_ris_channels(channels, noise_var=noise_var, P_max=P_max)
    out_dtype = ch.h_d.dtype
    B, M, U, N_B = ch.h_d.shape
    if n_rf is not None and (isinstance(n_rf, bool) or not isinstance(n_rf, int) or not 1 <= n_rf <= N_B):
        raise ValueError(f"ris_bcd: n_rf must be an int in [1, N_B = {N_B}], got {n_rf!r}")
    f64 = dict(dtype=torch.float64, device=ch.h_d.device)
    sigma = _per_sample(ch.noise_var, B, ch.h_d.real.double()).sqrt()
    P = _per_sample(ch.P_max, B, sigma).clone()
    cd = torch.complex128
    # sigma-normalised rows: h_d and h_r / sigma make every effective channel / sigma.
    ch = _Rows(ch.h_d.to(cd) / sigma[:, None, None, None], ch.G.to(cd),
               ch.h_r.to(cd) / sigma[:, None, None])
    w = torch.ones(B, U, **f64) if weights is None else \
        torch.as_tensor(weights, **f64).expand(B, U).clone()
    if not (torch.isfinite(w).all() and (w >= 0).all()):
        raise ValueError("ris_bcd: weights must be finite and >= 0")
    gen = torch.Generator(device=ch.hd.device).manual_seed(0 if seed is None else int(seed))
    W, theta = _init(ch, init, P, gen)

    wsr = _wsr(ch, W, theta, w)
    if not torch.isfinite(wsr).all():
        raise FloatingPointError("ris_bcd: non-finite WSR at the initial point")
    history = [wsr.clone()]
    iters = torch.zeros(B, dtype=torch.int64)
    converged = torch.zeros(B, dtype=torch.bool)
    nonfinite = torch.zeros(B, dtype=torch.bool)
    active = torch.arange(B)
    for _ in range(max_iter):
        if active.numel() == 0:
            break
        full = active.numel() == B   # skip the gathers while every sample still runs
        sub = ch if full else ch.take(active)
        W_a, th_a = (W, theta) if full else (W.index_select(0, active), theta.index_select(0, active))
        w_a, P_a = (w, P) if full else (w[active], P[active])
        W_new, th_new = _bcd_pass(sub, W_a, th_a, w_a, P_a, elementwise, inner_iter, fix_theta)
        wsr_new = _wsr(sub, W_new, th_new, w_a)
        # A NaN/Inf anywhere in W or theta reaches the sums; reject that sample's step.
        finite = torch.isfinite(wsr_new + W_new.abs().sum((1, 2, 3)) + th_new.abs().sum(1))
        good = active[finite]
        W.index_copy_(0, good, W_new[finite])
        theta.index_copy_(0, good, th_new[finite])
        delta = wsr_new[finite] - wsr[good]
        wsr[good] = wsr_new[finite]
        iters[good] += 1
        nonfinite[active[~finite]] = True
        converged[good[delta.abs() < tol]] = True
        history.append(wsr.clone())
        active = good[delta.abs() >= tol]

    info = dict(wsr=wsr, wsr_history=torch.stack(history, 1), iterations=iters,
                converged=converged, nonfinite=nonfinite,
                se=_wsr(ch, W, theta, torch.ones_like(w)))
    n_rf = n_rf if n_rf is not None else getattr(channels, "N_RF", None)
    if n_rf is not None:
        hyb = hybrid_from_digital(W, int(n_rf), seed=seed)
        info["hybrid"] = RISHybrid(hyb.baseband.to(out_dtype), hyb.analog.to(out_dtype),
                                   theta.to(out_dtype))
        info["se_hybrid"] = _wsr(ch, hybrid_precoder(hyb.baseband, hyb.analog), theta,
                                 torch.ones_like(w))
    info["time_s"] = time.perf_counter() - t0
    return RISDigital(W.to(out_dtype), theta.to(out_dtype)), info
