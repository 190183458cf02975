r"""MDI: invariant pooling of the state onto an output (paper 000 eqs. 26-30;
paper 001 eq. 28, MDI_P over a set of dims at once).

Every output entry gathers the state entries that map to it (the graph's
``('_D', 'pools', out)`` edges: the dims the output lacks are pooled away, and
only entries f_out updates take part). Two poolings:

* ``"pma"`` — pooling by multi-head attention with a learnable seed S:
  :math:`\mathrm{PMA}(\mathbf X) = \mathrm{MAB}(\mathbf S, \mathrm{FFC}(\mathbf X))` (26),
  :math:`\mathrm{MAB}(\mathbf X', \mathbf Y') = \mathbf M' + \mathrm{ReLU}(\mathrm{FFC}(\mathbf M'))` (27),
  :math:`\mathbf M' = \mathrm{LN}(\mathbf X' + \mathrm{MultiHead}(\mathbf X', \mathbf Y'))` (28),
  softmax attention (29)-(30) over the entries of each group;
* ``"mean"`` — the non-parametric mean (paper 000 Sec. III-C, f_2).

Both are invariant to any permutation inside a group. An output that pools
nothing (its dims are the state's) reads the state entry directly.

Shapes:
    x: ``[E, C]``, edge_index ``[2, E']`` (state → output entry) → ``[N_out, C]``
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter, softmax

__all__ = ["MDI", "POOLINGS"]

POOLINGS = ("pma", "mean")


class MDI(nn.Module):
    def __init__(self, channels: int, pooling: str = "pma", heads: int = 1):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown MDI pooling {pooling!r}; expected one of {list(POOLINGS)}")
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.channels, self.pooling, self.heads = channels, pooling, heads
        if pooling == "pma":
            self.seed = nn.Parameter(torch.empty(1, channels))
            self.ffc_in = nn.Linear(channels, channels)
            self.q = nn.Linear(channels, channels)
            self.k = nn.Linear(channels, channels)
            self.v = nn.Linear(channels, channels)
            self.o = nn.Linear(channels, channels)
            self.norm = nn.LayerNorm(channels)
            self.ffc_out = nn.Linear(channels, channels)
            nn.init.xavier_uniform_(self.seed)

    def forward(self, x: Tensor, edge_index: Tensor, num_out: int) -> Tensor:
        src, dst = edge_index
        if self.pooling == "mean":
            return scatter(x[src], dst, 0, dim_size=num_out, reduce="mean")
        H, C = self.heads, self.channels
        y = self.ffc_in(x)[src]                                       # FFC(X), eq. 26
        q = self.q(self.seed).view(1, H, C // H)
        k = self.k(y).view(-1, H, C // H)
        s = (q * k).sum(-1) / math.sqrt(C // H)                       # eq. 30
        a = softmax(s, dst, num_nodes=num_out, dim=0)                 # over each group
        heads = scatter(a.repeat_interleave(C // H, 1) * self.v(y), dst, 0, dim_size=num_out, reduce="sum")
        m = self.norm(self.seed + self.o(heads))                      # eq. 28
        return m + torch.relu(self.ffc_out(m))                        # eq. 27

    def forward_dense(self, x: Tensor, dims: list[int]) -> Tensor:
        """The same pooling on a dense state ``[B, *factors, C]`` over the factor dims
        ``dims`` (the dense path when the output's dims are plain state axes):
        returns ``[B, *kept factors, C]``."""
        keep = [d for d in range(x.dim() - 1) if d not in dims]
        x = x.permute(*keep, *dims, x.dim() - 1)
        lead = x.shape[:len(keep)]
        x = x.reshape(*lead, -1, x.shape[-1])                       # [..., M, C]
        if self.pooling == "mean":
            return x.mean(-2)
        H, C = self.heads, self.channels
        y = self.ffc_in(x)
        q = self.q(self.seed).view(H, C // H)
        s = (self.k(y).unflatten(-1, (H, C // H)) * q).sum(-1) / math.sqrt(C // H)   # [..., M, H]
        a = torch.softmax(s, dim=-2)
        heads = (a.repeat_interleave(C // H, -1) * self.v(y)).sum(-2)
        m = self.norm(self.seed[0] + self.o(heads))
        return m + torch.relu(self.ffc_out(m))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.channels}, pooling={self.pooling}, heads={self.heads})"
