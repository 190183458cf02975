"""Training infrastructure shared by every task (Lightning for the loop).

A task supplies three things:

* a **model** (usually :class:`pegnn.PEGNN`) mapping a graph batch to ``{output: tensor}``;
* an **objective** ``objective(samples, outputs) -> (loss, metrics)`` — ``samples`` is
  the dict of stacked raw tensors of a batch (e.g. ``H``, ``noise``), ``loss`` the
  scalar to minimise (e.g. −Σ_k R_k, eq. 37), ``metrics`` a dict of scalars to log;
* **datasets** of samples: :class:`DictDataset` over tensors with a leading sample dim.

:class:`GraphCollate` turns a list of samples into graph batches, one per group of
equal sizes (so mixed-K training still runs each group on the dense path), with
:func:`pegnn.graph.build_batch`. :class:`PolicyModule` is the LightningModule;
:func:`fit` runs a ``lightning.Trainer`` with checkpoints, CSV (and TensorBoard when
installed) logs, progress bars, the paper's step LR schedule (5e-4, ×0.1 at half the
steps: paper 000 Sec. V-A) and DDP (``devices``, ``num_nodes``). Every run writes its
resolved config, the git revision and the seed to ``<run>/config.yaml`` and into
the checkpoint (``ckpt["pegnn"]``). The checks a task config gets before any of this:
:func:`pegnn.config_check.check_config`.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
import warnings
from pathlib import Path
from typing import Callable, Mapping

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from .config import dump_config
from .config_check import max_time_seconds
from .graph import build_batch
from .spec import ProblemSpec

__all__ = ["DictDataset", "GraphCollate", "PolicyModule", "fit", "git_revision",
           "load_policy_checkpoint", "set_threads", "train_policy"]


def __getattr__(name):
    # the config checks moved to pegnn.config_check; `from pegnn.train import check_config` keeps working
    from . import config_check
    if name in config_check.__all__:
        return getattr(config_check, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def set_threads(n: int) -> None:
    """Set torch's intra-op threads for a task command (default 1 in the task CLIs).

    Why one: the baselines are many tiny batched factorisations (a K·N_R × K·N_R
    Cholesky per sample), which torch splits over OpenMP threads. On a 2-core machine
    shared with one other busy process we measured ``cholesky_solve`` on 200 16×16
    complex systems at 3.2 s with 2 threads and 3.5 ms with 1: fork/join spinning
    under oversubscription, not arithmetic. Single-thread per-sample times are stable
    and comparable between methods measured in the same run.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"--threads: expected a positive int, got {n!r}")
    torch.set_num_threads(n)


class DictDataset(Dataset):
    """Samples from a dict of tensors sharing the leading dim (``{"H": [N, ...], "noise": [N]}``)."""

    def __init__(self, tensors: Mapping[str, Tensor]):
        lens = {k: len(v) for k, v in tensors.items()}
        if len(set(lens.values())) != 1:
            raise ValueError(f"tensors must share their leading (sample) dim, got {lens}")
        self.tensors = dict(tensors)
        self.n = next(iter(lens.values()))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


class GraphCollate:
    """Collate samples into ``[(graph_batch, stacked_samples), ...]``, one per size group.

    Args:
        spec: the problem.
        sizes_of: sample → sizes mapping (e.g. ``{"ue": K, "ant_ue": N_R, "ant_bs": N_T}``).
        graph_inputs: stacked samples → ``{input name: [B, ...] tensor}`` for the graph.
        pairs: attention pairs to cache (see :func:`pegnn.build_graph`).
    """

    def __init__(self, spec: ProblemSpec, sizes_of: Callable[[dict], dict],
                 graph_inputs: Callable[[dict], dict], pairs="auto"):
        self.spec, self.sizes_of, self.graph_inputs, self.pairs = spec, sizes_of, graph_inputs, pairs

    def __call__(self, samples: list[dict]) -> list[tuple]:
        groups: dict[str, list[dict]] = {}
        sizes: dict[str, dict] = {}
        for s in samples:
            sz = self.sizes_of(s)
            key = repr(sorted(sz.items()))
            groups.setdefault(key, []).append(s)
            sizes[key] = sz
        out = []
        for key, items in groups.items():
            stacked = {k: torch.stack([it[k] for it in items]) for k in items[0]}
            g = build_batch(self.spec, sizes[key], self.graph_inputs(stacked), pairs=self.pairs)
            out.append((g, stacked))
        return out


class PolicyModule(L.LightningModule):
    """A learned policy trained by minimising a task objective.

    Args:
        model: graph batch → ``{output: tensor}``.
        objective: ``(samples, outputs) -> (loss, metrics)``.
        lr: Adam learning rate; ``lr_decay`` multiplies it once, at ``lr_decay_at`` × max_steps
            or — when :func:`fit` also has a time budget (``train.max_time``) — at
            ``lr_decay_at`` × that budget, whichever comes first, so a run that the clock
            ends still gets its low-LR phase.
        run_info: stored in every checkpoint under ``"pegnn"`` (config, git revision, seed,
            thread count, library versions).
    """

    def __init__(self, model: nn.Module, objective: Callable, lr: float = 5e-4, lr_decay: float = 0.1,
                 lr_decay_at: float = 0.5, max_steps: int | None = None, run_info: dict | None = None):
        super().__init__()
        self.model, self.objective = model, objective
        self.lr, self.lr_decay, self.lr_decay_at, self.max_steps = lr, lr_decay, lr_decay_at, max_steps
        self.run_info = run_info or {}
        self.max_seconds: float | None = None   # set by fit() from train.max_time
        self.decayed_at: int | None = None      # the step at which the LR was decayed
        self._t0 = None

    def forward(self, graph):
        return self.model(graph)

    def _step(self, batch, stage: str) -> Tensor:
        total, n, agg = 0.0, 0, {}
        for graph, samples in batch:
            b = len(next(iter(samples.values())))
            loss, metrics = self.objective(samples, self.model(graph))
            total = total + loss * b
            n += b
            for k, v in metrics.items():
                agg[k] = agg.get(k, 0.0) + float(v) * b
        loss = total / n
        self.log(f"{stage}/loss", loss, batch_size=n, prog_bar=True, sync_dist=stage != "train")
        for k, v in agg.items():
            self.log(f"{stage}/{k}", v / n, batch_size=n, prog_bar=stage != "train", sync_dist=stage != "train")
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def on_train_start(self) -> None:
        self._t0 = time.monotonic()

    def on_train_batch_start(self, batch, batch_idx) -> None:
        if (self.decayed_at is None and self.max_seconds and self._t0 is not None
                and time.monotonic() - self._t0 >= self.lr_decay_at * self.max_seconds):
            self.decayed_at = self.global_step   # the time budget's decay point came first

    def _lr_factor(self, step: int) -> float:
        if self.decayed_at is None and self.max_steps and step >= max(1, int(self.max_steps * self.lr_decay_at)):
            self.decayed_at = step
        return self.lr_decay if self.decayed_at is not None else 1.0

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.lr)
        if self.lr_decay == 1.0 or not (self.max_steps or self.max_seconds):
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self._lr_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["pegnn"] = self.run_info


def git_revision(root: str | Path | None = None) -> str:
    """The current commit (with ``-dirty`` if the tree has changes), or ``unknown``."""
    root = Path(root or Path(__file__).resolve().parents[1])
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev + ("-dirty" if dirty else "")) if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def model_from_config(spec, model_cfg: Mapping):
    """``PEGNN(spec, **model_cfg)`` for a task's ``model`` section; a mistake in it (an
    unknown pattern, a width not divisible by the heads, an attention set the spec does
    not recur over) is one line naming ``model.<key>``."""
    from .models import PEGNN
    try:
        return PEGNN(spec, **model_cfg)
    except (TypeError, ValueError) as e:
        msg = str(e)
        raise ValueError(f"config: model.{msg[len('PEGNN: '):]}" if msg.startswith("PEGNN: ")
                         else f"config: model: {msg}") from None


class _NoAdverts(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger" line, printed on every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


def _quiet_lightning() -> None:
    """Filter the litlogger advert (see :class:`_NoAdverts`)."""
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoAdverts) for f in log.filters):
        log.addFilter(_NoAdverts())


def fit(module: PolicyModule, train_ds: Dataset, val_ds: Dataset | None, collate: GraphCollate, cfg: Mapping,
        run_dir: str | Path) -> Path | None:
    """Train with Lightning; returns the path of the best (or last) checkpoint on the
    global-zero process and ``None`` on the others (DDP), so callers post-process once.

    ``cfg["train"]`` keys: ``batch_size``, ``max_steps``, ``val_every`` (steps),
    ``seed``, ``devices``, ``num_nodes``, ``strategy``, ``workers``, ``progress``, and
    optionally ``grad_clip`` (max gradient norm; unset or 0 = no clipping), ``init``
    (warm start: a policy file or Lightning checkpoint of the same model, see
    :func:`init_weights`) and ``compile`` (``torch.compile`` the model in place before
    the loop: the shipped RIS GNN's training step at batch 32 went from 170 to 112 ms
    on one thread, after ~42 s of compiling; worth it for runs of a few minutes and
    more; parameter names and checkpoints are unchanged).
    """
    t = cfg["train"]
    run_dir = Path(run_dir)
    seed = int(t.get("seed", 0))
    L.seed_everything(seed, workers=True, verbose=False)
    if t.get("init"):
        init_weights(module.model, t["init"], sample=lambda: collate([train_ds[0]])[0][0])
    if t.get("compile"):
        module.model.compile(dynamic=False)     # one graph per set of sizes (see compile_policy)
    module.max_seconds = max_time_seconds(t.get("max_time"))
    # the seed alone does not fix the run: float sums split over threads round differently
    # (same command, 1 vs 2 threads: weights 0.02 apart after 30 steps), so the thread count
    # and the versions that do the arithmetic are recorded beside it
    module.run_info = {"config": dict(cfg), "git_revision": git_revision(), "seed": seed,
                       "threads": torch.get_num_threads(), "versions": _versions()}
    rank0 = all(os.environ.get(v, "0") == "0" for v in ("LOCAL_RANK", "RANK", "SLURM_PROCID"))
    if (run_dir / "checkpoints").is_dir() and rank0:
        # a run of the same name: its checkpoints and policy go, so no stale best.ckpt sits
        # beside the new best-v1.ckpt (Lightning rewrites logs/ itself)
        print(f"run.name: replacing the checkpoints and policy of the earlier run in {run_dir} "
              "(give another run.name to keep them)")
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        (run_dir / "policy.pt").unlink(missing_ok=True)
    dump_config(module.run_info, run_dir / "config.yaml")
    gen = torch.Generator().manual_seed(seed)
    train_dl = DataLoader(train_ds, batch_size=int(t["batch_size"]), shuffle=True, collate_fn=collate,
                          num_workers=int(t.get("workers", 0)), generator=gen, drop_last=True)
    if len(train_dl) == 0:
        raise ValueError(f"train.batch_size: {t['batch_size']} is more than the {len(train_ds)} training samples "
                         "(batches are full, drop_last: no training batch)")
    val_dl = (DataLoader(val_ds, batch_size=int(t.get("val_batch_size", t["batch_size"])), collate_fn=collate,
                         num_workers=int(t.get("workers", 0))) if val_ds is not None else None)
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    loggers = [CSVLogger(str(run_dir), name="logs", version="")]
    try:  # TensorBoard only when installed (not a dependency)
        from lightning.pytorch.loggers import TensorBoardLogger
        import tensorboard  # noqa: F401
        loggers.append(TensorBoardLogger(str(run_dir), name="tb", version=""))
    except ImportError:
        pass
    ckpt = ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), filename="best",
                           monitor="val/loss" if val_dl is not None else None, mode="min", save_last=True)
    devices = t.get("devices", 1)
    _quiet_lightning()
    trainer = L.Trainer(
        accelerator=t.get("accelerator", "cpu"), devices=devices, num_nodes=int(t.get("num_nodes", 1)),
        strategy=t.get("strategy") or ("auto" if devices in (1, "1") else "ddp"),
        max_steps=int(t["max_steps"]), max_time=t.get("max_time"),
        gradient_clip_val=float(t["grad_clip"]) if t.get("grad_clip") else None,
        val_check_interval=int(t.get("val_every", 200)) if val_dl is not None else None,
        check_val_every_n_epoch=None if val_dl is not None else 1,
        logger=loggers, callbacks=[ckpt, LearningRateMonitor(logging_interval="step")],
        log_every_n_steps=int(t.get("log_every", 20)), enable_progress_bar=bool(t.get("progress", True)),
        enable_model_summary=False, deterministic=False, default_root_dir=str(run_dir),
    )
    with warnings.catch_warnings():   # Lightning's own use of a deprecated torch pytree API: not the user's
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
        # small data sets (Fig. 5's 250 drops: 7 batches an epoch): steps are counted across
        # epochs, so the interval still logs; the warning would only be noise
        warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
        trainer.fit(module, train_dl, val_dl)
    if not trainer.is_global_zero:
        return None
    best = ckpt.best_model_path or ckpt.last_model_path
    return Path(best) if best else run_dir / "checkpoints" / "last.ckpt"


def _versions() -> dict:
    """The versions of the libraries whose arithmetic a run's weights depend on."""
    import torch_geometric
    return {"torch": str(torch.__version__), "torch_geometric": str(torch_geometric.__version__),
            "lightning": str(L.__version__)}


def init_weights(model: torch.nn.Module, path: str | Path, sample: Callable | None = None) -> None:
    """Load the weights of a policy file (:func:`pegnn.policy_files.save_policy`) or a
    Lightning checkpoint into ``model`` — to fine-tune or continue a run with a new
    schedule. The architecture must match exactly; a mismatch is one clear error.

    One exception: weights of the same network *without* attention load into a
    :class:`~pegnn.models.PEGNN` with attention, whose attention then starts as the mean
    aggregation it replaces (:meth:`~pegnn.models.PEGNN.attention_as_mean_`, exact at
    the sizes of the graph ``sample()`` returns), so the run starts from the loaded
    network's function: an attention ablation from a trained network."""
    sd, own = _read_weights(path), model.state_dict()
    missing = [k for k in own if k not in sd]
    grow = (sample is not None and missing and hasattr(model, "attention_as_mean_")
            and all(".attention." in k for k in missing))
    try:
        model.load_state_dict(sd, strict=not grow)
    except RuntimeError as e:
        missing.sort(key=lambda k: ".attention." in k)    # the structural difference first
        diff = ([f"missing {missing[0]!r}"] if missing else []) + \
            [f"unexpected {k!r}" for k in sd if k not in own][:1] + \
            [f"{k!r} is {tuple(sd[k].shape)} there, {tuple(own[k].shape)} here" for k in sd
             if k in own and sd[k].shape != own[k].shape][:1]
        first = "; ".join(diff) or str(e).strip().splitlines()[0]
        raise ValueError(f"train.init: {path} does not fit this model ({first}); "
                         f"use the same spec and model.* settings as the run that wrote it") from None
    if grow:
        unexpected = [k for k in sd if k not in own]
        if unexpected:
            raise ValueError(f"train.init: {path} does not fit this model (unexpected {unexpected[0]!r}); "
                             "use the same spec and model.* settings as the run that wrote it")
        try:
            model.attention_as_mean_(sample())
        except ValueError as e:
            raise ValueError(f"train.init: {path} has no attention weights, and this model's attention "
                             f"cannot start from them: {e}") from None
        print(f"train.init: {path} has no attention; attention on {model.attention_sets} starts as the "
              "mean aggregation it replaces (the loaded network's function at these sizes)")


def _read_weights(path: str | Path) -> dict:
    """The model's state dict in a policy file or a Lightning checkpoint (``train.init``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"train.init: no such file {str(path)!r} (expected a policy .pt or a Lightning .ckpt)")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
        return ck["state_dict"] if "kind" in ck else _model_state(ck)
    except Exception as e:  # a foreign file: pickle/zip/key errors of many kinds
        raise ValueError(f"train.init: {path} is not a policy .pt or a Lightning .ckpt "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''})") from None


def load_policy_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """``(state_dict of the model, run_info)`` from a Lightning checkpoint."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    return _model_state(ck), ck.get("pegnn", {})


def train_policy(model: nn.Module, objective: Callable, train_ds: Dataset, val_ds: Dataset | None,
                 collate: GraphCollate, cfg: Mapping, run_dir: str | Path) -> dict | None:
    """The training step every task shares: a :class:`PolicyModule` on ``objective`` with
    the optimiser settings of ``cfg["train"]`` (``lr``, ``lr_decay``, ``lr_decay_at``,
    ``max_steps``), :func:`fit`, then the best checkpoint's weights loaded into ``model``.

    Returns the checkpoint's run info plus ``train_minutes`` and ``checkpoint`` (for the
    task to extend and save with :func:`pegnn.policy_files.save_policy`), or ``None`` on a
    DDP process other than rank 0 (which writes the policy).
    """
    t = cfg["train"]
    module = PolicyModule(model, objective, lr=t["lr"], lr_decay=t["lr_decay"], lr_decay_at=t["lr_decay_at"],
                          max_steps=t["max_steps"])
    t0 = time.time()
    ckpt = fit(module, train_ds, val_ds, collate, cfg, run_dir)
    if ckpt is None:
        return None
    sd, info = load_policy_checkpoint(ckpt)
    model.load_state_dict(sd)
    return {**info, "train_minutes": (time.time() - t0) / 60, "checkpoint": str(ckpt)}


def _model_state(ck: dict) -> dict:
    """The model's state dict inside a Lightning checkpoint (``model.`` prefix dropped)."""
    return {k[len("model."):]: v for k, v in ck["state_dict"].items() if k.startswith("model.")}
