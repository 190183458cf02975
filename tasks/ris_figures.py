"""The figures of the RIS hybrid-precoding task (``tasks/ris_precoding.py``), paper 002:

* Fig. 6 — :func:`evaluate`: SE ratio at the training sizes and along the size sweeps
  :data:`FIG6` (K, N_RF, N_B, N_RE), without retraining; writes ``eval.json`` and
  ``fig6_generalisation.png``.
* Fig. 5 — :func:`fig5`: SE ratio against training-set size for the three GNNs of
  :data:`VARIANTS` (attention on the UEs, on the RF chains, none); writes ``fig5.json``
  and ``fig5_attention.png`` into a folder that holds one config's runs.

SE ratio = mean SE of the GNN / mean SE of BCD on the same drops
(:func:`tasks.ris_precoding.se_ratio`). The numbers and what they show:
``results/ris_precoding/README.md``.
"""
from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

from pegnn.config import check_writable
from tasks.ris_data import ROOT, channels, regime_kwargs
from tasks.ris_precoding import RESULTS, baselines, check, gnn_se, se_ratio, train


# ---------------------------------------------------------------- Fig. 6
#: size-generalisation sweeps of paper 002 Fig. 6 (a few points each): (varied size, values, fixed sizes)
FIG6 = {
    "K": ("K", [1, 2, 3, 4, 5, 6], {"N_B": 8, "N_RF": 6, "N_RE": 8}),
    "N_RF": ("N_RF", [6, 8, 12, 16], {"N_B": 16, "N_RE": 40, "K": 3}),
    "N_B": ("N_B", [8, 10, 12, 16], {"N_RF": 6, "N_RE": 8, "K": 3}),
    "N_RE": ("N_RE", [8, 10, 20, 40, 100], {"N_B": 8, "N_RF": 6, "K": 3}),
}


def _relative(path: str) -> str:
    """A path inside the repository, relative to its root (JSON stays machine-independent)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except (ValueError, OSError):
        return str(path)


def trained_with(policy) -> str:
    """The training sizes of a policy, from the resolved config in its file (for a
    fine-tune, those of its last stage, and the file it started from at the git
    revision it was trained at)."""
    cfg = getattr(policy, "info", {}).get("config") or {}
    sz, d = cfg.get("sizes", {}), cfg.get("data", {})
    if not sz:
        return "unknown training sizes"
    s = ", ".join(f"{k}={sz[k]}" for k in ("K", "N_B", "N_RF", "N_RE") if k in sz)
    if d.get("mixed_K"):
        s = s.replace(f"K={sz['K']}", f"K ~ two-parameter exponential (mean 2, std 1, ≤ {d['mixed_K']})")
    if d.get("mixed_N_RE"):
        s = s.replace(f"N_RE={sz['N_RE']}", f"N_RE in {sorted(d['mixed_N_RE'])}")
    for key, what in (("power_db", "power"), ("cascade_db", "cascaded-link gain")):
        if d.get(key):
            s += f", {what} +U[{d[key][0]:g}, {d[key][1]:g}] dB"
    if getattr(policy, "form", "hybrid") == "dual":
        s += "; dual-form output"
    init = (cfg.get("train") or {}).get("init")
    if init:   # a fine-tune: the sizes and data above are its last stage's
        rev = str(policy.info.get("git_revision") or "")[:7]
        name = Path(str(init)).name
        name = f"{Path(str(init)).parent.name}/{name}" if name == "policy.pt" else name   # a run's policy: its run
        s += f"; fine-tune of {name}" + (f" as of {rev}" if rev else "")
    return s


def evaluate(policy, n_test: int, out_dir: Path, regime: str, quick=False, sweeps=FIG6, progress=True,
             sweep_policies=None) -> dict:
    """SE ratio at the training sizes and the Fig. 6 size sweeps (no retraining).

    ``sweep_policies`` maps a sweep name (``"K"``, ``"N_RE"``, ...) to the policy that
    sweep uses — paper 002 trains one GNN per sub-figure (mixed K for (a), N_RE = 10 for
    (d)); sweeps not named use ``policy``."""
    sweep_policies = dict(sweep_policies or {})
    unknown = set(sweep_policies) - set(sweeps)
    if unknown:
        raise ValueError(f"sweep policies for unknown sweeps {sorted(unknown)}; sweeps are {sorted(sweeps)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    res = {"regime": regime, "channels": regime_kwargs(regime), "n_test": n_test,
           "policy_info": {k: v for k, v in getattr(policy, "info", {}).items() if k != "config"}}
    base = {"K": 3, "N_B": 8, "N_RF": 6, "N_RE": 8}
    res["training_sizes"] = se_ratio(policy, n_test, 2, base, regime)
    if progress:
        print(f"training sizes: SE ratio {res['training_sizes']['se_ratio']:.4f}", flush=True)
    res["fig6"] = {}
    n_gen = max(n_test // 4, 50) if quick else max(n_test // 2, 100)
    for name, (var, values, fixed) in sweeps.items():
        pol = sweep_policies.get(name, policy)
        rows = []
        for v in (values[::2] + ([values[-1]] if len(values) % 2 == 0 else []) if quick else values):
            sizes = {**base, **fixed, var: v}
            r = se_ratio(pol, n_gen, 3, sizes, regime, batch=25 if sizes["N_RE"] * sizes["N_B"] > 200 else 100)
            rows.append(r)
            if progress:
                print(f"  {name}={v}: SE ratio {r['se_ratio']:.4f} (GNN {r['se_gnn']:.3f}, BCD {r['se_bcd']:.3f})",
                      flush=True)
        res["fig6"][name] = {"values": [r["sizes"][var] for r in rows], "rows": rows,
                             "trained_with": trained_with(pol),
                             "policy": _relative(getattr(pol, "info", {}).get("checkpoint", "shipped"))}
    (out_dir / "eval.json").write_text(json.dumps(res, indent=2) + "\n")
    _plot_fig6(res, out_dir / "fig6_generalisation.png")
    return res


def _plot_fig6(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(res["fig6"]), figsize=(3.6 * len(res["fig6"]), 3.4), squeeze=False)
    for ax, (name, sweep) in zip(axes[0], res["fig6"].items()):
        ax.plot(sweep["values"], [r["se_ratio"] for r in sweep["rows"]], "o-", label="GNN (user attention)")
        ax.plot(sweep["values"], [r["se_bcd_random_phases"] / r["se_bcd"] for r in sweep["rows"]], "s:",
                color="gray", label="BCD, random phases")
        ax.axhline(0.9, color="k", ls="--", lw=0.8)
        fixed = {k: v for k, v in sweep["rows"][0]["sizes"].items() if k != name}
        title = ", ".join(f"{k}={v}" for k, v in fixed.items())
        title += "\n" + "\n".join(textwrap.wrap(f"trained at {sweep['trained_with']}", 44))
        ax.set(xlabel=name, ylim=(0, 1.05))
        ax.set_title(title, fontsize=8)
        ax.grid(alpha=.3)
    axes[0][0].set_ylabel("SE ratio to BCD")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Fig. 6: size generalisation without retraining (regime {res['regime']!r})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------- Fig. 5
#: the three GNNs of paper 002 Fig. 5: ``model.attention`` of each.
VARIANTS = {"user attention": "auto", "RF attention": ["rf"], "no attention": "none"}


def fig5(base_cfg: dict, sizes=(250, 1000, 4000), n_test: int = 500, out_dir: Path | None = None,
         variants=VARIANTS) -> dict:
    """Train the three GNNs of Fig. 5 at each training-set size (same steps each);
    results in ``results/ris_precoding/fig5_<regime>/``. Resumable, and several
    processes may fill one folder with different ``sizes`` at once (each write merges
    the runs on disk); a folder whose runs were trained with another config is refused."""
    from pegnn.policy_files import load_policy
    from pegnn.train import model_from_config
    model_from_config(check(base_cfg), base_cfg["model"])   # a bad config fails before the test drops are made
    out_dir = check_writable(out_dir or RESULTS / f"fig5_{base_cfg['data']['regime']}", "--out")
    path = out_dir / "fig5.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    setup = fig5_setup(base_cfg, n_test)
    if res.get("runs"):
        _check_same_setup(path, res, setup)
    res.update({**setup, "command": " ".join(sys.argv)})
    res.setdefault("runs", {})
    test = channels(n_test, 2, **{k: base_cfg["sizes"][k] for k in ("K", "N_B", "N_RF", "N_RE")},
                    regime=base_cfg["data"]["regime"])
    bcd = baselines(test)
    res["se_bcd"] = bcd["bcd"].mean().item()
    res["se_bcd_random_phases"] = bcd["bcd_random_phases"].mean().item()
    for n in sizes:
        for name, att in variants.items():
            key = f"{name}|{n}"
            if key in res["runs"]:
                continue
            cfg = json.loads(json.dumps(base_cfg))
            cfg["data"]["n_train"] = int(n)
            cfg["model"]["attention"] = att
            cfg["train"]["progress"] = False
            cfg["run"]["name"] = f"{out_dir.name}_{name.split()[0].lower()}_{n}"
            t0 = time.time()
            pol = load_policy(train(cfg, quiet=True))
            se, _ = gnn_se(pol, test)
            res["runs"][key] = {"variant": name, "n_train": int(n), "se": se.mean().item(),
                                "se_ratio": se.mean().item() / res["se_bcd"], "train_minutes": (time.time() - t0) / 60,
                                "params": sum(p.numel() for p in pol.model.parameters()),
                                "threads": pol.info.get("threads")}      # what repeats the run bit for bit
            print(f"{name:>15} n={n:>5}: SE ratio {res['runs'][key]['se_ratio']:.4f} "
                  f"({res['runs'][key]['train_minutes']:.1f} min)", flush=True)
            res = _write_merged(path, res)                       # resumable
    _plot_fig5(res, out_dir / "fig5_attention.png")
    return res


#: the training settings a Fig. 5 folder records (its runs must share them).
FIG5_TRAIN_KEYS = ("batch_size", "max_steps", "lr", "lr_decay", "lr_decay_at", "grad_clip", "max_time", "seed")
#: the sizes of the folders written before ``fig5.json`` kept them (all at the defaults)
FIG5_SIZES_BEFORE = {"K": 3, "N_B": 8, "N_RF": 6, "N_RE": 8, "cells": 1}


def fig5_setup(base_cfg: dict, n_test: int) -> dict:
    """What every run in one Fig. 5 folder shares: the problem sizes, the channel regime,
    the training schedule, the features and the model (all but its attention, the variable)."""
    return {"sizes": dict(base_cfg["sizes"]), "regime": base_cfg["data"]["regime"],
            "channels": regime_kwargs(base_cfg["data"]["regime"]),
            "train": {k: base_cfg["train"].get(k) for k in FIG5_TRAIN_KEYS},
            "features": base_cfg["features"],
            "model": {k: v for k, v in base_cfg["model"].items() if k != "attention"}, "n_test": n_test}


def _check_same_setup(path: Path, old: dict, new: dict) -> None:
    """Refuse to add runs with another config to ``path`` (keys an older file lacks are
    not compared; a file without sizes was written at :data:`FIG5_SIZES_BEFORE`)."""
    old = {"sizes": FIG5_SIZES_BEFORE, **old}
    diff = []
    for k, v in new.items():
        if k not in old:
            continue
        if isinstance(v, dict) and isinstance(old[k], dict):
            diff += [f"{k}.{kk}: {old[k][kk]!r} there, {vv!r} now" for kk, vv in v.items()
                     if kk in old[k] and old[k][kk] != vv]
        elif old[k] != v:
            diff.append(f"{k}: {old[k]!r} there, {v!r} now")
    if diff:
        raise ValueError(f"fig5: {path} holds runs trained with another config ({'; '.join(diff)}); "
                         "use another --out")


def _write_merged(path: Path, res: dict) -> dict:
    """Write ``res`` with the runs another process wrote meanwhile merged in (atomic).
    Makes the folder: the ``--out`` check at the start leaves none behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        disk = json.loads(path.read_text()).get("runs", {})
        res["runs"] = {**disk, **res["runs"]}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    os.replace(tmp, path)
    return res


def _plot_fig5(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    for name, style in zip(VARIANTS, ["o-", "s--", "^:"]):
        rows = sorted((r["n_train"], r["se_ratio"]) for r in res["runs"].values() if r["variant"] == name)
        if rows:
            ax.plot(*zip(*rows), style, label=f"GNN ({name})")
    ax.axhline(res["se_bcd_random_phases"] / res["se_bcd"], color="gray", ls=":", lw=1, label="BCD, random phases")
    sizes = sorted({r["n_train"] for r in res["runs"].values()})
    sz = res.get("sizes", FIG5_SIZES_BEFORE)
    ax.set(xscale="log", xlabel="training samples", ylabel="SE ratio to BCD",
           title=f"Fig. 5: N_B = {sz['N_B']}, N_RE = {sz['N_RE']}, N_RF = {sz['N_RF']}, K = {sz['K']}\n"
                 f"({res['regime']} regime, {res['train']['max_steps']} steps each, seed {res['train'].get('seed', 0)})")
    ax.set_xticks(sizes, [str(n) for n in sizes])   # label the measured sizes only (no minor-tick clutter)
    ax.minorticks_off()
    ax.grid(alpha=.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    from tasks import not_a_command
    not_a_command("tasks.ris_figures", "python -m tasks.ris_precoding evaluate or fig5")
