"""The closed form's own ceiling: ``python -m tasks.precoding ceiling`` (paper 000).

Per held-out drop, with no network, the auxiliary tensors of CFP (6) are optimised
directly by Adam on the loss of eq. (37),

    max_{A, U}  Σ_k R_k(H, CFP(H, A, U, σ²)),   A [n, K, N_S, N_R], U [n, K, N_S, N_S] complex,

once from MMSE's start (A = U = I) and once from the TECFP's (A, U), and compared with
WMMSE-MMSEInit on the same drops. The committed run is
``results/precoding/cfp_ceiling.json``; what it showed: results/precoding/README.md.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch


def ceiling(policy, H, snrs, steps: int = 1500, lr: float = 1e-2, out: Path | None = None,
            progress=True) -> dict:
    """How far the closed form itself can go: per drop, the auxiliary tensors (A, U) of
    CFP (6) optimised directly by Adam on −R (eq. 37), no network, from MMSE's start
    (A = U = I) and from the TECFP's output. If the free optimum is far above the
    TECFP, what is missing is the network's approximation of H ↦ (A*, U*), not the
    closed form's landscape. ``H`` ``[n, K, N_R, N_T]`` complex: the drops (the CLI uses
    the first 50 of ``evaluate``'s held-out set), each at every SNR in ``snrs`` (dB);
    ratios over WMMSE-MMSEInit on the same drops. "TECFP" is the network's own CFP output
    (a ``policy.refine`` is not applied)."""
    from tqdm.auto import tqdm
    from pegnn.wireless.precoders import cfp
    from pegnn.wireless.rates import sum_rate
    from pegnn.wireless.wmmse import wmmse

    def free(H, s2, A0, U0):
        A, U = A0.clone().requires_grad_(True), U0.clone().requires_grad_(True)
        opt = torch.optim.Adam([A, U], lr=lr)
        for _ in range(steps):   # the drops are independent: the summed loss is per-drop Adam
            opt.zero_grad()
            (-sum_rate(H, cfp(H, A, U, s2), s2).sum()).backward()
            opt.step()
        return cfp(H, A.detach(), U.detach(), s2)

    torch.manual_seed(0)
    H = H.to(torch.complex128)
    n_test, K, N_R = H.shape[:3]
    eye = torch.eye(N_R, dtype=H.dtype).expand(n_test, K, N_R, N_R)
    per = {}
    for snr in tqdm(snrs, desc="SNR", disable=not progress):
        s2 = torch.full((n_test,), 10 ** (-snr / 10), dtype=torch.float64)
        with torch.no_grad():
            At, Ut = (x.to(H.dtype) for x in policy.auxiliary(H.to(torch.complex64), s2.float()))
        V = {"WMMSE-MMSEInit": wmmse(H, s2, init="mmse")[0], "TECFP": cfp(H, At, Ut, s2),
             "free CFP from MMSE": free(H, s2, eye, eye), "free CFP from TECFP": free(H, s2, At, Ut)}
        per[snr] = {m: float(sum_rate(H, v, s2).mean()) for m, v in V.items()}
    avg = {m: sum(per[s][m] for s in snrs) / len(snrs) for m in per[snrs[0]]}
    r = {"n_test": n_test, "adam_steps": steps, "lr": lr, "sum_rate_per_snr": per, "average_over_snr": avg,
         "ratio_over_wmmse_mmseinit": {m: a / avg["WMMSE-MMSEInit"] for m, a in avg.items()}}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(r, indent=2) + "\n")
    return r


if __name__ == "__main__":
    from tasks import not_a_command
    not_a_command("tasks.cfp_ceiling", "python -m tasks.precoding ceiling")
