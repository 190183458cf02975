"""RIS hybrid-precoding task (paper 002 Sec. IV-C/V): the policy's equivariance and
constraints, the shipped checkpoint, and the CLI's error handling. Fast (one thread)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pegnn.models import PEGNN
from pegnn.ris_policy import RISPolicy
from pegnn.policy_files import pretrained
from pegnn.wireless import ris_channels, ris_rate
from pegnn.wireless.ris import hybrid_precoder, normalize_hybrid_power, precoder_power, unit_modulus

ROOT = Path(__file__).resolve().parents[1]
C128 = torch.complex128


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def policy64():
    """A random (untrained) RIS policy in float64: equivariance is exact up to rounding."""
    from tasks.ris_data import task_spec
    torch.manual_seed(0)
    model = PEGNN(task_spec(), hidden=8, layers=2, pattern="P1").double()
    return RISPolicy(model, N_RF=6)


@pytest.fixture(scope="module")
def drops():
    K, N_B, N_RF, N_RE = 3, 7, 6, 5
    gen = torch.Generator().manual_seed(1)
    c = lambda *s: torch.randn(*s, dtype=C128, generator=gen)
    return (c(4, 1, K, N_B), c(4, 1, N_RE, N_B), c(4, K, N_RE), 1.0, 2.0), (K, N_B, N_RF, N_RE)


def _run(policy, ch, tag=None):
    return policy(ch, rf_tag=tag)


def _close(a, b):
    assert torch.allclose(a, b, atol=1e-9, rtol=1e-9), (a - b).abs().max()


def test_equivariance_ue_rf_ant_re(policy64, drops):
    (h_d, G, h_r, nv, P), (K, N_B, N_RF, N_RE) = drops
    tag = RISPolicy.rf_tag(1, K, N_RF, torch.float64)
    base = _run(policy64, (h_d, G, h_r, nv, P), tag)
    g = torch.Generator().manual_seed(2)
    pu, pr, pb, pn = (torch.randperm(n, generator=g) for n in (K, N_RF, N_B, N_RE))
    # UEs (with the rf_tag's UE axis: joint equivariance)
    out = _run(policy64, (h_d[:, :, pu], G, h_r[:, pu], nv, P), tag[:, pu])
    _close(out.baseband, base.baseband[..., pu])
    _close(out.analog, base.analog)
    _close(out.theta, base.theta)
    # RF chains (only the rf_tag carries them)
    out = _run(policy64, (h_d, G, h_r, nv, P), tag[pr])
    _close(out.baseband, base.baseband[:, :, pr])
    _close(out.analog, base.analog[..., pr])
    _close(out.theta, base.theta)
    # BS antennas
    out = _run(policy64, (h_d[..., pb], G[..., pb], h_r, nv, P), tag)
    _close(out.baseband, base.baseband)
    _close(out.analog, base.analog[:, :, pb])
    _close(out.theta, base.theta)
    # RIS elements
    out = _run(policy64, (h_d, G[:, :, pn], h_r[..., pn], nv, P), tag)
    _close(out.baseband, base.baseband)
    _close(out.analog, base.analog)
    _close(out.theta, base.theta[:, pn])


def test_ue_permutation_with_default_tag_permutes_the_precoder(policy64, drops):
    # K divides N_RF: a UE permutation of the default tag is an RF permutation of it,
    # and W_RF W_BB does not see RF permutations.
    (h_d, G, h_r, nv, P), (K, N_B, N_RF, N_RE) = drops
    base = policy64((h_d, G, h_r, nv, P))
    pu = torch.tensor([2, 0, 1])
    out = policy64((h_d[:, :, pu], G, h_r[:, pu], nv, P))
    _close(hybrid_precoder(out.baseband, out.analog), hybrid_precoder(base.baseband, base.analog)[..., pu])
    _close(out.theta, base.theta)
    se = ris_rate((h_d, G, h_r, nv, P), base, per_user=True)
    _close(ris_rate((h_d[:, :, pu], G, h_r[:, pu], nv, P), out, per_user=True), se[:, pu])


def test_rf_tag_breaks_the_rf_tie(policy64, drops):
    (h_d, G, h_r, nv, P), (K, N_B, N_RF, N_RE) = drops
    out = policy64((h_d, G, h_r, nv, P))
    cols = out.analog[0, 0].T                        # [N_RF, N_B]
    assert torch.cdist(cols.real, cols.real).add(torch.eye(N_RF) * 1e3).min() > 1e-6


@pytest.fixture(scope="module", params=["ris_gnn", "ris_gnn_dual"])
def shipped(request):
    return pretrained(request.param)


def test_pretrained_constraints_and_call_forms(shipped):
    ch = ris_channels(6, seed=21, normalize_noise=True, **shipped.channels)
    out = shipped(ch)
    assert out.baseband.shape == (6, 1, 6, 3) and out.analog.shape == (6, 1, 8, 6) and out.theta.shape == (6, 8)
    assert torch.allclose(out.analog.abs(), torch.ones(()), atol=1e-5)
    assert torch.allclose(out.theta.abs(), torch.ones(()), atol=1e-5)
    power = precoder_power(hybrid_precoder(out.baseband, out.analog))
    assert (power <= ch.P_max * (1 + 1e-5)).all()
    for other in (shipped(*ch), shipped(tuple(ch)), shipped(ch.h_d, ch.G, ch.h_r, ch.noise_var, ch.P_max)):
        _close(other.theta.to(C128), out.theta.to(C128))
    # the un-normalised channels (noise -80 dBm) give the same rates
    raw = ris_channels(6, seed=21, **shipped.channels)
    assert torch.allclose(ris_rate(raw, shipped(raw)), ris_rate(ch, out), rtol=1e-4)


def test_readme_snippet_runs_from_the_top_level_package(shipped):
    import pegnn
    ch = pegnn.wireless.ris_channels(8, seed=23, **shipped.channels)
    W_BB, W_RF, theta = shipped(*ch)
    se = pegnn.wireless.ris_rate(ch, (W_BB, W_RF, theta))
    assert se.shape == (8,) and torch.isfinite(se).all() and (se > 0).all()


def test_pretrained_beats_random_feasible_precoding(shipped):
    ch = ris_channels(32, seed=22, normalize_noise=True, **shipped.channels).to(dtype=C128)
    gen = torch.Generator().manual_seed(0)
    rnd = lambda *s: torch.complex(torch.randn(*s, generator=gen, dtype=torch.float64),
                                   torch.randn(*s, generator=gen, dtype=torch.float64))
    an, th = unit_modulus(rnd(32, 1, 8, 6)), unit_modulus(rnd(32, 8))
    bb = normalize_hybrid_power(rnd(32, 1, 6, 3), an, ch.P_max)
    se_random = ris_rate(ch, (bb, an, th)).mean()
    se_gnn = ris_rate(ch, [o.to(C128) for o in shipped(ch)]).mean()
    assert se_gnn > se_random, (se_gnn, se_random)


@pytest.mark.parametrize("argv, needle", [
    (["train", "train.no_such_key=1"], "no_such_key"),
    (["train", "sizes.K=-1"], "sizes.K"),
    (["train", "data.regime=moon"], "data.regime"),
    (["train", "data.power_db=[10,0]"], "data.power_db"),
    (["train", "data.power_db=loud"], "data.power_db"),
    (["train", "data.cascade_db=[5]"], "data.cascade_db"),
    (["train", "data.cascade_db=[0,25]", "data.mixed_N_RE=[8,16]"], "data.cascade_db"),
    (["train", "data.mixed_N_RE=[8,0]"], "data.mixed_N_RE"),
    (["train", "data.mixed_N_RE=many"], "data.mixed_N_RE"),
    (["train", "data.mixed_N_RE=[8,16]", "data.mixed_K=6"], "data.mixed_N_RE"),
    (["fig5", "--sizes", "10,-3"], "--sizes"),
    (["evaluate", "--n-test", "0"], "--n-test"),
    (["evaluate", "--sweep-checkpoint", "N_XX=pegnn/checkpoints/ris_gnn.pt"], "--sweep-checkpoint"),
    (["evaluate", "--sweep-checkpoint", "N_RE=no/such/policy.pt"], "--sweep-checkpoint"),
])
def test_cli_errors_are_one_line_exit_2(argv, needle, capsys):
    from tasks.ris_precoding import main
    try:
        status = main(argv)
    except SystemExit as e:     # flag mistakes (--n-test 0) leave through argparse, as in any argparse CLI
        status = e.code
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err


def test_power_and_cascade_ranges_draw_seeded_per_drop_gains_in_range():
    from tasks.ris_data import sample_dict
    ch = ris_channels(64, seed=1, normalize_noise=True)
    base = sample_dict(ch)
    a, b = sample_dict(ch, [0, 25], seed=3)["P_max"], sample_dict(ch, [0, 25], seed=3)["P_max"]
    db = 10 * torch.log10(a / base["P_max"])
    assert torch.equal(a, b) and not torch.equal(a, sample_dict(ch, [0, 25], seed=4)["P_max"])
    assert db.min() >= -1e-4 and db.max() <= 25 + 1e-4 and db.max() - db.min() > 15, db
    # the cascade gain scales h_r per drop (one factor for all UEs and elements), nothing else
    c = sample_dict(ch, None, seed=3, cascade_db=[0, 20])
    ratio = c["h_r"] / base["h_r"]
    gain = ratio.flatten(1)[:, 0]
    assert torch.allclose(ratio, gain.reshape(-1, *[1] * (ratio.dim() - 1)).expand_as(ratio))
    g_db = 20 * torch.log10(gain.abs())
    assert gain.imag.abs().max() < 1e-6 and g_db.min() >= -1e-3 and g_db.max() <= 20 + 1e-3 and g_db.std() > 3
    assert torch.equal(c["G"], base["G"]) and torch.equal(c["h_d"], base["h_d"]) and torch.equal(c["P_max"], base["P_max"])
    both = sample_dict(ch, [0, 25], seed=3, cascade_db=[0, 20])       # power draws do not move
    assert torch.equal(both["P_max"], a) and torch.equal(both["h_r"], c["h_r"])


def test_mixed_N_RE_splits_evenly_and_batches_one_group_per_RIS_size(tmp_path, monkeypatch):
    from tasks.ris_data import collate, mixed_N_RE_dataset, task_spec
    from tasks.ris_figures import trained_with
    from tasks.ris_precoding import DEFAULTS
    monkeypatch.setenv("PEGNN_CACHE", str(tmp_path))
    sz = DEFAULTS["sizes"]
    ds, counts = mixed_N_RE_dataset(7, 0, sz, "ris", [6, 4, 6])
    assert counts == {4: 4, 6: 3} and len(ds) == 7
    groups = collate(task_spec())([ds[i] for i in range(len(ds))])
    assert sorted((s["G"].shape[0], s["G"].shape[2]) for _, s in groups) == [(3, 6), (4, 4)]
    again, _ = mixed_N_RE_dataset(7, 0, sz, "ris", [4, 6])
    assert all(torch.equal(ds[i]["G"], again[i]["G"]) for i in range(7))     # seeded, cached
    pol = type("P", (), {"info": {"config": {"sizes": sz, "data": {"mixed_N_RE": [16, 8]}}}})()
    assert trained_with(pol) == "K=3, N_B=8, N_RF=6, N_RE in [8, 16]"
    pol.info["config"]["data"] = {"cascade_db": [0, 25]}
    assert trained_with(pol) == "K=3, N_B=8, N_RF=6, N_RE=8, cascaded-link gain +U[0, 25] dB"
    pol.info["config"]["train"] = {"init": "runs/a/policy.pt"}
    assert trained_with(pol).endswith("dB; fine-tune of a/policy.pt")        # a run: named by its folder


def test_fig5_folder_refuses_other_configs_and_merges_parallel_writes(tmp_path):
    from tasks.ris_figures import _check_same_setup, _write_merged
    path = tmp_path / "fig5.json"
    setup = {"regime": "ris", "train": {"max_steps": 600, "grad_clip": None}}
    _check_same_setup(path, {**setup, "runs": {"a|250": {}}}, setup)
    from tasks.ris_figures import fig5_setup      # the problem sizes are part of it (N_RF = 3 runs stay apart)
    from tasks.ris_precoding import DEFAULTS
    cfg = json.loads(json.dumps(DEFAULTS))
    six = fig5_setup(cfg, 500)
    cfg["sizes"]["N_RF"] = 3
    with pytest.raises(ValueError, match=r"sizes.N_RF: 6 there, 3 now"):
        _check_same_setup(path, six, fig5_setup(cfg, 500))
    with pytest.raises(ValueError, match=r"sizes.N_RF: 6 there, 3 now"):     # a file from before sizes were kept
        _check_same_setup(path, {k: v for k, v in six.items() if k != "sizes"}, fig5_setup(cfg, 500))
    _check_same_setup(path, {k: v for k, v in six.items() if k != "sizes"}, six)
    _check_same_setup(path, {"regime": "ris", "train": {"max_steps": 600}}, setup)   # older file: key absent
    with pytest.raises(ValueError, match=r"train.grad_clip: 1.0 there, None now"):
        _check_same_setup(path, {"regime": "ris", "train": {"max_steps": 600, "grad_clip": 1.0}}, setup)
    # two processes, each holding the runs it saw at start plus its own
    _write_merged(path, {**setup, "runs": {"user|250": {"se_ratio": 0.9}}})
    _write_merged(path, {**setup, "runs": {"user|4000": {"se_ratio": 0.95}}})
    runs = json.loads(path.read_text())["runs"]
    assert runs == {"user|250": {"se_ratio": 0.9}, "user|4000": {"se_ratio": 0.95}}
    assert [p.name for p in tmp_path.iterdir()] == ["fig5.json"]
    fresh = tmp_path / "new" / "fig5.json"        # a folder --out's check made and removed again
    _write_merged(fresh, {**setup, "runs": {"user|250": {"se_ratio": 0.9}}})
    assert json.loads(fresh.read_text())["runs"] == {"user|250": {"se_ratio": 0.9}}


def test_sweep_policies_are_named_by_their_training_sizes(tmp_path):
    from tasks.ris_figures import evaluate, trained_with
    shipped = pretrained("ris_gnn")
    assert trained_with(shipped) == ("K=3, N_B=8, N_RF=6, N_RE=8, cascaded-link gain +U[0, 30] dB; "
                                     "fine-tune of ris_gnn.pt as of 67fdce8")                     # stage 2
    with pytest.raises(ValueError, match="unknown sweeps"):
        evaluate(shipped, 4, tmp_path, "ris", sweep_policies={"N_XX": shipped})


def test_cli_exit_code_in_a_process():
    r = subprocess.run([sys.executable, "-m", "tasks.ris_precoding", "train", "sizes.N_RE=0"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "sizes.N_RE" in r.stderr, r.stderr


def test_compiled_policy_matches_eager():
    """compile_policy (torch.compile of the network) changes the speed, not the policy:
    same outputs to float32 rounding, hence the same symmetry."""
    from pegnn.policies import compile_policy
    eager, comp = pretrained("ris_gnn"), compile_policy(pretrained("ris_gnn"))
    ch = ris_channels(4, seed=3, **eager.channels)
    for a, b in zip(eager(ch), comp(ch)):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
