"""Problem specs: sets, tensors over sets, joint relations and interference.

A spec declares a resource-allocation problem the way papers 000 and 002 analyse
it, without sizes::

    name: mu_mimo_precoding
    sets:
      ue: {}                    # normal set: elements permute arbitrarily (APE)
      ant_ue: {nested_in: ue}   # nested set: the antennas *of each UE* (NPE)
      ant_bs: {}
    inputs:
      H: {dims: [ue, ant_ue, ant_bs], complex: true}
    outputs:
      A: {dims: [ue, ant_ue, ant_ue], complex: true}
    interference:
      - {set: ue, reflected: false}

Every user mistake raises :class:`SpecError`, whose message is one line
``<source>: <key path>: <what is wrong and what is expected>``; the CLI prints it
as ``error: ...`` and exits with status 2.

Conventions the rest of pegnn relies on:

* element ids of a nested set are *global* and parent-major: the children of
  parent 0 come first, then those of parent 1, ...;
* inside a tensor, a nested dim is tied to its ancestor only when that ancestor
  set is itself one of the tensor's dims (``A: [ue, ant_ue, ant_ue]`` pairs the
  antennas *of the same UE*; ``H_d: [ue, ant_bs]`` with both nested in ``cell``
  covers every (UE, BS antenna) pair, cross-cell ones included).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Iterable

__all__ = ["SpecError", "SetSpec", "TensorSpec", "Interference", "ProblemSpec",
           "load_spec", "as_spec"]


def __getattr__(name):
    # parse_sizes moved to pegnn.sizes; `from pegnn.spec import parse_sizes` keeps working
    if name == "parse_sizes":
        from .sizes import parse_sizes
        return parse_sizes
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class SpecError(ValueError):
    """A malformed or inconsistent spec, or sizes/inputs that disagree with it.

    ``str(err)`` is one line: ``<source>: <key path>: <message>``.
    """

    def __init__(self, source: str, path: str, message: str):
        self.source, self.path, self.message = source, path, message
        # one line even when a user's key contains a line break
        super().__init__(" ".join(f"{source}: {path}: {message}".splitlines()))


@dataclass(frozen=True)
class SetSpec:
    """One set (a dimension of some tensor).

    ``nested_in`` names the parent set for a nested set (NPE symmetry: permute the
    parents, and independently the children inside each parent), else ``None``.
    """
    name: str
    nested_in: str | None = None
    description: str = ""


@dataclass(frozen=True)
class TensorSpec:
    """A tensor over sets: an environmental parameter (input) or an optimised
    variable (output). ``dims`` may repeat a set (order 2, e.g. ``[ue, ue]``)."""
    name: str
    dims: tuple[str, ...]
    complex: bool = False
    description: str = ""


@dataclass(frozen=True)
class Interference:
    """Interference among the elements of ``set``; ``reflected`` says whether the
    inputs already show it (e.g. cross gains |g_kj| in power control, paper 002
    Sec. III-C2) or not (multi-user interference hidden in inner products of
    channel and precoding vectors, Sec. III-C1)."""
    set: str
    reflected: bool
    description: str = ""


@dataclass
class ProblemSpec:
    """A declarative resource-allocation problem (DESIGN §1)."""
    name: str
    sets: dict[str, SetSpec]
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    joint: list[tuple[str, ...]] = field(default_factory=list)
    interference: list[Interference] = field(default_factory=list)
    description: str = ""
    source: str = "<spec>"

    # ---------------------------------------------------------------- structure
    def parent(self, s: str) -> str | None:
        return self.sets[s].nested_in

    def ancestors(self, s: str) -> list[str]:
        """Parent, grandparent, ... of ``s`` (nearest first)."""
        out, p = [], self.parent(s)
        while p is not None:
            out.append(p)
            p = self.parent(p)
        return out

    def depth(self, s: str) -> int:
        """Nesting depth: 0 for a normal set, 1 for a child of a normal set, ..."""
        return len(self.ancestors(s))

    def children(self, s: str) -> list[str]:
        return [c for c, spec in self.sets.items() if spec.nested_in == s]

    def is_parent(self, s: str) -> bool:
        return bool(self.children(s))

    def joint_group(self, s: str) -> tuple[str, ...] | None:
        for g in self.joint:
            if s in g:
                return g
        return None

    def interference_on(self, s: str) -> Interference | None:
        for i in self.interference:
            if i.set == s:
                return i
        return None

    @property
    def tensors(self) -> dict[str, TensorSpec]:
        return {**self.inputs, **self.outputs}

    def used_sets(self, tensors: Iterable[TensorSpec] | None = None) -> set[str]:
        tensors = self.tensors.values() if tensors is None else tensors
        return {d for t in tensors for d in t.dims}

    # ------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, d: Any, source: str = "<dict>") -> "ProblemSpec":
        """Validate a plain mapping (as loaded from YAML) and build the spec."""
        from .spec_yaml import parse
        return parse(d, source)

    def to_dict(self) -> dict:
        def tensor(t: TensorSpec) -> dict:
            out: dict = {"dims": list(t.dims)}
            if t.complex:
                out["complex"] = True
            if t.description:
                out["description"] = t.description
            return out

        d: dict = {"name": self.name}
        if self.description:
            d["description"] = self.description
        d["sets"] = {s.name: ({"nested_in": s.nested_in} if s.nested_in else {})
                     | ({"description": s.description} if s.description else {})
                     for s in self.sets.values()}
        if self.joint:
            d["joint"] = [list(g) for g in self.joint]
        d["inputs"] = {n: tensor(t) for n, t in self.inputs.items()}
        d["outputs"] = {n: tensor(t) for n, t in self.outputs.items()}
        if self.interference:
            d["interference"] = [{"set": i.set, "reflected": i.reflected}
                                 | ({"description": i.description} if i.description else {})
                                 for i in self.interference]
        return d

    def __repr__(self) -> str:
        return (f"ProblemSpec({self.name!r}, sets={list(self.sets)}, "
                f"inputs={list(self.inputs)}, outputs={list(self.outputs)})")


def as_spec(spec) -> ProblemSpec:
    """A spec, or the path of its YAML file (what :func:`~pegnn.plan.plan`,
    :func:`~pegnn.graph.build_graph` and :class:`~pegnn.models.PEGNN` take)."""
    if isinstance(spec, ProblemSpec):
        return spec
    if isinstance(spec, (str, PathLike)):
        return load_spec(spec)
    raise TypeError(f"expected a ProblemSpec or the path of a spec YAML, got {type(spec).__name__}")


def load_spec(path: str | Path) -> ProblemSpec:
    """Load and validate a YAML spec file (:mod:`pegnn.spec_yaml`). Raises :class:`SpecError`."""
    from .spec_yaml import read_spec       # spec_yaml builds the classes above
    return read_spec(path)
