r"""Greedy user-scheduling labels :math:`\boldsymbol\eta^*` for TEUSN (paper 000 eq. 43), cached.

The targets of the supervised loss (43) are the masks of the greedy scheduler
(paper 000 Sec. V-C "Greedy", ref. [3]; :func:`pegnn.wireless.scheduling.greedy_schedule`):
starting from :math:`\mathcal{K} = \emptyset`, add the candidate that maximises the
sum rate :math:`R_{US}` (13) of :math:`\mathcal{K} \cup \{\tilde k\}` under a precoder
:math:`G_{CP}`, until :math:`|\mathcal{K}| = K`. The precoder is one of

* ``"mmse"`` — :func:`~pegnn.wireless.precoders.mmse` (~2 ms per sample at
  :math:`(\tilde K, K, N_R, N_T) = (12, 8, 2, 32)`, one core);
* ``"wmmse"`` — :func:`~pegnn.wireless.wmmse.wmmse`, MMSE init, at most 300
  iterations, stop at 1e-4 bits/s/Hz (paper 000 Sec. V-B); ~0.5 s per sample in
  batches of 50, so 10^4 labels take ~1.5 h on one core: run shards as separate jobs;
* ``"tecfp"`` — a TECFP policy (:class:`pegnn.policies.TECFPPolicy`).

Caching (the conventions of :mod:`pegnn.data`). Labels are computed per *shard*, a
contiguous sample range ``[first, stop)`` of ``shard_size`` samples, and stored one
file per shard in the data cache (``$PEGNN_CACHE`` or ``data_cache/``) as
``<problem>-labels-<precoder>-k<k>-<key16>-<first>-<stop>.pt``. The key is the
SHA-256 of (channel data set key, precoder identity — for TECFP the hash of its
weights —, ``k``, SNR set, range, :data:`LABELS_VERSION`); files carry the key and a
hash of their tensors, are written atomically and regenerated when they fail either
check. A run that stops keeps every finished shard, so the next call resumes; shards
can be computed by separate processes (``shard=i``) and then merged by a plain call.

Greedy runs in complex128 for MMSE/WMMSE (argmax ties at 40 dB are sensitive to
float32 rounding) and with ``threads`` torch threads (default 1: label jobs share
the machine with training).
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Sequence

import torch

# Reuse pegnn.data's atomic write and checked load (same file layout: meta/tensors/constants).
from pegnn.data import _load_shard, _save_atomic, cache_dir, tensor_hash

__all__ = ["LABELS_VERSION", "PRECODERS", "make_precoder", "shard_ranges", "greedy_labels"]

LABELS_VERSION = "pegnn-labels-1"  # bump when the label algorithm's output changes
PRECODERS = ("mmse", "wmmse", "tecfp")
#: default samples per shard file and per greedy call, by precoder cost. WMMSE stops
#: per sample (:func:`~pegnn.wireless.wmmse.wmmse`), so the batch does not change the
#: labels; batching 40 drops instead of 5 took greedy-WMMSE from 1.68 to 0.52 s per drop
#: (40 training drops, 1 thread, identical masks).
_SHARD = {"mmse": 2000, "wmmse": 200, "tecfp": 1000}
_BATCH = {"mmse": 250, "wmmse": 50, "tecfp": 125}


def make_precoder(name: str, tecfp=None):
    """``(precoder, identity)``: ``precoder(H_sub, noise_var) -> V`` for greedy
    scheduling and a JSON-able identity that enters the label key.

    ``tecfp`` is a :class:`~pegnn.policies.TECFPPolicy` (required for ``"tecfp"``).
    """
    from pegnn.wireless.precoders import mmse
    from pegnn.wireless.wmmse import wmmse
    if name == "mmse":
        return mmse, {"name": "mmse"}
    if name == "wmmse":
        return (lambda H, s2: wmmse(H, s2, init="mmse", max_iter=300, tol=1e-4)[0],
                {"name": "wmmse", "init": "mmse", "max_iter": 300, "tol": 1e-4})
    if name == "tecfp":
        if tecfp is None:
            raise ValueError("precoder 'tecfp' needs a TECFP policy (pegnn.pretrained('tecfp') or a policy.pt)")
        weights = tensor_hash(tecfp.model.state_dict())
        # the policy runs in float32; greedy compares rates in the channel's dtype
        return (lambda H, s2: tecfp(H, s2).to(H.dtype),
                {"name": "tecfp", "weights": weights, "model": tecfp.model.config})
    raise ValueError(f"unknown precoder {name!r}; expected one of {list(PRECODERS)}")


def shard_ranges(n: int, shard_size: int) -> list[tuple[int, int]]:
    """Sample ranges ``[(first, stop), ...]`` of consecutive shards covering ``range(n)``."""
    if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
        raise ValueError(f"labels: shard_size must be a positive int, got {shard_size!r}")
    return [(a, min(a + shard_size, n)) for a in range(0, n, shard_size)]


def _meta(problem, channels_key, precoder_id, k, snrs, first, stop) -> dict:
    meta = {"problem": problem, "kind": "greedy_labels", "channels_key": channels_key,
            "precoder": precoder_id, "k": k, "snrs": None if snrs is None else [float(s) for s in snrs],
            "range": [first, stop], "version": LABELS_VERSION}
    meta["key"] = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()
    return meta


def check_counts(shard_size: int | None, threads: int | None) -> None:
    """``labels.shard_size`` and ``labels.threads``: null (the default) or a positive int;
    a 0 must not read as "the default"."""
    for name, v in (("shard_size", shard_size), ("threads", threads)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"labels.{name}: must be null or a positive int, got {v!r}")


def greedy_labels(H: torch.Tensor, noise_var: torch.Tensor, k: int, precoder: str = "mmse", *,
                  channels_key: str, snrs: Sequence[float] | None = None, tecfp=None,
                  shard_size: int | None = None, batch: int | None = None, shard: int | None = None,
                  problem: str = "tenn_scheduling", cache=None, progress: bool = True,
                  threads: int | None = 1, return_info: bool = False, return_order: bool = False):
    r"""Greedy labels :math:`\boldsymbol\eta^*` for every sample, from cache or computed.

    :param H: candidate channels ``[n, K̃, N_R, N_T]`` complex (a cached data set's ``H``).
    :param noise_var: ``[n]`` per-sample :math:`\sigma^2`.
    :param channels_key: the data set's key (``ChannelDataset.meta["key"]``): labels are
        only valid for the channels they were computed on.
    :param shard: compute (or load) only shard ``shard`` of :func:`shard_ranges` — for
        parallel jobs; the return value then covers only that shard's rows.
    :param threads: torch threads while computing (``None``: leave as is).
    :param return_order: also return the greedy order, the users in the order they were
        added (long ``[n, k]``; the targets of the sequential scheduler). Shard files keep
        both; a file written before the order was stored is recomputed when it is asked for.

    *Shapes*: returns ``eta`` bool ``[n, K̃]`` (``[stop - first, K̃]`` with ``shard``),
    exactly ``k`` True per row; with ``return_order`` ``(eta, order)``; with
    ``return_info`` also ``{"files", "generated", "loaded", "ranges"}`` (samples computed /
    read from cache).
    """
    from pegnn.wireless.scheduling import greedy_schedule
    if precoder not in PRECODERS:
        raise ValueError(f"labels: unknown precoder {precoder!r}; expected one of {list(PRECODERS)}")
    n, Kt = H.shape[:2]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= Kt:
        raise ValueError(f"labels: k must be an int in [1, K̃ = {Kt}], got {k!r}")
    if noise_var.shape != (n,):
        raise ValueError(f"labels: noise_var must have shape [{n}], got {tuple(noise_var.shape)}")
    check_counts(shard_size, threads)
    ranges = shard_ranges(n, shard_size or _SHARD[precoder])
    if shard is not None:
        if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < len(ranges):
            raise ValueError(f"labels: shard must be in [0, {len(ranges)}) ({len(ranges)} shards of "
                             f"{shard_size or _SHARD[precoder]} samples), got {shard!r}")
        ranges = [ranges[shard]]
    fn, pid = make_precoder(precoder, tecfp)
    root = cache_dir(cache)
    safe = re.sub(r"[^A-Za-z0-9_.]+", "_", problem)
    jobs = []
    for first, stop in ranges:
        meta = _meta(problem, channels_key, pid, k, snrs, first, stop)
        path = root / f"{safe}-labels-{precoder}-k{k}-{meta['key'][:16]}-{first:09d}-{stop:09d}.pt"
        loaded = _load_shard(path, meta)
        if loaded is not None and return_order and "order" not in loaded[0]:
            loaded = None   # a file from before the order was stored
        jobs.append([path, meta, None if loaded is None else loaded[0]])
    missing = sum(m["range"][1] - m["range"][0] for _, m, got in jobs if got is None)
    if missing:
        from tqdm.auto import tqdm
        old = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        dtype = torch.complex64 if precoder == "tecfp" else torch.complex128
        step = batch or _BATCH[precoder]
        try:
            with tqdm(total=missing, unit="sample", desc=f"greedy labels ({precoder}, k={k})",
                      disable=not progress) as bar:
                for job in jobs:
                    path, meta, got = job
                    if got is not None:
                        continue
                    first, stop = meta["range"]
                    parts = []
                    for a in range(first, stop, step):
                        b = min(a + step, stop)
                        parts.append(greedy_schedule(H[a:b].to(dtype), noise_var[a:b].double(), k, fn,
                                                     return_order=True))
                        bar.update(b - a)
                    got = {"eta": torch.cat([m for m, _ in parts]), "order": torch.cat([o for _, o in parts])}
                    _save_atomic({"meta": {**meta, "tensor_hash": tensor_hash(got)},
                                  "tensors": got, "constants": {}}, path)
                    job[2] = got
        finally:
            torch.set_num_threads(old)
    eta = torch.cat([j[2]["eta"] for j in jobs])
    out = (eta, torch.cat([j[2]["order"] for j in jobs])) if return_order else eta
    if return_info:
        info = {"files": [str(j[0]) for j in jobs], "generated": missing, "loaded": len(eta) - missing,
                "ranges": [j[1]["range"] for j in jobs]}
        return (*out, info) if return_order else (out, info)
    return out


if __name__ == "__main__":
    from tasks import not_a_command
    not_a_command("tasks.labels", "python -m tasks.scheduling labels")
