"""Spec loader and planner: DESIGN §1 rules, paper 002 Table I, fuzzed specs."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pegnn import ProblemSpec, SpecError, build_graph, load_spec, plan
from pegnn.cli import default_sizes

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"
SPEC_FILES = sorted(GRAPHS.glob("*.yaml"))
RAW = {f.stem: yaml.safe_load(f.read_text()) for f in SPEC_FILES}


def spec_of(name: str) -> ProblemSpec:
    return load_spec(GRAPHS / f"{name}.yaml")


def mutated(name: str, edit) -> dict:
    """A deep copy of a shipped spec's dict, changed by ``edit(d)``."""
    d = copy.deepcopy(RAW[name])
    edit(d)
    return d


# ------------------------------------------------------------ loader rules
def _set(path, value):
    def edit(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return edit


def _delete(path):
    def edit(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]
    return edit


def _cycle(d):  # ant_ue in ue (already), ue in ant_ue
    d["sets"]["ue"] = {"nested_in": "ant_ue"}


def _long_cycle(d):  # cell -> ant_bs -> cell through the nesting of ant_bs in cell
    d["sets"]["cell"] = {"nested_in": "ant_bs"}


RULES = [
    # (what, base spec, edit, key path the error must name, a word of the message)
    ("unknown set in dims", "tenn_precoding", _set(("inputs", "H", "dims"), ["ue", "ant_ue", "ant_x"]),
     "inputs.H.dims[2]", "unknown set 'ant_x'"),
    ("unknown set in output dims", "miso_ps", _set(("outputs", "W", "dims"), ["user"]),
     "outputs.W.dims[0]", "unknown set 'user'"),
    ("dims not a list", "miso_ps", _set(("inputs", "H", "dims"), "ue"), "inputs.H.dims", "list"),
    ("a set thrice in one tensor", "power_control_pc", _set(("inputs", "G", "dims"), ["ue", "ue", "ue"]),
     "inputs.G.dims[0]", "at most 2"),
    ("ancestor after its descendant", "mimo_pm", _set(("inputs", "H", "dims"), ["ant_ue", "ue", "ant_bs"]),
     "inputs.H.dims[1]", "ancestor"),
    ("nesting cycle", "mimo_pm", _cycle, "sets.ue.nested_in", "cycle"),
    ("longer nesting cycle", "ris_pr", _long_cycle, "sets.cell.nested_in", "cycle"),
    ("nested in itself", "miso_ps", _set(("sets", "ue"), {"nested_in": "ue"}), "sets.ue.nested_in", "itself"),
    ("parent not a set", "mimo_pm", _set(("sets", "ds"), {"nested_in": "user"}), "sets.ds.nested_in",
     "'user' is not a declared set"),
    ("parent not a name", "mimo_pm", _set(("sets", "ds"), {"nested_in": 3}), "sets.ds.nested_in", "identifier"),
    ("joint sets of different kinds", "mimo_pm", _set(("joint",), [["ue", "ds"]]), "joint[0]", "same kind"),
    ("joint sets of different parents", "ris_pr",
     lambda d: (d["sets"].__setitem__("re", {"nested_in": "ue"}), d.__setitem__("joint", [["re", "rf"]])),
     "joint[0]", "same parent"),
    ("joint set unknown", "mimo_pm", _set(("joint",), [["ds", "stream"]]), "joint[0][1]", "unknown set"),
    ("joint group of one", "mimo_pm", _set(("joint",), [["ds"]]), "joint[0]", "at least two"),
    ("a set in two joint groups", "mimo_pm", _set(("joint",), [["ds", "ant_ue"], ["ant_ue", "ds"]]),
     "joint[1][0]", "already in joint[0]"),
    ("tensor named like a set", "miso_ps", _set(("inputs", "ue"), {"dims": ["ue"]}), "inputs.ue", "already used by a set"),
    ("output named like an input", "miso_ps", _set(("outputs", "H"), {"dims": ["ue"]}), "outputs.H",
     "already used by an input"),
    ("interference on an unknown set", "miso_ps", _set(("interference",), [{"set": "cell", "reflected": False}]),
     "interference[0].set", "unknown set 'cell'"),
    ("interference declared twice", "miso_ps",
     _set(("interference",), [{"set": "ue", "reflected": False}, {"set": "ue", "reflected": True}]),
     "interference[1].set", "declared twice"),
    ("interference without reflected", "miso_ps", _set(("interference",), [{"set": "ue"}]),
     "interference[0].reflected", "missing"),
    ("reflected not a bool", "miso_ps", _set(("interference",), [{"set": "ue", "reflected": "no"}]),
     "interference[0].reflected", "true or false"),
    ("complex not a bool", "miso_ps", _set(("inputs", "H", "complex"), "yes"), "inputs.H.complex", "true or false"),
    ("unknown top-level key", "miso_ps", _set(("inputz",), {}), "inputz", "unknown key"),
    ("unknown tensor key", "miso_ps", _set(("inputs", "H", "shape"), [2]), "inputs.H.shape", "unknown key"),
    ("missing outputs", "miso_ps", _delete(("outputs",)), "outputs", "missing required key"),
    ("missing dims", "miso_ps", _delete(("inputs", "H", "dims")), "inputs.H.dims", "missing"),
    ("no outputs declared", "miso_ps", _set(("outputs",), {}), "outputs", "at least one"),
    ("unused set", "miso_ps", _set(("sets", "cell"), {}), "sets.cell", "no tensor uses it"),
    ("set name not an identifier", "miso_ps", _set(("sets", "2ue"), {}), "sets.2ue", "identifier"),
    ("set name a keyword", "miso_ps", _set(("sets", "class"), {}), "sets.class", "identifier"),
    ("name not a string", "miso_ps", _set(("name",), 7), "name", "identifier"),
    # the graph's own node types are '_D' and '_B_<output>'; PyG joins type names with '__'
    ("set named like the state field", "miso_ps",
     lambda d: (d["sets"].__setitem__("_D", {}), d["inputs"]["H"]["dims"].append("_D")), "sets._D", "reserved"),
    ("tensor with a reserved name", "miso_ps", _set(("outputs", "_B_W"), {"dims": ["ue"]}), "outputs._B_W", "reserved"),
    ("set name with a double underscore", "miso_ps", _set(("sets", "ant__bs"), {}), "sets.ant__bs", "reserved"),
]


@pytest.mark.parametrize("what,base,edit,key,word", RULES, ids=[r[0] for r in RULES])
def test_loader_rule_names_the_offending_key(what, base, edit, key, word):
    with pytest.raises(SpecError) as err:
        ProblemSpec.from_dict(mutated(base, edit), source="spec.yaml")
    e = err.value
    assert e.path == key, str(e)
    assert word in e.message, str(e)
    assert str(e) == f"spec.yaml: {key}: {e.message}" and "\n" not in str(e)


def test_root_must_be_a_mapping():
    with pytest.raises(SpecError, match=r"<root>: expected a mapping, got list"):
        ProblemSpec.from_dict([1, 2])


@pytest.mark.parametrize("text,where,word", [
    ("name: x\nsets: [ue, {\n", "line", "malformed YAML"),
    ("name: x\n\tsets: {}\n", "line", "malformed YAML"),
    # PyYAML keeps the last of two equal keys silently; the loader must not
    ("name: x\nsets:\n  ue: {}\n  ue: {nested_in: cell}\n", "line 4, column 3", "duplicate key 'ue'"),
    ("name: x\nsets: {ue: {}}\ninputs:\n  H: {dims: [ue]}\n  H: {dims: []}\noutputs: {p: {dims: [ue]}}\n",
     "line 5", "duplicate key 'H'"),
])
def test_malformed_yaml(tmp_path, text, where, word):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(SpecError) as err:
        load_spec(f)
    assert str(err.value).startswith(f"{f}: {where}") and word in str(err.value)
    assert "\n" not in str(err.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(SpecError, match=r"<file>: cannot read the spec file"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match=r"<file>: cannot read the spec file"):
        load_spec(tmp_path)  # a directory
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes([0xB2, 0xFF, 0x00, 0x81]) * 8)
    with pytest.raises(SpecError, match=r"<file>: cannot read the spec file: not UTF-8"):
        load_spec(binary)


def test_scalar_and_complex_inputs():
    spec = spec_of("tenn_precoding")
    assert spec.inputs["noise"].dims == () and not spec.inputs["noise"].complex
    assert spec.inputs["H"].complex and spec.outputs["A"].dims == ("ue", "ant_ue", "ant_ue")
    d = mutated("ofdma_pb", _set(("inputs", "s0", "dims"), None))  # `dims:` left empty = scalar too
    assert ProblemSpec.from_dict(d).inputs["s0"].dims == ()
    assert not spec_of("power_control_pc").inputs["G"].complex


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_shipped_specs_round_trip(path):
    spec = load_spec(path)
    again = ProblemSpec.from_dict(spec.to_dict(), source="again")
    assert again.to_dict() == spec.to_dict()
    p = plan(spec)
    assert json.loads(p.to_json()) == p.to_dict()
    assert json.loads(json.dumps(json.loads(p.to_json()))) == p.to_dict()
    assert p.name == spec.name and f"plan for {spec.name!r}" in str(p)


# ------------------------------------------------------------------ Table I
# Paper 002, Table I ("Efficient GNN design for several wireless problems"), one
# entry per row: per recursion, in order, (set, normal/nested, nesting chain
# outermost first, one-set PE function, processor); the sets permuted jointly;
# whether an output function is cascaded. Row 4's "DS set, ANUE set, RF set, and
# ANUE set are joint" repeats ANUE where the ANBS set is meant (its sets are DS,
# ANUE, RF, ANBS, SC and the SC set is the independent one).
TABLE_I = {
    "table1_ris_miso_multicell": dict(row=1, recursions=[
        ("ue", "nested", ["cell"], "NPE", "attention"),
        ("ant_bs", "nested", ["cell"], "NPE", "ordinary"),
        ("re", "normal", [], "APE", "ordinary"),
    ], joint={"ue", "ant_bs"}, output_function=True),
    "table1_ris_mimo_singlecell": dict(row=2, recursions=[
        ("ds", "nested", ["ue"], "NPE", "attention"),
        ("ant_ue", "nested", ["ue"], "NPE", "ordinary"),
        ("ant_bs", "normal", [], "APE", "ordinary"),
        ("re", "normal", [], "APE", "ordinary"),
    ], joint={"ant_ue", "ds"}, output_function=True),
    "table1_wideband_miso_singlecell": dict(row=3, recursions=[
        ("ue", "normal", [], "APE", "attention"),
        ("ant_bs", "normal", [], "APE", "ordinary"),
        ("rf", "normal", [], "APE", "ordinary"),
        ("sc", "normal", [], "APE", "ordinary"),
    ], joint=set(), output_function=False),
    "table1_wideband_mimo_multicell": dict(row=4, recursions=[
        ("ds", "nested", ["cell", "ue"], "Three-tier NPE", "attention"),
        ("ant_ue", "nested", ["cell", "ue"], "Three-tier NPE", "ordinary"),
        ("rf", "nested", ["cell"], "NPE", "ordinary"),
        ("ant_bs", "nested", ["cell"], "NPE", "ordinary"),
        ("sc", "normal", [], "APE", "ordinary"),
    ], joint={"ds", "ant_ue", "rf", "ant_bs"}, output_function=True),
}
_TIER_WORD = {3: "Three", 4: "Four"}


def _function_label(sp) -> str:
    return sp.function if sp.tiers <= 2 else f"{_TIER_WORD[sp.tiers]}-tier {sp.function}"


def test_table1_specs_are_all_covered():
    assert {f.stem for f in SPEC_FILES if f.stem.startswith("table1_")} == set(TABLE_I)


@pytest.mark.parametrize("name", sorted(TABLE_I, key=lambda n: TABLE_I[n]["row"]))
def test_table1_plan_matches_paper(name):
    row = TABLE_I[name]
    spec = spec_of(name)
    p = plan(spec)
    want = row["recursions"]
    assert len(p.recursion_order) == len(want), "number of recursions"
    assert p.recursion_order == [r[0] for r in want], "sets in recursion order"
    for i, (s, kind, chain, function, processor) in enumerate(want, start=1):
        sp = p.sets[s]
        assert sp.recursion == i
        assert sp.kind == kind, s
        assert list(reversed(spec.ancestors(s))) == chain, s
        assert sp.tiers == len(chain) + 1, s
        assert _function_label(sp) == function, s
        assert sp.processor == processor, s
        if function.endswith("-tier NPE"):
            assert function in sp.reason  # the reason uses the paper's name
    # attention only on the first recursion set
    assert p.attention_sets() == [want[0][0]]
    # sets not in the recursion are parent levels (no function, no processor)
    for s, sp in p.sets.items():
        if s not in p.recursion_order:
            assert sp.function is None and sp.processor is None and sp.recursion is None
    jointly = set().union(*[set(j["sets"]) for j in p.joint]) if p.joint else set()
    assert jointly == row["joint"]
    assert p.output_function is row["output_function"]


# ----------------------------------------------------- TE modules, processors
def test_tenn_precoding_modules():
    p = plan(spec_of("tenn_precoding"))
    assert p.modules["MDE"] == ["ue", "ant_ue", "ant_bs"]
    assert p.modules["MDI"] == ["ant_bs"]
    assert p.modules["HOE"] == ["ant_ue"]
    assert p.outputs["A"].lift == ["ant_ue"] and p.outputs["A"].pool == ["ant_bs"]


def test_teusn_scheduling_modules():
    p = plan(spec_of("tenn_scheduling"))
    assert sorted(p.modules["MDI"]) == ["ant_bs", "ant_ue"]
    assert p.modules["HOE"] == []
    assert p.outputs["eta"].pool == ["ant_ue", "ant_bs"]


def test_power_control_has_no_attention():
    p = plan(spec_of("power_control_pc"))
    assert p.attention_sets() == []
    assert all(sp.processor in ("ordinary", None) for sp in p.sets.values())
    assert "reflected" in p.sets["ue"].reason
    assert p.modules["HOE"] == ["ue"]  # G[ue, ue] is an order-2 input


@pytest.mark.parametrize("name,attention", [("miso_ps", "ue"), ("mimo_pm", "ds"), ("ris_pr", "ue")])
def test_attention_on_the_set_the_rule_names(name, attention):
    p = plan(spec_of(name))
    assert p.attention_sets() == [attention]
    assert p.recursion_order[0] == attention
    assert [s for s, sp in p.sets.items() if sp.processor == "attention"] == [attention]


def test_output_over_a_set_no_input_carries_warns():
    p = plan(spec_of("ris_pr"))
    assert any("'rf'" in w and "W_BB" in w for w in p.warnings)
    assert not plan(spec_of("miso_ps")).warnings


# ------------------------------------------------------------------- fuzzing
_IDENT = st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True)
_NAMES = st.one_of(_IDENT, st.sampled_from(["ue", "cell", "ant_bs", "H", "noise", "class", "1ue", "", "a b", "ue\n"]))
_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 5) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6) | _NAMES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_NAMES, inner, max_size=3),
    max_leaves=6)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _get(d, path):
    for k in path:
        d = d[k]
    return d


def _rename(d: dict, old: str, new: str, everywhere: bool) -> None:
    """Rename set ``old``: in ``sets`` only, or also in every dims list, nesting,
    joint group and interference entry (a valid spec again, if ``new`` is a fresh identifier)."""
    d["sets"] = {new if k == old else k: v for k, v in d["sets"].items()}
    if not everywhere:
        return

    def swap(x):
        if isinstance(x, dict):
            return {k: swap(v) for k, v in x.items()}
        if isinstance(x, list):
            return [swap(v) for v in x]
        return new if x == old else x
    for key in ("sets", "inputs", "outputs", "joint", "interference"):
        if key in d:
            d[key] = swap(d[key])


def _mutate(data, d: dict) -> None:
    """Apply one random mutation to the spec dict ``d`` in place."""
    sets = list(d["sets"]) if isinstance(d.get("sets"), dict) else []
    op = data.draw(st.sampled_from(["delete", "replace", "rename", "unknown_dim", "cycle", "nest", "interference",
                                    "joint", "string_dims", "add_key", "clash"]))
    paths = [p for p in _paths(d) if p]
    if op in ("delete", "replace", "add_key") and paths:
        path = data.draw(st.sampled_from(paths))
        parent = _get(d, path[:-1])
        if op == "delete":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = data.draw(_JUNK)
        elif isinstance(parent, dict):
            parent[data.draw(_NAMES)] = data.draw(_JUNK)
        else:
            parent.append(data.draw(_JUNK))
    elif op == "rename" and sets:
        _rename(d, data.draw(st.sampled_from(sets)), data.draw(_NAMES), everywhere=data.draw(st.booleans()))
    elif op == "unknown_dim":
        dims = [p for p in paths if p[-1] == "dims" and isinstance(_get(d, p), list)]
        if dims:
            lst = _get(d, data.draw(st.sampled_from(dims)))
            lst.insert(data.draw(st.integers(0, len(lst))), data.draw(_NAMES))
    elif op == "cycle" and sets:
        a, b = data.draw(st.sampled_from(sets)), data.draw(st.sampled_from(sets))
        d["sets"][a] = {"nested_in": b}
        d["sets"][b] = {"nested_in": a}
    elif op == "nest" and sets:
        d["sets"][data.draw(st.sampled_from(sets))] = {"nested_in": data.draw(st.sampled_from(sets) | _NAMES)}
    elif op == "interference":
        entries = d.get("interference") if isinstance(d.get("interference"), list) else []
        extra = copy.deepcopy(entries[0]) if entries and data.draw(st.booleans()) else \
            {"set": data.draw(st.sampled_from(sets) | _NAMES) if sets else "ue", "reflected": data.draw(st.booleans())}
        d["interference"] = entries + [extra]
    elif op == "joint" and sets:
        group = data.draw(st.lists(st.sampled_from(sets) | _NAMES, max_size=4))
        d.setdefault("joint", [])
        if isinstance(d["joint"], list):
            d["joint"].append(group)
        else:
            d["joint"] = [group]
    elif op == "string_dims":
        tensors = [(r, t) for r in ("inputs", "outputs") if isinstance(d.get(r), dict) for t in d[r]
                   if isinstance(d[r][t], dict)]
        if tensors:
            r, t = data.draw(st.sampled_from(tensors))
            d[r][t]["dims"] = data.draw(st.lists(st.text(max_size=5), max_size=4) | st.text(max_size=8))
    elif op == "clash" and sets:  # a tensor named like a set, or an output like an input
        if isinstance(d.get("outputs"), dict) and isinstance(d.get("inputs"), dict) and d["inputs"]:
            name = data.draw(st.sampled_from(sets + list(d["inputs"])))
            d["outputs"][name] = {"dims": [data.draw(st.sampled_from(sets))]}


def _mild(data, d: dict) -> None:
    """Apply one mutation that keeps a valid spec valid (so that the fuzzer also
    reaches the planner and the graph builder with specs nobody wrote by hand)."""
    try:
        ProblemSpec.from_dict(d)
    except SpecError:
        return
    sets = list(d["sets"])
    depth = {s: len(_chain(d, s)) for s in sets}
    op = data.draw(st.sampled_from(["rename", "add_set", "complex", "reflected", "add_output", "joint"]))
    if op == "rename":
        old = data.draw(st.sampled_from(sets))
        new = "s_" + data.draw(st.from_regex(r"[a-z]{1,4}", fullmatch=True))
        if new in sets or new in d["inputs"] or new in d["outputs"]:
            return
        _rename(d, old, new, everywhere=True)
    elif op == "add_set":
        new = "x_" + data.draw(st.from_regex(r"[a-z]{1,3}", fullmatch=True))
        if new in sets:
            return
        parent = data.draw(st.none() | st.sampled_from(sets))
        d["sets"][new] = {"nested_in": parent} if parent else {}
        tensors = [(r, t) for r in ("inputs", "outputs") for t in d[r]]
        r, t = data.draw(st.sampled_from(tensors))
        d[r][t]["dims"] = list(d[r][t].get("dims") or []) + [new]
    elif op == "complex":
        r = data.draw(st.sampled_from(["inputs", "outputs"]))
        t = data.draw(st.sampled_from(sorted(d[r])))
        d[r][t]["complex"] = not d[r][t].get("complex", False)
    elif op == "reflected":
        free = [s for s in sets if all(i.get("set") != s for i in d.get("interference") or [])]
        if free:
            d["interference"] = list(d.get("interference") or []) + [
                {"set": data.draw(st.sampled_from(free)), "reflected": data.draw(st.booleans())}]
    elif op == "add_output":
        dims = data.draw(st.lists(st.sampled_from(sets), max_size=3, unique=True))
        d["outputs"]["y_" + str(len(d["outputs"]))] = {"dims": sorted(dims, key=depth.get)}
    elif op == "joint":
        taken = {s for g in d.get("joint") or [] for s in g}
        by_parent: dict = {}
        for s in sets:
            if s not in taken:
                by_parent.setdefault((d["sets"][s] or {}).get("nested_in"), []).append(s)
        groups = [g for g in by_parent.values() if len(g) >= 2]
        if groups:
            g = data.draw(st.sampled_from(groups))
            d["joint"] = list(d.get("joint") or []) + [g[:2]]


def _chain(d, s):
    def parent(x):
        body = d["sets"].get(x)
        return body.get("nested_in") if isinstance(body, dict) else None
    out, p = [], parent(s)
    while isinstance(p, str) and p not in out and p in d["sets"]:
        out.append(p)
        p = parent(p)
    return out


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_specs_give_a_plan_or_a_spec_error(data):
    name = data.draw(st.sampled_from(sorted(RAW)))
    d = copy.deepcopy(RAW[name])
    for _ in range(data.draw(st.integers(0, 4))):
        (_mild if data.draw(st.integers(0, 9)) < 6 else _mutate)(data, d)
    try:
        spec = ProblemSpec.from_dict(d, source="fuzz.yaml")
    except SpecError as e:
        assert str(e).startswith("fuzz.yaml: ") and e.path is not None
        event(f"SpecError at {str(e.path).split('.')[0].split('[')[0]}")
        return
    event("valid spec")
    p = plan(spec)
    assert json.loads(p.to_json()) == p.to_dict()
    assert set(p.recursion_order) <= set(spec.sets) and str(p)
    assert ProblemSpec.from_dict(spec.to_dict()).to_dict() == spec.to_dict()
    if len(spec.sets) <= 7:  # every valid spec must also build a (small, ragged) graph
        g = build_graph(spec, default_sizes(spec), plan=p)
        assert g["_D"].num_nodes >= 1


def _sizes_text(data, sets) -> str:
    """A --sizes string: a plausible one, then a few characters deleted or inserted
    (no digits are inserted, so counts stay small)."""
    parts = []
    for s in data.draw(st.lists(st.sampled_from(sets) | _IDENT, max_size=len(sets) + 1)):
        v = data.draw(st.integers(-1, 3).map(str) | st.lists(st.integers(-1, 3), max_size=3)
                      .map(lambda xs: "[" + ",".join(map(str, xs)) + "]") | st.text("ab[]=,- ", max_size=3))
        parts.append(f"{s}={v}")
    text = ",".join(parts)
    for _ in range(data.draw(st.integers(0, 3))):
        i = data.draw(st.integers(0, len(text)))
        if data.draw(st.booleans()):
            text = text[:i] + data.draw(st.sampled_from("[],= =x_")) + text[i:]
        else:
            text = text[:i] + text[i + 1:]
    return text


_SIZE_VALUE = st.one_of(
    st.integers(-2, 3), st.booleans(), st.none(), st.floats(-1, 3), st.text(max_size=3),
    st.lists(st.integers(-1, 3) | st.none() | st.text(max_size=2) | st.booleans(), max_size=4),
    st.dictionaries(st.text(max_size=2), st.integers(0, 2), max_size=2), st.frozensets(st.integers(0, 2), max_size=2))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_sizes_give_a_graph_or_a_spec_error(data):
    name = data.draw(st.sampled_from(["mimo_pm", "ris_pr", "tenn_precoding", "power_control_pc", "ofdma_pb",
                                      "table1_wideband_mimo_multicell"]))
    spec = spec_of(name)
    sets = list(spec.sets)
    kind = data.draw(st.sampled_from(["text", "junk", "near_valid", "near_valid", "near_valid"]))
    if kind == "text":
        sizes = _sizes_text(data, sets)
    elif kind == "junk":
        sizes = data.draw(st.dictionaries(st.sampled_from(sets) | _NAMES | st.integers(0, 2), _SIZE_VALUE,
                                          max_size=len(sets) + 1))
    else:  # valid sizes with a few values changed, so the deeper checks are reached
        sizes = default_sizes(spec)
        for s in data.draw(st.lists(st.sampled_from(sets), max_size=2)):
            n = len(sizes[s]) if isinstance(sizes[s], list) else 0
            valid = st.integers(1, 3) | (st.lists(st.integers(1, 3), min_size=n, max_size=n) if n else st.nothing())
            sizes[s] = data.draw(valid | st.lists(st.integers(0, 3), min_size=max(n - 1, 0), max_size=n + 1)
                                 | _SIZE_VALUE if data.draw(st.booleans()) else valid)
        if data.draw(st.integers(0, 4)) == 0:
            sizes.pop(data.draw(st.sampled_from(sets)))
    try:
        g = build_graph(spec, sizes, source="--sizes")
    except SpecError as e:
        assert str(e).startswith("--sizes: ") and "\n" not in str(e)
        event("SpecError")
        return
    event("graph")
    assert all(g[s].num_nodes >= 1 for s in spec.sets)


def test_plan_names_the_order_2_state_and_its_pooling():
    """P-C's G[ue, ue] makes the state (ue, ue); the plan says so and that p[ue] pools
    the second copy, as the model and graph do."""
    from pegnn.graph import state_axes
    spec = load_spec(GRAPHS / "power_control_pc.yaml")
    p = plan(spec)
    assert p.state == ["ue", "ue"] == state_axes(spec, p)
    assert p.modules["MDE"] == ["ue"] and p.modules["MDI"] == ["ue"]
    assert "second ue axis of the order-2 state" in p.outputs["p"].reason
    assert "state tensor D over (ue, ue)" in str(p)


def test_a_reflected_set_under_an_unreflected_parent_is_warned():
    d = load_spec(GRAPHS / "ris_pr.yaml").to_dict()
    d["interference"] = [{"set": "ue", "reflected": True}, {"set": "cell", "reflected": False}]
    p = plan(ProblemSpec.from_dict(d, source="x"))
    assert "ue" in p.attention_sets()
    assert any("'ue' is declared reflected, but its ancestor 'cell' is not" in w for w in p.warnings)
    assert not any("declared reflected" in w for w in plan(load_spec(GRAPHS / "ris_pr.yaml")).warnings)
