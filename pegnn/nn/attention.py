r"""The attention processor along one set (paper 002 eqs. 3 and 5: APE-II / NPE-II).

For state entries indexed by (k, o) — k an element of the attention set, o the
other axes — the processor's aggregation is

.. math::
    \mathbf m_{k,o} = \frac{1}{n} \sum_{j \ne k} \boldsymbol\alpha_{kj} \odot
    \mathbf v(\mathbf x_{j,o}),

with a score between the *whole sub-tensors* of k and j (e.g. two users' channel
vectors), never between single coefficients (paper 002 Sec. III-C: interference
is an inner product of vectors):

* ``"inner"`` (default) — the un-normalised inner-product attention used by the
  authors' group: :math:`\boldsymbol\alpha_{kj} = \mathrm{mean}_o\,
  f_1(\mathbf x_{k,o}) \odot f_2(\mathbf x_{j,o})`, per channel, no softmax. It is
  linear in each argument, so it can express |h_kᴴ h_j|-like interference terms
  directly, and it is the default for that reason;
* ``"softmax"`` — scaled dot-product attention between the pooled sub-tensors
  :math:`\bar{\mathbf x}_k = \mathrm{mean}_o \mathbf x_{k,o}`, multi-head, softmax
  over j ≠ k.

``n`` is the number of elements in the aggregation's scope for ``"inner"`` (a mean,
never a division by n-1, so a set of size 1 gives a zero message rather than NaN);
``"softmax"`` weights sum to one already (and are zero when no j exists). For a
nested set two processors run (eq. 5): *within* the parent (q_II,1) and *across*
parents (q_II,2).

Shapes:
    x: ``[E, C]`` or dense ``[B, *factors, C]`` → ``{"within"|"across": same}``
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter, softmax

from .layout import Layout

__all__ = ["SetAttention", "ATTENTION_KINDS"]

ATTENTION_KINDS = ("inner", "softmax")


class _Scorer(nn.Module):
    def __init__(self, channels: int, kind: str, heads: int):
        super().__init__()
        self.kind, self.heads = kind, heads
        self.f1 = nn.Linear(channels, channels)
        self.f2 = nn.Linear(channels, channels)
        self.v = nn.Linear(channels, channels)


class SetAttention(nn.Module):
    """See the module docstring. ``axis`` is the index of the set among the state axes."""

    #: dense "inner" attention loops over j up to this set size, else uses einsum
    LOOP_MAX = 8

    def __init__(self, channels: int, axis: int, set_name: str, nested: bool, kind: str = "inner", heads: int = 1):
        super().__init__()
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"unknown attention kind {kind!r}; expected one of {list(ATTENTION_KINDS)}")
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.axis, self.set_name, self.nested, self.kind, self.heads = axis, set_name, nested, kind, heads
        scopes = ["within", "across"] if nested else ["all"]
        self.scorers = nn.ModuleDict({s: _Scorer(channels, kind, heads) for s in scopes})

    def forward(self, x: Tensor, layout: Layout) -> dict[str, Tensor]:
        """Messages per scope. A scope with no pair (``"across"`` with one parent) gives
        a 0-dim zero instead of a zero state: its message is exactly zero, so the MDE
        term it feeds is skipped; the zero still depends on the scorer's parameters,
        so DDP sees them used (their gradient is exactly zero)."""
        return {s: (self._dense if layout.dense else self._sparse)(x, layout, s, m)
                for s, m in self.scorers.items()}

    @staticmethod
    def _no_pairs(sc: _Scorer) -> Tensor:
        return 0.0 * sum(p.sum() for p in sc.parameters())

    # ------------------------------------------------------------ dense
    def _dense(self, x: Tensor, layout: Layout, scope: str, sc: _Scorer) -> Tensor:
        xd, info = layout.axis_dense(x, self.axis)                    # [B, n, O, C]
        n = xd.shape[1]
        if not layout.has_pairs(self.axis, scope):
            # No pair in scope (e.g. "across" with a single parent): skip the three
            # linears and the MDE term (half the attention cost for one cell).
            return self._no_pairs(sc)
        mask = ~torch.eye(n, dtype=torch.bool, device=x.device)
        if scope != "all":
            same = layout.same_parent_dense(self.axis)
            mask = mask & (same if scope == "within" else ~same)
            norm = layout.factors[self.axis][-1] if scope == "within" else n
        else:
            norm = n
        v = sc.v(xd)
        if self.kind == "inner":
            f1, f2 = sc.f1(xd), sc.f2(xd)
            # mean over o and the 1/n of the message, folded into the small alpha
            scale = (mask.to(xd.dtype) / (xd.shape[2] * norm))[None, :, :, None]   # in the state's dtype
            if n <= self.LOOP_MAX:
                # one pass over the state per j: no layout copies. einsum's bmm route
                # (batch over b and c) copies f1, f2, v and m to channel-first, which
                # costs more than it saves while n is small (measured: 6 vs 17 ms at
                # n = 3, 24 vs 69 ms at n = 6; from n ≈ 12 einsum wins)
                alpha = torch.stack([(f1 * f2[:, j, None]).sum(2) for j in range(n)], 2) * scale
                m = alpha[:, :, 0, None] * v[:, None, 0]
                for j in range(1, n):
                    m = m.addcmul_(alpha[:, :, j, None], v[:, None, j])
            else:
                alpha = torch.einsum("bkoc,bjoc->bkjc", f1, f2) * scale
                m = torch.einsum("bkjc,bjoc->bkoc", alpha, v)
        else:
            q, k = sc.f1(xd.mean(2)), sc.f2(xd.mean(2))               # [B, n, C]
            B, C, H = q.shape[0], q.shape[-1], self.heads
            s = torch.einsum("bkhc,bjhc->bkjh", q.view(B, n, H, C // H), k.view(B, n, H, C // H)) / math.sqrt(C // H)
            s = s.masked_fill(~mask[None, :, :, None], float("-inf"))
            a = torch.nan_to_num(torch.softmax(s, dim=2), nan=0.0)  # rows with no j (n = 1) → 0
            m = torch.einsum("bkjh,bjohc->bkohc", a, v.view(*v.shape[:3], H, C // H)).reshape(v.shape)
        return layout.axis_restore(m, info)

    # ------------------------------------------------------------ sparse
    def _sparse(self, x: Tensor, layout: Layout, scope: str, sc: _Scorer) -> Tensor:
        (src, dst), group, same = layout.pairs(self.set_name)
        lv = [0] * len(layout.axes)
        if scope != "all":
            keep = same if scope == "within" else ~same
            src, dst, group = src[keep], dst[keep], group[keep]
            lv[self.axis] = 1 if scope == "within" else layout.spec.depth(self.set_name) + 1
        else:
            lv[self.axis] = layout.spec.depth(self.set_name) + 1
        if src.numel() == 0:
            return self._no_pairs(sc)
        norm = layout.fibre_count(tuple(lv))                          # n: elements in scope
        G = int(layout.data[layout.STATE_KEY, f"pair_{self.set_name}", layout.STATE_KEY].group.max()) + 1 \
            if group.numel() else 0
        v = sc.v(x)
        if self.kind == "inner":
            alpha = scatter(sc.f1(x)[dst] * sc.f2(x)[src], group, 0, dim_size=G, reduce="mean")
            msg = alpha[group] * v[src]
        else:
            C, H = x.shape[-1], self.heads
            elem = layout.coords(self.axis)
            xbar = scatter(x, elem, 0, reduce="mean")                # pooled sub-tensor per element
            q, k = sc.f1(xbar), sc.f2(xbar)
            k_of = scatter(elem[dst], group, 0, dim_size=G, reduce="max")
            j_of = scatter(elem[src], group, 0, dim_size=G, reduce="max")
            present = torch.zeros(G, dtype=torch.bool, device=x.device)
            present[group] = True
            s = (q[k_of].view(G, H, C // H) * k[j_of].view(G, H, C // H)).sum(-1) / math.sqrt(C // H)
            a = torch.zeros_like(s)
            a[present] = softmax(s[present], k_of[present], dim=0)
            msg = (a[group].repeat_interleave(C // H, dim=1)) * v[src]
        out = scatter(msg, dst, 0, dim_size=layout.E, reduce="sum")
        return out / norm if self.kind == "inner" else out  # softmax weights already sum to 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.set_name}, kind={self.kind}, scopes={list(self.scorers)})"
