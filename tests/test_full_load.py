"""tasks.full_load: the stream count and the command."""
import json

import pytest
import torch
from helpers_cli import usage_error

from tasks.full_load import active_streams, main


def test_active_streams_counts_singular_directions_above_the_power_share():
    # user 0: stream powers 0.5 and 0.005 (0.5 % of the total: off); user 1: 0.495 and 0
    U = torch.linalg.qr(torch.randn(2, 2, dtype=torch.complex64))[0]
    W = torch.linalg.qr(torch.randn(6, 6, dtype=torch.complex64))[0][:2]          # orthonormal rows [2, 6]
    V = torch.stack([U @ torch.diag(torch.tensor([0.5, 0.005]).sqrt().to(U.dtype)) @ W,
                     U @ torch.diag(torch.tensor([0.495, 0.0]).sqrt().to(U.dtype)) @ W])[None]
    assert active_streams(V).tolist() == [2]
    assert active_streams(V, share=0.001).tolist() == [3]
    assert active_streams(V, share=0.6).tolist() == [0]


def test_full_load_writes_ratios_and_stream_counts(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PEGNN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "fl.json"
    assert main(["--sizes", "4,2", "--n-test", "3", "--snrs", "10", "--out", str(out)]) == 0
    r = json.loads(out.read_text())["sizes"]["N_T=4,K=2"]
    assert r["streams"] == 4
    p = r["per_snr"]["10"]
    assert p["WMMSE-MMSEInit"]["over_wmmse"] == pytest.approx(1.0)
    for name in ("tecfp", "tecfp_mmse"):
        assert 0 < p[name]["over_wmmse"] and 0 <= p[name]["active_streams"] <= 4
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv, fragment", [(["--sizes", "16"], "--sizes"),
                                            (["--checkpoint", "nofile"], "NAME=FILE"),
                                            (["--checkpoint", "x=missing.pt"], "no such policy file"),
                                            (["--out", "/proc/x/fl.json"], "out"),
                                            (["--snrs", "nan"], "--snrs: expected an SNR in dB"),
                                            (["--snrs", "1000"], "within [-100, 100]"),
                                            (["--snrs"], "--snrs: expected at least one argument")])
def test_bad_input_is_one_line_exit_2(argv, fragment, capsys):
    assert fragment in usage_error(main, argv, capsys)
