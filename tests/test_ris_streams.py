"""tasks.ris_streams: the served-UE count, the analog rank, and the command."""
import json

import pytest
import torch
from helpers_cli import usage_error

from tasks.ris_streams import analog_rank_ratio, main, served_ues


def test_served_ues_counts_columns_above_the_power_share():
    W = torch.zeros(2, 1, 4, 3, dtype=torch.complex64)
    W[0, 0, :, 0], W[0, 0, 0, 1] = 1.0, 0.1            # UE 1 has 0.01 / 4.01 < 1 %: not served
    W[1, 0, :, :] = 1.0                                # all three equal
    assert served_ues(W).tolist() == [1, 3]
    assert served_ues(W, share=0.001).tolist() == [2, 3]
    assert served_ues(W[:, 0]).tolist() == [1, 3]      # single cell without the cell axis


def test_analog_rank_ratio_of_rank_one_and_unitary_precoders():
    a = torch.polar(torch.ones(8), torch.rand(8) * 6.28)
    rank_one = (a[:, None] * torch.ones(6))[None, None]                 # six equal columns
    Q = torch.linalg.qr(torch.randn(8, 6, dtype=torch.complex64))[0][None, None]
    r = analog_rank_ratio(torch.cat([rank_one.to(Q.dtype), Q]))
    assert r[0] < 1e-5 and r[1] == pytest.approx(1.0, abs=1e-5)


def test_ris_streams_writes_counts_and_one_ue_bounds(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PEGNN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "streams.json"
    assert main(["--n-re", "4", "--n-test", "3", "--ascent-iters", "50", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    r = res["N_RE"]["N_RE=4"]
    assert res["ascent_iters"] == 50
    assert len(r["bcd"]["per_ue_sorted"]) == 3 and r["bcd"]["per_ue_sorted"] == sorted(r["bcd"]["per_ue_sorted"])[::-1]
    assert 0 < r["single_ue"]["over_bcd"] <= r["single_ue"]["upper_over_bcd"]
    g = r["ris_gnn"]
    assert 1 <= g["ues_served"] <= 3 and 0 <= g["analog_sigma2_over_sigma1"] <= 1
    assert 0 < g["over_bcd"] and out.with_suffix(".png").stat().st_size > 0
    # each ascent keeps its best iterate: never below its start (the GNN's own output)
    assert g["ascent_from_policy"]["over_bcd"] >= g["over_bcd"] - 1e-9
    for a in (r["ascent_tagged_mrt"], r["ascent_dual"], g["ascent_from_policy"], g["ascent_tagged_mrt_policy_theta"]):
        assert a["over_bcd"] > 0 and 1 <= a["ues_served"] <= 3 and len(a["per_ue_sorted"]) == 3
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv, fragment", [(["--n-re", "8,x"], "--n-re"),
                                            (["--n-re", "0"], "--n-re"),
                                            (["--ascent-iters", "0"], "--ascent-iters"),
                                            (["--checkpoint", "nofile"], "NAME=FILE"),
                                            (["--checkpoint", "x=missing.pt"], "no such policy file"),
                                            (["--out", "/proc/x/s.json"], "out")])
def test_bad_input_is_one_line_exit_2(argv, fragment, capsys):
    assert fragment in usage_error(main, argv, capsys)
