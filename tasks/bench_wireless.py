"""Wireless substrate benchmark: channel generation and the data-set cache.

Writes ``results/bench/wireless.json``, a dict of named *sections* plus ``meta``.
A section is a function ``fn(args) -> dict`` registered with :func:`section`;
running a subset (``--sections uma``) replaces only those sections in an existing
file, so benchmarks written by other people (WMMSE, greedy scheduling, ...) live
side by side. To add one::

    from tasks.bench_wireless import section

    @section("wmmse")
    def bench_wmmse(args):
        ...
        return {"iterations_per_s": ...}

(or add it in this file). The machines are shared and noisy: each section reports
the median over repeats together with the individual timings.

    python -m tasks.bench wireless [--sections uma,cache,channels] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from pegnn.config import TaskArgumentParser, out_file, positive_int, task_main

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "results" / "bench" / "wireless.json"
SECTIONS: dict[str, Callable[[argparse.Namespace], dict]] = {}


def section(name: str):
    """Register ``fn(args) -> dict`` as section ``name`` of ``wireless.json``."""
    def register(fn):
        SECTIONS[name] = fn
        return fn
    return register


def write_sections(results: dict[str, dict], path: Path = DEFAULT_OUT) -> dict:
    """Merge ``results`` (section name → dict) into the JSON at ``path``."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(results)
    data["meta"] = {"updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "machine": platform.machine(), "cpus": os.cpu_count(),
                    "threads": torch.get_num_threads()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return data


def _median_rate(times: list[float], count: int) -> dict:
    return {"per_s_median": count / statistics.median(times),
            "per_s_runs": [count / t for t in times], "seconds_runs": times}


@section("uma")
def bench_uma(args) -> dict:
    """UMa NLOS drops/s at (K, N_R, N_T) = (8, 2, 32), chunks of ``--chunk`` drops."""
    from pegnn.wireless.channels import uma_channels

    K, N_R, N_T = 8, 2, 32
    t0 = time.perf_counter()
    import sionna.phy  # noqa: F401  (import cost reported separately)
    import_s = time.perf_counter() - t0
    uma_channels(8, K, N_R, N_T, seed=0, chunk=8)  # warm-up: model build, first call
    times = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        uma_channels(args.drops, K, N_R, N_T, seed=r + 1, chunk=args.chunk)
        times.append(time.perf_counter() - t0)
    return {"K": K, "N_R": N_R, "N_T": N_T, "drops": args.drops, "chunk": args.chunk,
            "sionna_import_s": import_s,
            **{k.replace("per_s", "drops_per_s"): v
               for k, v in _median_rate(times, args.drops).items()}}


@section("channels")
def bench_channels(args) -> dict:
    """Samples/s of the pure-torch generators (Rayleigh, correlated, RIS)."""
    from pegnn.wireless.channels import correlated_rayleigh, rayleigh_channels
    from pegnn.wireless.ris_channels import ris_channels

    n = 10_000
    gens = {"rayleigh_8x2x32": lambda s: rayleigh_channels(n, 8, 2, 32, s),
            "correlated_rayleigh_8x2x32": lambda s: correlated_rayleigh(n, 8, 2, 32, s,
                                                                        0.5, 0.3),
            "ris_K3_NB8_NRE8": lambda s: ris_channels(n, seed=s, K=3, N_B=8, N_RE=8)}
    out = {"samples": n}
    for name, fn in gens.items():
        fn(0)
        times = []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            fn(r + 1)
            times.append(time.perf_counter() - t0)
        out[name] = _median_rate(times, n)
    return out


@section("cache")
def bench_cache(args) -> dict:
    """Generate-vs-reload of a cached UMa set (``--drops`` drops, (8, 2, 32))."""
    from pegnn.data import cached

    sizes = {"K": 8, "N_R": 2, "N_T": 32}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cached("bench", "uma", args.drops, 0, sizes=sizes, block=args.chunk, cache=tmp,
               progress=False)
        gen_s = time.perf_counter() - t0
        reloads = []
        for _ in range(max(args.repeats, 3)):
            t0 = time.perf_counter()
            cached("bench", "uma", args.drops, 0, sizes=sizes, block=args.chunk,
                   cache=tmp, progress=False)
            reloads.append(time.perf_counter() - t0)
    reload_s = statistics.median(reloads)
    return {"drops": args.drops, "generate_s": gen_s, "reload_s_median": reload_s,
            "reload_s_runs": reloads, "speedup": gen_s / reload_s}


def _uma_test_set(n: int, K: int, N_R: int, N_T: int) -> torch.Tensor:
    from pegnn.data import cached
    return cached("bench_wireless", "uma", n, 7, sizes={"K": K, "N_R": N_R, "N_T": N_T}, progress=False)["H"]


@section("wmmse")
def bench_wmmse(args) -> dict:
    """WMMSE-MMSEInit at (8, 2, 32) on UMa drops: ms/sample, mean iterations, gain over
    MMSE, per SNR (paper 000's stopping rule: change < 1e-4, at most 300 iterations)."""
    from pegnn.wireless import mmse, sum_rate, wmmse
    H = _uma_test_set(args.wmmse_samples, 8, 2, 32).to(torch.complex128)
    out = {"samples": len(H), "K": 8, "N_R": 2, "N_T": 32, "init": "mmse", "per_snr": {}}
    for snr in (0, 10, 20, 30, 40):
        s2 = torch.full((len(H),), 10 ** (-snr / 10), dtype=torch.float64)
        t0 = time.perf_counter()
        V, info = wmmse(H, s2, init="mmse")
        sec = time.perf_counter() - t0
        out["per_snr"][snr] = {"ms_per_sample": 1e3 * sec / len(H),
                               "mean_iterations": float(info["iterations"].float().mean()),
                               "wmmse_over_mmse": float(sum_rate(H, V, s2).mean() / sum_rate(H, mmse(H, s2), s2).mean())}
    return out


@section("greedy")
def bench_greedy(args) -> dict:
    """Greedy scheduling of K=8 out of K̃=12 UMa users at 20 dB: ms/sample with WMMSE
    (the expensive label generator of TEUS) and with MMSE precoding."""
    from pegnn.wireless import greedy_schedule, mmse, wmmse
    H = _uma_test_set(args.greedy_samples, 12, 2, 32).to(torch.complex128)
    s2 = torch.full((len(H),), 0.01, dtype=torch.float64)
    res = {"samples": len(H), "K_tilde": 12, "K": 8, "N_R": 2, "N_T": 32, "snr_db": 20}
    for name, prec in (("mmse", mmse), ("wmmse", lambda h, s: wmmse(h, s, init="mmse")[0])):
        t0 = time.perf_counter()
        greedy_schedule(H, s2, 8, prec)
        res[f"greedy_{name}_ms_per_sample"] = 1e3 * (time.perf_counter() - t0) / len(H)
    return res


@section("ris_baselines")
def bench_ris_baselines(args) -> dict:
    """Per-drop optimisers of problem P-R on the same drops (the ``"ris"`` regime, K = 3,
    N_B = 8, N_RF = 6, seed 5 as ``tasks.ris_precoding bench``): BCD (its defaults,
    batched) against the ascent in the dual form (:func:`pegnn.wireless.dual_ascent`,
    1500 Adam steps, batched), at N_RE = 8 and 100: seconds per drop (median over
    ``--repeats``), mean SE and the UEs the dual form serves. Both in complex128."""
    from pegnn.wireless import dual_ascent, hybrid_precoder, ris_bcd, ris_rate
    from tasks.ris_data import channels
    from tasks.ris_streams import served_ues
    out = {"samples": args.ris_samples, "K": 3, "N_B": 8, "N_RF": 6, "dual_iters": 1500, "per_N_RE": {}}
    for n_re in (8, 100):
        ch = channels(args.ris_samples, 5, N_RE=n_re).to(dtype=torch.complex128)
        t_bcd, t_dual = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            bcd = ris_bcd(ch)
            t_bcd.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            dual, _ = dual_ascent(ch, 6)
            t_dual.append(time.perf_counter() - t0)
        se_bcd, se_dual = ris_rate(ch, bcd).mean().item(), ris_rate(ch, dual).mean().item()
        n = args.ris_samples
        out["per_N_RE"][n_re] = {
            "bcd_sec_per_drop": statistics.median(t_bcd) / n, "dual_sec_per_drop": statistics.median(t_dual) / n,
            "bcd_seconds_runs": t_bcd, "dual_seconds_runs": t_dual,
            "dual_speedup_over_bcd": statistics.median(t_bcd) / statistics.median(t_dual),
            "se_bcd": se_bcd, "se_dual": se_dual, "dual_over_bcd": se_dual / se_bcd,
            "dual_ues_served": served_ues(hybrid_precoder(dual.baseband, dual.analog)).double().mean().item()}
    return out


@task_main
def main(argv=None) -> int:
    ap = TaskArgumentParser(prog="python -m tasks.bench wireless",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma-separated subset of {sorted(SECTIONS)}")
    ap.add_argument("--drops", type=positive_int, default=400, help="UMa drops per timed run")
    ap.add_argument("--chunk", type=positive_int, default=200, help="UMa drops per Sionna call")
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--wmmse-samples", type=positive_int, default=100)
    ap.add_argument("--greedy-samples", type=positive_int, default=10)
    ap.add_argument("--ris-samples", type=positive_int, default=100, help="RIS drops per N_RE (ris_baselines)")
    ap.add_argument("--out", type=out_file, default=str(DEFAULT_OUT))
    args = ap.parse_task(argv)
    names = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown or not names:
        ap.error(f"--sections: unknown sections {unknown}; have {sorted(SECTIONS)}" if unknown else
                 f"--sections: expected a comma list of {sorted(SECTIONS)}, got {args.sections!r}")
    results = {}
    for name in names:
        t0 = time.perf_counter()
        results[name] = SECTIONS[name](args)
        results[name]["section_wall_s"] = time.perf_counter() - t0
        print(f"[{name}] {json.dumps(results[name])}", flush=True)
    write_sections(results, Path(args.out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
