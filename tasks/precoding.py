"""TECFP precoding (paper 000 Sec. IV-B, V-B): train, evaluate, bench, demo, ceiling.

    python -m tasks.precoding train    [--config FILE] [key=value ...]
    python -m tasks.precoding evaluate [--checkpoint FILE | --pretrained] [--n-test N] [--quick]
    python -m tasks.precoding bench    [--checkpoint FILE | --pretrained]
    python -m tasks.precoding demo     [--pretrained] [--minutes 3]
    python -m tasks.precoding ceiling  [--checkpoint FILE] [--n-test 50] [--steps 1500]

TECFP = TEPN (built by :class:`pegnn.PEGNN` from ``graphs/tenn_precoding.yaml``)
predicting the auxiliary tensors (A, U) of the closed form CFP (6); unsupervised
loss −Σ_k R_k (eq. 37); training SNRs drawn from {0, 5, ..., 40} dB (paper 001);
3GPP 38.901 UMa NLOS channels from Sionna at (N_T, K, N_R) = (32, 8, 2).
TECFP+T (``policy.refine=T``; ``evaluate``/``bench`` also report ``--refine`` variants):
the CFP followed by T WMMSE steps written in the same closed form
(:func:`pegnn.wireless.cfp_refine`), differentiable, so the TEPN can be trained through them.
``ceiling`` (:mod:`tasks.cfp_ceiling`) optimises (A, U) per drop with no network.
``spec=graphs/tenn_precoding_mmse.yaml`` gives the TEPN the MMSE precoder as a second
input (:func:`pegnn.policies.mmse_input`): the interference reflected in an input, so
ordinary processors suffice (paper 002's rule); shipped as ``tecfp_mmse.pt``.
``spec=graphs/tenn_precoding_mmse_r.yaml`` adds the MMSE precoder's stream rates
(:func:`pegnn.policies.stream_rate_input`), which tell the TEPN which streams to turn off
at full load; shipped as ``tecfp_mmse_r.pt``.

Baselines: ZF, MMSE, WMMSE-RandInit and WMMSE-MMSEInit (every ratio is over it), and
MMSE+T, the TECFP+T steps from MMSE's start. Drops (:func:`channels`, cached): training
seed 0 (+1000 per extra K of ``data.mixed_K``), validation 1, test 2 (``evaluate``,
``bench``, ``demo``, ``ceiling``), size generalisation 3.

What differs from the paper, and why: the paper trains 2·10^5 steps of batch 2000 on
a GPU; the default here is a CPU budget (``train.max_steps``, ``train.batch_size``
in the config) with the same LR schedule shape (×0.1 at half). Results and the
exact command that produced them go to ``results/precoding/<run>/``.

Shipped checkpoints: ``tecfp.pt`` (D_H = 16, three warm-started stages; the commands are
in its ``info["commands"]`` and in the results README) and ``tecfp_r2.pt``, which is
``train run.name=tecfp_r2 model.hidden=16 train.init=pegnn/checkpoints/tecfp.pt
policy.refine=2 train.lr=3e-4 train.grad_clip=1.0 train.max_steps=3000
train.lr_decay_at=0.6 train.val_every=250``.

Why N_T = 16 (full load, N_T = K N_R) is the hard size: ``python -m tasks.full_load``.
``evaluate``, ``bench`` and the tables are in :mod:`tasks.precoding_eval`.

Results, what was tried and why: results/precoding/README.md
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import torch

from pegnn.config import TaskArgumentParser, check_writable, out_file, path_arg, positive_int, task_main
from pegnn.wireless.rates import _non_negative_int

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "graphs" / "tenn_precoding.yaml"
SNRS = list(range(0, 41, 5))
GEN_SEED = 3           # the drops of the size-generalisation sweep (evaluate, tasks.full_load)

DEFAULTS = {
    "spec": str(SPEC),
    "sizes": {"K": 8, "N_R": 2, "N_T": 32},
    "data": {"channel": "uma", "n_train": 20000, "n_val": 1000, "seed": 0, "val_seed": 1, "snrs": SNRS,
             "mixed_K": None, "noise_feature": "sigma2"},
    "model": {"hidden": 8, "layers": 3, "pattern": "all", "attention": "none", "attention_kind": "inner",
              "pooling": "pma", "heads": 1, "residual": False, "norm": True},
    "train": {"batch_size": 256, "max_steps": 3000, "lr": 5e-4, "lr_decay": 0.1, "lr_decay_at": 0.5,
              "val_every": 250, "seed": 0, "devices": 1, "num_nodes": 1, "strategy": None, "workers": 0,
              "progress": True, "max_time": None, "log_every": 20, "val_batch_size": 1000,
              "grad_clip": None, "init": None, "compile": False},
    # refine = T: train (and ship) TECFP+T, the CFP followed by T WMMSE steps in CFP form
    "policy": {"refine": 0},
    "run": {"name": "tecfp", "out": str(ROOT / "runs" / "precoding")},
}


# ---------------------------------------------------------------- data
def channels(model: str, n: int, seed: int, K: int, N_R: int, N_T: int, snrs=SNRS, progress=True):
    """Cached channels with per-sample SNR: ``{"H", "noise_var", "snr_db"}``."""
    from pegnn.data import cached
    ds = cached("tenn_precoding", model, n, seed, sizes={"K": K, "N_R": N_R, "N_T": N_T}, snrs=snrs,
                progress=progress)
    return {k: ds.tensors[k] for k in ("H", "noise_var", "snr_db")}


def objective(samples, out, refine: int = 0):
    """−mean sum rate (bits/s/Hz) of CFP(H, A, U, σ²) — eq. (37) — after ``refine``
    WMMSE steps in CFP form (:func:`pegnn.wireless.cfp_refine`; 0 = the paper's TECFP)."""
    from pegnn.wireless.precoders import cfp
    from pegnn.wireless.rates import sum_rate
    from pegnn.wireless.wmmse import cfp_refine
    H, s2 = samples["H"], samples["noise_var"]
    V = cfp_refine(H, cfp(H, out["A"], out["U"], s2), s2, refine)
    R = sum_rate(H, V, s2)
    return -R.mean(), {"sum_rate": R.mean().detach()}


def collate(spec, noise_feature: str = "sigma2", attention=()):
    """Graph batches for TEPN; attention pairs are built only for the sets given
    (the dense path needs none, ragged batches under user attention do)."""
    from pegnn.policies import tenn_inputs
    from pegnn.train import GraphCollate
    if attention in (None, "none", False):
        pairs = ()
    elif attention in ("auto", "all"):      # the plan's attention sets / every state axis
        pairs = attention
    else:
        pairs = (attention,) if isinstance(attention, str) else tuple(attention)
    return GraphCollate(spec, sizes_of=lambda s: {"ue": s["H"].shape[0], "ant_ue": s["H"].shape[1],
                                                  "ant_bs": s["H"].shape[2]},
                        graph_inputs=lambda b: tenn_inputs(spec, b["H"], b["noise_var"], noise_feature),
                        pairs=pairs)


def training_set(d: dict, sz: dict):
    """The training channels: one data set at K, or — with ``data.mixed_K = [K1, K2, ...]``
    (paper 000 Sec. V-B, the mixed-K ablation) — ``n_train / len(mixed_K)`` drops of each
    K; batches are split by size (:class:`pegnn.train.GraphCollate`) so each part still
    runs on the dense path."""
    from torch.utils.data import ConcatDataset
    from pegnn.train import DictDataset
    Ks = d.get("mixed_K") or [sz["K"]]
    if isinstance(Ks, int) or not all(isinstance(k, int) and k > 0 for k in Ks):
        raise ValueError(f"data.mixed_K: expected a list of positive ints, got {Ks!r}")
    parts = [DictDataset(channels(d["channel"], d["n_train"] // len(Ks), d["seed"] + 1000 * i, K, sz["N_R"],
                                  sz["N_T"], d["snrs"])) for i, K in enumerate(Ks)]
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


# ---------------------------------------------------------------- train
def train(cfg: dict) -> Path:
    from pegnn import load_spec
    from pegnn.policy_files import save_policy
    from pegnn.train import DictDataset, model_from_config, train_policy
    from pegnn.config_check import check_config
    check_config(cfg)
    refine = _non_negative_int("config", "policy.refine", cfg["policy"]["refine"])
    spec = load_spec(cfg["spec"])
    torch.manual_seed(cfg["train"]["seed"])
    model = model_from_config(spec, cfg["model"])      # first, so a bad model key fails before the data is made
    sz, d = cfg["sizes"], cfg["data"]
    tr = training_set(d, sz)
    va = channels(d["channel"], d["n_val"], d["val_seed"], sz["K"], sz["N_R"], sz["N_T"], d["snrs"])
    run_dir = Path(cfg["run"]["out"]) / cfg["run"]["name"]
    info = train_policy(model, functools.partial(objective, refine=refine), tr, DictDataset(va),
                        collate(spec, d["noise_feature"], cfg["model"]["attention"]), cfg, run_dir)
    if info is None:  # a DDP worker: rank 0 writes the policy
        return None
    save_policy(run_dir / "policy.pt", "tecfp", model, info, {"noise_feature": d["noise_feature"], "refine": refine})
    print(f"trained in {info['train_minutes']:.1f} min; policy: {run_dir / 'policy.pt'}")
    return run_dir / "policy.pt"


# ---------------------------------------------------------------- demo
DEMO_SNRS = [0, 10, 20, 30, 40]


def demo(use_pretrained: bool, minutes: float, n_test: int, out_dir: Path, progress: bool = True) -> dict:
    """The README's quick look: a TECFP (shipped, or trained for ``minutes`` on 2000 UMa
    drops) against ZF, MMSE and WMMSE-MMSEInit on ``n_test`` held-out UMa drops at
    SNR ∈ {0, 10, 20, 30, 40} dB; prints a table, writes ``demo.json`` and a plot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pegnn.config import load_config
    from pegnn.policy_files import load_policy, pretrained
    from tasks.precoding_eval import compare
    if not minutes > 0 or n_test < 1:
        raise ValueError(f"demo: --minutes must be > 0 and --n-test ≥ 1, got {minutes}, {n_test}")
    if use_pretrained:
        policy, source = pretrained("tecfp"), "shipped checkpoint pegnn/checkpoints/tecfp.pt"
    else:
        cfg = load_config({}, ["train.max_steps=1000000", "train.lr_decay=1.0", "train.val_every=100",
                               "data.n_train=2000", "data.n_val=200", "run.name=demo",
                               f"train.progress={progress}"], defaults=DEFAULTS)
        cfg["train"]["max_time"] = {"minutes": minutes}  # Lightning's Timer stops the run
        policy, source = load_policy(train(cfg)), f"trained for {minutes:g} min (runs/precoding/demo)"
    test = channels("uma", n_test, 2, 8, 2, 32, SNRS, progress)
    rows = {}
    for snr in DEMO_SNRS:
        s2 = torch.full((n_test,), 10 ** (-snr / 10))
        rows[snr] = compare(policy, test["H"], s2, methods=("TECFP", "ZF", "MMSE", "WMMSE-MMSEInit"))
    methods = list(rows[DEMO_SNRS[0]])
    print(f"TECFP ({source}) on {n_test} held-out UMa NLOS drops, (N_T, K, N_R) = (32, 8, 2); "
          "sum rate in bits/s/Hz")
    print(f"{'SNR':>4} " + "".join(f"{m:>16}" for m in methods))
    for snr, r in rows.items():
        print(f"{snr:>4} " + "".join(f"{r[m]['sum_rate']:16.2f}" for m in methods))
    print(f"{'ms':>4} " + "".join(f"{1e3 * sum(r[m]['sec_per_sample'] for r in rows.values()) / len(rows):16.3f}"
                                  for m in methods) + "   (per sample, batched)")
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"source": source, "n_test": n_test, "per_snr": rows}
    (out_dir / "demo.json").write_text(json.dumps(result, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for m, style in zip(methods, ["o-", "s--", "^--", "d-"]):
        ax.plot(DEMO_SNRS, [rows[s][m]["sum_rate"] for s in DEMO_SNRS], style, label=m)
    ax.set(xlabel="SNR (dB)", ylabel="sum rate (bits/s/Hz)", title=f"TECFP vs baselines, UMa NLOS, {n_test} drops")
    ax.grid(alpha=.3); ax.legend()
    fig.tight_layout(); fig.savefig(out_dir / "sum_rate_vs_snr.png", dpi=130); plt.close(fig)
    print(f"wrote {out_dir / 'demo.json'} and {out_dir / 'sum_rate_vs_snr.png'}")
    return result


# ---------------------------------------------------------------- CLI
def _policy(args):
    from pegnn.policy_files import load_policy, pretrained
    if getattr(args, "checkpoint", None):
        return load_policy(args.checkpoint, kind="tecfp")
    return pretrained("tecfp")


@task_main
def main(argv=None) -> int:
    from pegnn.config import ConfigError, load_config
    from tasks.precoding_eval import bench, evaluate, print_table
    ap = TaskArgumentParser(prog="python -m tasks.precoding", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train", help="train TECFP")
    p.add_argument("--config", type=path_arg, help="YAML config (defaults: the paper's setup on a CPU budget)")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. train.max_steps=500 model.hidden=16")
    for name, what in (("evaluate", "TECFP vs ZF/MMSE/WMMSE per SNR and over sizes (Figs. 4-5)"),
                       ("bench", "batched speed vs WMMSE, training throughput, multiplications (Table I)")):
        q = sub.add_parser(name, help=what)
        q.add_argument("--checkpoint", type=path_arg, help="a policy.pt from a run (default: the shipped one)")
        q.add_argument("--pretrained", action="store_true", help="use the shipped policy (default)")
        q.add_argument("--out", type=out_file if name == "bench" else path_arg,   # bench writes one JSON
                       default=str(ROOT / "results" / "bench" / "precoding.json") if name == "bench" else None)
        q.add_argument("--refine", type=positive_int, nargs="*", default=[3, 5], metavar="T",
                       help="also report TECFP+T: T WMMSE steps in CFP form after the network (default: 3 5)")
        if name == "evaluate":
            q.add_argument("--n-test", type=positive_int, default=500)
            q.add_argument("--channel", default="uma", choices=["uma", "rayleigh"])
            q.add_argument("--quick", action="store_true", help="every other SNR, fewer sizes")
    q = sub.add_parser("ceiling", help="the closed form's own ceiling: (A, U) optimised per drop, no network")
    q.add_argument("--checkpoint", type=path_arg, help="a policy.pt from a run (default: the shipped one)")
    q.add_argument("--n-test", type=positive_int, default=50)
    q.add_argument("--steps", type=positive_int, default=1500, help="Adam steps per drop")
    q.add_argument("--out", type=out_file, default=str(ROOT / "results" / "precoding" / "cfp_ceiling.json"))
    q = sub.add_parser("demo", help="quick look: TECFP vs ZF/MMSE/WMMSE, table and plot")
    q.add_argument("--pretrained", action="store_true", help="use the shipped policy instead of training")
    q.add_argument("--minutes", type=float, default=3.0, help="training time budget without --pretrained")
    q.add_argument("--n-test", type=positive_int, default=100)
    q.add_argument("--out", type=path_arg, default=str(ROOT / "results" / "demo"))
    args = ap.parse_task(argv)
    try:
        if args.cmd == "demo":
            check_writable(args.out, "--out")
            demo(args.pretrained, args.minutes, args.n_test, Path(args.out), progress=sys.stderr.isatty())
        elif args.cmd == "train":
            cfg = load_config(args.config or {}, args.overrides, defaults=DEFAULTS)
            train(cfg)
        elif args.cmd == "evaluate":
            pol = _policy(args)
            out = check_writable(args.out or ROOT / "results" / "precoding" / (
                "pretrained" if not args.checkpoint else Path(args.checkpoint).parent.name), "--out")
            r = evaluate(pol, args.n_test, out, args.channel, args.quick, refine=args.refine)
            print_table(r)
            print(f"wrote {out / 'eval.json'}, {out / 'sum_rate_vs_snr.png'}, {out / 'generalisation.png'}")
        elif args.cmd == "ceiling":
            from tasks.cfp_ceiling import ceiling
            # evaluate's held-out set (500 drops, seed 2), so the drops are its first n_test
            # (UMa drops depend on the chunk size: a 50-drop set is not a prefix of the 500-drop one)
            H = channels("uma", max(args.n_test, 500), 2, 8, 2, 32, SNRS, sys.stderr.isatty())["H"][:args.n_test]
            r = ceiling(_policy(args), H, SNRS, args.steps, out=Path(args.out), progress=sys.stderr.isatty())
            print("\n".join(f"{m:>22}: {x:.4f} of WMMSE-MMSEInit" for m, x in r["ratio_over_wmmse_mmseinit"].items()))
            print(f"wrote {args.out}")
        elif args.cmd == "bench":
            r = bench(_policy(args), Path(args.out), refine=args.refine)
            keys = ("speedup_tecfp_over_wmmse_mmseinit", "speedup_refined_over_wmmse_mmseinit",
                    "training_samples_per_s", "multiplications_per_sample")
            print(json.dumps({k: r[k] for k in keys}, indent=2))
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
