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

    def _score(self) -> tuple[Tensor, Tensor]:
        r"""The PMA score as one linear functional of the *un-projected* state.

        With a single query (the seed) the key of eq. (30) folds into it:
        :math:`\langle \mathbf q_h, \mathbf W_{k,h}(\mathbf W_{in}\mathbf x + \mathbf b_{in})
        + \mathbf b_{k,h}\rangle / \sqrt{d} = \mathbf u_h^T \mathbf x + c_h`. Returns
        ``u`` ``[H, C]`` and ``c`` ``[H]`` (scaled by 1/√d)."""
        H, C = self.heads, self.channels
        d = C // H
        q = self.q(self.seed).view(H, d)
        Wk = self.k.weight.view(H, d, C)
        qk = torch.einsum("hd,hdc->hc", q, Wk)                      # [H, C]: q_hᵀ W_k,h
        u = qk @ self.ffc_in.weight
        c = qk @ self.ffc_in.bias + (q * self.k.bias.view(H, d)).sum(-1)
        return u / math.sqrt(d), c / math.sqrt(d)

    def _finish(self, z: Tensor, mass: Tensor) -> Tensor:
        r"""Eqs. (27)-(28) from ``z[g, h]`` = Σ_e a_{e,h} x_e ``[..., H, C]`` and the
        attention mass Σ_e a_{e,h} ``[..., H, 1]`` (1, or 0 for an empty group): the
        value FFC(x) and the head projection are linear, so they act on the pooled
        ``z`` instead of on every entry."""
        H, C = self.heads, self.channels
        d = C // H
        y = z @ self.ffc_in.weight.T + mass * self.ffc_in.bias      # Σ a FFC(x)
        Wv = self.v.weight.view(H, d, C)
        heads = torch.einsum("...hc,hdc->...hd", y, Wv) + mass * self.v.bias.view(H, d)
        m = self.norm(self.seed + self.o(heads.flatten(-2)))          # eq. 28
        return m + torch.relu(self.ffc_out(m))                        # eq. 27

    def forward(self, x: Tensor, edge_index: Tensor, num_out: int) -> Tensor:
        src, dst = edge_index
        if self.pooling == "mean":
            return scatter(x[src], dst, 0, dim_size=num_out, reduce="mean")
        u, c = self._score()
        a = softmax((x @ u.T + c)[src], dst, num_nodes=num_out, dim=0)   # [E', H], eqs. 29-30
        xs = x[src]
        z = scatter(a[:, :, None] * xs[:, None, :], dst, 0, dim_size=num_out, reduce="sum")
        mass = scatter(a, dst, 0, dim_size=num_out, reduce="sum")[..., None]
        return self._finish(z, mass)

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
        u, c = self._score()
        a = torch.softmax(x @ u.T + c, dim=-2)                       # [..., M, H]
        z = a.mT @ x                                                 # [..., H, C]
        return self._finish(z, torch.ones_like(z[..., :1]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.channels}, pooling={self.pooling}, heads={self.heads})"
