"""User scheduling (greedy / random), P-C power control (WMMSE) and the P-B OFDMA solver."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pegnn.wireless.power_control import (ofdma_min_bandwidth, ofdma_rates, pc_rates,
                                          wmmse_power_control)
from pegnn.wireless.precoders import mmse, zf
from pegnn.wireless.rates import sum_rate
from pegnn.wireless.scheduling import greedy_schedule, random_schedule, scheduled_sum_rate, swap_refine
from pegnn.wireless.wmmse import wmmse
from helpers_random import rayleigh


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------- scheduling

def test_greedy_selects_k_and_beats_random():
    g = torch.Generator().manual_seed(0)
    B, Kt, k, s2 = 24, 8, 4, 0.05
    H = rayleigh(g, B, Kt, 2, 8)
    H = H * torch.rand(B, Kt, 1, 1, generator=g, dtype=torch.float64).add(0.2)   # unequal gains
    mask = greedy_schedule(H, s2, k, mmse)
    assert mask.shape == (B, Kt) and mask.dtype == torch.bool and (mask.sum(1) == k).all()
    r_greedy = scheduled_sum_rate(H, mask, s2, mmse)
    r_rand = torch.stack([scheduled_sum_rate(H, random_schedule(B, Kt, k, torch.Generator().manual_seed(s)),
                                             s2, mmse) for s in range(5)]).mean(0)
    assert r_greedy.mean() > r_rand.mean()
    assert (r_greedy >= r_rand - 1e-9).float().mean() > 0.8


def test_greedy_first_pick_and_objective_match_manual():
    g = torch.Generator().manual_seed(1)
    H = rayleigh(g, 5, 6, 2, 6)
    mask1 = greedy_schedule(H, 0.1, 1, mmse)
    single = torch.stack([sum_rate(H[:, i:i + 1], mmse(H[:, i:i + 1], 0.1), 0.1) for i in range(6)], 1)
    assert (mask1.float().argmax(1) == single.argmax(1)).all()
    mask = greedy_schedule(H, 0.1, 3, mmse)
    sel = mask.nonzero()[:, 1].reshape(5, 3)
    H_sub = torch.stack([H[b, sel[b]] for b in range(5)])
    torch.testing.assert_close(scheduled_sum_rate(H, mask, 0.1, mmse), sum_rate(H_sub, mmse(H_sub, 0.1), 0.1))
    # greedy with k users nests the greedy with k-1 users
    assert (mask1 <= mask).all()


def test_greedy_order_is_the_brute_force_sequence_of_best_additions():
    """``return_order``: pick s is the user whose addition to picks 0..s-1 gives the
    highest sum rate (checked one sample at a time), and the order spells the mask."""
    g = torch.Generator().manual_seed(3)
    H = rayleigh(g, 4, 6, 2, 6)
    mask, order = greedy_schedule(H, 0.1, 3, mmse, return_order=True)
    assert torch.equal(mask, greedy_schedule(H, 0.1, 3, mmse))
    assert torch.equal(torch.zeros_like(mask).scatter_(1, order, True), mask)
    for b in range(4):
        picked = []
        for _ in range(3):
            rates = {u: float(sum_rate(H[b:b + 1, picked + [u]], mmse(H[b:b + 1, picked + [u]], 0.1), 0.1))
                     for u in range(6) if u not in picked}
            picked.append(max(rates, key=rates.get))
        assert order[b].tolist() == picked


def test_greedy_with_wmmse_and_zf_precoders():
    g = torch.Generator().manual_seed(2)
    H = rayleigh(g, 4, 5, 2, 6)
    mask = greedy_schedule(H, torch.full((4,), 0.1), 2, lambda Hs, s: wmmse(Hs, s, max_iter=20))
    assert (mask.sum(1) == 2).all()
    mask = greedy_schedule(H, 0.1, 3, lambda Hs, s: zf(Hs))   # ZF takes no noise variance
    assert (mask.sum(1) == 3).all()


def test_random_schedule_exact_k_and_seeded():
    m1 = random_schedule(50, 12, 8, torch.Generator().manual_seed(3))
    m2 = random_schedule(50, 12, 8, torch.Generator().manual_seed(3))
    assert (m1.sum(1) == 8).all() and torch.equal(m1, m2)
    assert m1.float().mean(0).min() > 0.3        # every user gets picked sometimes


def test_swap_refine_round_is_the_best_of_the_set_and_its_single_swaps():
    """One round = brute force over the current set and its k (K̃ - k) swaps, one sample
    at a time (ties: current set first, then (i, j) order); rates never decrease;
    rounds = 0 and k = K̃ leave the mask alone; the result permutes with the users."""
    g = torch.Generator().manual_seed(5)
    B, Kt, k = 6, 6, 3
    H = rayleigh(g, B, Kt, 2, 4)
    mask = random_schedule(B, Kt, k, torch.Generator().manual_seed(0))
    one = swap_refine(H, 0.05, mask, mmse)

    def rate(b, users):
        Hs = H[b:b + 1, sorted(users)]
        return float(sum_rate(Hs, mmse(Hs, 0.05), 0.05))
    for b in range(B):
        cur = mask[b].nonzero()[:, 0].tolist()
        cands = [cur] + [cur[:i] + [j] + cur[i + 1:] for i in range(k) for j in range(Kt) if j not in cur]
        rates = [rate(b, c) for c in cands]
        best = cands[max(range(len(cands)), key=lambda c: (rates[c], -c))]   # first of the maxima
        assert one[b].nonzero()[:, 0].tolist() == sorted(best)
    before, after = (scheduled_sum_rate(H, m, 0.05, mmse) for m in (mask, one))
    assert (after >= before - 1e-12).all() and (after > before + 1e-9).any()
    three = swap_refine(H, 0.05, mask, mmse, rounds=3)
    assert (scheduled_sum_rate(H, three, 0.05, mmse) >= after - 1e-12).all()
    assert torch.equal(swap_refine(H, 0.05, one, mmse, rounds=2), swap_refine(H, 0.05, mask, mmse, rounds=3))
    assert torch.equal(swap_refine(H, 0.05, mask, mmse, rounds=0), mask)
    full = torch.ones(B, Kt, dtype=torch.bool)
    assert torch.equal(swap_refine(H, 0.05, full, mmse, rounds=2), full)
    p = torch.randperm(Kt, generator=g)
    assert torch.equal(swap_refine(H[:, p], 0.05, mask[:, p], mmse, rounds=2),
                       swap_refine(H, 0.05, mask, mmse, rounds=2)[:, p])


def test_scheduling_bad_inputs():
    g = torch.Generator().manual_seed(4)
    H = rayleigh(g, 3, 5, 2, 4)
    for call, msg in [
        (lambda: greedy_schedule(H, 0.1, 0, mmse), "k must be an int in \\[1, K̃ = 5\\]"),
        (lambda: greedy_schedule(H, 0.1, 6, mmse), "k must be"),
        (lambda: greedy_schedule(H, 0.1, 2, "mmse"), "precoder must be a callable"),
        (lambda: greedy_schedule(H, 0.1, 2, lambda Hs, s: Hs[:, :1]), "precoder must return V"),
        (lambda: scheduled_sum_rate(H, torch.ones(3, 4, dtype=torch.bool), 0.1, mmse), "mask must be"),
        (lambda: scheduled_sum_rate(H, torch.tensor([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]]).bool(),
                                    0.1, mmse), "same number k"),
        (lambda: random_schedule(0, 5, 2), "B must be"),
        (lambda: greedy_schedule(H, -1.0, 2, mmse), "noise_var must be finite and > 0"),
        (lambda: swap_refine(H, 0.1, torch.ones(3, 4, dtype=torch.bool), mmse), "swap_refine: mask must be"),
        (lambda: swap_refine(H, 0.1, torch.tensor([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]]).bool(),
                             mmse), "same number k of users"),
        (lambda: swap_refine(H, 0.1, torch.zeros(3, 5, dtype=torch.bool), mmse), "k must be an int"),
        (lambda: swap_refine(H, 0.1, torch.ones(3, 5, dtype=torch.bool), mmse, rounds=-1), "rounds must be"),
    ]:
        with pytest.raises(ValueError, match=msg):
            call()


# ------------------------------------------------------------------------- P-C

def test_pc_rates_index_order():
    # G[k, j] = amplitude Tx k -> Rx j; Rx 0 hears Tx 1 through G[1, 0]
    G = torch.tensor([[[1.0, 0.0], [0.5, 2.0]]], dtype=torch.float64)
    p = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    R = pc_rates(G, p, 0.1)
    sinr0 = 1.0 * 1.0 / (0.5 ** 2 * 2.0 + 0.1)      # Tx 1 interferes at Rx 0
    sinr1 = 4.0 * 2.0 / (0.0 ** 2 * 1.0 + 0.1)      # Tx 0 does not reach Rx 1
    torch.testing.assert_close(R, torch.tensor([[math.log2(1 + sinr0), math.log2(1 + sinr1)]],
                                               dtype=torch.float64))
    torch.testing.assert_close(pc_rates(G.to(torch.complex128) * 1j, p, 0.1), R)   # modulus only


def pc_instances(gen, B, K):
    G = torch.rand(B, K, K, generator=gen, dtype=torch.float64) * 0.4
    return G + torch.diag_embed(torch.rand(B, K, generator=gen, dtype=torch.float64) + 0.5)


def test_wmmse_power_control_monotone_and_feasible():
    g = torch.Generator().manual_seed(5)
    G = pc_instances(g, 32, 6)
    P_max = torch.linspace(0.5, 2.0, 32, dtype=torch.float64)
    p, info = wmmse_power_control(G, 0.05, P_max, max_iter=200, return_history=True)
    h = info["history"]
    assert ((h[:, 1:] - h[:, :-1]) >= -1e-9).all()
    assert (p >= 0).all() and (p <= P_max[:, None]).all()
    torch.testing.assert_close(info["sum_rate"], pc_rates(G, p, 0.05).sum(-1))
    full = pc_rates(G, P_max[:, None].expand(32, 6), 0.05).sum(-1)   # the initial point
    assert (info["sum_rate"] >= full - 1e-9).all() and info["sum_rate"].mean() > full.mean()


def test_wmmse_power_control_switches_off_a_strong_interferer():
    # pair 1 is weak and interferes strongly with pair 0: the optimum silences it
    G = torch.tensor([[[3.0, 0.1], [2.0, 0.2]]], dtype=torch.float64)
    p, _ = wmmse_power_control(G, 0.01, 1.0, max_iter=500, tol=1e-9)
    grid = torch.linspace(0, 1, 201, dtype=torch.float64)
    P = torch.cartesian_prod(grid, grid)
    best = pc_rates(G.expand(P.shape[0], 2, 2), P, 0.01).sum(-1).max()
    assert pc_rates(G, p, 0.01).sum() >= best - 1e-6
    assert p[0, 1] < 1e-3


def test_power_control_bad_inputs():
    for call, msg in [
        (lambda: pc_rates(torch.ones(2, 3, 4), torch.ones(2, 3), 0.1), "G must have shape \\[B, K, K\\]"),
        (lambda: pc_rates(torch.ones(2, 3, 3), torch.ones(2, 4), 0.1), "p must be a tensor \\[B, K\\]"),
        (lambda: pc_rates(torch.ones(2, 3, 3), -torch.ones(2, 3), 0.1), "p must be >= 0"),
        (lambda: pc_rates(torch.full((2, 3, 3), float("nan")), torch.ones(2, 3), 0.1), "NaN or Inf"),
        (lambda: wmmse_power_control(torch.ones(2, 3, 3), 0.0), "noise_var must be finite and > 0"),
        (lambda: wmmse_power_control(torch.ones(2, 3, 3), 0.1, P_max=-1.0), "P_max must be finite and > 0"),
    ]:
        with pytest.raises(ValueError, match=msg):
            call()


# ------------------------------------------------------------------------- P-B

def test_ofdma_optimum_kkt_and_against_scipy():
    scipy_opt = pytest.importorskip("scipy.optimize")
    g = torch.Generator().manual_seed(6)
    gains = torch.rand(3, 4, generator=g, dtype=torch.float64) + 0.3
    s0, P = 2.0, 12.0
    p, Bw, info = ofdma_min_bandwidth(gains, s0, P, N0=0.5)
    torch.testing.assert_close(ofdma_rates(p, Bw, gains, N0=0.5), torch.full_like(p, s0))  # tight
    assert (info["kkt_residual"] < 1e-9).all() and (info["power_gap"].abs() < 1e-9).all()
    assert (info["power_gap"] >= 0).all()                                   # feasible side
    for b in range(3):                                                      # independent solver
        gb, K = gains[b].numpy(), 4
        cons = [{"type": "ineq", "fun": lambda z, k=k: z[K + k] * np.log2(1 + z[k] * gb[k] / (0.5 * z[K + k])) - s0}
                for k in range(K)] + [{"type": "ineq", "fun": lambda z: P - z[:K].sum()}]
        r = scipy_opt.minimize(lambda z: z[K:].sum(), np.r_[np.full(K, 0.9 * P / K), np.full(K, 5.0)],
                               constraints=cons, bounds=[(1e-9, None)] * (2 * K), method="SLSQP",
                               options={"ftol": 1e-12, "maxiter": 500})
        assert r.success and Bw[b].sum().item() == pytest.approx(r.fun, rel=1e-6)


def test_ofdma_no_feasible_perturbation_is_better():
    g = torch.Generator().manual_seed(7)
    gains = torch.rand(1, 5, generator=g, dtype=torch.float64) + 0.2
    p, Bw, _ = ofdma_min_bandwidth(gains, 1.0, 8.0)
    for _ in range(200):     # move power between users, recompute the bandwidth each needs
        q = (p * torch.exp(0.3 * torch.randn(1, 5, generator=g, dtype=torch.float64)))
        q = q * 8.0 / q.sum()
        # the bandwidth meeting the rate exactly, by bisection (rate increases in B)
        lo, hi = torch.full_like(q, 1e-6), torch.full_like(q, 1e3)
        for _ in range(100):
            mid = (lo + hi) / 2
            ok = ofdma_rates(q, mid, gains) >= 1.0
            hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
        assert hi.sum() >= Bw.sum() * (1 - 1e-9)


def test_ofdma_infeasible_handling():
    gains = torch.tensor([[1.0, 1.0], [0.01, 0.01]], dtype=torch.float64)
    # power needed with unlimited bandwidth: N0 s0 ln2 sum(1/g) = 1.386 and 138.6
    with pytest.raises(ValueError, match="infeasible for samples \\[1\\]"):
        ofdma_min_bandwidth(gains, 1.0, 5.0)
    p, Bw, info = ofdma_min_bandwidth(gains, 1.0, 5.0, infeasible="nan")
    assert info["feasible"].tolist() == [True, False]
    assert torch.isnan(Bw[1]).all() and torch.isfinite(Bw[0]).all()
    with pytest.raises(ValueError, match="g must be > 0|gains g must be > 0"):
        ofdma_min_bandwidth(torch.zeros(1, 2), 1.0, 5.0)
