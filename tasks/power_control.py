r"""Power control P-C (paper 002 eq. 18): train, evaluate, bench.

    python -m tasks.power_control train    [--config FILE] [key=value ...]
    python -m tasks.power_control evaluate --gnn RUN/policy.pt [...] --gnn-all RUN/policy.pt [...]
                                           [--n-test N] [--quick] [--out DIR]
    python -m tasks.power_control bench    --gnn RUN/policy.pt --gnn-all RUN/policy.pt

The policy is :class:`pegnn.PEGNN` built from ``graphs/power_control_pc.yaml`` with
the plan: the cross gains |g_kj| are inputs, so the interference is *reflected* and
the plan puts an ordinary processor on ``ue`` (paper 002 Sec. III-C2, eqs. 19-22);
``model.attention=all`` trains the same GNN with a (forced) attention processor on
``ue`` for the comparison. The state is the order-2 tensor over (ue, ue) that G
initialises (2→2 layers of paper 001 App. E); the read-out pools the second ``ue``
axis (MDI) and maps to one logit per pair; ``p = P_max · sigmoid(logit)``, so
``0 <= p <= P_max`` holds by construction. Loss: −mean sum rate (``pc_rates``),
unsupervised. Input feature: ``log10(1 + |g_kj|²)`` (:func:`gain_feature`).

Channels (:func:`d2d_channels`): D2D pairs as in Shen et al. (2020) with the path loss
of paper 002 Sec. V, normalised so that powers are fractions of P_max and the noise is 1.
The drops are analytic and cheap (≈ 10⁵ drops/s), so they are regenerated from
their seeds rather than cached on disk: train seed 0, validation 1, test 2,
generalisation 3 (each mixed with K, so every K has its own drops).

Baselines: WMMSE-PC from full power (paper 002 eq. 21; ratios are over it), full power,
random power. Evaluation: 2000 test drops at K = 10; 1000 drops per other K, both with the
pair density fixed (the area grows with K) and with the K = 10 area fixed (denser).
No shipped checkpoint; ``results/power_control/eval`` is ``train train.seed=S`` and
``train train.seed=S model.attention=all`` for S = 0…5, then ``evaluate --gnn
runs/power_control/pc_s{0..5}/policy.pt --gnn-all runs/power_control/pc_all_s{0..5}/policy.pt``.

``evaluate`` and ``bench`` are in :mod:`tasks.power_control_eval`.
Results, what was tried and why: results/power_control/README.md
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

from pegnn.config import TaskArgumentParser, check_writable, out_file, path_arg, positive_int, task_main
from pegnn.policy_files import load_task_policy
from tasks.attention_study import check_attention_override, run_name

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "graphs" / "power_control_pc.yaml"
P_MAX = 1.0          # normalised units: powers are fractions of the physical P_max

DEFAULTS = {
    "spec": str(SPEC),
    "sizes": {"K": 10},
    "channel": {"density": 2e-4, "side": None, "d_min": 10.0, "d_max": 50.0, "pl_a": 32.6, "pl_b": 36.7,
                "P_max_dbm": 30.0, "noise_dbm": -80.0},
    "data": {"n_train": 50000, "n_val": 1000, "seed": 0, "val_seed": 1},
    "model": {"hidden": 32, "layers": 3, "pattern": "all", "attention": "auto", "attention_kind": "inner",
              "pooling": "pma", "heads": 1, "residual": False, "norm": True},
    "train": {"batch_size": 128, "max_steps": 1400, "lr": 1e-3, "lr_decay": 0.1, "lr_decay_at": 0.6,
              "val_every": 250, "seed": 0, "devices": 1, "num_nodes": 1, "strategy": None, "workers": 0,
              "progress": True, "max_time": "00:00:07:15", "log_every": 20, "val_batch_size": 1000,
              "grad_clip": None, "init": None, "compile": False},
    "run": {"name": None, "out": str(ROOT / "runs" / "power_control")},
}


# ---------------------------------------------------------------- channels
def d2d_channels(n: int, K: int, seed: int, density: float = 2e-4, side: float | None = None,
                 d_min: float = 10.0, d_max: float = 50.0, pl_a: float = 32.6, pl_b: float = 36.7,
                 P_max_dbm: float = 30.0, noise_dbm: float = -80.0, dtype=torch.float32) -> torch.Tensor:
    """Noise-normalised D2D gains: the D2D layout of the WMMSE-PC GNN literature
    (Shen et al., "Graph neural networks for scalable radio resource management", 2020:
    pairs dropped uniformly in a square at 50 pairs per 500 m × 500 m) with the path loss
    of paper 002 Sec. V:

    * Tx k uniform in a square of side ``L``; Rx k at distance ``d_kk ~ U[d_min, d_max]``
      = U[10, 50] m in a uniform direction (it may leave the square);
    * ``L = sqrt(K / density)`` with ``density = 2e-4`` pairs/m² (``L`` = 223.6 m at
      K = 10), or a fixed ``channel.side``;
    * ``|g_kj|² = 10^(-PL(d_kj)/10) · |h_kj|²``, ``PL(d) = 32.6 + 36.7 log10(d)`` dB
      (d in m, clamped >= 1 m), ``h_kj ~ CN(0, 1)`` i.i.d. Rayleigh, d_kj Tx k → Rx j;
    * ``P_max = 30`` dBm, ``σ0² = -80`` dBm. Everything is returned normalised:
      ``G = |g| sqrt(P_max) / σ0``, so powers are fractions of P_max and the noise is 1
      (``pc_rates(G, p, 1.0)`` with ``p`` in [0, 1]). Direct links have a full-power SNR
      of 15-40 dB: an interference-limited regime in which full power reaches ~0.65 of
      WMMSE at K = 10.

    *Shapes*: returns ``G`` ``[n, K, K]`` real, ``G[b, k, j]`` = |g_kj| √P_max / σ0 from
    Tx k to Rx j (the convention of :func:`pegnn.wireless.power_control.pc_rates`).
    """
    for name, v in (("n", n), ("K", K), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "seed" else 1):
            raise ValueError(f"d2d_channels: {name} must be a {'non-negative' if name == 'seed' else 'positive'} "
                             f"int, got {v!r}")
    from pegnn.wireless.rates import check_reals
    check_reals("d2d_channels", density=density, side=1.0 if side is None else side, d_min=d_min, d_max=d_max,
                pl_b=pl_b, db=dict(pl_a=pl_a, P_max_dbm=P_max_dbm, noise_dbm=noise_dbm))
    if not 0 < d_min <= d_max:
        raise ValueError(f"d2d_channels: need 0 < d_min <= d_max, got d_min={d_min}, d_max={d_max}")
    if side is None:
        if not density or density <= 0:
            raise ValueError(f"d2d_channels: density must be > 0 pairs/m^2, got {density!r}")
        side = math.sqrt(K / density)
    elif side <= 0:
        raise ValueError(f"d2d_channels: side must be > 0 m, got {side!r}")
    g = torch.Generator().manual_seed(seed * 1_000_003 + K)
    f64 = dict(generator=g, dtype=torch.float64)
    tx = torch.rand(n, K, 2, **f64) * side
    r = d_min + (d_max - d_min) * torch.rand(n, K, **f64)
    ang = 2 * math.pi * torch.rand(n, K, **f64)
    rx = tx + torch.stack([r * ang.cos(), r * ang.sin()], -1)
    d = (tx[:, :, None, :] - rx[:, None, :, :]).norm(dim=-1).clamp_min(1.0)   # d[b, k, j]: Tx k -> Rx j
    snr_db = P_max_dbm - noise_dbm - (pl_a + pl_b * torch.log10(d))
    fading = (torch.randn(n, K, K, **f64).square() + torch.randn(n, K, K, **f64).square()) / 2   # |CN(0,1)|^2
    return (10 ** (snr_db / 10) * fading).sqrt().to(dtype)


def gain_feature(G: torch.Tensor) -> torch.Tensor:
    """The GNN's input feature per entry: ``log10(1 + |g_kj|²)`` (normalised gains).

    The spec's input is |g_kj|; the network reads this monotone transform (the link's
    full-power SNR on a log scale; gains span five decades) and a constant noise feature
    1. A per-entry monotone map keeps the policy exactly permutation-equivariant."""
    return torch.log10(1 + G.float().square())


# ---------------------------------------------------------------- model / policy
def powers(out: dict) -> torch.Tensor:
    """Network output → powers in [0, P_max]: ``P_max · sigmoid(logit)``."""
    return torch.sigmoid(out["p"]) * P_MAX


def objective(samples, out):
    """−mean sum rate (bits/s/Hz) of P-C (18a) — unsupervised."""
    from pegnn.wireless.power_control import pc_rates
    R = pc_rates(samples["G"], powers(out).to(samples["G"].dtype), 1.0).sum(-1)
    return -R.mean(), {"sum_rate": R.mean().detach()}


def graph_inputs(G: torch.Tensor) -> dict:
    return {"G": gain_feature(G).to(torch.float64 if G.dtype == torch.float64 else torch.float32),
            "noise": torch.ones(len(G), dtype=torch.float64 if G.dtype == torch.float64 else torch.float32)}


def collate(spec, pairs=()):
    from pegnn.train import GraphCollate
    return GraphCollate(spec, sizes_of=lambda s: {"ue": s["G"].shape[0]},
                        graph_inputs=lambda b: graph_inputs(b["G"]), pairs=pairs)


class PCPolicy:
    """A trained P-C policy on plain tensors: ``p = policy(G)``.

    *Shapes*: ``G`` ``[B, K, K]`` normalised gains (any K) → ``p`` ``[B, K]`` in [0, P_max]
    (fractions of the physical P_max). Runs in the model's dtype (``.double()`` for tests).
    """

    kind = "pc"

    def __init__(self, model, info: dict | None = None):
        self.model, self.spec, self.info = model.eval(), model.spec, dict(info or {})

    @property
    def attention(self) -> list[str]:
        return list(self.model.attention_sets)

    def graph(self, G: torch.Tensor):
        from pegnn.graph import build_batch
        B, K, K2 = G.shape
        if K != K2:
            raise ValueError(f"PCPolicy: G must be [B, K, K], got {tuple(G.shape)}")
        return build_batch(self.spec, {"ue": K}, graph_inputs(G), pairs=self.attention)

    @torch.no_grad()
    def __call__(self, G: torch.Tensor) -> torch.Tensor:
        return powers(self.model(self.graph(G)))


def save_pc_policy(path: Path, model, info: dict) -> None:
    """The policy-file format of :func:`pegnn.policy_files.save_policy`, kind ``"pc"``."""
    from pegnn.policy_files import save_policy
    save_policy(path, "pc", model, info)


def load_pc_policy(path: str | Path) -> PCPolicy:
    return load_task_policy(path, "pc", PCPolicy, "power_control")


# ---------------------------------------------------------------- train
def train(cfg: dict) -> Path | None:
    from pegnn import load_spec
    from pegnn.train import DictDataset, model_from_config, train_policy
    from pegnn.config_check import check_config
    check_config(cfg)
    spec = load_spec(cfg["spec"])
    torch.manual_seed(int(cfg["train"]["seed"]))
    model = model_from_config(spec, cfg["model"])  # first, so a bad model key fails before the data is made
    K, d, ch = int(cfg["sizes"]["K"]), cfg["data"], cfg["channel"]
    tr = d2d_channels(int(d["n_train"]), K, int(d["seed"]), **ch)
    va = d2d_channels(int(d["n_val"]), K, int(d["val_seed"]), **ch)
    run_dir = Path(cfg["run"]["out"]) / run_name(cfg, "pc")
    info = train_policy(model, objective, DictDataset({"G": tr}), DictDataset({"G": va}),
                        collate(spec, model.attention_sets), cfg, run_dir)
    if info is None:
        return None
    from pegnn.wireless.power_control import pc_rates, wmmse_power_control
    pol = PCPolicy(model)
    val_gnn = float(pc_rates(va, pol(va), 1.0).sum(-1).mean())
    val_wmmse = float(wmmse_power_control(va, 1.0, P_MAX, max_iter=500)[1]["sum_rate"].mean())
    info.update({"val_sum_rate": val_gnn,
                 "val_ratio_to_wmmse": val_gnn / val_wmmse, "params": sum(p.numel() for p in model.parameters())})
    save_pc_policy(run_dir / "policy.pt", model, info)
    print(f"trained in {info['train_minutes']:.1f} min; val sum rate {val_gnn:.3f} = {val_gnn / val_wmmse:.4f} x WMMSE; "
          f"policy: {run_dir / 'policy.pt'}")
    return run_dir / "policy.pt"


# ---------------------------------------------------------------- CLI
@task_main
def main(argv=None) -> int:
    from pegnn.config import ConfigError, load_config
    from tasks.power_control_eval import bench, evaluate, print_table
    ap = TaskArgumentParser(prog="python -m tasks.power_control", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train", help="train the P-C GNN (model.attention=all: the all-attention variant)")
    p.add_argument("--config", type=path_arg, help="YAML config (defaults: DEFAULTS in this file)")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. train.max_steps=500 model.attention=all")
    for name in ("evaluate", "bench"):
        q = sub.add_parser(name)
        q.add_argument("--gnn", type=path_arg, nargs="+", required=True,
                       help="policy.pt of the plan's GNN (one per seed)")
        q.add_argument("--gnn-all", type=path_arg, nargs="+", required=True,
                       help="policy.pt of the all-attention GNN")
        q.add_argument("--out", type=out_file if name == "bench" else path_arg,   # bench writes one JSON
                       default=str(ROOT / "results" / "bench" / "power_control.json") if name == "bench" else None)
        if name == "evaluate":
            q.add_argument("--n-test", type=positive_int, default=2000)
            q.add_argument("--quick", action="store_true", help="K = 5, 20 only")
    args = ap.parse_task(argv, untimed=())    # training too ran on one thread (the results' runs)
    try:
        if args.cmd == "train":
            cfg = load_config(args.config or {}, args.overrides, defaults=DEFAULTS)
            check_attention_override(cfg)
            train(cfg)
            return 0
        gnn = [load_pc_policy(x) for x in args.gnn]
        gnn_all = [load_pc_policy(x) for x in args.gnn_all]
        for flag, pols, want in (("--gnn", gnn, ("auto", "none")), ("--gnn-all", gnn_all, ("all",))):
            for pol in pols:   # swapped flags would silently swap the two columns
                att = pol.info.get("config", {}).get("model", {}).get("attention")
                if att is not None and att not in want:
                    raise ValueError(f"{flag}: {pol.info['path']} was trained with model.attention={att}; "
                                     f"{flag} takes model.attention={' or '.join(want)}")
        for pol in gnn + gnn_all:
            pol.info.setdefault("seed", pol.info.get("config", {}).get("train", {}).get("seed"))
        if args.cmd == "evaluate":
            if args.n_test < 10:
                raise ValueError(f"--n-test must be >= 10, got {args.n_test}")
            channel = gnn[0].info.get("config", {}).get("channel", DEFAULTS["channel"])
            out = check_writable(args.out or ROOT / "results" / "power_control" / "eval", "--out")
            r = evaluate(gnn, gnn_all, args.n_test, out, channel, args.quick)
            print_table(r)
            print(f"wrote {out / 'eval.json'}, {out / 'power_control.png'}")
        else:
            r = bench(gnn[0], gnn_all[0], Path(args.out))
            print(json.dumps(r, indent=2))
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
