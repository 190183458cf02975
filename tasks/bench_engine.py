"""Engine benchmark: TEPN forward+backward, dense path vs sparse path vs a hand-written
dense TEPN (plain tensor code, same weights), at (K, N_R, N_T) = (8, 2, 32).

Writes ``results/bench/engine.json``. Timings are interleaved round-robin in one
process (the machines are shared and noisy: compare the ratios, not the absolute
milliseconds); peak memory is measured per variant in a fresh subprocess.

    python -m tasks.bench engine [--batch 256] [--reps 20] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from pegnn.config import TaskArgumentParser, out_file, positive_int, task_main

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "graphs" / "tenn_precoding.yaml"


class HandwrittenTEPN(nn.Module):
    """TEPN of paper 000 Fig. 2 on a dense ``[B, K, N_R, N_T, C]`` tensor, written out
    by hand: FFC_1 → L × (FC_PE (17) → ReLU → LN) → PMA over N_T → HOE 1→2 on N_R →
    ReLU → FFC_2. It copies its weights from a :class:`PEGNN` so both compute the same
    function (checked before timing)."""

    def __init__(self, model):
        super().__init__()
        self.m = model
        self.subsets = [tuple(i + 1 for i, l in enumerate(t) if l) for t in model.layers[0].mde.terms]

    def forward(self, X):                                   # X: [B, K, NR, NT, 3]
        m = self.m
        h = m.embed(X)
        for layer in m.layers:
            mde = layer.mde
            y = mde.bias
            for dims, w in zip(self.subsets, mde.weight):
                y = y + (h.mean(dims, keepdim=True) if dims else h) @ w
            h = layer.norm(torch.relu(y))
        ro = m.readout["ue|ant_ue|ant_ue"]
        p = ro["mdi"]
        z = p.ffc_in(h)                                     # PMA over N_T (dim 3), eqs. 26-30
        s = (p.q(p.seed) * p.k(z)).sum(-1, keepdim=True) / p.channels ** 0.5
        a = torch.softmax(s, dim=3)
        heads = (a * p.v(z)).sum(3)                         # [B, K, NR, C]
        mm = p.norm(p.seed + p.o(heads))
        z = mm + torch.relu(p.ffc_out(mm))
        hoe = ro["hoe"]
        W, zbar = hoe.weight, z.mean(2, keepdim=True)       # eqs. 19-24 on N_R
        NR = z.shape[2]
        eye = torch.eye(NR, dtype=z.dtype)[None, None, :, :, None]
        zr, zc = z[:, :, :, None, :], z[:, :, None, :, :]
        y = (eye * (zr @ W[0]) + zc @ W[1] + zr @ W[2] + eye * (zbar[:, :, :, None] @ W[3])
             + zbar[:, :, :, None] @ W[4] + hoe.bias)
        y = ro["ffc"](torch.relu(y))                        # [B, K, NR, NR, 4]
        return torch.complex(y[..., 0], y[..., 1]), torch.complex(y[..., 2], y[..., 3])


def _setup(batch: int, K=8, NR=2, NT=32, seed=0):
    from torch_geometric.data import Batch
    from pegnn import build_graph, load_spec
    from pegnn.models import PEGNN, TEPN
    torch.manual_seed(seed)
    spec = load_spec(SPEC)
    model = PEGNN(spec, **TEPN)
    H = torch.complex(torch.randn(batch, K, NR, NT), torch.randn(batch, K, NR, NT)) / 2 ** 0.5
    noise = 10 ** (-torch.randint(0, 9, (batch,)) * 5 / 10)
    t0 = time.perf_counter()
    graphs = [build_graph(spec, f"ue={K},ant_ue={NR},ant_bs={NT}", {"H": H[b], "noise": noise[b]}) for b in range(batch)]
    data = Batch.from_data_list(graphs)
    build_s = time.perf_counter() - t0
    X = torch.cat([torch.view_as_real(H), noise.view(batch, 1, 1, 1, 1).expand(batch, K, NR, NT, 1)], -1)
    return spec, model, data, X, build_s


def _step(fn):
    out = fn()
    loss = sum((o.abs() ** 2).sum() for o in out)
    loss.backward()


def _variants(model, data, X):
    hand = HandwrittenTEPN(model)
    def run_model(dense):
        model.dense = dense
        out = model(data)
        return out["A"], out["U"]
    return {"dense": lambda: run_model(None), "sparse": lambda: run_model(False), "handwritten": lambda: hand(X)}


def _peak_child(variant: str, batch: int, reps: int) -> None:
    spec, model, data, X, _ = _setup(batch)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn = _variants(model, data, X)[variant]
    for _ in range(reps):
        model.zero_grad()
        _step(fn)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_mb": peak / 1024, "increase_mb": (peak - base) / 1024}))


@task_main
def main(argv=None) -> int:
    ap = TaskArgumentParser(prog="python -m tasks.bench engine", description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=positive_int, default=256)
    ap.add_argument("--reps", type=positive_int, default=20, help="timed repetitions (at least 2, for the IQR)")
    ap.add_argument("--out", type=out_file, default=str(ROOT / "results" / "bench" / "engine.json"))
    ap.add_argument("--_peak", choices=["handwritten", "dense", "sparse"], help=argparse.SUPPRESS)
    args = ap.parse_task(argv)
    if args.reps < 2:
        ap.error(f"--reps: expected at least 2 (the IQR needs two timings), got {args.reps}")
    if args._peak:
        _peak_child(args._peak, args.batch, 3)
        return 0

    spec, model, data, X, build_s = _setup(args.batch)
    variants = _variants(model, data, X)
    # like with like: the three variants compute the same A, U
    with torch.no_grad():
        ref = variants["handwritten"]()
        for name in ("dense", "sparse"):
            got = variants[name]()
            err = max(float((g - r).abs().max()) for g, r in zip(got, ref))
            if err > 1e-4:
                print(f"error: {name} path disagrees with the hand-written TEPN by {err:.2e}", file=sys.stderr)
                return 1
    times = {k: [] for k in variants}
    for _ in range(3):                                      # warm-up
        for fn in variants.values():
            model.zero_grad(); _step(fn)
    for _ in range(args.reps):
        for name, fn in variants.items():
            model.zero_grad()
            t0 = time.perf_counter()
            _step(fn)
            times[name].append((time.perf_counter() - t0) * 1e3)
    ms = {k: statistics.median(v) for k, v in times.items()}
    peaks = {}
    for name in variants:
        r = subprocess.run([sys.executable, "-m", "tasks.bench_engine", "--_peak", name, "--batch", str(args.batch)]
                           + (["--threads", str(args.threads)] if args.threads else []),
                           cwd=ROOT, capture_output=True, text=True)
        peaks[name] = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {"error": r.stderr[-300:]}
    result = {
        "what": "TEPN (paper 000, L=3, D_H=8) forward+backward on one batch; median ms over reps, interleaved",
        "sizes": {"K": 8, "N_R": 2, "N_T": 32, "batch": args.batch},
        "ms_per_batch": ms,
        "ms_iqr": {k: [statistics.quantiles(v, n=4)[0], statistics.quantiles(v, n=4)[2]] for k, v in times.items()},
        "ratios": {"dense/handwritten": ms["dense"] / ms["handwritten"], "sparse/dense": ms["sparse"] / ms["dense"]},
        "targets": {"dense/handwritten": 1.2, "sparse/dense": 3.0},
        "parameters": sum(p.numel() for p in model.parameters()),
        "peak_memory": peaks,
        "graph_build_s_per_sample": build_s / args.batch,
        "reps": args.reps, "torch_threads": torch.get_num_threads(),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "processor": platform.processor() or platform.machine()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("ms_per_batch", "ratios", "parameters")}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
