"""Reading a problem spec from YAML: the loader that rejects repeated keys and the
parser that validates every key and reports the first mistake as one
:class:`~pegnn.spec.SpecError` line, ``<source>: <key path>: <message>``.

:func:`pegnn.spec.load_spec` is the public entry; the spec's format and conventions
are in :mod:`pegnn.spec`.
"""
from __future__ import annotations

import keyword
import re
from os import PathLike
from pathlib import Path
from typing import Any, Mapping

import yaml

from .spec import Interference, ProblemSpec, SetSpec, SpecError, TensorSpec

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOP_KEYS = {"name", "description", "sets", "joint", "inputs", "outputs", "interference"}
_SET_KEYS = {"nested_in", "description"}
_TENSOR_KEYS = {"dims", "complex", "description"}
_INTERF_KEYS = {"set", "reflected", "description"}
MAX_ORDER = 2  # a set may appear at most twice in one tensor (HOE up to 2nd order)


def read_spec(path: str | Path) -> ProblemSpec:
    """Load and validate a YAML spec file. Raises :class:`SpecError`."""
    if not isinstance(path, (str, PathLike)):
        raise TypeError(f"load_spec: expected the path of a spec YAML (str or Path), got {type(path).__name__}")
    path = Path(path)
    src = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(src, "<file>", f"cannot read the spec file ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise SpecError(src, "<file>", "cannot read the spec file: not UTF-8 text") from None
    try:
        d = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<yaml>"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(src, where, f"malformed YAML: {problem}") from None
    return parse(d, src)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key repeated in one mapping: PyYAML keeps
    the last one silently, which would hide a duplicate set or tensor name."""

    def construct_mapping(self, node, deep=False):
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}; names must be unique",
                        key_node.start_mark)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


# --------------------------------------------------------------------- parsing
def _mapping(x: Any, src: str, path: str, allowed: set[str] | None = None,
             optional: bool = False) -> dict:
    if x is None and optional:
        return {}
    if x is None and path == "<root>":
        raise SpecError(src, path, "the spec is empty; expected a mapping with sets, inputs and outputs")
    if not isinstance(x, Mapping):
        raise SpecError(src, path, f"expected a mapping, got {type(x).__name__}")
    for k in x:
        if not isinstance(k, str):
            raise SpecError(src, path, f"keys must be strings, got {k!r}")
        if allowed is not None and k not in allowed:
            raise SpecError(src, f"{path}.{k}" if path not in ("", "<root>") else k,
                            f"unknown key; expected one of {sorted(allowed)}")
    return dict(x)


def _name(x: Any, src: str, path: str, what: str) -> str:
    if not isinstance(x, str) or not _NAME.match(x) or keyword.iskeyword(x):
        raise SpecError(src, path, f"{what} must be an identifier (letters, digits, _), got {x!r}")
    if x.startswith("_") or "__" in x:  # '_D', '_B_<out>' are the graph's own fields; PyG splits on '__'
        raise SpecError(src, path, f"{what} must not start with '_' or contain '__' (reserved), got {x!r}")
    return x


def _text(x: Any, src: str, path: str) -> str:
    if x is None:
        return ""
    if not isinstance(x, str):
        raise SpecError(src, path, f"expected a string, got {type(x).__name__}")
    return x


def _bool(x: Any, src: str, path: str) -> bool:
    if not isinstance(x, bool):
        raise SpecError(src, path, f"expected true or false, got {x!r}")
    return x


def parse(d: Any, src: str) -> ProblemSpec:
    d = _mapping(d, src, "<root>", _TOP_KEYS)
    for key in ("name", "sets", "inputs", "outputs"):
        if key not in d:
            raise SpecError(src, key, "missing required key")
    name = _name(d["name"], src, "name", "the problem name")
    description = _text(d.get("description"), src, "description")

    # sets ------------------------------------------------------------------
    raw_sets = _mapping(d["sets"], src, "sets")
    if not raw_sets:
        raise SpecError(src, "sets", "declare at least one set")
    sets: dict[str, SetSpec] = {}
    for s, body in raw_sets.items():
        _name(s, src, f"sets.{s}", "a set name")
        body = _mapping(body, src, f"sets.{s}", _SET_KEYS, optional=True)
        parent = body.get("nested_in")
        if parent is not None:
            parent = _name(parent, src, f"sets.{s}.nested_in", "nested_in")
            if parent not in raw_sets:
                raise SpecError(src, f"sets.{s}.nested_in",
                                f"parent {parent!r} is not a declared set; expected one of {sorted(raw_sets)}")
            if parent == s:
                raise SpecError(src, f"sets.{s}.nested_in", "a set cannot be nested in itself")
        sets[s] = SetSpec(s, parent, _text(body.get("description"), src, f"sets.{s}.description"))
    for s in sets:  # nesting cycles
        seen, p = [s], sets[s].nested_in
        while p is not None:
            if p in seen:
                cycle = " -> ".join(seen[seen.index(p):] + [p])
                raise SpecError(src, f"sets.{s}.nested_in", f"nesting cycle {cycle}; nesting must form a forest")
            seen.append(p)
            p = sets[p].nested_in

    # tensors ---------------------------------------------------------------
    tensors: dict[str, dict[str, TensorSpec]] = {}
    for role in ("inputs", "outputs"):
        raw = _mapping(d[role], src, role)
        if not raw:
            raise SpecError(src, role, f"declare at least one tensor in {role}")
        out: dict[str, TensorSpec] = {}
        for t, body in raw.items():
            path = f"{role}.{t}"
            _name(t, src, path, "a tensor name")
            if t in sets:
                raise SpecError(src, path, f"name {t!r} is already used by a set; tensor and set names must differ")
            if role == "outputs" and t in tensors["inputs"]:
                raise SpecError(src, path, f"name {t!r} is already used by an input; tensor names must be unique")
            body = _mapping(body, src, path, _TENSOR_KEYS)
            if "dims" not in body:
                raise SpecError(src, f"{path}.dims", "missing required key (use [] for a scalar)")
            dims = body["dims"]
            if dims is None:
                dims = []
            if not isinstance(dims, list):
                raise SpecError(src, f"{path}.dims", f"expected a list of set names, got {type(dims).__name__}")
            for i, dname in enumerate(dims):
                if not isinstance(dname, str) or dname not in sets:
                    raise SpecError(src, f"{path}.dims[{i}]",
                                    f"unknown set {dname!r}; expected one of {sorted(sets)}")
                if dims.count(dname) > MAX_ORDER:
                    raise SpecError(src, f"{path}.dims[{i}]",
                                    f"set {dname!r} appears {dims.count(dname)} times; at most {MAX_ORDER} (order-2 equivariance) is supported")
            for i, dname in enumerate(dims):  # an ancestor must not follow its descendant
                for j in range(i):
                    if dname in _ancestors(sets, dims[j]):
                        raise SpecError(src, f"{path}.dims[{i}]",
                                        f"{dname!r} is an ancestor of {dims[j]!r} and must come before it")
            cplx = _bool(body.get("complex", False), src, f"{path}.complex")
            out[t] = TensorSpec(t, tuple(dims), cplx, _text(body.get("description"), src, f"{path}.description"))
        tensors[role] = out

    # joint -----------------------------------------------------------------
    joint: list[tuple[str, ...]] = []
    raw_joint = d.get("joint") or []
    if not isinstance(raw_joint, list):
        raise SpecError(src, "joint", f"expected a list of lists of set names, got {type(raw_joint).__name__}")
    in_group: dict[str, int] = {}
    for gi, g in enumerate(raw_joint):
        path = f"joint[{gi}]"
        if not isinstance(g, list) or len(g) < 2:
            raise SpecError(src, path, "expected a list of at least two set names")
        for si, s in enumerate(g):
            if not isinstance(s, str) or s not in sets:
                raise SpecError(src, f"{path}[{si}]", f"unknown set {s!r}; expected one of {sorted(sets)}")
            if s in in_group:
                raise SpecError(src, f"{path}[{si}]", f"set {s!r} is already in joint[{in_group[s]}]; a set joins one group at most")
            in_group[s] = gi
        if len(set(g)) != len(g):
            raise SpecError(src, path, "a joint group lists a set twice")
        parents = {sets[s].nested_in for s in g}
        if len(parents) != 1:
            raise SpecError(src, path, "joint sets must be of the same kind with the same parent "
                                       f"(got parents {sorted(str(p) for p in parents)})")
        joint.append(tuple(g))

    # interference ----------------------------------------------------------
    interference: list[Interference] = []
    raw_int = d.get("interference") or []
    if not isinstance(raw_int, list):
        raise SpecError(src, "interference", f"expected a list of {{set, reflected}} entries, got {type(raw_int).__name__}")
    for ii, entry in enumerate(raw_int):
        path = f"interference[{ii}]"
        entry = _mapping(entry, src, path, _INTERF_KEYS)
        if "set" not in entry:
            raise SpecError(src, f"{path}.set", "missing required key")
        s = entry["set"]
        if not isinstance(s, str) or s not in sets:
            raise SpecError(src, f"{path}.set", f"unknown set {s!r}; expected one of {sorted(sets)}")
        if any(x.set == s for x in interference):
            raise SpecError(src, f"{path}.set", f"interference on {s!r} is declared twice")
        if "reflected" not in entry:
            raise SpecError(src, f"{path}.reflected", "missing required key (true if the inputs show the interference)")
        interference.append(Interference(s, _bool(entry["reflected"], src, f"{path}.reflected"),
                                         _text(entry.get("description"), src, f"{path}.description")))

    spec = ProblemSpec(name=name, sets=sets, inputs=tensors["inputs"], outputs=tensors["outputs"],
                       joint=joint, interference=interference, description=description, source=src)
    used = spec.used_sets()
    for s in sets:
        if s not in used and not spec.is_parent(s):
            raise SpecError(src, f"sets.{s}", f"set {s!r} is declared but no tensor uses it and no set is nested in it")
    return spec


def _ancestors(sets: Mapping[str, SetSpec], s: str) -> list[str]:
    out, p = [], sets[s].nested_in
    while p is not None and p not in out:
        out.append(p)
        p = sets[p].nested_in
    return out
