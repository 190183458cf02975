"""The RIS GNN in the dual form (``graphs/ris_pr_dual.yaml``): per-UE power shares and RIS
phases out of the network, the precoder from the sum-SE-optimal structure
(:func:`pegnn.wireless.dual_precoder`), realised in hybrid form. Its symmetry, its
constraints, its imitation loss and labels, and its configuration errors."""
from __future__ import annotations

import json

import pytest
import torch

from pegnn.models import PEGNN
from pegnn.ris_policy import RISPolicy
from pegnn.wireless import dual_precoder, ris_rate
from pegnn.wireless.ris import hybrid_precoder, precoder_power, ris_effective_channel

C128 = torch.complex128
pytestmark = pytest.mark.usefixtures("one_thread")


def _policy(seed: int = 0) -> RISPolicy:
    from tasks.ris_data import task_spec
    torch.manual_seed(seed)
    model = PEGNN(task_spec("graphs/ris_pr_dual.yaml"), hidden=8, layers=2, pattern="P1").double()
    return RISPolicy(model, N_RF=6)


def _drops(B=4, M=1, K=3, N_B=7, N_RE=5, seed=1):
    gen = torch.Generator().manual_seed(seed)
    c = lambda *s: torch.randn(*s, dtype=C128, generator=gen)
    return c(B, M, M * K, N_B), c(B, M, N_RE, N_B), c(B, M * K, N_RE), 1.0, 10.0


def _close(a, b, tol=1e-9):
    assert torch.allclose(a, b, atol=tol, rtol=tol), (a - b).abs().max()


def test_spec_has_no_rf_chains_and_the_policy_no_rf_tag():
    pol = _policy()
    assert pol.form == "dual" and "rf" not in pol.spec.sets and "rf_tag" not in pol.spec.inputs
    with pytest.raises(ValueError, match="rf_tag is an input of the hybrid form only"):
        pol(_drops(), rf_tag=RISPolicy.rf_tag(1, 3, 6))
    from tasks.ris_data import task_spec
    with pytest.raises(ValueError, match="features.W_0"):
        task_spec("graphs/ris_pr_dual.yaml", W_0=True)


def test_equivariance_ue_antenna_re_for_any_N_RF():
    """Permuting UEs permutes the precoder's columns — with no rf_tag to carry along and
    whether or not K divides N_RF (the hybrid form needs both); antennas permute its rows;
    RIS elements permute theta."""
    pol = _policy()
    h_d, G, h_r, nv, P = _drops()
    g = torch.Generator().manual_seed(2)
    pu, pb, pn = (torch.randperm(n, generator=g) for n in (3, 7, 5))
    for n_rf in (6, 7):
        base = pol((h_d, G, h_r, nv, P), N_RF=n_rf)
        W = hybrid_precoder(base.baseband, base.analog)                    # [B, 1, N_B, K]
        out = pol((h_d[:, :, pu], G, h_r[:, pu], nv, P), N_RF=n_rf)
        _close(hybrid_precoder(out.baseband, out.analog), W[..., pu])
        _close(out.theta, base.theta)
        out = pol((h_d[..., pb], G[..., pb], h_r, nv, P), N_RF=n_rf)
        _close(hybrid_precoder(out.baseband, out.analog), W[:, :, pb])
        out = pol((h_d, G[:, :, pn], h_r[..., pn], nv, P), N_RF=n_rf)
        _close(hybrid_precoder(out.baseband, out.analog), W)
        _close(out.theta, base.theta[:, pn])


def test_cell_permutation_and_power_per_BS_in_two_cells():
    """Two cells: per-cell softmaxes give P_max per BS, and swapping the cells (their BSs,
    UEs and antennas together) swaps the precoders."""
    pol = _policy()
    M, K, N_B = 2, 2, 4
    h_d, G, h_r, nv, P = _drops(M=M, K=K, N_B=N_B)
    base = pol((h_d, G, h_r, nv, P), N_RF=4)
    W = hybrid_precoder(base.baseband, base.analog)                        # [B, M, N_B, K]
    _close(precoder_power(W), torch.full((4, M), P, dtype=torch.float64))
    assert base.analog.abs().sub(1).abs().max() < 1e-12 and base.theta.abs().sub(1).abs().max() < 1e-12
    ue = torch.tensor([2, 3, 0, 1])
    out = pol((h_d[:, [1, 0]][:, :, ue], G[:, [1, 0]], h_r[:, ue], nv, P), N_RF=4)
    _close(hybrid_precoder(out.baseband, out.analog), W[:, [1, 0]])
    _close(out.theta, base.theta)


def test_hybrid_realisation_reproduces_the_closed_form():
    """At N_RF >= 2K the policy's hybrid output is the digital dual precoder of its
    (q, p, theta), which is what the training objective scores: same SE to rounding."""
    pol = _policy()
    ch = _drops()
    out = pol(ch, N_RF=6)
    from pegnn.graph import build_batch
    from pegnn.wireless.ris import as_ris_channels
    c = as_ris_channels(ch)
    inputs = pol.graph_inputs(c.h_d, c.G, c.h_r, c.noise_var, c.P_max, None)
    raw = pol.model(build_batch(pol.spec, {"cell": 1, "ue": 3, "ant_bs": 7, "re": 5}, inputs, pairs=()))
    dig = RISPolicy.dual_output(raw, ch)
    # the closed form by its definition, with the softmaxes and unit-modulus phases spelled out
    h = ris_effective_channel(c, dig.theta)
    q, p = raw["q"].reshape(4, 1, 3).softmax(-1), raw["p"].reshape(4, 1, 3).softmax(-1)
    _close(dig.W, dual_precoder(h, q, p, c.P_max, c.noise_var))
    _close(dig.theta, raw["theta"] / raw["theta"].abs())
    _close(hybrid_precoder(out.baseband, out.analog), dig.W)
    _close(ris_rate(ch, out), ris_rate(ch, dig))


def test_objective_scores_the_dual_precoder_and_has_gradients():
    from tasks.ris_data import objective, sample_dict
    from pegnn.wireless import ris_channels
    ch = ris_channels(6, seed=0, K=3, N_B=8, N_RF=6, N_RE=8, normalize_noise=True)
    s = sample_dict(ch)
    B = 6
    raw = {"q": torch.zeros(B, 3, requires_grad=True), "p": torch.randn(B, 3, requires_grad=True),
           "theta": torch.randn(B, 8, dtype=torch.complex64, requires_grad=True)}
    loss, m = objective(s, raw)
    loss.backward()
    assert all(torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0 for x in raw.values())
    expect = ris_rate(ch.to(dtype=C128), RISPolicy.dual_output(raw, ch)).mean()
    assert abs(-loss.item() - expect.item()) < 1e-9 and abs(m["se"].item() - expect.item()) < 1e-9


def test_imitation_loss_is_minimal_at_the_labels_and_blind_to_a_common_phase():
    from tasks.ris_data import PHASE_WEIGHT, imitation_objective, sample_dict
    from pegnn.wireless import ris_channels
    ch = ris_channels(5, seed=0, K=3, N_B=8, N_RF=6, N_RE=8, normalize_noise=True)
    gen = torch.Generator().manual_seed(0)
    q = torch.rand(5, 3, generator=gen, dtype=torch.float64).softmax(-1)
    p = torch.rand(5, 3, generator=gen, dtype=torch.float64).softmax(-1)
    th = torch.polar(torch.ones(5, 8, dtype=torch.float64), 6 * torch.rand(5, 8, generator=gen, dtype=torch.float64))
    s = {**sample_dict(ch), "q_star": q, "p_star": p, "theta_star": th}
    at = {"q": q.log(), "p": p.log() + 3.0, "theta": th * (1j * 0.7 * torch.ones(5, 1)).exp()}   # logits' shift, common rotation
    best, m = imitation_objective(s, at)
    entropy = -(q * q.log()).sum(-1).mean() - (p * p.log()).sum(-1).mean()
    assert abs(best.item() - entropy.item()) < 1e-9 and m["phase"].item() < 1e-12
    for i in range(5):
        g = torch.Generator().manual_seed(10 + i)
        off = {k: v + 0.3 * torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in at.items()}
        assert imitation_objective(s, off)[0] > best
    random_phase = {**at, "theta": torch.polar(torch.ones(5, 8, dtype=torch.float64),
                                               6 * torch.rand(5, 8, generator=gen, dtype=torch.float64))}
    assert imitation_objective(s, random_phase)[1]["phase"] > 0.3 and PHASE_WEIGHT > 0


def test_dual_labels_are_cached_and_climb(tmp_path, monkeypatch):
    from tasks.ris_data import dual_labels, sample_dict
    from pegnn.wireless import dual_ascent, ris_channels
    monkeypatch.setenv("PEGNN_CACHE", str(tmp_path))
    ch = ris_channels(6, seed=3, K=3, N_B=8, N_RF=6, N_RE=8, normalize_noise=True)
    s = sample_dict(ch)
    a = dual_labels(s, iters=60, batch=4, progress=False)
    assert len(list(tmp_path.glob("ris_pr-dual-labels-*.pt"))) == 1
    b = dual_labels(s, iters=60, batch=6, progress=False)            # from the cache (a batch does not change it)
    assert all(torch.equal(a[k], b[k]) for k in a)
    _, info = dual_ascent(ch, 6, iters=60)
    _close(a["se"], info["se_digital"], 1e-8)
    assert (a["se"] >= info["se_init"] - 1e-9).all() and a["se"].mean() > info["se_init"].mean()
    _close(a["q_star"].sum(-1), torch.ones(6, dtype=torch.float64))
    # the labels' own SE, recomputed from (q, p, theta) through the closed form
    raw = {"q": a["q_star"].log(), "p": a["p_star"].log(), "theta": a["theta_star"]}
    _close(ris_rate(ch.to(dtype=C128), RISPolicy.dual_output(raw, ch)), a["se"], 1e-8)


def test_size_mixtures_carry_each_sizes_own_labels(tmp_path, monkeypatch):
    from tasks.ris_data import (SPEC, collate, dual_labels, imitation_objective, mixed_N_RE_dataset, sample_dict,
                                task_spec)
    from tasks.ris_data import channels as cached_channels
    from tasks.ris_precoding import DEFAULTS
    monkeypatch.setenv("PEGNN_CACHE", str(tmp_path))
    sz = DEFAULTS["sizes"]
    label = lambda x: {**x, **{k: v for k, v in dual_labels(x, iters=20, progress=False).items() if k != "se"}}
    ds, counts = mixed_N_RE_dataset(5, 0, sz, "ris", [4, 6], transform=label)
    assert counts == {4: 3, 6: 2}
    for v, lo, hi in ((4, 0, 3), (6, 3, 5)):      # each part labelled on its own drops
        part = cached_channels(counts[v], v, **{**sz, "N_RE": v})       # seed 0 * 100 + N_RE
        own = dual_labels(sample_dict(part), iters=20, progress=False)
        for i in range(lo, hi):
            assert ds[i]["theta_star"].shape == (v,) and torch.equal(ds[i]["theta_star"], own["theta_star"][i - lo])
    spec = task_spec(SPEC.parent / "ris_pr_dual.yaml")
    for _, s in collate(spec)([ds[i] for i in range(5)]):   # one group per RIS size; the loss runs on each
        raw = {"q": s["q_star"].log(), "p": s["p_star"].log(), "theta": s["theta_star"]}
        loss, m = imitation_objective(s, raw)
        assert torch.isfinite(loss) and m["phase"].item() < 1e-12


@pytest.mark.parametrize("argv, needle", [
    (["train", "train.loss=mse"], "train.loss"),
    (["train", "train.loss=imitate"], "spec=graphs/ris_pr_dual.yaml"),
    (["train", "spec=graphs/ris_pr_dual.yaml", "features.W_0=true"], "features.W_0"),
    (["train", "spec=graphs/tenn_precoding.yaml"], "[q, p, theta]"),
    (["bench", "--vs", "tecfp"], "--vs 'tecfp'"),
    (["bench", "--vs", "dual=no/such/policy.pt"], "--vs 'dual=no/such/policy.pt'"),
])
def test_cli_errors_are_one_line_exit_2(argv, needle, capsys):
    from tasks.ris_precoding import main
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err


def test_bench_times_another_policy_side_by_side(tmp_path):
    from pegnn.policy_files import pretrained
    from tasks.ris_precoding import bench
    main, dual = pretrained("ris_gnn"), pretrained("ris_gnn_dual")
    r = bench(main, tmp_path / "b.json", n=4, batches=(2, 4), n_unbatched=1, compile=False, vs={"dual": dual})
    v = r["vs"]["dual"]
    assert v["gnn_params"] == sum(p.numel() for p in dual.model.parameters()) != r["gnn_params"]
    for b in ("2", "4"):
        assert v["eager_time_over_main"][b] == v["eager_sec_per_sample"][b] / r["gnn_sec_per_sample"]["eager"][b]
    from tasks.ris_precoding import channels, gnn_se
    assert abs(v["se_gnn"] - gnn_se(dual, channels(4, 5))[0].mean().item()) < 1e-6      # the same drops
    assert json.loads((tmp_path / "b.json").read_text())["vs"]["dual"]["se_gnn"] == v["se_gnn"]
