r"""HOE: the 1→2-order equivariant lift (paper 000 eqs. 19-24).

For a tensor :math:`\mathbf X \in \mathbb R^{M \times D_I}` over a set and an
output over the same set twice (e.g. :math:`\mathbf A_k \in \mathbb C^{N_R\times N_R}`),

.. math::
    \mathrm{FC_{HOE}}(\mathbf X) = \sum_{i=1}^{5} \mathbf X_i \mathbf W_i + \mathbf 1 \otimes \mathbf b,

with the five basis terms (B(3) = 5 partitions of three indices) at entry (a, a'):
:math:`\mathbf X_1 = \delta_{aa'} \mathbf x_a` (20), :math:`\mathbf X_2 = \mathbf x_{a'}` (21),
:math:`\mathbf X_3 = \mathbf x_a` (22), :math:`\mathbf X_4 = \delta_{aa'} \bar{\mathbf x}` (23),
:math:`\mathbf X_5 = \bar{\mathbf x}` (24), where :math:`\bar{\mathbf x}` is the mean over the
set (within its parent for a nested set, the other dims acting as a batch, eq. 25).

The output entries come from the graph: ``('_B_<out>', 'row'|'col', out)`` edges name
the two base entries (a and a') of every output entry, and ``g['_B_<out>'].fib_lift``
groups the base entries whose mean is :math:`\bar{\mathbf x}`.

Shapes:
    z: ``[N_base, C_in]`` → ``[N_out, C_out]``
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

__all__ = ["HOE"]


class HOE(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.empty(5, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(5 * self.in_channels)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, z: Tensor, row: Tensor, col: Tensor, fib_lift: Tensor) -> Tensor:
        zbar = scatter(z, fib_lift, 0, reduce="mean")[fib_lift]
        diag = (row == col).to(z.dtype)[:, None]
        W = self.weight
        zr = z[row]
        return (diag * (zr @ W[0]) + z[col] @ W[1] + zr @ W[2]
                + diag * (zbar[row] @ W[3]) + zbar[row] @ W[4] + self.bias)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels})"


class HOE22(nn.Module):
    r"""The 2→2-order equivariant layer on an order-2 state axis pair (paper 001 App. E).

    The equivariant linear maps :math:`\mathbb R^{n\times n} \to \mathbb R^{n\times n}`
    form a 15-dimensional space (Bell number B(4) = 15: the partitions of the four
    indices i, j, i', j'). Four of the basis maps are fibre means that the MDE layer
    already has (X, row mean, column mean, total mean — independent poolings of the two
    axes); this layer adds the other eleven, at entry (i, j):

    :math:`X_{ji}`, :math:`\mathrm{mean}_k X_{jk}`, :math:`\mathrm{mean}_k X_{ki}`,
    :math:`X_{ii}`, :math:`X_{jj}`, :math:`\mathrm{mean}_k X_{kk}`, and
    :math:`\delta_{ij}` times :math:`X_{ii}`, :math:`\mathrm{mean}_k X_{ik}`,
    :math:`\mathrm{mean}_k X_{ki}`, :math:`\mathrm{mean}_{kl} X_{kl}`,
    :math:`\mathrm{mean}_k X_{kk}`

    (other state axes act as a batch). The graph's ``transpose_<s>``, ``diag_<s>``,
    ``diag2_<s>`` edges give the index maps; they serve both storage paths.

    Shapes:
        x: ``[E, C_in]`` → ``[E, C_out]`` (the caller flattens a dense state).
    """

    N_TERMS = 11

    def __init__(self, in_channels: int, out_channels: int, axis: int, set_name: str):
        super().__init__()
        self.in_channels, self.out_channels, self.axis, self.set_name = in_channels, out_channels, axis, set_name
        self.weight = nn.Parameter(torch.empty(self.N_TERMS, in_channels, out_channels))
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(15 * self.in_channels)
        nn.init.uniform_(self.weight, -bound, bound)

    def terms(self, x: Tensor, layout) -> list[Tensor]:
        """The eleven basis maps applied to ``x`` (``[E, C]``, sparse layout)."""
        from ..graph import STATE
        d = layout.data
        s, i = self.set_name, self.axis

        def move(rel: str, y: Tensor) -> Tensor:
            src, dst = d[STATE, f"{rel}_{s}", STATE].edge_index
            out = torch.empty_like(y)
            out[dst] = y[src]
            return out

        def mean(y: Tensor, which: tuple[int, ...]) -> Tensor:
            lv = [0] * len(layout.axes)
            for a in which:
                lv[a] = 1
            return layout.mean_sparse(y, tuple(lv))

        row = mean(x, (i + 1,))                  # mean_k X_ik at (i, j)
        col = mean(x, (i,))                      # mean_k X_kj at (i, j)
        tot = mean(x, (i, i + 1))
        dg = move("diag", x)                     # X_ii
        trace = mean(dg, (i, i + 1))             # mean_k X_kk
        delta = (layout.coords(i) == layout.coords(i + 1)).to(x.dtype)[:, None]
        col_t = move("transpose", col)           # mean_k X_ki at (i, j)
        return [move("transpose", x), move("transpose", row), col_t, dg, move("diag2", x), trace,
                delta * dg, delta * row, delta * col_t, delta * tot, delta * trace]

    def forward(self, x: Tensor, layout) -> Tensor:
        return sum(t @ w for t, w in zip(self.terms(x, layout), self.weight))
