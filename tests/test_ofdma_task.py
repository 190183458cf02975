"""The P-B OFDMA task (tasks/ofdma.py): the output layer's feasibility and gradient,
equivariance, the drops, a train → evaluate round trip and CLI errors."""
from __future__ import annotations

import json
import math

import pytest
import torch

from pegnn import load_spec
from pegnn.train import model_from_config
from tasks.ofdma import (DEFAULTS, LN2, PBPolicy, allocation, bandwidth_ratio, load, main, model_spec,
                         ofdma_gains, optimum, tight_bandwidth)


def _policy(attention="auto", seed=0):
    torch.manual_seed(seed)
    model = model_from_config(model_spec(load_spec(DEFAULTS["spec"])),
                              {**DEFAULTS["model"], "hidden": 8, "layers": 2, "attention": attention})
    return PBPolicy(model.double())


def test_tight_bandwidth_meets_the_rate_exactly_and_has_the_implicit_gradient():
    d = torch.tensor([1e-300, 1e-30, 1e-8, 1e-4, 0.3, 1.0, 50.0, 1e6], dtype=torch.float64)
    b = tight_bandwidth(d)
    a = (1 + d) * LN2
    # log1p: the rate of a UE that barely clears its floor, without cancellation
    torch.testing.assert_close(b * torch.log1p(a / b) / LN2, torch.ones_like(b), rtol=0, atol=1e-12)
    assert bool(torch.isfinite(b).all()) and bool((b.diff() < 0).all())   # more power share, less bandwidth
    torch.testing.assert_close(b[:3], LN2 / (2 * d[:3]), rtol=1e-6, atol=0)  # b -> ln2 / (2 d) as d -> 0
    # gradcheck's finite differences (step 1e-6) need d well above the step
    assert torch.autograd.gradcheck(tight_bandwidth, (d[3:].clone().requires_grad_(),))


def test_allocation_stays_finite_for_extreme_logits():
    """A UE whose softmax share underflows keeps a finite (huge) bandwidth: a NaN or inf
    here would poison the loss early in training."""
    gamma = ofdma_gains(200, 10, seed=4)
    for gap in (40.0, 80.0, 800.0):
        logits = torch.zeros(200, 10, dtype=torch.float64)
        logits[:, 0] = gap
        q, b = allocation(logits, gamma)
        assert bool(torch.isfinite(b).all()) and bool(torch.isfinite(q).all())
        assert bool((b[:, 1:] > 1e10).all())


def test_allocation_is_feasible_with_tight_constraints_for_any_logits():
    gamma = ofdma_gains(64, 7, seed=5)
    logits = 3 * torch.randn(64, 7, dtype=torch.float64)
    q, b = allocation(logits, gamma)
    torch.testing.assert_close(q.sum(-1), torch.ones(64, dtype=torch.float64))           # budget tight
    assert bool((q > LN2 / gamma).all())                                                 # every rate reachable
    torch.testing.assert_close(b * torch.log2(1 + q * gamma / b), torch.ones_like(b), rtol=0, atol=1e-10)


def test_no_feasible_allocation_beats_the_convex_optimum():
    """The optimum is a lower bound on Σ B; random and equal-share allocations (and an
    untrained GNN) sit above it, and the optimum itself is a fixed point of the output
    layer: its power shares map back to its bandwidths."""
    gamma = ofdma_gains(200, 10, seed=6)
    for logits in (torch.zeros(200, 10), torch.randn(200, 10), 4 * torch.randn(200, 10)):
        assert bool((bandwidth_ratio(allocation(logits, gamma)[1], gamma) >= 1 - 1e-9).all())
    assert bool((bandwidth_ratio(_policy()(gamma)[1], gamma) >= 1 - 1e-9).all())
    q_opt, b_opt = optimum(gamma)
    torch.testing.assert_close(tight_bandwidth(q_opt * gamma / LN2 - 1), b_opt, rtol=1e-8, atol=0)


@pytest.mark.parametrize("attention", ["auto", "all"])
def test_policy_is_permutation_equivariant(attention):
    pol = _policy(attention)
    gamma = ofdma_gains(4, 6, seed=1)
    perm = torch.randperm(6)
    q, b = pol(gamma)
    qp, bp = pol(gamma[:, perm])
    torch.testing.assert_close(qp, q[:, perm])
    torch.testing.assert_close(bp, b[:, perm])
    assert pol(ofdma_gains(3, 13, seed=1))[0].shape == (3, 13)                           # any K


def test_drops_are_reproducible_feasible_and_checked():
    g = ofdma_gains(300, 10, seed=0)
    torch.testing.assert_close(g, ofdma_gains(300, 10, seed=0))
    assert not torch.equal(g, ofdma_gains(300, 10, seed=1))
    assert bool((load(g) < 0.9).all()) and bool((g > 0).all())
    assert bool((load(ofdma_gains(300, 10, seed=0, rho_max=0.2)) < 0.2).all())
    with pytest.raises(ValueError, match="r_min"):
        ofdma_gains(2, 3, 0, r_min=300.0)
    with pytest.raises(ValueError, match="raise P_max_dbm"):
        ofdma_gains(2, 3, 0, P_max_dbm=-60.0)
    with pytest.raises(ValueError, match="load < 1"):
        _policy()(torch.full((1, 3), 1.0, dtype=torch.float64))


def test_train_then_evaluate_round_trip(tmp_path, capsys):
    over = ["train.max_steps=30", "train.val_every=15", "train.progress=false", "data.n_train=512",
            "data.n_val=64", "model.hidden=8", f"run.out={tmp_path}"]
    for att, name in (("auto", "a"), ("all", "b")):
        assert main(["train", *over, f"model.attention={att}", f"run.name={name}"]) == 0
    out = tmp_path / "eval"
    assert main(["evaluate", "--gnn", str(tmp_path / "a" / "policy.pt"), "--gnn-all", str(tmp_path / "b" / "policy.pt"),
                 "--n-test", "50", "--out", str(out)]) == 0
    r = json.loads((out / "eval.json").read_text())
    assert set(r["by_K"]) == {"5", "10", "20", "40"}
    for v in r["by_K"].values():
        assert v["optimum"]["bandwidth_ratio"] == 1.0
        assert v["GNN"]["bandwidth_ratio_mean"] >= 1 - 1e-9 and v["equal share"]["bandwidth_ratio"] >= 1 - 1e-9
        assert math.isfinite(v["attention_minus_plain"]["mean_diff_over_seeds"])
    assert (out / "ofdma.png").stat().st_size > 0


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "channel.r_min=900"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "r_min" in err
    assert main(["train", "model.attention=everywhere"]) == 2
    assert "model.attention" in capsys.readouterr().err
    assert main(["evaluate", "--gnn", str(tmp_path / "missing.pt")]) == 2
    assert "no policy file" in capsys.readouterr().err
