"""TEUS scheduling: the top-K output layer, TEUSN's symmetry, cached sharded greedy
labels, a tiny training run and the task CLI's bad-input path."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pegnn import TEUSN, load_spec
from pegnn.models import PEGNN
from pegnn.policies import TEUSPolicy
from pegnn.policy_files import load_policy, pretrained
from pegnn.wireless import greedy_schedule, mmse, rayleigh_channels
from pegnn.data import tensor_hash
from tasks.labels import greedy_labels

ROOT = Path(__file__).resolve().parents[1]


def test_top_k_selects_exactly_k_largest():
    s = torch.tensor([[0.1, 3.0, -1.0, 2.0], [5.0, 4.0, 3.0, 2.0]])
    m = TEUSPolicy.top_k(s, 2)
    assert m.tolist() == [[False, True, False, True], [True, True, False, False]]
    for bad in (0, 5, 2.0, True):
        with pytest.raises(ValueError, match="k must be an int"):
            TEUSPolicy.top_k(s, bad)


@pytest.mark.parametrize("spec, attention, n_att", [("tenn_scheduling", "none", 0), ("tenn_scheduling", "auto", 1),
                                                     ("tenn_scheduling_mmse", "auto", 0),
                                                     ("tenn_scheduling_mmse", "ue", 1)])
def test_teus_scores_equivariant_to_users_invariant_to_antennas(spec, attention, n_att):
    """Eqs. (40)-(42): permuting candidates permutes the scores; permuting UE or BS
    antennas leaves them unchanged (float64, random weights) — for the paper's TEUSN,
    for the plan's user attention (the task default), and on the spec whose MMSE
    precoder input reflects the interference (the plan then puts no attention; forced
    on ``ue`` as the control)."""
    torch.manual_seed(0)
    model = PEGNN(load_spec(ROOT / "graphs" / f"{spec}.yaml"),
                  **{**TEUSN, "hidden": 8, "layers": 2, "attention": attention}).double()
    assert [len(l.attention) for l in model.layers] == [n_att] * 2
    pol = TEUSPolicy(model)
    H = rayleigh_channels(3, 6, 2, 8, seed=1)
    y = pol.logits(H, 0.1).double()
    g = torch.Generator().manual_seed(2)
    pu, pr, pt = torch.randperm(6, generator=g), torch.randperm(2, generator=g), torch.randperm(8, generator=g)
    torch.testing.assert_close(pol.logits(H[:, pu], 0.1).double(), y[:, pu], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pol.logits(H[:, :, pr][..., pt], 0.1).double(), y, atol=1e-5, rtol=1e-5)
    mask = pol(H, 0.1, 4)
    assert mask.shape == (3, 6) and (mask.sum(1) == 4).all()


def test_sharded_labels_equal_one_pass_and_reload_from_cache(tmp_path):
    H = rayleigh_channels(10, 6, 2, 8, seed=4)
    s2 = torch.full((10,), 0.1, dtype=torch.float64)
    ref = greedy_schedule(H, s2, 3, mmse)
    kw = dict(channels_key="test-key", shard_size=4, cache=tmp_path, progress=False, return_info=True)
    parts = [greedy_labels(H, s2, 3, "mmse", shard=i, **kw)[0] for i in range(3)]  # separate "jobs"
    assert torch.equal(torch.cat(parts), ref)
    eta, info = greedy_labels(H, s2, 3, "mmse", **kw)  # merge: everything from the shard files
    assert torch.equal(eta, ref) and info["generated"] == 0 and info["loaded"] == 10
    other, info = greedy_labels(H, s2, 3, "mmse", **{**kw, "channels_key": "other"})
    assert info["generated"] == 10  # labels are tied to the channels they were computed on


def test_labels_keep_the_greedy_order_and_refresh_files_without_it(tmp_path):
    H = rayleigh_channels(6, 6, 2, 8, seed=5)
    s2 = torch.full((6,), 0.1, dtype=torch.float64)
    ref_mask, ref_order = greedy_schedule(H, s2, 3, mmse, return_order=True)
    kw = dict(channels_key="order-key", shard_size=3, cache=tmp_path, progress=False, return_info=True)
    eta, info = greedy_labels(H, s2, 3, "mmse", **kw)
    assert torch.equal(eta, ref_mask) and info["generated"] == 6
    for f in info["files"]:     # a shard as written before the order was stored: eta only
        obj = torch.load(f, weights_only=True)
        obj["tensors"] = {"eta": obj["tensors"]["eta"]}
        obj["meta"]["tensor_hash"] = tensor_hash(obj["tensors"])
        torch.save(obj, f)
    eta, info = greedy_labels(H, s2, 3, "mmse", **kw)
    assert torch.equal(eta, ref_mask) and info["generated"] == 0      # the mask alone is still valid
    eta, order, info = greedy_labels(H, s2, 3, "mmse", return_order=True, **kw)
    assert torch.equal(order, ref_order) and info["generated"] == 6   # the order had to be recomputed
    eta, order, info = greedy_labels(H, s2, 3, "mmse", return_order=True, **kw)
    assert torch.equal(order, ref_order) and info["generated"] == 0


def _seq_policy(hidden=8, layers=2):
    torch.manual_seed(0)
    model = PEGNN(load_spec(ROOT / "graphs" / "tenn_scheduling_seq.yaml"),
                  **{**TEUSN, "hidden": hidden, "layers": layers, "attention": "auto"}).double()
    return TEUSPolicy(model, decode="sequential")


def test_sequential_decoder_is_k_argmax_steps_and_equivariant():
    """``decode="sequential"``: the mask is what k explicit steps give (score with the
    current ``chosen``, add the best unscheduled user), it is equivariant to the users
    and invariant to the antennas, and the spec/decode mismatch is refused."""
    pol = _seq_policy()
    H = rayleigh_channels(3, 6, 2, 8, seed=1)
    mask = pol(H, 0.1, 4)
    chosen = torch.zeros(3, 6, dtype=torch.bool)
    for _ in range(4):      # the definition, one sample at a time
        for b in range(3):
            y = pol.logits(H[b:b + 1], 0.1, chosen[b:b + 1])[0]
            y[chosen[b]] = float("-inf")
            chosen[b, int(y.argmax())] = True
    assert torch.equal(mask, chosen) and (mask.sum(1) == 4).all()
    # the score depends on chosen (otherwise this is top-k in disguise)
    assert not torch.allclose(pol.logits(H, 0.1, chosen), pol.logits(H, 0.1, torch.zeros_like(chosen)))
    g = torch.Generator().manual_seed(2)
    pu, pr, pt = torch.randperm(6, generator=g), torch.randperm(2, generator=g), torch.randperm(8, generator=g)
    torch.testing.assert_close(pol.logits(H[:, pu], 0.1, chosen[:, pu]), pol.logits(H, 0.1, chosen)[:, pu],
                               atol=1e-5, rtol=1e-5)
    assert torch.equal(pol(H[:, pu], 0.1, 4), mask[:, pu])
    assert torch.equal(pol(H[:, :, pr][..., pt], 0.1, 4), mask)
    with pytest.raises(ValueError, match="decode='sequential' needs a spec with a 'chosen' input"):
        TEUSPolicy(PEGNN(load_spec(ROOT / "graphs" / "tenn_scheduling.yaml"), hidden=8, layers=1),
                   decode="sequential")
    with pytest.raises(ValueError, match="decode='topk' needs a spec without"):
        TEUSPolicy(pol.model)
    with pytest.raises(ValueError, match="k must be an int"):
        pol(H, 0.1, 7)


def test_teus_refine_is_the_swap_search_after_the_network():
    from pegnn.wireless import swap_refine
    torch.manual_seed(0)
    model = PEGNN(load_spec(ROOT / "graphs" / "tenn_scheduling.yaml"), **{**TEUSN, "hidden": 8, "layers": 2})
    H = rayleigh_channels(4, 8, 2, 8, seed=6).to(torch.complex128)
    base, two = TEUSPolicy(model), TEUSPolicy(model, refine=2)
    assert torch.equal(two(H, 0.1, 3), swap_refine(H, 0.1, base(H, 0.1, 3), mmse, 2))
    assert torch.equal(two.decoded(H, 0.1, 3), base(H, 0.1, 3))
    assert pretrained("teus", refine=1).refine == 1
    with pytest.raises(ValueError, match="refine"):
        TEUSPolicy(model, refine=-1)


def test_evaluate_schemes_add_swap_refined_teus_and_random():
    """``_schemes(refine=(1, 2))`` adds TEUS+S and Rand+S; under the MMSE precoder (the one
    the swap search uses) each refined scheme is at least its start, and more rounds help."""
    from tasks.scheduling_eval import _schemes
    torch.manual_seed(0)
    pol = TEUSPolicy(PEGNN(load_spec(ROOT / "graphs" / "tenn_scheduling.yaml"), **{**TEUSN, "hidden": 8, "layers": 2}))
    H = rayleigh_channels(8, 8, 2, 8, seed=7).to(torch.complex128)
    s2 = torch.full((8,), 0.01, dtype=torch.float64)
    r = _schemes(H, s2, 4, pol, {"MMSE": mmse}, seed=0, refine=(1, 2))
    assert set(r) == {f"MMSE-{m}" for m in ("Rand", "Greedy", "TEUS", "TEUS+1", "TEUS+2", "Rand+1", "Rand+2")}
    rate = {m[5:]: v["sum_rate"] for m, v in r.items()}
    for base in ("TEUS", "Rand"):
        assert rate[base] <= rate[f"{base}+1"] + 1e-9 <= rate[f"{base}+2"] + 2e-9
    assert rate["Rand+1"] > rate["Rand"] and 0 <= r["MMSE-TEUS+2"]["overlap_with_greedy"] <= 1


def test_greedy_steps_and_next_pick_loss_match_their_definitions():
    from tasks.scheduling import GreedySteps, next_pick
    H = rayleigh_channels(2, 5, 2, 4, seed=3)
    order = torch.tensor([[3, 0, 4], [1, 2, 0]])
    steps = GreedySteps({"H": H, "noise_var": torch.tensor([0.1, 1.0]), "order": order})
    assert len(steps) == 6
    it = steps[4]                       # sample 1, step 1: user 1 scheduled, greedy adds user 2 next
    assert it["chosen"].tolist() == [0, 1, 0, 0, 0] and int(it["next"]) == 2 and torch.equal(it["H"], H[1])
    assert steps[0]["chosen"].sum() == 0 and int(steps[2]["next"]) == 4
    g = torch.Generator().manual_seed(0)
    y = torch.randn(3, 5, generator=g, dtype=torch.float64)
    chosen = torch.tensor([[0, 1, 0, 0, 0], [1, 1, 0, 1, 0], [0, 0, 0, 0, 0]], dtype=torch.float64)
    nxt = torch.tensor([2, 4, 0])
    loss, m = next_pick({"chosen": chosen, "next": nxt}, {"eta": y})
    ref = torch.stack([-(y[b, nxt[b]] - torch.logsumexp(y[b][chosen[b] == 0], 0)) for b in range(3)]).mean()
    assert torch.allclose(loss, ref, rtol=1e-12)
    assert float(m["next_acc"]) == float(sum(int(y[b].masked_fill(chosen[b].bool(), -1e9).argmax()) == nxt[b]
                                             for b in range(3))) / 3


def _task(tmp_path, *argv):
    env = {**os.environ, "PEGNN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tasks.scheduling", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_tiny_training_run_writes_teus_policy(tmp_path):
    r = _task(tmp_path, "train", "data.channel=rayleigh", "data.n_train=64", "data.n_val=16", "model.hidden=8",
              "model.layers=2", "train.max_steps=2", "train.val_every=2", "train.batch_size=32",
              "train.progress=false", f"run.out={tmp_path}", "run.name=tiny")
    assert r.returncode == 0, r.stderr[-2000:]
    pol = load_policy(tmp_path / "tiny" / "policy.pt")
    assert pol.kind == "teus" and pol.info["k"] == 8
    H = rayleigh_channels(2, 12, 2, 32, seed=0)
    assert (pol(H, 0.1, 8).sum(1) == 8).all()


def test_tiny_sequential_training_run_writes_a_sequential_policy(tmp_path):
    r = _task(tmp_path, "train", "policy.decode=sequential", "train.loss=next", "data.channel=rayleigh",
              "data.n_train=32", "data.n_val=8", "model.hidden=8", "model.layers=2", "train.max_steps=2",
              "train.val_every=2", "train.batch_size=32", "train.progress=false", f"run.out={tmp_path}", "run.name=seq")
    assert r.returncode == 0, r.stderr[-2000:]
    pol = load_policy(tmp_path / "seq" / "policy.pt", kind="teus")
    assert pol.decode == "sequential" and "chosen" in pol.spec.inputs
    assert (pol(rayleigh_channels(2, 12, 2, 32, seed=0), 0.1, 8).sum(1) == 8).all()


def test_label_oracle_returns_the_greedy_labels(tmp_path):
    from tasks.scheduling_eval import LabelOracle
    H = rayleigh_channels(3, 12, 2, 32, seed=4)
    s2 = torch.full((3,), 0.1)
    eta = greedy_labels(H, s2, 8, "mmse", channels_key="oracle-test", cache=tmp_path, progress=False)
    assert torch.equal(LabelOracle("mmse")(H, s2, 8), eta.bool())


def test_rate_weighted_bce_weights_samples_by_their_rate_scale():
    from tasks.scheduling import objective
    g = torch.Generator().manual_seed(1)
    y = torch.randn(4, 12, generator=g, dtype=torch.float64)
    eta = (torch.rand(4, 12, generator=g) > 0.5).double()
    s2 = torch.tensor([1.0, 1e-1, 1e-3, 1e-4], dtype=torch.float64)
    got, _ = objective({"eta": eta, "noise_var": s2}, {"eta": y}, loss="bce_rate")
    w = torch.log2(1 + 1 / s2)
    per = torch.stack([torch.nn.functional.binary_cross_entropy_with_logits(y[n], eta[n]) for n in range(4)])
    assert torch.allclose(got, (per * w).sum() / w.sum(), rtol=1e-12)
    same, _ = objective({"eta": eta, "noise_var": torch.full((4,), 0.1, dtype=torch.float64)}, {"eta": y},
                        loss="bce_rate")
    assert torch.allclose(same, objective({"eta": eta}, {"eta": y})[0], rtol=1e-12)   # equal SNRs: plain BCE (43)


def test_rank_loss_matches_its_definition_and_ignores_a_per_sample_shift():
    from tasks.scheduling import objective
    g = torch.Generator().manual_seed(0)
    y = torch.randn(5, 12, generator=g, dtype=torch.float64)
    eta = torch.zeros(5, 12, dtype=torch.float64)
    for b in range(5):
        eta[b, torch.randperm(12, generator=g)[:8]] = 1
    loss, _ = objective({"eta": eta}, {"eta": y}, loss="rank")
    ref = torch.stack([torch.stack([torch.nn.functional.softplus(y[b, j] - y[b, i])
                                    for i in range(12) for j in range(12) if eta[b, i] == 1 and eta[b, j] == 0]).mean()
                       for b in range(5)]).mean()
    assert torch.allclose(loss, ref, rtol=1e-12)
    shifted, _ = objective({"eta": eta}, {"eta": y + torch.randn(5, 1, generator=g, dtype=torch.float64)}, loss="rank")
    assert torch.allclose(shifted, loss, rtol=1e-12)
    bce, _ = objective({"eta": eta}, {"eta": y + 3.0})
    assert not torch.allclose(bce, objective({"eta": eta}, {"eta": y})[0])   # BCE is not shift-invariant


@pytest.mark.parametrize("argv, fragment", [
    (["train", "sizes.K=13"], "cannot schedule K = 13 of K_tilde = 12"),
    (["labels", "labels.precoder=zf"], "labels.precoder: unknown precoder 'zf'"),
    (["train", "train.loss=mse"], "train.loss: policy.decode=topk trains with one of ['bce', 'rank', 'bce_rate']"),
    (["train", "policy.decode=sequential"], "train.loss: policy.decode=sequential trains with one of ['next']"),
    (["train", "policy.decode=beam"], "policy.decode: expected 'topk'"),
    (["evaluate", "--oracle", "mmse", "--checkpoint", "pegnn/checkpoints/teus.pt"], "--oracle: schedules without"),
    (["evaluate", "--checkpoint", "pegnn/checkpoints/tecfp.pt"], "a 'tecfp' policy, expected a 'teus' one"),
    (["evaluate", "--precoders", "mmse,foo", "--checkpoint", "x.pt"], "--precoders"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, argv, fragment):
    r = _task(tmp_path, *argv)
    assert r.returncode == 2, r.stderr[-2000:]
    err = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], r.stderr


def test_shipped_teus_beats_random_scheduling_on_unseen_uma_drops():
    """The shipped TEUS policies (MMSE labels) on UMa drops they were not trained on
    (seed 7): their users give MMSE a higher sum rate than random users, at 10 and 20 dB,
    and ``teus_mmse`` (which also reads the MMSE precoder) beats ``teus`` (H only)."""
    from pegnn import pretrained
    from pegnn.wireless import random_schedule, scheduled_sum_rate, uma_channels
    policies = {name: pretrained(name) for name in ("teus", "teus_mmse")}
    H = uma_channels(24, 12, 2, 32, seed=7)
    for snr in (10, 20):
        s2 = torch.full((24,), 10 ** (-snr / 10), dtype=torch.float64)
        r_rand = scheduled_sum_rate(H, random_schedule(24, 12, 8, torch.Generator().manual_seed(0)), s2, mmse).mean()
        r = {name: scheduled_sum_rate(H, p(H, s2, 8), s2, mmse).mean() for name, p in policies.items()}
        assert r["teus_mmse"] > r["teus"] > r_rand, (snr, {k: float(v) for k, v in r.items()}, float(r_rand))


def test_fig7_sweep_writes_json_and_plot(tmp_path, monkeypatch, one_thread):
    """Fig. 7 on a tiny sweep (Rayleigh, 8 drops, MMSE): every point schedules K = 8 of
    K̃, greedy beats random, the swap-refined schemes (``refine``) never lose to their
    start, and K̃ = 12 (the training size) equals the evaluate path."""
    from pegnn import pretrained
    from tasks.scheduling_eval import fig7
    monkeypatch.setenv("PEGNN_CACHE", str(tmp_path / "cache"))
    r = fig7(pretrained("teus"), 8, tmp_path, names=("mmse",), snr=10.0, channel="rayleigh",
             sweeps={"K_tilde": [10, 14], "N_T": [24]}, progress=False, refine=(1,))
    assert (tmp_path / "fig7.json").exists() and (tmp_path / "fig7_generalisation.png").exists()
    rows = r["sweeps"]["K_tilde"] + r["sweeps"]["N_T"]
    assert [row["sizes"]["K_tilde"] for row in rows] == [10, 14, 12]
    assert [row["sizes"]["N_T"] for row in rows] == [32, 32, 24]
    for row in rows:
        assert row["MMSE-Greedy"]["sum_rate"] > row["MMSE-Rand"]["sum_rate"] > 0, row
        assert 0 <= row["MMSE-TEUS"]["overlap_with_greedy"] <= 1
        assert row["MMSE-TEUS+1"]["sum_rate"] >= row["MMSE-TEUS"]["sum_rate"] - 1e-9    # the swap never loses
        assert row["MMSE-Rand+1"]["sum_rate"] >= row["MMSE-Rand"]["sum_rate"] - 1e-9


@pytest.mark.parametrize("argv, fragment", [
    (["fig7", "--snr", "nan"], "--snr"),
    (["fig7", "--snr", "1000"], "--snr: expected an SNR in dB within [-100, 100]"),
    (["labels", "labels.shard_size=0"], "labels.shard_size: must be null or a positive int, got 0"),
    (["labels", "labels.threads=0"], "labels.threads: must be null or a positive int, got 0"),
    (["fig7", "--n-test", "0"], "--n-test"),
])
def test_fig7_bad_input_is_one_line_exit_2(tmp_path, argv, fragment):
    r = _task(tmp_path, *argv)
    assert r.returncode == 2, r.stderr[-2000:]
    err = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], r.stderr
