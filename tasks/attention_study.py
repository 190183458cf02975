r"""What the two "no attention" tasks share (P-C, :mod:`tasks.power_control`, interference
reflected in the inputs; P-B, :mod:`tasks.ofdma`, no interference): the plan's GNN is
trained beside the same GNN forced to attend along ``ue`` (``model.attention=all``),
over several training seeds, and the verdict on attention is a t-test over those seeds.
"""
from __future__ import annotations

import math

import torch

__all__ = ["seed_t_test", "run_name", "check_attention_override"]


def seed_t_test(diffs) -> dict:
    r"""Two-sided one-sample t-test of the per-training-seed mean differences against 0.

    The per-drop SEM of one pair of trained networks says whether *those two networks*
    differ on these drops; whether the all-attention *design* is better is a question
    about the training randomness, so the sample is the training seeds (``n`` pairs,
    ``n - 1`` degrees of freedom): :math:`t = \bar d / (s_d/\sqrt n)`. ``None`` below
    two seeds; ``p`` is 0 when every seed has exactly the same difference."""
    from scipy import stats
    d = torch.as_tensor(diffs, dtype=torch.float64)
    n = len(d)
    if n < 2:
        return {"seeds": n, "t": None, "p": None, "significant_at_0.05": None}
    sd = float(d.std())
    if sd == 0.0:
        t, p = (math.copysign(math.inf, float(d.mean())), 0.0) if float(d.mean()) else (0.0, 1.0)
    else:
        t = float(d.mean()) / (sd / math.sqrt(n))
        p = float(2 * stats.t.sf(abs(t), df=n - 1))
    return {"seeds": n, "t": t, "p": p, "significant_at_0.05": bool(p < 0.05)}


def run_name(cfg: dict, stem: str) -> str:
    """``run.name``, or ``<stem>_s<seed>`` (``<stem>_all_s<seed>`` for the all-attention variant)."""
    return cfg["run"]["name"] or f"{stem}{'_all' if cfg['model']['attention'] == 'all' else ''}_s{cfg['train']['seed']}"


def check_attention_override(cfg: dict) -> None:
    """These tasks compare the plan (``auto``/``none``) with forced attention (``all``) only."""
    from pegnn.config import ConfigError
    if cfg["model"]["attention"] not in ("auto", "none", "all"):
        raise ConfigError(f"override: model.attention: expected auto, none or all, got {cfg['model']['attention']!r}")


if __name__ == "__main__":
    from tasks import not_a_command
    not_a_command("tasks.attention_study", "python -m tasks.power_control or python -m tasks.ofdma")
