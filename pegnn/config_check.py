"""The checks every task config shares (:func:`check_config`), run before any work
starts: data generation can take minutes, and a mistake found after it wastes them.
Each failure is one ``ValueError`` line naming the key (``config: train.lr: must be a
positive number, got -1``).
"""
from __future__ import annotations

from datetime import timedelta
from typing import Mapping

from .config import check_writable

__all__ = ["check_config", "max_time_seconds"]

#: keys every task config shares, with the range each must lie in; a key a config lacks is skipped
_POSITIVE_INTS = ("sizes.*", "data.n_train", "data.n_val", "model.hidden", "model.layers", "model.heads",
                  "train.batch_size", "train.max_steps", "train.val_every", "train.log_every",
                  "train.val_batch_size", "train.devices", "train.num_nodes")
_NON_NEGATIVE_INTS = ("train.workers",)
_POSITIVE_NUMBERS = ("train.lr", "train.lr_decay")


def check_config(cfg: Mapping) -> None:
    """Check the keys all task configs share before any work starts (data generation
    can take minutes): sizes, data counts, model width/depth/heads and the training
    loop's counts must be positive ints, ``train.lr``/``lr_decay`` positive numbers,
    ``train.lr_decay_at`` in [0, 1], ``train.grad_clip`` unset or ≥ 0; and, where the
    config has them, ``train.batch_size`` ≤ ``data.n_train``, a well-formed
    ``train.max_time``, a readable ``train.init``, a Lightning ``train.strategy``,
    ``data.snrs`` / ``data.noise_feature`` / ``data.channel`` of the known kinds, a plain
    ``run.name`` and a writable ``run.out``. Raises ``ValueError`` with one line naming
    the key."""
    def leaves(pattern):
        sec, key = pattern.split(".")
        node = cfg.get(sec)
        if not isinstance(node, Mapping):
            return []
        return [(f"{sec}.{k}", v) for k, v in node.items() if key in ("*", k)]

    def fail(path, v, want):
        raise ValueError(f"config: {path}: must be {want}, got {v!r}")

    for pat in _POSITIVE_INTS + _NON_NEGATIVE_INTS:
        lo = 0 if pat in _NON_NEGATIVE_INTS else 1
        for path, v in leaves(pat):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                fail(path, v, "a positive int" if lo else "a non-negative int")
    for pat in ("train.seed", "data.seed", "data.val_seed"):
        for path, v in leaves(pat):     # numpy's (and so Lightning's seed_everything's) range
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2 ** 32:
                fail(path, v, "an int in [0, 2**32 - 1]")
    for pat in _POSITIVE_NUMBERS:
        for path, v in leaves(pat):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
                fail(path, v, "a positive number")
    for path, v in leaves("train.lr_decay_at"):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            fail(path, v, "a fraction of the steps in [0, 1]")
    for path, v in leaves("train.grad_clip"):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf")):
            fail(path, v, "null or a non-negative number")
    t, d, run = (cfg.get(k) if isinstance(cfg.get(k), Mapping) else {} for k in ("train", "data", "run"))
    if isinstance(d.get("n_train"), int) and isinstance(t.get("batch_size"), int) and t["batch_size"] > d["n_train"]:
        fail("train.batch_size", t["batch_size"], f"at most data.n_train = {d['n_train']} (batches are full, "
             "drop_last: a larger one leaves no training batch)")
    if t.get("max_time") is not None:
        try:
            secs = max_time_seconds(t["max_time"])
        except (TypeError, ValueError):
            secs = None
        if secs is None or secs <= 0:   # a zero budget ends the run before its first checkpoint
            fail("train.max_time", t["max_time"], "null or a positive DD:HH:MM:SS, e.g. 00:01:30:00")
    if t.get("init"):
        from .train import _read_weights     # lazily: pegnn.train imports this module
        _read_weights(t["init"])
    if t.get("strategy") is not None:
        from lightning.pytorch.strategies import StrategyRegistry
        known = ["auto", *StrategyRegistry.available_strategies()]
        if t["strategy"] not in known:
            fail("train.strategy", t["strategy"], f"null or one of Lightning's strategies {known[:4]} ...")
    if "snrs" in d:
        v = d["snrs"]
        if (not isinstance(v, (list, tuple)) or not v
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and -100 <= x <= 100 for x in v)):
            # beyond ±100 dB the noise variance under- or overflows float32 (NaN fails the test too)
            fail("data.snrs", v, "a non-empty list of SNRs in dB within [-100, 100], e.g. [0, 10, 20]")
    if d.get("noise_feature") is not None:
        from .policies import NOISE_FEATURES
        if d["noise_feature"] not in NOISE_FEATURES:
            fail("data.noise_feature", d["noise_feature"], f"one of {list(NOISE_FEATURES)}")
    if d.get("channel") is not None:
        from .data import mimo_models
        models = mimo_models()
        if d["channel"] not in models:
            fail("data.channel", d["channel"], f"one of {models}")
    if "name" in run:
        name = str(run["name"])
        if not name.strip() or name in (".", "..") or "/" in name or "\\" in name:
            fail("run.name", run["name"], "a plain folder name (the run goes to run.out/run.name)")
    if run.get("out"):
        check_writable(run["out"], "run.out")


def max_time_seconds(max_time) -> float | None:
    """Lightning's ``max_time`` (``"DD:HH:MM:SS"``, a dict of timedelta keywords, or
    a timedelta) in seconds; ``None`` when unset."""
    if max_time in (None, "", "null"):
        return None
    if isinstance(max_time, timedelta):
        return max_time.total_seconds()
    if isinstance(max_time, Mapping):
        return timedelta(**max_time).total_seconds()
    parts = str(max_time).split(":")
    try:
        d, h, m, sec = (float(x) for x in parts)
    except ValueError:
        raise ValueError(f"train.max_time: expected DD:HH:MM:SS, got {max_time!r}") from None
    return timedelta(days=d, hours=h, minutes=m, seconds=sec).total_seconds()
