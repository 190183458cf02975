"""What users pass that the happy path never does: numpy integers, spec paths, the
short channel forms, scalar outputs, dense batch outputs, unequal joint sets, inputs far
outside the training range — each either works or is one clear error."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch_geometric.loader import DataLoader

import pegnn
from pegnn import PEGNN, SpecError, build_batch, build_graph, load_spec, unbatch
from pegnn.spec import ProblemSpec

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"


def _miso_inputs(B=None, K=3, N=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (K, N) if B is None else (B, K, N)
    H = torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))
    return {"H": H, "noise": torch.tensor(0.1) if B is None else torch.full((B,), 0.1)}


def test_numpy_integers_and_spec_paths_are_accepted():
    path = GRAPHS / "miso_ps.yaml"
    g1 = build_graph(str(path), {"ue": np.int64(3), "ant_bs": np.int32(4)}, _miso_inputs())
    g2 = build_graph(load_spec(path), {"ue": 3, "ant_bs": 4}, _miso_inputs())
    torch.manual_seed(0)
    out1 = PEGNN(path, hidden=4, layers=1)(g1)
    torch.manual_seed(0)
    out2 = PEGNN(load_spec(path), hidden=4, layers=1)(g2)
    assert torch.equal(out1["W"], out2["W"])
    H = torch.randn(2, 12, 2, 32, dtype=torch.complex64)
    assert pegnn.pretrained("teus")(H, 0.1, np.int64(8)).sum(1).tolist() == [8, 8]


@pytest.mark.parametrize("sizes, inputs, fragment", [
    (4, None, "expected a mapping {set: count}"),
    ({"ue": 3, "ant_bs": 4}, torch.zeros(3, 4), "expected a mapping {input name: tensor}"),
])
def test_sizes_and_inputs_of_the_wrong_type_are_spec_errors(sizes, inputs, fragment):
    spec = load_spec(GRAPHS / "miso_ps.yaml")
    with pytest.raises(SpecError, match=fragment):
        build_graph(spec, sizes, inputs)
    with pytest.raises(SpecError, match=fragment):
        build_batch(spec, sizes if not isinstance(sizes, dict) else sizes, inputs if inputs is not None else 0)


def test_joint_sets_need_equal_counts(tmp_path):
    d = yaml.safe_load((GRAPHS / "mimo_pm.yaml").read_text())
    d["joint"] = [["ds", "ant_ue"]]
    spec = ProblemSpec.from_dict(d, source="joint")
    build_graph(spec, "ue=2,ds=[2,3],ant_ue=[2,3],ant_bs=4")          # equal per parent: fine
    with pytest.raises(SpecError, match="joint with 'ds', so it needs the same count per parent"):
        build_graph(spec, "ue=2,ds=2,ant_ue=3,ant_bs=4")


def test_a_scalar_output_is_read_out_invariant_and_unbatches():
    d = load_spec(GRAPHS / "miso_ps.yaml").to_dict()
    d["outputs"]["q"] = {"dims": []}
    spec = ProblemSpec.from_dict(d, source="scalar")
    torch.manual_seed(0)
    model = PEGNN(spec, hidden=4, layers=2)
    x = _miso_inputs()
    q = model(build_graph(spec, "ue=3,ant_bs=4", x))["q"]
    perm = {"H": x["H"][[2, 0, 1]][:, [3, 1, 0, 2]], "noise": x["noise"]}
    assert q.shape == () and torch.allclose(model(build_graph(spec, "ue=3,ant_bs=4", perm))["q"], q, atol=1e-6)
    b = next(iter(DataLoader([build_graph(spec, "ue=3,ant_bs=4", x)] * 2, batch_size=2)))
    dense, entries = unbatch(b, model(b), spec), unbatch(b, model(b, entries=True), spec)
    for i in range(2):
        for k in ("W", "q"):
            assert torch.allclose(dense[i][k], entries[i][k])
    assert torch.allclose(dense[1]["q"], q)


def test_non_finite_network_outputs_are_an_error_not_a_mask():
    H = torch.randn(2, 12, 2, 32, dtype=torch.complex64)
    teus = pegnn.pretrained("teus")
    assert teus(H, 0.1, 8).sum(1).tolist() == [8, 8]
    with pytest.raises(ValueError, match="TEUSPolicy: the network's outputs \\['eta'\\] are not finite"):
        teus(H * 1e7, 0.1, 8)
    with pytest.raises(ValueError, match="TECFPPolicy: the network's outputs"):
        pegnn.pretrained("tecfp")(H[:, :8] * 1e20, 0.1)
    with pytest.raises(ValueError, match="noise_var must be a float or a tensor"):
        pegnn.pretrained("tecfp")(H[:, :8], None)


def test_ris_policy_takes_the_short_channel_forms():
    ris = pegnn.pretrained("ris_gnn")
    ch = pegnn.wireless.ris_channels(4, seed=0, **ris.channels)
    full = ris(*ch)
    short = ris(ch.h_d, ch.G, ch.h_r, ch.noise_var, ch.P_max)
    assert torch.allclose(full.baseband, short.baseband)
    for args in ((ch.h_d, ch.G, ch.h_r), (ch.h_d, ch.G, ch.h_r, ch.noise_var)):   # defaults 1.0: still feasible
        out = ris(*args)
        assert torch.isfinite(pegnn.wireless.ris_rate(tuple(args), out)).all()
    with pytest.raises(ValueError, match="N_RF must be a positive int"):
        ris(*ch, N_RF=-1)


def test_a_precoder_of_another_signature_is_named():
    from pegnn.wireless import greedy_schedule, zf
    H = torch.randn(2, 6, 2, 8, dtype=torch.complex64)
    with pytest.raises(ValueError, match=r"precoder\(H_sub, noise_var\) failed .*lambda H, s: zf\(H\)"):
        greedy_schedule(H, 0.1, 3, zf)
    assert greedy_schedule(H, 0.1, 3, lambda H, s: zf(H)).sum(1).tolist() == [3, 3]
    H[:, 4] = 0                                                    # an inactive user: not a signature problem
    with pytest.raises(ValueError, match="failed on a candidate set of users .*zero.*needs a nonzero channel"):
        greedy_schedule(H, 0.1, 3, pegnn.wireless.mmse)


def test_graphs_of_another_spec_empty_batches_and_non_tensor_outputs_are_named():
    pc = load_spec(GRAPHS / "tenn_precoding.yaml")
    sched = load_spec(GRAPHS / "tenn_scheduling.yaml")
    g = build_graph(sched, "ue=3,ant_ue=2,ant_bs=4")
    with pytest.raises(ValueError, match="not built from this model's spec .*'A'"):
        PEGNN(pc, hidden=4, layers=1)(g)
    with pytest.raises(SpecError, match="empty batch"):
        build_batch(load_spec(GRAPHS / "miso_ps.yaml"), "ue=3,ant_bs=4",
                    {"H": torch.zeros(0, 3, 4, dtype=torch.complex64), "noise": torch.zeros(0)})
    ch = pegnn.wireless.ris_channels(2, seed=0)
    with pytest.raises(ValueError, match="out must be tensors"):
        pegnn.wireless.ris_rate(ch, (1, 2, 3))


@pytest.mark.parametrize("make, fragment", [
    (lambda: pegnn.wireless.ris_channels(2, seed=0, kappa=float("nan")), "ris_channels: kappa must be a finite number"),
    (lambda: pegnn.wireless.ris_channels(2, seed=0, d_ue_ris=float("inf")), "d_ue_ris must be a finite number"),
    (lambda: pegnn.wireless.ris_channels(2, seed=0, P_max_dbm=1e6), "P_max_dbm must be a level within ±300 dB"),
    (lambda: pegnn.wireless.ris_channels(2, seed=0, noise_dbm="x"), "noise_dbm must be a finite number"),
    (lambda: pegnn.wireless.ris_channels(2, seed=1.5), "seed must be None or a non-negative int"),
    (lambda: __import__("tasks.power_control").power_control.d2d_channels(2, 3, 0, pl_a=float("nan")),
     "d2d_channels: pl_a must be a finite number"),
    (lambda: __import__("tasks.power_control").power_control.d2d_channels(2, 3, 0, side="abc"),
     "d2d_channels: side must be a finite number, got 'abc'"),
    (lambda: __import__("tasks.ofdma").ofdma.ofdma_gains(2, 3, 0, pl_b=float("inf")),
     "ofdma_gains: pl_b must be a finite number"),
])
def test_non_finite_channel_parameters_are_named(make, fragment):
    """A NaN distance or path-loss constant gave NaN channels (or an error about the load)."""
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        make()


def test_pretrained_takes_a_shipped_name_not_a_path(tmp_path):
    from pegnn.policy_files import CHECKPOINTS
    import shutil
    shutil.copy(CHECKPOINTS / "tecfp.pt", tmp_path / "evil.pt")
    escape = Path(*[".."] * 12, tmp_path.relative_to(tmp_path.anchor), "evil")   # checkpoints/ -> / -> tmp_path
    for name in ("nope", str(escape)):
        with pytest.raises(ValueError, match=r"no shipped policy .*; available: \[.*'ris_gnn'"):
            pegnn.pretrained(name)
    assert pegnn.pretrained("tecfp") is not None


def test_wrong_argument_types_name_what_is_expected():
    with pytest.raises(TypeError, match="load_spec: expected the path of a spec YAML"):
        load_spec(None)
    with pytest.raises(TypeError, match="parse_sizes: expected text"):
        pegnn.parse_sizes(None)
    with pytest.raises(TypeError, match="expected a ProblemSpec or the path"):
        pegnn.plan({"sets": {}})
    # a path works wherever a spec does
    assert pegnn.plan(GRAPHS / "ris_pr.yaml") == pegnn.plan(load_spec(GRAPHS / "ris_pr.yaml"))


def _H(B=2, K=4, N_R=2, N_T=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(B, K, N_R, N_T, generator=g), torch.randn(B, K, N_R, N_T, generator=g))


@pytest.mark.parametrize("call, fragment", [
    (lambda W: W.mmse(_H(), 1.0, P_T=1e300), "overflows torch.complex64 at P_T = 1e+300"),
    (lambda W: W.zf(_H(), P_T=1e300), "overflows torch.complex64 at P_T = 1e+300"),
    (lambda W: W.mmse(_H().to(torch.complex128) * 1e160, 1.0), "H has entries up to"),
    (lambda W: W.zf(_H().to(torch.complex128) * 1e160), "H has entries up to"),
    (lambda W: W.wmmse(_H(), 1.0, P_T=1e300), "leaves float64's range"),
    (lambda W: W.wmmse(_H(), 1e-300), "leaves float64's range"),
    (lambda W: W.sum_rate(_H().to(torch.complex128) * 1e100, W.mmse(_H(), 1.0), 1.0), "H has entries up to")])
def test_extreme_scales_are_one_error_not_inf_or_linalg_errors(call, fragment):
    """Overflowing powers and channels used to give inf precoders or torch's raw
    `_LinAlgError`; each is now a ValueError saying what to rescale."""
    with pytest.raises(ValueError, match=fragment.replace("+", r"\+").replace("(", r"\(")):
        call(pegnn.wireless)


def test_waterfilling_on_a_zero_channel_is_zero_not_nan():
    from pegnn.wireless import waterfilling_capacity
    H = _H(K=1)[:, 0]
    H[1] = 0
    c = waterfilling_capacity(H, 0.5, P_T=2.0)
    assert c[1].item() == 0.0 and c[0].item() > 0
    # the nonzero drop's capacity is the textbook one: log2 det(I + H Q H^H / s2) at the water level
    H0 = H[0].to(torch.complex128)
    lam = torch.linalg.eigvalsh(H0 @ H0.mH).clamp_min(0) / 0.5
    lo, hi = 0.0, 2.0 + (1 / lam).sum().item()
    for _ in range(200):                       # bisection on the water level
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (mid - 1 / lam).clamp_min(0).sum() < 2.0 else (lo, mid)
    assert abs(torch.log2(1 + lam * (lo - 1 / lam).clamp_min(0)).sum().item() - c[0].item()) < 1e-9


def test_ris_channels_larger_than_ram_are_refused_before_drawing(monkeypatch):
    """Checked before any allocation: sizes whose drops fit in virtual memory but not in
    RAM used to end with the kernel's OOM killer ("Killed"), no message."""
    import pegnn.cpu
    monkeypatch.setattr(pegnn.cpu, "physical_memory", lambda: 2**30)          # a 1 GiB machine
    # 16 bytes x 100 drops x (K N_B + N_RE N_B + K N_RE) = 16 x 100 x 1 100 024 = 1.6 GiB
    with pytest.raises(MemoryError, match=r"ris_channels: 100 drops of these sizes need 1.6 GiB, this machine "
                                          r"has 1.0 GiB of RAM"):
        pegnn.wireless.ris_channels(100, seed=0, N_RE=100_000)
    assert pegnn.wireless.ris_channels(2, seed=0).h_d.shape == (2, 1, 3, 8)   # small sizes still fit


def test_moved_names_still_import_from_their_old_modules():
    """Names that moved to smaller modules (policy files, config checks, sizes, the
    one-UE diagnostic) still import from where user code found them."""
    from pegnn import config_check, policy_files, sizes
    from pegnn.policies import load_policy, pretrained
    from pegnn.spec import parse_sizes
    from pegnn.train import check_config
    from pegnn.wireless import ris_single_ue as moved
    from pegnn.wireless.ris import ris_single_ue
    assert (load_policy, pretrained) == (policy_files.load_policy, policy_files.pretrained)
    assert (parse_sizes, check_config, ris_single_ue) == (sizes.parse_sizes, config_check.check_config, moved)
    import pegnn.policies
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pegnn.policies.nope
