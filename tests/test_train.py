"""Training infrastructure: configs, a tiny Lightning fit, policy files, DDP on CPU."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pegnn.config import ConfigError, load_config
from pegnn.policies import load_policy
from pegnn.train import load_policy_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_config_overrides_and_errors(tmp_path):
    from tasks.precoding import DEFAULTS
    cfg = load_config({}, ["model.hidden=16", "train.max_steps=7", "data.snrs=[0, 10]"], defaults=DEFAULTS)
    assert cfg["model"]["hidden"] == 16 and cfg["train"]["max_steps"] == 7 and cfg["data"]["snrs"] == [0, 10]
    assert DEFAULTS["model"]["hidden"] == 8  # defaults are not mutated
    with pytest.raises(ConfigError, match="model.hiden: unknown key"):
        load_config({}, ["model.hiden=3"], defaults=DEFAULTS)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config({}, ["model.hidden"], defaults=DEFAULTS)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {hidden: [1,\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(bad, defaults=DEFAULTS)
    f = tmp_path / "c.yaml"
    f.write_text("train: {batch_size: 32}\nmodel: {pattern: P1}\n")
    cfg = load_config(f, ["model.pattern=P3"], defaults=DEFAULTS)
    assert cfg["train"]["batch_size"] == 32 and cfg["model"]["pattern"] == "P3"


def _train(tmp_path, *extra, devices=1):
    env = {**os.environ, "PEGNN_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "tasks.precoding", "train", "data.channel=rayleigh", "data.n_train=256",
           "data.n_val=64", "train.max_steps=3", "train.val_every=3", "train.batch_size=64", "train.progress=false",
           f"run.out={tmp_path}", f"train.devices={devices}", *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_tiny_fit_writes_config_checkpoint_and_policy(tmp_path):
    r = _train(tmp_path, "run.name=tiny", "train.seed=3")
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "tiny"
    info = yaml.safe_load((run / "config.yaml").read_text())
    assert info["seed"] == 3 and info["git_revision"] != "" and info["config"]["train"]["max_steps"] == 3
    sd, ck_info = load_policy_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ck_info["seed"] == 3 and "embed.weight" in sd
    assert (run / "logs" / "metrics.csv").read_text().count("val/sum_rate") == 1
    policy = load_policy(run / "policy.pt")
    H = torch.complex(torch.randn(4, 8, 2, 32), torch.randn(4, 8, 2, 32))
    V = policy(H, 0.1)
    assert V.shape == H.shape
    assert torch.allclose((V.abs() ** 2).sum((1, 2, 3)), torch.ones(4), atol=1e-4)  # total power P_T = 1


def test_ddp_two_cpu_processes(tmp_path):
    """Lightning DDP with 2 processes on CPU (gloo): both ranks train, rank 0 writes the policy."""
    r = _train(tmp_path, "run.name=ddp", "train.strategy=ddp", devices=2)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout + r.stderr
    assert "distributed_backend=gloo" in out and "All distributed processes registered" in out
    assert out.count("trained in") == 1 and (tmp_path / "ddp" / "policy.pt").exists()
