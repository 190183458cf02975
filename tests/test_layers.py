"""Each primitive against its brute-force definition."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from pegnn import build_graph, load_spec
from pegnn.graph import STATE, state_axes
from pegnn.nn.attention import SetAttention
from pegnn.nn.hoe import HOE, HOE22
from pegnn.nn.layout import Layout
from pegnn.nn.mde import MDE, pattern_terms
from pegnn.nn.mdi import MDI
from pegnn.plan import plan

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"


@pytest.fixture(autouse=True)
def float64():
    """Exactness checks run in float64; restore the default for other modules."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def layout_for(spec_name: str, sizes: str, dense=None):
    spec = load_spec(GRAPHS / f"{spec_name}.yaml")
    g = build_graph(spec, sizes)
    return spec, g, Layout(g, spec, state_axes(spec, plan(spec)), dense=dense)


def perm_matrix(p: torch.Tensor) -> torch.Tensor:
    return torch.eye(len(p))[p]


def equivariant_space(n_in_perm, n_out_perm) -> torch.Tensor:
    """Basis of {W : W P_in(g) = P_out(g) W for the generators g} (rows = vec(W))."""
    cons = []
    for Pin, Pout in zip(n_in_perm, n_out_perm):
        # vec(W P_in - P_out W) = (P_in^T ⊗ I - I ⊗ P_out) vec(W), column-major vec
        a, b = Pout.shape[0], Pin.shape[0]
        cons.append(torch.kron(Pin.T.contiguous(), torch.eye(a)) - torch.kron(torch.eye(b), Pout))
    A = torch.cat(cons)
    _, s, vh = torch.linalg.svd(A)
    rank = int((s > 1e-9).sum())
    return vh[rank:]


def sym_generators(n: int):
    """A transposition and an n-cycle generate S_n."""
    t = torch.arange(n)
    t[[0, 1]] = t[[1, 0]]
    return [t, torch.roll(torch.arange(n), 1)]


def in_span(mats: list[torch.Tensor], basis: torch.Tensor) -> tuple[int, int]:
    """(rank of mats, rank of mats ∪ basis) with column-major vec."""
    M = torch.stack([m.T.reshape(-1) for m in mats])
    return int(torch.linalg.matrix_rank(M)), int(torch.linalg.matrix_rank(torch.cat([M, basis])))


# ---------------------------------------------------------------- MDE
@pytest.mark.parametrize("dense", [True, False])
def test_mde_equals_bruteforce_parameter_sharing(dense):
    """FC_PE (17) = the FC layer whose weight follows the sharing pattern of paper 000
    App. D (eq. 63): W[(i),(j)] = Σ_P W_P Π_{n∈P} 1/M_n Π_{n∉P} δ(i_n, j_n)."""
    M = (3, 2, 4)
    spec, g, lay = layout_for("tenn_precoding", f"ue={M[0]},ant_ue={M[1]},ant_bs={M[2]}", dense)
    Ci, Co = 2, 3
    torch.manual_seed(0)
    mde = MDE(Ci, Co, pattern_terms([0, 0, 0], "all"))
    x = torch.randn(lay.E, Ci)
    y = mde(lay.to_dense(x) if lay.dense else x, lay)
    y = lay.to_sparse(y) if lay.dense else y
    idx = list(itertools.product(*[range(m) for m in M]))
    E = len(idx)
    W = torch.zeros(E * Co, E * Ci)
    for t, w in zip(mde.terms, mde.weight):
        share = torch.ones(E, E)
        for n, lv in enumerate(t):
            a = torch.tensor([i[n] for i in idx])
            share = share * ((torch.full((E, E), 1.0 / M[n])) if lv else (a[:, None] == a[None, :]).double())
        W += torch.kron(share, w.detach().T.contiguous())
    want = (W @ x.reshape(-1)).view(E, Co) + mde.bias
    assert torch.allclose(y, want, atol=1e-10)


def test_mde_terms_span_the_equivariant_space():
    """The 2^N fibre means span every linear map equivariant to S_M1 × S_M2 × S_M3."""
    M = (2, 3, 2)
    spec, g, lay = layout_for("tenn_precoding", f"ue={M[0]},ant_ue={M[1]},ant_bs={M[2]}", False)
    E = lay.E
    terms = pattern_terms([0, 0, 0], "all")
    mats = [torch.stack([lay.mean(e[:, None], t)[:, 0] for e in torch.eye(E)], 1) for t in terms]
    gens = []
    for ax in range(3):
        for p in sym_generators(M[ax]):
            full = [torch.arange(m) for m in M]
            full[ax] = p
            gens.append(perm_matrix(torch.cartesian_prod(*full)[:, 0] * 0 + _flat(full, M)))
    basis = equivariant_space(gens, gens)
    assert basis.shape[0] == 8
    assert in_span(mats, basis) == (8, 8)


def _flat(perms, M):
    coords = torch.cartesian_prod(*[torch.arange(m) for m in M])
    new = torch.stack([perms[i][coords[:, i]] for i in range(len(M))], 1)
    return (new[:, 0] * M[1] + new[:, 1]) * M[2] + new[:, 2]


def test_patterns_p1_p2_p3():
    assert len(pattern_terms([0, 0, 0], "all")) == 8
    assert pattern_terms([0, 0, 0], "P1") == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]
    p2 = [set(pattern_terms([0, 0, 0], "P2", l)) for l in range(3)]
    assert all((0, 0, 0) in s and len(s) == 3 for s in p2)
    assert set.union(*p2) == set(pattern_terms([0, 0, 0], "P1"))          # eq. (19)
    p3 = [pattern_terms([0, 0, 0], "P3", l) for l in range(3)]
    assert [len(p) for p in p3] == [2, 2, 2]
    assert {t for p in p3 for t in p[1:]} == {(1, 0, 0), (0, 1, 0), (0, 0, 1)}  # eq. (20)
    # a nested axis contributes its within-parent and global means
    assert set(pattern_terms([1], "all")) == {(0,), (1,), (2,)}
    with pytest.raises(ValueError, match="unknown MDE pattern"):
        pattern_terms([0], "P9")


# ---------------------------------------------------------------- HOE
def test_hoe_1to2_spans_the_equivariant_space():
    """The five terms (20)-(24) span all linear maps R^M → R^{M×M} with
    f(πx) = (π⊗π) f(x): a space of dimension B(3) = 5."""
    M = 4
    spec, g, lay = layout_for("tenn_precoding", f"ue=1,ant_ue={M},ant_bs=2", False)
    row = g["_B_A", "row", "A"].edge_index[0]
    col = g["_B_A", "col", "A"].edge_index[0]
    hoe = HOE(1, 1)
    mats = []
    for k in range(5):
        with torch.no_grad():
            hoe.weight.zero_(); hoe.bias.zero_(); hoe.weight[k] = 1.0
        mats.append(torch.stack([hoe(e[:, None], row, col, g["_B_A"].fib_lift)[:, 0] for e in torch.eye(M)], 1))
    # output entries are (a, a') row-major
    gin = [perm_matrix(p) for p in sym_generators(M)]
    gout = [perm_matrix((p[:, None] * M + p[None, :]).reshape(-1)) for p in sym_generators(M)]
    basis = equivariant_space(gin, gout)
    assert basis.shape[0] == 5
    assert in_span(mats, basis) == (5, 5)


def test_hoe_2to2_spans_the_equivariant_space():
    """The MDE fibre means of an order-2 pair (4) + HOE22's eleven terms span the
    B(4) = 15-dimensional space of equivariant maps R^{n×n} → R^{n×n} (paper 001 App. E)."""
    n = 4
    spec, g, lay = layout_for("power_control_pc", f"ue={n}", False)
    assert lay.axes == ["ue", "ue"]
    h = HOE22(1, 1, 0, "ue")
    mats = []
    for lv in [(0, 0), (1, 0), (0, 1), (1, 1)]:
        mats.append(torch.stack([lay.mean(e[:, None], lv)[:, 0] for e in torch.eye(n * n)], 1))
    cols = [h.terms(e[:, None], lay) for e in torch.eye(n * n)]
    for k in range(HOE22.N_TERMS):
        mats.append(torch.stack([c[k][:, 0] for c in cols], 1))
    gens = [perm_matrix((p[:, None] * n + p[None, :]).reshape(-1)) for p in sym_generators(n)]
    basis = equivariant_space(gens, gens)
    assert basis.shape[0] == 15
    assert in_span(mats, basis) == (15, 15)


# ---------------------------------------------------------------- MDI
@pytest.mark.parametrize("pooling", ["pma", "mean"])
def test_mdi_is_invariant_within_each_group(pooling):
    spec, g, lay = layout_for("ris_pr", "cell=2,ue=[2,1],rf=2,ant_bs=[2,3],re=3", False)
    torch.manual_seed(0)
    mdi = MDI(4, pooling, heads=2)
    src, dst = g[STATE, "pools", "W_BB"].edge_index
    x = torch.randn(lay.E, 4)
    out = mdi(x, g[STATE, "pools", "W_BB"].edge_index, g["W_BB"].num_nodes)
    # shuffle the state entries feeding each output entry among themselves
    x2 = x.clone()
    for o in dst.unique():
        members = src[dst == o]
        x2[members] = x[members[torch.randperm(len(members))]]
    out2 = mdi(x2, g[STATE, "pools", "W_BB"].edge_index, g["W_BB"].num_nodes)
    assert torch.allclose(out, out2, atol=1e-12)
    if pooling == "mean":
        assert torch.allclose(out[0], x[src[dst == 0]].mean(0))


def pma_by_definition(mdi: MDI, X: torch.Tensor) -> torch.Tensor:
    """Eqs. (26)-(30) of paper 000 literally, for one group X ``[M, C]``: keys and
    values of FFC(X), one query from the seed, softmax per head, MAB."""
    H, C = mdi.heads, mdi.channels
    d = C // H
    Y = mdi.ffc_in(X)
    q, k, v = mdi.q(mdi.seed).view(H, d), mdi.k(Y).view(-1, H, d), mdi.v(Y).view(-1, H, d)
    heads = []
    for h in range(H):
        a = torch.softmax(k[:, h] @ q[h] / d ** 0.5, 0)
        heads.append(a @ v[:, h])
    M = mdi.norm(mdi.seed[0] + mdi.o(torch.cat(heads)))
    return M + torch.relu(mdi.ffc_out(M))


@pytest.mark.parametrize("heads", [1, 2])
def test_pma_matches_its_definition_sparse_and_dense(heads):
    """The folded PMA (score and value projections moved onto the pooled state) is
    eqs. (26)-(30), on the scatter path and on the dense path."""
    spec, g, lay = layout_for("ris_pr", "cell=2,ue=[2,1],rf=2,ant_bs=[2,3],re=3", False)
    torch.manual_seed(1)
    mdi = MDI(4, "pma", heads=heads)
    for p in mdi.parameters():                       # non-trivial biases and norm affine
        torch.nn.init.normal_(p)
    src, dst = g[STATE, "pools", "W_BB"].edge_index
    x = torch.randn(lay.E, 4)
    out = mdi(x, g[STATE, "pools", "W_BB"].edge_index, g["W_BB"].num_nodes)
    for o in dst.unique():
        assert torch.allclose(out[o], pma_by_definition(mdi, x[src[dst == o]]), atol=1e-10)
    xd = torch.randn(2, 3, 5, 4)                     # dense: pool dims 1 and 2
    want = torch.stack([pma_by_definition(mdi, xd[b].reshape(-1, 4)) for b in range(2)])
    assert torch.allclose(mdi.forward_dense(xd, [1, 2]), want, atol=1e-10)


# ---------------------------------------------------------------- attention
@pytest.mark.parametrize("kind,loop_max", [("inner", 8), ("inner", 0), ("softmax", 8)])
@pytest.mark.parametrize("dense", [True, False])
def test_attention_matches_its_definition(kind, loop_max, dense, monkeypatch):
    """m_{k,o} = 1/n Σ_{j≠k} α_kj ⊙ v(x_{j,o}) with α_kj = mean_o f1(x_ko) ⊙ f2(x_jo)
    (inner), or the softmax over j ≠ k of <q(x̄_k), k(x̄_j)>/√C (softmax). Dense inner
    attention is checked on both of its routes (loop over j, and einsum)."""
    K, NR, NT, C = 3, 2, 3, 4
    spec, g, lay = layout_for("tenn_precoding", f"ue={K},ant_ue={NR},ant_bs={NT}", dense)
    torch.manual_seed(0)
    monkeypatch.setattr(SetAttention, "LOOP_MAX", loop_max)
    att = SetAttention(C, 0, "ue", nested=False, kind=kind)
    x = torch.randn(lay.E, C)
    m = att(lay.to_dense(x) if lay.dense else x, lay)["all"]
    m = lay.to_sparse(m) if lay.dense else m
    X = x.view(K, NR * NT, C)
    sc = att.scorers["all"]
    want = torch.zeros_like(X)
    for k in range(K):
        if kind == "softmax":
            q, kk = sc.f1(X.mean(1)), sc.f2(X.mean(1))
            s = torch.stack([(q[k] * kk[j]).sum() / C ** 0.5 if j != k else torch.tensor(-float("inf"))
                             for j in range(K)])
            a = torch.softmax(s, 0)
        for j in range(K):
            if j == k:
                continue
            if kind == "inner":
                alpha = (sc.f1(X[k]) * sc.f2(X[j])).mean(0)
                want[k] += alpha * sc.v(X[j]) / K
            else:
                want[k] += a[j] * sc.v(X[j])
    assert torch.allclose(m.view(K, NR * NT, C), want, atol=1e-10)


def test_nested_attention_splits_within_and_across_parents():
    spec, g, lay = layout_for("ris_pr", "cell=2,ue=[2,2],rf=1,ant_bs=1,re=1", False)
    att = SetAttention(2, 0, "ue", nested=True)
    out = att(torch.randn(lay.E, 2), lay)
    assert set(out) == {"within", "across"}
    (src, dst), _, same = lay.pairs("ue")
    ue = lay.coords(0)
    cell = g["ue", "in", "cell"].edge_index[1]
    assert torch.equal(same, cell[ue[src]] == cell[ue[dst]])


def test_attention_scope_without_pairs_is_exactly_zero_and_stays_in_the_graph():
    """One cell: the "across" scope has no pair. Both paths skip its work and return a
    0-dim exact zero that keeps the scorer's parameters in autograd (DDP); the MDE term
    it feeds is skipped, which must equal feeding it a zero state."""
    outs = {}
    for dense in (True, False):
        spec, g, lay = layout_for("ris_pr", "cell=1,ue=3,rf=2,ant_bs=2,re=2", dense)
        torch.manual_seed(0)
        att = SetAttention(4, 0, "ue", nested=True).double()
        x = torch.randn(lay.E, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        xs = lay.to_dense(x) if lay.dense else x
        out = att(xs, lay)
        assert out["across"].dim() == 0 and out["across"].item() == 0.0
        outs[dense] = lay.to_sparse(out["within"]) if lay.dense else out["within"]
        out["across"].backward()
        assert all(p.grad is not None and torch.equal(p.grad, torch.zeros_like(p.grad))
                   for p in att.scorers["across"].parameters())
        # MDE with the term skipped == MDE with that term fed an explicit zero state
        terms = pattern_terms([spec.depth(a) for a in lay.axes], "all")
        mde = MDE(4, 3, terms).double()
        t_across = next(t for t in terms if t[0] == 2 and not any(t[1:]))
        zero_lv = (0,) * len(t_across)
        skipped = mde(xs, lay, {t_across: (out["across"].detach(), zero_lv)})
        explicit = mde(xs, lay, {t_across: (torch.zeros_like(xs), zero_lv)})
        assert torch.allclose(skipped, explicit, atol=1e-12)
    assert torch.allclose(outs[True], outs[False], atol=1e-12)
