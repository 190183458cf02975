"""Data-set cache: keys, reload, shards, integrity, SNR draws."""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest
import torch

from pegnn.data import (TEPN_SNRS, TEUSN_SNRS, ChannelDataset, cache_dir, cached, draw_snr,
                        noise_var_from_snr, tensor_hash)
from pegnn.wireless.channels import uma_channels

SMALL = {"K": 2, "N_R": 2, "N_T": 4}


def _files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.suffix == ".pt")


def test_draw_snr_set_seed_and_noise():
    s = draw_snr(9000, TEPN_SNRS, seed=1)
    assert s.dtype == torch.float32 and set(s.tolist()) == set(map(float, range(0, 41, 5)))
    counts = torch.bincount((s / 5).long(), minlength=9).float()
    assert (counts / 1000 - 1).abs().max() < 0.15  # uniform over the 9 values
    assert torch.equal(s, draw_snr(9000, TEPN_SNRS, seed=1))
    assert set(draw_snr(100, TEUSN_SNRS, 0).tolist()) <= {0.0, 10.0, 20.0, 30.0, 40.0}
    torch.testing.assert_close(noise_var_from_snr(torch.tensor([0.0, 10.0, 40.0])),
                               torch.tensor([1.0, 0.1, 1e-4]))


def test_uma_reload_identical_and_fast(tmp_path):
    sizes = {"K": 8, "N_R": 2, "N_T": 32}
    kw = dict(sizes=sizes, block=40, cache=tmp_path, progress=False)
    uma_channels(2, 8, 2, 32, seed=0, chunk=2)  # import Sionna outside the timing
    t0 = time.perf_counter()
    ds = cached("mu_mimo_precoding", "uma", 40, 5, **kw)
    gen_s = time.perf_counter() - t0
    reload_s = []
    for _ in range(3):
        t0 = time.perf_counter()
        again = cached("mu_mimo_precoding", "uma", 40, 5, **kw)
        reload_s.append(time.perf_counter() - t0)
    assert torch.equal(again["H"], ds["H"]) and again["H"].dtype == torch.complex64
    assert len(_files(tmp_path)) == 1
    assert gen_s / min(reload_s) >= 50, (gen_s, reload_s)


@pytest.mark.parametrize("model, sizes, params, block", [
    ("uma", SMALL, None, 3),
    ("rayleigh", SMALL, None, 4),
    ("correlated_rayleigh", SMALL, {"rho_tx": 0.5, "rho_rx": 0.2}, 4),
    ("ris", {"K": 2, "N_B": 4, "N_RF": 2, "N_RE": 3, "cells": 2}, None, 4),
])
def test_shards_concatenate_to_one_run(tmp_path, model, sizes, params, block):
    kw = dict(sizes=sizes, params=params, block=block, snrs=TEPN_SNRS, progress=False)
    one = cached("p", model, 11, 7, cache=tmp_path / "one", **kw)
    parts = [cached("p", model, 11, 7, shard=i, num_shards=3, cache=tmp_path / "sh", **kw)
             for i in range(3)]
    assert len(_files(tmp_path / "sh")) == 3 and len(one) == 11
    if model == "uma":  # blocks are uma_channels chunks: the set is that call, bit for bit
        assert torch.equal(one["H"], uma_channels(11, **sizes, seed=7, chunk=block))
    for k, v in one.tensors.items():
        assert torch.equal(torch.cat([p[k] for p in parts]), v), k
    for k, v in one.constants.items():
        assert all(torch.equal(p.constants[k], v) for p in parts), k
    # Loading all shards at once reuses the shard files and gives the same set.
    full = cached("p", model, 11, 7, num_shards=3, cache=tmp_path / "sh", **kw)
    assert len(_files(tmp_path / "sh")) == 3
    assert all(torch.equal(full[k], v) for k, v in one.tensors.items())


def test_hash_mismatch_and_corruption_regenerate(tmp_path):
    kw = dict(sizes=SMALL, block=5, cache=tmp_path, progress=False)
    ds = cached("p", "rayleigh", 10, 0, **kw)
    (path,) = _files(tmp_path)
    obj = torch.load(path, weights_only=True)
    obj["tensors"]["H"][0, 0, 0, 0] += 1  # silent bit rot: meta unchanged
    torch.save(obj, path)
    with pytest.warns(UserWarning, match="hash mismatch"):
        again = cached("p", "rayleigh", 10, 0, **kw)
    assert torch.equal(again["H"], ds["H"])
    stored = torch.load(path, weights_only=True)
    assert tensor_hash(stored["tensors"]) == stored["meta"]["tensor_hash"]
    path.write_bytes(path.read_bytes()[:100])  # truncated file
    with pytest.warns(UserWarning, match="cannot read"):
        assert torch.equal(cached("p", "rayleigh", 10, 0, **kw)["H"], ds["H"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a valid file reloads silently
        cached("p", "rayleigh", 10, 0, **kw)


def test_key_depends_on_every_generating_parameter(tmp_path):
    kw = dict(cache=tmp_path, progress=False)
    base = cached("p", "rayleigh", 8, 0, sizes=SMALL, **kw)
    variants = [cached("q", "rayleigh", 8, 0, sizes=SMALL, **kw),
                cached("p", "rayleigh", 8, 1, sizes=SMALL, **kw),
                cached("p", "rayleigh", 9, 0, sizes=SMALL, **kw),
                cached("p", "rayleigh", 8, 0, sizes={**SMALL, "K": 3}, **kw),
                cached("p", "rayleigh", 8, 0, sizes=SMALL, block=4, **kw),
                cached("p", "rayleigh", 8, 0, sizes=SMALL, snrs=TEUSN_SNRS, **kw)]
    keys = {base.meta["key"]} | {v.meta["key"] for v in variants}
    assert len(keys) == 7 and len(_files(tmp_path)) == 7
    assert not torch.equal(variants[1]["H"], base["H"])
    assert base.meta["version"] and base.meta["files"][0].endswith(".pt")


def test_cache_dir_env_override_and_dataset_api(tmp_path, monkeypatch):
    monkeypatch.setenv("PEGNN_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    ds = cached("p", "rayleigh", 6, 0, sizes=SMALL, snrs=TEPN_SNRS, progress=False)
    assert isinstance(ds, ChannelDataset) and len(_files(tmp_path / "env")) == 1
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["H"].shape == (4, 2, 2, 4) and batch["snr_db"].shape == (4,)
    torch.testing.assert_close(ds["noise_var"], noise_var_from_snr(ds["snr_db"]))
    assert "rayleigh" in repr(ds)


@pytest.mark.parametrize("kw, word", [
    (dict(model="nope"), "unknown channel model"), (dict(num_shards=0), "num_shards"),
    (dict(num_shards=9), "num_shards"), (dict(shard=2, num_shards=2), "shard"),
    (dict(n=0), "n > 0"), (dict(block=0), "block")])
def test_cached_argument_errors(tmp_path, kw, word):
    args = {**dict(problem="p", model="rayleigh", n=8, seed=0, block=4), **kw}
    with pytest.raises(ValueError, match=word):
        cached(sizes=SMALL, cache=tmp_path, progress=False, **args)


def test_a_data_set_larger_than_ram_is_refused_after_one_block(tmp_path, monkeypatch):
    """Blocks that each fit but whose whole does not: a MemoryError naming the size
    after the first block, not hours of generation ended by the OOM killer."""
    import pegnn.data as data
    calls = []

    def big(n, seed, block_index, N):
        calls.append(block_index)
        return {"x": torch.zeros(n, N)}, {}

    monkeypatch.setitem(data.MODELS, "big_test", data._Model(big, 10, lambda: {}))
    import pegnn.cpu
    monkeypatch.setattr(pegnn.cpu, "physical_memory", lambda: 2**30)        # a 1 GiB machine
    with pytest.raises(MemoryError, match=r"1000000 samples of these sizes, while generated, need 3.7 GiB, "
                                          r"this machine has 1.0 GiB"):
        cached("p", "big_test", 1_000_000, sizes={"N": 500}, cache=tmp_path, progress=False)
    assert calls == [0]
    assert len(cached("p", "big_test", 100, sizes={"N": 500}, cache=tmp_path, progress=False)) == 100
