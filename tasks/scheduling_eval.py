r"""Evaluation of TEUS user scheduling (paper 000 Sec. V-C): Fig. 6, Fig. 7, timing, label oracle.

A *scheme* is ``"<precoder>-<scheduler>"``. The scheduler picks K of the K̃ candidate users
(mask, bool ``[B, K̃]``, K True per row); the precoder :math:`G_{CP}` (MMSE, WMMSE or TECFP)
precodes the selected users ``H_sub`` ``[B, K, N_R, N_T]``; the score is their sum rate
:math:`R_{US}` (13) in bits/s/Hz, averaged over the B samples. Schedulers:

* ``Rand``: K users at random; ``Greedy``: the greedy search under the same precoder (the
  labels' algorithm, :func:`pegnn.wireless.greedy_schedule`); ``TEUS``: the policy.
* ``TEUS+S`` / ``Rand+S``: that mask after S rounds of swap search under MMSE
  (:func:`pegnn.wireless.swap_refine`); Rand+S says what the network's start is worth.

:func:`evaluate` is Fig. 6 (per SNR), :func:`fig7` is Fig. 7 (other N_T and K̃, no retraining),
:func:`bench` times TEUS against WMMSE-Greedy, and :class:`LabelOracle` stands in for TEUS to
measure what imitating the labels perfectly would reach. The command line is
:mod:`tasks.scheduling`; results and what they mean: results/scheduling/README.md.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from tasks.precoding_eval import refined, snr_table    # "X+S" names of a refined scheme, shared with TECFP+T
from tasks.scheduling import SNRS, channels, collate, objective, tecfp_policy

#: plot styles shared by Figs. 6 and 7: colour = precoder, line style = scheduler
COLOURS = {"MMSE": "tab:blue", "WMMSE": "tab:red", "TECFP": "tab:green"}
STYLES = {"Rand": ":v", "Greedy": "--s", "TEUS": "-o"}


# ---------------------------------------------------------------- schemes: precoder × scheduler
def precoders(names, tecfp_path=None) -> dict:
    """``{"MMSE": fn, "WMMSE": fn, "TECFP": fn}`` for the requested names; TECFP is
    skipped with a message when no policy is available."""
    from tasks.labels import make_precoder
    out = {}
    for name in names:
        tecfp = None
        if name == "tecfp":
            tecfp = tecfp_policy(tecfp_path, required=bool(tecfp_path))
            if tecfp is None:
                print("TECFP: skipped (no shipped TECFP policy yet; pass --tecfp runs/precoding/<run>/policy.pt)")
                continue
        out[name.upper()] = make_precoder(name, tecfp)[0]
    return out


class LabelOracle:
    """Stands in for TEUS and returns its training labels exactly: the greedy set over
    ``precoder`` (``"mmse"`` or ``"wmmse"``, :mod:`tasks.labels`). ``evaluate --oracle
    mmse`` thus measures what perfect imitation of the labels would reach, the ceiling of
    a TEUS trained on them; the gap between it and TEUS is the learner's."""

    def __init__(self, precoder: str):
        from tasks.labels import make_precoder
        self.P = make_precoder(precoder)[0]
        self.info = {"labels": precoder, "oracle": True}

    def __call__(self, H, s2, k: int):
        from pegnn.wireless.scheduling import greedy_schedule
        return greedy_schedule(H, s2, k, self.P)


def _style(sname: str, refine) -> str:
    """Line style of a scheduler: the paper's three from :data:`STYLES`; ``X+S``
    dash-dotted (TEUS) or dotted (Rand), one marker per ``S`` of ``refine``."""
    if sname in STYLES:
        return STYLES[sname]
    base, S = sname.split("+")
    return ("-." if base == "TEUS" else ":") + "^dP*"[list(refine).index(int(S)) % 4]


def _schemes(H, s2, k, teus, precs: dict, seed: int, refine=()) -> dict:
    """Sum rate (bits/s/Hz, mean over samples) and seconds per sample of every
    scheduler × precoder on one batch; the time covers scheduling *and* the final
    precoding of the selected users (the greedy search's own precoder calls included).
    ``refine``: also TEUS+S for each S, TEUS's mask after S rounds of swap search under
    MMSE (:func:`pegnn.wireless.swap_refine`), timed from the channels (TEUS included),
    and Rand+S, the same search from the random mask: what the network's start is worth."""
    from pegnn.wireless.precoders import mmse
    from pegnn.wireless.rates import sum_rate
    from pegnn.wireless.scheduling import greedy_schedule, random_schedule, swap_refine
    B, Kt = H.shape[:2]
    res, masks = {}, {}
    for pname, P in precs.items():
        sched = {"Rand": lambda: random_schedule(B, Kt, k, torch.Generator().manual_seed(seed)),
                 "Greedy": lambda: greedy_schedule(H, s2, k, P),
                 "TEUS": lambda: teus(H, s2, k),
                 **{name: (lambda S=S: swap_refine(H, s2, teus(H, s2, k), mmse, S))
                    for name, S in zip(refined(refine, "TEUS"), refine)},
                 **{name: (lambda S=S: swap_refine(H, s2, sched["Rand"](), mmse, S))
                    for name, S in zip(refined(refine, "Rand"), refine)}}
        for sname, fn in sched.items():
            t0 = time.perf_counter()
            mask = fn()
            H_sub = H[mask].reshape(B, k, *H.shape[2:])  # selected users in ascending order
            V = P(H_sub, s2)
            sec = (time.perf_counter() - t0) / B
            R = sum_rate(H_sub.to(torch.complex128), V.to(torch.complex128), s2)
            res[f"{pname}-{sname}"] = {"sum_rate": float(R.mean()), "sec_per_sample": sec}
            masks[(pname, sname)] = mask
        for sname in ("TEUS",) + refined(refine, "TEUS"):
            g, t = masks[(pname, "Greedy")], masks[(pname, sname)]
            res[f"{pname}-{sname}"]["overlap_with_greedy"] = float((g & t).sum(1).float().mean() / k)
    return res


# ---------------------------------------------------------------- Fig. 6
def evaluate(teus, n_test: int, out_dir: Path, names=("mmse", "wmmse", "tecfp"), tecfp_path=None,
             channel="uma", sizes=(32, 12, 8, 2), progress=True, refine=(1, 2)) -> dict:
    """Paper 000 Fig. 6: sum rate of Rand/Greedy/TEUS on every precoder per SNR, on
    held-out channels (seed 2), and the time per sample of each scheme (batched);
    also TEUS+S, S rounds of swap search after TEUS, for each S in ``refine``.

    Cost at the default ``n_test = 100`` (2 CPU cores): MMSE and TECFP schemes take
    seconds; Greedy-WMMSE takes ~0.5 s per sample per SNR (0.46 s measured), i.e. ~4 minutes
    for the five SNRs — use ``--precoders mmse`` or a smaller ``--n-test`` for a quick look.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm
    N_T, Kt, k, N_R = sizes
    precs = precoders(names, tecfp_path)
    test, key = channels(channel, n_test, 2, Kt, N_R, N_T, SNRS, progress)
    H = test["H"].to(torch.complex128)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"n_test": n_test, "channel": channel, "channels_key": key,
              "sizes": {"N_T": N_T, "K_tilde": Kt, "K": k, "N_R": N_R},
              "teus": {"labels": getattr(teus, "info", {}).get("labels"),
                       "model": teus.model.config if hasattr(teus, "model") else "label oracle",
                       "decode": getattr(teus, "decode", "greedy (oracle)")},
              "precoders": list(precs), "per_snr": {}}
    for snr in tqdm(SNRS, desc="SNR", disable=not progress):
        s2 = torch.full((n_test,), 10 ** (-snr / 10), dtype=torch.float64)
        result["per_snr"][snr] = _schemes(H, s2, k, teus, precs, seed=snr, refine=refine)
    schemes = list(result["per_snr"][SNRS[0]])
    result["average_over_snr"] = {m: sum(result["per_snr"][s][m]["sum_rate"] for s in SNRS) / len(SNRS)
                                  for m in schemes}
    result["sec_per_sample"] = {m: sum(result["per_snr"][s][m]["sec_per_sample"] for s in SNRS) / len(SNRS)
                                for m in schemes}
    avg = result["average_over_snr"]
    result["teus_over_greedy"] = {p: avg[f"{p}-TEUS"] / avg[f"{p}-Greedy"] for p in precs}
    result["refined_over_greedy"] = {m: {p: avg[f"{p}-{m}"] / avg[f"{p}-Greedy"] for p in precs}
                                     for m in refined(refine, "TEUS") + refined(refine, "Rand")}
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    # Fig. 6: sum rate vs SNR, colour = precoder, line style = scheduler (the paper's three)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    paper = [m for m in schemes if m.split("-")[1] in STYLES]
    for m in paper:
        p, s = m.split("-")
        ax.plot(SNRS, [result["per_snr"][x][m]["sum_rate"] for x in SNRS], STYLES[s], color=COLOURS[p],
                label=f"{p}-{s}", ms=5)
    ax.set(xlabel="SNR (dB)", ylabel="sum rate (bits/s/Hz)",
           title=f"scheduling, UMa NLOS, N_T={N_T}, K̃={Kt}, K={k}, N_R={N_R}, {n_test} drops")
    ax.grid(alpha=.3); ax.legend(fontsize=8, ncol=len(precs))
    fig.tight_layout(); fig.savefig(out_dir / "sum_rate_vs_snr.png", dpi=130); plt.close(fig)
    # time per sample (the measured counterpart of Table II)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.bar(paper, [result["sec_per_sample"][m] for m in paper], color=[COLOURS[m.split("-")[0]] for m in paper])
    ax.set(yscale="log", ylabel="seconds per sample (batched, avg over SNR)",
           title=f"batch of {n_test}, this CPU, same run")
    fig.autofmt_xdate(); fig.tight_layout(); fig.savefig(out_dir / "time_per_sample.png", dpi=130); plt.close(fig)
    if refine:
        _tradeoff_plot(result, refine, out_dir / "refine_tradeoff.png")
    return result


def _tradeoff_plot(result: dict, refine, path: Path) -> None:
    """Sum rate / Greedy (avg over SNR) against time per sample for TEUS+S and Rand+S,
    S = 0, refine..., one curve per start and precoder; Greedy is the point (·, 1)."""
    import matplotlib.pyplot as plt
    avg, sec = result["average_over_snr"], result["sec_per_sample"]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for p in result["precoders"]:
        for base, ls in (("TEUS", "-o"), ("Rand", ":v")):
            ms = [f"{p}-{base}"] + [f"{p}-{m}" for m in refined(refine, base)]
            ax.plot([1e3 * sec[m] for m in ms], [avg[m] / avg[f"{p}-Greedy"] for m in ms], ls, color=COLOURS[p],
                    label=f"{p}-{base}+S", ms=5)
            for m in ms[1:]:
                ax.annotate(m.split("+")[1], (1e3 * sec[m], avg[m] / avg[f"{p}-Greedy"]), fontsize=7,
                            xytext=(3, -9), textcoords="offset points", color=COLOURS[p])
        ax.plot([1e3 * sec[f"{p}-Greedy"]], [1.0], "s", color=COLOURS[p], ms=7, label=f"{p}-Greedy")
    ax.set(xscale="log", xlabel="ms per sample (batched, this CPU, avg over SNR)", ylabel="sum rate / Greedy",
           title=f"swap search after TEUS or a random set (S = {', '.join(map(str, refine))} rounds)")
    ax.grid(alpha=.3); ax.legend(fontsize=7, ncol=3)
    fig.tight_layout(); fig.savefig(path, dpi=130); plt.close(fig)


# ---------------------------------------------------------------- Fig. 7
#: paper 000 Fig. 7: the TEUS trained at (N_T, K̃, K, N_R) = (32, 12, 8, 2), tested at other N_T and K̃
FIG7 = {"N_T": [16, 24, 32, 48, 64], "K_tilde": [10, 12, 16, 20, 24]}


def fig7(teus, n_test: int, out_dir: Path, names=("mmse", "tecfp"), tecfp_path=None, snr: float = 20.0,
         channel="uma", sweeps=FIG7, progress=True, refine=()) -> dict:
    """Paper 000 Fig. 7: sum rate of Rand/Greedy/TEUS on each precoder when N_T or K̃
    differs from the training scenario (K = 8, N_R = 2 fixed; the other size at its
    training value), at one SNR, on held-out drops (seed 2), without retraining.

    WMMSE is off by default: Greedy-WMMSE costs ~2-6 s per drop per point on this CPU
    (``--precoders mmse,tecfp,wmmse`` adds it)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm
    precs = precoders(names, tecfp_path)
    base = {"N_T": 32, "K_tilde": 12}
    k, N_R = 8, 2
    res = {"n_test": n_test, "channel": channel, "snr_db": snr, "trained_at": {"N_T": 32, "K_tilde": 12, "K": k,
           "N_R": N_R}, "precoders": list(precs), "sweeps": {}}
    points = [(var, v) for var, vals in sweeps.items() for v in vals]
    done: dict = {}  # the training point sits on both sweeps: compute it once
    for var, v in tqdm(points, desc="Fig. 7 points", disable=not progress):
        sz = {**base, var: v}
        if sz["K_tilde"] < k:
            raise ValueError(f"K_tilde = {sz['K_tilde']} < K = {k}: nothing to schedule")
        at = (sz["N_T"], sz["K_tilde"])
        if at not in done:
            data, key = channels(channel, n_test, 2, sz["K_tilde"], N_R, sz["N_T"], SNRS, False)
            H = data["H"].to(torch.complex128)
            s2 = torch.full((n_test,), 10 ** (-snr / 10), dtype=torch.float64)
            done[at] = {"sizes": {**sz, "K": k, "N_R": N_R}, "channels_key": key,
                        **_schemes(H, s2, k, teus, precs, seed=0, refine=refine)}
        res["sweeps"].setdefault(var, []).append(done[at])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "fig7.json").write_text(json.dumps(res, indent=2) + "\n")
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5.6 * len(sweeps), 4.2), squeeze=False)
    for ax, (var, rows) in zip(axes[0], res["sweeps"].items()):
        xs = [r["sizes"][var] for r in rows]
        for m in [m for m in rows[0] if "-" in m]:
            p_, s_ = m.split("-")
            ax.plot(xs, [r[m]["sum_rate"] for r in rows], _style(s_, refine), color=COLOURS[p_], label=m, ms=5)
        ax.axvline(base[var], color="k", lw=0.8, ls="--")
        fixed = "K̃=12" if var == "N_T" else "N_T=32"
        ax.set(xlabel={"N_T": "N_T", "K_tilde": "K̃ (candidates)"}[var], ylabel="sum rate (bits/s/Hz)",
               title=f"{fixed}, K={k}, N_R={N_R}, {snr:g} dB, {n_test} drops\n(trained at the dashed line)")
        ax.grid(alpha=.3)
    axes[0][0].legend(fontsize=8, ncol=len(precs))
    fig.suptitle("Fig. 7: TEUS generalisation without retraining, UMa NLOS", fontsize=10)
    fig.tight_layout(); fig.savefig(out_dir / "fig7_generalisation.png", dpi=130); plt.close(fig)
    return res


# ---------------------------------------------------------------- bench
def bench(teus, out: Path, tecfp_path=None, n: int = 200, n_wmmse: int = 10, refine=(1, 2)) -> dict:
    """Per-sample time (batched) of TEUS+TECFP (TEUS+MMSE when no TECFP policy exists)
    and of its swap-refined TEUS+S (``refine``) against WMMSE-Greedy at (N_T, K̃, K, N_R)
    = (32, 12, 8, 2), 10 dB, i.i.d. Rayleigh; WMMSE schemes on the first ``n_wmmse``
    samples (Greedy-WMMSE costs seconds each). Also the training throughput (samples/s,
    forward + backward of TEUSN + its loss)."""
    N_T, Kt, k, N_R = 32, 12, 8, 2
    data, _ = channels("rayleigh", n, 5, Kt, N_R, N_T, SNRS, False)
    H = data["H"].to(torch.complex128)
    s2 = torch.full((n,), 0.1, dtype=torch.float64)
    fast = precoders(["mmse", "tecfp"], tecfp_path)
    res = _schemes(H, s2, k, teus, fast, seed=0, refine=refine)
    res.update(_schemes(H[:n_wmmse], s2[:n_wmmse], k, teus, precoders(["wmmse"]), seed=0, refine=refine))
    ours = "TECFP-TEUS" if "TECFP" in fast else "MMSE-TEUS"
    model = teus.model.train()
    col = collate(teus.spec, teus.noise_feature)
    seq = teus.decode == "sequential"   # a training sample is then one greedy step (GreedySteps)
    extra = {"chosen": torch.zeros(Kt), "next": torch.tensor(0)} if seq else {}
    batch = col([{"H": data["H"][i], "noise_var": data["noise_var"][i],
                  "eta": torch.zeros(Kt).index_fill_(0, torch.arange(k), 1.0), **extra} for i in range(min(n, 64))])
    g, samples = batch[0]
    t0 = time.perf_counter()
    for _ in range(5):
        model.zero_grad()
        loss, _ = objective(samples, model(g), loss="next" if seq else "bce")
        loss.backward()
    thr = 5 * len(samples["H"]) / (time.perf_counter() - t0)
    model.eval()
    result = {"sizes": {"N_T": N_T, "K_tilde": Kt, "K": k, "N_R": N_R, "batch": n, "batch_wmmse": n_wmmse},
              "snr_db": 10, "channel": "rayleigh", "schemes": res, "ours": ours,
              f"speedup_{ours}_over_WMMSE-Greedy": res["WMMSE-Greedy"]["sec_per_sample"] / res[ours]["sec_per_sample"],
              "speedup_refined_over_WMMSE-Greedy": {m: res["WMMSE-Greedy"]["sec_per_sample"] / res[m]["sec_per_sample"]
                                                    for m in refined(refine, ours)},
              "training_samples_per_s": thr, "threads": torch.get_num_threads(),
              "paper_table_II_multiplications": {"MMSE-Greedy": 1.8e6, "MMSE-TEUS": 1.4e6, "WMMSE-Greedy": 6.4e8,
                                                 "WMMSE-TEUS": 5.8e7, "TECFP-TEUS": 2.8e7}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


# ---------------------------------------------------------------- CLI output
def print_table(r: dict) -> None:
    """Print :func:`evaluate`'s result: one table per precoder (sum rate per SNR, seconds per
    sample), then TEUS / Greedy and each refined scheme / Greedy averaged over SNR."""
    schemes = list(next(iter(r["per_snr"].values())))
    for p in r["precoders"]:                                     # one table per precoder
        cols = [m for m in schemes if m.split("-")[0] == p]
        print("\n".join(snr_table(r, width=13, methods=cols)))
        print(f"{'s/smp':>5} " + " ".join(f"{r['sec_per_sample'][m]:13.2e}" for m in cols))
    print("TEUS / Greedy (avg over SNR): " + ", ".join(f"{p} {v:.3f}" for p, v in r["teus_over_greedy"].items()))
    for m, ratios in r.get("refined_over_greedy", {}).items():
        print(f"{m} / Greedy (avg over SNR): " + ", ".join(f"{p} {v:.3f}" for p, v in ratios.items()))


if __name__ == "__main__":
    from tasks import not_a_command
    not_a_command("tasks.scheduling_eval", "python -m tasks.scheduling evaluate")
