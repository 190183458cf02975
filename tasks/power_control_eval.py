"""Evaluation of the power-control GNN (problem P-C, paper 002 eq. 18): the plan's GNN and
the all-attention GNN against WMMSE-PC, full and random power on the same drops; whether
forced attention gains anything (paired per drop, t-test over training seeds); size
generalisation with the pair density or the area fixed; the bench (time and FLOPs per
sample at K = 10, 20, 30).

The command line is :mod:`tasks.power_control`; results and what they mean:
results/power_control/README.md.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from tasks import timed
from tasks.attention_study import seed_t_test
from tasks.power_control import P_MAX, d2d_channels

# ---------------------------------------------------------------- evaluate
def compare(G: torch.Tensor, gnn: list, gnn_all: list, seed: int = 0, wmmse_iter: int = 500, reps: int = 3) -> dict:
    """Per-drop sum rates ``[n]`` and seconds per sample of every method on the same drops.

    GNN policies are given per training seed (``GNN/s<i>``); WMMSE-PC starts from full
    power (Shen et al. 2011 as in paper 002 eq. 21) and stops at tol 1e-4 or ``wmmse_iter``.
    """
    from pegnn.wireless.power_control import pc_rates, wmmse_power_control
    n, K, _ = G.shape
    gen = torch.Generator().manual_seed(seed * 7919 + K)
    runs = {"WMMSE-PC": lambda: wmmse_power_control(G, 1.0, P_MAX, max_iter=wmmse_iter)[0],
            "full power": lambda: torch.full((n, K), P_MAX),
            "random power": lambda: P_MAX * torch.rand(n, K, generator=gen)}
    for label, pols in (("GNN", gnn), ("GNN-all-attention", gnn_all)):
        for i, pol in enumerate(pols):
            runs[f"{label}/s{pol.info.get('seed', i)}"] = (lambda pol=pol: pol(G))
    res = {}
    for name, fn in runs.items():
        p, sec = timed(fn, reps if not name.startswith(("full", "random")) else 1)
        res[name] = {"rate": pc_rates(G.double(), p.double(), 1.0).sum(-1), "sec_per_sample": sec / n}
    return res


def summary(res: dict) -> dict:
    """JSON-able summary: mean/std sum rate, ratio to WMMSE, per-family means over seeds."""
    w = res["WMMSE-PC"]["rate"].mean()
    out = {k: {"sum_rate": float(v["rate"].mean()), "std_over_drops": float(v["rate"].std()),
               "ratio_to_wmmse": float(v["rate"].mean() / w), "sec_per_sample": v["sec_per_sample"]}
           for k, v in res.items()}
    for fam in ("GNN", "GNN-all-attention"):
        keys = [k for k in res if k.split("/")[0] == fam]
        if keys:
            ratios = torch.tensor([out[k]["ratio_to_wmmse"] for k in keys])
            out[fam] = {"seeds": len(keys), "ratio_to_wmmse_mean": float(ratios.mean()),
                        "ratio_to_wmmse_std_over_seeds": float(ratios.std()) if len(keys) > 1 else 0.0,
                        "sum_rate_mean": float(torch.tensor([out[k]["sum_rate"] for k in keys]).mean()),
                        "sec_per_sample": float(torch.tensor([out[k]["sec_per_sample"] for k in keys]).median())}
    return out


def attention_gain(res: dict) -> dict:
    """All-attention minus plain GNN: per-drop paired differences (per seed, then pooled
    over seeds), the spread of the per-seed mean differences, and the t-test over
    training seeds (:func:`tasks.attention_study.seed_t_test`) that decides "significant"."""
    plain = sorted(k for k in res if k.startswith("GNN/"))
    att = sorted(k for k in res if k.startswith("GNN-all-attention/"))
    if not plain or not att:
        return {}
    per_seed = []
    for a in att:       # pair each all-attention seed with the plain GNN of the same seed, if trained
        p = next((k for k in plain if k.split("/")[1] == a.split("/")[1]), None)
        if p is None:
            continue
        diff = res[a]["rate"] - res[p]["rate"]
        per_seed.append({"pair": [p, a], "mean_diff": float(diff.mean()), "std_over_drops": float(diff.std()),
                         "sem": float(diff.std() / math.sqrt(len(diff))),
                         "rel_diff": float(diff.mean() / res[p]["rate"].mean())})
    if not per_seed:
        return {}
    means = torch.tensor([d["mean_diff"] for d in per_seed])
    mp = torch.stack([res[k]["rate"] for k in plain]).mean(0)
    ma = torch.stack([res[k]["rate"] for k in att]).mean(0)
    return {"per_seed": per_seed, "mean_diff_over_seeds": float(means.mean()),
            "std_of_seed_means": float(means.std()) if len(means) > 1 else None,
            "seed_avg_per_drop_diff_mean": float((ma - mp).mean()),
            "seed_avg_per_drop_diff_std": float((ma - mp).std()),
            "rel_diff_of_seed_averages": float((ma - mp).mean() / mp.mean()),
            "over_seeds": seed_t_test(means)}


def evaluate(gnn: list, gnn_all: list, n_test: int, out_dir: Path, channel: dict, quick: bool = False) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out_dir.mkdir(parents=True, exist_ok=True)
    K0 = 10
    side0 = math.sqrt(K0 / channel["density"]) if channel.get("side") is None else channel["side"]
    result = {"n_test": n_test, "K_train": K0, "channel": channel, "units": "sum rate in bits/s/Hz",
              "policies": {"GNN": [p.info.get("path") for p in gnn], "GNN-all-attention": [p.info.get("path") for p in gnn_all]},
              "params": {"GNN": sum(x.numel() for x in gnn[0].model.parameters()) if gnn else None,
                         "GNN-all-attention": sum(x.numel() for x in gnn_all[0].model.parameters()) if gnn_all else None}}
    G = d2d_channels(n_test, K0, 2, **channel)
    res = compare(G, gnn, gnn_all)
    result["K10"] = summary(res)
    result["attention_minus_plain"] = attention_gain(res)
    Ks = [5, 20] if quick else [5, 20, 30]
    result["generalisation"] = {}
    for mode in ("fixed_density", "fixed_area"):
        for Kg in Ks:
            ch = dict(channel, side=None if mode == "fixed_density" else side0)
            Gg = d2d_channels(max(n_test // 2, 100), Kg, 3, **ch)
            rg = compare(Gg, gnn, gnn_all, seed=3, reps=1)
            result["generalisation"][f"{mode}/K={Kg}"] = {**summary(rg), "attention_minus_plain": attention_gain(rg)}
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(result, Ks, out_dir / "power_control.png", plt)
    return result


def _plot(r: dict, Ks: list, path: Path, plt) -> None:
    fams = ["GNN", "GNN-all-attention", "WMMSE-PC", "full power", "random power"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.4), gridspec_kw={"width_ratios": [1, 1.35]})
    k10 = r["K10"]
    vals = [k10[f]["sum_rate_mean"] if f.startswith("GNN") else k10[f]["sum_rate"] for f in fams if f in k10]
    errs = [k10[f].get("ratio_to_wmmse_std_over_seeds", 0) * k10["WMMSE-PC"]["sum_rate"] if f.startswith("GNN")
            else 0 for f in fams if f in k10]
    names = [f for f in fams if f in k10]
    a1.bar(names, vals, yerr=errs, color=["tab:blue", "tab:purple", "tab:green", "tab:gray", "tab:olive"][:len(names)])
    for i, v in enumerate(vals):
        a1.text(i, v, f"{v / k10['WMMSE-PC']['sum_rate']:.3f}", ha="center", va="bottom", fontsize=8)
    a1.set(ylabel="sum rate (bits/s/Hz)", title=f"P-C, K = 10, {r['n_test']} test drops (label: / WMMSE)")
    a1.tick_params(axis="x", labelrotation=20)
    for f, c in zip(fams, ["tab:blue", "tab:purple", "tab:green", "tab:gray", "tab:olive"]):
        if f == "WMMSE-PC":
            continue
        for mode, ls in (("fixed_density", "-"), ("fixed_area", "--")):
            ys = []
            for K in [10] + Ks:
                e = r["K10"] if K == 10 else r["generalisation"][f"{mode}/K={K}"]
                if f not in e:
                    break
                ys.append(e[f]["ratio_to_wmmse_mean"] if f.startswith("GNN") else e[f]["ratio_to_wmmse"])
            if len(ys) == len(Ks) + 1:
                order = sorted(range(len(ys)), key=lambda i: ([10] + Ks)[i])
                a2.plot([([10] + Ks)[i] for i in order], [ys[i] for i in order], ls, color=c, marker="o",
                        label=f"{f} ({mode.replace('_', ' ')})")
    a2.axhline(0.98, color="k", lw=0.8, ls=":")
    a2.set(xlabel="K (pairs), trained at K = 10", ylabel="sum rate / WMMSE-PC", title="generalisation, no retraining")
    a2.grid(alpha=.3); a2.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout(); fig.savefig(path, dpi=130); plt.close(fig)


# ---------------------------------------------------------------- bench
def bench(gnn, gnn_all, out: Path, n: int = 500) -> dict:
    """Per-sample inference time (batched, same run, median of 3), parameters and FLOPs
    per forward (``FlopCounterMode``) of GNN vs GNN-all-attention, WMMSE time, K = 10, 20, 30."""
    from tasks.complexity import count_flops
    res = {"n": n, "per_K": {}}
    for K in (10, 20, 30):
        G = d2d_channels(n, K, 5)
        r = summary(compare(G, [gnn], [gnn_all], seed=5))
        row = {k: {"sec_per_sample": v["sec_per_sample"], "ratio_to_wmmse": v["ratio_to_wmmse"]}
               for k, v in r.items() if "/" in k or k == "WMMSE-PC"}
        for label, pol in (("GNN", gnn), ("GNN-all-attention", gnn_all)):
            row[label + "_flops_per_sample"] = count_flops(pol.model, pol.graph(G[:8])) / 8
        row["flop_ratio_all_over_plain"] = row["GNN-all-attention_flops_per_sample"] / row["GNN_flops_per_sample"]
        res["per_K"][K] = row
    res["params"] = {"GNN": sum(x.numel() for x in gnn.model.parameters()),
                     "GNN-all-attention": sum(x.numel() for x in gnn_all.model.parameters())}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    return res


def print_table(r: dict) -> None:
    print(f"{'K=10':<26}{'sum rate':>10}{'/WMMSE':>9}{'ms/sample':>11}")
    for k, v in r["K10"].items():
        if "sum_rate" in v:
            print(f"{k:<26}{v['sum_rate']:10.3f}{v['ratio_to_wmmse']:9.4f}{1e3 * v['sec_per_sample']:11.4f}")
    a = r["attention_minus_plain"]
    if a:
        print(f"all-attention - plain: {a['mean_diff_over_seeds']:+.4f} bits/s/Hz (per-seed means), "
              f"per-drop {a['seed_avg_per_drop_diff_mean']:+.4f} ± {a['seed_avg_per_drop_diff_std']:.4f}")
        t = a["over_seeds"]
        if t["p"] is not None:
            print(f"  t-test over {t['seeds']} training seeds: t = {t['t']:.2f}, p = {t['p']:.3g}")
    for k, v in r["generalisation"].items():
        print(f"{k:<22} GNN/WMMSE {v['GNN']['ratio_to_wmmse_mean']:.4f}  all-att/WMMSE "
              f"{v['GNN-all-attention']['ratio_to_wmmse_mean']:.4f}  full/WMMSE {v['full power']['ratio_to_wmmse']:.4f}")


if __name__ == "__main__":
    from tasks import not_a_command
    not_a_command("tasks.power_control_eval", "python -m tasks.power_control evaluate")
