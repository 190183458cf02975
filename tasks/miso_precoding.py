r"""MU-MISO sum-rate precoding, problem P-S of paper 002 (eq. 12) — the smallest complete
task, written to be copied when you start your own problem.

    python -m tasks.miso_precoding train    [--config FILE] [key=value ...]
    python -m tasks.miso_precoding evaluate --checkpoint runs/miso_precoding/<run>/policy.pt [--n-test N]
                                            [--K K] [--N-T N_T]   (other sizes: no retraining)

The four pieces every task has, in the order they appear below:

1. **a spec**, ``graphs/miso_ps.yaml``: sets ``ue`` and ``ant_bs``; inputs ``H[ue, ant_bs]``
   (complex) and the scalar ``noise``; output ``W[ue, ant_bs]``; interference among ``ue``
   is not visible in ``H``, so the plan puts attention on ``ue`` (``pegnn inspect
   graphs/miso_ps.yaml`` says why);
2. **graph inputs** (:func:`graph_inputs`): plain tensors → the spec's inputs;
3. **an output layer and an objective** (:func:`precoder`, :func:`objective`): ``W`` scaled
   to total power 1, loss :math:`-\frac1B\sum_b\sum_k R_k` with
   :math:`R_k = \log_2(1 + |\mathbf h_k^T\mathbf w_k|^2 / (\sum_{j\ne k}|\mathbf h_k^T
   \mathbf w_j|^2 + \sigma^2))` (paper 002 eq. 12; :func:`pegnn.wireless.miso_rates`);
4. **training** through :func:`pegnn.train.train_policy` (Lightning: loop, best checkpoint,
   the resolved config, seed and git revision beside it), then
   :func:`pegnn.policy_files.save_policy` writes one self-contained file.

Data: i.i.d. Rayleigh :math:`\mathbf h_k \sim \mathcal{CN}(\mathbf 0, \mathbf I)`, each
drop's SNR drawn from ``data.snrs`` (dB) with :math:`\sigma^2 = 10^{-\mathrm{SNR}/10}` at
total power 1; drop seeds 0 (train), 1 (validation), 2 (test). ``evaluate`` compares the
policy with ZF, MMSE and WMMSE-MMSEInit (:mod:`pegnn.wireless`) on the same test drops at
every SNR of ``data.snrs`` (sum rate and time per drop) and writes
``results/miso_precoding/<run>/eval.json`` and ``sum_rate_vs_snr.png``.
Results: ``results/miso_precoding/README.md``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from pegnn.config import TaskArgumentParser, check_writable, path_arg, positive_int, task_main

ROOT = Path(__file__).resolve().parents[1]

DEFAULTS = {
    "spec": str(ROOT / "graphs" / "miso_ps.yaml"),
    "sizes": {"K": 4, "N_T": 8},
    "data": {"n_train": 20000, "n_val": 1000, "seed": 0, "val_seed": 1, "snrs": [0, 10, 20]},
    "model": {"hidden": 32, "layers": 3, "pattern": "all", "attention": "auto", "attention_kind": "inner",
              "pooling": "pma", "heads": 1, "residual": False, "norm": True},
    "train": {"batch_size": 128, "max_steps": 6000, "lr": 1e-3, "lr_decay": 0.1, "lr_decay_at": 0.7,
              "val_every": 250, "seed": 0, "devices": 1, "num_nodes": 1, "strategy": None, "workers": 0,
              "progress": True, "max_time": None, "log_every": 20, "val_batch_size": 1000,
              "grad_clip": 1.0, "init": None, "compile": False},
    "run": {"name": "miso", "out": str(ROOT / "runs" / "miso_precoding")},
}


# ---------------------------------------------------------------- data
def drops(n: int, K: int, N_T: int, seed: int, snrs) -> dict:
    """``n`` drops: ``H`` ``[n, K, N_T]`` complex64 and ``noise_var`` ``[n]`` (SNR per drop
    uniform over ``snrs`` dB), both from ``seed`` alone (regenerated bit-identically)."""
    from pegnn.wireless import rayleigh_channels
    # NaN fails the range test too
    if not isinstance(snrs, (list, tuple)) or not snrs or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and -100 <= s <= 100
                           for s in snrs):
        raise ValueError(f"data.snrs: expected a non-empty list of SNRs in dB within [-100, 100], got {snrs!r}")
    H = rayleigh_channels(n, K, 1, N_T, seed=seed)[:, :, 0]
    pick = torch.randint(len(snrs), (n,), generator=torch.Generator().manual_seed(seed + 10_007))
    snr = torch.tensor([float(s) for s in snrs])[pick]
    return {"H": H, "noise_var": 10 ** (-snr / 10)}


def graph_inputs(b: dict) -> dict:
    """Stacked samples → the spec's inputs: ``H`` as is, ``noise`` as −log10 σ² = SNR/10
    (O(1) over the whole SNR range, see :func:`pegnn.policies.noise_input`)."""
    from pegnn.policies import noise_input
    return {"H": b["H"], "noise": noise_input(b["noise_var"], "snr")}


def collate(spec, pairs=()):
    from pegnn.train import GraphCollate
    return GraphCollate(spec, sizes_of=lambda s: {"ue": s["H"].shape[0], "ant_bs": s["H"].shape[1]},
                        graph_inputs=graph_inputs, pairs=pairs)


# ---------------------------------------------------------------- output layer and objective
def precoder(out: dict) -> torch.Tensor:
    """Output layer: the network's ``W`` ``[B, K, N_T]`` scaled to
    :math:`\\|\\mathbf W\\|_F = 1` per drop (total power 1)."""
    W = out["W"]
    return W / W.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]


def objective(samples: dict, out: dict):
    """Loss −mean sum rate (paper 002 eq. 12) and the metric Lightning logs."""
    from pegnn.wireless import miso_rates
    rate = miso_rates(samples["H"], precoder(out), samples["noise_var"]).sum(-1)
    return -rate.mean(), {"sum_rate": rate.mean().detach()}


# ---------------------------------------------------------------- train
def train(cfg: dict) -> Path | None:
    from pegnn import load_spec
    from pegnn.policy_files import save_policy
    from pegnn.train import DictDataset, model_from_config, train_policy
    from pegnn.config_check import check_config
    check_config(cfg)                        # every value checked before any data is made
    spec = load_spec(cfg["spec"])
    torch.manual_seed(int(cfg["train"]["seed"]))
    model = model_from_config(spec, cfg["model"])
    sz, d = cfg["sizes"], cfg["data"]
    tr = drops(int(d["n_train"]), int(sz["K"]), int(sz["N_T"]), int(d["seed"]), d["snrs"])
    va = drops(int(d["n_val"]), int(sz["K"]), int(sz["N_T"]), int(d["val_seed"]), d["snrs"])
    run_dir = Path(cfg["run"]["out"]) / cfg["run"]["name"]
    info = train_policy(model, objective, DictDataset(tr), DictDataset(va),
                        collate(spec, model.attention_sets), cfg, run_dir)
    if info is None:                         # a DDP process other than rank 0
        return None
    save_policy(run_dir / "policy.pt", "miso", model, info)
    print(f"trained in {info['train_minutes']:.1f} min; policy: {run_dir / 'policy.pt'}")
    return run_dir / "policy.pt"


# ---------------------------------------------------------------- evaluate
class MISOPolicy:
    """A trained P-S policy on plain tensors: ``W = policy(H, noise_var)``, ``H`` ``[B, K, N_T]``
    complex (any K, N_T) and ``noise_var`` a float or ``[B]`` → ``W`` ``[B, K, N_T]``, total
    power 1."""

    def __init__(self, model, info: dict | None = None):
        self.model, self.info = model.eval(), dict(info or {})

    @torch.no_grad()
    def __call__(self, H: torch.Tensor, noise_var: torch.Tensor) -> torch.Tensor:
        from pegnn.graph import build_batch
        from pegnn.policies import finite_outputs, noise_input
        if H.dim() != 3 or not H.is_complex():
            raise ValueError(f"MISOPolicy: H must be complex [B, K, N_T], got {tuple(H.shape)} {H.dtype}")
        s2 = noise_input(noise_var, "sigma2").expand(H.shape[0])      # checked: finite and > 0
        g = build_batch(self.model.spec, {"ue": H.shape[1], "ant_bs": H.shape[2]},
                        graph_inputs({"H": H, "noise_var": s2}), pairs=self.model.attention_sets)
        return precoder(finite_outputs("MISOPolicy", self.model(g)))


def evaluate(policy: MISOPolicy, n_test: int, out_dir: Path, K: int, N_T: int, snrs) -> dict:
    """Average sum rate per SNR and seconds per drop of the policy and the baselines on the
    same test drops (ZF only where it exists, K ≤ N_T). Every method runs batched in
    float32 on the same thread count (the rates are computed in float64)."""
    from pegnn.wireless import miso_rates, mmse, wmmse, zf
    H = drops(n_test, K, N_T, 2, [0])["H"]               # [n, K, N_T] complex64
    Hm, H64 = H[:, :, None], H.to(torch.complex128)      # the baselines' MIMO shape [n, K, 1, N_T]
    policy(H[:2], 1.0)                                   # warm-up: graph structure, allocator
    res, sec = {}, {}
    for snr in snrs:
        s2 = torch.full((n_test,), 10 ** (-snr / 10))
        run = {"GNN": lambda: policy(H, s2), **({"ZF": lambda: zf(Hm)[:, :, 0]} if K <= N_T else {}),
               "MMSE": lambda: mmse(Hm, s2)[:, :, 0], "WMMSE-MMSEInit": lambda: wmmse(Hm, s2, init="mmse")[0][:, :, 0]}
        res[str(snr)] = {}
        for m, fn in run.items():
            t0 = time.perf_counter()
            W = fn()
            sec[m] = sec.get(m, 0.0) + time.perf_counter() - t0
            res[str(snr)][m] = float(miso_rates(H64, W.to(H64.dtype), s2.double()).sum(-1).mean())
    avg = {m: sum(r[m] for r in res.values()) / len(res) for m in res[str(snrs[0])]}
    r = {"sizes": {"K": K, "N_T": N_T}, "n_test": n_test, "test_seed": 2, "sum_rate_per_snr": res,
         "average_over_snr": avg, "ratio_over_wmmse_mmseinit": {m: a / avg["WMMSE-MMSEInit"] for m, a in avg.items()},
         "sec_per_sample": {m: t / (n_test * len(snrs)) for m, t in sec.items()}, "threads": torch.get_num_threads(),
         "policy": policy.info.get("path"), "attention": list(policy.model.attention_sets),
         "trained_sizes": policy.info.get("config", {}).get("sizes")}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(r, indent=2) + "\n")
    _plot(r, out_dir / "sum_rate_vs_snr.png")
    return r


def _plot(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    snrs = [float(s) for s in r["sum_rate_per_snr"]]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for m, style in zip(r["average_over_snr"], ("o-", "s--", "^--", "d:")):
        ax.plot(snrs, [row[m] for row in r["sum_rate_per_snr"].values()], style, label=m)
    ax.set(xlabel="SNR (dB)", ylabel="sum rate (bits/s/Hz)",
           title=f"P-S, K = {r['sizes']['K']}, N_T = {r['sizes']['N_T']}, {r['n_test']} drops")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def load(path) -> MISOPolicy:
    from pegnn.policy_files import load_task_policy
    return load_task_policy(path, "miso", MISOPolicy, "miso_precoding")


# ---------------------------------------------------------------- command line
@task_main
def main(argv=None) -> int:
    from pegnn.config import ConfigError, load_config
    ap = TaskArgumentParser(prog="python -m tasks.miso_precoding", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train", help="train the P-S GNN (key=value overrides the DEFAULTS)")
    p.add_argument("--config", type=path_arg, default=None)
    p.add_argument("overrides", nargs="*", help="key=value, e.g. train.max_steps=500 sizes.K=6")
    q = sub.add_parser("evaluate", help="GNN vs ZF, MMSE and WMMSE on held-out drops")
    q.add_argument("--checkpoint", type=path_arg, required=True)
    q.add_argument("--n-test", type=positive_int, default=500)
    q.add_argument("--K", type=positive_int, default=None, help="users (default: the training K)")
    q.add_argument("--N-T", type=positive_int, default=None, help="BS antennas (default: the training N_T)")
    q.add_argument("--out", type=path_arg, default=None, help="folder (default results/miso_precoding/<run>)")
    args = ap.parse_task(argv)
    try:
        if args.cmd == "train":
            train(load_config(args.config or {}, args.overrides, defaults=DEFAULTS))
            return 0
        pol = load(args.checkpoint)
        cfg = pol.info.get("config", DEFAULTS)
        K, N_T = args.K or int(cfg["sizes"]["K"]), args.N_T or int(cfg["sizes"]["N_T"])
        trained = (K, N_T) == (int(cfg["sizes"]["K"]), int(cfg["sizes"]["N_T"]))
        out = check_writable(args.out or ROOT / "results" / "miso_precoding" / (
            Path(args.checkpoint).parent.name + ("" if trained else f"_K{K}_NT{N_T}")), "--out")
        r = evaluate(pol, args.n_test, out, K, N_T, cfg["data"]["snrs"])
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    methods = list(r["average_over_snr"])
    print(f"{'SNR (dB)':>9}" + "".join(f"{m:>16}" for m in methods))
    for snr, row in r["sum_rate_per_snr"].items():
        print(f"{snr:>9}" + "".join(f"{row[m]:16.3f}" for m in methods))
    print(f"{'/ WMMSE':>9}" + "".join(f"{r['ratio_over_wmmse_mmseinit'][m]:16.3f}" for m in methods))
    print(f"{'ms/drop':>9}" + "".join(f"{1e3 * r['sec_per_sample'][m]:16.4f}" for m in methods))
    print(f"wrote {out / 'eval.json'}, {out / 'sum_rate_vs_snr.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
