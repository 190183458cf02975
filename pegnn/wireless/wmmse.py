r"""WMMSE sum-rate precoding (Shi, Razaviyayn, Luo, He, IEEE TSP 2011) for problem (4).

Notation (Shi et al., in this package's convention ``T_k = V[b, k]^T``, see
:mod:`pegnn.wireless.rates`): receive filter :math:`\mathbf{F}_k \in \mathbb{C}^{N_R\times N_S}`,
weight :math:`\mathbf{\Xi}_k \in \mathbb{C}^{N_S\times N_S}` (Shi's :math:`\mathbf{W}_k`,
renamed to avoid a clash with the paper's precoder :math:`\mathbf{W}_k`),
:math:`\mathbf{C}_k = \sum_j \mathbf{H}_k\mathbf{T}_j\mathbf{T}_j^H\mathbf{H}_k^H + \sigma^2\mathbf{I}`.
One iteration:

1. :math:`\mathbf{F}_k = \mathbf{C}_k^{-1}\mathbf{H}_k\mathbf{T}_k` (MMSE receiver);
2. :math:`\mathbf{\Xi}_k = \mathbf{E}_k^{-1}`,
   :math:`\mathbf{E}_k = \mathbf{I} - \mathbf{F}_k^H\mathbf{H}_k\mathbf{T}_k`
   (so :math:`\log_2\det\mathbf{\Xi}_k = R_k`);
3. :math:`\mathbf{T}_k = (\sum_j \mathbf{H}_j^H\mathbf{F}_j\mathbf{\Xi}_j\mathbf{F}_j^H\mathbf{H}_j
   + \mu\mathbf{I})^{-1}\mathbf{H}_k^H\mathbf{F}_k\mathbf{\Xi}_k`, with :math:`\mu \ge 0` the
   smallest value meeting :math:`\sum_k\|\mathbf{T}_k\|_F^2 \le P_T` (Shi's bisection).

Implementation of step 3. With :math:`\mathbf{\Xi}_k = \mathbf{L}_k\mathbf{L}_k^H` and
:math:`\mathbf{G} = [(\mathbf{L}_k^H\mathbf{F}_k^H\mathbf{H}_k)]_k \in \mathbb{C}^{KN_S\times N_T}`,
the precoder is :math:`\mathbf{G}^H(\mathbf{G}\mathbf{G}^H + \mu\mathbf{I})^{-1}\mathrm{blkdiag}(\mathbf{L}_k^H)`;
one eigendecomposition :math:`\mathbf{G}\mathbf{G}^H = \mathbf{Q}\boldsymbol\Lambda\mathbf{Q}^H`
(size :math:`KN_S`, not :math:`N_T`) gives the power in closed form,
:math:`P(\mu) = \sum_i \lambda_i c_i/(\lambda_i+\mu)^2`, with
:math:`c_i = \|[\mathbf{Q}^H\mathrm{blkdiag}(\mathbf{L}_k^H)]_{i,:}\|^2`. :math:`\mu = 0` when
:math:`P(0^+) \le P_T` (then the minimum-norm solution), else bisection on
:math:`[0, \sqrt{\sum_i\lambda_i c_i/P_T}]` (the upper end always satisfies the budget)
until the bracket is below ``1e-12`` relative (at most 64 halvings); the upper end is
kept, so the power is :math:`\le P_T` and short of it by a relative ~1e-12.

Everything runs in float64/complex128, batched over samples; each sample stops on its
own when its sum rate changes by less than ``tol`` (bits/s/Hz) in one iteration (paper
000 Sec. V: 300 iterations, ``1e-4``), and the loop ends when all have stopped.
"""
from __future__ import annotations

import torch

from .precoders import _stack_to_V, mmse
from .rates import (_LN2, _as_complex, _check_channel, _check_finite, _check_precoder, _noise,
                    _non_negative_int, _positive, _rate_terms, _real)

__all__ = ["wmmse", "wmmse_best_of", "wmmse_auxiliary", "cfp_refine"]

_BISECT_RTOL = 1e-12
_BISECT_MAX = 64


def _filters(H, V, s2, fn):
    """Receive filters (scaled by σ), weight Cholesky factors and rates of ``V``.

    Returns ``(Fs, Lw, rate)``: ``Fs[b,k] = σ F_k L_k`` ``[B,K,N_R,N_S]`` (the only
    combination step 3 needs), ``Lw`` the Cholesky factor of the weight
    :math:`\\Xi_k = I + Z^H Z` and the sum rate ``[B]`` in bits.
    """
    _, L_om, Z, M = _rate_terms(H, V, s2, fn)
    Lw = torch.linalg.cholesky(M)
    # Woodbury: F = C^{-1} H T = Ω^{-1} H T Ξ^{-1}, so with Ξ = L L^H,
    # F L = Ω^{-1} (H T) L^{-H}. In the σ-normalised quantities of _rate_terms
    # (Ω/σ² = L_Ω L_Ω^H, Z = L_Ω^{-1} H T / σ) this is σ F L = L_Ω^{-H} Z L^{-H}.
    Y = torch.linalg.solve_triangular(L_om.mH, Z, upper=True)
    Fs = torch.linalg.solve_triangular(Lw.mH, Y, upper=True, left=False)
    rate = 2 * torch.log(Lw.diagonal(dim1=-2, dim2=-1).real).sum((-1, -2)) / _LN2
    return Fs, Lw, rate


def _precoder_step(H, Fs, Lw, s2, P_T):
    """Step 3 of the iteration (see module docstring); returns ``V`` ``[B,K,N_S,N_T]``."""
    B, K, N_R, N_T = H.shape
    N_S = Lw.shape[-1]
    KS = K * N_S
    sigma = s2.sqrt().to(H.dtype)[:, None, None, None]
    # G_k = L_k^H F_k^H H_k = (σ F_k L_k)^H (H_k / σ)
    G = (Fs.mH @ (H / sigma)).reshape(B, KS, N_T)
    lam, Q = torch.linalg.eigh(G @ G.mH)
    lam = lam.clamp_min(0)
    # Pm = Q^H blkdiag(L_k^H), block by block (no dense block-diagonal matrix)
    Pm = torch.einsum("bikj,bkjl->bikl", Q.mH.reshape(B, KS, K, N_S), Lw.mH).reshape(B, KS, KS)
    c = Pm.abs().square().sum(-1)                                           # [B, KS]
    pos = lam > 1e-12 * lam[:, -1:].clamp_min(torch.finfo(lam.dtype).tiny)
    lam_safe = torch.where(pos, lam, torch.ones_like(lam))
    p0 = torch.where(pos, c / lam_safe, torch.zeros_like(c)).sum(-1)       # P(0+), min-norm
    need = p0 > P_T                                                          # μ > 0 required
    lo = torch.zeros_like(p0)
    hi = ((lam * c).sum(-1) / P_T).sqrt()                                   # P(hi) <= P_T
    for _ in range(_BISECT_MAX):
        if not bool(((hi - lo) > _BISECT_RTOL * hi)[need].any()):
            break
        mid = 0.5 * (lo + hi)
        over = (lam * c / (lam + mid[:, None]).square()).sum(-1) > P_T
        lo = torch.where(over, mid, lo)
        hi = torch.where(over, hi, mid)
    mu = torch.where(need, hi, torch.zeros_like(hi))[:, None]
    inv = torch.where(need[:, None], 1 / (lam + mu).clamp_min(torch.finfo(lam.dtype).tiny),
                      torch.where(pos, 1 / lam_safe, torch.zeros_like(lam)))
    X = G.mH @ Q @ (inv[:, :, None].to(H.dtype) * Pm)                        # [B, N_T, KS]
    return _stack_to_V(X, K)


def _init(fn, init, H, s2, P_T, seed):
    B, K, N_R, N_T = H.shape
    if isinstance(init, torch.Tensor):
        V0 = _as_complex(fn, "init", init)
        if tuple(V0.shape) != (B, K, N_R, N_T):
            raise ValueError(f"{fn}: an init tensor must have shape [B, K, N_R, N_T] = "
                             f"{[B, K, N_R, N_T]}, got {tuple(V0.shape)}")
        _check_finite(fn, "init", V0)
        V0 = V0.to(torch.complex128)
    elif init == "mmse":
        return mmse(H, s2, P_T)
    elif init == "random":
        gen = torch.Generator(device="cpu")
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(int(seed))
        # sample-major draw: the first b samples do not depend on B (best-of restarts
        # and sub-batches reproduce single runs with the same seed)
        V0 = torch.view_as_complex(torch.randn((B, K, N_R, N_T, 2), generator=gen,
                                               dtype=torch.float64)).to(H.device)
    else:
        raise ValueError(f"{fn}: init must be 'mmse', 'random' or a tensor [B, K, N_R, N_T], "
                         f"got {init!r}")
    power = V0.abs().square().sum((1, 2, 3))
    if not bool((power > 0).all()):
        raise ValueError(f"{fn}: init has zero power for some sample; expected a nonzero precoder")
    return V0 * (P_T / power).sqrt()[:, None, None, None]


def wmmse(H: torch.Tensor, noise_var, init="mmse", max_iter: int = 300, tol: float = 1e-4,
          P_T: float = 1.0, seed=None, return_history: bool = False):
    r"""WMMSE precoding (Shi et al. 2011), batched, per-sample stopping.

    Parameters
    ----------
    init : ``"mmse"`` (the MMSE precoder, paper's WMMSE-MMSEInit), ``"random"``
        (i.i.d. :math:`\mathcal{CN}(0,1)` entries scaled to ``P_T``, WMMSE-RandInt;
        drawn from a CPU generator seeded with ``seed``, fresh entropy if ``None``) or a
        tensor ``[B, K, N_R, N_T]`` (scaled to ``P_T``).
    max_iter, tol : at most ``max_iter`` iterations; a sample stops after the first
        iteration that changes its sum rate by less than ``tol`` bits/s/Hz.

    Returns ``(V, info)``. ``info`` holds ``iterations`` ``[B]`` int64 (precoder updates
    made), ``sum_rate`` ``[B]`` (bits/s/Hz of ``V``), ``converged`` ``[B]`` bool
    (stopped by ``tol`` rather than ``max_iter``) and, with ``return_history``,
    ``history`` ``[B, T+1]`` float64: the sum rate after each iteration ``0..T``
    (``T`` = ``iterations.max()``), the last value repeated after a sample stopped.

    The sum rate is non-decreasing over iterations (a WMMSE property; up to rounding).

    *Shapes*:
        - ``H``: ``[B, K, N_R, N_T]`` complex; ``noise_var``: float or ``[B]``.
        - returns ``V`` ``[B, K, N_R, N_T]`` in the dtype of ``H``; ``info["sum_rate"]``
          in the matching real dtype.
    """
    fn = "wmmse"
    H = _check_channel(fn, H)
    P_T = _positive(fn, "P_T", P_T)
    _non_negative_int(fn, "max_iter", max_iter)
    tol = _positive(fn, "tol", tol)
    B = H.shape[0]
    out_dtype = H.dtype
    H = H.to(torch.complex128)
    s2 = _noise(fn, noise_var, B, torch.float64, H.device)
    V = _init(fn, init, H, s2, P_T, seed).to(torch.complex128)

    Fs, Lw, rate = _filters(H, V, s2, fn)
    iterations = torch.zeros(B, dtype=torch.int64, device=H.device)
    active = torch.ones(B, dtype=torch.bool, device=H.device)
    history = [rate.clone()] if return_history else None
    for _ in range(max_iter):
        idx = active.nonzero().flatten()
        if idx.numel() == 0:
            break
        Vn = _precoder_step(H[idx], Fs[idx], Lw[idx], s2[idx], P_T)
        Fn, Ln, rn = _filters(H[idx], Vn, s2[idx], fn)
        V[idx], Fs[idx], Lw[idx] = Vn, Fn, Ln
        delta = rn - rate[idx]
        rate[idx] = rn
        iterations[idx] += 1
        active[idx[delta.abs() < tol]] = False
        if return_history:
            history.append(rate.clone())
    info = {"iterations": iterations, "sum_rate": rate.to(_real(out_dtype)), "converged": ~active}
    if return_history:
        info["history"] = torch.stack(history, 1)
    return V.to(out_dtype), info


def wmmse_best_of(H: torch.Tensor, noise_var, restarts: int = 10, seed=None, **kwargs):
    r"""Best of ``restarts`` randomly initialised WMMSE runs, per sample.

    All restarts run as one batch of ``restarts * B`` samples (restart ``r`` of sample
    ``b`` is row ``r * B + b``; initialisations drawn from one generator seeded with
    ``seed``). ``kwargs`` go to :func:`wmmse` (``max_iter``, ``tol``, ``P_T``).

    Returns ``(V, info)`` like :func:`wmmse`, plus ``info["best_restart"]`` ``[B]`` and
    ``info["all_sum_rates"]`` ``[B, restarts]``; ``iterations``/``converged`` are those
    of the best run.

    *Shapes*: ``H`` ``[B, K, N_R, N_T]`` → ``V`` ``[B, K, N_R, N_T]``, dtype of ``H``.
    """
    fn = "wmmse_best_of"
    H = _check_channel(fn, H)
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"{fn}: restarts must be a positive int, got {restarts!r}")
    if "init" in kwargs or "return_history" in kwargs:
        raise ValueError(f"{fn}: init/return_history are fixed here (random restarts)")
    B = H.shape[0]
    s2 = _noise(fn, noise_var, B, torch.float64, H.device)
    V, info = wmmse(H.repeat(restarts, 1, 1, 1), s2.repeat(restarts), init="random",
                    seed=seed, **kwargs)
    rates = info["sum_rate"].reshape(restarts, B)
    best = rates.argmax(0)
    rows = best * B + torch.arange(B, device=H.device)
    out = {"sum_rate": rates.max(0).values, "iterations": info["iterations"][rows],
           "converged": info["converged"][rows], "best_restart": best, "all_sum_rates": rates.T}
    return V[rows], out


def wmmse_auxiliary(H: torch.Tensor, V: torch.Tensor, noise_var):
    r"""Auxiliary tensors ``(A, U)`` of CFP (6) that reproduce a WMMSE precoder.

    .. math::
        \mathbf{A}_k = \mathbf{F}_k^H,\qquad \mathbf{U}_k = \mathbf{\Xi}_k
        = (\mathbf{I} - \mathbf{F}_k^H\mathbf{H}_k\mathbf{T}_k)^{-1},

    the receive filter and weight of steps 1-2 computed from ``V``. Why this pairing:
    with them, :math:`\mathbf{H}^H\mathbf{A}^H\mathbf{U} = [\mathbf{H}_k^H\mathbf{F}_k\mathbf{\Xi}_k]_k`
    and, by the push-through identity, CFP's :math:`\tilde{\mathbf{W}}` is
    :math:`(\mu\mathbf{I} + \sum_j\mathbf{H}_j^H\mathbf{F}_j\mathbf{\Xi}_j\mathbf{F}_j^H\mathbf{H}_j)^{-1}
    [\mathbf{H}_k^H\mathbf{F}_k\mathbf{\Xi}_k]_k`, i.e. WMMSE step 3. At a WMMSE fixed
    point with the power constraint active, multiplying step 3 by
    :math:`\mathbf{T}_k^H(\cdot)` and summing over ``k`` gives
    :math:`\mu P_T = \sigma^2\sum_k\mathrm{tr}(\mathbf{\Xi}_k\mathbf{F}_k^H\mathbf{F}_k)
    = \sigma^2\,\mathrm{tr}(\mathbf{U}\mathbf{A}\mathbf{A}^H)`, which is CFP's :math:`\mu`;
    so ``cfp(H, A, U, noise_var)`` returns the converged WMMSE precoder (``γ = 1``).
    (Paper 000 calls :math:`\mathbf{A}_k` Hermitian; the receive filter is not, in
    general; ``U_k`` is Hermitian positive definite.)

    *Shapes*: ``H`` ``[B, K, N_R, N_T]``, ``V`` ``[B, K, N_S, N_T]``, ``noise_var`` float
    or ``[B]`` → ``A`` ``[B, K, N_S, N_R]``, ``U`` ``[B, K, N_S, N_S]``, dtype of ``H``.
    """
    fn = "wmmse_auxiliary"
    H = _check_channel(fn, H)
    V = _check_precoder(fn, H, V)
    out_dtype = H.dtype
    H, V = H.to(torch.complex128), V.to(torch.complex128)
    s2 = _noise(fn, noise_var, H.shape[0], torch.float64, H.device)
    Fs, Lw, _ = _filters(H, V, s2, fn)
    sigma = s2.sqrt().to(H.dtype)[:, None, None, None]
    F = torch.linalg.solve_triangular(Lw, Fs / sigma, upper=False, left=False)  # (σ F L) L^{-1} / σ
    Xi = Lw @ Lw.mH
    return F.mH.to(out_dtype), Xi.to(out_dtype)


def cfp_refine(H: torch.Tensor, V: torch.Tensor, noise_var, steps: int, P_T: float = 1.0) -> torch.Tensor:
    r"""``steps`` WMMSE iterations in the closed form CFP (6) of paper 000, from ``V``.

    One step is :math:`(\mathbf{A}, \mathbf{U}) \leftarrow` :func:`wmmse_auxiliary`
    :math:`(\mathbf{H}, \mathbf{V})` (WMMSE steps 1-2: receive filters and weights, eqs.
    (8)-(9)), then :math:`\mathbf{V} \leftarrow` ``cfp(H, A, U)`` (eq. (6): step 3 with
    the closed-form :math:`\mu = \mathrm{tr}(\mathbf{UAA}^H)\sigma^2/P_T` and the scaling
    :math:`\gamma` instead of Shi's bisection). A converged WMMSE precoder is a fixed
    point (see :func:`wmmse_auxiliary`). Unlike :func:`wmmse` there is no stopping
    rule and no bisection, so the map is differentiable: a TECFP can be trained through
    it (``policy.refine`` in ``tasks/precoding.py``). Every step is equivariant to the
    permutations of eq. (11), so a refined TECFP keeps its symmetry.

    Why it pays: from the TEPN's CFP, 3 steps reach 0.978 and 5 steps 0.988 of
    WMMSE-MMSEInit's average sum rate (UMa, (32, 8, 2), 0-40 dB) at ~0.05 ms per step and
    drop; the same steps from MMSE reach 0.809 / 0.874 / 0.904 after 1 / 3 / 5 (and MMSE +
    10 exact WMMSE iterations 0.834).

    *Shapes*: ``H`` ``[B, K, N_R, N_T]``, ``V`` ``[B, K, N_S, N_T]``, ``noise_var`` float
    or ``[B]`` → ``V`` ``[B, K, N_S, N_T]`` in the dtype of ``V`` (power ``P_T``), computed
    in complex128.
    """
    _non_negative_int("cfp_refine", "steps", steps)
    from .precoders import cfp
    if steps == 0:
        return V
    # complex128 throughout: the steps invert C_k, E_k and a K N_S system each time, and
    # rounding compounds over steps (in complex64 permuted inputs differed by ~5e-3 relative)
    dt, H, V = V.dtype, H.to(torch.complex128), V.to(torch.complex128)
    for _ in range(steps):
        A, U = wmmse_auxiliary(H, V, noise_var)
        V = cfp(H, A, U, noise_var, P_T=P_T)
    return V.to(dt)
