"""PEGNN: one message-passing engine, configured from the plan (DESIGN §4).

The model follows the TENN framework (paper 000 Sec. IV-A) and Procedure 1 of
paper 002 at once:

1. **embed** (FFC_1): every state entry reads its entry of every input (the graph's
   ``feeds`` edges; complex inputs are [re, im] channels, a scalar such as σ² is
   broadcast, eq. 31) and a linear map lifts the channels to ``hidden``;
2. **backbone**: ``layers`` × :class:`PELayer` — an MDE layer (eq. 17, or a
   low-complexity pattern P1-P3) in which, along every attention set, the mean is
   replaced by the attention processor's aggregation (eqs. 3, 5); then ReLU and
   LayerNorm (paper 000 Sec. IV-B), and f_out (Procedure 1, lines 24-27): only the
   entries whose jointly permuted axes agree are updated;
3. **read-out** per group of outputs with the same dims: MDI pooling over the state
   axes the output lacks (PMA, eqs. 26-30), the HOE 1→2 lift on a set the output
   repeats (eqs. 19-24), and FFC_2 to the output channels (eq. 36: [re, im] → complex).

TEPN (MDE stack → MDI on ant_bs → HOE on ant_ue) and TEUSN (MDE stack → MDI on
ant_ue, ant_bs) are this model on the TENN specs with the presets :data:`TEPN` and
:data:`TEUSN`; the Guo & Yang GNNs are this model with ``attention="auto"``.

The backbone runs on the dense path when every graph of the batch has the same
sizes (see :mod:`pegnn.nn.layout`), else on the sparse path; the read-out always
uses the graph's index maps (it touches each state entry once).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .graph import STATE, state_axes
from .nn.attention import ATTENTION_KINDS, SetAttention
from .nn.hoe import HOE, HOE22
from .nn.layout import Layout
from .nn.mde import MDE, PATTERNS, pattern_terms
from .nn.mdi import MDI, POOLINGS
from .plan import plan as make_plan
from .spec import ProblemSpec, as_spec

__all__ = ["PEGNN", "PELayer", "TEPN", "TEUSN", "unbatch"]

#: paper 000 Sec. IV-B / V: TEPN with L = 3, D_H = 8; TEUSN with L = 4, D_H = 32.
TEPN = dict(hidden=8, layers=3, pattern="all", attention="none", pooling="pma")
TEUSN = dict(hidden=32, layers=4, pattern="all", attention="none", pooling="pma")


class PELayer(nn.Module):
    """One backbone layer: MDE with attention aggregations, ReLU, LN, f_out.

    Shapes:
        x: ``[E, C]`` (sparse) or ``[B, *factors, C]`` (dense) → same.
    """

    def __init__(self, channels: int, terms, attention: list[SetAttention], depths: list[int],
                 norm: bool = True, residual: bool = False, order2: list[HOE22] = ()):
        super().__init__()
        self.mde = MDE(channels, channels, terms)
        self.attention = nn.ModuleList(attention)
        self.order2 = nn.ModuleList(order2)
        self.depths = depths
        self.norm = nn.LayerNorm(channels) if norm else nn.Identity()
        self.residual = residual

    def forward(self, x: Tensor, layout: Layout) -> Tensor:
        pooled: dict = {}
        for att in self.attention:
            msgs = att(x, layout)
            i = att.axis
            for t in self.mde.terms:
                if t[i] == 0 or t in pooled:
                    continue
                scope = "all" if "all" in msgs else ("within" if t[i] == 1 else "across")
                t0 = t[:i] + (0,) + t[i + 1:]
                m = msgs[scope]
                pooled[t] = (m, t0) if m.dim() == 0 else (layout.pool(m, t0), t0)   # 0-dim: no pairs
        y = self.mde(x, layout, pooled)
        if len(self.order2):  # 2→2 terms on order-2 axis pairs (index maps, flat layout)
            flat = layout.to_sparse(x) if layout.dense else x
            extra = sum(h(flat, layout) for h in self.order2)
            y = y + (layout.to_dense(extra) if layout.dense else extra)
        y = self.norm(torch.relu_(y))          # y is a fresh sum (MDE): nothing else holds it
        if self.residual:
            y = y + x
        if not layout.all_updated:
            y = torch.where(layout.updated, y, x)
        return y

    @torch.no_grad()
    def attention_as_mean_(self, layout: Layout) -> None:
        r"""Set this layer's attention so that it computes what the layer without
        attention computed, at the sizes of ``layout`` (a regular batch).

        With :math:`f_1 = f_2 = 1` (zero weights, unit bias) and :math:`v` the identity,
        the inner attention's message is the mean over the *other* elements:
        :math:`\mathbf m_k = \bar{\mathbf x} - \mathbf x_k / n` ("all"), or, for a set
        nested once, :math:`\bar{\mathbf x}^{w}_k - \mathbf x_k/n_c` ("within", n_c
        children per parent) and :math:`\bar{\mathbf x} - (n_c/n)\,\bar{\mathbf x}^{w}_k`
        ("across"). The MDE term that takes the message in place of its mean (eq. 17)
        then misses a multiple of the next-lower-level mean, which is added back to that
        term's weight: :math:`\mathbf W'_{t_w} = \mathbf W_{t_w} + (n_c/n)\mathbf W_{t_a}`,
        :math:`\mathbf W'_{t_0} = \mathbf W_{t_0} + \mathbf W'_{t_w}/n_c`. Training then
        starts from the trained network's function, so an attention ablation compares
        like with like. One inner-attention set per layer, nested at most once."""
        if len(self.attention) > 1:
            raise ValueError("attention_as_mean_: one attention set per layer is supported, "
                             f"got {[a.set_name for a in self.attention]}")
        for att in self.attention:
            if att.kind != "inner":
                raise ValueError(f"attention_as_mean_: only attention_kind='inner' has a mean form, got {att.kind!r}")
            i = att.axis
            factors = layout.factors[i]
            if len(factors) > 2:
                raise ValueError(f"attention_as_mean_: {att.set_name!r} is nested {len(factors) - 1} deep; "
                                 "at most once is supported")
            n, n_c = math.prod(factors), factors[-1]
            for sc in att.scorers.values():
                for f in (sc.f1, sc.f2):
                    f.weight.zero_()
                    f.bias.fill_(1.0)
                sc.v.weight.copy_(torch.eye(sc.v.weight.shape[0]))
                sc.v.bias.zero_()
            W, terms = self.mde.weight, self.mde.terms
            lower = lambda t, l: terms.index(t[:i] + (l,) + t[i + 1:])
            for level, share in ((2, n_c / n), (1, 1 / n_c)):   # across first: it feeds the within weight
                for j, t in enumerate(terms):
                    if t[i] == level:
                        W[lower(t, level - 1)] += share * W[j]


class PEGNN(nn.Module):
    """A permutation-equivariant model for ``spec``, built from its plan.

    Args:
        spec: the problem.
        hidden: feature channels D_H of the state.
        layers: number of backbone layers L.
        pattern: MDE terms, ``"all"`` (eq. 17) or ``"P1"``/``"P2"``/``"P3"`` (paper 001).
        attention: ``"auto"`` (the plan's interference rule), ``"none"``, ``"all"``
            (every recursion set — the all-attention GNN of paper 002 Sec. IV-D), or a
            list of set names (ablations such as "attention on RF chains", Fig. 5).
        attention_kind: ``"inner"`` (default) or ``"softmax"``; see :class:`SetAttention`.
        pooling: MDI pooling, ``"pma"`` or ``"mean"``.
        heads: attention heads of PMA / softmax attention.
        dense: ``None`` picks the dense path for regular batches; ``False`` forces sparse.
    """

    def __init__(self, spec: ProblemSpec, hidden: int = 32, layers: int = 3, pattern: str = "all",
                 attention="auto", attention_kind: str = "inner", pooling: str = "pma", heads: int = 1,
                 residual: bool = False, norm: bool = True, dense: bool | None = None):
        super().__init__()
        for name, v in (("hidden", hidden), ("layers", layers), ("heads", heads)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"PEGNN: {name} must be a positive int, got {v!r}")
        for name, v, allowed in (("pattern", pattern, PATTERNS), ("attention_kind", attention_kind, ATTENTION_KINDS),
                                 ("pooling", pooling, POOLINGS)):
            if v not in allowed:     # checked here too: attention_kind is unused when no set has attention
                raise ValueError(f"PEGNN: {name} must be one of {list(allowed)}, got {v!r}")
        if hidden % heads:
            raise ValueError(f"PEGNN: hidden ({hidden}) must be divisible by heads ({heads})")
        spec = as_spec(spec)                    # or the path of a spec YAML
        self.spec, self.plan = spec, make_plan(spec)
        self.axes = state_axes(spec, self.plan)
        self.dense = dense
        self.config = dict(hidden=hidden, layers=layers, pattern=pattern, attention=attention,
                           attention_kind=attention_kind, pooling=pooling, heads=heads,
                           residual=residual, norm=norm)
        self.attention_sets = self._attention_sets(attention)
        depths = [spec.depth(a) for a in self.axes]
        self.in_channels = sum(2 if t.complex else 1 for t in spec.inputs.values())
        self.embed = nn.Linear(self.in_channels, hidden)
        blocks = []
        for l in range(layers):
            att = [SetAttention(hidden, self.axes.index(s), s, spec.depth(s) > 0, attention_kind, heads)
                   for s in self.attention_sets]
            o2 = [HOE22(hidden, hidden, i, a) for i, a in enumerate(self.axes[:-1]) if self.axes[i + 1] == a]
            blocks.append(PELayer(hidden, pattern_terms(depths, pattern, l), att, depths, norm, residual, o2))
        self.layers = nn.ModuleList(blocks)
        # outputs with the same dims share one read-out (TEPN: A and U, eq. 32)
        self.groups: dict[str, list[str]] = {}
        for name, t in spec.outputs.items():
            self.groups.setdefault("|".join(t.dims) or "()", []).append(name)   # "()": a scalar output
        self.readout = nn.ModuleDict()
        self._dense_pool: dict[str, list[int] | None] = {}
        for key, names in self.groups.items():
            base = list(dict.fromkeys(spec.outputs[names[0]].dims))
            plain = [a for a in self.axes if a in base]
            # dense read-out when the output's dims are exactly some state axes, in order
            self._dense_pool[key] = ([i for i, a in enumerate(self.axes) if a not in base]
                                     if plain == base and len(set(self.axes)) == len(self.axes) else None)
            t = spec.outputs[names[0]]
            out_ch = sum(2 if spec.outputs[n].complex else 1 for n in names)
            lifted = len(set(t.dims)) < len(t.dims)
            self.readout[key] = nn.ModuleDict({
                "mdi": MDI(hidden, pooling, heads),
                **({"hoe": HOE(hidden, hidden)} if lifted else {}),
                "ffc": nn.Linear(hidden, out_ch),
            })

    def _attention_sets(self, attention) -> list[str]:
        rec = self.plan.recursion_order
        if attention in ("auto", True):
            return self.plan.attention_sets()
        if attention in ("none", None, False):
            return []
        if attention == "all":
            return list(rec)
        sets = [attention] if isinstance(attention, str) else list(attention)
        for s in sets:
            if s not in rec:
                raise ValueError(f"attention set {s!r} is not a recursion set of {self.spec.name!r}; "
                                 f"expected some of {rec}")
        return sets

    @torch.no_grad()
    def attention_as_mean_(self, data) -> None:
        """Set every layer's attention to reproduce the mean aggregation it replaces, at
        the sizes of ``data`` (a graph or a batch of equal-size graphs): after loading
        the weights of the same network trained without attention, this model computes
        the same function (see :meth:`PELayer.attention_as_mean_`). Used by
        :func:`pegnn.train.init_weights` for ``train.init`` from an attention-free run."""
        lay = self.layout(data)
        if lay.factors is None:
            raise ValueError("attention_as_mean_: needs a graph or a batch of equal-size graphs")
        for layer in self.layers:
            layer.attention_as_mean_(lay)

    # ------------------------------------------------------------ forward
    def layout(self, data) -> Layout:
        missing = ({STATE, *self.spec.sets, *self.spec.inputs, *self.spec.outputs} - set(data.node_types)
                   if hasattr(data, "node_types") else {STATE})
        if missing:
            raise ValueError(f"PEGNN({self.spec.name!r}): the graph was not built from this model's spec "
                             f"(it has no {sorted(missing)[:3]}); build it with build_graph/build_batch "
                             f"and the model's spec")
        return Layout(data, self.spec, self.axes, dense=self.dense)

    def forward(self, data, entries: bool = False) -> dict[str, Tensor]:
        """Run the model on a graph or a batch of graphs.

        Returns ``{output: tensor}``: dense over the output's global element ids, with
        a leading batch dim for a batch of equal-size graphs (``[B, *sizes]``), or —
        for ragged/mixed batches or ``entries=True`` — one value per output entry
        (``[N_entries]``, un-batch with :func:`unbatch`). Complex outputs are complex.
        """
        lay = self.layout(data)
        x0 = self._gather_inputs(data, lay.E)
        h = self.embed(x0)
        if lay.dense:
            h = lay.to_dense(h)
        for layer in self.layers:
            h = layer(h, lay)
        hd = h if lay.dense else None
        if lay.dense:
            h = lay.to_sparse(h)
        out: dict[str, Tensor] = {}
        for key, names in self.groups.items():
            ro = self.readout[key]
            lifted = "hoe" in ro
            dst = f"_B_{names[0]}" if lifted else names[0]
            pool = self._dense_pool[key]
            if hd is not None and pool is not None and lay.all_updated:
                dims = [d for i in pool for d in lay.axis_dims(i)]
                z = ro["mdi"].forward_dense(hd, dims).reshape(-1, h.shape[-1])
            else:
                z = ro["mdi"](h, data[STATE, "pools", dst].edge_index, data[dst].num_nodes)
            if lifted:
                row = data[dst, "row", names[0]].edge_index[0]
                col = data[dst, "col", names[0]].edge_index[0]
                z = torch.relu(ro["hoe"](z, row, col, data[dst].fib_lift))
            y = ro["ffc"](z)
            c = 0
            for n in names:
                if self.spec.outputs[n].complex:
                    v = torch.complex(y[:, c].contiguous(), y[:, c + 1].contiguous())
                    c += 2
                else:
                    v = y[:, c]
                    c += 1
                out[n] = v if entries or lay.factors is None else self._to_dense(data, n, v, lay.B)
        return out

    def _gather_inputs(self, data, E: int) -> Tensor:
        x0 = self.embed.weight.new_zeros((E, self.in_channels))
        c = 0
        for name, t in self.spec.inputs.items():
            ch = 2 if t.complex else 1
            src, dst = data[name, "feeds", STATE].edge_index
            x0[dst, c:c + ch] = data[name].x[src].to(x0.dtype)
            c += ch
        return x0

    def _to_dense(self, data, name: str, v: Tensor, B: int) -> Tensor:
        """Entry values → dense ``[B, *n_dims]`` (``[*n_dims]`` for a single graph)."""
        dims = self.spec.outputs[name].dims
        batched = hasattr(data[name], "batch")
        sizes = [int(data[d].num_nodes) // B for d in dims]
        b = data[name].batch if batched else torch.zeros(len(v), dtype=torch.long, device=v.device)
        idx = [b]
        seen: set[str] = set()
        for d, n in zip(dims, sizes):
            rel = f"at2_{d}" if d in seen else f"at_{d}"
            seen.add(d)
            idx.append(data[name, rel, d].edge_index[1] - b * n)
        dense = v.new_zeros((B, *sizes))
        dense[tuple(idx)] = v
        return dense if batched else dense[0]

    def extra_repr(self) -> str:
        return f"spec={self.spec.name!r}, axes={self.axes}, attention={self.attention_sets}"


def unbatch(data, outputs: dict[str, Tensor], spec: ProblemSpec) -> list[dict[str, Tensor]]:
    """Split the outputs of a batch into per-graph dense tensors over each graph's global
    element ids (zeros outside the tensor's ties). ``outputs`` may be entry-level
    (``model(batch, entries=True)``, or any ragged batch) or already dense (``model(batch)``
    on equal-size graphs: ``[B, *sizes]``, or ``[*sizes]`` for a single graph)."""
    B = int(data[STATE].ptr.numel() - 1) if hasattr(data[STATE], "ptr") else 1
    res: list[dict[str, Tensor]] = [{} for _ in range(B)]
    for name, v in outputs.items():
        dims = spec.outputs[name].dims
        if not (v.dim() == 1 and len(v) == data[name].num_nodes):     # dense already
            want = len(dims) + (1 if hasattr(data[name], "batch") else 0)
            if v.dim() != want:
                raise ValueError(f"unbatch: {name!r} is neither one value per entry ({data[name].num_nodes}) "
                                 f"nor dense over {dims}: shape {tuple(v.shape)}")
            for i in range(B):
                res[i][name] = v[i] if hasattr(data[name], "batch") else v
            continue
        b = data[name].batch if hasattr(data[name], "batch") else torch.zeros(len(v), dtype=torch.long)
        seen: set[str] = set()
        locs = []
        for d in dims:
            rel = f"at2_{d}" if d in seen else f"at_{d}"
            seen.add(d)
            ptr = data[d].ptr if hasattr(data[d], "ptr") else torch.tensor([0, data[d].num_nodes])
            locs.append((data[name, rel, d].edge_index[1] - ptr[b], ptr.diff()))
        for i in range(B):
            m = b == i
            shape = [int(cnt[i]) for _, cnt in locs]
            dense = v.new_zeros(shape)
            dense[tuple(loc[m] for loc, _ in locs)] = v[m]
            res[i][name] = dense
    return res
