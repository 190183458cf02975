"""Full load (N_T = K N_R): how many streams a TECFP serves, against WMMSE.

    python -m tasks.full_load [--checkpoint NAME=FILE ...] [--sizes N_T,K ...] [--n-test 100]
                              [--snrs 0 10 20 30 40] [--out results/precoding/full_load.json]

Why: trained at (N_T, K, N_R) = (32, 8, 2), TECFP generalises to N_T = 24-64 but not to
N_T = 16, where the K N_R = 16 streams fill every transmit dimension. There WMMSE turns
streams off (the weight a_k of a stream it cannot separate goes to zero); a policy never
trained at full load keeps serving them, unless it reads which streams MMSE precoding
serves badly (the shipped ``tecfp_mmse_r``, :func:`pegnn.policies.stream_rate_input`). For
each policy (the shipped ``tecfp_mmse_r``, ``tecfp_mmse`` and ``tecfp`` by default, plus any
``--checkpoint NAME=FILE``) and each size, this writes the sum rate over WMMSE-MMSEInit per
SNR and the mean number of streams that carry more than 1 % of the transmit power (squared
singular values of each V_k, paper 000 eq. 2), on the size-generalisation drops of ``tasks.precoding evaluate`` (seed 3).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from pegnn.config import TaskArgumentParser, out_file, positive_int, snr_db, task_main

ROOT = Path(__file__).resolve().parents[1]


def active_streams(V: torch.Tensor, share: float = 0.01) -> torch.Tensor:
    """``[B]``: streams (singular directions of each user's ``V_k`` ``[N_R, N_T]``) whose
    power σ² is more than ``share`` of the drop's total."""
    p = torch.linalg.svdvals(V) ** 2                      # [B, K, N_R]
    return (p / p.sum(dim=(1, 2), keepdim=True) > share).sum(dim=(1, 2))


def full_load(policies: dict, sizes, n_test: int, snrs, N_R: int = 2, progress: bool = True) -> dict:
    from pegnn.wireless.rates import sum_rate
    from pegnn.wireless.wmmse import wmmse
    from tasks.precoding import GEN_SEED, channels
    out = {}
    for N_T, K in sizes:
        H = channels("uma", n_test, GEN_SEED, K, N_R, N_T, snrs=[0], progress=progress)["H"].to(torch.complex64)
        row = {}
        for snr in snrs:
            s2 = torch.full((n_test,), 10 ** (-snr / 10))
            Vs = {"WMMSE-MMSEInit": wmmse(H, s2)[0], **{n: p(H, s2) for n, p in policies.items()}}
            rates = {n: sum_rate(H, V, s2).mean().item() for n, V in Vs.items()}
            row[f"{snr:g}"] = {n: {"sum_rate": rates[n], "over_wmmse": rates[n] / rates["WMMSE-MMSEInit"],
                                 "active_streams": active_streams(V).float().mean().item()} for n, V in Vs.items()}
        out[f"N_T={N_T},K={K}"] = {"streams": K * N_R, "per_snr": row}
    return out


@task_main
def main(argv=None) -> int:
    from pegnn.policy_files import load_named_policies, pretrained
    from tasks.precoding import GEN_SEED
    ap = TaskArgumentParser(prog="python -m tasks.full_load", description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", nargs="*", default=[], metavar="NAME=FILE", help="more TECFP policies")
    ap.add_argument("--sizes", nargs="*", default=["16,8", "32,16", "32,8"], metavar="N_T,K")
    ap.add_argument("--n-test", type=positive_int, default=100)
    ap.add_argument("--snrs", type=snr_db, nargs="+", default=[0, 10, 20, 30, 40])
    ap.add_argument("--out", type=out_file, default=str(ROOT / "results" / "precoding" / "full_load.json"))
    args = ap.parse_task(argv)
    try:
        sizes = [tuple(int(x) for x in s.split(",")) for s in args.sizes]
        if not all(len(s) == 2 and min(s) > 0 for s in sizes):
            raise ValueError
    except ValueError:
        ap.error(f"--sizes: expected N_T,K pairs of positive ints, e.g. 16,8; got {args.sizes}")
    policies = {"tecfp_mmse_r": pretrained("tecfp_mmse_r"), "tecfp_mmse": pretrained("tecfp_mmse"),
                "tecfp": pretrained("tecfp")}
    try:
        policies |= load_named_policies(args.checkpoint, kind="tecfp")
    except ValueError as e:
        ap.error(str(e))
    res = {"n_test": args.n_test, "channel": "uma", "seed": GEN_SEED, "N_R": 2, "share": 0.01,
           "sizes": full_load(policies, sizes, args.n_test, args.snrs)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    names = ["WMMSE-MMSEInit", *policies]
    for size, r in res["sizes"].items():
        print(f"{size} ({r['streams']} streams): over WMMSE, avg of SNRs / active streams at each SNR")
        for n in names:
            ps = r["per_snr"].values()
            ratio = sum(p[n]["sum_rate"] for p in ps) / sum(p["WMMSE-MMSEInit"]["sum_rate"] for p in ps)
            print(f"  {n:>16} {ratio:6.3f}   " + " ".join(f"{p[n]['active_streams']:5.2f}" for p in ps))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
