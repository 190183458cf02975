"""RIS-aided hybrid precoding with attention on the UEs (paper 002 Sec. IV-C, V): train,
evaluate, fig5, bench.

    python -m tasks.ris_precoding train    [--config FILE] [key=value ...]
    python -m tasks.ris_precoding evaluate [--checkpoint FILE | --pretrained] [--n-test N] [--quick]
    python -m tasks.ris_precoding fig5     [--sizes 250,1000,4000] [--n-test N] [key=value ...]
    python -m tasks.ris_precoding bench    [--checkpoint FILE | --pretrained] [--n N] [--no-compile]

Model: :class:`pegnn.PEGNN` on ``graphs/ris_pr.yaml`` (problem P-R) with the plan's
processors — attention (NPE-II, inner-product kind) along the UEs, ordinary NPE/APE
processors along RF chains, BS antennas and RIS elements — plus the inputs of
:class:`pegnn.ris_policy.RISPolicy` (normalised channels, cascaded channel, two SNR
scalars, and the ``rf_tag`` that breaks the tie between RF chains; ``features.W_0=true``
adds an initial analog precoder as a second tie-breaker). Output layer: unit modulus
for ``W_RF`` and ``theta``, ``W_BB`` scaled to ``P_max`` per BS. Unsupervised loss:
−SE (``pegnn.wireless.ris_rate``), paper 002 Sec. V. Single cell, ``N_B = N_RE = 8``,
``N_RF = 6``, ``K = 3`` (Fig. 5). Data and objective: :mod:`tasks.ris_data`; Fig. 5
and Fig. 6: :mod:`tasks.ris_figures`.

Channel regimes (``data.regime``, :data:`tasks.ris_data.REGIMES`):

* ``"ris"`` (default): LoS path loss 35.6 + 22 log10(d) on the RIS links, direct link
  attenuated by 30 dB, RIS 30 m from the BS, UEs in a 5 m disc 10 m from the RIS.
* ``"paper"``: the exact geometry of paper 002 Sec. V, where the RIS does not matter.

SE ratio = mean SE of the GNN / mean SE of BCD (``pegnn.wireless.ris_bcd``, fully
digital, its defaults: tol 1e-3, MRT init) on the same held-out drops — the paper's
definition (the digital BCD bounds hybrid precoding). Data sets: ``ris_channels``
via :func:`pegnn.data.cached` (``data_cache/``, never committed), train seed 0, val
seed 1, test seed 2, size-generalisation seed 3, bench seed 5.

The shipped checkpoint ``pegnn/checkpoints/ris_gnn.pt`` is the DEFAULTS below (stage 1,
the ``ris_gnn.pt`` of commit 67fdce8), then a fine-tune at the same sizes on drops with
a stronger cascaded link (stage 2; the commands are in its ``info["commands"]``):

    python -m tasks.ris_precoding train train.progress=false run.name=ris_gnn_clip
    python -m tasks.ris_precoding train "data.cascade_db=[0,30]" train.init=runs/ris_precoding/ris_gnn_clip/policy.pt \
        train.lr=5e-4 train.max_steps=1500 train.val_every=150 train.progress=false run.name=ris_cft_b

How many UEs it serves, and why N_RE = 100 is missed: ``python -m tasks.ris_streams``.

The dual form (``spec=graphs/ris_pr_dual.yaml``, :class:`pegnn.ris_policy.RISPolicy`'s
``"dual"`` output): the network gives two power shares per UE and the RIS phases, and
the precoder follows in closed form (:func:`pegnn.wireless.dual_precoder`, the sum-SE
optimum's structure), realised in hybrid form. ``train.loss=imitate`` pre-trains it on
per-drop optima of :func:`pegnn.wireless.dual_ascent` (labels cached by
:func:`tasks.ris_data.dual_labels`); then −SE:

    python -m tasks.ris_precoding train spec=graphs/ris_pr_dual.yaml train.loss=imitate run.name=ris_dual_imitate
    python -m tasks.ris_precoding train spec=graphs/ris_pr_dual.yaml train.init=runs/ris_precoding/ris_dual_imitate/policy.pt \
        train.lr=5e-4 run.name=ris_dual

Results, what was tried and why: results/ris_precoding/README.md
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from pegnn.config import TaskArgumentParser, check_writable, out_file, path_arg, positive_int, task_main
from tasks.ris_data import (REGIMES, ROOT, SPEC, channels, check_data, collate, imitation_objective,
                            mixed_K_dataset, mixed_N_RE_dataset, objective, regime_kwargs, sample_dict, task_spec,
                            with_dual_labels)

RESULTS = ROOT / "results" / "ris_precoding"
#: ``train.loss``: ``"se"``, the unsupervised −SE of paper 002; ``"imitate"``, the dual
#: form's supervised pre-training on per-drop optima (``tasks.ris_data.imitation_objective``)
LOSSES = {"se": objective, "imitate": imitation_objective}

DEFAULTS = {
    "spec": str(SPEC),
    "features": {"W_0": False},
    "sizes": {"K": 3, "N_B": 8, "N_RF": 6, "N_RE": 8, "cells": 1},
    "data": {"regime": "ris", "n_train": 4000, "n_val": 500, "seed": 0, "val_seed": 1,
             "mixed_K": None, "mixed_N_RE": None, "power_db": None,
             "cascade_db": None},
    "model": {"hidden": 32, "layers": 4, "pattern": "P1", "attention": "auto", "attention_kind": "inner",
              "pooling": "pma", "heads": 1, "residual": False, "norm": True},
    "train": {"batch_size": 32, "max_steps": 1500, "lr": 2e-3, "lr_decay": 0.1, "lr_decay_at": 0.7,
              "val_every": 150, "seed": 0, "devices": 1, "num_nodes": 1, "strategy": None, "workers": 0,
              "progress": True, "max_time": "00:00:30:00", "log_every": 20, "val_batch_size": 250,
              "grad_clip": 1.0, "init": None, "compile": False, "loss": "se"},
    "run": {"name": "ris_gnn", "out": str(ROOT / "runs" / "ris_precoding")},
}


# ---------------------------------------------------------------- train
def check(cfg: dict):
    """Every check of a training config that needs no data (the shared ones of
    :func:`pegnn.config_check.check_config`, then this task's); returns the spec."""
    from pegnn.config_check import check_config
    check_config(cfg)
    spec = task_spec(cfg["spec"], cfg["features"]["W_0"])
    check_data(cfg["sizes"], cfg["data"])
    loss = cfg["train"].get("loss", "se")
    if loss not in LOSSES:
        raise ValueError(f"train.loss: expected one of {list(LOSSES)}, got {loss!r}")
    if loss == "imitate" and "q" not in spec.outputs:
        raise ValueError("train.loss=imitate: imitates the dual form's labels, so it needs "
                         "spec=graphs/ris_pr_dual.yaml")
    return spec


def train(cfg: dict, quiet: bool = False) -> Path | None:
    """Train one GNN; writes ``<run>/policy.pt`` and returns its path."""
    from pegnn.policy_files import save_policy
    from pegnn.train import DictDataset, model_from_config, train_policy
    spec = check(cfg)
    sz, d, t = cfg["sizes"], cfg["data"], cfg["train"]
    torch.manual_seed(t["seed"])
    model = model_from_config(spec, cfg["model"])      # first, so a bad model key fails before the data is made
    at_size = lambda n, seed: channels(n, seed, sz["K"], sz["N_B"], sz["N_RF"], sz["N_RE"], sz.get("cells", 1),
                                       d["regime"])
    loss = t.get("loss", "se")
    show = t["progress"] and not quiet
    # imitation labels each size set on its own (dual_labels climbs drop by drop)
    labelled = (lambda x: with_dual_labels(x, progress=show)) if loss == "imitate" else (lambda x: x)
    if d.get("mixed_K"):
        train_ds, size_counts = mixed_K_dataset(d["n_train"], d["seed"], sz, d["regime"], int(d["mixed_K"]),
                                                labelled)
    elif d.get("mixed_N_RE") is not None:
        train_ds, size_counts = mixed_N_RE_dataset(d["n_train"], d["seed"], sz, d["regime"], d["mixed_N_RE"],
                                                   labelled)
    else:
        train_ds = DictDataset(labelled(sample_dict(at_size(d["n_train"], d["seed"]), d.get("power_db"),
                                                    d["seed"], d.get("cascade_db"))))
        size_counts = None
    if d.get("mixed_N_RE") is not None:     # validate on the training mixture, not on one of its sizes
        val_ds = mixed_N_RE_dataset(d["n_val"], d["val_seed"], sz, d["regime"], d["mixed_N_RE"], labelled)[0]
    else:
        val_ds = DictDataset(labelled(sample_dict(at_size(d["n_val"], d["val_seed"]))))
    run_dir = Path(cfg["run"]["out"]) / cfg["run"]["name"]
    if quiet:
        import logging
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    info = train_policy(model, LOSSES[loss], train_ds, val_ds, collate(spec), cfg, run_dir)
    if info is None:
        return None
    info.update({"command": " ".join(sys.argv),
                 "regime": d["regime"], "channels": regime_kwargs(d["regime"]), "size_counts": size_counts})
    save_policy(run_dir / "policy.pt", "ris", model, info,
                {"N_RF": sz["N_RF"], "channels": regime_kwargs(d["regime"])})
    if not quiet:
        print(f"trained in {info['train_minutes']:.1f} min; policy: {run_dir / 'policy.pt'}")
    return run_dir / "policy.pt"


# ---------------------------------------------------------------- SE of the GNN and the baselines
def _drops(ch, start: int, stop: int):
    """Drops ``start:stop`` of a :class:`~pegnn.wireless.ris_channels.RISChannels`."""
    from pegnn.wireless.ris_channels import RISChannels
    s = slice(start, stop)
    return RISChannels(ch.h_d[s], ch.G[s], ch.h_r[s], ch.noise_var, ch.P_max, ch.bs_pos, ch.ue_pos[s], ch.N_RF)


def gnn_se(policy, ch, batch: int = 100) -> tuple[torch.Tensor, float]:
    """SE per drop of the policy and its seconds per drop (batched inference)."""
    from pegnn.wireless.ris import ris_rate
    se, sec = [], 0.0
    for i in range(0, ch.h_d.shape[0], batch):
        part = _drops(ch, i, i + batch)
        t0 = time.perf_counter()
        out = policy(part)
        sec += time.perf_counter() - t0
        se.append(ris_rate(part.to(dtype=torch.complex128), [o.to(torch.complex128) for o in out]))
    return torch.cat(se), sec / ch.h_d.shape[0]


def baselines(ch, seed: int = 0) -> dict:
    """SE per drop of BCD, BCD with random fixed phases, and random feasible hybrid precoding."""
    from pegnn.wireless.ris import normalize_hybrid_power, ris_rate, unit_modulus
    from pegnn.wireless.ris_bcd import ris_bcd
    c = ch.to(dtype=torch.complex128)
    t0 = time.perf_counter()
    _, info = ris_bcd(c)
    t_bcd = time.perf_counter() - t0
    _, info_fix = ris_bcd(c, fix_theta=True, seed=seed)
    B, M, U, N_B = c.h_d.shape
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.complex(torch.randn(*s, generator=gen, dtype=torch.float64),
                                   torch.randn(*s, generator=gen, dtype=torch.float64))
    an, th = unit_modulus(rnd(B, M, N_B, c.N_RF)), unit_modulus(rnd(B, c.G.shape[2]))
    bb = normalize_hybrid_power(rnd(B, M, c.N_RF, U // M), an, c.P_max)
    return {"bcd": info["se"], "bcd_iterations": info["iterations"].double().mean().item(),
            "bcd_sec_per_sample": t_bcd / B, "bcd_random_phases": info_fix["se"],
            "random_hybrid": ris_rate(c, (bb, an, th))}


def se_ratio(policy, n: int, seed: int, sizes: dict, regime: str, batch: int = 100) -> dict:
    ch = channels(n, seed, **sizes, regime=regime)
    g, sec = gnn_se(policy, ch, batch)
    b = baselines(ch)
    return {"sizes": sizes, "n": n, "seed": seed, "se_gnn": g.mean().item(), "se_bcd": b["bcd"].mean().item(),
            "se_bcd_random_phases": b["bcd_random_phases"].mean().item(),
            "se_random_hybrid": b["random_hybrid"].mean().item(),
            "se_ratio": g.mean().item() / b["bcd"].mean().item(), "bcd_iterations": b["bcd_iterations"],
            "gnn_sec_per_sample": sec, "bcd_sec_per_sample": b["bcd_sec_per_sample"]}


# ---------------------------------------------------------------- bench
def bench(policy, out: Path, n: int = 500, regime: str = "ris", batches=(20, 50, 100), n_unbatched: int = 20,
          compile: bool = True, vs: dict | None = None) -> dict:
    """Seconds per drop, GNN (batched inference in chunks of each size in ``batches``,
    incl. feature and graph building and the output layer; eager, then compiled with
    :func:`pegnn.policies.compile_policy`) vs BCD (batched over all ``n`` drops,
    complex128, its defaults), same drops, same CPU, same run. BCD run drop by drop on
    the first ``n_unbatched`` drops is reported too (how it is usually deployed); the
    headline speed-up is the fastest GNN configuration over that. ``vs`` (name → policy)
    times other GNNs eager on the same drops, each batch size right after the main
    policy's, and reports their time over the main policy's (side by side, so the ratio
    survives a noisy machine)."""
    from pegnn.policies import compile_policy
    from pegnn.wireless.ris_bcd import ris_bcd
    ch = channels(n, 5, regime=regime)

    def timed(b, pol=policy):
        gnn_se(pol, ch, batch=b)                     # warm-up: structure caches, allocator, (re)compile
        return gnn_se(pol, ch, batch=b)

    eager, others = {}, {name: {} for name in vs or {}}
    for b in batches:
        eager[b] = timed(b)
        for name, other in (vs or {}).items():
            others[name][b] = timed(b, other)
    runs = {"eager": {b: sec for b, (_, sec) in eager.items()}}
    compile_sec = se_diff = None
    if compile:
        t0 = time.perf_counter()
        compile_policy(policy)
        gnn_se(policy, _drops(ch, 0, batches[0]), batch=batches[0])   # the first call compiles
        compile_sec = time.perf_counter() - t0
        comp = {b: timed(b) for b in batches}
        runs["compiled"] = {b: sec for b, (_, sec) in comp.items()}
        se_diff = max((comp[b][0] - eager[b][0]).abs().max().item() for b in batches)
    g = eager[batches[-1]][0]
    b = baselines(ch)
    c = ch.to(dtype=torch.complex128)
    t0 = time.perf_counter()
    for i in range(min(n_unbatched, n)):
        ris_bcd(_drops(c, i, i + 1))
    t_single = (time.perf_counter() - t0) / min(n_unbatched, n)
    mode, bs = min(((m, k) for m in runs for k in runs[m]), key=lambda mk: runs[mk[0]][mk[1]])
    best = runs[mode][bs]
    res = {"sizes": {"K": 3, "N_B": 8, "N_RF": 6, "N_RE": 8, "drops": n}, "regime": regime,
           "threads": torch.get_num_threads(), "gnn": dict(policy.model.config),
           "gnn_params": sum(p.numel() for p in policy.model.parameters()),
           "gnn_sec_per_sample": {m: {str(k): v for k, v in r.items()} for m, r in runs.items()},
           "compile_sec": compile_sec,
           "compiled_se_max_abs_diff": se_diff,
           "bcd_sec_per_sample": b["bcd_sec_per_sample"], "bcd_iterations_mean": b["bcd_iterations"],
           "bcd_unbatched_sec_per_sample": t_single,
           "fastest_gnn": {"mode": mode, "batch": bs, "sec_per_sample": best},
           "speedup_gnn_over_bcd": b["bcd_sec_per_sample"] / best,
           "speedup_gnn_over_unbatched_bcd": t_single / best,
           "speedup_eager_batch100_over_unbatched_bcd": t_single / runs["eager"].get(100, float("nan")),
           "se_gnn": g.mean().item(), "se_bcd": b["bcd"].mean().item(), "target_speedup": 100.0}
    if vs:
        res["vs"] = {name: {"gnn": dict(vs[name].model.config),
                            "gnn_params": sum(p.numel() for p in vs[name].model.parameters()),
                            "eager_sec_per_sample": {str(k): sec for k, (_, sec) in r.items()},
                            "eager_time_over_main": {str(k): sec / runs["eager"][k] for k, (_, sec) in r.items()},
                            "se_gnn": r[batches[-1]][0].mean().item()}
                     for name, r in others.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    return res


# ---------------------------------------------------------------- CLI
def _policy(args):
    from pegnn.policy_files import load_policy, pretrained
    if getattr(args, "checkpoint", None):
        return load_policy(args.checkpoint, kind="ris")
    return pretrained("ris_gnn")


def _int_list(s: str) -> list[int]:
    try:
        vals = [int(v) for v in s.split(",")]
    except ValueError:
        raise ValueError(f"--sizes: expected comma-separated positive ints, got {s!r}") from None
    if not vals or min(vals) <= 0:
        raise ValueError(f"--sizes: expected comma-separated positive ints, got {s!r}")
    return vals


@task_main
def main(argv=None) -> int:
    from pegnn.config import ConfigError, load_config
    from pegnn.policy_files import load_named_policies, load_policy
    from tasks.ris_figures import FIG6, evaluate, fig5     # here: ris_figures imports this module
    ap = TaskArgumentParser(prog="python -m tasks.ris_precoding", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("train", "fig5"):
        p = sub.add_parser(name)
        p.add_argument("--config", type=path_arg, help="YAML config (defaults: DEFAULTS in this file)")
        p.add_argument("overrides", nargs="*", help="key=value, e.g. train.max_steps=500 model.hidden=16")
        if name == "fig5":
            p.add_argument("--sizes", default="250,1000,4000", help="training-set sizes")
            p.add_argument("--n-test", type=positive_int, default=500)
            p.add_argument("--out", type=path_arg, default=None,
                           help="results folder (default results/ris_precoding/fig5_<regime>)")
    for name in ("evaluate", "bench"):
        q = sub.add_parser(name)
        q.add_argument("--checkpoint", type=path_arg, help="a policy.pt from a run (default: the shipped one)")
        q.add_argument("--pretrained", action="store_true", help="use the shipped policy (default)")
        q.add_argument("--out", type=out_file if name == "bench" else path_arg,   # bench writes one JSON
                       default=str(ROOT / "results" / "bench" / "ris_precoding.json") if name == "bench" else None)
        q.add_argument("--regime", default=None, choices=sorted(REGIMES),
                       help="channel regime (default: the policy's training regime)")
        if name == "evaluate":
            q.add_argument("--n-test", type=positive_int, default=500)
            q.add_argument("--quick", action="store_true", help="fewer sweep points and drops")
            q.add_argument("--sweep-checkpoint", action="append", default=[], metavar="SWEEP=FILE",
                           help=f"policy for one Fig. 6 sweep ({', '.join(FIG6)}), e.g. "
                                "N_RE=runs/ris_precoding/ris_gnn_nre10/policy.pt; repeatable")
            q.add_argument("--checkpoint-K", default=None, help="same as --sweep-checkpoint K=FILE")
        else:
            q.add_argument("--n", type=positive_int, default=500)
            q.add_argument("--no-compile", action="store_true", help="time the eager GNN only")
            q.add_argument("--vs", action="append", default=[], metavar="NAME=FILE",
                           help="also time this policy eager on the same drops, side by side (a bare "
                                "NAME: the shipped policy, e.g. ris_gnn_dual); repeatable")
    args = ap.parse_task(argv, untimed=("train", "fig5"))
    try:
        if args.cmd in ("train", "fig5"):
            cfg = load_config(args.config or {}, args.overrides, defaults=DEFAULTS)
            if args.cmd == "train":
                train(cfg)
            else:
                fig5(cfg, _int_list(args.sizes), args.n_test, Path(args.out) if args.out else None)
        else:
            n = args.n_test if args.cmd == "evaluate" else args.n
            if n <= 0:
                raise ValueError(f"{'--n-test' if args.cmd == 'evaluate' else '--n'}: must be positive, got {n}")
            pol = _policy(args)
            regime = args.regime or getattr(pol, "info", {}).get("regime", "ris")
            if args.cmd == "evaluate":
                pairs = args.sweep_checkpoint + ([f"K={args.checkpoint_K}"] if args.checkpoint_K else [])
                sweep_pols = {}
                for pair in pairs:
                    name, sep, path = pair.partition("=")
                    if not sep or name not in FIG6 or not Path(path).is_file():
                        raise ValueError(f"--sweep-checkpoint {pair!r}: expected SWEEP=FILE with SWEEP one of "
                                         f"{list(FIG6)} and FILE an existing policy.pt")
                    sweep_pols[name] = load_policy(path, kind="ris")
                out = check_writable(args.out or RESULTS / (
                    regime if not args.checkpoint else Path(args.checkpoint).parent.name), "--out")
                evaluate(pol, args.n_test, out, regime, args.quick, sweep_policies=sweep_pols)
                print(f"wrote {out / 'eval.json'}, {out / 'fig6_generalisation.png'}")
            else:
                r = bench(pol, Path(args.out), args.n, regime, compile=not args.no_compile,
                          vs=load_named_policies(args.vs, kind="ris", option="--vs", shipped=True))
                print(json.dumps(r, indent=2))
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
