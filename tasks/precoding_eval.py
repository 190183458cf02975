"""Evaluation of TECFP precoding (paper 000 Sec. V-B): Fig. 4 (sum rate vs SNR), Fig. 5
(generalisation over N_T and K without retraining), the bench (speed against WMMSE-MMSEInit,
training throughput, multiplications next to Table I) and the sum-rate tables.

Every method is run on the same drops and timed batched (:func:`compare`); every ratio is
over WMMSE-MMSEInit. The command line is :mod:`tasks.precoding`; results and what they
mean: results/precoding/README.md.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from tasks import timed
from tasks.precoding import GEN_SEED, SNRS, channels, collate, objective

# ---------------------------------------------------------------- evaluate
_STYLE = {"TECFP": "o-", "ZF": "s--", "MMSE": "^--", "WMMSE-RandInit": "v:", "WMMSE-MMSEInit": "d-"}


def refined(steps, base: str = "TECFP") -> tuple[str, ...]:
    """Method names of the refined TECFPs, ``"TECFP+T"`` for each ``T`` in ``steps`` (or of
    another start, e.g. ``"MMSE+T"``)."""
    return tuple(f"{base}+{T}" for T in steps)


def compare(policy, H, s2, methods=("TECFP", "ZF", "MMSE", "WMMSE-RandInit", "WMMSE-MMSEInit"), seed=0):
    """Mean sum rate and seconds per sample of each method on the same channels.

    ``"TECFP"`` is ``policy`` as it is; ``"TECFP+T"`` is the same network followed by ``T``
    WMMSE steps in CFP form (``policy.refine = T``, :func:`pegnn.wireless.cfp_refine`);
    ``"MMSE+T"`` is the same steps from MMSE: what the network's start is worth."""
    import copy
    from pegnn.wireless.precoders import mmse, zf
    from pegnn.wireless.rates import sum_rate
    from pegnn.wireless.wmmse import cfp_refine, wmmse

    def with_refine(T):
        p = copy.copy(policy)
        p.refine = T
        return p
    run = {m: (lambda p=with_refine(int(m[6:])): p(H, s2)) for m in methods if m.startswith("TECFP+")}
    run |= {m: (lambda T=int(m[5:]): cfp_refine(H, mmse(H, s2), s2, T)) for m in methods if m.startswith("MMSE+")}
    run |= {
        "TECFP": lambda: policy(H, s2),
        "ZF": lambda: zf(H),
        "MMSE": lambda: mmse(H, s2),
        "WMMSE-RandInit": lambda: wmmse(H, s2, init="random", seed=seed)[0],
        "WMMSE-MMSEInit": lambda: wmmse(H, s2, init="mmse")[0],
    }
    res = {}
    for m in methods:
        if m.startswith("TECFP"):  # warm-up: the graph structure for these sizes is built (and cached) once
            run[m]()
        V, sec = timed(run[m], 1)
        R = sum_rate(H.to(torch.complex128), V.to(torch.complex128), s2)
        res[m] = {"sum_rate": float(R.mean()), "sec_per_sample": sec / len(H)}
    return res


def evaluate(policy, n_test: int, out_dir: Path, channel="uma", quick=False, progress=True,
             refine=(3, 5)) -> dict:
    """Per-SNR sum rates of TECFP, the refined TECFP+T (``T`` in ``refine``), the same
    steps from MMSE (MMSE+T) and the baselines on held-out drops (Fig. 4), and the size
    generalisation (Fig. 5)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"n_test": n_test, "channel": channel, "policy_refine": policy.refine, "per_snr": {},
              "generalisation": {}}
    ours = ("TECFP",) + refined(refine)
    K, N_R, N_T = 8, 2, 32
    test = channels(channel, n_test, 2, K, N_R, N_T, SNRS, progress)
    snrs = SNRS[::2] if quick else SNRS
    for snr in tqdm(snrs, desc="SNR", disable=not progress):
        s2 = 10 ** (-snr / 10)
        result["per_snr"][snr] = compare(policy, test["H"], torch.full((n_test,), s2),
                                         methods=ours + ("ZF", "MMSE") + refined(refine, "MMSE")
                                         + ("WMMSE-RandInit", "WMMSE-MMSEInit"))
    avg = {m: sum(result["per_snr"][s][m]["sum_rate"] for s in snrs) / len(snrs) for m in result["per_snr"][snrs[0]]}
    result["average_over_snr"] = avg
    result["ratio_tecfp_over_wmmse_mmseinit"] = avg["TECFP"] / avg["WMMSE-MMSEInit"]
    result["ratio_over_wmmse_mmseinit"] = {m: avg[m] / avg["WMMSE-MMSEInit"]
                                           for m in ours + refined(refine, "MMSE")}
    result["tecfp_never_below_mmse"] = all(result["per_snr"][s]["TECFP"]["sum_rate"] >= result["per_snr"][s]["MMSE"]["sum_rate"]
                                           for s in snrs)
    # generalisation without retraining (paper 000 Fig. 5): other N_T and K at 20 dB... and across SNRs
    gen_sizes = [(8, 16), (8, 24), (8, 48), (8, 64), (10, 32)] if not quick else [(8, 16), (10, 32)]
    for Kg, NTg in tqdm(gen_sizes, desc="sizes", disable=not progress):
        Hg = channels(channel, max(n_test // 4, 50), GEN_SEED, Kg, N_R, NTg, SNRS, progress)["H"]
        per = {}
        for snr in snrs:
            s2 = torch.full((len(Hg),), 10 ** (-snr / 10))
            per[snr] = compare(policy, Hg, s2, methods=ours + ("MMSE", "WMMSE-MMSEInit"))
        a = {m: sum(per[s][m]["sum_rate"] for s in snrs) / len(snrs) for m in per[snrs[0]]}
        result["generalisation"][f"K={Kg},N_T={NTg}"] = {
            "per_snr": per, "average": a, "ratio_tecfp_over_wmmse": a["TECFP"] / a["WMMSE-MMSEInit"],
            "ratio_over_wmmse": {m: a[m] / a["WMMSE-MMSEInit"] for m in ours}}
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    # Fig. 4: sum rate vs SNR
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for m in result["per_snr"][snrs[0]]:
        ax.plot(snrs, [result["per_snr"][s][m]["sum_rate"] for s in snrs], _STYLE.get(m, "x-."), label=m)
    ax.set(xlabel="SNR (dB)", ylabel="sum rate (bits/s/Hz)")
    own = f" (policy: TECFP+{policy.refine}, trained through the steps)" if policy.refine else ""
    ax.set_title(f"TECFP{own} vs baselines, UMa NLOS, (N_T, K, N_R) = ({N_T}, {K}, {N_R}), {n_test} drops",
                 fontsize=9)
    ax.grid(alpha=.3); ax.legend()
    fig.tight_layout(); fig.savefig(out_dir / "sum_rate_vs_snr.png", dpi=130); plt.close(fig)
    # Fig. 5: generalisation
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = list(result["generalisation"])
    width = 0.8 / len(ours)
    for i, m in enumerate(ours):
        ax.bar([j + (i - (len(ours) - 1) / 2) * width for j in range(len(labels))],
               [result["generalisation"][l]["ratio_over_wmmse"][m] for l in labels], width, label=m)
    ax.set_xticks(range(len(labels)), labels)
    ax.axhline(0.95, color="k", ls="--", lw=1, label="target 0.95")
    ax.set(ylabel="/ WMMSE-MMSEInit (avg over SNR)", title="trained at K=8, N_T=32; no retraining")
    ax.set_ylim(0.5, 1.1); ax.legend(); fig.autofmt_xdate()
    fig.tight_layout(); fig.savefig(out_dir / "generalisation.png", dpi=130); plt.close(fig)
    return result


def bench(policy, out: Path, n: int = 200, refine=(3, 5)) -> dict:
    """Inference speed TECFP vs WMMSE-MMSEInit (batched, same CPU, same run) on the
    paper's setting — held-out UMa NLOS drops at (32, 8, 2), SNR ∈ {0, 10, ..., 40} dB
    (WMMSE's iteration count, hence its cost, grows with SNR) — plus multiplications
    per sample next to paper 000 Table I and the training throughput."""
    K, N_R, N_T = 8, 2, 32
    H = channels("uma", n, 2, K, N_R, N_T, SNRS, False)["H"]
    per_snr = {}
    methods = ("TECFP",) + refined(refine) + ("MMSE", "WMMSE-MMSEInit")
    for snr in range(0, 41, 10):
        s2 = torch.full((n,), 10 ** (-snr / 10))
        r = compare(policy, H, s2, methods=methods)
        r["speedup_tecfp_over_wmmse_mmseinit"] = r["WMMSE-MMSEInit"]["sec_per_sample"] / r["TECFP"]["sec_per_sample"]
        per_snr[snr] = r
    mean_t = {m: sum(r[m]["sec_per_sample"] for r in per_snr.values()) / len(per_snr) for m in methods}
    speed = mean_t["WMMSE-MMSEInit"] / mean_t["TECFP"]
    speed_refined = {m: mean_t["WMMSE-MMSEInit"] / mean_t[m] for m in refined(refine)}
    s2 = torch.full((n,), 0.1)
    # training throughput: samples/s of forward+backward through TEPN + CFP + rate
    model = policy.model.train()
    col = collate(policy.spec, policy.noise_feature)
    batch = col([{"H": H[i], "noise_var": s2[i]} for i in range(min(n, 256))])
    t0 = time.perf_counter()
    for _ in range(5):
        model.zero_grad()
        loss, _ = objective(batch[0][1], model(batch[0][0]), refine=policy.refine)
        loss.backward()
    thr = 5 * len(batch[0][1]["H"]) / (time.perf_counter() - t0)
    model.eval()
    mult = _multiplications(policy.model, K, N_R, N_T)
    result = {"sizes": {"K": K, "N_R": N_R, "N_T": N_T, "batch": n}, "channel": "uma (seed 2, held out)",
              "threads": torch.get_num_threads(), "per_snr": per_snr, "mean_sec_per_sample": mean_t,
              "speedup_tecfp_over_wmmse_mmseinit": speed, "speedup_refined_over_wmmse_mmseinit": speed_refined,
              "policy_refine": policy.refine, "training_samples_per_s": thr,
              "multiplications_per_sample": mult,
              "paper_table_I": {"TECFP": 1.0e6, "WMMSE-MMSEInit": 3.1e7, "MMSE": 6.1e4}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _multiplications(model, K, N_R, N_T) -> dict:
    """Real multiplications per sample, counted from the layer shapes (paper 000 Table I
    counts the dominant matrix products the same way)."""
    from pegnn.policies import MMSE_INPUT, STREAM_RATE_INPUT
    D = model.config["hidden"]
    L = model.config["layers"]
    E = K * N_R * N_T
    terms = len(model.layers[0].mde.terms)
    tepn = E * 3 * D + L * terms * E * D * D + E * 5 * D * D + K * N_R * N_R * 5 * D * D + K * N_R * N_R * D * 4
    # CFP (6): A H (K N_R^2 N_T), H^H A^H U, the K N_R × K N_R system (push-through) and its solve
    KN = K * N_R
    cfp = 4 * (2 * K * N_R * N_R * N_T + KN * KN * N_T + KN ** 3 // 3 + KN * KN * N_T)
    # the MMSE precoder input, where the spec has it: H H^H, its solve and H^H (.)
    mmse_in = 4 * (2 * KN * KN * N_T + KN ** 3 // 3) if MMSE_INPUT in model.spec.inputs else 0
    # the stream rates: H_k V (K N_R x N_T x K N_R), C_k (K x N_R^2 K N_R), the N_R x N_R solves
    rate_in = (4 * (KN * N_T * KN + K * N_R * N_R * KN + 2 * K * N_R ** 3)
               if STREAM_RATE_INPUT in model.spec.inputs else 0)
    extra = ({"MMSE input": mmse_in} if mmse_in else {}) | ({"stream-rate input": rate_in} if rate_in else {})
    return {"TEPN": tepn, "CFP": cfp} | extra | {"TECFP": tepn + mmse_in + rate_in + cfp}


def snr_table(r: dict, width: int = 15, methods=None) -> list[str]:
    """Lines of an eval result's sum-rate table: a column per method (all, or those in
    ``methods``), a row per SNR, and the average over SNR (``tasks.scheduling`` prints
    its schemes the same way)."""
    snrs = list(r["per_snr"])
    methods = list(methods or r["per_snr"][snrs[0]])
    return ([f"{'SNR':>5} " + " ".join(f"{m:>{width}}" for m in methods)]
            + [f"{s:>5} " + " ".join(f"{r['per_snr'][s][m]['sum_rate']:{width}.2f}" for m in methods) for s in snrs]
            + [f"{'avg':>5} " + " ".join(f"{r['average_over_snr'][m]:{width}.2f}" for m in methods)])


def print_table(r: dict) -> None:
    print("\n".join(snr_table(r)))
    print(", ".join(f"{m} / WMMSE-MMSEInit = {x:.3f}" for m, x in r["ratio_over_wmmse_mmseinit"].items()))


if __name__ == "__main__":
    from tasks import not_a_command
    not_a_command("tasks.precoding_eval", "python -m tasks.precoding evaluate")
