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
