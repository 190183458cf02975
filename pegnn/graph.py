"""From spec + sizes + inputs to a PyG ``HeteroData`` (DESIGN §3).

A tensor over sets is a hypergraph: each entry is a hyperedge over one element of
each of its sets. :func:`build_graph` stores it the PyG way:

* one node type per **set** (``g['ue'].num_nodes``); a nested set's elements have
  global, parent-major ids and a ``(child, 'in', parent)`` edge to their parent;
* one node type per **tensor field** (inputs and outputs), whose nodes are the
  entries (row-major over the dims; a nested dim only ranges over the children of
  the element its ancestor dim takes, when that ancestor is a dim of the tensor);
  input entries carry ``x`` = values (complex as [re, im] channels), output
  entries ``entry`` = their row-major index (so that PyG un-batches the store);
* **incidence** edge types ``(field, 'at_<set>', set)`` linking each entry to its
  element in every dim (``'at2_<set>'`` for a repeated dim);
* the **state field** ``'_D'`` the engine updates (paper 002 Sec. IV-B): one entry
  per element tuple of the plan's state axes (full product, so that cross-cell
  entries keep carrying inter-cell channels), incidence edges like any field,
  ``(input, 'feeds', '_D')`` edges saying which input entry initialises each state
  entry, and ``updated`` — the entries f_out updates (jointly permuted axes agree on
  their common ancestor / declared joint axes agree on their local index);
* cached **fibres**: ``g['_D'].fib_<l1>_<l2>...`` gives, per state entry, the id of
  its group when axis i is kept at nesting level l_i (0: the element itself, 1: its
  parent, ..., depth+1: pooled away). The mean over a fibre, broadcast back, is the
  building block of every TENN/GNN aggregation (eq. 17 and paper 002 eq. 4);
* cached **attention pairs** ``('_D', 'pair_<set>', '_D')``: entries that agree on
  every other axis and differ on ``set`` (paper 002 eqs. 3, 5), with ``group`` (the
  element pair (k, j) they score) and ``same_parent`` (within- vs across-parent);
* **output maps**: ``('_D', 'pools', out)`` (MDI pooling of updated state entries
  onto each output entry) or, for an output repeating a set (HOE 1→2), pooling onto
  a base field ``'_B_<out>'`` plus ``('_B_<out>', 'row'|'col', out)`` edges (the two
  base entries of each output entry)
  and ``g['_B_<out>'].fib_lift`` (the mean over the lifted set, eqs. 23-24).

Group ids (``fib_*``, ``group``, ``fib_lift``) and ``row``/``col`` are per-graph
local and shifted on batching by :class:`SetGraph`, so mixed-size graphs batch with
``torch_geometric.loader.DataLoader`` and un-batch exactly.
"""
from __future__ import annotations

import copy
import json
from collections import OrderedDict
from typing import Iterable, Mapping

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from .plan import Plan, plan as make_plan
from .sizes import Sets, resolve_sizes
from .graph_index import entries, fibre_key, fibre_levels, group_ids, lookup, resolve
from .spec import ProblemSpec, SpecError, as_spec

__all__ = ["SetGraph", "build_graph", "build_batch", "resolve_sizes", "state_axes", "STATE"]

STATE = "_D"


class SetGraph(HeteroData):
    """``HeteroData`` whose per-graph group ids shift correctly when batched."""

    def __inc__(self, key, value, store=None, *args, **kwargs):
        if key.startswith("fib_") or key == "group":
            return int(value.max()) + 1 if value.numel() else 0
        return super().__inc__(key, value, store, *args, **kwargs)


def state_axes(spec: ProblemSpec, p: Plan) -> list[str]:
    """The state tensor's axes: the plan's recursion sets, a set twice when an input
    repeats it (the order-2 state that the 2→2 layer of paper 001 App. E updates;
    :attr:`Plan.state` lists them so)."""
    return list(p.state)


# ------------------------------------------------------------------ build
def build_graph(spec: ProblemSpec, sizes: str | Mapping, inputs: Mapping[str, Tensor] | None = None,
                plan: Plan | None = None, source: str = "sizes", pairs: str | Iterable[str] = "auto") -> SetGraph:
    """Build the heterogeneous graph of one problem instance.

    Args:
        spec: the problem.
        sizes: ``{"ue": 3, "ant_ue": [2, 3, 1], ...}`` or ``"ue=3,ant_ue=[2,3,1]"``:
            an integer per normal set, an integer or per-parent list per nested set.
        inputs: ``{name: tensor}`` dense over the *global* element ids of the
            tensor's dims (e.g. ``H``: ``[n_ue, n_ant_ue, n_ant_bs]``; a scalar is
            ``[]`` or ``[1]``); entries outside the tensor's ties are ignored. Complex
            inputs become ``[re, im]`` feature channels. ``None`` builds the structure
            only (features are zeros), as ``pegnn inspect`` does.
        pairs: the sets whose attention pairs are cached: ``"auto"`` (the plan's
            attention sets), ``"all"`` (every state axis), or a list.

    Returns:
        :class:`SetGraph`. Raises :class:`SpecError` for sizes or inputs that disagree
        with the spec (one line: what is wrong and what is expected).

    The structure (everything but the input features) is cached per (spec, sizes,
    pairs), so building many samples of one size costs only their features.
    """
    spec, sizes = as_spec(spec), resolve_sizes(sizes, source)
    struct, S, coords = _structure(spec, sizes, plan, source, pairs)
    g = copy.copy(struct)
    _set_features(g, spec, S, coords, inputs)
    return g


def build_batch(spec: ProblemSpec, sizes: str | Mapping, inputs: Mapping[str, Tensor], plan: Plan | None = None,
                source: str = "sizes", pairs: str | Iterable[str] = "auto"):
    """A PyG ``Batch`` of B graphs of the same sizes, built in one vectorised step.

    ``inputs`` carry a leading batch dim (``H``: ``[B, n_ue, n_ant_ue, n_ant_bs]``;
    a scalar: ``[B]``). Equal to ``Batch.from_data_list([build_graph(...) for b])``.
    """
    from torch_geometric.data import Batch
    spec, sizes = as_spec(spec), resolve_sizes(sizes, source)
    struct, S, coords = _structure(spec, sizes, plan, source, pairs)
    _check_inputs(spec, {} if inputs is None else inputs)
    missing = sorted(set(spec.inputs) - set(inputs))
    if missing:
        raise SpecError("inputs", missing[0], f"missing input; expected {sorted(spec.inputs)}")
    Bs = {int(torch.as_tensor(v).shape[0]) if torch.as_tensor(v).dim() else -1 for v in inputs.values()}
    if len(Bs) != 1 or -1 in Bs:
        raise SpecError("inputs", "<batch>", "every input needs the same leading batch dim (a scalar input: [B]), "
                                             f"got {({n: tuple(torch.as_tensor(v).shape) for n, v in inputs.items()})}")
    if 0 in Bs:
        raise SpecError("inputs", "<batch>", "an empty batch (B = 0); give at least one sample")
    B = Bs.pop()
    key = (id(struct), B)
    batch = _BATCH_CACHE.get(key)
    if batch is None:
        batch = Batch.from_data_list([struct] * B)
        _BATCH_CACHE[key] = batch
        while len(_BATCH_CACHE) > 4:
            _BATCH_CACHE.popitem(last=False)
    out = copy.copy(batch)
    for name, t in spec.inputs.items():
        out[name].x = _features_batched(t, coords[name], torch.as_tensor(inputs[name]), S, name, source)
    return out


_STRUCT_CACHE: "OrderedDict" = OrderedDict()
_BATCH_CACHE: "OrderedDict" = OrderedDict()


def _structure(spec, sizes, plan, source, pairs):
    # sizes are not validated yet: a key that tolerates any keys/values lets Sets report them
    key = (json.dumps(spec.to_dict(), sort_keys=True), repr(sorted(sizes.items(), key=lambda kv: str(kv[0]))),
           pairs if isinstance(pairs, str) else tuple(pairs))
    hit = _STRUCT_CACHE.get(key)
    if hit is not None:
        _STRUCT_CACHE.move_to_end(key)
        return hit
    hit = _build_structure(spec, sizes, plan or make_plan(spec), source, pairs)
    _STRUCT_CACHE[key] = hit
    while len(_STRUCT_CACHE) > 64:
        _STRUCT_CACHE.popitem(last=False)
    return hit


def _check_inputs(spec, inputs):
    if inputs is None:
        return
    if not isinstance(inputs, Mapping):
        raise SpecError("inputs", "<inputs>", f"expected a mapping {{input name: tensor}} with {sorted(spec.inputs)}, "
                                              f"got {type(inputs).__name__}")
    extra = sorted(set(inputs) - set(spec.inputs))
    if extra:
        raise SpecError("inputs", extra[0], f"not an input of {spec.name!r}; expected {sorted(spec.inputs)}")


def _set_features(g, spec, S, coords, inputs):
    _check_inputs(spec, inputs)
    for name, t in spec.inputs.items():
        value = None if inputs is None else inputs.get(name)
        if inputs is not None and value is None:
            raise SpecError("inputs", name, f"missing input; expected {sorted(spec.inputs)}")
        g[name].x = _features(name, t, coords[name], S, value, "inputs")


def _build_structure(spec: ProblemSpec, sizes: Mapping, p: Plan, source: str, pairs) -> tuple:
    S = Sets(spec, sizes, source)
    g = SetGraph()
    for s in spec.sets:
        g[s].num_nodes = S.n[s]
        g[s].fanout = torch.tensor([S.uniform[s]])
        if spec.parent(s):
            g[s, "in", spec.parent(s)].edge_index = torch.stack([torch.arange(S.n[s]), S.parent[s]])

    fields = {}
    for name, t in spec.tensors.items():
        coords = entries(S, t.dims)
        fields[name] = coords
        g[name].num_nodes = len(coords)
        if name in spec.outputs:  # PyG keeps no slices for a store with only num_nodes, so
            g[name].entry = torch.arange(len(coords))  # to_data_list()/get_example() would fail
        _incidence(g, name, t.dims, coords)

    # state field -------------------------------------------------------
    axes = state_axes(spec, p)
    D = torch.cartesian_prod(*[torch.arange(S.n[a]) for a in axes]) if axes else torch.zeros(1, 0, dtype=torch.long)
    if D.dim() == 1:
        D = D[:, None]
    g[STATE].num_nodes = len(D)
    _incidence(g, STATE, tuple(axes), D)
    g[STATE].updated = _update_mask(spec, S, axes, D)
    for name, t in spec.inputs.items():
        occ: dict[str, int] = {}
        q = []
        for d in t.dims:  # the k-th occurrence of a set reads the k-th state axis of that set
            k = occ[d] = occ.get(d, -1) + 1
            ax = [i for i, a in enumerate(axes) if a == d]
            q.append(D[:, ax[k]] if len(ax) > k else resolve(S, axes, D, d, t.dims))
        src = lookup(fields[name], torch.stack(q, 1) if q else torch.zeros(len(D), 0, dtype=torch.long),
                      [S.n[d] for d in t.dims])
        ok = src >= 0  # state entries whose coordinates break the tensor's ties read nothing
        g[name, "feeds", STATE].edge_index = torch.stack([src[ok], torch.arange(len(D))[ok]])
    _fibres(g, S, axes, D)
    _order2(g, axes, D)
    want = p.attention_sets() if pairs == "auto" else (list(dict.fromkeys(axes)) if pairs == "all" else list(pairs))
    for s in want:
        if s not in axes:
            raise SpecError(source, "pairs", f"{s!r} is not a state axis; expected some of {list(dict.fromkeys(axes))}")
    _pairs(g, spec, S, axes, D, want)
    for name, t in spec.outputs.items():
        _output_maps(g, S, axes, D, name, t, fields[name])
    return g, S, {n: fields[n] for n in spec.inputs}


def _incidence(g: SetGraph, name: str, dims: tuple[str, ...], coords: Tensor) -> None:
    seen: set[str] = set()
    for i, d in enumerate(dims):
        rel = f"at2_{d}" if d in seen else f"at_{d}"
        seen.add(d)
        g[name, rel, d].edge_index = torch.stack([torch.arange(len(coords)), coords[:, i]])


def _features(name, t, coords, S: Sets, value, source) -> Tensor:
    chans = 2 if t.complex else 1
    if value is None:
        return torch.zeros(len(coords), chans)
    value = torch.as_tensor(value)
    want = tuple(S.n[d] for d in t.dims)
    got = tuple(value.shape)
    if got != want and not (want == () and got == (1,)):
        dims = ", ".join(t.dims) or "scalar"
        raise SpecError("inputs", name, f"shape {list(got)} disagrees with the sizes: expected {list(want)} over ({dims})")
    if value.is_complex() and not t.complex:
        raise SpecError("inputs", name, "got a complex tensor for a real input; declare it `complex: true` or pass real values")
    if not torch.isfinite(value).all():
        raise SpecError("inputs", name, "contains NaN or Inf; expected finite values")
    value = value.reshape(want)
    v = value[tuple(coords[:, i] for i in range(len(t.dims)))] if t.dims else value.reshape(1)
    if t.complex:
        v = torch.view_as_real(v.to(torch.complex64) if not v.is_complex() else v)
        return v.reshape(len(coords), 2).float() if v.dtype != torch.float64 else v.reshape(len(coords), 2)
    return v.reshape(len(coords), 1).to(torch.float64 if v.dtype == torch.float64 else torch.float32)


def _features_batched(t, coords, value: Tensor, S: Sets, name, source) -> Tensor:
    """``[B, *shape]`` → ``[B * n_entries, C]`` (entries of each graph in order)."""
    want = tuple(S.n[d] for d in t.dims)
    B = value.shape[0]
    if tuple(value.shape[1:]) != want and not (want == () and tuple(value.shape[1:]) in ((), (1,))):
        raise SpecError("inputs", name, f"shape {list(value.shape)} disagrees with the sizes: expected "
                                        f"[B, {', '.join(map(str, want))}] over (batch, {', '.join(t.dims) or 'scalar'})")
    if value.is_complex() and not t.complex:
        raise SpecError("inputs", name, "got a complex tensor for a real input; declare it `complex: true` or pass real values")
    if not torch.isfinite(value).all():
        raise SpecError("inputs", name, "contains NaN or Inf; expected finite values")
    value = value.reshape(B, *want)
    v = value[(slice(None),) + tuple(coords[:, i] for i in range(len(t.dims)))] if t.dims else value.reshape(B, 1)
    if t.complex:
        v = torch.view_as_real(v if v.is_complex() else v.to(torch.complex64))
        out = v.reshape(-1, 2)
    else:
        out = v.reshape(-1, 1)
    return out if out.dtype == torch.float64 else out.float()


def _update_mask(spec, S: Sets, axes, D) -> Tensor:
    """Entries f_out updates (Procedure 1, lines 24-27)."""
    mask = torch.ones(len(D), dtype=torch.bool)
    for a in spec.sets:
        below = [i for i, s in enumerate(axes) if a in spec.ancestors(s)]
        if len(below) >= 2:
            anc = [S.ancestor(axes[i], a)[D[:, i]] for i in below]
            for other in anc[1:]:
                mask &= other == anc[0]
    for grp in spec.joint:
        idx = [axes.index(s) for s in grp if s in axes]
        for i in idx[1:]:
            mask &= S.local[axes[i]][D[:, i]] == S.local[axes[idx[0]]][D[:, idx[0]]]
    return mask


def _fibres(g, S: Sets, axes, D) -> None:
    for lv in fibre_levels(S.spec, axes):
        cols = []
        for i, (a, l) in enumerate(zip(axes, lv)):
            s, ids = S.level(a, l)
            if s is not None:
                cols.append(ids[D[:, i]])
        g[STATE][fibre_key(lv)] = group_ids(cols, len(D))


def _order2(g, axes, D) -> None:
    """Index maps of an order-2 axis pair (s, s) for the 2→2 layer (paper 001 App. E):
    ``transpose_<s>`` sends entry (j, i, o) to (i, j, o); ``diag_<s>`` sends (i, i, o)
    to (i, j, o) and ``diag2_<s>`` sends (j, j, o) to (i, j, o)."""
    for i in range(len(axes) - 1):
        if axes[i] != axes[i + 1]:
            continue
        radix = [int(D[:, j].max()) + 1 for j in range(D.shape[1])]
        ids = torch.arange(len(D))
        for rel, cols in (("transpose", (i + 1, i)), ("diag", (i, i)), ("diag2", (i + 1, i + 1))):
            q = D.clone()
            q[:, i], q[:, i + 1] = D[:, cols[0]], D[:, cols[1]]
            g[STATE, f"{rel}_{axes[i]}", STATE].edge_index = torch.stack([lookup(D, q, radix), ids])


def _pairs(g, spec, S: Sets, axes, D, sets: list[str]) -> None:
    """Attention pairs along each of ``sets`` (E·(n-1) edges each, so only on demand)."""
    for a in sets:
        i = axes.index(a)  # the second copy of an order-2 axis pairs like the first
        others = [D[:, j] for j in range(len(axes)) if j != i]
        rest = group_ids(others, len(D))
        # all ordered pairs within each group of entries agreeing on the other axes
        order = torch.argsort(rest, stable=True)
        counts = torch.bincount(rest)
        starts = torch.cumsum(counts, 0) - counts
        n = counts[rest[order]]
        src_pos = torch.repeat_interleave(torch.arange(len(D)), n)
        e1 = order[src_pos]
        off = torch.arange(len(src_pos)) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
        e2 = order[starts[rest[e1]] + off]
        keep = D[e1, i] != D[e2, i]
        e1, e2 = e1[keep], e2[keep]
        g[STATE, f"pair_{a}", STATE].edge_index = torch.stack([e2, e1])  # message j -> k
        store = g[STATE, f"pair_{a}", STATE]
        store.group = group_ids([D[e1, i], D[e2, i]], len(e1))
        if spec.parent(a):
            store.same_parent = S.parent[a][D[e1, i]] == S.parent[a][D[e2, i]]


def _output_maps(g, S: Sets, axes, D, name, t, coords) -> None:
    upd = g[STATE].updated
    base_dims = tuple(dict.fromkeys(t.dims))
    lifted = len(base_dims) < len(t.dims)
    base = entries(S, base_dims) if lifted else coords
    q = torch.stack([resolve(S, axes, D, d, base_dims) for d in base_dims], 1) if base_dims else \
        torch.zeros(len(D), 0, dtype=torch.long)
    tgt = lookup(base, q, [S.n[d] for d in base_dims])
    ok = upd & (tgt >= 0)
    dst = f"_B_{name}" if lifted else name
    if lifted:
        g[dst].num_nodes = len(base)
        _incidence(g, dst, base_dims, base)
        radix = [S.n[d] for d in base_dims]
        s = next(d for d in base_dims if t.dims.count(d) == 2)
        first, second = t.dims.index(s), len(t.dims) - 1 - t.dims[::-1].index(s)
        row_dims = [i for i in range(len(t.dims)) if i != second]
        col_dims = [second if i == first else i for i in range(len(t.dims)) if i != second]
        ids = torch.arange(len(coords))
        g[dst, "row", name].edge_index = torch.stack([lookup(base, coords[:, row_dims], radix), ids])
        g[dst, "col", name].edge_index = torch.stack([lookup(base, coords[:, col_dims], radix), ids])
        keep = [base[:, j] for j, d in enumerate(base_dims) if d != s]
        for a in S.spec.ancestors(s):  # the lifted set's mean stays inside its parent
            if a not in base_dims:
                keep.append(S.ancestor(s, a)[base[:, base_dims.index(s)]])
        g[dst].fib_lift = group_ids(keep, len(base))
    g[STATE, "pools", dst].edge_index = torch.stack([torch.arange(len(D))[ok], tgt[ok]])
