"""pegnn.wireless.ris_ascent (and the RF assignment it shares with the policy): one beam per
UE, per-drop SE ascent."""
from __future__ import annotations

import pytest
import torch
from test_ris import make_channels

from pegnn.policies import RISPolicy
from pegnn.wireless.ris import RISHybrid, hybrid_precoder, precoder_power, rf_assignment, ris_rate, unit_modulus
from pegnn.wireless.ris_single_ue import ris_single_ue
from pegnn.wireless.ris_ascent import ris_ascent, tagged_mrt


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
