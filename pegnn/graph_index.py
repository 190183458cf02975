"""Index arithmetic of the set graph (:mod:`pegnn.graph`): the element tuples of a
tensor's entries, lookups of tuples in a table, dense group ids, and the nesting
levels that name the cached fibres. Pure tensor functions over
:class:`~pegnn.sizes.Sets`; no graph is built here.
"""
from __future__ import annotations

import itertools

import torch
from torch import Tensor

from .sizes import Sets
from .spec import ProblemSpec


def entries(S: Sets, dims: tuple[str, ...]) -> Tensor:
    """Element tuples ``[n_entries, len(dims)]`` of a tensor, row-major, with ties."""
    rows = torch.zeros(1, 0, dtype=torch.long)
    for i, d in enumerate(dims):
        tie = next(((p, a) for a in S.spec.ancestors(d) for p in range(i) if dims[p] == a), None)
        elems = torch.arange(S.n[d])
        r = rows.repeat_interleave(len(elems), 0)
        e = elems.repeat(len(rows))
        if tie is not None:
            p, a = tie
            keep = S.ancestor(d, a)[e] == r[:, p]
            r, e = r[keep], e[keep]
        rows = torch.cat([r, e[:, None]], 1)
    return rows


def lookup(table: Tensor, query: Tensor, radix: list[int]) -> Tensor:
    """Row ids of ``query`` tuples in ``table`` (-1 if absent), by mixed-radix keys."""
    def key(t: Tensor) -> Tensor:
        k = torch.zeros(len(t), dtype=torch.long)
        for j, r in enumerate(radix):
            k = k * r + t[:, j]
        return k
    tk = key(table)
    order = torch.argsort(tk)
    qk = key(query)
    pos = torch.searchsorted(tk[order], qk).clamp(max=max(len(tk) - 1, 0))
    hit = tk[order][pos] == qk if len(tk) else torch.zeros_like(qk, dtype=torch.bool)
    return torch.where(hit, order[pos], torch.full_like(qk, -1))


def group_ids(cols: list[Tensor], n: int) -> Tensor:
    """Dense group ids of the rows given by columns ``cols`` (one group if none).

    Mixed-radix keys re-densified after every column: 1-D ``unique`` is an order of
    magnitude faster than ``unique(dim=0)`` and the key never overflows."""
    key = torch.zeros(n, dtype=torch.long)
    for c in cols:
        key = torch.unique(key * (int(c.max()) + 1 if c.numel() else 1) + c, return_inverse=True)[1]
    return key


def resolve(S: Sets, axes: list[str], coords: Tensor, d: str, prefer: tuple[str, ...] = ()) -> Tensor:
    """Element of set ``d`` that each state entry determines: its own axis, else the
    ancestor of the first axis below ``d`` (preferring axes the tensor itself uses)."""
    if d in axes:
        return coords[:, axes.index(d)]
    below = [i for i, a in enumerate(axes) if d in S.spec.ancestors(a)]
    below.sort(key=lambda i: (axes[i] not in prefer, i))
    return S.ancestor(axes[below[0]], d)[coords[:, below[0]]]


def fibre_key(levels: tuple[int, ...]) -> str:
    return "fib_" + "_".join(map(str, levels))


def fibre_levels(spec: ProblemSpec, axes: list[str]) -> list[tuple[int, ...]]:
    """Every combination of per-axis nesting levels (0 = the element, ..., depth+1 = pooled)."""
    return list(itertools.product(*[range(spec.depth(a) + 2) for a in axes]))
