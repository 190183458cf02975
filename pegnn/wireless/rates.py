r"""Rate objectives of MU-MIMO / MU-MISO downlink precoding (paper 000, problem (4)).

All rates are in **bits/s/Hz** (``log2``).

Signal model and tensor convention
----------------------------------
A BS with :math:`N_T` antennas serves ``K`` users with :math:`N_R` antennas each.
``H[b, k]`` is the :math:`N_R \times N_T` channel :math:`\mathbf{H}_k` (the same layout
as :mod:`pegnn.wireless.channels`), and ``V[b, k]`` is the paper's
:math:`\mathbf{W}_k \in \mathbb{C}^{N_S \times N_T}` (``N_S`` streams, ``N_S = N_R`` in
the paper). Paper 000 eq. (7) stacks the precoders as
:math:`\mathbf{W} = [\mathbf{W}_1, \dots, \mathbf{W}_K]^T \in \mathbb{C}^{N_T \times K N_R}`,
so user ``k``'s transmit precoding matrix is the **plain transpose**
:math:`\mathbf{T}_k = \mathbf{W}_k^T \in \mathbb{C}^{N_T \times N_S}` and

.. math::
    \mathbf{y}_k = \mathbf{H}_k \sum_{j=1}^K \mathbf{W}_j^T \mathbf{s}_j + \mathbf{n}_k,
    \qquad \mathbf{s}_j \sim \mathcal{CN}(0, \mathbf{I}),\;
    \mathbf{n}_k \sim \mathcal{CN}(0, \sigma^2 \mathbf{I}),

.. math::
    R_k = \log_2\det\big(\mathbf{I} + \mathbf{T}_k^H \mathbf{H}_k^H \boldsymbol\Omega_k^{-1}
          \mathbf{H}_k \mathbf{T}_k\big), \qquad
    \boldsymbol\Omega_k = \sigma^2 \mathbf{I} + \sum_{j \ne k}
          \mathbf{H}_k \mathbf{T}_j \mathbf{T}_j^H \mathbf{H}_k^H .

Why the transpose: the closed form CFP (6) returns the stacked matrix of eq. (7),
whose ``k``-th column block is :math:`\mathbf{W}_k^T`; the rate must score that
matrix. (Eq. (4) prints the rate as :math:`\log\det(\mathbf{I} + \mathbf{W}_k
\mathbf{H}_k^H \boldsymbol\Omega_k^{-1} \mathbf{H}_k \mathbf{W}_k^H)`, i.e. with
:math:`\mathbf{W}_k^H` as precoder, and writes :math:`\mathbf{H}_i` for
:math:`\mathbf{H}_k` inside :math:`\boldsymbol\Omega_k`; read literally, (4) and (7)
differ by a complex conjugation of ``W``. We follow (7), which is also what the
authors' public TENN toolbox evaluates.) The power constraint is
:math:`\sum_k \|\mathbf{W}_k\|_F^2 \le P_T`.

MISO (:func:`miso_rates`) is the case :math:`N_R = N_S = 1` with the same convention:
``h[b, k]`` is the row :math:`\mathbf{h}_k` (so ``H[b, k, 0]``) and ``w[b, j]`` the
beamformer, applied without conjugation, :math:`y_k = \sum_j (\mathbf{h}_k \cdot
\mathbf{w}_j) s_j + n_k` with :math:`\mathbf{h}_k \cdot \mathbf{w}_j = \sum_n h_{k,n}
w_{j,n}`.

Numerics. Channels are divided by :math:`\sigma` first (the noise becomes ``I``:
path-loss-scaled channels stay away from float32 underflow), the interference is
summed over :math:`j \ne k` (never total minus signal: no cancellation at high
SINR), and :math:`\log\det(\mathbf{I} + \mathbf{Z}^H\mathbf{Z})`,
:math:`\mathbf{Z} = \mathbf{L}_k^{-1}\mathbf{H}_k\mathbf{T}_k` with
:math:`\boldsymbol\Omega_k = \mathbf{L}_k\mathbf{L}_k^H`, is taken from a Cholesky
factor. Everything is batched over samples and users and differentiable (the
functions are training losses); they run in the precision of their inputs.
"""
from __future__ import annotations

import math

import torch

__all__ = ["user_rates", "sum_rate", "miso_rates", "waterfilling_capacity"]

_LN2 = math.log(2.0)


# ----------------------------------------------------------------- input checks
# (shared by precoders / wmmse / scheduling: one clear line per user mistake)

def _as_complex(fn: str, name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_complex():
        return x
    if x.is_floating_point():
        return x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)
    raise ValueError(f"{fn}: {name} must be a complex or floating tensor, got dtype {x.dtype}")


def _check_finite(fn: str, name: str, x: torch.Tensor) -> None:
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{fn}: {name} contains NaN or Inf entries; expected finite values")


MAX_CHANNEL = 1e60
"""The largest channel magnitude the precoders and rates take: their Gram products
(|H|^4 times the sizes) must stay inside float64 (~1e308). Channels in any physical unit
are many orders below; rates depend on |H|^2 / noise_var only, so a channel this large
can be scaled down together with the noise."""


def _check_channel(fn: str, H, name: str = "H") -> torch.Tensor:
    """``H`` as a finite complex tensor ``[B, K, N_R, N_T]``, entries at most ``MAX_CHANNEL``."""
    H = _as_complex(fn, name, H)
    if H.dim() != 4 or min(H.shape) == 0:
        raise ValueError(f"{fn}: {name} must have shape [B, K, N_R, N_T] with nonzero sizes, "
                         f"got {tuple(H.shape)}")
    _check_magnitude(fn, name, H)
    return H


def _check_magnitude(fn: str, name: str, H: torch.Tensor) -> None:
    """``H`` finite with entries at most ``MAX_CHANNEL`` (one pass: max |H| is NaN or Inf
    exactly when an entry is)."""
    big = float(H.abs().max())
    if not math.isfinite(big):
        raise ValueError(f"{fn}: {name} contains NaN or Inf entries; expected finite values")
    if big > MAX_CHANNEL:
        raise ValueError(f"{fn}: {name} has entries up to {big:.1e} in magnitude; expected at most "
                         f"{MAX_CHANNEL:.0e} (Gram products would overflow float64): rates depend on "
                         f"|{name}|^2/noise_var only, so scale {name} and noise_var down together")


def _check_precoder(fn: str, H: torch.Tensor, V, name: str = "V") -> torch.Tensor:
    """``V`` as a finite complex tensor ``[B, K, N_S, N_T]`` matching ``H``."""
    V = _as_complex(fn, name, V)
    B, K, _, N_T = H.shape
    if V.dim() != 4 or V.shape[0] != B or V.shape[1] != K or V.shape[3] != N_T or V.shape[2] == 0:
        raise ValueError(f"{fn}: {name} must have shape [B, K, N_S, N_T] = [{B}, {K}, N_S, {N_T}] "
                         f"to match H {tuple(H.shape)}, got {tuple(V.shape)}")
    _check_finite(fn, name, V)
    return V


def _noise(fn: str, noise_var, B: int, dtype: torch.dtype, device) -> torch.Tensor:
    """``noise_var`` (float, 0-d or ``[B]`` tensor, > 0) as a real tensor ``[B]``."""
    if isinstance(noise_var, torch.Tensor):
        if noise_var.is_complex() or not (noise_var.is_floating_point() or noise_var.dtype in (
                torch.int32, torch.int64)):
            raise ValueError(f"{fn}: noise_var must be a real tensor, got dtype {noise_var.dtype}")
        if noise_var.dim() == 0:
            s2 = noise_var.reshape(1).expand(B)
        elif noise_var.dim() == 1 and noise_var.shape[0] == B:
            s2 = noise_var
        else:
            raise ValueError(f"{fn}: noise_var must be a float or a tensor of shape [B] = [{B}], "
                             f"got shape {tuple(noise_var.shape)}")
    elif isinstance(noise_var, (int, float)) and not isinstance(noise_var, bool):
        s2 = torch.full((B,), float(noise_var), dtype=torch.float64)  # no float32 rounding
    else:
        raise ValueError(f"{fn}: noise_var must be a positive float or a tensor [B], "
                         f"got {type(noise_var).__name__}")
    s2 = s2.to(device=device, dtype=dtype)
    if not bool((torch.isfinite(s2) & (s2 > 0)).all()):
        raise ValueError(f"{fn}: noise_var must be finite and > 0, got min {float(s2.min()):.3g}")
    return s2


def _positive(fn: str, name: str, x) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"{fn}: {name} must be a positive finite number (Python float), "
                         f"got {type(x).__name__}")
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"{fn}: {name} must be a positive finite number, got {x!r}")
    return float(x)


def check_reals(fn: str, db: dict | None = None, **values) -> None:
    """Refuse, in one line, a channel parameter that is not a finite real number, and a
    level in dB (the ``db`` mapping) beyond ±300 dB, where 10^(x/10) overflows a float.
    Channel generators call it first: a NaN distance or path-loss constant would
    otherwise give NaN channels, or a misleading error far from its cause."""
    for name, x in {**values, **(db or {})}.items():
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise ValueError(f"{fn}: {name} must be a finite number, got {x!r}")
    for name, x in (db or {}).items():
        if abs(x) > 300:
            raise ValueError(f"{fn}: {name} must be a level within ±300 dB, got {x!r}")


def _non_negative_int(fn: str, name: str, x) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or x < 0:
        raise ValueError(f"{fn}: {name} must be a non-negative int, got {x!r}")
    return x


def _real(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.complex128 else torch.float32


def _not_pd(fn: str, what: str, dtype: torch.dtype) -> ValueError:
    """The error for a covariance Cholesky cannot factor: in single precision an
    ill-conditioned channel (cure: complex128); in double precision an SNR so extreme
    (noise_var 1e-300, P_T 1e300) that its products leave float64's range."""
    why = ("ill-conditioned channel; pass complex128 inputs" if dtype != torch.complex128 else
           "the SNR |H|^2 P_T / noise_var leaves float64's range; expected P_T / noise_var within "
           "about ±150 dB of 1 / |H|^2")
    return ValueError(f"{fn}: {what} is not numerically positive definite in {dtype} ({why})")


def _logdet_pd(M: torch.Tensor, fn: str) -> torch.Tensor:
    """log det of Hermitian positive-definite ``M`` (natural log), via Cholesky."""
    L, info = torch.linalg.cholesky_ex(M)
    if bool((info != 0).any()):
        raise _not_pd(fn, "a covariance matrix", M.dtype)
    return 2 * torch.log(L.diagonal(dim1=-2, dim2=-1).real).sum(-1)


# ----------------------------------------------------------------- MU-MIMO rates

def _rate_terms(H: torch.Tensor, V: torch.Tensor, s2: torch.Tensor, fn: str):
    r"""Per-user quantities of the rate, all with noise normalised to 1.

    Returns ``(S, L_omega, Z, M)`` for channels ``H/σ``: ``S[b,k] = H_k T_k / σ``
    ``[B,K,N_R,N_S]``, the Cholesky factor of :math:`\boldsymbol\Omega_k/\sigma^2`
    ``[B,K,N_R,N_R]``, ``Z = L^{-1} S`` and ``M = I + Z^H Z`` ``[B,K,N_S,N_S]``
    (:math:`\log\det M` is the rate in nats; ``M`` is also the WMMSE weight).
    """
    K, N_R, N_S = H.shape[1], H.shape[2], V.shape[2]
    Hn = H / s2.sqrt().to(H.dtype)[:, None, None, None]
    # HT[b, k, j] = H_k T_j / σ = H_k W_j^T / σ  ([B, K_rx, K_tx, N_R, N_S]; no conjugation)
    HT = torch.einsum("bkrn,bjsn->bkjrs", Hn, V)
    S = HT.diagonal(dim1=1, dim2=2).permute(0, 3, 1, 2)
    off = (1 - torch.eye(K, dtype=H.real.dtype, device=H.device))[None, :, :, None, None]
    eye_r = torch.eye(N_R, dtype=H.dtype, device=H.device)
    omega = eye_r + torch.einsum("bkjrs,bkjts->bkrt", HT * off, HT.conj())
    L, info = torch.linalg.cholesky_ex(omega)
    if bool((info != 0).any()):
        raise _not_pd(fn, "the interference-plus-noise covariance", H.dtype)
    Z = torch.linalg.solve_triangular(L, S, upper=False)
    M = torch.eye(N_S, dtype=H.dtype, device=H.device) + Z.mH @ Z
    return S, L, Z, M


def user_rates(H: torch.Tensor, V: torch.Tensor, noise_var) -> torch.Tensor:
    r"""Per-user MU-MIMO rates :math:`R_k` (bits/s/Hz) of paper 000 problem (4).

    .. math::
        R_k = \log_2\det\big(\mathbf{I} + \mathbf{T}_k^H\mathbf{H}_k^H
              \boldsymbol\Omega_k^{-1}\mathbf{H}_k\mathbf{T}_k\big),\quad
        \mathbf{T}_k = \mathbf{W}_k^T,

    with :math:`\boldsymbol\Omega_k` as in the module docstring. Users are decoded with
    the optimal (MMSE-SIC) receiver treating the other users' streams as noise.

    *Shapes*:
        - ``H``: ``[B, K, N_R, N_T]`` complex64/complex128 (real tensors are promoted).
        - ``V``: ``[B, K, N_S, N_T]`` complex; ``V[b, k]`` is :math:`\mathbf{W}_k`.
        - ``noise_var``: float or ``[B]`` real tensor, :math:`\sigma^2 > 0`.
        - returns ``[B, K]`` float32 (float64 if either input is complex128).
    """
    fn = "user_rates"
    H = _check_channel(fn, H)
    V = _check_precoder(fn, H, V)
    dtype = torch.promote_types(H.dtype, V.dtype)
    H, V = H.to(dtype), V.to(dtype)
    s2 = _noise(fn, noise_var, H.shape[0], _real(dtype), H.device)
    M = _rate_terms(H, V, s2, fn)[3]
    return _logdet_pd(M, fn) / _LN2


def sum_rate(H: torch.Tensor, V: torch.Tensor, noise_var, weights=None) -> torch.Tensor:
    r"""(Weighted) sum rate :math:`\sum_k \omega_k R_k` in bits/s/Hz, objective of (4).

    *Shapes*:
        - ``H`` ``[B, K, N_R, N_T]``, ``V`` ``[B, K, N_S, N_T]``, ``noise_var`` as in
          :func:`user_rates`.
        - ``weights``: ``None`` (all ones), ``[K]`` or ``[B, K]``, finite and >= 0.
        - returns ``[B]`` float32 (float64 for complex128 inputs).
    """
    R = user_rates(H, V, noise_var)
    if weights is None:
        return R.sum(-1)
    return (R * _weights("sum_rate", weights, R)).sum(-1)


def _weights(fn: str, weights, R: torch.Tensor) -> torch.Tensor:
    if not isinstance(weights, torch.Tensor):
        weights = torch.as_tensor(weights)
    B, K = R.shape
    if tuple(weights.shape) not in ((K,), (B, K)):
        raise ValueError(f"{fn}: weights must have shape [K] = [{K}] or [B, K] = [{B}, {K}], "
                         f"got {tuple(weights.shape)}")
    weights = weights.to(device=R.device, dtype=R.dtype)
    if not bool((torch.isfinite(weights) & (weights >= 0)).all()):
        raise ValueError(f"{fn}: weights must be finite and >= 0")
    return weights


def miso_rates(h: torch.Tensor, w: torch.Tensor, noise_var) -> torch.Tensor:
    r"""Per-user MU-MISO rates :math:`\log_2(1 + \mathrm{SINR}_k)` (bits/s/Hz).

    .. math::
        \mathrm{SINR}_k = \frac{|\mathbf{h}_k\cdot\mathbf{w}_k|^2}
                               {\sum_{j\ne k}|\mathbf{h}_k\cdot\mathbf{w}_j|^2 + \sigma^2},
        \qquad \mathbf{h}_k\cdot\mathbf{w}_j = \textstyle\sum_n h_{k,n} w_{j,n}

    (no conjugation: ``h[b, k]`` is the channel row, as ``H[b, k, 0]`` of the MIMO
    layout, so this equals :func:`user_rates` with ``N_R = N_S = 1``).

    *Shapes*:
        - ``h``: ``[B, K, N_T]`` complex; ``w``: ``[B, K, N_T]`` complex (beamformers).
        - ``noise_var``: float or ``[B]``.
        - returns ``[B, K]`` float32 (float64 for complex128 inputs).
        Sum with ``.sum(-1)`` (or weight per user) for the (weighted) sum rate.
    """
    fn = "miso_rates"
    h = _as_complex(fn, "h", h)
    w = _as_complex(fn, "w", w)
    if h.dim() != 3 or min(h.shape) == 0:
        raise ValueError(f"{fn}: h must have shape [B, K, N_T], got {tuple(h.shape)}")
    if tuple(w.shape) != tuple(h.shape):
        raise ValueError(f"{fn}: w must have the shape of h {tuple(h.shape)} ([B, K, N_T]), "
                         f"got {tuple(w.shape)}")
    _check_finite(fn, "h", h)
    _check_finite(fn, "w", w)
    dtype = torch.promote_types(h.dtype, w.dtype)
    s2 = _noise(fn, noise_var, h.shape[0], _real(dtype), h.device)
    # amplitudes divided by σ before squaring: no float32 underflow for tiny gains
    g = torch.einsum("bkn,bjn->bkj", h.to(dtype), w.to(dtype)) / s2.sqrt()[:, None, None]
    P = g.real.square() + g.imag.square()
    sig = P.diagonal(dim1=-2, dim2=-1)
    off = 1 - torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)
    return torch.log2(1 + sig / ((P * off).sum(-1) + 1))


# ----------------------------------------------------------------- single-user capacity

def waterfilling_capacity(H: torch.Tensor, noise_var, P_T: float = 1.0) -> torch.Tensor:
    r"""Capacity of a single-user MIMO link (eigen-beamforming + water-filling), bits/s/Hz.

    .. math::
        C = \max_{\mathrm{tr}\,\mathbf{Q} \le P_T}
            \log_2\det(\mathbf{I} + \mathbf{H}\mathbf{Q}\mathbf{H}^H/\sigma^2)
          = \sum_i \log_2(1 + \lambda_i p_i),\quad p_i = (\nu - 1/\lambda_i)^+,\
            \textstyle\sum_i p_i = P_T,

    where :math:`\lambda_i` are the eigenvalues of :math:`\mathbf{H}^H\mathbf{H}/\sigma^2`.
    The water level :math:`\nu` is exact: with the gains sorted, the number ``m`` of
    active modes is the largest with :math:`\nu_m = (P_T + \sum_{i\le m} 1/\lambda_i)/m
    > 1/\lambda_m`. Used as the ``K = 1`` reference for WMMSE. Computed in float64.

    *Shapes*:
        - ``H``: ``[B, N_R, N_T]`` or ``[B, 1, N_R, N_T]`` complex.
        - ``noise_var``: float or ``[B]``; ``P_T``: positive float.
        - returns ``[B]`` float64.
    """
    fn = "waterfilling_capacity"
    H = _as_complex(fn, "H", H)
    if H.dim() == 4 and H.shape[1] == 1:
        H = H[:, 0]
    if H.dim() != 3 or min(H.shape) == 0:
        raise ValueError(f"{fn}: H must have shape [B, N_R, N_T] or [B, 1, N_R, N_T] "
                         f"(one user), got {tuple(H.shape)}")
    _check_magnitude(fn, "H", H)
    P_T = _positive(fn, "P_T", P_T)
    H = H.to(torch.complex128)
    s2 = _noise(fn, noise_var, H.shape[0], torch.float64, H.device)
    lam = torch.linalg.eigvalsh(H @ H.mH).flip(-1).clamp_min(0) / s2[:, None]  # descending
    inv = torch.where(lam > 0, 1 / lam, torch.full_like(lam, math.inf))
    m = torch.arange(1, lam.shape[-1] + 1, dtype=lam.dtype, device=lam.device)
    nu = (P_T + torch.cumsum(inv, -1)) / m
    active = nu > inv  # true for a prefix of modes
    n_act = active.sum(-1, keepdim=True).clamp_min(1)
    level = nu.gather(-1, n_act - 1)
    # modes with lam = 0 get no power (level - inf would be NaN; an all-zero channel has capacity 0)
    p = torch.where(lam > 0, (level - inv).clamp_min(0), torch.zeros_like(lam))
    return torch.log2(1 + lam * p).sum(-1)
