"""Data side of the RIS hybrid-precoding task (``tasks/ris_precoding.py``): channel
regimes, cached drop sets, per-sample tensors, size mixtures, the graph collate and
the unsupervised objective.

Shapes (``B`` drops, ``M`` cells, ``U = M K`` UEs, ``N_B`` BS antennas, ``N_RE`` RIS
elements; :class:`~pegnn.wireless.ris_channels.RISChannels`):
``h_d`` ``[B, M, U, N_B]``, ``G`` ``[B, M, N_RE, N_B]``, ``h_r`` ``[B, U, N_RE]``, all
complex. A sample of :func:`sample_dict` is one drop of these plus the scalars
``noise_var``, ``P_max`` and ``n_rf`` (= ``N_RF``).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "graphs" / "ris_pr.yaml"

#: ``ris_channels`` keywords of each channel regime (what each is: the docstring of
#: ``tasks/ris_precoding.py``; why: ``results/ris_precoding/README.md``).
REGIMES = {
    "ris": {"ris_path_loss": [35.6, 22.0], "direct_loss_db": 30.0, "d_bs_ris": 30.0,
            "d_ue_ris": 10.0, "ue_radius": 5.0},
    "paper": {},
}


def regime_kwargs(regime: str) -> dict:
    if regime not in REGIMES:
        raise ValueError(f"data.regime: unknown regime {regime!r}; expected one of {sorted(REGIMES)}")
    return dict(REGIMES[regime])


def _check_sizes(K, N_B, N_RF, N_RE, cells=1):
    for name, v in dict(K=K, N_B=N_B, N_RF=N_RF, N_RE=N_RE, cells=cells).items():
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"sizes.{name}: must be a positive int, got {v!r}")
    if N_RF > N_B:
        raise ValueError(f"sizes: need N_RF <= N_B, got N_RF={N_RF}, N_B={N_B}")


def check_data(sz: dict, d: dict) -> None:
    """The checks of a config's ``sizes`` and ``data`` sections that need no data."""
    _check_sizes(sz["K"], sz["N_B"], sz["N_RF"], sz["N_RE"], sz.get("cells", 1))
    regime_kwargs(d["regime"])
    if d.get("mixed_K") is not None and (isinstance(d["mixed_K"], bool) or not isinstance(d["mixed_K"], int)
                                         or d["mixed_K"] < 1):
        raise ValueError(f"data.mixed_K: expected null or the largest K (a positive int), got {d['mixed_K']!r}")
    for key in ("power_db", "cascade_db"):
        if d.get(key) is not None:
            _db_range(key, d[key])
            if d.get("mixed_K") or d.get("mixed_N_RE"):
                raise ValueError(f"data.{key}: not supported together with data.mixed_K or data.mixed_N_RE")
    if d.get("mixed_N_RE") is not None:
        _mixed_N_RE(d["mixed_N_RE"])
        if d.get("mixed_K"):
            raise ValueError("data.mixed_N_RE: not supported together with data.mixed_K")


def channels(n: int, seed: int, K: int = 3, N_B: int = 8, N_RF: int = 6, N_RE: int = 8, cells: int = 1,
             regime: str = "ris", progress: bool = False):
    """``n`` cached drops as :class:`~pegnn.wireless.ris_channels.RISChannels`
    (noise-normalised: ``noise_var = 1``, ``P_max`` = 1 W, i.e. 30 dBm)."""
    from pegnn.data import cached
    from pegnn.wireless.ris_channels import RISChannels
    _check_sizes(K, N_B, N_RF, N_RE, cells)
    ds = cached("ris_pr", "ris", n, seed, sizes={"K": K, "N_B": N_B, "N_RF": N_RF, "N_RE": N_RE, "cells": cells},
                params={**regime_kwargs(regime), "normalize_noise": True}, progress=progress)
    return RISChannels.from_tensors({**ds.tensors, **ds.constants})


def sample_dict(ch, power_db=None, seed: int = 0, cascade_db=None) -> dict:
    """Per-sample tensors of a channel batch (for :class:`pegnn.train.DictDataset`).

    ``power_db = [lo, hi]`` draws each drop's transmit power offset uniformly in
    [lo, hi] dB around the channels' ``P_max``; ``cascade_db = [lo, hi]`` scales each
    drop's UE-RIS channel h_r, i.e. the cascaded link h_r ⊙ G, by a gain drawn the same
    way (a stronger RIS link at fixed N_RE, as a larger RIS's coherent gain ~N_RE² gives).
    Both are seeded by ``seed``; ``None`` leaves the drops as generated. Why they were
    tried (``data.power_db`` / ``data.cascade_db``): ``results/ris_precoding/README.md``."""
    B = ch.h_d.shape[0]
    gen = torch.Generator().manual_seed(seed)
    u_power, u_cascade = (torch.rand(B, generator=gen, dtype=torch.float64) for _ in range(2))
    P = torch.full((B,), float(ch.P_max))
    h_r = ch.h_r
    if power_db is not None:
        lo, hi = _db_range("power_db", power_db)
        P = P * 10 ** ((lo + (hi - lo) * u_power) / 10).float()
    if cascade_db is not None:
        lo, hi = _db_range("cascade_db", cascade_db)
        h_r = h_r * 10 ** ((lo + (hi - lo) * u_cascade) / 20).to(h_r.real.dtype).reshape(B, *[1] * (h_r.dim() - 1))
    return {"h_d": ch.h_d, "G": ch.G, "h_r": h_r,
            "noise_var": torch.full((B,), float(ch.noise_var)), "P_max": P,
            "n_rf": torch.full((B,), int(ch.N_RF), dtype=torch.long)}


def _db_range(key: str, value) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"data.{key}: expected [lo, hi] in dB (e.g. [0, 25]) or null, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"data.{key}: expected finite lo <= hi, got {value!r}")
    return lo, hi


# ---------------------------------------------------------------- size mixtures
def _size_mixture(counts: dict, key: str, seed: int, sz: dict, regime: str, transform=None):
    """One cached channel set per value of ``sizes[key]``, ``counts[value]`` drops each,
    concatenated (``GraphCollate`` batches each size group on its own). ``transform``
    maps each set's :func:`sample_dict` before it is wrapped (e.g. :func:`with_dual_labels`,
    which labels each size on its own)."""
    from torch.utils.data import ConcatDataset
    from pegnn.train import DictDataset
    parts = []
    for v, cnt in sorted(counts.items()):
        s = {**sz, key: v}
        ch = channels(cnt, seed * 100 + v, s["K"], s["N_B"], s["N_RF"], s["N_RE"], s.get("cells", 1), regime)
        samples = sample_dict(ch)
        parts.append(DictDataset(transform(samples) if transform else samples))
    return ConcatDataset(parts)


def mixed_K_dataset(n: int, seed: int, sz: dict, regime: str, k_max: int = 6, transform=None):
    """K = round(1 + Exp(1)) capped at ``k_max``: the two-parameter exponential of paper
    002 Fig. 6(a) (mean 2, std 1; ~92 % of drops have K ≤ 3). One cached set per K."""
    gen = torch.Generator().manual_seed(seed)
    K = (1 + torch.empty(n).exponential_(1.0, generator=gen)).round().clamp(1, k_max).long()
    counts = {k: int((K == k).sum()) for k in sorted(set(K.tolist()))}
    return _size_mixture(counts, "K", seed, sz, regime, transform), counts


def _mixed_N_RE(values) -> list[int]:
    if (not isinstance(values, (list, tuple)) or not values
            or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in values)):
        raise ValueError(f"data.mixed_N_RE: expected a list of positive ints (e.g. [8, 16, 32]) or null, "
                         f"got {values!r}")
    return sorted(set(values))


def mixed_N_RE_dataset(n: int, seed: int, sz: dict, regime: str, values, transform=None) -> tuple:
    """``n`` drops split evenly over the RIS sizes ``values`` (one cached set per size)."""
    values = _mixed_N_RE(values)
    counts = {v: n // len(values) + (i < n % len(values)) for i, v in enumerate(values)}
    return _size_mixture(counts, "N_RE", seed, sz, regime, transform), counts


# ---------------------------------------------------------------- model pieces
def task_spec(path=SPEC, W_0: bool = False):
    from pegnn import load_spec
    from pegnn.ris_policy import RISPolicy
    if not isinstance(W_0, bool):
        raise ValueError(f"features.W_0: expected true or false, got {W_0!r}")
    return RISPolicy.extend_spec(load_spec(path), W_0)


def _graph_inputs(b: dict, W_0: bool, rf: bool = True) -> dict:
    from pegnn.ris_policy import RISPolicy
    M, U = b["h_d"].shape[1], b["h_d"].shape[2]
    tag = RISPolicy.rf_tag(M, U // M, int(b["n_rf"][0])) if rf else None
    return RISPolicy.graph_inputs(b["h_d"], b["G"], b["h_r"], b["noise_var"], b["P_max"], tag, W_0=W_0)


def _sizes_of(s: dict, rf: bool = True) -> dict:
    M, U, N_B = s["h_d"].shape
    return {"cell": M, "ue": U // M, "ant_bs": N_B, "re": s["G"].shape[1], **({"rf": int(s["n_rf"])} if rf else {})}


def collate(spec):
    from pegnn.train import GraphCollate
    rf = "rf" in spec.sets        # the dual form has no RF chains
    return GraphCollate(spec, sizes_of=lambda s: _sizes_of(s, rf), pairs=(),
                        graph_inputs=lambda b: _graph_inputs(b, W_0="W_0" in spec.inputs, rf=rf))


def _channels_of(samples: dict) -> tuple:
    return samples["h_d"], samples["G"], samples["h_r"], samples["noise_var"], samples["P_max"]


def objective(samples, raw):
    """−mean SE (bits/s/Hz) of the feasible precoder (paper 002 Sec. V): the hybrid
    output layer's, or in the dual form the digital precoder of the closed form (the
    hybrid realisation reproduces it exactly when ``N_RF >= 2K``)."""
    from pegnn.ris_policy import RISPolicy
    from pegnn.wireless.ris import ris_rate
    ch = _channels_of(samples)
    if "q" in raw:
        out = RISPolicy.dual_output(raw, ch)
    else:
        out = RISPolicy.output_layer(raw, samples["h_d"].shape[1], samples["P_max"])
    se = ris_rate(ch, out)
    return -se.mean(), {"se": se.mean().detach()}


#: weight of the phase term of :func:`imitation_objective`
PHASE_WEIGHT = 4.0


def imitation_objective(samples, raw):
    r"""Supervised loss of the dual form against :func:`dual_labels` ``(q^*, p^*, \theta^*)``:
    the cross-entropies :math:`-\sum_k q^*_k \log \mathrm{softmax}(q)_k` and the same for
    ``p`` (per cell, averaged over cells), plus ``PHASE_WEIGHT`` × :math:`(1 - |\langle
    \theta, \theta^*\rangle| / N_{RE})`, free of the phases' common rotation, which no
    SE sees. Each term is 0 at the labels; unrelated phases give ~``PHASE_WEIGHT``.
    The SE of the output is reported beside it (``se``)."""
    from pegnn.ris_policy import RISPolicy
    from pegnn.wireless.ris import ris_rate, unit_modulus
    B, M, U = samples["h_d"].shape[:3]
    ch = _channels_of(samples)
    ce = 0.0
    for k in ("q", "p"):
        logp = raw[k].to(torch.float64).reshape(B, M, U // M).log_softmax(-1)
        ce = ce - (samples[f"{k}_star"].reshape(B, M, U // M) * logp).sum(-1).mean()
    th, th_star = unit_modulus(raw["theta"].to(torch.complex128)), samples["theta_star"]
    phase = 1 - (th_star.conj() * th).sum(-1).abs() / th.shape[-1]
    loss = ce + PHASE_WEIGHT * phase.mean()
    with torch.no_grad():
        se = ris_rate(ch, RISPolicy.dual_output(raw, ch))
    return loss, {"se": se.mean(), "phase": phase.mean().detach()}


DUAL_LABELS_VERSION = "pegnn-ris-dual-labels-1"  # bump when dual_ascent's output changes


def dual_labels(samples: dict, iters: int = 1500, lr: float = 0.05, batch: int = 500,
                progress: bool = True) -> dict:
    """Per-drop labels for :func:`imitation_objective`: the best ``(q, p, theta)`` of
    :func:`pegnn.wireless.dual_ascent` on the drops of a :func:`sample_dict` (``q_star``,
    ``p_star`` ``[B, M K]``, ``theta_star`` ``[B, N_RE]`` complex128; ``se`` the digital
    SE), cached in the data cache under the SHA-256 of the drops' tensors, ``iters``,
    ``lr`` and :data:`DUAL_LABELS_VERSION` (4000 drops at the training size: ~1 min on one
    thread). Drops climb independently, so ``batch`` does not change the labels."""
    import hashlib
    import json
    from tqdm.auto import tqdm
    from pegnn.data import _load_shard, _save_atomic, cache_dir, tensor_hash
    from pegnn.wireless import dual_ascent
    tensors = dict(zip(("h_d", "G", "h_r", "noise_var", "P_max"), _channels_of(samples)))
    spec = {"drops": tensor_hash(tensors), "iters": iters, "lr": lr, "version": DUAL_LABELS_VERSION}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    path = cache_dir() / f"ris_pr-dual-labels-{key[:16]}.pt"
    got = _load_shard(path, {"key": key})
    if got is not None:
        return got[0]
    B, M, U = samples["h_d"].shape[:3]
    parts = []
    for i in tqdm(range(0, B, batch), desc="dual labels", disable=not progress):
        sub = tuple(x[i:i + batch] for x in tensors.values())
        # N_RF = 2K: the labels are the digital optimum's (q, p, theta), whatever the hybrid
        out, info = dual_ascent(sub, 2 * (U // M), iters=iters, lr=lr)
        n = out.theta.shape[0]
        parts.append({"q_star": info["q"].reshape(n, -1), "p_star": info["p"].reshape(n, -1),
                      "theta_star": out.theta, "se": info["se_digital"]})
    labels = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    _save_atomic({"meta": {**spec, "key": key, "tensor_hash": tensor_hash(labels)}, "tensors": labels,
                  "constants": {}}, path)
    return labels


def with_dual_labels(samples: dict, progress: bool = True) -> dict:
    """``samples`` plus the ``q_star``, ``p_star``, ``theta_star`` of :func:`dual_labels`."""
    labels = dual_labels(samples, progress=progress)
    return {**samples, **{k: labels[k] for k in ("q_star", "p_star", "theta_star")}}


if __name__ == "__main__":
    from tasks import not_a_command
    not_a_command("tasks.ris_data", "python -m tasks.ris_precoding")
