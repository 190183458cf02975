r"""Linear precoders: ZF, MMSE (RZF), and the closed-form precoder CFP of paper 000 (6).

All precoders return ``V`` of shape ``[B, K, N_R, N_T]`` in the convention of
:mod:`pegnn.wireless.rates`: ``V[b, k]`` is the paper's :math:`\mathbf{W}_k`, user
``k`` transmits with :math:`\mathbf{W}_k^T`, and the stacked precoder of eq. (7) is
:math:`\mathbf{W} = [\mathbf{W}_1^T, \dots, \mathbf{W}_K^T] \in \mathbb{C}^{N_T \times K N_R}`.
The stacked channel of eq. (10) is
:math:`\mathbf{H} = [\mathbf{H}_1^T, \dots, \mathbf{H}_K^T]^T \in \mathbb{C}^{K N_R \times N_T}`
(``H.reshape(B, K * N_R, N_T)``). Every output meets
:math:`\sum_k \|\mathbf{W}_k\|_F^2 = P_T` exactly (up to rounding).

Precision: :func:`zf` and :func:`mmse` are baselines and run in float64 internally,
returning the dtype of ``H``. :func:`cfp` is the differentiable output layer of the
TECFP network and runs in the dtype of its inputs (pass complex128 for
evaluation-grade accuracy at high SNR).
"""
from __future__ import annotations

import torch

from .rates import _as_complex, _check_channel, _check_finite, _noise, _positive, _real

__all__ = ["normalize_power", "zf", "mmse", "cfp"]


def _stack_to_V(X: torch.Tensor, K: int) -> torch.Tensor:
    """Stacked precoder ``[B, N_T, K*N_S]`` (eq. (7)) -> ``V`` ``[B, K, N_S, N_T]``."""
    B, N_T, KS = X.shape
    return X.reshape(B, N_T, K, KS // K).permute(0, 2, 3, 1)


def _scale_to(X: torch.Tensor, P_T: float, fn: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """γ X with γ = sqrt(P_T / ||X||_F^2) per sample (the γ of eq. (6)), in ``dtype``
    (default X's). A P_T whose square root overflows ``dtype`` (1e300 in complex64) is a
    ``ValueError``, not an infinite precoder."""
    power = X.abs().square().sum(dim=tuple(range(1, X.dim())))
    if not bool((torch.isfinite(power) & (power > 0)).all()):
        bad = (~(torch.isfinite(power) & (power > 0))).nonzero().flatten()[:5].tolist()
        raise ValueError(f"{fn}: precoder has zero or non-finite power for samples {bad}; "
                         f"cannot scale it to P_T")
    gamma = (P_T / power).sqrt()
    Y = (X * gamma.reshape((-1,) + (1,) * (X.dim() - 1)).to(X.dtype)).to(dtype or X.dtype)
    if not bool(torch.isfinite(torch.view_as_real(Y)).all()):
        raise ValueError(f"{fn}: the precoder overflows {Y.dtype} at P_T = {P_T:g}; expected a smaller "
                         f"P_T (rates depend on P_T/noise_var only: scale P_T and noise_var together)")
    return Y


def normalize_power(V: torch.Tensor, P_T: float = 1.0) -> torch.Tensor:
    r"""Scale each sample so that :math:`\sum_k \|\mathbf{W}_k\|_F^2 = P_T`.

    *Shapes*: ``V`` ``[B, K, N_S, N_T]`` complex (any ``[B, ...]`` works) → same shape
    and dtype. Raises ``ValueError`` for a sample with zero or non-finite power.
    """
    fn = "normalize_power"
    V = _as_complex(fn, "V", V)
    if V.dim() < 2 or V.shape[0] == 0:
        raise ValueError(f"{fn}: V must have shape [B, K, N_S, N_T], got {tuple(V.shape)}")
    return _scale_to(V, _positive(fn, "P_T", P_T), fn)


def zf(H: torch.Tensor, P_T: float = 1.0, rcond: float = 1e-10) -> torch.Tensor:
    r"""Zero-forcing precoder
    :math:`\mathbf{W} = \gamma\,\mathbf{H}^H(\mathbf{H}\mathbf{H}^H)^{-1}`, so that
    :math:`\mathbf{H}_k \mathbf{W}_j^T = \gamma\,\delta_{kj}\mathbf{I}`.

    Needs :math:`K N_R \le N_T` and a full-rank stacked channel. A sample whose Gram
    matrix :math:`\mathbf{H}\mathbf{H}^H` has :math:`\lambda_{\min} \le`
    ``rcond`` :math:`\cdot \lambda_{\max}` is rank-deficient: ZF would divide by ~0 and
    return garbage, so ``ValueError`` names those samples (use :func:`mmse` instead).

    *Shapes*: ``H`` ``[B, K, N_R, N_T]`` complex → ``V`` ``[B, K, N_R, N_T]``, dtype of ``H``.
    """
    fn = "zf"
    H = _check_channel(fn, H)
    P_T = _positive(fn, "P_T", P_T)
    B, K, N_R, N_T = H.shape
    if K * N_R > N_T:
        raise ValueError(f"{fn}: zero-forcing needs K*N_R <= N_T, got K*N_R = {K * N_R} > "
                         f"N_T = {N_T}")
    Hs = H.to(torch.complex128).reshape(B, K * N_R, N_T)
    gram = Hs @ Hs.mH
    lam = torch.linalg.eigvalsh(gram)
    bad = lam[:, 0] <= rcond * lam[:, -1].clamp_min(torch.finfo(torch.float64).tiny)
    if bool(bad.any()):
        idx = bad.nonzero().flatten()[:5].tolist()
        raise ValueError(f"{fn}: stacked channel is rank-deficient (cond > 1/rcond = {1 / rcond:.0e}) "
                         f"for samples {idx}; ZF is undefined there, use mmse")
    L = torch.linalg.cholesky(gram)
    # X = Hs^H (Hs Hs^H)^{-1}, computed as (gram^{-1} Hs)^H (gram Hermitian)
    X = torch.cholesky_solve(Hs, L).mH
    return _stack_to_V(_scale_to(X, P_T, fn, H.dtype), K)


def mmse(H: torch.Tensor, noise_var, P_T: float = 1.0) -> torch.Tensor:
    r"""MMSE / regularised ZF precoder

    .. math::
        \mathbf{W} = \gamma\,\mathbf{H}^H\big(\mathbf{H}\mathbf{H}^H
                     + \tfrac{K N_R \sigma^2}{P_T}\mathbf{I}_{K N_R}\big)^{-1},
        \qquad \gamma = \sqrt{P_T / \mathrm{tr}(\tilde{\mathbf{W}}\tilde{\mathbf{W}}^H)},

    which is CFP (6) with :math:`\mathbf{A}_k = \mathbf{U}_k = \mathbf{I}`
    (:math:`\mu = \mathrm{tr}(\mathbf{I}_{K N_R})\sigma^2/P_T`). Always well defined
    (the regulariser makes the system positive definite).

    *Shapes*: ``H`` ``[B, K, N_R, N_T]`` complex, ``noise_var`` float or ``[B]`` →
    ``V`` ``[B, K, N_R, N_T]``, dtype of ``H``.
    """
    fn = "mmse"
    H = _check_channel(fn, H)
    P_T = _positive(fn, "P_T", P_T)
    B, K, N_R, N_T = H.shape
    s2 = _noise(fn, noise_var, B, torch.float64, H.device)
    Hs = H.to(torch.complex128).reshape(B, K * N_R, N_T)
    reg = (K * N_R * s2 / P_T)[:, None, None] * torch.eye(K * N_R, dtype=Hs.dtype, device=H.device)
    L = torch.linalg.cholesky(Hs @ Hs.mH + reg)
    X = torch.cholesky_solve(Hs, L).mH
    return _stack_to_V(_scale_to(X, P_T, fn, H.dtype), K)


def cfp(H: torch.Tensor, A: torch.Tensor, U: torch.Tensor, noise_var,
        P_T: float = 1.0) -> torch.Tensor:
    r"""Closed-form precoder CFP of paper 000, eq. (6)-(10).

    .. math::
        \mathbf{W} = \gamma\tilde{\mathbf{W}},\quad
        \tilde{\mathbf{W}} = \mathbf{H}^H\mathbf{A}^H\mathbf{U}
            \big(\mu\mathbf{I}_{K N_S} + \mathbf{A}\mathbf{H}\mathbf{H}^H\mathbf{A}^H\mathbf{U}\big)^{-1},
        \quad \mu = \mathrm{tr}(\mathbf{U}\mathbf{A}\mathbf{A}^H)\,\sigma^2/P_T,
        \quad \gamma = \sqrt{P_T/\mathrm{tr}(\tilde{\mathbf{W}}\tilde{\mathbf{W}}^H)},

    with :math:`\mathbf{A} = \mathrm{blkdiag}(\mathbf{A}_k)`,
    :math:`\mathbf{U} = \mathrm{blkdiag}(\mathbf{U}_k)`. This is the push-through form
    of :math:`(\mu\mathbf{I}_{N_T} + \mathbf{H}^H\mathbf{A}^H\mathbf{U}\mathbf{A}\mathbf{H})^{-1}
    \mathbf{H}^H\mathbf{A}^H\mathbf{U}`, so only a :math:`K N_S \times K N_S` system is
    solved. Column block ``k`` of :math:`\tilde{\mathbf{W}}` is :math:`\mathbf{W}_k^T`.

    Meaning of the auxiliary tensors (see :func:`pegnn.wireless.wmmse.wmmse_auxiliary`):
    :math:`\mathbf{A}_k` is the Hermitian transpose of user ``k``'s MMSE receive filter
    and :math:`\mathbf{U}_k` its WMMSE weight; with :math:`\mathbf{A}_k = \mathbf{U}_k =
    \mathbf{I}` CFP is the MMSE precoder :func:`mmse`. ``tr(UAA^H)`` is taken by its
    real part (it is real whenever ``U_k`` is Hermitian, as in WMMSE).

    *Shapes*:
        - ``H``: ``[B, K, N_R, N_T]`` complex.
        - ``A``: ``[B, K, N_S, N_R]`` complex (``N_S = N_R`` in the paper).
        - ``U``: ``[B, K, N_S, N_S]`` complex.
        - ``noise_var``: float or ``[B]``; ``P_T`` positive float.
        - returns ``V`` ``[B, K, N_S, N_T]`` in the promoted dtype of ``H, A, U``.

    Raises ``ValueError`` for malformed inputs and when the system is singular for
    some sample (degenerate ``A``/``U``, e.g. all zeros), instead of returning NaN.
    """
    fn = "cfp"
    H = _check_channel(fn, H)
    A = _as_complex(fn, "A", A)
    U = _as_complex(fn, "U", U)
    P_T = _positive(fn, "P_T", P_T)
    B, K, N_R, N_T = H.shape
    if A.dim() != 4 or A.shape[:2] != (B, K) or A.shape[3] != N_R or A.shape[2] == 0:
        raise ValueError(f"{fn}: A must have shape [B, K, N_S, N_R] = [{B}, {K}, N_S, {N_R}] "
                         f"to match H {tuple(H.shape)}, got {tuple(A.shape)}")
    N_S = A.shape[2]
    if tuple(U.shape) != (B, K, N_S, N_S):
        raise ValueError(f"{fn}: U must have shape [B, K, N_S, N_S] = {[B, K, N_S, N_S]} "
                         f"to match A {tuple(A.shape)}, got {tuple(U.shape)}")
    _check_finite(fn, "A", A)
    _check_finite(fn, "U", U)
    dtype = torch.promote_types(torch.promote_types(H.dtype, A.dtype), U.dtype)
    H, A, U = H.to(dtype), A.to(dtype), U.to(dtype)
    s2 = _noise(fn, noise_var, B, _real(dtype), H.device)

    AH = (A @ H).reshape(B, K * N_S, N_T)                                  # A H
    HAU = (H.mH @ A.mH @ U).permute(0, 2, 1, 3).reshape(B, N_T, K * N_S)   # H^H A^H U
    trace = torch.einsum("bkij,bkjl,bkil->b", U, A, A.conj()).real         # tr(U A A^H)
    mu = trace * s2 / P_T
    sys = mu[:, None, None].to(dtype) * torch.eye(K * N_S, dtype=dtype, device=H.device) + AH @ HAU
    X, info = torch.linalg.solve_ex(sys, HAU, left=False)                  # X sys = H^H A^H U
    ok = (info == 0) & torch.isfinite(X).flatten(1).all(-1)
    if not bool(ok.all()):
        idx = (~ok).nonzero().flatten()[:5].tolist()
        raise ValueError(f"{fn}: mu*I + A H H^H A^H U is singular for samples {idx} "
                         f"(degenerate A or U?); expected invertible")
    return _stack_to_V(_scale_to(X, P_T, fn), K)
