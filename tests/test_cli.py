"""The ``pegnn`` command line: ``inspect`` output, drawings and error reporting."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pegnn import build_graph, load_spec
from pegnn.cli import default_sizes, main

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ROOT / "graphs"
SPEC_FILES = sorted(GRAPHS.glob("*.yaml"))
SET_KEYS = {"kind", "parent", "function", "processor", "recursion", "reason", "group", "tiers"}
TOP_KEYS = {"name", "sets", "modules", "output_function", "recursion_order", "outputs", "warnings"}

# small sizes per spec, ragged where a set is nested
SIZES = {
    "mimo_pm": "ue=2,ds=[1,2],ant_ue=[2,1],ant_bs=3",
    "miso_ps": "ue=3,ant_bs=4",
    "ofdma_pb": "ue=5",
    "power_control_pc": "ue=3",
    "ris_pr": "cell=2,ue=[1,2],rf=2,ant_bs=3,re=4",
    "ris_pr_dual": "cell=2,ue=[1,2],ant_bs=3,re=4",
    "table1_ris_miso_multicell": "cell=2,ue=[2,1],ant_bs=2,re=3",
    "table1_ris_mimo_singlecell": "ue=2,ds=[1,2],ant_ue=2,ant_bs=2,re=2",
    "table1_wideband_miso_singlecell": "ue=2,ant_bs=3,rf=2,sc=2",
    "table1_wideband_mimo_multicell": "cell=2,ue=[1,2],ds=1,ant_ue=[1,2,1],rf=2,ant_bs=2,sc=2",
    "tenn_precoding": "ue=2,ant_ue=2,ant_bs=3",
    "tenn_precoding_mmse": "ue=2,ant_ue=2,ant_bs=3",
    "tenn_precoding_mmse_r": "ue=2,ant_ue=2,ant_bs=3",
    "tenn_scheduling": "ue=4,ant_ue=2,ant_bs=3",
    "tenn_scheduling_mmse": "ue=4,ant_ue=2,ant_bs=3",
    "tenn_scheduling_seq": "ue=4,ant_ue=2,ant_bs=3",
}


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_every_spec_has_test_sizes():
    assert {f.stem for f in SPEC_FILES} == set(SIZES)


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_inspect_json(capsys, path):
    rc, out, err = run(capsys, "inspect", str(path), "--json")
    assert rc == 0 and err == ""
    d = json.loads(out)
    assert TOP_KEYS <= set(d) and "graph" not in d
    assert d["name"] == path.stem
    for s, body in d["sets"].items():
        assert SET_KEYS <= set(body), s
        assert body["kind"] in ("normal", "nested")
        assert body["function"] in ("APE", "NPE", None) and body["processor"] in ("attention", "ordinary", None)
        assert body["recursion"] is None or isinstance(body["recursion"], int)
        assert body["reason"]
    assert set(d["modules"]) == {"MDE", "MDI", "HOE"}
    assert isinstance(d["output_function"], bool)
    assert d["recursion_order"] == [s for s, b in sorted(d["sets"].items(), key=lambda kv: kv[1]["recursion"] or 99)
                                    if b["recursion"]]


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_inspect_json_with_sizes(capsys, path):
    sizes = SIZES[path.stem]
    rc, out, err = run(capsys, "inspect", str(path), "--sizes", sizes, "--json")
    assert rc == 0 and err == ""
    d = json.loads(out)
    g = build_graph(load_spec(path), sizes)
    assert d["graph"]["node_types"] == {n: g[n].num_nodes for n in g.node_types}
    assert d["graph"]["edge_types"] == {"|".join(e): g[e].edge_index.shape[1] for e in g.edge_types}
    assert all(d["graph"]["node_types"][s] >= 1 for s in d["sets"])


def test_inspect_text(capsys):
    rc, out, err = run(capsys, "inspect", str(GRAPHS / "ris_pr.yaml"))
    assert rc == 0 and err == ""
    assert out.startswith("plan for 'ris_pr'") and "recursion order: ue -> rf -> ant_bs -> re" in out
    assert "attention" in out and "graph for sizes" not in out
    rc, out, _ = run(capsys, "inspect", str(GRAPHS / "ris_pr.yaml"), "--sizes", SIZES["ris_pr"])
    assert rc == 0
    assert "graph for sizes cell=2,ue=[1,2],rf=2,ant_bs=3,re=4:" in out
    lines = {" ".join(line.split()) for line in out.splitlines()}
    assert "W_BB 6 output field" in lines
    assert "(_D, pools, W_BB) 72" in lines


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_draw_default_instance(capsys, tmp_path, path):
    png = tmp_path / f"{path.stem}.png"
    rc, out, err = run(capsys, "inspect", str(path), "--draw", str(png))
    assert rc == 0 and err == ""
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    used = ",".join(f"{k}=[{','.join(map(str, v))}]" if isinstance(v, list) else f"{k}={v}"
                    for k, v in default_sizes(load_spec(path)).items())
    assert f"default sizes {used}" in out     # says which sizes it drew


def test_draw_with_sizes_and_json(capsys, tmp_path):
    png = tmp_path / "big.png"
    rc, out, err = run(capsys, "inspect", str(GRAPHS / "ris_pr.yaml"), "--sizes", "cell=1,ue=3,rf=6,ant_bs=8,re=8",
                       "--draw", str(png), "--json")
    assert rc == 0 and err == ""
    d = json.loads(out)                       # still one JSON object on stdout
    assert d["drawing"]["path"] == str(png) and d["drawing"]["sizes"]["ant_bs"] == 8
    assert "only input 'H_d'" in d["drawing"]["note"]   # a large instance: reduced drawing, said so
    assert png.stat().st_size > 10_000


def test_default_sizes_are_small_and_ragged():
    spec = load_spec(GRAPHS / "table1_wideband_mimo_multicell.yaml")
    sizes = default_sizes(spec)
    assert sizes["cell"] == 2 and sizes["ue"] == [1, 2] and sizes["ds"] == [1, 2, 1] and sizes["sc"] == 2
    build_graph(spec, sizes)


def _bad_spec(tmp_path, text, name="bad.yaml"):
    f = tmp_path / name
    f.write_text(text)
    return str(f)


ERRORS = [
    # (what, argv builder, a fragment of the one error line)
    ("missing file", lambda t: ["inspect", str(t / "nope.yaml")], "<file>: cannot read the spec file"),
    ("a directory", lambda t: ["inspect", str(t)], "<file>: cannot read the spec file"),
    ("malformed YAML", lambda t: ["inspect", _bad_spec(t, "name: x\nsets: [ue, {\n")], "malformed YAML"),
    ("unknown set in dims", lambda t: ["inspect", _bad_spec(
        t, "name: x\nsets: {ue: {}}\ninputs: {H: {dims: [ue, ant]}}\noutputs: {p: {dims: [ue]}}\n")],
     "inputs.H.dims[1]: unknown set 'ant'"),
    ("bad --sizes syntax", lambda t: ["inspect", str(GRAPHS / "miso_ps.yaml"), "--sizes", "ue=three,ant_bs=2"],
     "--sizes: ue: expected an integer"),
    ("unknown set in --sizes", lambda t: ["inspect", str(GRAPHS / "miso_ps.yaml"), "--sizes", "ue=2,ant_bs=2,rf=3"],
     "--sizes: rf: unknown set"),
    ("zero size", lambda t: ["inspect", str(GRAPHS / "miso_ps.yaml"), "--sizes", "ue=0,ant_bs=2"],
     "--sizes: ue: sizes must be integers >= 1"),
    ("negative size", lambda t: ["inspect", str(GRAPHS / "miso_ps.yaml"), "--sizes", "ue=2,ant_bs=-1"],
     "--sizes: ant_bs:"),
    ("missing size", lambda t: ["inspect", str(GRAPHS / "miso_ps.yaml"), "--sizes", "ue=2"],
     "--sizes: ant_bs: missing size"),
    ("ragged list of wrong length", lambda t: ["inspect", str(GRAPHS / "ris_pr.yaml"), "--sizes",
                                               "cell=2,ue=[1,2,3],rf=1,ant_bs=1,re=1"],
     "--sizes: ue: ragged sizes need one count per 'cell' element (2), got 3"),
    ("unwritable drawing", lambda t: ["inspect", str(GRAPHS / "miso_ps.yaml"), "--draw", str(t / "no" / "x.png")],
     "--draw: cannot write the drawing"),
    ("empty drawing name", lambda t: ["inspect", str(GRAPHS / "miso_ps.yaml"), "--draw", ""],
     "--draw: unknown image format ''"),
    ("unknown image format", lambda t: ["inspect", str(GRAPHS / "miso_ps.yaml"), "--draw", str(t / "x.docx")],
     "--draw: unknown image format 'docx'"),
]


@pytest.mark.parametrize("what,argv,fragment", ERRORS, ids=[e[0] for e in ERRORS])
def test_user_errors_are_one_line_exit_2(capsys, tmp_path, what, argv, fragment):
    rc, out, err = run(capsys, *argv(tmp_path))
    assert rc == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("argv,fragment", [([], "required: {inspect}"), (["inspect"], "required: spec"),
                                           (["bogus"], "invalid choice: 'bogus'"),
                                           (["inspect", "x.yaml", "--nope"], "unrecognized arguments: --nope"),
                                           (["inspect", "x.yaml", "--hidden", "0"], "--hidden")])
def test_usage_errors_are_one_line_exit_2(capsys, argv, fragment):
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("error: pegnn") and fragment in err, err


def test_sizes_too_large_for_memory_is_one_line(capsys):
    rc, _, err = run(capsys, "inspect", str(GRAPHS / "ris_pr.yaml"), "--sizes", "cell=2,ue=1,rf=2,ant_bs=3,re=100000000000")
    assert rc == 2 and len(err.splitlines()) == 1 and "out of memory" in err and "Traceback" not in err


def test_help_exits_0(capsys):
    rc, out, _ = run(capsys, "inspect", "--help")
    assert rc == 0 and "--sizes" in out and "--draw" in out


def _console_script() -> str:
    script = Path(sys.executable).parent / "pegnn"
    assert script.exists(), "the console script is installed with the package (pip install -e .)"
    return str(script)


def test_console_script(tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    ok = subprocess.run([_console_script(), "inspect", "graphs/ris_pr.yaml", "--sizes", SIZES["ris_pr"], "--json"],
                        cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["graph"]["node_types"]["W_BB"] == 6
    bad = subprocess.run([_console_script(), "inspect", _bad_spec(
        tmp_path, "name: x\nsets: {ue: {nested_in: ue}}\ninputs: {H: {dims: [ue]}}\noutputs: {p: {dims: [ue]}}\n")],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == [f"error: {tmp_path / 'bad.yaml'}: sets.ue.nested_in: "
                                       "a set cannot be nested in itself"]


def test_inspect_reports_the_models_parameter_count(capsys):
    """DESIGN §3: inspect shows the parameter count; TEPN-sized (D_H=8, L=3) with the
    plan's judicious attention on ue, counted independently here."""
    from pegnn.models import PEGNN
    path = GRAPHS / "tenn_precoding.yaml"
    rc, out, err = run(capsys, "inspect", str(path), "--hidden", "8", "--layers", "3", "--json")
    assert rc == 0 and err == ""
    m = json.loads(out)["model"]
    want = sum(p.numel() for p in PEGNN(load_spec(path), hidden=8, layers=3).parameters())
    assert m["parameters"] == want == sum(m["per_module"].values()) and m["attention"] == ["ue"]
    rc, out, err = run(capsys, "inspect", str(path), "--hidden", "8")
    assert rc == 0 and f"{want:,} parameters" in out
    rc, out, err = run(capsys, "inspect", str(path), "--layers", "0")
    assert rc == 2 and "--layers: expected a positive int" in err
    rc, out, err = run(capsys, "inspect", str(path), "--layers", "100000000")   # was a silent hang
    assert rc == 2 and "--layers: expected at most 1000 layers" in err and err.count("\n") == 1


def test_empty_spec_file_says_so(capsys, tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    rc, _, err = run(capsys, "inspect", str(tmp_path / "empty.yaml"))
    assert rc == 2 and err.count("\n") == 1 and "<root>: the spec is empty" in err, err
