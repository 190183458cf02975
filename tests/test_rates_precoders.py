"""Rates (MU-MIMO log-det, MISO SINR, water-filling) and linear precoders (ZF, MMSE, CFP)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pegnn.wireless.precoders import cfp, mmse, normalize_power, zf
from pegnn.wireless.rates import miso_rates, sum_rate, user_rates, waterfilling_capacity
from helpers_random import rayleigh


def power(V):
    return V.abs().square().sum((1, 2, 3))


def naive_rates(H, V, s2):
    """Per-user loop straight from the signal model y_k = H_k sum_j W_j^T s_j + n_k."""
    H, V = H.numpy(), V.numpy()
    B, K, N_R, _ = H.shape
    out = np.zeros((B, K))
    for b in range(B):
        T = [V[b, j].T for j in range(K)]                 # transmit precoder of user j
        for k in range(K):
            omega = s2 * np.eye(N_R, dtype=complex)
            for j in range(K):
                if j != k:
                    omega += H[b, k] @ T[j] @ T[j].conj().T @ H[b, k].conj().T
            S = H[b, k] @ T[k]
            M = np.eye(S.shape[1]) + S.conj().T @ np.linalg.solve(omega, S)
            out[b, k] = np.log2(np.linalg.det(M).real)
    return torch.from_numpy(out)


# ------------------------------------------------------------------------- rates

def test_user_rates_match_signal_model():
    g = torch.Generator().manual_seed(0)
    H, V = rayleigh(g, 5, 3, 2, 6), rayleigh(g, 5, 3, 2, 6) * 0.4
    R = user_rates(H, V, 0.3)
    assert R.shape == (5, 3) and R.dtype == torch.float64
    torch.testing.assert_close(R, naive_rates(H, V, 0.3), rtol=1e-10, atol=1e-10)
    # the precoder is W_k^T, not W_k^H: conjugating V changes the rate
    assert (user_rates(H, V.conj(), 0.3) - R).abs().max() > 1e-3


def test_user_rates_streams_differ_from_antennas():
    g = torch.Generator().manual_seed(1)
    H, V = rayleigh(g, 4, 3, 3, 5), rayleigh(g, 4, 3, 1, 5)       # N_S = 1 < N_R = 3
    torch.testing.assert_close(user_rates(H, V, 0.5), naive_rates(H, V, 0.5), rtol=1e-10, atol=1e-10)


def test_sum_rate_weights_noise_tensor_and_bits():
    g = torch.Generator().manual_seed(2)
    H, V = rayleigh(g, 4, 3, 2, 4), rayleigh(g, 4, 3, 2, 4)
    s2 = torch.tensor([0.1, 1.0, 2.0, 0.5], dtype=torch.float64)
    R = user_rates(H, V, s2)
    torch.testing.assert_close(R[1], user_rates(H[1:2], V[1:2], 1.0)[0])
    w = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(sum_rate(H, V, s2, weights=w), (R * w).sum(-1))
    torch.testing.assert_close(sum_rate(H, V, s2), R.sum(-1))
    # bits: a single-antenna, interference-free link has rate log2(1 + |h w|^2 / σ²)
    h = torch.tensor([[[[2.0 + 0j]]]], dtype=torch.complex128)
    assert user_rates(h, h * 0 + 1, 1.0).item() == pytest.approx(math.log2(5))


def test_float32_rates_close_and_differentiable():
    g = torch.Generator().manual_seed(3)
    H, V = rayleigh(g, 8, 4, 2, 8), rayleigh(g, 8, 4, 2, 8)
    V = normalize_power(V)
    R64 = sum_rate(H, V, 1e-3)
    V32 = V.to(torch.complex64).requires_grad_(True)
    R32 = sum_rate(H.to(torch.complex64), V32, 1e-3)
    assert R32.dtype == torch.float32
    torch.testing.assert_close(R32.double(), R64, rtol=1e-4, atol=1e-4)
    R32.sum().backward()
    assert torch.isfinite(torch.view_as_real(V32.grad)).all()


def test_tiny_pathloss_channels_do_not_underflow():
    g = torch.Generator().manual_seed(4)
    H, V = rayleigh(g, 3, 2, 2, 4), normalize_power(rayleigh(g, 3, 2, 2, 4))
    ref = user_rates(H, V, 0.1)
    scaled = user_rates((H * 1e-12).to(torch.complex64), V.to(torch.complex64), 0.1 * 1e-24)
    torch.testing.assert_close(scaled.double(), ref, rtol=1e-4, atol=1e-4)


def test_miso_is_mimo_with_one_antenna():
    g = torch.Generator().manual_seed(5)
    h, w = rayleigh(g, 6, 4, 5), rayleigh(g, 6, 4, 5)
    torch.testing.assert_close(miso_rates(h, w, 0.2), user_rates(h[:, :, None], w[:, :, None], 0.2))
    k = 1   # explicit SINR of user 1
    gain = lambda a, b: (h[0, a] * w[0, b]).sum().abs() ** 2   # noqa: E731 (no conjugation)
    sinr = gain(k, k) / (sum(gain(k, i) for i in range(4) if i != k) + 0.2)
    assert miso_rates(h, w, 0.2)[0, k].item() == pytest.approx(math.log2(1 + sinr.item()))


def test_waterfilling_against_bisection_on_water_level():
    g = torch.Generator().manual_seed(6)
    H = rayleigh(g, 6, 3, 5)
    for b, s2 in enumerate([0.01, 0.1, 1.0, 10.0, 100.0, 1.0]):
        lam = np.linalg.eigvalsh(H[b].numpy() @ H[b].numpy().conj().T) / s2
        lo, hi = 0.0, 1e6
        for _ in range(200):
            nu = (lo + hi) / 2
            lo, hi = (nu, hi) if np.maximum(nu - 1 / lam, 0).sum() < 2.0 else (lo, nu)
        ref = np.log2(1 + lam * np.maximum(nu - 1 / lam, 0)).sum()
        assert waterfilling_capacity(H[b:b + 1], s2, P_T=2.0).item() == pytest.approx(ref, rel=1e-9)


# ------------------------------------------------------------------------- precoders

def test_zf_nulls_interference():
    g = torch.Generator().manual_seed(7)
    H = rayleigh(g, 10, 4, 2, 12)
    V = zf(H, P_T=2.0)
    assert V.shape == H.shape and V.dtype == torch.complex128
    HT = torch.einsum("bkrn,bjsn->bkjrs", H, V)          # H_k W_j^T
    P = HT.abs().square().sum((-1, -2))                   # [B, K_rx, K_tx]
    sig = P.diagonal(dim1=1, dim2=2)
    interf = (P * (1 - torch.eye(4, dtype=P.dtype))).sum(2)   # off-diagonal, no cancellation
    assert (interf / sig).max() < 1e-6
    assert (interf / sig).max() < 1e-20                    # float64: exact nulls up to rounding
    torch.testing.assert_close(power(V), torch.full((10,), 2.0, dtype=torch.float64))


def test_zf_rank_deficient_and_too_many_streams_raise():
    g = torch.Generator().manual_seed(8)
    H = rayleigh(g, 3, 3, 2, 8)
    H[1, 2] = H[1, 0]                                      # two identical users: rank deficient
    with pytest.raises(ValueError, match="rank-deficient .* for samples \\[1\\]"):
        zf(H)
    with pytest.raises(ValueError, match="K\\*N_R <= N_T"):
        zf(rayleigh(g, 2, 5, 2, 8))


def rzf_reference(H, s2, P_T):
    B, K, N_R, N_T = H.shape
    Hs = H.reshape(B, K * N_R, N_T)
    reg = (K * N_R * s2 / P_T) * torch.eye(K * N_R, dtype=H.dtype)
    W = Hs.mH @ torch.linalg.inv(Hs @ Hs.mH + reg)                          # N_T x K N_R
    W = W * (P_T / W.abs().square().sum((1, 2), keepdim=True)).sqrt()
    return W.reshape(B, N_T, K, N_R).permute(0, 2, 3, 1)                   # column block k = W_k^T


def test_cfp_with_identity_is_rzf_and_mmse():
    g = torch.Generator().manual_seed(9)
    H = rayleigh(g, 6, 3, 2, 8)
    eye = torch.eye(2, dtype=H.dtype).expand(6, 3, 2, 2)
    ref = rzf_reference(H, 0.05, 3.0)
    torch.testing.assert_close(cfp(H, eye, eye, 0.05, P_T=3.0), ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(mmse(H, 0.05, P_T=3.0), ref, rtol=1e-9, atol=1e-9)


def test_cfp_push_through_equals_direct_form():
    g = torch.Generator().manual_seed(10)
    B, K, N_R, N_T = 4, 3, 2, 5
    H, A, X = rayleigh(g, B, K, N_R, N_T), rayleigh(g, B, K, N_R, N_R), rayleigh(g, B, K, N_R, N_R)
    U = X @ X.mH + 0.1 * torch.eye(N_R, dtype=X.dtype)                        # Hermitian PD weights
    s2 = torch.tensor([0.01, 0.1, 1.0, 3.0], dtype=torch.float64)
    V = cfp(H, A, U, s2, P_T=1.5)
    for b in range(B):
        Ab, Ub = torch.block_diag(*A[b]), torch.block_diag(*U[b])
        Hs = H[b].reshape(K * N_R, N_T)
        mu = torch.trace(Ub @ Ab @ Ab.mH).real * s2[b] / 1.5
        W = torch.linalg.solve(mu * torch.eye(N_T, dtype=H.dtype) + Hs.mH @ Ab.mH @ Ub @ Ab @ Hs,
                               Hs.mH @ Ab.mH @ Ub)
        W = W * (1.5 / W.abs().square().sum()).sqrt()
        torch.testing.assert_close(V[b], W.reshape(N_T, K, N_R).permute(1, 2, 0))


def test_power_constraints_all_precoders():
    g = torch.Generator().manual_seed(11)
    H = rayleigh(g, 8, 3, 2, 8, dtype=torch.complex64)
    A, U = rayleigh(g, 8, 3, 2, 2), rayleigh(g, 8, 3, 2, 2)
    for P_T in (1.0, 0.3, 7.0):
        for V in (zf(H, P_T), mmse(H, 0.1, P_T), cfp(H, A, U, 0.1, P_T),
                  normalize_power(rayleigh(g, 8, 3, 2, 8), P_T)):
            assert (power(V.to(torch.complex128)) / P_T - 1).abs().max() < 1e-6
    assert zf(H).dtype == mmse(H, 0.1).dtype == torch.complex64


def test_cfp_degenerate_inputs_raise_instead_of_nan():
    g = torch.Generator().manual_seed(12)
    H = rayleigh(g, 2, 2, 2, 4)
    zero = torch.zeros(2, 2, 2, 2, dtype=H.dtype)
    with pytest.raises(ValueError, match="cfp: "):
        cfp(H, zero, zero, 0.1)
    with pytest.raises(ValueError, match="zero or non-finite power"):
        normalize_power(torch.zeros(2, 2, 2, 4, dtype=H.dtype))


BAD = [
    (lambda H, V: user_rates(H[0], V, 1.0), "H must have shape \\[B, K, N_R, N_T\\]"),
    (lambda H, V: user_rates(H, V[:, :2], 1.0), "V must have shape"),
    (lambda H, V: user_rates(H, V[..., :3], 1.0), "V must have shape"),
    (lambda H, V: sum_rate(H, V, 0.0), "noise_var must be finite and > 0"),
    (lambda H, V: sum_rate(H, V, -1.0), "noise_var must be finite and > 0"),
    (lambda H, V: sum_rate(H, V, torch.ones(5)), "noise_var must be a float or a tensor of shape \\[B\\]"),
    (lambda H, V: sum_rate(H, V, 1.0, weights=torch.ones(4)), "weights must have shape"),
    (lambda H, V: sum_rate(H.masked_fill(H.real > 1, float("nan")), V, 1.0), "NaN or Inf"),
    (lambda H, V: zf(H.masked_fill(H.real > 1, float("inf"))), "NaN or Inf"),
    (lambda H, V: mmse(H, float("nan")), "noise_var must be finite"),
    (lambda H, V: mmse(H, 1.0, P_T=0.0), "P_T must be a positive"),
    (lambda H, V: cfp(H, V[..., :2], V[..., :3, :3], 1.0), "U must have shape"),
    (lambda H, V: cfp(H, V[..., :3], V[..., :2, :2], 1.0), "A must have shape"),
    (lambda H, V: miso_rates(H[:, :, 0], H[:, :2, 0], 1.0), "w must have the shape of h"),
    (lambda H, V: waterfilling_capacity(H, 1.0), "one user"),
    (lambda H, V: user_rates(H.real.long(), V, 1.0), "complex or floating"),
]


@pytest.mark.parametrize("call,msg", BAD)
def test_bad_inputs_raise_one_line_value_error(call, msg):
    g = torch.Generator().manual_seed(13)
    H, V = rayleigh(g, 3, 3, 2, 4), rayleigh(g, 3, 3, 2, 4)
    with pytest.raises(ValueError, match=msg) as e:
        call(H, V)
    assert "\n" not in str(e.value)
