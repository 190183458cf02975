r"""User scheduling baselines for problem (12) of paper 000: pick ``k`` of ``K̃`` users.

The objective (13) is the sum rate of the selected users under a given precoder
:math:`G_{CP}`: ``precoder`` is any callable ``(H_sub, noise_var) -> V`` on the selected
channels ``H_sub`` ``[B', k', N_R, N_T]`` with ``noise_var`` a ``[B']`` float64 tensor,
e.g. :func:`pegnn.wireless.precoders.mmse` or
``lambda H, s: wmmse(H, s)`` (a returned tuple ``(V, info)`` is unwrapped to ``V``).
Masks are bool tensors ``[B, K̃]``; selected users keep their original order (ascending
index) inside ``H_sub``.
"""
from __future__ import annotations

import numbers

import torch

from .rates import _check_channel, _noise, sum_rate

__all__ = ["greedy_schedule", "random_schedule", "scheduled_sum_rate", "swap_refine"]


def _check_k(fn: str, k, K_tilde: int) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= K_tilde:
        raise ValueError(f"{fn}: k must be an int in [1, K̃ = {K_tilde}], got {k!r}")
    return int(k)   # numpy integers too


def _call_precoder(fn: str, precoder, H_sub: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    if not callable(precoder):
        raise ValueError(f"{fn}: precoder must be a callable (H_sub, noise_var) -> V, "
                         f"got {type(precoder).__name__}")
    try:
        V = precoder(H_sub, s2)
    except (TypeError, ValueError) as e:   # a precoder of another signature, e.g. zf(H, P_T), or bad channels
        raise ValueError(f"{fn}: precoder(H_sub, noise_var) failed on a candidate set of users ({e}); it is "
                         "called with the selected channels and their noise variances, e.g. mmse, or "
                         "lambda H, s: zf(H), and every candidate needs a nonzero channel") from e
    if isinstance(V, tuple):
        V = V[0]
    if not isinstance(V, torch.Tensor) or tuple(V.shape[:2]) != tuple(H_sub.shape[:2]) \
            or V.dim() != 4 or V.shape[3] != H_sub.shape[3]:
        raise ValueError(f"{fn}: precoder must return V [B, k, N_S, N_T] for H_sub "
                         f"{tuple(H_sub.shape)}, got {getattr(V, 'shape', type(V).__name__)}")
    return V


def _select(H: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``H[b, idx[b, ...]]``: ``H`` ``[B, K̃, ...]``, ``idx`` ``[B, ...]`` -> ``[B, ..., N_R, N_T]``."""
    b = torch.arange(H.shape[0], device=H.device).reshape((-1,) + (1,) * (idx.dim() - 1))
    return H[b, idx]


def greedy_schedule(H: torch.Tensor, noise_var, k: int, precoder, return_order: bool = False):
    r"""Greedy user selection (paper 000 ref. [3], Sec. V-C "Greedy").

    Starting from the empty set, add the user :math:`\tilde k \notin \mathcal{K}` that
    maximises :math:`R_{US}` (13), the sum rate of :math:`\mathcal{K}\cup\{\tilde k\}`
    after precoding with ``precoder``, until :math:`|\mathcal{K}| = k`. Every step
    evaluates all remaining candidates of all samples in one batched precoder call
    (``B (K̃ - s)`` subsets of ``s + 1`` users at step ``s``); ties go to the lowest index.
    Cost: ``k`` precoder calls on at most ``B K̃`` subsets.

    *Shapes*:
        - ``H``: ``[B, K̃, N_R, N_T]`` complex; ``noise_var``: float or ``[B]``.
        - returns a bool mask ``[B, K̃]`` with exactly ``k`` True per row; with
          ``return_order`` also the users in the order they were added, long ``[B, k]``
          (the targets of a sequential scheduler, :class:`pegnn.policies.TEUSPolicy`).
    """
    fn = "greedy_schedule"
    H = _check_channel(fn, H)
    B, Kt = H.shape[:2]
    k = _check_k(fn, k, Kt)
    s2 = _noise(fn, noise_var, B, torch.float64, H.device)
    mask = torch.zeros(B, Kt, dtype=torch.bool, device=H.device)
    chosen = torch.zeros(B, 0, dtype=torch.long, device=H.device)
    rows = torch.arange(B, device=H.device)
    for step in range(k):
        C = Kt - step
        cand = (~mask).nonzero()[:, 1].reshape(B, C)                    # remaining, ascending
        idx = torch.cat([chosen[:, None, :].expand(B, C, step), cand[:, :, None]], 2)
        H_sub = _select(H, idx).reshape(B * C, step + 1, *H.shape[2:])
        s2_sub = s2.repeat_interleave(C)
        V = _call_precoder(fn, precoder, H_sub, s2_sub)
        r = sum_rate(H_sub, V, s2_sub).reshape(B, C)
        best = cand[rows, r.argmax(1)]
        mask[rows, best] = True
        chosen = torch.cat([chosen, best[:, None]], 1)
    return (mask, chosen) if return_order else mask


def swap_refine(H: torch.Tensor, noise_var, mask: torch.Tensor, precoder, rounds: int = 1) -> torch.Tensor:
    r"""Swap local search on a schedule: ``rounds`` rounds of the best single swap.

    One round evaluates :math:`R_{US}` (13) under ``precoder`` for the current set
    :math:`\mathcal{K}` and for every set :math:`\mathcal{K}\setminus\{i\}\cup\{j\}` with
    :math:`i \in \mathcal{K}`, :math:`j \notin \mathcal{K}` (``k (K̃ - k)`` swaps), and keeps the
    best of them; ties go to the current set, then to the first swap in (i, j) order, so
    the sum rate never decreases and a set with no improving swap is left alone. All
    samples and swaps go through one batched precoder call per round (``B (1 + k (K̃ - k))``
    subsets of ``k`` users). A cheap classical refinement of a learned schedule (TEUS+S,
    :class:`pegnn.policies.TEUSPolicy` ``refine``), as WMMSE steps are of TECFP.

    *Shapes*: ``H`` ``[B, K̃, N_R, N_T]`` complex, ``noise_var`` float or ``[B]``, ``mask``
    bool ``[B, K̃]`` with ``k`` True per row → bool ``[B, K̃]``, ``k`` True per row.
    """
    fn = "swap_refine"
    H = _check_channel(fn, H)
    B, Kt = H.shape[:2]
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (B, Kt):
        raise ValueError(f"{fn}: mask must be a bool tensor [B, K̃] = [{B}, {Kt}], got "
                         f"{getattr(mask, 'dtype', type(mask).__name__)} {tuple(getattr(mask, 'shape', ()))}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"{fn}: rounds must be a non-negative int, got {rounds!r}")
    counts = mask.sum(1)
    k = _check_k(fn, int(counts[0]), Kt)
    if not bool((counts == k).all()):
        raise ValueError(f"{fn}: every row of mask must select the same number k of users, "
                         f"got counts {sorted(set(counts.tolist()))}")
    if rounds == 0 or k == Kt:
        return mask.clone()
    s2 = _noise(fn, noise_var, B, torch.float64, H.device)
    rows = torch.arange(B, device=H.device)
    i, j = torch.meshgrid(torch.arange(k, device=H.device), torch.arange(Kt - k, device=H.device), indexing="ij")
    i, j = i.reshape(-1), j.reshape(-1)                                 # the swaps, (i, j) order
    for _ in range(rounds):
        sel = mask.nonzero()[:, 1].reshape(B, k)
        out = (~mask).nonzero()[:, 1].reshape(B, Kt - k)
        swaps = sel[:, None, :].repeat(1, len(i), 1)                     # [B, S, k]
        swaps[:, torch.arange(len(i), device=H.device), i] = out[:, j]
        cand = torch.cat([sel[:, None, :], swaps], 1)                    # current set first
        C = cand.shape[1]
        H_sub = _select(H, cand).reshape(B * C, k, *H.shape[2:])
        s2_sub = s2.repeat_interleave(C)
        r = sum_rate(H_sub, _call_precoder(fn, precoder, H_sub, s2_sub), s2_sub).reshape(B, C)
        best = cand[rows, r.argmax(1)]                                   # argmax: first of the maxima
        mask = torch.zeros_like(mask).scatter_(1, best, True)
    return mask


def random_schedule(B: int, K_tilde: int, k: int, generator: torch.Generator | None = None,
                    device=None) -> torch.Tensor:
    r"""Uniformly random selection of ``k`` of ``K_tilde`` users per sample ("Rand").

    *Shapes*: returns a bool mask ``[B, K_tilde]`` with exactly ``k`` True per row.
    """
    fn = "random_schedule"
    for name, v in (("B", B), ("K_tilde", K_tilde)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{fn}: {name} must be a positive int, got {v!r}")
    k = _check_k(fn, k, K_tilde)
    gdev = generator.device if generator is not None else "cpu"
    order = torch.rand(B, K_tilde, generator=generator, device=gdev).argsort(1)[:, :k]
    mask = torch.zeros(B, K_tilde, dtype=torch.bool, device=gdev)
    mask[torch.arange(B, device=gdev)[:, None], order] = True
    return mask.to(device) if device is not None else mask


def scheduled_sum_rate(H: torch.Tensor, mask: torch.Tensor, noise_var, precoder) -> torch.Tensor:
    r"""Objective (13): sum rate of the users selected by ``mask`` under ``precoder``.

    *Shapes*:
        - ``H``: ``[B, K̃, N_R, N_T]`` complex; ``noise_var``: float or ``[B]``.
        - ``mask``: bool ``[B, K̃]`` with the same number ``k >= 1`` of True per row.
        - returns ``[B]`` (bits/s/Hz), real dtype of the precoder's output.
    """
    fn = "scheduled_sum_rate"
    H = _check_channel(fn, H)
    B, Kt = H.shape[:2]
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (B, Kt):
        raise ValueError(f"{fn}: mask must be a bool tensor [B, K̃] = [{B}, {Kt}], got "
                         f"{getattr(mask, 'dtype', type(mask).__name__)} "
                         f"{tuple(getattr(mask, 'shape', ()))}")
    counts = mask.sum(1)
    k = int(counts[0])
    if k < 1 or not bool((counts == k).all()):
        raise ValueError(f"{fn}: every row of mask must select the same number k >= 1 of users, "
                         f"got counts {sorted(set(counts.tolist()))}")
    s2 = _noise(fn, noise_var, B, torch.float64, H.device)
    idx = mask.to(H.device).nonzero()[:, 1].reshape(B, k)
    H_sub = _select(H, idx)
    V = _call_precoder(fn, precoder, H_sub, s2)
    return sum_rate(H_sub, V, s2)
