"""What serving one UE alone can reach in problem P-R (paper 002): the best SE found by
minorise-maximise over the RIS phases with MRT, and an upper bound on any precoder of
rank one (:func:`ris_single_ue`). A diagnostic: it measures how far a policy that
serves one UE can go (``python -m tasks.ris_streams``).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .ris import _per_sample, as_ris_channels, unit_modulus

__all__ = ["RISSingleUE", "ris_single_ue"]


class RISSingleUE(NamedTuple):
    """What serving one UE alone can reach (:func:`ris_single_ue`); ``[B, U]`` each
    (``theta`` ``[B, U, N_RE]``: the phases found for serving UE ``u``)."""
    se: torch.Tensor
    se_upper: torch.Tensor
    theta: torch.Tensor


def ris_single_ue(channels, starts: int = 8, iters: int = 300, seed: int = 0) -> RISSingleUE:
    r"""The SE of serving UE ``u`` alone with the whole power budget: the best found,
    and an upper bound no policy serving only ``u`` can exceed (single cell).

    With one UE served there is no interference, MRT
    :math:`\mathbf{w} = \sqrt{P_{\max}}\,\mathbf{h}_u/\|\mathbf{h}_u\|` is optimal for
    fixed phases, and :math:`\mathrm{SE}_u = \log_2(1 + P_{\max}\|\mathbf{h}_u^H\|^2/\sigma^2)`
    with the effective row :math:`\mathbf{h}_u^H = \mathbf{h}_{d,u}^H + \mathbf{c}^T\mathbf{A}_u`,
    :math:`\mathbf{c} = \boldsymbol\theta^*`, :math:`\mathbf{A}_u = \mathrm{diag}(\mathbf{h}_{r,u}^H)\mathbf{G}`
    (:func:`ris_effective_channel`). Maximising the convex :math:`\|\mathbf{h}_u^H\|^2` over
    :math:`|c_n| = 1` by minorise-maximise: the linearisation at :math:`\mathbf{c}` is a
    global minoriser, maximised on the unit circle by
    :math:`\mathbf{c} \leftarrow e^{j\arg(\mathbf{A}_u^*\,\mathbf{h}_u)}`, so each step
    never decreases the SE; ``starts`` starts (all-ones, then random phases from ``seed``),
    ``iters`` steps each, the best kept. The bound is the triangle inequality,
    :math:`\|\mathbf{h}_u^H\| \le \|\mathbf{h}_{d,u}\| + \sum_n |h_{r,u,n}|\,\|\mathbf{g}_n\|`
    (:math:`\mathbf{g}_n` the rows of :math:`\mathbf{G}`), tight when every reflected row
    adds in phase with the direct one.

    Why: ``max_u se_upper`` bounds the SE of every precoder of rank one, not only of those
    that serve one UE. With :math:`\mathbf W = \mathbf w\mathbf b^T` (one beam, e.g. a
    rank-one analog precoder) UE ``u`` sees the scalar channel :math:`\mathbf h_u^H\mathbf w`
    and the streams are superposed on it: a degraded scalar broadcast channel, whose sum
    capacity — an upper bound on the sum of the rates with interference treated as noise —
    is that of its strongest UE alone, :math:`\log_2(1 + \max_u |\mathbf h_u^H\mathbf w|^2/\sigma^2)`
    with :math:`\|\mathbf w\|^2 = P_{\max}`. So the bound measures how much of BCD's SE needs
    more than one beam (``python -m tasks.ris_streams``).

    *Shapes*: single-cell channels (``M = 1``) as in the module docstring → ``se``,
    ``se_upper`` ``[B, U]`` float64 (bits/s/Hz), ``theta`` ``[B, U, N_RE]`` complex128.
    """
    ch = as_ris_channels(channels)
    B, M, U, N_B = ch.h_d.shape
    if M != 1:
        raise ValueError(f"ris_single_ue: single cell only (M = 1), got M = {M}")
    if starts < 1 or iters < 0:
        raise ValueError(f"ris_single_ue: starts must be >= 1 and iters >= 0, got {starts}, {iters}")
    hd, G, hr = ch.h_d[:, 0].to(torch.complex128), ch.G[:, 0].to(torch.complex128), ch.h_r.to(torch.complex128)
    upper = hd.norm(dim=-1) + (hr.abs() * G.norm(dim=-1)[:, None]).sum(-1)          # [B, U]
    # The maximiser does not change when both paths are scaled alike: iterate on channels
    # scaled to upper = 1, so path-loss-sized entries (~1e-10) stay clear of unit_modulus's eps.
    scale = upper.clamp_min(torch.finfo(torch.float64).tiny)
    hd = hd / scale[..., None]
    A = hr[..., None] * G[:, None] / scale[..., None, None]           # [B, U, N_RE, N_B]: rows c_n A_u[n]
    snr = (_per_sample(ch.P_max, B, hd) / _per_sample(ch.noise_var, B, hd))[:, None]   # [B, 1]
    def effective(c):                                                  # [B, U, N_B]
        return hd + torch.einsum("bun,bunt->but", c, A)

    gen = torch.Generator().manual_seed(seed)
    best_gain, best_c = torch.full(hr.shape[:2], -1.0, dtype=torch.float64), torch.ones_like(hr)
    for s in range(starts):
        c = torch.ones_like(hr) if s == 0 else torch.polar(
            torch.ones(hr.shape, dtype=torch.float64), 2 * math.pi * torch.rand(hr.shape, generator=gen,
                                                                               dtype=torch.float64))
        for _ in range(iters):
            c = unit_modulus(torch.einsum("bunt,but->bun", A.conj(), effective(c)))
        gain = effective(c).abs().square().sum(-1)                     # [B, U]
        better = gain > best_gain
        best_gain, best_c = torch.where(better, gain, best_gain), torch.where(better[..., None], c, best_c)
    return RISSingleUE(torch.log2(1 + snr * best_gain * scale.square()), torch.log2(1 + snr * upper.square()),
                       best_c.conj())
