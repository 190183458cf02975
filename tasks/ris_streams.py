"""How many UEs the RIS GNN serves, against BCD and against the best any one-beam precoder can do.

    python -m tasks.ris_streams [--checkpoint NAME=FILE ...] [--n-re 8,10,20,40,100] [--n-test 250]
                                [--ascent-iters 1500] [--out results/ris_precoding/streams.json]

Why: trained at N_RE = 8, the GNN keeps ≥ 0.90 of BCD's SE up to N_RE = 40 but not at
N_RE = 100 (Fig. 6). At the training size the sum-SE optimum serves one UE (the BS→RIS
link is nearly rank one), and the GNN learned exactly that: a rank-one analog precoder
with all the power on one UE. With N_RE = 100 the reflected link is strong enough for BCD
to serve all three UEs. For each policy (the shipped ``ris_gnn`` by default, plus any
``--checkpoint NAME=FILE``) and each N_RE this writes, on the drops of the Fig. 6 N_RE
sweep (seed 3, the other sizes at the training values):

* the SE ratio to BCD and the mean per-UE rates, sorted per drop, of the GNN and of BCD;
* the UEs the GNN serves (columns of ``W_RF W_BB`` with more than 1 % of the power) and
  the second singular value of its analog precoder over the first;
* the best one-UE SE found and the upper bound (:func:`pegnn.wireless.ris_single_ue`),
  over BCD: what any precoder of rank one (one beam, however its power is split over the
  UEs) can reach;
* per-drop gradient ascent on the SE (:func:`pegnn.wireless.ris_ascent`, 1500 Adam steps)
  from three starts: from one beam per UE (:func:`~pegnn.wireless.tagged_mrt`, phases and
  precoder free), from the GNN's own output (is it a local maximum?), and from one beam
  per UE with the GNN's RIS phases held fixed (how far its phases carry a multi-UE
  precoder);
* the same ascent in the powers of the sum-SE-optimal beamforming structure and the
  phases (:func:`pegnn.wireless.dual_ascent`) from a neutral start: a second, more
  benign landscape.

It also draws ``streams.png`` beside the JSON.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from pegnn.config import TaskArgumentParser, out_file, positive_int, task_main

ROOT = Path(__file__).resolve().parents[1]
FIG6_SEED = 3          # the drops of the Fig. 6 sweeps (tasks.ris_figures.evaluate)


def served_ues(W: torch.Tensor, share: float = 0.01) -> torch.Tensor:
    """``[B]``: UEs whose precoder column carries more than ``share`` of the drop's power;
    ``W`` ``[B, M, N_B, K]`` (or ``[B, N_B, K]``)."""
    p = W.abs().square().sum(-2).flatten(1)                       # [B, U]
    return (p / p.sum(-1, keepdim=True) > share).sum(-1)


def analog_rank_ratio(analog: torch.Tensor) -> torch.Tensor:
    """``[B]``: σ₂/σ₁ of each drop's analog precoder ``[B, M, N_B, N_RF]`` (cell 0)."""
    s = torch.linalg.svdvals(analog[:, 0] if analog.dim() == 4 else analog)
    return s[:, 1] / s[:, 0]


def _sorted_rates(r: torch.Tensor) -> list[float]:
    return r.sort(dim=-1, descending=True).values.mean(0).tolist()


def streams(policies: dict, n_re_values, n_test: int, regime: str = "ris", progress: bool = True,
            ascent_iters: int = 1500, N_RF: int = 6) -> dict:
    from pegnn.wireless.ris import RISHybrid, hybrid_precoder, ris_rate
    from pegnn.wireless.ris_single_ue import ris_single_ue
    from pegnn.wireless.ris_ascent import dual_ascent, ris_ascent, tagged_mrt
    from pegnn.wireless.ris_bcd import ris_bcd
    from tasks.ris_data import channels
    from tasks.ris_precoding import _drops
    out = {}
    for n_re in n_re_values:
        ch = channels(n_test, FIG6_SEED, 3, 8, N_RF, n_re, 1, regime)
        c = ch.to(dtype=torch.complex128)
        bcd = ris_rate(c, ris_bcd(c), per_user=True)
        se_bcd = bcd.sum(-1).mean().item()
        one = ris_single_ue(c)
        multi = tagged_mrt(c, N_RF)

        def summary(o):   # a hybrid output on these drops: SE over BCD, rates, UEs served
            r = ris_rate(c, o, per_user=True)
            return {"over_bcd": r.sum(-1).mean().item() / se_bcd, "per_ue_sorted": _sorted_rates(r),
                    "ues_served": served_ues(hybrid_precoder(o.baseband, o.analog)).double().mean().item()}

        def ascent(start, **kw):
            return summary(ris_ascent(c, start, iters=ascent_iters, **kw)[0])

        row = {"bcd": {"se": se_bcd, "per_ue_sorted": _sorted_rates(bcd)},
               "single_ue": {"over_bcd": one.se.max(-1).values.mean().item() / se_bcd,
                             "upper_over_bcd": one.se_upper.max(-1).values.mean().item() / se_bcd},
               "ascent_tagged_mrt": ascent(multi),
               "ascent_dual": summary(dual_ascent(c, N_RF, iters=ascent_iters)[0])}
        for name, pol in policies.items():
            # N_RE = 100 graphs are large: 25 drops at a time
            o = RISHybrid(*(torch.cat(x).to(torch.complex128) for x in zip(
                *(pol(_drops(ch, i, i + 25)) for i in range(0, n_test, 25)))))
            row[name] = {**summary(o), "analog_sigma2_over_sigma1": analog_rank_ratio(o.analog).mean().item(),
                         "ascent_from_policy": ascent(o),
                         "ascent_tagged_mrt_policy_theta": ascent(multi._replace(theta=o.theta), fix_theta=True)}
        out[f"N_RE={n_re}"] = row
        if progress:
            print(f"N_RE={n_re}: BCD {se_bcd:.3f} per UE {[round(x, 2) for x in row['bcd']['per_ue_sorted']]}; "
                  f"one UE: best found {row['single_ue']['over_bcd']:.3f}, "
                  f"bound {row['single_ue']['upper_over_bcd']:.3f}; "
                  f"ascent from one beam per UE {row['ascent_tagged_mrt']['over_bcd']:.3f} "
                  f"({row['ascent_tagged_mrt']['ues_served']:.2f} UEs), in the dual form "
                  f"{row['ascent_dual']['over_bcd']:.3f} ({row['ascent_dual']['ues_served']:.2f} UEs)"
                  + "".join(f"; {n} {row[n]['over_bcd']:.3f} ({row[n]['ues_served']:.2f} UEs), ascent from it "
                            f"{row[n]['ascent_from_policy']['over_bcd']:.3f}, its phases + one beam per UE "
                            f"{row[n]['ascent_tagged_mrt_policy_theta']['over_bcd']:.3f}" for n in policies),
                  flush=True)
    return out


def _plot(res: dict, policies, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = res["N_RE"]
    x = [int(k.split("=")[1]) for k in rows]
    fig, ax = plt.subplots(figsize=(8.5, 3.8))
    for name in policies:
        line, = ax.plot(x, [r[name]["over_bcd"] for r in rows.values()], "o-", label=f"GNN {name}")
        ax.plot(x, [r[name]["ascent_from_policy"]["over_bcd"] for r in rows.values()], ".:", color=line.get_color(),
                label=f"ascent from GNN {name}")
    ax.plot(x, [r["ascent_tagged_mrt"]["over_bcd"] for r in rows.values()], "^-", color="black",
            label="ascent from one beam per UE")
    ax.plot(x, [r["ascent_dual"]["over_bcd"] for r in rows.values()], "D-", color="dimgrey",
            label="ascent, dual form (q, p, θ)")
    ax.plot(x, [r["single_ue"]["over_bcd"] for r in rows.values()], "s--", label="one UE: best found")
    ax.plot(x, [r["single_ue"]["upper_over_bcd"] for r in rows.values()], "v:",
            label="one beam (rank one): upper bound")
    ax.axhline(0.90, color="grey", lw=0.8, label="target 0.90")
    ax.set(xscale="log", xlabel="RIS elements N_RE (trained at 8)", ylabel="SE / BCD",
           title="One beam vs one beam per UE")
    ax.set_xticks(x, [str(v) for v in x])
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@task_main
def main(argv=None) -> int:
    from pegnn.policy_files import load_named_policies, pretrained
    ap = TaskArgumentParser(prog="python -m tasks.ris_streams", description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", nargs="*", default=[], metavar="NAME=FILE", help="more RIS policies")
    ap.add_argument("--n-re", default="8,10,20,40,100", help="RIS sizes, comma-separated")
    ap.add_argument("--n-test", type=positive_int, default=250)
    ap.add_argument("--ascent-iters", type=positive_int, default=1500, help="Adam steps of each ascent")
    ap.add_argument("--out", type=out_file, default=str(ROOT / "results" / "ris_precoding" / "streams.json"))
    args = ap.parse_task(argv)
    try:
        n_re = [int(v) for v in args.n_re.split(",")]
        if not n_re or min(n_re) <= 0:
            raise ValueError
    except ValueError:
        ap.error(f"--n-re: expected comma-separated positive ints, e.g. 8,100; got {args.n_re!r}")
    policies = {"ris_gnn": pretrained("ris_gnn")}
    try:
        policies |= load_named_policies(args.checkpoint, kind="ris")
    except ValueError as e:
        ap.error(str(e))
    regime = getattr(policies["ris_gnn"], "info", {}).get("regime", "ris")
    res = {"n_test": args.n_test, "seed": FIG6_SEED, "regime": regime, "share": 0.01,
           "sizes": {"K": 3, "N_B": 8, "N_RF": 6}, "ascent_iters": args.ascent_iters,
           "N_RE": streams(policies, n_re, args.n_test, regime, ascent_iters=args.ascent_iters)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    _plot(res, policies, out.with_suffix(".png"))
    print(f"wrote {out}, {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
