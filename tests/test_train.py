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
from pegnn.policy_files import load_policy
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
    f.write_text("train: {lr: 1e-3}\n")  # YAML 1.2 floats (PyYAML alone reads '1e-3' as a string)
    cfg = load_config(f, ["train.max_steps=2e3", "data.snrs=[1e1, 20]"], defaults=DEFAULTS)
    assert cfg["train"]["lr"] == 1e-3 and cfg["train"]["max_steps"] == 2000.0 and cfg["data"]["snrs"] == [10.0, 20]
    assert load_config({}, ["run.name=1e-3x"], defaults=DEFAULTS)["run"]["name"] == "1e-3x"



def test_config_values_must_have_their_defaults_kind_and_range(tmp_path, capsys):
    from pegnn.config_check import check_config
    from tasks.precoding import DEFAULTS, main
    for ov, msg in [("train.lr=abc", "train.lr: expected a number (default 0.0005), got 'abc'"),
                    ("train.batch_size=2.5", "train.batch_size: expected an integer"),
                    ("model.norm=3", "model.norm: expected true or false"),
                    ("data.snrs=5", "data.snrs: expected a list"),
                    ("model=3", "model: expected a section"),
                    ("sizes.N_T=null", "sizes.N_T: expected a value like its default 32, got null"),
                    ("train.seed=", "train.seed: expected a value like its default 0, got null"),
                    ("run.out=", "run.out: expected a value like its default"),
                    ("model.norm=", "model.norm: expected a value like its default True"),
                    ("spec=", "spec: expected a value like its default")]:
        with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            load_config({}, [ov], defaults=DEFAULTS)
    cfg = load_config({}, ["train.lr=1", "run.name=7", "train.max_time=null", "train.grad_clip="], defaults=DEFAULTS)
    assert cfg["train"]["lr"] == 1.0 and isinstance(cfg["train"]["lr"], float) and cfg["run"]["name"] == "7"
    check_config(cfg)
    for ov, msg in [("sizes.K=-1", "sizes.K: must be a positive int, got -1"),
                    ("model.hidden=0", "model.hidden: must be a positive int"),
                    ("train.lr=0", "train.lr: must be a positive number"),
                    ("train.lr_decay_at=1.5", "train.lr_decay_at: must be a fraction"),
                    ("train.grad_clip=-1", "train.grad_clip: must be null or a non-negative number"),
                    ("train.workers=-2", "train.workers: must be a non-negative int"),
                    ("train.seed=-1", r"train.seed: must be an int in \[0, 2\*\*32 - 1\], got -1"),
                    ("data.val_seed=4294967296", "data.val_seed: must be an int in"),
                    ("train.max_time=00:00:00:00", "train.max_time: must be null or a positive DD:HH:MM:SS"),
                    ("data.snrs=[0,1000]", r"data.snrs: must be a non-empty list of SNRs in dB within \[-100, 100\]"),
                    ("data.channel=ris", r"data.channel: must be one of \['rayleigh', 'uma'\], got 'ris'"),
                    ("data.channel=correlated_rayleigh", "data.channel: must be one of")]:
        with pytest.raises(ValueError, match=msg):
            check_config(load_config({}, [ov], defaults=DEFAULTS))
    # the CLI says so in one line, exit 2, before generating any data
    assert main(["train", "train.lr=abc", f"run.out={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config: train.lr:") and err.count("\n") == 1 and "generating" not in err


def test_load_policy_refuses_missing_foreign_and_wrong_kind_files(tmp_path):
    from pegnn.models import PEGNN
    from pegnn.policy_files import CHECKPOINTS
    with pytest.raises(ValueError, match="no such policy file"):
        load_policy(tmp_path / "missing.pt")
    (tmp_path / "x.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a policy file"):
        load_policy(tmp_path / "x.pt")
    torch.save({"state_dict": {}}, tmp_path / "y.pt")
    with pytest.raises(ValueError, match=r"not a policy file written by save_policy \(missing \['kind'"):
        load_policy(tmp_path / "y.pt")
    with pytest.raises(ValueError, match="a 'teus' policy, expected a 'tecfp' one"):
        load_policy(CHECKPOINTS / "teus.pt", kind="tecfp")
    assert load_policy(CHECKPOINTS / "tecfp.pt", kind="tecfp").kind == "tecfp"
    from pegnn import load_spec
    spec = load_spec(ROOT / "graphs" / "tenn_precoding.yaml")
    for kw in ({"hidden": 0}, {"layers": -1}, {"heads": 1.5}, {"hidden": True}):
        with pytest.raises(ValueError, match="must be a positive int"):
            PEGNN(spec, **kw)

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
    assert info["threads"] >= 1 and info["versions"]["torch"] == torch.__version__
    sd, ck_info = load_policy_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ck_info["seed"] == 3 and "embed.weight" in sd
    assert (run / "logs" / "metrics.csv").read_text().count("val/sum_rate") == 1
    policy = load_policy(run / "policy.pt")
    H = torch.complex(torch.randn(4, 8, 2, 32), torch.randn(4, 8, 2, 32))
    V = policy(H, 0.1)
    assert V.shape == H.shape
    assert torch.allclose((V.abs() ** 2).sum((1, 2, 3)), torch.ones(4), atol=1e-4)  # total power P_T = 1
    # the same seed and thread count give the same weights, bit for bit (a second run name)
    r = _train(tmp_path, "run.name=tiny_again", "train.seed=3")
    assert r.returncode == 0, r.stderr[-2000:]
    again = load_policy(tmp_path / "tiny_again" / "policy.pt").model.state_dict()
    assert all(torch.equal(again[k], v) for k, v in policy.model.state_dict().items())
    # the same run.name again: replaced whole and said so (no stale best.ckpt beside a best-v1.ckpt)
    r = _train(tmp_path, "run.name=tiny", "train.seed=4")
    assert r.returncode == 0 and "replacing the checkpoints and policy of the earlier run" in r.stdout, r.stderr[-2000:]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 4
    other = load_policy(run / "policy.pt").model.state_dict()     # and another seed does not
    assert not all(torch.equal(other[k], v) for k, v in again.items())


def test_init_weights_warm_start_and_mismatch(tmp_path):
    """``train.init``: a policy file or a Lightning checkpoint loads into the same
    architecture exactly; any other architecture is one clear error."""
    from pegnn import load_spec
    from pegnn.models import PEGNN
    from pegnn.policy_files import save_policy
    from pegnn.train import init_weights
    spec = load_spec(ROOT / "graphs" / "tenn_precoding.yaml")
    torch.manual_seed(0)
    src, dst = PEGNN(spec, hidden=4, layers=2), PEGNN(spec, hidden=4, layers=2)
    assert any((a != b).any() for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    save_policy(tmp_path / "p.pt", "tecfp", src)
    init_weights(dst, tmp_path / "p.pt")
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    torch.save({"state_dict": {f"model.{k}": v + 1 for k, v in src.state_dict().items()}}, tmp_path / "x.ckpt")
    init_weights(dst, tmp_path / "x.ckpt")
    assert all(torch.equal(a + 1, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    with pytest.raises(ValueError, match="does not fit this model"):
        init_weights(PEGNN(spec, hidden=8, layers=2), tmp_path / "p.pt")
    with pytest.raises(ValueError, match="no such file"):
        init_weights(dst, tmp_path / "missing.pt")


def test_ddp_two_cpu_processes(tmp_path):
    """Lightning DDP with 2 processes on CPU (gloo): both ranks train, rank 0 writes the policy."""
    r = _train(tmp_path, "run.name=ddp", "train.strategy=ddp", devices=2)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout + r.stderr
    assert "distributed_backend=gloo" in out and "All distributed processes registered" in out
    assert out.count("trained in") == 1 and (tmp_path / "ddp" / "policy.pt").exists()


def test_lr_decays_once_by_steps_or_by_the_time_budget():
    """``lr_decay`` applies once: at ``lr_decay_at`` × max_steps, or earlier when the
    ``max_time`` budget's decay point is reached first (a clock-ended run still decays)."""
    from pegnn.train import PolicyModule
    from pegnn.config_check import max_time_seconds
    assert max_time_seconds("00:01:30:00") == 5400 and max_time_seconds(None) is None
    assert max_time_seconds({"minutes": 2}) == 120
    with pytest.raises(ValueError, match="DD:HH:MM:SS"):
        max_time_seconds("90 minutes")
    m = PolicyModule(torch.nn.Linear(2, 2), None, lr=1.0, lr_decay=0.1, lr_decay_at=0.5, max_steps=10)
    assert [m._lr_factor(s) for s in (0, 4, 5, 9, 2)] == [1.0, 1.0, 0.1, 0.1, 0.1] and m.decayed_at == 5
    m = PolicyModule(torch.nn.Linear(2, 2), None, lr_decay=0.1, lr_decay_at=0.5, max_steps=1000)
    m.max_seconds, m._t0 = 10.0, 0.0      # pretend training started long ago: half the budget is gone
    m.on_train_batch_start(None, 0)
    assert m.decayed_at == 0 and m._lr_factor(1) == 0.1


def test_keep_freed_memory_applies_on_glibc_and_is_idempotent():
    import platform

    from pegnn.cpu import keep_freed_memory
    applied = keep_freed_memory()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert applied is True
    assert keep_freed_memory() is applied
    x = torch.randn(1 << 20)                 # 4 MiB blocks still allocate and free normally
    assert torch.equal(torch.relu(x).clone(), x.clamp_min(0))


@pytest.mark.parametrize("module, argv, fragment", [
    ("tasks.bench_engine", ["--batch", "-1"], "argument --batch: expected a positive int, got '-1'"),
    ("tasks.complexity", ["--scales", "2", "x"], "argument --scales: expected a positive int, got 'x'"),
    ("tasks.scheduling", ["labels", "--shard", "-1"], "argument --shard: expected a non-negative int"),
    ("tasks.precoding", ["evaluate", "--nope"], "unrecognized arguments: --nope"),
    ("tasks.precoding", ["evaluate", "--checkpoint", ""], "argument --checkpoint: expected a path"),
    ("tasks.bench_engine", ["--reps", "1"], "--reps: expected at least 2"),
    ("tasks.bench_wireless", ["--sections", ","], "--sections: expected a comma list"),
    ("tasks.bench_wireless", ["--out", "/proc/x/w.json"], "--out: cannot write to"),
    ("tasks.precoding", ["bench", "--out", "/proc/x/b.json"], "--out: cannot write to '/proc/x'"),
])
def test_task_flag_mistakes_are_one_line_exit_2(module, argv, fragment, capsys):
    import importlib
    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ") and fragment in err, err


def test_check_config_refuses_what_would_fail_after_the_data_is_made(tmp_path):
    """The keys that used to be checked only inside fit (after minutes of data generation)
    or not at all: each is one line naming the key, raised by check_config."""
    from pegnn.config_check import check_config
    from tasks.precoding import DEFAULTS
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint\n" * 20)
    for ov, msg in [("train.batch_size=1000 data.n_train=64", "train.batch_size: must be at most data.n_train = 64"),
                    ("train.max_time=abc", "train.max_time: must be null or a positive DD:HH:MM:SS"),
                    # YAML 1.1 would read 1:30 as the base-60 int 90; the error must quote what was typed
                    ("train.max_time=1:30", "train.max_time: must be null or a positive DD:HH:MM:SS, e.g. 00:01:30:00, got '1:30'"),
                    (f"train.init={tmp_path / 'nope.pt'}", "train.init: no such file"),
                    (f"train.init={notes}", "is not a policy .pt or a Lightning .ckpt"),
                    ("train.strategy=foo", "train.strategy: must be null or one of Lightning's strategies"),
                    ("data.snrs=[]", "data.snrs: must be a non-empty list"),
                    ("data.snrs=[abc]", "data.snrs: must be a non-empty list"),
                    ("data.noise_feature=foo", "data.noise_feature: must be one of"),
                    ("data.channel=foo", "data.channel: must be one of"),
                    ("run.name=/etc", "run.name: must be a plain folder name"),
                    ("run.name=..", "run.name: must be a plain folder name"),
                    ("run.out=/proc/x", "run.out: cannot write to '/proc/x'")]:
        cfg = load_config({}, [f"run.out={tmp_path}", *ov.split()], defaults=DEFAULTS)
        with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(".", r"\.")):
            check_config(cfg)
    check_config(load_config({}, [f"run.out={tmp_path / 'new' / 'deeper'}", "train.strategy=ddp",
                                  "train.max_time=00:00:10:00"], defaults=DEFAULTS))
    assert not (tmp_path / "new").exists()      # the writability check leaves nothing behind


def test_check_writable_path_arg_and_config_file_mistakes(tmp_path):
    import argparse
    from pegnn.config import check_writable, path_arg
    assert check_writable(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("x")
    for bad in ("/proc/x", tmp_path / "f" / "sub"):
        with pytest.raises(ValueError, match="--out: cannot write to"):
            check_writable(bad, "--out")
    with pytest.raises(argparse.ArgumentTypeError, match="empty string"):
        path_arg("  ")
    binary = tmp_path / "c.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="c.yaml: <file>: not a text"):
        load_config(binary, defaults={"a": 1})
    for ov in ("=5", "model.=5", " =5"):
        with pytest.raises(ConfigError, match="empty key name"):
            load_config({}, [ov], defaults={"model": {"hidden": 1}})


def test_model_config_mistakes_name_the_key():
    from pegnn import load_spec
    from pegnn.train import model_from_config
    spec = load_spec(ROOT / "graphs" / "tenn_precoding.yaml")
    with pytest.raises(ValueError, match=r"^config: model\.pattern must be one of"):
        model_from_config(spec, {"hidden": 4, "layers": 1, "pattern": "foo"})
    with pytest.raises(ValueError, match=r"^config: model: attention set 'foo'"):
        model_from_config(spec, {"hidden": 4, "layers": 1, "attention": "foo"})


def test_fit_refuses_a_batch_larger_than_the_training_set(tmp_path):
    from pegnn import load_spec
    from pegnn.train import DictDataset, PolicyModule, fit, model_from_config
    from tasks.precoding import DEFAULTS, collate, objective
    spec = load_spec(DEFAULTS["spec"])
    H = torch.randn(8, 2, 2, 4, dtype=torch.complex64)
    ds = DictDataset({"H": H, "noise_var": torch.full((8,), 0.1)})
    module = PolicyModule(model_from_config(spec, {"hidden": 4, "layers": 1}), objective, lr=1e-3, max_steps=1)
    cfg = {"train": {"batch_size": 16, "max_steps": 1, "progress": False}}
    with pytest.raises(ValueError, match="train.batch_size: 16 is more than the 8 training samples"):
        fit(module, ds, None, collate(spec), cfg, tmp_path / "run")


def test_a_missing_task_command_is_named_by_its_choices(capsys):
    from tasks.precoding import main
    with pytest.raises(SystemExit) as e:
        main([])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "required: {train,evaluate,bench,ceiling,demo}" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("module, argv, fragment", [
    ("tasks.precoding", ["evaluate", "--n-test", "2", "--quick", "--out", "/proc/x"], "--out: cannot write to '/proc/x'"),
    ("tasks.scheduling", ["evaluate", "--n-test", "1", "--out", "/proc/x"], "--out: cannot write to '/proc/x'"),
    ("tasks.ris_precoding", ["evaluate", "--n-test", "2", "--out", "/proc/x"], "--out: cannot write to '/proc/x'"),
    ("tasks.scheduling", ["labels", "labels.precoder=tecfp", "labels.tecfp=5"], "labels.tecfp: 5: no such policy"),
    ("tasks.ris_precoding", ["fig5", "--n-test", "2", "--sizes", "8", "model.pattern=foo"], "model.pattern must be"),
])
def test_task_output_and_config_mistakes_fail_before_any_work(module, argv, fragment, capsys, tmp_path,
                                                              monkeypatch):
    import importlib
    monkeypatch.setenv("PEGNN_CACHE", str(tmp_path / "cache"))      # nothing may be generated
    assert importlib.import_module(module).main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and fragment in err, err
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("module, argv", [
    ("tasks.precoding", ["evaluate"]), ("tasks.scheduling", ["evaluate"]), ("tasks.ris_precoding", ["bench"]),
    ("tasks.power_control", ["train"]), ("tasks.ofdma", ["train"]), ("tasks.miso_precoding", ["evaluate"]),
    ("tasks.full_load", []), ("tasks.ris_streams", []), ("tasks.complexity", []),
    ("tasks.bench", ["engine"]), ("tasks.bench", ["wireless"]),
])
def test_every_task_command_takes_threads(module, argv, capsys):
    """The README promises ``--threads N`` on every task command (``parse_task``)."""
    import importlib
    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main([*argv, "--threads", "0"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--threads" in err and "unrecognized" not in err, err


def test_bench_names_an_unknown_benchmark(capsys):
    from tasks.bench import main
    assert main(["foo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown benchmark 'foo'; expected one of {engine,wireless}" in err


def test_config_values_read_as_yaml_1_2_numbers():
    """``key=value`` and config files: no base-60 ints (``1:30`` was 90), no octal
    surprises (``08`` was an int() crash after the change to 1.2 ints, ``010`` was 8),
    and floats without a dot (``1e-3``)."""
    from pegnn.config import _yaml
    cases = {"1:30": "1:30", "00:00:10:00": "00:00:10:00", "08": "08", "010": "010", "0": 0, "-3": -3,
             "1_000": 1000, "0x1f": 31, "1e-3": 1e-3, "5e-4": 5e-4, ".5": 0.5, "null": None, "true": True,
             "[0, 10, 20]": [0, 10, 20]}
    assert {k: _yaml(k) for k in cases} == cases


def test_task_main_turns_allocation_failures_into_one_line(capsys):
    """`task_main`: torch's CPU allocation failure is exit 2 and one line naming the size;
    any other RuntimeError still propagates (a bug must not pass as a user error)."""
    from pegnn.config import task_main

    @task_main
    def alloc(argv=None):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 1073741824000 bytes. Error code 12")

    @task_main
    def bug(argv=None):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    assert alloc() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out of memory (one tensor alone needs 1,000 GiB)" in err[0], err
    with pytest.raises(RuntimeError, match="shapes"):
        bug()


@pytest.mark.parametrize("module,overrides", [
    ("tasks.power_control", ["sizes.K=1000000"]),
    ("tasks.precoding", ["sizes.N_T=100000000", "data.channel=rayleigh"])])
def test_task_sizes_too_large_for_memory_are_one_line(capsys, tmp_path, module, overrides):
    """The error is one line after the data-generation progress bar (its lines start with
    "generating"), not torch's traceback."""
    import importlib
    rc = importlib.import_module(module).main(["train", *overrides, "train.max_steps=1", f"run.out={tmp_path}"])
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("generating")]
    assert rc == 2 and len(err) == 1 and "out of memory" in err[0] and f"python -m {module}" in err[0], err


LIBRARY_MODULES = ["attention_study", "cfp_ceiling", "labels", "power_control_eval", "precoding_eval", "ris_data",
                   "ris_figures", "scheduling_eval"]


def test_every_task_module_is_a_command_or_says_which():
    """`python -m tasks.<m>` either has a `main` or, for a library module, exits 2 with
    one line naming the command that runs it (it used to exit 0 having done nothing)."""
    names = sorted(p.stem for p in (ROOT / "tasks").glob("*.py") if p.stem != "__init__")
    import importlib
    assert sorted(LIBRARY_MODULES) == [m for m in names if not hasattr(importlib.import_module(f"tasks.{m}"), "main")]
    r = subprocess.run([sys.executable, "-m", "tasks.labels"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and r.stderr.strip() == ("error: python -m tasks.labels: a library module, not a "
                                                      "command; expected python -m tasks.scheduling labels"), r.stderr
    for m in LIBRARY_MODULES:   # each names a command that exists
        src = (ROOT / "tasks" / f"{m}.py").read_text()
        assert f'not_a_command("tasks.{m}", "python -m tasks.' in src, m
