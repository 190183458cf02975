"""The template task P-S (``tasks/miso_precoding.py``): objective against the SINR
definition, equivariance of the policy, reproducible drops, CLI round trip."""
from __future__ import annotations

import json

import pytest
import torch

import tasks.miso_precoding as T
from pegnn import PEGNN, load_spec


def _policy(seed=0):
    torch.manual_seed(seed)
    return T.MISOPolicy(PEGNN(load_spec(T.DEFAULTS["spec"]), hidden=8, layers=2).double())


def test_objective_is_the_sinr_sum_rate_of_eq_12():
    """−loss = Σ_k log2(1 + |h_k·w_k|² / (Σ_{j≠k} |h_k·w_j|² + σ²)), written out directly,
    with V at total power 1."""
    g = torch.Generator().manual_seed(1)
    B, K, N = 5, 3, 4
    c = lambda *s: torch.complex(torch.randn(*s, generator=g, dtype=torch.float64),
                                 torch.randn(*s, generator=g, dtype=torch.float64))
    H, W, s2 = c(B, K, N), c(B, K, N), torch.rand(B, generator=g, dtype=torch.float64) + 0.1
    v = T.precoder({"W": W})
    assert torch.allclose(v.abs().pow(2).sum((1, 2)), torch.ones(B, dtype=torch.float64))
    want = torch.zeros(B, dtype=torch.float64)
    for b in range(B):
        for k in range(K):
            gain = [abs(complex((H[b, k] * v[b, j]).sum())) ** 2 for j in range(K)]
            want[b] += torch.log2(torch.tensor(1 + gain[k] / (sum(gain) - gain[k] + float(s2[b]))))
    loss, metrics = T.objective({"H": H, "noise_var": s2}, {"W": W})
    assert torch.allclose(-loss, want.mean()) and torch.allclose(metrics["sum_rate"], want.mean())


def test_policy_is_equivariant_to_users_and_antennas():
    """The spec's group is S_ue × S_ant_bs: permuting users and antennas of H permutes the
    precoder the same way (the plan's attention on ue included)."""
    pol = _policy()
    g = torch.Generator().manual_seed(2)
    H = torch.complex(torch.randn(3, 4, 6, generator=g, dtype=torch.float64),
                      torch.randn(3, 4, 6, generator=g, dtype=torch.float64))
    s2 = torch.tensor([1.0, 0.1, 0.01], dtype=torch.float64)
    pu, pa = torch.randperm(4, generator=g), torch.randperm(6, generator=g)
    V = pol(H, s2)
    Vp = pol(H[:, pu][:, :, pa], s2)
    assert pol.model.attention_sets == ["ue"]
    assert torch.allclose(Vp, V[:, pu][:, :, pa], atol=1e-10)
    assert not torch.allclose(V[:, 0], V[:, 1])      # not trivially equal across users


def test_drops_are_reproducible_and_checked():
    a, b = T.drops(64, 4, 8, 0, [0, 10, 20]), T.drops(64, 4, 8, 0, [0, 10, 20])
    assert torch.equal(a["H"], b["H"]) and torch.equal(a["noise_var"], b["noise_var"])
    assert torch.allclose(torch.unique(a["noise_var"]), torch.tensor([0.01, 0.1, 1.0]))   # every SNR drawn
    assert not torch.equal(a["H"], T.drops(64, 4, 8, 1, [0])["H"])
    for bad in ([], [float("nan")], [1e9], 10, [True]):
        with pytest.raises(ValueError, match="data.snrs"):
            T.drops(4, 4, 8, 0, bad)


def test_policy_input_checks():
    """A float noise_var works like a [B] tensor; bad noise and overflowing inputs are one
    clear error, not NaN precoders."""
    pol = _policy()
    H = T.drops(3, 2, 4, 0, [10])["H"].to(torch.complex128)
    assert torch.allclose(pol(H, 0.1), pol(H, torch.full((3,), 0.1, dtype=torch.float64)))
    with pytest.raises(ValueError, match="noise_var must be finite and > 0"):
        pol(H, -1.0)
    with pytest.raises(ValueError, match="complex"):
        pol(H.real, 0.1)
    pol32 = T.MISOPolicy(pol.model.float())
    with pytest.raises(ValueError, match="not finite"):
        pol32(H.to(torch.complex64) * 1e30, 0.1)


def test_train_evaluate_round_trip(tmp_path, capsys):
    rc = T.main(["train", "train.max_steps=4", "train.val_every=2", "data.n_train=64", "data.n_val=16",
                 "train.batch_size=16", "train.progress=false", f"run.out={tmp_path}", "run.name=r",
                 "sizes.K=3", "sizes.N_T=4"])
    assert rc == 0 and (tmp_path / "r" / "policy.pt").is_file()
    rc = T.main(["evaluate", "--checkpoint", str(tmp_path / "r" / "policy.pt"), "--n-test", "8",
                 "--out", str(tmp_path / "ev")])
    assert rc == 0
    r = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert r["sizes"] == {"K": 3, "N_T": 4} and list(r["sum_rate_per_snr"]) == ["0", "10", "20"]
    assert set(r["average_over_snr"]) == {"GNN", "ZF", "MMSE", "WMMSE-MMSEInit"}
    assert (tmp_path / "ev" / "sum_rate_vs_snr.png").stat().st_size > 0
    assert r["ratio_over_wmmse_mmseinit"]["WMMSE-MMSEInit"] == 1.0
    assert set(r["sec_per_sample"]) == set(r["average_over_snr"]) and min(r["sec_per_sample"].values()) > 0
    # MMSE is never worse than ZF on average at these SNRs (a check on the baselines' wiring)
    assert r["average_over_snr"]["MMSE"] >= r["average_over_snr"]["ZF"]
    # more users than antennas: ZF does not exist, the other methods are still compared
    assert T.main(["evaluate", "--checkpoint", str(tmp_path / "r" / "policy.pt"), "--n-test", "8",
                   "--K", "6", "--N-T", "4", "--out", str(tmp_path / "ev6")]) == 0
    r6 = json.loads((tmp_path / "ev6" / "eval.json").read_text())
    assert set(r6["average_over_snr"]) == {"GNN", "MMSE", "WMMSE-MMSEInit"} and r6["sizes"] == {"K": 6, "N_T": 4}


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert T.main(["train", "train.lr=abc", f"run.out={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: config: train.lr") and "\n" not in err
    assert T.main(["evaluate", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "no policy file" in capsys.readouterr().err
