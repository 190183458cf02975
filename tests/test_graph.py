"""The graph builder: hand-counted sizes, input features, batching, relabelling."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch_geometric.loader import DataLoader

from pegnn import SpecError, build_graph, load_spec

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"


def spec_of(name):
    return load_spec(GRAPHS / f"{name}.yaml")


def counts(g) -> tuple[dict, dict]:
    return ({n: g[n].num_nodes for n in g.node_types},
            {e: g[e].edge_index.shape[1] for e in g.edge_types})


def set_sizes(spec, sizes) -> dict[str, int]:
    """Number of elements of every set (structure-only build)."""
    g = build_graph(spec, sizes)
    return {s: g[s].num_nodes for s in spec.sets}


def random_inputs(spec, sizes, seed=0) -> dict[str, torch.Tensor]:
    """Dense inputs over the global element ids, distinct values everywhere."""
    gen = torch.Generator().manual_seed(seed)
    n = set_sizes(spec, sizes)
    out = {}
    for name, t in spec.inputs.items():
        shape = [n[d] for d in t.dims]
        dtype = torch.complex64 if t.complex else torch.float32
        out[name] = torch.randn(shape, generator=gen, dtype=dtype)
    return out


def coords(g, field) -> tuple[torch.Tensor, list[str]]:
    """Each entry's element ids ``[n_entries, n_dims]``, read from its incidence
    edges (columns in edge-type order, which is the same in graphs of one spec)."""
    rels = [(rel, dst) for src, rel, dst in g.edge_types
            if src == field and (rel.startswith("at_") or rel.startswith("at2_"))]
    out = torch.full((g[field].num_nodes, len(rels)), -1, dtype=torch.long)
    for j, (rel, dst) in enumerate(rels):
        ei = g[field, rel, dst].edge_index
        out[ei[0], j] = ei[1]
    assert (out >= 0).all(), f"{field}: an entry lacks an incidence edge"
    return out, [dst for _, dst in rels]


# ------------------------------------------------------------ hand counts
def test_counts_regular_normal_sets():
    # miso_ps, ue=3, ant_bs=4: H and W are 3*4 = 12 entries, the scalar noise one;
    # the state D is over (ue, ant_bs): 12 entries, every one updated (no nesting).
    spec = spec_of("miso_ps")
    g = build_graph(spec, "ue=3,ant_bs=4")
    nodes, edges = counts(g)
    assert nodes == {"ue": 3, "ant_bs": 4, "H": 12, "noise": 1, "W": 12, "_D": 12}
    assert edges == {
        ("H", "at_ue", "ue"): 12, ("H", "at_ant_bs", "ant_bs"): 12,      # one per entry and dim
        ("W", "at_ue", "ue"): 12, ("W", "at_ant_bs", "ant_bs"): 12,
        ("_D", "at_ue", "ue"): 12, ("_D", "at_ant_bs", "ant_bs"): 12,
        ("H", "feeds", "_D"): 12, ("noise", "feeds", "_D"): 12,         # every state entry reads both
        ("_D", "pair_ue", "_D"): 12 * 2,   # attention on ue: each entry scores the 2 other UEs
        ("_D", "pools", "W"): 12,          # W has D's dims: one-to-one read-out
    }
    # fibres: 2 levels per normal axis (0 = the element, 1 = pooled) → 2*2 keys
    assert sorted(k for k in g["_D"].keys() if k.startswith("fib_")) == ["fib_0_0", "fib_0_1", "fib_1_0", "fib_1_1"]
    assert g["_D"].fib_1_1.unique().tolist() == [0]       # pooled on both axes: one group
    assert len(g["_D"].fib_0_1.unique()) == 3              # grouped by ue only


def test_counts_regular_nested_sets():
    # mimo_pm, ue=2, ds=2 and ant_ue=3 per UE, ant_bs=4 → 4 DSs, 6 UE antennas.
    spec = spec_of("mimo_pm")
    g = build_graph(spec, "ue=2,ds=2,ant_ue=3,ant_bs=4")
    nodes, edges = counts(g)
    assert nodes == {"ue": 2, "ds": 4, "ant_ue": 6, "ant_bs": 4,
                     "H": 2 * 3 * 4,    # H[ue, ant_ue, ant_bs]: ant_ue ranges over the UE's own 3 antennas
                     "noise": 1,
                     "W": 2 * 2 * 4,    # W[ue, ds, ant_bs]: the UE's own 2 DSs
                     "_D": 4 * 6 * 4}   # state over (ds, ant_ue, ant_bs): full product, 96
    assert edges[("ds", "in", "ue")] == 4 and edges[("ant_ue", "in", "ue")] == 6
    assert edges[("H", "feeds", "_D")] == 96   # the UE of a state entry is that of its antenna
    # f_out updates only entries whose DS and antenna belong to the same UE: 2 UEs * (2*3) * 4
    assert int(g["_D"].updated.sum()) == 48
    assert edges[("_D", "pools", "W")] == 48   # ant_ue is pooled (MDI) from the updated entries
    # attention along ds: each entry pairs with the 3 other DSs at the same (ant_ue, ant_bs)
    assert edges[("_D", "pair_ds", "_D")] == 96 * 3
    # of those, the 1 other DS of the same UE is a within-parent pair
    assert int(g["_D", "pair_ds", "_D"].same_parent.sum()) == 96 * 1
    # fibre levels: ds and ant_ue have 3 (element, parent UE, pooled), ant_bs 2 → 18 keys
    assert len([k for k in g["_D"].keys() if k.startswith("fib_")]) == 3 * 3 * 2
    # keeping ds at its parent level groups entries by (UE of the DS, ant_ue, ant_bs)
    assert len(g["_D"].fib_1_0_0.unique()) == 2 * 6 * 4


def test_counts_ragged_nested_sets():
    # ris_pr with cell=2, ue=[1,2] (1 UE in cell 0, 2 in cell 1), rf=2 and ant_bs=3
    # per cell, re=4  →  3 UEs, 4 RF chains, 6 BS antennas, 4 REs.
    spec = spec_of("ris_pr")
    g = build_graph(spec, "cell=2,ue=[1,2],rf=2,ant_bs=3,re=4")
    nodes, edges = counts(g)
    assert nodes == {
        "cell": 2, "ue": 3, "rf": 4, "ant_bs": 6, "re": 4,
        "H_d": 3 * 6,     # [ue, ant_bs], cell is not a dim: every pair, cross-cell included
        "G": 4 * 6,       # [re, ant_bs]
        "h_r": 3 * 4,     # [ue, re]
        "W_BB": 6,        # [cell, rf, ue] tied to the cell: cell 0: 2 rf * 1 ue + cell 1: 2 rf * 2 ue
        "W_RF": 12,       # [cell, ant_bs, rf]: 2 cells * 3 antennas * 2 RF chains
        "theta": 4,       # [re]
        "_D": 3 * 4 * 6 * 4,   # state over (ue, rf, ant_bs, re): full product, 288
    }
    assert g["ue", "in", "cell"].edge_index.tolist() == [[0, 1, 2], [0, 1, 1]]
    # updated: ue, rf and ant_bs in the same cell: cell 0: 1*2*3*4 = 24, cell 1: 2*2*3*4 = 48
    assert int(g["_D"].updated.sum()) == 72
    # each updated entry (ue, rf, ant_bs, re) pools onto W_BB[cell, rf, ue], which exists
    # because ue and rf share the cell: 72 edges (ant_bs and re pooled away by MDI)
    assert edges[("_D", "pools", "W_BB")] == 72
    assert edges[("_D", "pools", "W_RF")] == 72 and edges[("_D", "pools", "theta")] == 72
    # attention on ue: 288 entries, each with the 2 other UEs at the same (rf, ant_bs, re)
    assert edges[("_D", "pair_ue", "_D")] == 576
    # within-cell pairs: only cell 1 has 2 UEs → 2 ordered pairs per (rf, ant_bs, re) = 2 * 96
    assert int(g["_D", "pair_ue", "_D"].same_parent.sum()) == 192
    # the pairs' group is the ordered UE pair (k, j) they score: 3 * 2 of them
    assert len(g["_D", "pair_ue", "_D"].group.unique()) == 6
    assert g["ue"].fanout.tolist() == [-1] and g["rf"].fanout.tolist() == [2]   # -1: ragged


def test_counts_order_two():
    # power_control_pc, ue=3: G[ue, ue] makes the state order 2 over (ue, ue): 9 entries
    spec = spec_of("power_control_pc")
    nodes, edges = counts(build_graph(spec, "ue=3"))
    assert nodes == {"ue": 3, "G": 9, "noise": 1, "p": 3, "_D": 9}
    assert edges[("_D", "at_ue", "ue")] == 9 and edges[("_D", "at2_ue", "ue")] == 9
    for rel in ("transpose_ue", "diag_ue", "diag2_ue"):
        assert edges[("_D", rel, "_D")] == 9
    # tenn_precoding: the output A[ue, ant_ue, ant_ue] lifts a base field over (ue, ant_ue)
    nodes, edges = counts(build_graph(spec_of("tenn_precoding"), "ue=2,ant_ue=3,ant_bs=4"))
    assert nodes["A"] == 2 * 3 * 3 and nodes["_B_A"] == 2 * 3 and nodes["_D"] == 2 * 3 * 4
    assert edges[("_B_A", "row", "A")] == edges[("_B_A", "col", "A")] == 18
    assert edges[("_D", "pools", "_B_A")] == 24    # ant_bs pooled onto (ue, ant_ue)


# --------------------------------------------------------------- features
def test_complex_features_land_on_their_entries():
    spec = spec_of("tenn_precoding")
    u_, a_, b_ = torch.meshgrid(torch.arange(2), torch.arange(3), torch.arange(4), indexing="ij")
    H = torch.complex(100.0 * u_ + 10 * a_ + b_, -(100.0 * u_ + 10 * a_ + b_) - 0.5)
    g = build_graph(spec, "ue=2,ant_ue=3,ant_bs=4", {"H": H, "noise": 0.25})
    c, dims = coords(g, "H")
    assert dims == ["ue", "ant_ue", "ant_bs"] and len(c) == 24
    for row, (u, a, b) in zip(g["H"].x, c.tolist()):
        assert row.tolist() == [H[u, a, b].real.item(), H[u, a, b].imag.item()]
    # e.g. the entry for (u, a, b) = (1, 2, 3) is row-major number 1*12 + 2*4 + 3
    assert g["H"].x[1 * 12 + 2 * 4 + 3].tolist() == [123.0, -123.5]
    assert g["noise"].x.tolist() == [[0.25]]


def test_ragged_features_and_ties():
    spec = spec_of("mimo_pm")
    sizes = "ue=3,ds=[1,2,2],ant_ue=[2,1,3],ant_bs=2"
    n = set_sizes(spec, sizes)
    H = torch.arange(n["ue"] * n["ant_ue"] * n["ant_bs"], dtype=torch.float32).reshape(3, 6, 2) * (1 + 1j)
    g = build_graph(spec, sizes, {"H": H, "noise": torch.tensor([1.0])})
    parent = g["ant_ue", "in", "ue"].edge_index[1]
    c, _ = coords(g, "H")
    assert len(c) == (2 + 1 + 3) * 2                  # each UE with its own antennas only
    assert (parent[c[:, 1]] == c[:, 0]).all()
    for row, (u, a, b) in zip(g["H"].x, c.tolist()):
        assert row.tolist() == [H[u, a, b].real.item(), H[u, a, b].imag.item()]


def test_real_order_two_features():
    spec = spec_of("power_control_pc")
    G = torch.arange(16.0).reshape(4, 4)
    g = build_graph(spec, "ue=4", {"G": G, "noise": 0.1})
    c, dims = coords(g, "G")
    assert dims == ["ue", "ue"] and g["G"].x.shape == (16, 1)
    for row, (u, v) in zip(g["G"].x, c.tolist()):
        assert row.item() == G[u, v].item()
    assert g["G"].x.dtype == torch.float32


# ----------------------------------------------------------- batching
MIXED = {
    "ris_pr": ["cell=2,ue=[1,2],rf=2,ant_bs=[2,3],re=2", "cell=1,ue=3,rf=1,ant_bs=2,re=3",
               "cell=3,ue=[2,1,1],rf=[1,1,2],ant_bs=1,re=1"],
    "tenn_precoding": ["ue=2,ant_ue=2,ant_bs=3", "ue=3,ant_ue=1,ant_bs=2", "ue=1,ant_ue=3,ant_bs=1"],
    "power_control_pc": ["ue=2", "ue=4", "ue=3"],
    "mimo_pm": ["ue=2,ds=[1,2],ant_ue=[2,1],ant_bs=2", "ue=3,ds=1,ant_ue=2,ant_bs=1"],
}


def assert_same_graph(a, b):
    assert set(a.node_types) == set(b.node_types) and set(a.edge_types) == set(b.edge_types)
    for key in list(a.node_types) + list(a.edge_types):
        sa, sb = a[key], b[key]
        assert set(sa.keys()) == set(sb.keys()), key
        for k in sa.keys():
            va, vb = sa[k], sb[k]
            if isinstance(va, torch.Tensor):
                assert va.dtype == vb.dtype and torch.equal(va, vb), (key, k)
            else:
                assert va == vb, (key, k)


@pytest.mark.parametrize("name", sorted(MIXED))
def test_batching_round_trips_exactly(name):
    spec = spec_of(name)
    graphs = [build_graph(spec, s, random_inputs(spec, s, seed=i)) for i, s in enumerate(MIXED[name])]
    batch = next(iter(DataLoader(graphs, batch_size=len(graphs), shuffle=False)))
    assert batch.num_graphs == len(graphs)
    for i, (orig, back) in enumerate(zip(graphs, batch.to_data_list())):
        assert_same_graph(orig, back)
        assert_same_graph(orig, batch.get_example(i))

    # per-graph group ids are shifted apart: no fibre/pair/lift group spans two graphs
    def disjoint(ids, owner):
        seen: dict[int, int] = {}
        for gid, o in zip(ids.tolist(), owner.tolist()):
            assert seen.setdefault(gid, o) == o, f"group {gid} in graphs {seen[gid]} and {o}"
    for k in batch["_D"].keys():
        if k.startswith("fib_"):
            disjoint(batch["_D"][k], batch["_D"].batch)
    for nt in batch.node_types:
        if nt.startswith("_B_"):
            disjoint(batch[nt].fib_lift, batch[nt].batch)
    for et in batch.edge_types:
        if "group" in batch[et]:
            disjoint(batch[et].group, batch["_D"].batch[batch[et].edge_index[0]])


# ------------------------------------------------------------ relabelling
def relabel(spec, sizes: dict, perms: dict, seed=0):
    """A group element: ``perms[s]`` permutes a normal set, or for a nested set the
    children inside each parent (``"random"``); a permuted parent moves its child
    blocks. Returns (new sizes, {set: old global id → new global id})."""
    gen = torch.Generator().manual_seed(seed)
    new_sizes, maps = {}, {}
    for s in sorted(spec.sets, key=spec.depth):
        p = spec.parent(s)
        if p is None:
            n = sizes[s]
            maps[s] = torch.randperm(n, generator=gen) if s in perms else torch.arange(n)
            new_sizes[s] = n
            continue
        cnt = sizes[s] if isinstance(sizes[s], list) else [sizes[s]] * len(maps[p])
        new_cnt = [0] * len(cnt)
        for q, c in enumerate(cnt):
            new_cnt[int(maps[p][q])] = c
        starts = torch.tensor([0] + new_cnt[:-1]).cumsum(0)
        m = []
        for q, c in enumerate(cnt):          # old parent-major order
            local = torch.randperm(c, generator=gen) if s in perms else torch.arange(c)
            m.append(starts[int(maps[p][q])] + local)
        maps[s] = torch.cat(m)
        new_sizes[s] = new_cnt
    return new_sizes, maps


def permute_dense(x: torch.Tensor, dims, maps) -> torch.Tensor:
    if not dims:
        return x.clone()
    out = torch.empty_like(x)
    idx = torch.meshgrid(*[maps[d] for d in dims], indexing="ij")
    out[idx] = x
    return out


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``a`` and ``b`` label the same partition (up to renaming the labels)."""
    pairs = torch.unique(torch.stack([a, b], 1), dim=0)
    return len(pairs) == len(a.unique()) == len(b.unique())


def entry_map(g, h, field, maps) -> torch.Tensor:
    """Entry i of ``field`` in g ↦ the entry of h over the relabelled elements."""
    if g[field].num_nodes == 1 and not any(e[0] == field and e[1].startswith("at") for e in g.edge_types):
        return torch.zeros(1, dtype=torch.long)   # a scalar field
    cg, dims = coords(g, field)
    ch, dims_h = coords(h, field)
    assert dims == dims_h
    index = {tuple(r): i for i, r in enumerate(ch.tolist())}
    moved = torch.stack([maps[d][cg[:, j]] for j, d in enumerate(dims)], 1)
    m = torch.tensor([index[tuple(r)] for r in moved.tolist()])
    assert sorted(m.tolist()) == list(range(h[field].num_nodes)), f"{field}: not a bijection"
    return m


def assert_isomorphic(g, h, maps):
    """h is g with every set element relabelled by ``maps``: features, fibres,
    masks and every edge type correspond under the induced map of entries."""
    assert set(g.node_types) == set(h.node_types) and set(g.edge_types) == set(h.edge_types)
    m = dict(maps)
    for nt in g.node_types:
        if nt not in maps:
            m[nt] = entry_map(g, h, nt, maps)
            assert g[nt].num_nodes == h[nt].num_nodes
    for nt in g.node_types:
        for k in g[nt].keys():
            v = g[nt][k]
            if k == "x":
                assert torch.equal(h[nt].x[m[nt]], v), nt
            elif k.startswith("fib_"):
                assert same_partition(v, h[nt][k][m[nt]]), (nt, k)
            elif k == "updated":
                assert torch.equal(h[nt][k][m[nt]], v), nt
            elif k == "fanout":
                assert torch.equal(h[nt][k], v), nt
    for et in g.edge_types:
        src, _, dst = et
        eg, eh = g[et].edge_index, h[et].edge_index
        moved = torch.stack([m[src][eg[0]], m[dst][eg[1]]], 1)
        index = {tuple(r): i for i, r in enumerate(eh.t().tolist())}
        assert len(index) == eh.shape[1] == eg.shape[1], et
        pos = torch.tensor([index[tuple(r)] for r in moved.tolist()], dtype=torch.long)  # KeyError: edge lost
        for k in g[et].keys():
            if k == "group":
                assert same_partition(g[et].group, h[et].group[pos]), et
            elif k == "same_parent":
                assert torch.equal(g[et].same_parent, h[et].same_parent[pos]), et


PERMUTATIONS = [
    # (spec, sizes, sets permuted)
    ("miso_ps", {"ue": 4, "ant_bs": 3}, {"ue"}),
    ("miso_ps", {"ue": 4, "ant_bs": 3}, {"ue", "ant_bs"}),
    ("power_control_pc", {"ue": 4}, {"ue"}),
    ("tenn_precoding", {"ue": 3, "ant_ue": 2, "ant_bs": 2}, {"ue", "ant_ue", "ant_bs"}),
    ("mimo_pm", {"ue": 3, "ds": [1, 2, 2], "ant_ue": [2, 1, 3], "ant_bs": 2}, {"ue"}),           # parents only
    ("mimo_pm", {"ue": 3, "ds": [1, 2, 2], "ant_ue": [2, 1, 3], "ant_bs": 2}, {"ds", "ant_ue"}),  # children only
    ("mimo_pm", {"ue": 3, "ds": [1, 2, 2], "ant_ue": [2, 1, 3], "ant_bs": 2}, {"ue", "ds", "ant_ue", "ant_bs"}),
    ("ris_pr", {"cell": 3, "ue": [1, 2, 3], "rf": [2, 1, 1], "ant_bs": [1, 3, 2], "re": 3},
     {"cell", "ue", "rf", "ant_bs", "re"}),
    ("table1_wideband_mimo_multicell",
     {"cell": 2, "ue": [1, 2], "ds": [2, 1, 1], "ant_ue": [1, 2, 2], "rf": [1, 2], "ant_bs": [2, 1], "sc": 2},
     {"cell", "ue", "ds", "ant_ue", "rf", "ant_bs", "sc"}),
]


@pytest.mark.parametrize("name,sizes,perms", PERMUTATIONS,
                         ids=[f"{p[0]}-{'+'.join(sorted(p[2]))}" for p in PERMUTATIONS])
def test_permuted_inputs_give_an_isomorphic_graph(name, sizes, perms):
    spec = spec_of(name)
    inputs = random_inputs(spec, sizes, seed=7)
    g = build_graph(spec, sizes, inputs)
    for seed in range(3):
        new_sizes, maps = relabel(spec, sizes, perms, seed=seed)
        moved = {k: permute_dense(v, spec.inputs[k].dims, maps) for k, v in inputs.items()}
        h = build_graph(spec, new_sizes, moved)
        assert_isomorphic(g, h, maps)


def test_permuting_parents_moves_child_blocks():
    spec = spec_of("mimo_pm")
    sizes = {"ue": 3, "ds": [1, 2, 2], "ant_ue": [2, 1, 3], "ant_bs": 2}
    for seed in range(6):
        new_sizes, maps = relabel(spec, sizes, {"ue"}, seed=seed)
        pi = maps["ue"].tolist()
        assert [new_sizes["ant_ue"][pi[q]] for q in range(3)] == sizes["ant_ue"]
        # the antennas of old UE q are a contiguous block of new UE pi[q], in the same order
        starts = [0, 2, 3]
        for q, c in enumerate(sizes["ant_ue"]):
            block = maps["ant_ue"][starts[q]:starts[q] + c]
            assert (block.diff() == 1).all() if c > 1 else True
            assert int(block[0]) == sum(new_sizes["ant_ue"][:pi[q]])


# ------------------------------------------------------------- bad inputs
def _h(shape, dtype=torch.complex64):
    return torch.zeros(shape, dtype=dtype)


BAD = [
    ("wrong shape", "tenn_precoding", "ue=2,ant_ue=2,ant_bs=2", {"H": _h((2, 2, 3)), "noise": 1.0}, "H", "shape"),
    ("NaN", "tenn_precoding", "ue=2,ant_ue=2,ant_bs=2",
     {"H": _h((2, 2, 2)).index_put_((torch.tensor(0),), torch.tensor(float("nan"), dtype=torch.complex64)),
      "noise": 1.0}, "H", "NaN"),
    ("Inf", "power_control_pc", "ue=2", {"G": torch.tensor([[1.0, float("inf")], [0, 1]]), "noise": 1.0}, "G", "Inf"),
    ("complex for a real input", "power_control_pc", "ue=2", {"G": _h((2, 2)), "noise": 1.0}, "G", "complex"),
    ("unknown input name", "miso_ps", "ue=2,ant_bs=2", {"H": _h((2, 2)), "noise": 1.0, "X": 1.0}, "X",
     "not an input"),
    ("missing input", "miso_ps", "ue=2,ant_bs=2", {"H": _h((2, 2))}, "noise", "missing input"),
    ("missing size", "miso_ps", "ue=2", None, "ant_bs", "missing size"),
    ("zero size", "miso_ps", "ue=0,ant_bs=2", None, "ue", ">= 1"),
    ("negative size", "miso_ps", "ue=2,ant_bs=-3", None, "ant_bs", ">= 1"),
    ("zero in a ragged list", "mimo_pm", "ue=2,ds=[1,0],ant_ue=1,ant_bs=1", None, "ds", ">= 1"),
    ("ragged list of wrong length", "mimo_pm", "ue=3,ds=[1,2],ant_ue=1,ant_bs=1", None, "ds", "one count per 'ue'"),
    ("list for a normal set", "miso_ps", "ue=[1,2],ant_bs=2", None, "ue", "positive integer"),
    ("unknown set", "miso_ps", "ue=2,ant_bs=2,cell=2", None, "cell", "unknown set"),
    ("not a number", "miso_ps", "ue=two,ant_bs=2", None, "ue", "integer"),
    ("size given twice", "miso_ps", "ue=2,ant_bs=2,ue=3", None, "ue", "twice"),
]


@pytest.mark.parametrize("what,name,sizes,inputs,key,word", BAD, ids=[b[0] for b in BAD])
def test_bad_sizes_and_inputs_raise_one_line_spec_errors(what, name, sizes, inputs, key, word):
    with pytest.raises(SpecError) as err:
        build_graph(spec_of(name), sizes, inputs, source="--sizes")
    e = err.value
    assert e.path == key and word in e.message, str(e)
    assert "\n" not in str(e)
