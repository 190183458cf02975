"""The P-C power-control task (tasks/power_control.py) and the complexity helper
(tasks/complexity.py): equivariance, power bounds, CLI errors, FLOP counting."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pegnn import load_spec
from pegnn.train import model_from_config
from tasks.power_control import DEFAULTS, P_MAX, PCPolicy, d2d_channels, load_pc_policy, main, save_pc_policy
from tasks.power_control_eval import attention_gain, compare

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def _policy(attention: str, seed: int = 0) -> PCPolicy:
    torch.manual_seed(seed)
    spec = load_spec(ROOT / "graphs" / "power_control_pc.yaml")
    model = model_from_config(spec, {**DEFAULTS["model"], "hidden": 8, "layers": 2, "attention": attention})
    return PCPolicy(model.double())


def test_channels_seeded_and_physical():
    G = d2d_channels(64, 7, seed=3, dtype=torch.float64)
    assert G.shape == (64, 7, 7) and (G > 0).all()
    assert torch.equal(G, d2d_channels(64, 7, seed=3, dtype=torch.float64))
    assert not torch.equal(G, d2d_channels(64, 7, seed=4, dtype=torch.float64))
    # direct links (10-50 m) are typically much stronger than the cross links
    eye = torch.eye(7, dtype=torch.bool).expand(64, 7, 7)
    assert G[eye].square().median() > 10 * G[~eye].square().median()   # power, median
    with pytest.raises(ValueError, match="d_min"):
        d2d_channels(4, 3, 0, d_min=60.0, d_max=50.0)


@pytest.mark.parametrize("attention", ["auto", "all"])
def test_policy_is_permutation_equivariant_and_bounded(attention):
    pol = _policy(attention)
    assert pol.attention == ([] if attention == "auto" else ["ue"])
    G = d2d_channels(5, 6, seed=1, dtype=torch.float64)
    p = pol(G)
    assert p.dtype == torch.float64 and p.shape == (5, 6)
    assert (p >= 0).all() and (p <= P_MAX).all()
    for s in range(3):
        perm = torch.randperm(6, generator=torch.Generator().manual_seed(s))
        p_perm = pol(G[:, perm][:, :, perm])              # pairs relabelled: G -> G[π][:, π]
        torch.testing.assert_close(p_perm, p[:, perm], rtol=1e-10, atol=1e-12)
    # the same weights run at another K (size generalisation needs no retraining)
    assert pol(d2d_channels(2, 9, seed=2, dtype=torch.float64)).shape == (2, 9)


def test_all_attention_has_more_parameters_than_plan():
    n = lambda pol: sum(x.numel() for x in pol.model.parameters())
    assert n(_policy("all")) > n(_policy("auto"))


def test_save_load_and_compare(tmp_path):
    pol = _policy("auto")
    pol.model.float()
    save_pc_policy(tmp_path / "policy.pt", pol.model, {"seed": 0})
    back = load_pc_policy(tmp_path / "policy.pt")
    G = d2d_channels(16, 5, seed=0)
    torch.testing.assert_close(back(G), pol(G))
    res = compare(G, [back], [back], reps=1)
    assert {"WMMSE-PC", "full power", "random power", "GNN/s0", "GNN-all-attention/s0"} <= set(res)
    # WMMSE is monotone from full power, so it never does worse than full power
    assert (res["WMMSE-PC"]["rate"] >= res["full power"]["rate"] - 1e-6).all()
    gain = attention_gain(res)
    assert gain["mean_diff_over_seeds"] == pytest.approx(0.0, abs=1e-9)     # same policy twice
    assert gain["over_seeds"]["p"] is None                                  # one seed: no test
    with pytest.raises(ValueError, match="no policy file"):
        load_pc_policy(tmp_path / "missing.pt")


def test_seed_t_test_against_textbook_values():
    """t = mean / (s / sqrt(n)) with n - 1 degrees of freedom; the critical value of a
    two-sided 5 % test at 3 degrees of freedom is 3.182 (Student's t table)."""
    from tasks.attention_study import seed_t_test
    r = seed_t_test([0.1, 0.2, 0.3, 0.4])
    assert r["t"] == pytest.approx(0.25 / (math.sqrt(1 / 60) / 2))
    assert r["significant_at_0.05"] and r["p"] < 0.05
    s = math.sqrt(1 / 60) / 2 * 3.182446   # a mean difference exactly at the critical value
    assert seed_t_test([s - 0.15, s - 0.05, s + 0.05, s + 0.15])["p"] == pytest.approx(0.05, abs=1e-5)
    assert not seed_t_test([0.3, -0.1])["significant_at_0.05"]
    assert seed_t_test([0.2])["p"] is None


def test_cli_bad_override_exits_2_with_one_line(capsys):
    assert main(["train", "model.hiden=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.hiden" in err and "Traceback" not in err
    assert main(["train", "model.attention=everywhere"]) == 2
    assert "model.attention" in capsys.readouterr().err
    r = subprocess.run([sys.executable, "-m", "tasks.power_control", "train", "train.nope=1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error:"), r.stderr


def test_evaluate_refuses_swapped_policies(tmp_path, capsys):
    """--gnn takes the plan's GNN and --gnn-all the all-attention one; swapped, the two
    columns of the results would be swapped without a word."""
    for att in ("auto", "all"):
        save_pc_policy(tmp_path / f"{att}.pt", _policy(att).model.float(), {"config": {"model": {"attention": att}}})
    argv = ["evaluate", "--n-test", "10", "--quick", "--out", str(tmp_path / "out")]
    assert main([*argv, "--gnn", str(tmp_path / "all.pt"), "--gnn-all", str(tmp_path / "auto.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--gnn: " in err and "model.attention=all" in err, err
    assert not (tmp_path / "out").exists()


def test_complexity_all_attention_costs_more_flops():
    from tasks.complexity import count_flops, measure
    row = measure("ris_pr", 1, hidden=4, layers=1, batch=1, time_it=False)
    j, a = row["judicious"], row["all"]
    assert j["attention_sets"] == ["ue"] and set(a["attention_sets"]) == {"ue", "rf", "ant_bs", "re"}
    assert a["flops"]["total"] > j["flops"]["total"] > 0
    assert row["ratio_all_over_judicious"]["flops"] > 1.5
    # the attention-pair FLOPs are exactly what the N_s^2 * prod(others) cost model says
    assert j["flops"]["attention_pairwise"] == j["predicted_pairwise"] > 0
    assert a["flops"]["attention_pairwise"] == a["predicted_pairwise"]
    assert row["paper"]["nested_all_attention_flops_per_layer"] > a["flops"]["total"]
    pol = _policy("auto")
    assert count_flops(pol.model, pol.graph(d2d_channels(2, 4, 0, dtype=torch.float64))) > 0
