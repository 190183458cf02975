"""pegnn.wireless.ris_ascent (and the RF assignment it shares with the policy): one beam per
UE, per-drop SE ascent, the dual beamforming structure and ascent in it."""
from __future__ import annotations

import pytest
import torch
from test_ris import make_channels

from pegnn.ris_policy import RISPolicy
from pegnn.wireless.ris import RISHybrid, hybrid_precoder, precoder_power, rf_assignment, ris_rate, unit_modulus
from pegnn.wireless.ris_single_ue import ris_single_ue
from pegnn.wireless.ris_ascent import dual_ascent, dual_precoder, ris_ascent, tagged_mrt
from pegnn.wireless.ris import ris_effective_channel


def _feasible(out, M, P_max=1.0):
    assert torch.allclose(out.analog.abs(), torch.ones(()).double(), atol=1e-12)
    assert torch.allclose(out.theta.abs(), torch.ones(()).double(), atol=1e-12)
    p = precoder_power(hybrid_precoder(out.baseband, out.analog))
    assert p.shape[-1] == M and torch.allclose(p, torch.full_like(p, P_max), rtol=1e-9)


def test_rf_assignment_is_the_policy_tag():
    a = rf_assignment(2, 3, 6)
    one = torch.tensor([[1., 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0], [0, -1, 0], [0, 0, -1]])
    assert torch.equal(a, torch.block_diag(one, one))
    assert torch.equal(RISPolicy.rf_tag(2, 3, 6), a)
    assert torch.equal(rf_assignment(1, 3, 2), one[:2])          # fewer chains than UEs: UE 2 gets none


def test_tagged_mrt_gives_each_ue_an_equal_gain_beam():
    ch = make_channels(4, 2, 2, 6, 5, seed=1, P_max=2.0)
    out = tagged_mrt(ch, N_RF=4)
    _feasible(out, 2, P_max=2.0)
    assert torch.equal(out.theta, torch.ones_like(out.theta))
    # chains r and r + K carry opposite phases and opposite baseband signs: column k of BS m
    # is the equal-gain (phase-only) beam on UE k's effective row at theta = 1
    W = hybrid_precoder(out.baseband, out.analog)
    h = ch.h_d + (ch.h_r.unsqueeze(1) @ ch.G)                      # theta = 1: rows [B, M, U, N_B]
    for m in range(2):
        want = unit_modulus(h[:, m, 2 * m:2 * m + 2].conj()).transpose(-2, -1)   # [B, N_B, K]
        got = W[:, m] / W[:, m].abs()
        assert torch.allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("fix_theta", [False, True])
def test_ascent_improves_keeps_feasible_and_reports_its_se(fix_theta):
    ch = make_channels(5, 1, 3, 8, 6, seed=2, kappa=10.0, direct=0.1)
    start = tagged_mrt(ch, 6)
    out, info = ris_ascent(ch, start, iters=200, fix_theta=fix_theta)
    _feasible(out, 1)
    assert (info["se"] >= info["se_init"]).all() and info["se"].mean() > 1.2 * info["se_init"].mean()
    assert torch.allclose(ris_rate(ch, out), info["se"], rtol=1e-10)
    assert torch.allclose(info["se_init"], ris_rate(ch, start), rtol=1e-10)
    if fix_theta:
        assert torch.equal(out.theta, start.theta.to(out.theta.dtype))


def test_ascent_drops_do_not_interact():
    ch = make_channels(4, 1, 2, 4, 3, seed=3)
    start = tagged_mrt(ch, 4)
    _, info = ris_ascent(ch, start, iters=100)
    one = type(ch)(*(x[1:2] for x in ch[:3]), ch.noise_var, ch.P_max)
    _, info1 = ris_ascent(one, RISHybrid(*(x[1:2] for x in start)), iters=100)
    assert torch.allclose(info1["se"], info["se"][1:2], rtol=1e-9)


def test_ascent_reaches_the_one_ue_optimum():
    # one UE, N_RF = 2 chains: any beam is realisable, so the optimum is MRT with the
    # phases of ris_single_ue's minorise-maximise (8 starts); one ascent from theta = 1 gets there
    ch = make_channels(8, 1, 1, 4, 4, seed=4, kappa=3.0, direct=0.3)
    _, info = ris_ascent(ch, tagged_mrt(ch, 2), iters=1500)
    best = ris_single_ue(ch).se[:, 0]
    assert (info["se"] <= best + 1e-6).all()
    assert info["se"].mean() >= 0.995 * best.mean()


def test_ascent_refuses_bad_starts():
    ch = make_channels(2, 1, 2, 4, 3, seed=5)
    good = tagged_mrt(ch, 4)
    with pytest.raises(ValueError, match="do not fit"):
        ris_ascent(ch, good._replace(theta=good.theta[:, :2]))
    with pytest.raises(ValueError, match="NaN"):
        ris_ascent(ch, good._replace(baseband=good.baseband * float("nan")))
    with pytest.raises(ValueError, match="iters"):
        ris_ascent(ch, good, iters=-1)
    with pytest.raises(ValueError, match="init must be"):
        ris_ascent(ch, good._replace(theta=None))        # e.g. hybrid_from_digital's output


def test_ascent_from_the_shipped_policy_on_path_loss_sized_channels():
    # the README line: channels of path-loss size (|h| ~ 1e-6, noise -80 dBm), a float32
    # policy output as the start; the step size must not depend on that scale
    import pegnn
    ris = pegnn.pretrained("ris_gnn")
    ch = pegnn.wireless.ris_channels(6, seed=0, **ris.channels)
    start = ris(*ch)
    out, info = ris_ascent(ch, start, iters=30)
    assert torch.allclose(info["se_init"], ris_rate(ch, start).double(), rtol=1e-5)
    assert (info["se"] >= info["se_init"]).all() and (info["se"] > info["se_init"]).any()
    assert torch.allclose(ris_rate(ch, out), info["se"], rtol=1e-9)


# ----------------------------------------------------------------------------- dual form
def _simplex(g, *shape):
    return torch.rand(*shape, generator=g, dtype=torch.float64).add(0.1).softmax(-1)


def test_dual_precoder_matches_its_definition_per_bs():
    # brute force: A_m = I + (P/sigma^2) sum over every UE u of q_u h_mu h_mu^H, column k of
    # BS m = sqrt(p_mk P) A_m^{-1} h_m,mK+k / norm, one explicit inverse per (drop, BS)
    ch = make_channels(2, 2, 2, 3, 4, seed=6, noise_var=0.5, P_max=2.0)
    g = torch.Generator().manual_seed(7)
    theta = unit_modulus(torch.complex(*torch.randn(2, 2, 4, generator=g, dtype=torch.float64)))
    h = ris_effective_channel(ch, theta)                                  # [B, M, U, N_B] rows
    q, p = _simplex(g, 2, 2, 2), _simplex(g, 2, 2, 2)
    W = dual_precoder(h, q, p, 2.0, 0.5)
    for b in range(2):
        for m in range(2):
            A = torch.eye(3, dtype=h.dtype)
            for u in range(4):
                col = h[b, m, u].conj()
                A = A + (2.0 / 0.5) * q[b, u // 2, u % 2] * torch.outer(col, col.conj())
            for k in range(2):
                v = torch.linalg.inv(A) @ h[b, m, 2 * m + k].conj()
                want = (p[b, m, k] * 2.0).sqrt() * v / v.norm()
                assert torch.allclose(W[b, m, :, k], want, atol=1e-12)
    assert torch.allclose(W.abs().square().sum((-2, -1)), torch.full((2, 2), 2.0, dtype=torch.float64))


def test_dual_precoder_limits_mrt_and_zf_and_is_equivariant():
    g = torch.Generator().manual_seed(8)
    rows = lambda *s: torch.complex(*torch.randn(2, *s, generator=g, dtype=torch.float64))
    h1 = rows(3, 1, 1, 4)                                               # one UE: MRT
    W = dual_precoder(h1, torch.ones(3, 1, 1, dtype=torch.float64), torch.ones(3, 1, 1, dtype=torch.float64),
                      1.0, 1.0)
    row = h1[:, 0, 0]                                                    # [B, N_B]
    assert torch.allclose(W[:, 0, :, 0], row.conj() / row.norm(dim=-1, keepdim=True), atol=1e-12)
    h = rows(3, 1, 3, 5)                                                # high SNR: zero forcing
    q = torch.full((3, 1, 3), 1 / 3, dtype=torch.float64)
    R = (h[:, 0] @ dual_precoder(h, q, q, 1e10, 1.0)[:, 0]).abs()       # [B, U, K] received amplitudes
    off = R * (1 - torch.eye(3, dtype=torch.float64))
    assert (off.amax((-2, -1)) < 1e-4 * R.diagonal(dim1=-2, dim2=-1).amin(-1)).all()
    # UEs permuted with their powers permute the columns; antennas permuted permute the rows
    pu, pa = torch.tensor([2, 0, 1]), torch.tensor([4, 1, 3, 0, 2])
    p, q2 = _simplex(g, 3, 1, 3), _simplex(g, 3, 1, 3)
    W = dual_precoder(h, q2, p, 3.0, 0.3)
    W_u = dual_precoder(h[:, :, pu], q2[..., pu], p[..., pu], 3.0, 0.3)
    W_a = dual_precoder(h[..., pa], q2, p, 3.0, 0.3)
    assert torch.allclose(W_u, W[..., pu], atol=1e-12) and torch.allclose(W_a, W[:, :, pa], atol=1e-12)


@pytest.mark.parametrize("N_RF", [6, 4])
def test_dual_ascent_climbs_and_returns_a_feasible_hybrid(N_RF):
    ch = make_channels(4, 1, 3, 8, 6, seed=9, kappa=10.0, direct=0.1)
    out, info = dual_ascent(ch, N_RF, iters=150)
    _feasible(out, 1)
    assert (info["se_digital"] >= info["se_init"]).all() and info["se_digital"].mean() > info["se_init"].mean()
    assert torch.allclose(ris_rate(ch, out), info["se"], rtol=1e-10)
    if N_RF == 6:     # N_RF >= 2K: the two-chains-per-stream realisation is exact
        assert torch.allclose(info["se"], info["se_digital"], rtol=1e-9)
    else:             # fewer chains: an approximation of it (the best iterate is no optimum, so the
        # approximation may land a little above it as well as below: measured within 0.1 %)
        assert ((info["se"] - info["se_digital"]).abs() < 0.01 * info["se_digital"]).all()
    assert torch.allclose(info["p"].sum(-1), torch.ones(4, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="iters"):
        dual_ascent(ch, N_RF, iters=-1)
