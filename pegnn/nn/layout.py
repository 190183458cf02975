"""The state field's index structure, with a sparse and a dense storage path.

Every aggregation of the engine is a mean over a *fibre* of the state tensor D: the
entries that agree on the kept coordinates. A fibre is named by per-axis nesting
levels ``(l_1, ..., l_S)``: axis i is kept at level l_i (0: the element itself,
1: its parent, ..., depth+1: pooled away). E.g. for D over (ue, ant_ue, ant_bs),
``(0, 0, 1)`` is the mean over BS antennas (X̄_{3} of paper 000 eq. 17), and for a
nested axis ``ue ∈ cell``, level 1 is the mean over the UEs *of the same cell*
(the within-parent aggregation of paper 002 eq. 4).

* **sparse path** (any batch: ragged nested sets, mixed sizes): D is ``[E, C]``
  over the batch's entries; a fibre mean is ``scatter(x, fib, 'mean')[fib]`` with the
  group ids cached on the graph (``g['_D'].fib_*``, built once by ``build_graph``).
* **dense path** (every graph in the batch has the same sizes and no ragged
  nesting): D is viewed as ``[B, *factors, C]`` where a nested axis expands into its
  nesting factors ``[n_root, fanout_1, ..., fanout_t]`` (global ids are parent-major
  at every level, so the view is free); a fibre mean is ``x.mean(dims, keepdim=True)``
  over the last ``l_i`` factors of every axis — plain tensor reductions.

Both paths compute the same numbers (tests: 1e-5); layers are written once against
:meth:`Layout.pool` and :meth:`Layout.expand`.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from ..graph import STATE, fibre_key
from ..spec import ProblemSpec

__all__ = ["Layout"]


class Layout:
    """Index structure of the state field of one (batched) :class:`SetGraph`.

    Args:
        data: a graph from ``build_graph`` or a batch of them.
        spec: the problem spec.
        axes: the state axes (``graph.state_axes(spec, plan)``).
        dense: ``None`` picks the dense path automatically when the batch is
            regular; ``False`` forces the sparse path; ``True`` requires dense.
    """

    STATE_KEY = STATE

    def __init__(self, data, spec: ProblemSpec, axes: list[str], dense: bool | None = None):
        self.data, self.spec, self.axes = data, spec, list(axes)
        st = data[STATE]
        self.E = st.num_nodes
        self.device = st.updated.device
        self.B = int(st.ptr.numel() - 1) if hasattr(st, "ptr") else 1
        self.factors = self._regular_factors()
        if dense and self.factors is None:
            raise ValueError("dense path requested but the batch is not regular (ragged or mixed sizes)")
        self.dense = self.factors is not None if dense is None else bool(dense)
        self._nfac = [len(f) for f in (self.factors or [])]
        # plain attributes, computed once here (not lazily): torch.compile traces the
        # layers through them without a graph break
        self.dense_shape = [self.B] + [n for f in self.factors for n in f] if self.factors else None
        self.all_updated = bool(st.updated.all())
        #: f_out's mask (Procedure 1, lines 24-27), bool ``[E, 1]`` or dense-shaped;
        #: None when every entry is updated
        self.updated = None if self.all_updated else \
            (self.to_dense(st.updated[:, None]) if self.dense else st.updated[:, None])
        self._num_groups: dict = {}

    # ------------------------------------------------------------ shapes
    def _regular_factors(self) -> list[list[int]] | None:
        """Per-axis nesting factors when every graph has the same sizes, else None."""
        per_graph: dict[str, int] = {}
        for s in self.spec.sets:
            store = self.data[s]
            fan = store.fanout.view(-1)
            if (fan < 0).any() or (fan != fan[0]).any():
                return None
            if hasattr(store, "ptr"):
                counts = store.ptr.diff()
                if (counts != counts[0]).any():
                    return None
                per_graph[s] = int(counts[0])
            else:
                per_graph[s] = int(store.num_nodes)
        facs = []
        for a in self.axes:
            chain = [a, *self.spec.ancestors(a)][::-1]      # root ... a
            f = [per_graph[chain[0]]]
            for c in chain[1:]:
                f.append(per_graph[c] // per_graph[self.spec.parent(c)])
            facs.append(f)
        return facs

    def to_dense(self, x: Tensor) -> Tensor:
        """``[E, C]`` → ``[B, *factors, C]`` (a view)."""
        return x.view(*self.dense_shape, x.shape[-1])

    def to_sparse(self, x: Tensor) -> Tensor:
        return x.reshape(self.E, x.shape[-1])

    def _dims(self, levels: tuple[int, ...]) -> list[int]:
        """Dense dims averaged for a fibre (offset 1 for the batch dim)."""
        dims, start = [], 1
        for n, l in zip(self._nfac, levels):
            dims += list(range(start + n - l, start + n))
            start += n
        return dims

    # ------------------------------------------------------------ fibres
    def fib(self, levels: tuple[int, ...]) -> Tensor:
        return self.data[STATE][fibre_key(tuple(levels))]

    def num_groups(self, levels: tuple[int, ...]) -> int:
        if levels not in self._num_groups:
            f = self.fib(levels)
            self._num_groups[levels] = int(f.max()) + 1 if f.numel() else 0
        return self._num_groups[levels]

    def fibre_id(self, levels: tuple[int, ...]) -> tuple:
        """A key equal for two level tuples whose fibres are the same sets of entries in
        this batch. Dense: the averaged dims of size > 1 (a nested axis with one parent
        makes its within-parent and global levels coincide); sparse: the levels."""
        if not self.dense:
            return tuple(levels)
        shape = self.dense_shape
        return tuple(d for d in self._dims(levels) if shape[d] > 1)

    def pool(self, x: Tensor, levels: tuple[int, ...]) -> Tensor:
        """Mean over the fibre ``levels``, *not* broadcast back: sparse ``[G, C]``,
        dense ``[B, *factors (1 where averaged), C]``. Project this small tensor, then
        :meth:`expand` it (paper 000 Sec. III-A: the cost stays O(2^N M̄ D_I D_O))."""
        if not any(levels):
            return x
        if self.dense:
            return x.mean(dim=self._dims(levels), keepdim=True)
        return scatter(x, self.fib(levels), 0, dim_size=self.num_groups(levels), reduce="mean")

    def expand(self, pooled: Tensor, levels: tuple[int, ...]) -> Tensor:
        """Broadcast a pooled tensor back to the entries (dense: via broadcasting)."""
        if not any(levels) or self.dense:
            return pooled
        return pooled[self.fib(levels)]

    def mean(self, x: Tensor, levels: tuple[int, ...]) -> Tensor:
        """X̄_P of eq. (17): the fibre mean broadcast back to every entry."""
        out = self.expand(self.pool(x, levels), levels)
        return out.expand_as(x) if self.dense else out

    def mean_sparse(self, x: Tensor, levels: tuple[int, ...]) -> Tensor:
        """Fibre mean of a flat ``[E, C]`` tensor, whichever path the batch takes."""
        if not any(levels):
            return x
        f = self.fib(levels)
        return scatter(x, f, 0, dim_size=self.num_groups(levels), reduce="mean")[f]

    # ------------------------------------------------------------ axis helpers
    def axis_size(self, i: int) -> int:
        """Elements of axis i per graph (dense path only)."""
        return math.prod(self.factors[i])

    def axis_dense(self, x: Tensor, i: int) -> tuple[Tensor, tuple]:
        """Dense ``x`` → ``[B, n_i, O, C]`` (axis i first, other axes flattened), and
        what :meth:`axis_restore` needs to undo it."""
        start = 1 + sum(self._nfac[:i])
        n = self._nfac[i]
        y = x.movedim(list(range(start, start + n)), list(range(1, 1 + n)))
        shape = y.shape
        return y.reshape(self.B, self.axis_size(i), -1, x.shape[-1]), (shape, start, n)

    def axis_restore(self, y: Tensor, info: tuple) -> Tensor:
        shape, start, n = info
        y = y.reshape(*shape[:-1], y.shape[-1])
        return y.movedim(list(range(1, 1 + n)), list(range(start, start + n)))

    def axis_dims(self, i: int) -> list[int]:
        """The dense tensor's dims that hold axis i's nesting factors."""
        start = 1 + sum(self._nfac[:i])
        return list(range(start, start + self._nfac[i]))

    def has_pairs(self, i: int, scope: str) -> bool:
        """Whether two distinct elements of axis i lie in ``scope`` — ``"within"`` one
        parent, ``"across"`` parents, or ``"all"`` (dense path; from the sizes alone)."""
        n, fan = self.axis_size(i), self.factors[i][-1]
        return {"within": fan > 1, "across": n > fan, "all": n > 1}[scope]

    def same_parent_dense(self, i: int) -> Tensor:
        """``[n_i, n_i]`` bool: elements of axis i with the same parent (dense path)."""
        f = self.factors[i]
        par = torch.arange(self.axis_size(i), device=self.device) // f[-1]
        return par[:, None] == par[None, :]

    def pairs(self, axis: str):
        """Cached attention pairs along ``axis``: (src j, dst k) entry ids, the (k, j)
        group id, and (nested) whether j and k share a parent."""
        et = (STATE, f"pair_{axis}", STATE)
        if et not in self.data.edge_types:
            raise ValueError(f"the graph caches no attention pairs along {axis!r}; build it with "
                             f"build_graph(..., pairs=[{axis!r}]) or pairs='all'")
        store = self.data[et]
        return store.edge_index, store.group, getattr(store, "same_parent", None)

    def coords(self, i: int) -> Tensor:
        """Element id (batch-global) of every entry on axis i (sparse path)."""
        a = self.axes[i]
        rel = f"at2_{a}" if self.axes.index(a) != i else f"at_{a}"
        return self.data[STATE, rel, a].edge_index[1]

    def fibre_count(self, levels: tuple[int, ...]) -> Tensor:
        """Entries per fibre, broadcast back to every entry (``[E, 1]``, sparse)."""
        f = self.fib(levels)
        cnt = torch.bincount(f, minlength=self.num_groups(levels)).to(torch.get_default_dtype())
        return cnt[f][:, None]
