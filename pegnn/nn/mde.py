r"""MDE: the multidimensional-equivariant linear layer (paper 000 eq. 17).

.. math::
    \mathrm{FC_{PE}}(\mathbf X) = \sum_{\mathcal P \in \bar{\mathcal N}'} \bar{\mathbf X}_{\mathcal P}\,
    \mathbf W_{\mathcal P} + \mathbf 1 \otimes \mathbf b^T

where :math:`\bar{\mathbf X}_{\mathcal P}` is the mean over the dims in
:math:`\mathcal P`, broadcast back. pegnn generalises a "dim in P" to a per-axis
nesting *level* (see :mod:`pegnn.nn.layout`): for a nested axis the equivariant
linear maps of the wreath product S_child ≀ S_parent are spanned by the identity,
the within-parent mean and the global mean (paper 002 eq. 4 with linear
processors), so a term is a tuple of levels, one per axis.

Term sets :math:`\bar{\mathcal N}'` (paper 001 eqs. 18-20), per layer ``l``:

* ``"all"`` — every level combination (2^N terms for N normal axes, eq. 17);
* ``"P1"`` — the identity and every single-axis pooling (eq. 18);
* ``"P2"`` — the identity and the poolings of two consecutive axes, rotating with
  ``l`` so that the union over layers covers every axis (eq. 19);
* ``"P3"`` — the identity and the poolings of one axis, axis ``l mod N`` (eq. 20).

Each pooled tensor is projected *before* it is broadcast back (cheap: it is small).

Shapes:
    x: ``[E, C_in]`` (sparse) or ``[B, *factors, C_in]`` (dense) → same with ``C_out``.
"""
from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from .layout import Layout

__all__ = ["MDE", "pattern_terms", "PATTERNS"]

PATTERNS = ("all", "P1", "P2", "P3")


def pattern_terms(depths: list[int], pattern: str = "all", layer: int = 0) -> list[tuple[int, ...]]:
    """The level tuples of one layer. ``depths[i]`` is the nesting depth of axis i."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown MDE pattern {pattern!r}; expected one of {list(PATTERNS)}")
    n = len(depths)
    full = list(itertools.product(*[range(d + 2) for d in depths]))
    if pattern == "all" or n == 0:
        return full
    single = lambda i: [t for t in full if all(l == 0 for j, l in enumerate(t) if j != i) and t[i] > 0]
    ident = [tuple([0] * n)]
    if pattern == "P1":
        return ident + [t for i in range(n) for t in single(i)]
    if pattern == "P2":
        chosen = sorted({layer % n, (layer + 1) % n})
        return ident + [t for i in chosen for t in single(i)]
    return ident + single(layer % n)


def _accumulate(ys: list[Tensor], bias: Tensor | None, shape: tuple, like: Tensor) -> Tensor:
    """Σ ys + bias, broadcast to ``shape``, with as few passes over the full-size
    tensor as the shapes allow: pooled terms of equal shape (e.g. the within-parent
    and global means of a set with one parent) and the bias are summed while small,
    and the sum accumulates in place into a full-size term — a fresh matmul result
    that no backward needs — instead of allocating a new state per term."""
    groups: dict[tuple, Tensor] = {}
    for y in ys:
        if y.shape in groups:
            groups[y.shape].add_(y)
        else:
            groups[y.shape] = y
    out = groups.pop(torch.Size(shape), None)
    small = sorted(groups.values(), key=Tensor.numel)
    if bias is not None:
        if small:
            small[0] = small[0] + bias
        elif out is not None:
            return out.add_(bias)
        else:
            return bias.expand(shape).clone()
    if out is None:
        if not small:
            return like.new_zeros(shape)
        out = small.pop().expand(shape).clone()
    for y in small:
        out.add_(y)
    return out


class MDE(nn.Module):
    """See the module docstring. ``terms`` is a list of per-axis level tuples."""

    def __init__(self, in_channels: int, out_channels: int, terms: list[tuple[int, ...]], bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.terms = [tuple(t) for t in terms]
        self.weight = nn.Parameter(torch.empty(len(self.terms), in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        # fan-in over all terms keeps the output variance independent of the term count
        bound = 1.0 / math.sqrt(self.in_channels * len(self.terms))
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor, layout: Layout, pooled: dict | None = None) -> Tensor:
        """``pooled`` optionally maps a term to ``(tensor, levels)``: a tensor pooled at
        other levels that replaces the term's mean (the attention processor replaces
        the mean along its set that way). A 0-dim tensor there means "this term is
        exactly zero" (an attention scope without pairs): it is skipped."""
        groups: dict = {}          # fibre → [pooled tensor, its levels, summed weight]
        zero = None
        for t, w in zip(self.terms, self.weight):
            if pooled is not None and t in pooled:
                (p, lv), key = pooled[t], ("given", t)
                if p.dim() == 0:
                    zero = p if zero is None else zero + p
                    continue
            else:
                # terms whose fibres coincide at these sizes (the within-parent and global
                # means of a set with one parent) share one mean and one projection:
                # mean(x) W_1 + mean(x) W_2 = mean(x) (W_1 + W_2)
                key = layout.fibre_id(t)
                if key in groups:
                    groups[key][2] = groups[key][2] + w
                    continue
                p, lv = layout.pool(x, t), t
            groups[key] = [p, lv, w]
        ys = [layout.expand(p @ w, lv) for p, lv, w in groups.values()]
        bias = self.bias
        if zero is not None:
            bias = zero if bias is None else bias + zero
        return _accumulate(ys, bias, (*x.shape[:-1], self.out_channels), x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, terms={len(self.terms)})"
