"""Problem sizes: the element counts of each set of a spec, for one graph.

    S = Sets(load_spec("graphs/mimo_pm.yaml"), resolve_sizes("ue=3,ds=1,ant_ue=[2,3,1],ant_bs=8"), "--sizes")
    S.n["ant_ue"]          # 6 elements in all
    S.parent["ant_ue"]     # tensor([0, 0, 1, 1, 1, 2]): each antenna's UE
    S.local["ant_ue"]      # tensor([0, 1, 0, 1, 2, 0]): its index within its UE

A normal set takes a positive count; a nested set an integer (the same count in every
parent) or a list of per-parent counts (ragged); sets of a joint group need equal counts.
Every mistake is a :class:`~pegnn.spec.SpecError` naming the set.
"""
from __future__ import annotations

import numbers
from typing import Mapping

import torch
from torch import Tensor

from .spec import ProblemSpec, SpecError

__all__ = ["Sets", "parse_sizes", "resolve_sizes"]


class Sets:
    """Element bookkeeping for one graph: counts, parents, local indices, ancestors."""

    def __init__(self, spec: ProblemSpec, sizes: Mapping[str, int | list[int]], source: str):
        self.spec = spec
        self.n: dict[str, int] = {}
        self.parent: dict[str, Tensor] = {}
        self.local: dict[str, Tensor] = {}
        self.uniform: dict[str, int] = {}       # children per parent, -1 if ragged
        unknown = [k for k in sizes if k not in spec.sets]
        if unknown:
            raise SpecError(source, unknown[0], f"unknown set; expected one of {sorted(spec.sets)}")
        per_parent: dict[str, list[int]] = {}
        for s in _topological(spec):
            if s not in sizes:
                raise SpecError(source, s, "missing size for this set (every set, parents included, needs one)")
            val, p = _plain_int(sizes[s]), spec.parent(s)
            if p is None:
                if isinstance(val, bool) or not isinstance(val, int):
                    raise SpecError(source, s, f"{s!r} is a normal set and takes a positive integer, got {val!r}")
                counts = [val]
            elif isinstance(val, (list, tuple)):
                if len(val) != self.n[p]:
                    raise SpecError(source, s, f"ragged sizes need one count per {p!r} element "
                                               f"({self.n[p]}), got {len(val)}")
                counts = [_plain_int(c) for c in val]
            elif isinstance(val, int) and not isinstance(val, bool):
                counts = [val] * self.n[p]
            else:
                raise SpecError(source, s, f"expected an integer or a list of integers, got {val!r}")
            for c in counts:
                if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                    raise SpecError(source, s, f"sizes must be integers >= 1, got {c!r}")
            self.n[s] = sum(counts)
            per_parent[s] = counts
            self.uniform[s] = counts[0] if len(set(counts)) == 1 else -1
            if p is not None:
                cnt = torch.tensor(counts)
                self.parent[s] = torch.repeat_interleave(torch.arange(len(counts)), cnt)
                starts = torch.cumsum(cnt, 0) - cnt
                self.local[s] = torch.arange(self.n[s]) - starts[self.parent[s]]
            else:
                self.local[s] = torch.arange(self.n[s])

        for g in spec.joint:   # one permutation acts on all sets of a joint group (paper 002 Sec. II)
            for s in g[1:]:
                if per_parent[s] != per_parent[g[0]]:
                    each = " per parent" if spec.parent(s) else ""
                    raise SpecError(source, s, f"joint with {g[0]!r}, so it needs the same count{each}: "
                                               f"{g[0]}={_fmt(per_parent[g[0]])}, {s}={_fmt(per_parent[s])}")

    def ancestor(self, s: str, a: str) -> Tensor:
        """Map each element of ``s`` to its ancestor in set ``a`` (``a == s``: identity)."""
        idx = torch.arange(self.n[s])
        while s != a:
            idx = self.parent[s][idx]
            s = self.spec.parent(s)
        return idx

    def level(self, s: str, lvl: int) -> tuple[str | None, Tensor]:
        """Element ids of ``s`` lifted ``lvl`` nesting levels up (``None``: pooled)."""
        chain = [s, *self.spec.ancestors(s)]
        if lvl >= len(chain):
            return None, torch.zeros(self.n[s], dtype=torch.long)
        return chain[lvl], self.ancestor(s, chain[lvl])


def _plain_int(v):
    """numpy and other integer scalars as ``int`` (sizes are often computed with numpy);
    anything else unchanged, for the checks to name."""
    return int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v


def _fmt(counts: list[int]):
    return counts[0] if len(counts) == 1 else counts


def _topological(spec: ProblemSpec) -> list[str]:
    return sorted(spec.sets, key=spec.depth)


def resolve_sizes(sizes: str | Mapping, source: str = "--sizes") -> dict:
    """Sizes as a ``{set: count}`` dict, from a mapping or from text such as
    ``"ue=4,ant_bs=8"`` (:func:`parse_sizes`)."""
    if isinstance(sizes, str):
        return parse_sizes(sizes, source)
    if not isinstance(sizes, Mapping):
        raise SpecError(source, "<sizes>", "expected a mapping {set: count} or a string like 'ue=4,ant_bs=8', "
                                           f"got {type(sizes).__name__}")
    return dict(sizes)


def parse_sizes(text: str, source: str = "--sizes") -> dict[str, int | list[int]]:
    """Parse ``"ue=3,ant_ue=[2,3,1],ant_bs=8"`` into a sizes mapping.

    Nested sets take an integer (same count in every parent) or a bracketed list
    of per-parent counts (ragged). Raises :class:`SpecError` on malformed text.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_sizes: expected text such as 'ue=3,ant_bs=8', got {type(text).__name__}")
    out: dict[str, int | list[int]] = {}
    parts, depth, cur = [], 0, ""
    for ch in text.strip():
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    for part in parts:
        if "=" not in part:
            raise SpecError(source, part.strip() or "<empty>", "expected NAME=COUNT or NAME=[c1,c2,...]")
        key, val = (x.strip() for x in part.split("=", 1))
        if not key or key in out:
            raise SpecError(source, key or part.strip(), "set name missing" if not key else "size given twice")
        try:
            if val.startswith("["):
                if not val.endswith("]"):
                    raise ValueError
                out[key] = [int(v) for v in val[1:-1].split(",") if v.strip()]
            else:
                out[key] = int(val)
        except ValueError:
            raise SpecError(source, key, f"expected an integer or a list of integers, got {val!r}") from None
    return out
