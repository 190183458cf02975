"""The engine: exact equivariance on every spec, sparse = dense, size generalisation."""
from __future__ import annotations

import zlib
from pathlib import Path

import pytest
import torch
from torch_geometric.loader import DataLoader

from pegnn import build_graph, load_spec
from pegnn.models import PEGNN, TEPN, TEUSN, unbatch

from helpers_group import act, random_group_element, random_sizes_tensors

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"

# small sizes per spec: ragged where a set is nested (so the wreath product is tested)
SIZES = {
    "tenn_precoding": "ue=4,ant_ue=2,ant_bs=5",
    "tenn_precoding_mmse": "ue=4,ant_ue=2,ant_bs=5",
    "tenn_precoding_mmse_r": "ue=4,ant_ue=2,ant_bs=5",
    "tenn_scheduling": "ue=4,ant_ue=2,ant_bs=5",
    "tenn_scheduling_mmse": "ue=4,ant_ue=2,ant_bs=5",
    "tenn_scheduling_seq": "ue=4,ant_ue=2,ant_bs=5",
    "ofdma_pb": "ue=4",
    "miso_ps": "ue=3,ant_bs=4",
    "mimo_pm": "ue=3,ds=[1,2,2],ant_ue=[2,1,3],ant_bs=3",
    "power_control_pc": "ue=4",
    "ris_pr": "cell=2,ue=[2,1],rf=[2,3],ant_bs=[2,3],re=3",
    "ris_pr_dual": "cell=2,ue=[2,1],ant_bs=[2,3],re=3",
    "table1_ris_miso_multicell": "cell=2,ue=[1,2],ant_bs=[3,2],re=3",
    "table1_ris_mimo_singlecell": "ue=2,ds=[1,2],ant_ue=[2,2],ant_bs=3,re=2",
    "table1_wideband_miso_singlecell": "ue=3,ant_bs=3,rf=2,sc=2",
    "table1_wideband_mimo_multicell": "cell=2,ue=[1,2],ds=[1,2,1],ant_ue=[2,1,2],rf=[1,2],ant_bs=[2,1],sc=2",
}
REGULAR = {  # same specs at regular sizes, for the dense path
    "mimo_pm": "ue=3,ds=2,ant_ue=2,ant_bs=3",
    "ris_pr": "cell=2,ue=2,rf=2,ant_bs=2,re=3",
    "ris_pr_dual": "cell=2,ue=2,ant_bs=2,re=3",
    "table1_ris_miso_multicell": "cell=2,ue=2,ant_bs=2,re=3",
    "table1_ris_mimo_singlecell": "ue=2,ds=2,ant_ue=2,ant_bs=3,re=2",
    "table1_wideband_mimo_multicell": "cell=2,ue=2,ds=2,ant_ue=2,rf=2,ant_bs=2,sc=2",
}


def spec_files():
    return sorted(GRAPHS.glob("*.yaml"))


def test_every_spec_is_covered():
    assert {f.stem for f in spec_files()} == set(SIZES)


def outputs_dense(model, spec, g):
    """Per-graph dense outputs over global ids, whatever path the model took."""
    return unbatch(g, model(g, entries=True), spec)[0]


CONFIGS = [
    dict(hidden=6, layers=2, attention="auto"),
    dict(hidden=6, layers=2, attention="auto", attention_kind="softmax", heads=2),
    dict(hidden=6, layers=2, attention="all", pattern="P1", pooling="mean"),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["auto", "softmax", "all-P1-mean"])
@pytest.mark.parametrize("path", spec_files(), ids=lambda p: p.stem)
@pytest.mark.parametrize("regular", [False, True], ids=["ragged", "regular"])
def test_equivariance_exact(path, cfg, regular):
    """f(σ·X) = σ·f(X) to 1e-5 in float64 for random σ in the declared group."""
    spec = load_spec(path)
    sizes = REGULAR.get(path.stem, SIZES[path.stem]) if regular else SIZES[path.stem]
    gen = torch.Generator().manual_seed(zlib.crc32(path.stem.encode()))
    torch.manual_seed(0)
    model = PEGNN(spec, **cfg).double()
    S, inputs = random_sizes_tensors(spec, sizes, gen)
    g = build_graph(spec, sizes, inputs, pairs="all")
    assert model.layout(g).dense == (regular or path.stem not in REGULAR)
    out = outputs_dense(model, spec, g)
    for _ in range(2):
        sigma, new_sizes = random_group_element(spec, S, gen)
        g2 = build_graph(spec, new_sizes, {n: act(v, spec.inputs[n].dims, sigma) for n, v in inputs.items()},
                         pairs="all")
        out2 = outputs_dense(model, spec, g2)
        for name, v in out.items():
            want = act(v, spec.outputs[name].dims, sigma)
            assert torch.allclose(out2[name], want, atol=1e-5), (name, (out2[name] - want).abs().max())


@pytest.mark.parametrize("path", spec_files(), ids=lambda p: p.stem)
def test_sparse_equals_dense_outputs_and_gradients(path):
    spec = load_spec(path)
    sizes = REGULAR.get(path.stem, SIZES[path.stem])
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    model = PEGNN(spec, hidden=6, layers=2, attention="auto").double()
    graphs = [build_graph(spec, sizes, random_sizes_tensors(spec, sizes, gen)[1]) for _ in range(3)]
    batch = next(iter(DataLoader(graphs, batch_size=3)))
    res = {}
    for dense in (True, False):
        model.zero_grad()
        model.dense = dense
        out = model(batch, entries=True)
        loss = sum((v.abs() ** 2).sum() if v.is_complex() else (v ** 2).sum() for v in out.values())
        loss.backward()
        res[dense] = ({k: v.detach() for k, v in out.items()},
                      {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    for k in res[True][0]:
        assert torch.allclose(res[True][0][k], res[False][0][k], atol=1e-5)
    assert res[True][1].keys() == res[False][1].keys()
    for n in res[True][1]:
        assert torch.allclose(res[True][1][n], res[False][1][n], atol=1e-5), n


def test_dense_path_is_chosen_only_for_regular_batches():
    spec = load_spec(GRAPHS / "mimo_pm.yaml")
    model = PEGNN(spec, hidden=4, layers=1)
    gen = torch.Generator().manual_seed(0)
    reg = [build_graph(spec, REGULAR["mimo_pm"], random_sizes_tensors(spec, REGULAR["mimo_pm"], gen, torch.float32)[1])
           for _ in range(2)]
    rag = build_graph(spec, SIZES["mimo_pm"], random_sizes_tensors(spec, SIZES["mimo_pm"], gen, torch.float32)[1])
    assert model.layout(next(iter(DataLoader(reg, batch_size=2)))).dense
    assert not model.layout(next(iter(DataLoader(reg + [rag], batch_size=3)))).dense
    with pytest.raises(ValueError, match="not regular"):
        PEGNN(spec, hidden=4, layers=1, dense=True).layout(rag)


def test_size_generalisation_same_weights():
    """TEPN weights run at K 8→10, N_T 32→64, and (nested spec) on ragged sizes."""
    spec = load_spec(GRAPHS / "tenn_precoding.yaml")
    model = PEGNN(spec, **TEPN)
    gen = torch.Generator().manual_seed(0)
    for sizes in ["ue=8,ant_ue=2,ant_bs=32", "ue=10,ant_ue=2,ant_bs=32", "ue=8,ant_ue=2,ant_bs=64"]:
        g = build_graph(spec, sizes, random_sizes_tensors(spec, sizes, gen, torch.float32)[1])
        out = model(g)
        K, NR = int(sizes.split(",")[0][3:]), 2
        assert out["A"].shape == (K, NR, NR) and out["A"].is_complex() and torch.isfinite(torch.view_as_real(out["A"])).all()
    spec = load_spec(GRAPHS / "ris_pr.yaml")
    model = PEGNN(spec, hidden=8, layers=2)
    mixed = [build_graph(spec, s, random_sizes_tensors(spec, s, gen, torch.float32)[1])
             for s in ["cell=1,ue=3,rf=6,ant_bs=8,re=8", "cell=2,ue=[1,3],rf=2,ant_bs=[2,4],re=5"]]
    batch = next(iter(DataLoader(mixed, batch_size=2)))
    per_graph = unbatch(batch, model(batch), spec)
    assert per_graph[0]["W_BB"].shape == (1, 6, 3) and per_graph[1]["W_RF"].shape == (2, 6, 4)
    # batching does not change a graph's outputs
    alone = unbatch(mixed[1], model(mixed[1], entries=True), spec)[0]
    for k in alone:
        assert torch.allclose(alone[k], per_graph[1][k], atol=1e-5)


def test_presets_match_the_paper_sizes():
    tepn = PEGNN(load_spec(GRAPHS / "tenn_precoding.yaml"), **TEPN)
    n = sum(p.numel() for p in tepn.parameters())
    assert 2200 <= n <= 2600, n  # paper 000: TEPN ≈ 2.4k parameters at D_H = 8, L = 3
    assert tepn.attention_sets == [] and len(tepn.layers) == 3
    teusn = PEGNN(load_spec(GRAPHS / "tenn_scheduling.yaml"), **TEUSN)
    assert len(teusn.layers) == 4 and teusn.embed.out_features == 32


def test_missing_pairs_give_a_clear_error():
    spec = load_spec(GRAPHS / "ris_pr.yaml")
    sizes = SIZES["ris_pr"]
    g = build_graph(spec, sizes, random_sizes_tensors(spec, sizes, torch.Generator().manual_seed(0), torch.float32)[1])
    with pytest.raises(ValueError, match="no attention pairs along 'rf'"):
        PEGNN(spec, hidden=4, layers=1, attention=["rf"])(g)


def test_attention_overrides():
    spec = load_spec(GRAPHS / "ris_pr.yaml")
    assert PEGNN(spec, hidden=4, layers=1).attention_sets == ["ue"]
    assert PEGNN(spec, hidden=4, layers=1, attention=["rf"]).attention_sets == ["rf"]
    assert PEGNN(spec, hidden=4, layers=1, attention="none").attention_sets == []
    with pytest.raises(ValueError, match="not a recursion set"):
        PEGNN(spec, hidden=4, layers=1, attention=["cell"])


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "sparse"])
@pytest.mark.parametrize("name", ["tenn_precoding", "ris_pr", "mimo_pm", "miso_ps"])
def test_attention_as_mean_reproduces_the_network_without_attention(name, dense):
    """Weights of a network without attention + ``attention_as_mean_`` = the same
    function (normal sets and a set nested once: ``ue`` in ``cell`` of ris_pr, with its
    within- and across-parent messages), and the attention is live afterwards."""
    spec = load_spec(GRAPHS / f"{name}.yaml")
    sizes = REGULAR.get(name, SIZES[name])
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    plain = PEGNN(spec, hidden=5, layers=2, attention="none", dense=dense).double()
    att = PEGNN(spec, hidden=5, layers=2, attention="auto", dense=dense).double()
    assert att.attention_sets, name
    att.load_state_dict(plain.state_dict(), strict=False)
    graphs = [build_graph(spec, sizes, random_sizes_tensors(spec, sizes, gen)[1], pairs="all") for _ in range(2)]
    batch = next(iter(DataLoader(graphs, batch_size=2)))
    before = {k: v.detach() for k, v in att(batch, entries=True).items()}
    att.attention_as_mean_(batch)
    want, got = plain(batch, entries=True), att(batch, entries=True)
    for k in want:
        assert not torch.allclose(before[k], want[k], atol=1e-3)        # the load alone is not enough
        assert torch.allclose(got[k], want[k], atol=1e-10, rtol=1e-10), (k, (got[k] - want[k]).abs().max())
    with torch.no_grad():
        att.layers[0].attention[0].scorers[next(iter(att.layers[0].attention[0].scorers))].f1.weight.add_(0.1)
    assert any(not torch.allclose(att(batch, entries=True)[k], want[k], atol=1e-6) for k in want)


def test_attention_as_mean_refuses_what_has_no_mean_form(tmp_path):
    """Several attention sets in a layer, softmax attention: one clear error each; and
    ``train.init`` from an attention-free policy file uses it (and says so)."""
    from pegnn.policy_files import save_policy
    from pegnn.train import init_weights
    spec = load_spec(GRAPHS / "tenn_precoding.yaml")
    g = build_graph(spec, "ue=3,ant_ue=2,ant_bs=4", random_sizes_tensors(spec, "ue=3,ant_ue=2,ant_bs=4",
                                                                        torch.Generator().manual_seed(0))[1])
    with pytest.raises(ValueError, match="one attention set per layer"):
        PEGNN(spec, hidden=4, layers=1, attention="all").attention_as_mean_(g)
    with pytest.raises(ValueError, match="only attention_kind='inner'"):
        PEGNN(spec, hidden=4, layers=1, attention="auto", attention_kind="softmax").attention_as_mean_(g)
    torch.manual_seed(0)
    plain = PEGNN(spec, hidden=4, layers=2, attention="none")
    save_policy(tmp_path / "p.pt", "tecfp", plain)
    att = PEGNN(spec, hidden=4, layers=2, attention="auto")
    init_weights(att, tmp_path / "p.pt", sample=lambda: g)
    for k, v in plain(g).items():
        assert torch.allclose(att(g)[k], v, atol=1e-5)
    with pytest.raises(ValueError, match="does not fit this model"):   # without a sample: strict, as before
        init_weights(PEGNN(spec, hidden=4, layers=2, attention="auto"), tmp_path / "p.pt")
    with pytest.raises(ValueError, match="cannot start from them: .*only attention_kind='inner'"):
        init_weights(PEGNN(spec, hidden=4, layers=2, attention="auto", attention_kind="softmax"), tmp_path / "p.pt",
                     sample=lambda: g)
