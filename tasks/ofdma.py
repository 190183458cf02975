r"""OFDMA bandwidth and power allocation P-B (paper 002 eq. 9): train, evaluate.

    python -m tasks.ofdma train    [--config FILE] [key=value ...]
    python -m tasks.ofdma evaluate --gnn RUN/policy.pt [...] [--gnn-all RUN/policy.pt ...]
                                   [--n-test N] [--out DIR]

P-B is the interference-free case of the attention rule (paper 002 Sec. III-A): the
UEs share nothing but the power budget, so the plan of ``graphs/ofdma_pb.yaml`` puts
an ordinary processor on ``ue`` and no attention. Paper 002 uses P-B only to analyse
the rule ("too simple ... to make learning necessary"); this task trains the plan's
GNN anyway and scores it against the global optimum of the convex problem
(:func:`pegnn.wireless.ofdma_min_bandwidth`), with the same GNN forced to attend
along ``ue`` (``model.attention=all``) beside it.

**Normalisation.** With :math:`B_k = s_0 b_k`, :math:`p_k = P_{\max} q_k` and
:math:`\gamma_k = g_k P_{\max}/(N_0 s_0)`, eq. (9) becomes
:math:`\min \sum_k b_k` s.t. :math:`b_k\log_2(1 + q_k\gamma_k/b_k) \ge 1`,
:math:`\sum_k q_k \le 1`: the problem depends on the gains only through
:math:`\gamma_k` (bandwidth in units of :math:`s_0` Hz per bit/s, power in units of
:math:`P_{\max}`). It is feasible iff the load :math:`\rho = \sum_k \ln 2/\gamma_k`
(the power that infinite bandwidth would still need) is below 1.

**Policy** (:class:`PBPolicy`). The network reads :math:`\log_{10}\gamma_k` on ``g``
and ρ on ``s0`` (ρ is how :math:`s_0` enters the normalised problem), and outputs one
logit per UE. The bandwidth is *not* learned: at every optimum the rate constraints
are tight, so the output layer (:func:`allocation`) takes the power shares

.. math:: q_k = \frac{\ln 2}{\gamma_k} + (1 - \rho)\,\mathrm{softmax}_k(\ell),

(feasible and :math:`\sum_k q_k = 1` by construction) and returns the one bandwidth
that makes each rate exactly :math:`s_0` (:func:`tight_bandwidth`). The spec's ``B``
output is therefore dropped from the model (:func:`model_spec`). Loss: the mean over
drops of :math:`\log\sum_k b_k` — unsupervised, and scale-free across drops whose
optimal bandwidths differ by orders of magnitude.

**Score.** Bandwidth ratio = :math:`\sum_k B_k / \sum_k B_k^\star` per drop (≥ 1; 1 is
optimal), averaged over drops, against the global optimum and against the *equal
share* allocation (:math:`\ell = 0`: each UE gets its floor plus an equal share of
the rest). Drops (:func:`ofdma_gains`, feasible with load ρ < 0.9): training seed 0,
validation 1; test seed 2, trained K = 10, generalisation to K ∈ {5, 20, 40} (seed 3) at
the same cell size. No shipped checkpoint; ``results/ofdma/eval`` is ``train
train.seed=S`` and ``train train.seed=S model.attention=all`` for S = 0, 1, 2, then
``evaluate --gnn runs/ofdma/pb_s{0,1,2}/policy.pt --gnn-all runs/ofdma/pb_all_s{0,1,2}/policy.pt``.

Results, what was tried and why: results/ofdma/README.md
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

from pegnn.config import TaskArgumentParser, check_writable, path_arg, positive_int, task_main
from pegnn.policy_files import load_task_policy
from tasks import timed
from tasks.attention_study import check_attention_override, run_name, seed_t_test

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "graphs" / "ofdma_pb.yaml"
LN2 = math.log(2.0)

DEFAULTS = {
    "spec": str(SPEC),
    "sizes": {"K": 10},
    "channel": {"r_min": 35.0, "r_max": 250.0, "pl_a": 32.6, "pl_b": 36.7, "P_max_dbm": 30.0,
                "N0_dbm_hz": -174.0, "s0_bps": 1e6, "rho_max": 0.9},
    "data": {"n_train": 20000, "n_val": 1000, "seed": 0, "val_seed": 1},
    "model": {"hidden": 32, "layers": 3, "pattern": "all", "attention": "auto", "attention_kind": "inner",
              "pooling": "pma", "heads": 1, "residual": False, "norm": True},
    "train": {"batch_size": 128, "max_steps": 1500, "lr": 1e-3, "lr_decay": 0.1, "lr_decay_at": 0.6,
              "val_every": 250, "seed": 0, "devices": 1, "num_nodes": 1, "strategy": None, "workers": 0,
              "progress": True, "max_time": "00:00:10:00", "log_every": 20, "val_batch_size": 1000,
              "grad_clip": None, "init": None, "compile": False},
    "run": {"name": None, "out": str(ROOT / "runs" / "ofdma")},
}


# ---------------------------------------------------------------- drops
def ofdma_gains(n: int, K: int, seed: int, r_min: float = 35.0, r_max: float = 250.0, pl_a: float = 32.6,
                pl_b: float = 36.7, P_max_dbm: float = 30.0, N0_dbm_hz: float = -174.0, s0_bps: float = 1e6,
                rho_max: float = 0.9, dtype=torch.float64) -> torch.Tensor:
    r"""``n`` feasible drops of normalised gains :math:`\gamma_k = g_k P_{\max}/(N_0 s_0)`
    (see the module docstring); drops with load :math:`\rho \ge` ``rho_max`` are redrawn.

    One BS, K UEs uniform in the annulus ``r_min``–``r_max`` = 35–250 m, path loss
    32.6 + 36.7 log10(d) dB (paper 002 Sec. V), Rayleigh fading, ``P_max`` = 30 dBm,
    ``N0`` = −174 dBm/Hz, ``s0`` = 1 Mbit/s: the median γ is 27.6 dB. Drops with
    ρ ≥ ``rho_max`` = 0.9 are redrawn (1.4 % of them at K = 10, 1.2 % infeasible
    outright; 0.6 / 2.9 / 6.7 % at K = 5 / 20 / 40), since near ρ = 1 the optimal
    bandwidth diverges and one drop would dominate every mean.

    *Shapes*: returns ``[n, K]`` (> 0). The same ``(n, K, seed)`` and parameters give the
    same tensor.
    """
    for name, v in (("n", n), ("K", K), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "seed" else 1):
            raise ValueError(f"ofdma_gains: {name} must be a {'non-negative' if name == 'seed' else 'positive'} "
                             f"int, got {v!r}")
    from pegnn.wireless.rates import check_reals
    check_reals("ofdma_gains", r_min=r_min, r_max=r_max, pl_b=pl_b, s0_bps=s0_bps, rho_max=rho_max,
                db=dict(pl_a=pl_a, P_max_dbm=P_max_dbm, N0_dbm_hz=N0_dbm_hz))
    if not 0 < r_min <= r_max:
        raise ValueError(f"ofdma_gains: need 0 < r_min <= r_max, got r_min={r_min}, r_max={r_max}")
    if not 0 < rho_max <= 1:
        raise ValueError(f"ofdma_gains: rho_max must be in (0, 1], got {rho_max!r}")
    if not s0_bps > 0:
        raise ValueError(f"ofdma_gains: s0_bps must be > 0, got {s0_bps!r}")
    gen = torch.Generator().manual_seed(seed * 1_000_003 + K)
    snr_db = P_max_dbm - N0_dbm_hz - 10 * math.log10(s0_bps)
    out, have = [], 0
    for _ in range(1000):
        m = max(2 * (n - have), 16)
        r = torch.sqrt(r_min ** 2 + (r_max ** 2 - r_min ** 2) * torch.rand(m, K, generator=gen, dtype=torch.float64))
        fading = torch.empty(m, K, dtype=torch.float64).exponential_(1.0, generator=gen)   # |CN(0,1)|^2
        gamma = 10 ** ((snr_db - pl_a - pl_b * torch.log10(r)) / 10) * fading
        keep = gamma[load(gamma) < rho_max]
        out.append(keep[: n - have])
        have += len(out[-1])
        if have == n:
            return torch.cat(out).to(dtype)
    raise ValueError(f"ofdma_gains: fewer than 1 in 1000 drops has load < rho_max={rho_max}; "
                     f"raise P_max_dbm or lower s0_bps")


def load(gamma: torch.Tensor) -> torch.Tensor:
    r""":math:`\rho = \sum_k \ln 2/\gamma_k` ``[B]``: the fraction of :math:`P_{\max}` the
    rates need with infinite bandwidth; the problem is feasible iff ρ < 1."""
    return (LN2 / gamma).sum(-1)


# ---------------------------------------------------------------- output layer
def _expm1_minus_x(x: torch.Tensor) -> torch.Tensor:
    """:math:`e^x - 1 - x` without cancellation at small ``x`` (series below 1e-4)."""
    series = x * x / 2 * (1 + x / 3 * (1 + x / 4 * (1 + x / 5)))
    return torch.where(x < 1e-4, series, torch.expm1(x) - x)


def tight_bandwidth(d: torch.Tensor, iters: int = 100) -> torch.Tensor:
    r"""The bandwidth :math:`b > 0` with :math:`b \log_2(1 + a/b) = 1`, given the excess
    :math:`d = a/\ln 2 - 1 > 0` (``a`` = :math:`q_k\gamma_k`; the rate is reachable iff
    :math:`a > \ln 2`).

    With :math:`x = \ln 2/b` the equation is :math:`F(x) = e^x - 1 - x - d\,x = 0`.
    ``F`` is convex with :math:`F(0) = 0` and :math:`F'(0) = -d < 0`, so it has one
    positive root, and Newton started right of it decreases to it monotonically:
    :math:`x_0 = \min(2\ln(1+d) + 2,\ 2d)`, where :math:`F > 0` (the second because
    :math:`e^x - 1 - x > x^2/2`; it puts the start within a factor ~1 of the root when
    ``d`` is small, where halving down from 2 would take ~1000 steps at d = 1e-300). The excess ``d`` is taken rather than
    :math:`c = 1 + d` because a UE with a tiny share beyond its floor has :math:`d` far
    below float64's resolution of 1: as ``c`` it would round to 1 (``b`` = inf); as
    ``d`` (clamped at 1e-300) it gives a large finite ``b``, and
    :math:`e^x - 1 - x` is evaluated without cancellation. The iterations run without
    autograd; one more Newton step from the detached root carries the exact gradient
    :math:`\partial x/\partial d = x/(e^x - 1 - d)` (the implicit-function derivative;
    the step's value change is zero at the root).

    *Shapes*: ``d`` any shape, float64 recommended → ``b`` same shape.
    """
    d = d.clamp_min(1e-300)
    with torch.no_grad():
        x = torch.minimum(2 * torch.log1p(d) + 2, 2 * d)
        for _ in range(iters):
            step = (_expm1_minus_x(x) - d * x) / (torch.expm1(x) - d)
            x = x - step
            if bool((step.abs() <= 1e-13 * x).all()):
                break
    x = x - (_expm1_minus_x(x) - d * x) / (torch.expm1(x) - d).detach()
    return LN2 / x


def allocation(logits: torch.Tensor, gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Network logits ``[B, K]`` → ``(q, b)``: power shares on the feasible simplex and
    the tight bandwidths (module docstring), in float64. ``logits = 0`` is the
    equal-share allocation. The share above each floor enters :func:`tight_bandwidth`
    directly (:math:`d_k = (1-\rho)\,\mathrm{softmax}_k(\ell)\,\gamma_k/\ln 2`), so a
    share of 1e-30 still gives a finite bandwidth."""
    g = gamma.double()
    floor = LN2 / g
    extra = (1 - floor.sum(-1, keepdim=True)) * torch.softmax(logits.double(), -1)
    return floor + extra, tight_bandwidth(extra * g / LN2)


def objective(samples, out):
    """Mean over drops of log Σ_k b_k (unsupervised, scale-free)."""
    _, b = allocation(out["p"], samples["gamma"])
    total = b.sum(-1)
    return total.log().mean(), {"bandwidth": total.mean().detach()}


def graph_inputs(gamma: torch.Tensor, dtype=torch.float32) -> dict:
    return {"g": torch.log10(gamma).to(dtype), "s0": load(gamma).to(dtype)}


def model_spec(spec):
    """The P-B spec with its ``B`` output dropped: the output layer derives ``B`` from
    ``p`` (tight rate constraints), so the network learns only the power logits."""
    from pegnn.spec import ProblemSpec
    d = spec.to_dict()
    d["outputs"] = {k: v for k, v in d["outputs"].items() if k != "B"}
    return ProblemSpec.from_dict(d, source=f"{spec.name} (B from p)")


def collate(spec, pairs=()):
    from pegnn.train import GraphCollate
    return GraphCollate(spec, sizes_of=lambda s: {"ue": s["gamma"].shape[0]},
                        graph_inputs=lambda b: graph_inputs(b["gamma"]), pairs=pairs)


class PBPolicy:
    """A trained P-B policy on plain tensors: ``q, b = policy(gamma)``.

    *Shapes*: ``gamma`` ``[B, K]`` normalised gains with load < 1 (any K) → power shares
    ``q`` and bandwidths ``b`` ``[B, K]`` (float64; ``p = P_max q``, ``B = s0 b``).
    """

    kind = "pb"

    def __init__(self, model, info: dict | None = None):
        self.model, self.spec, self.info = model.eval(), model.spec, dict(info or {})

    @torch.no_grad()
    def __call__(self, gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from pegnn.graph import build_batch
        if gamma.dim() != 2 or not bool((gamma > 0).all()) or not bool((load(gamma) < 1).all()):
            raise ValueError(f"PBPolicy: gamma must be [B, K] with entries > 0 and load < 1 (feasible), "
                             f"got shape {tuple(gamma.shape)}")
        dt = next(self.model.parameters()).dtype
        g = build_batch(self.spec, {"ue": gamma.shape[1]}, graph_inputs(gamma, dt),
                        pairs=list(self.model.attention_sets))
        return allocation(self.model(g)["p"], gamma)


def load_pb_policy(path: str | Path) -> PBPolicy:
    return load_task_policy(path, "pb", PBPolicy, "ofdma")


# ---------------------------------------------------------------- train
def train(cfg: dict) -> Path | None:
    from pegnn import load_spec
    from pegnn.policy_files import save_policy
    from pegnn.train import DictDataset, model_from_config, train_policy
    from pegnn.config_check import check_config
    check_config(cfg)
    spec = model_spec(load_spec(cfg["spec"]))
    torch.manual_seed(int(cfg["train"]["seed"]))
    model = model_from_config(spec, cfg["model"])
    K, d, ch = int(cfg["sizes"]["K"]), cfg["data"], cfg["channel"]
    tr = ofdma_gains(int(d["n_train"]), K, int(d["seed"]), **ch)
    va = ofdma_gains(int(d["n_val"]), K, int(d["val_seed"]), **ch)
    run_dir = Path(cfg["run"]["out"]) / run_name(cfg, "pb")
    info = train_policy(model, objective, DictDataset({"gamma": tr}), DictDataset({"gamma": va}),
                        collate(spec, model.attention_sets), cfg, run_dir)
    if info is None:
        return None
    ratio = bandwidth_ratio(PBPolicy(model)(va)[1], va).mean().item()
    info.update({"val_bandwidth_ratio": ratio, "params": sum(p.numel() for p in model.parameters())})
    save_policy(run_dir / "policy.pt", "pb", model, info)
    print(f"trained in {info['train_minutes']:.1f} min; val bandwidth {ratio:.4f} x optimum; "
          f"policy: {run_dir / 'policy.pt'}")
    return run_dir / "policy.pt"


# ---------------------------------------------------------------- evaluate
def optimum(gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q*, b*) ``[B, K]`` of the global optimum (:func:`ofdma_min_bandwidth` in the
    normalised units: s0 = P_max = N0 = 1)."""
    from pegnn.wireless import ofdma_min_bandwidth
    return ofdma_min_bandwidth(gamma.double(), 1.0, 1.0)[:2]


def bandwidth_ratio(b: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Σ_k b_k / Σ_k b*_k per drop ``[B]`` (≥ 1 up to the optimum's tolerance)."""
    return b.sum(-1) / optimum(gamma)[1].sum(-1)


def compare(gamma: torch.Tensor, gnn: list, gnn_all: list) -> dict:
    """Per-drop bandwidth ratios and seconds per drop (median of 3, batched over all
    drops, one thread by default) of every method on the same drops."""
    (_, b_opt), sec = timed(lambda: optimum(gamma))
    b_opt = b_opt.sum(-1)
    res = {"optimum": {"ratio": torch.ones_like(b_opt), "sec_per_sample": sec / len(gamma)}}
    b_eq, sec = timed(lambda: allocation(torch.zeros_like(gamma), gamma)[1])
    res["equal share"] = {"ratio": b_eq.sum(-1) / b_opt, "sec_per_sample": sec / len(gamma)}
    for label, pols in (("GNN", gnn), ("GNN-all-attention", gnn_all)):
        for i, pol in enumerate(pols):
            b, sec = timed(lambda pol=pol: pol(gamma)[1])
            res[f"{label}/s{pol.info.get('seed', i)}"] = {"ratio": b.sum(-1) / b_opt,
                                                          "sec_per_sample": sec / len(gamma)}
    for v in res.values():
        if not bool(torch.isfinite(v["ratio"]).all()):
            raise FloatingPointError("ofdma evaluate: a non-finite bandwidth ratio")
    return res


def _summary(res: dict) -> dict:
    out = {k: {"bandwidth_ratio": float(v["ratio"].mean()), "ratio_p95": float(v["ratio"].quantile(0.95)),
               "ratio_max": float(v["ratio"].max()), "sec_per_sample": v["sec_per_sample"]} for k, v in res.items()}
    for fam in ("GNN", "GNN-all-attention"):
        keys = [k for k in res if k.split("/")[0] == fam]
        if keys:
            r = torch.tensor([out[k]["bandwidth_ratio"] for k in keys], dtype=torch.float64)
            out[fam] = {"seeds": len(keys), "bandwidth_ratio_mean": float(r.mean()),
                        "bandwidth_ratio_std_over_seeds": float(r.std()) if len(keys) > 1 else 0.0}
    return out


def attention_cost(res: dict) -> dict:
    """All-attention minus plain GNN in bandwidth ratio, per training seed, with the
    t-test over seeds of :func:`tasks.attention_study.seed_t_test` (negative = attention
    needs less bandwidth)."""
    plain = {k.split("/")[1]: res[k]["ratio"] for k in res if k.startswith("GNN/")}
    att = {k.split("/")[1]: res[k]["ratio"] for k in res if k.startswith("GNN-all-attention/")}
    pairs = [(s, att[s] - plain[s]) for s in sorted(att) if s in plain]
    if not pairs:
        return {}
    means = [float(d.mean()) for _, d in pairs]
    return {"per_seed": {s: m for (s, _), m in zip(pairs, means)}, "mean_diff_over_seeds": sum(means) / len(means),
            "over_seeds": seed_t_test(means)}


def _params(policy) -> int:
    return sum(x.numel() for x in policy.model.parameters())


def evaluate(gnn: list, gnn_all: list, n_test: int, out_dir: Path, channel: dict, Ks=(5, 20, 40)) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out_dir.mkdir(parents=True, exist_ok=True)
    K0 = int(gnn[0].info.get("config", {}).get("sizes", {}).get("K", 10))
    result = {"n_test": n_test, "K_train": K0, "channel": channel,
              "units": "sum bandwidth / optimal sum bandwidth, mean over drops (1 = optimal)",
              "policies": {"GNN": [p.info.get("path") for p in gnn],
                           "GNN-all-attention": [p.info.get("path") for p in gnn_all]},
              "params": {"GNN": _params(gnn[0]), "GNN-all-attention": _params(gnn_all[0]) if gnn_all else None}}
    by_K = {}
    for K, seed in [(K0, 2)] + [(k, 3) for k in Ks if k != K0]:
        res = compare(ofdma_gains(n_test, K, seed, **channel), gnn, gnn_all)
        by_K[K] = {**_summary(res), "attention_minus_plain": attention_cost(res)}
    result["by_K"] = {str(k): v for k, v in sorted(by_K.items())}
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(result, out_dir / "ofdma.png", plt)
    return result


def _plot(r: dict, path: Path, plt) -> None:
    Ks = [int(k) for k in r["by_K"]]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for fam, c in (("GNN", "tab:blue"), ("GNN-all-attention", "tab:purple"), ("equal share", "tab:gray")):
        key = "bandwidth_ratio_mean" if fam.startswith("GNN") else "bandwidth_ratio"
        ys = [r["by_K"][str(k)][fam][key] for k in Ks if fam in r["by_K"][str(k)]]
        if len(ys) == len(Ks):   # excess over the optimum, in %, on a log axis: 1e-4 % and 30 % on one plot
            ax.plot(Ks, [max(100 * (y - 1), 1e-6) for y in ys], "o-", color=c, label=fam)
    ax.axvline(r["K_train"], color="k", lw=0.6, ls=":", label="training K")
    ax.set(xlabel="K (UEs)", ylabel="bandwidth above the convex optimum (%)", yscale="log",
           title=f"P-B: Σ B / Σ B* − 1, mean over {r['n_test']} drops per K")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------- CLI
@task_main
def main(argv=None) -> int:
    from pegnn.config import ConfigError, load_config
    ap = TaskArgumentParser(prog="python -m tasks.ofdma", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train", help="train the P-B GNN (model.attention=all: the all-attention variant)")
    p.add_argument("--config", type=path_arg, help="YAML config (defaults: DEFAULTS in this file)")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. train.max_steps=500 model.attention=all")
    q = sub.add_parser("evaluate")
    q.add_argument("--gnn", type=path_arg, nargs="+", required=True, help="policy.pt of the plan's GNN (one per seed)")
    q.add_argument("--gnn-all", type=path_arg, nargs="*", default=[], help="policy.pt of the all-attention GNN")
    q.add_argument("--n-test", type=positive_int, default=2000)
    q.add_argument("--out", type=path_arg, default=None, help="folder (default results/ofdma/eval)")
    args = ap.parse_task(argv, untimed=())
    try:
        if args.cmd == "train":
            cfg = load_config(args.config or {}, args.overrides, defaults=DEFAULTS)
            check_attention_override(cfg)
            ofdma_gains(1, int(cfg["sizes"]["K"]), 0, **cfg["channel"])   # channel keys checked before training
            train(cfg)
            return 0
        out = check_writable(args.out or ROOT / "results" / "ofdma" / "eval", "--out")
        gnn, gnn_all = [load_pb_policy(x) for x in args.gnn], [load_pb_policy(x) for x in args.gnn_all]
        for pol in gnn + gnn_all:
            pol.info.setdefault("seed", pol.info.get("config", {}).get("train", {}).get("seed"))
        channel = gnn[0].info.get("config", {}).get("channel", DEFAULTS["channel"])
        r = evaluate(gnn, gnn_all, args.n_test, out, channel)
        for K, v in r["by_K"].items():
            row = "  ".join(f"{f} {v[f]['bandwidth_ratio_mean' if f.startswith('GNN') else 'bandwidth_ratio']:.4f}"
                            for f in ("GNN", "GNN-all-attention", "equal share") if f in v)
            print(f"K={K:<3} {row}")
        print(f"wrote {out / 'eval.json'}, {out / 'ofdma.png'}")
    except (ConfigError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
