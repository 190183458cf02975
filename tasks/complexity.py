r"""Inference complexity of judicious vs all-attention GNNs (paper 002 Sec. IV-D).

    python -m tasks.complexity [--specs ris_pr mimo_pm] [--scales 1 2 4] [--hidden 16] [--layers 2]
                               [--batch 2] [--reps 5] [--out results/bench/complexity.json]

For a problem with sets of sizes :math:`N_s` and interference on one of them, Sec. IV-D
predicts :math:`O(N_{\rm interf}^2\prod_{s\ne{\rm interf}}N_s)` FLOPs for the GNN with
attention only where the plan puts it (``attention='auto'``, "judicious") and
:math:`O(\prod_s N_s^2)` for a GNN whose processors are attention in *every* recursion
(as in its ref. [22]), i.e. :math:`\prod_{s\ne{\rm interf}}N_s` times more.

What is measured, per spec and size (all set sizes multiplied by a common ``scale``):

* **FLOPs per forward** with :class:`torch.utils.flop_counter.FlopCounterMode`. It counts
  the matrix products only — ``mm``/``addmm`` (every ``nn.Linear``), ``bmm`` (every
  ``einsum``), convolutions, SDPA — at 2 FLOPs per multiply-add; element-wise work
  (means/poolings, scatters, ReLU, LayerNorm, softmax) is *not* counted. The count is
  split into ``attention_pairwise`` (the score and message ``einsum``\ s of the attention
  processors: the :math:`N_s^2` part), ``attention_linear`` (their f1/f2/v maps) and the
  rest (embedding, MDE, MDI/PMA read-out);
* **wall time** of one batched forward (``torch.no_grad``, 1 thread, median of
  ``reps`` runs, the two models interleaved in the same process);
* **parameters**.

And, for the paper's all-attention formula, a **reference nested all-attention**
aggregation (:func:`nested_attention_flops`): the processor of recursion 1 is
attention between two sub-tensors, and its inner processors are again attention, so
every entry of D scores every other entry — one score per pair of entries,
:math:`\prod_s N_s^2` of them. Its FLOPs are counted with the same FlopCounterMode on
``meta`` tensors (shapes only, nothing is allocated), per attention layer.

Note on the engine: ``PEGNN(attention='all')`` puts a *separate* attention processor
on every set (each scores pairs of elements of one set, pooled over the others, as in
:class:`pegnn.nn.attention.SetAttention`), so its cost is
:math:`\sum_s c_s N_s^2\prod_{s'\ne s}N_{s'}` (:math:`c_s` = 2 scopes for a nested
set, 1 for a normal one), not the nested :math:`\prod_s N_s^2`: the measured ratio
all/judicious tends to a constant :math:`\sum_s c_s N_s / (c_{\rm interf}N_{\rm interf})`,
and the JSON reports the measured numbers of both next to each other.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

from pegnn.config import TaskArgumentParser, out_file, positive_int, task_main

ROOT = Path(__file__).resolve().parents[1]

# per spec: base sizes at scale 1; every recursion set is multiplied by the scale, the
# parent sets (M = 2 cells of P-R, 2 UEs of P-M) stay fixed, so every state axis grows
# linearly in the scale and the predicted exponents are those of Sec. IV-D in N.
BASE = {
    "ris_pr": {"cell": 2, "ue": 2, "rf": 2, "ant_bs": 4, "re": 4},
    "mimo_pm": {"ue": 2, "ds": 4, "ant_ue": 4, "ant_bs": 16},
}
FIXED = {"ris_pr": {"cell"}, "mimo_pm": {"ue"}}


def sizes_at(spec_name: str, scale: int) -> dict:
    return {s: (n if s in FIXED[spec_name] else n * scale) for s, n in BASE[spec_name].items()}


def global_counts(spec, sizes: dict) -> dict:
    """Elements of each recursion set over the whole graph (a nested set: over all parents)."""
    out = {}
    for s in sizes:
        n, p = sizes[s], spec.parent(s)
        while p is not None:
            n *= sizes[p]
            p = spec.parent(p)
        out[s] = n
    return out


def random_inputs(spec, counts: dict, B: int) -> dict:
    """Random inputs ``[B, *global sizes]`` (FLOPs and time do not depend on the values)."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for name, t in spec.inputs.items():
        shape = (B, *[counts[d] for d in t.dims])
        x = torch.randn(*shape, generator=g)
        out[name] = torch.complex(x, torch.randn(*shape, generator=g)) if t.complex else x.abs() + 0.1
    return out


# ---------------------------------------------------------------- counting
def flop_breakdown(model, graph) -> dict:
    """FLOPs of one forward of ``model`` on ``graph`` (see the module docstring)."""
    from torch.utils.flop_counter import FlopCounterMode

    from pegnn.nn.attention import SetAttention
    # FlopCounterMode counts matmul-like ops only: count the attention pairs on the
    # einsum route. The loop route that small sets take does the same multiply-adds
    # (2 n² O C per einsum) as elementwise ops, which the counter would not see.
    loop_max, SetAttention.LOOP_MAX = SetAttention.LOOP_MAX, 0
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(graph)
    finally:
        SetAttention.LOOP_MAX = loop_max
    counts = fc.get_flop_counts()
    pair = lin = 0
    for name, ops in counts.items():
        parts = name.split(".")
        # PEGNN.layers.<l>.attention.<i>: the processor itself (its einsums); deeper: its Linear maps
        if len(parts) == 5 and parts[1] == "layers" and parts[3] == "attention":
            for op, n in ops.items():
                if "bmm" in str(op):
                    pair += n
                else:
                    lin += n
    total = fc.get_total_flops()
    return {"total": int(total), "attention_pairwise": int(pair), "attention_linear": int(lin),
            "other": int(total - pair - lin)}


def count_flops(model, graph) -> int:
    """Total matmul FLOPs of one forward (FlopCounterMode)."""
    return flop_breakdown(model, graph)["total"]


def predicted_pairwise(spec, counts: dict, attention_sets: list, B: int, C: int, L: int) -> int:
    r"""The engine's attention-pair FLOPs: per layer, set s and scope, two einsums of
    :math:`2BN_s^2\prod_{s'\ne s}N_{s'}C` each (the dense path scores all N_s² pairs and
    masks the scope)."""
    E = math.prod(counts.values())
    total = 0
    for s in attention_sets:
        scopes = 2 if spec.parent(s) else 1
        total += L * scopes * 2 * 2 * B * E * counts[s] * C
    return total


def nested_attention_flops(counts: dict, C: int, B: int = 1) -> int:
    """FLOPs of one reference nested all-attention aggregation over the state entries
    (f1, f2, v maps; scores of every entry pair; messages), counted by FlopCounterMode on
    ``meta`` tensors: ``6 B E C² + 4 B E² C`` with ``E = Π_s N_s``."""
    from torch.utils.flop_counter import FlopCounterMode
    E = math.prod(counts.values())
    x = torch.empty(B, E, C, device="meta")
    w = [torch.empty(C, C, device="meta") for _ in range(3)]
    with FlopCounterMode(display=False) as fc:
        q, k, v = (x @ wi for wi in w)
        alpha = q @ k.transpose(1, 2)            # [B, E, E]: one score per pair of entries
        alpha @ v
    return int(fc.get_total_flops())


def _median_time(fn, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


def measure(spec_name: str, scale: int, hidden: int = 16, layers: int = 2, batch: int = 2, reps: int = 5,
            time_it: bool = True) -> dict:
    """Judicious vs all-attention at one size: FLOPs, pairwise FLOPs (measured and
    predicted), parameters, median forward time."""
    from pegnn import load_spec
    from pegnn.graph import build_batch
    from pegnn.models import PEGNN
    spec = load_spec(ROOT / "graphs" / f"{spec_name}.yaml")
    sizes = sizes_at(spec_name, scale)
    models = {"judicious": PEGNN(spec, hidden=hidden, layers=layers, attention="auto").eval(),
              "all": PEGNN(spec, hidden=hidden, layers=layers, attention="all").eval()}
    axes = models["all"].axes
    counts = {a: c for a, c in global_counts(spec, sizes).items() if a in axes}
    graph = build_batch(spec, sizes, random_inputs(spec, global_counts(spec, sizes), batch), pairs=())
    row = {"scale": scale, "sizes": sizes, "N": counts, "entries": math.prod(counts.values()), "batch": batch}
    interf = models["judicious"].attention_sets
    for name, m in models.items():
        fl = flop_breakdown(m, graph)
        row[name] = {"attention_sets": m.attention_sets, "params": sum(p.numel() for p in m.parameters()),
                     "flops": fl, "flops_per_sample": fl["total"] / batch,
                     "predicted_pairwise": predicted_pairwise(spec, counts, m.attention_sets, batch, hidden, layers)}
    if time_it:
        fns = {n: (lambda m=m: _no_grad(m, graph)) for n, m in models.items()}
        for f in fns.values():
            f()                                   # warm-up (caches, allocator)
        ts = {n: [] for n in fns}
        for _ in range(reps):                     # interleaved, same process, same load
            for n, f in fns.items():
                ts[n].append(_median_time(f, 1))
        for n in fns:
            row[n]["sec_per_forward"] = sorted(ts[n])[len(ts[n]) // 2]
    row["ratio_all_over_judicious"] = {
        "flops": row["all"]["flops"]["total"] / row["judicious"]["flops"]["total"],
        "pairwise_flops": row["all"]["flops"]["attention_pairwise"] / row["judicious"]["flops"]["attention_pairwise"],
        "params": row["all"]["params"] / row["judicious"]["params"],
        **({"time": row["all"]["sec_per_forward"] / row["judicious"]["sec_per_forward"]} if time_it else {})}
    others = math.prod(c for a, c in counts.items() if a not in interf)
    row["paper"] = {"judicious_order": counts[interf[0]] ** 2 * others if interf else None,
                    "all_attention_order": math.prod(c * c for c in counts.values()),
                    "predicted_ratio_prod_others": others,
                    "nested_all_attention_flops_per_layer": nested_attention_flops(counts, hidden, batch) // batch}
    return row


def _no_grad(m, g):
    with torch.no_grad():
        return m(g)


# ---------------------------------------------------------------- report
def slope(xs, ys) -> float:
    """Least-squares slope of log(ys) against log(xs): the growth exponent."""
    lx = torch.tensor([math.log(x) for x in xs], dtype=torch.float64)
    ly = torch.tensor([math.log(y) for y in ys], dtype=torch.float64)
    lx = lx - lx.mean()
    return float((lx * (ly - ly.mean())).sum() / lx.square().sum())


def exponents(rows: list) -> dict:
    """Measured growth exponents in the common scale factor of every set size, next to
    the paper's predicted ones (judicious: 2 + (S-1); all-attention: 2S)."""
    xs = [r["scale"] for r in rows]
    get = lambda f: slope(xs, [f(r) for r in rows])
    out = {"predicted_paper": {"judicious": get(lambda r: r["paper"]["judicious_order"]),
                               "all_attention": get(lambda r: r["paper"]["all_attention_order"]),
                               "ratio": get(lambda r: r["paper"]["predicted_ratio_prod_others"])},
           "measured": {}}
    for m in ("judicious", "all"):
        out["measured"][m] = {"total_flops": get(lambda r: r[m]["flops"]["total"]),
                              "attention_pairwise_flops": get(lambda r: r[m]["flops"]["attention_pairwise"]),
                              "params": get(lambda r: r[m]["params"])}
        if "sec_per_forward" in rows[0][m]:
            out["measured"][m]["time"] = get(lambda r: r[m]["sec_per_forward"])
    out["measured"]["ratio_all_over_judicious_flops"] = get(lambda r: r["ratio_all_over_judicious"]["flops"])
    out["measured"]["reference_nested_all_attention"] = get(lambda r: r["paper"]["nested_all_attention_flops_per_layer"])
    return out


def run(specs, scales, hidden, layers, batch, reps, out: Path, time_it=True) -> dict:
    res = {"what_is_counted": "FlopCounterMode: matmuls only (mm/addmm = nn.Linear, bmm = einsum, conv, SDPA), "
                              "2 FLOPs per multiply-add, forward pass of one batch, reported per sample; "
                              "element-wise ops (means, scatters, ReLU, LayerNorm, softmax) not counted",
           "config": {"hidden": hidden, "layers": layers, "batch": batch, "reps": reps, "threads": torch.get_num_threads()},
           "specs": {}}
    for name in specs:
        rows = []
        for s in scales:
            t0 = time.time()
            rows.append(measure(name, s, hidden, layers, batch, reps, time_it))
            r = rows[-1]
            print(f"{name} scale {s}: N={r['N']} E={r['entries']}  FLOPs/sample judicious "
                  f"{r['judicious']['flops_per_sample']:.3e} all {r['all']['flops_per_sample']:.3e} "
                  f"(ratio {r['ratio_all_over_judicious']['flops']:.2f}; paper predicts "
                  f"{r['paper']['predicted_ratio_prod_others']})"
                  + (f"  time ratio {r['ratio_all_over_judicious']['time']:.2f}" if time_it else "")
                  + f"  [{time.time() - t0:.0f} s]", flush=True)
        res["specs"][name] = {"rows": rows, "exponents": exponents(rows)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    plot(res, out.with_suffix(".png"))
    return res


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    specs = list(res["specs"])
    fig, axes = plt.subplots(len(specs), 2, figsize=(12.5, 4.8 * len(specs)), squeeze=False)
    for i, name in enumerate(specs):
        rows = res["specs"][name]["rows"]
        ex = res["specs"][name]["exponents"]
        xs = [r["scale"] for r in rows]
        ax = axes[i, 0]
        B = rows[0]["batch"]
        series = [("judicious (auto), total", lambda r: r["judicious"]["flops"]["total"] / B, "o-", "tab:blue"),
                  ("all-attention engine, total", lambda r: r["all"]["flops"]["total"] / B, "s-", "tab:red"),
                  ("judicious, attention pairs", lambda r: r["judicious"]["flops"]["attention_pairwise"] / B, "o:", "tab:blue"),
                  ("all engine, attention pairs", lambda r: r["all"]["flops"]["attention_pairwise"] / B, "s:", "tab:red"),
                  ("nested all-attention (paper, 1 layer)", lambda r: r["paper"]["nested_all_attention_flops_per_layer"],
                   "^--", "k")]
        for label, f, st, c in series:
            ys = [f(r) for r in rows]
            ax.loglog(xs, ys, st, color=c, label=f"{label}: slope {slope(xs, ys):.2f}")
        ref = rows[0]["judicious"]["flops"]["total"] / B
        for p, ls in ((ex["predicted_paper"]["judicious"], (0, (1, 3))), (ex["predicted_paper"]["all_attention"], (0, (5, 5)))):
            ax.loglog(xs, [ref * (x / xs[0]) ** p for x in xs], color="gray", ls=ls, lw=0.8, label=f"∝ scale^{p:.0f}")
        ax.set(xlabel="scale (every set size × scale)", ylabel="FLOPs per sample (FlopCounterMode)",
               title=f"{name}: N at scale 1 = {rows[0]['N']}")
        ax.set_xticks(xs, [str(x) for x in xs]); ax.minorticks_off()
        ax.grid(alpha=.3, which="both"); ax.legend(fontsize=6.5)
        ax = axes[i, 1]
        ax.semilogx(xs, [r["ratio_all_over_judicious"]["flops"] for r in rows], "s-", color="tab:red", label="FLOPs all/judicious")
        if "time" in rows[0]["ratio_all_over_judicious"]:
            ax.semilogx(xs, [r["ratio_all_over_judicious"]["time"] for r in rows], "d-", color="tab:orange",
                        label="wall time all/judicious")
        ax.semilogx(xs, [r["ratio_all_over_judicious"]["params"] for r in rows], "x-", color="tab:green",
                    label="params all/judicious")
        ax.set(xlabel="scale", ylabel="ratio (engine)",
               title=f"paper's nested ratio Π others = {[r['paper']['predicted_ratio_prod_others'] for r in rows]}")
        ax.set_xticks(xs, [str(x) for x in xs]); ax.minorticks_off()
        ax.grid(alpha=.3, which="both"); ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=130); plt.close(fig)


@task_main
def main(argv=None) -> int:
    ap = TaskArgumentParser(prog="python -m tasks.complexity", description=__doc__.splitlines()[0])
    ap.add_argument("--specs", nargs="+", default=["ris_pr", "mimo_pm"], help=f"some of {sorted(BASE)}")
    ap.add_argument("--scales", nargs="+", type=positive_int, default=[1, 2, 4])
    ap.add_argument("--hidden", type=positive_int, default=16)
    ap.add_argument("--layers", type=positive_int, default=2)
    ap.add_argument("--batch", type=positive_int, default=2)
    ap.add_argument("--reps", type=positive_int, default=5)
    ap.add_argument("--no-time", action="store_true", help="FLOPs and parameters only")
    ap.add_argument("--out", type=out_file, default=str(ROOT / "results" / "bench" / "complexity.json"))
    args = ap.parse_task(argv)
    try:
        bad = [s for s in args.specs if s not in BASE]
        if bad:
            raise ValueError(f"--specs: unknown spec {bad[0]!r}; expected some of {sorted(BASE)}")
        if len(set(args.scales)) < 2 or min(args.scales) < 1:
            raise ValueError(f"--scales: need >= 2 distinct positive integers, got {args.scales}")
        for k in ("hidden", "layers", "batch", "reps"):
            if getattr(args, k) < 1:
                raise ValueError(f"--{k} must be >= 1, got {getattr(args, k)}")
        res = run(args.specs, sorted(set(args.scales)), args.hidden, args.layers, args.batch, args.reps,
                  Path(args.out), not args.no_time)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, r in res["specs"].items():
        print(name, json.dumps(r["exponents"], indent=1))
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
