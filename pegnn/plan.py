"""From spec to plan: the TENN "find TE" step and Guo & Yang's Procedure 1.

``plan(spec)`` decides, with a one-sentence reason for each decision:

* **the symmetry group**, one factor per set: ``S_n`` for a normal set, the
  wreath product ``S_child ≀ S_parent`` for a nested set (permute the parents and,
  independently, the children inside each parent), one shared permutation for a
  declared joint group;
* **the state tensor** D^(ℓ) the engine updates (paper 002 Sec. IV-B): one axis per
  *recursion set* = every set used by a tensor, except a set whose descendant is
  also used (its permutation is realised by the descendant's NPE function);
* **TE modules** by comparing input and output dims (paper 000 Sec. IV-A,
  "find TE"): MDE along every state axis (eq. 17), MDI pooling (eqs. 26-30) along
  every state axis an output lacks, HOE lifting (eqs. 19-24) along a set an
  output repeats (an input that repeats a set needs the 2→2 order layer);
* **processors** (paper 002 Sec. III-C and Procedure 1, lines 5 and 13-17): a set
  with interference that the inputs do not reflect gets an *attention*
  processor and goes first in the recursion order; every other set gets an
  *ordinary* processor; normal sets take APE functions, nested sets NPE functions
  (multi-tier for deeper nesting); the last recursion's combiner/processor are
  FNNs (line 21);
* **the output function** f_out (Procedure 1, lines 24-27; Prop. 4): cascaded when
  two recursion sets are jointly permuted, i.e. they share an ancestor set (their
  subsets move together when the ancestor is permuted) or are declared joint.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .spec import ProblemSpec, as_spec

__all__ = ["Plan", "SetPlan", "OutputPlan", "plan"]

_TIERS = {2: "Two", 3: "Three", 4: "Four", 5: "Five"}


@dataclass
class SetPlan:
    """The decisions for one set."""
    kind: str                    # "normal" | "nested"
    parent: str | None
    group: str                   # its factor of the symmetry group
    function: str | None         # "APE" | "NPE" | None (a parent level, no recursion of its own)
    tiers: int                   # 1 for APE, 2 for NPE, 3 for three-tier NPE, ...
    processor: str | None        # "attention" | "ordinary" | None
    recursion: int | None        # 1-based position in the recursion order, None for a parent level
    reason: str


@dataclass
class OutputPlan:
    """How the state tensor becomes one output: MDI pooling over ``pool``, HOE lift
    on ``lift``, and broadcast over sets no input carries."""
    dims: list[str]
    pool: list[str]
    lift: list[str]
    broadcast: list[str]
    reason: str


@dataclass
class Plan:
    name: str
    sets: dict[str, SetPlan]
    recursion_order: list[str]
    state: list[str]
    modules: dict[str, list[str]]
    outputs: dict[str, OutputPlan]
    output_function: bool
    joint: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)

    def attention_sets(self) -> list[str]:
        return [s for s in self.recursion_order if self.sets[s].processor == "attention"]

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def __str__(self) -> str:
        lines = [f"plan for {self.name!r}",
                 f"  state tensor D over ({', '.join(self.state)}); recursion order: "
                 f"{' -> '.join(self.recursion_order)}"]
        lines.append("  sets:")
        for s, p in self.sets.items():
            head = (f"#{p.recursion} {p.function}{'' if p.tiers <= 2 else f'({p.tiers}-tier)'} "
                    f"{p.processor}" if p.recursion else "parent level")
            lines.append(f"    {s:<10} {p.kind:<7} {p.group:<22} {head}")
            lines.append(f"    {'':<10} - {p.reason}")
        lines.append("  modules:")
        for m, sets in self.modules.items():
            lines.append(f"    {m:<4} {', '.join(sets) if sets else '-'}  ({self.reasons.get(m, '')})")
        lines.append("  outputs:")
        for o, op in self.outputs.items():
            lines.append(f"    {o}[{', '.join(op.dims)}]: {op.reason}")
        lines.append(f"  output function f_out: {'yes' if self.output_function else 'no'} "
                     f"({self.reasons.get('output_function', '')})")
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        return "\n".join(lines)


def plan(spec: ProblemSpec | str) -> Plan:
    """Derive the symmetry group, TE modules, processors and recursion order of a spec
    (or of the spec YAML at a path)."""
    spec = as_spec(spec)
    used = spec.used_sets()
    input_sets = spec.used_sets(spec.inputs.values())
    # a used set is a recursion set unless one of its descendants is used too
    shadowed = {a for s in used for a in spec.ancestors(s)}
    recursion_sets = [s for s in spec.sets if s in used and s not in shadowed]

    def unreflected(s: str) -> str | None:
        """The set (s or an ancestor) carrying interference the inputs do not show."""
        for t in [s, *spec.ancestors(s)]:
            i = spec.interference_on(t)
            if i is not None and not i.reflected:
                return t
        return None

    attention = [s for s in recursion_sets if unreflected(s)]
    order = attention + [s for s in recursion_sets if s not in attention]

    sets: dict[str, SetPlan] = {}
    for s in spec.sets:
        anc = spec.ancestors(s)
        kind = "nested" if anc else "normal"
        group = f"S_{s}" if not anc else f"S_{s} ≀ S_{anc[0]}"
        jg = spec.joint_group(s)
        if jg:
            group += f" (shared with {', '.join(x for x in jg if x != s)})"
        if s not in order:
            below = [c for c in recursion_sets if s in spec.ancestors(c)]
            sets[s] = SetPlan(kind, spec.parent(s), group, None, 0, None, None,
                              f"parent level of {', '.join(below) or 'nested sets'}: permuting {s} is realised by "
                              "the across-parent aggregation of their NPE functions (paper 002 eq. 4), "
                              "so it needs no recursion of its own")
            continue
        r = order.index(s) + 1
        tiers = len(anc) + 1
        function = "APE" if not anc else "NPE"
        fname = (f"{_TIERS.get(tiers, str(tiers))}-tier NPE" if tiers > 2 else function)
        src = unreflected(s)
        if src:
            i = spec.interference_on(src)
            where = "" if src == s else f" (declared on its ancestor {src})"
            proc = "attention"
            why = (f"interference among {src}{where} is not reflected in the inputs, so the processor is "
                   f"attention and {s} goes first (Procedure 1, lines 5 and 13-14)")
            if i.description:
                why += f"; {i.description}"
        else:
            i = spec.interference_on(s)
            proc = "ordinary"
            why = (f"interference among {s} is reflected in the inputs, so an ordinary processor suffices "
                   "(paper 002 Sec. III-C2; Procedure 1, line 16)" if i else
                   f"no interference among {s}, so an ordinary processor (Procedure 1, line 16)")
        kind_why = (f"{s} is a normal set, so an APE function (paper 002 eq. 2/3)" if not anc else
                    f"{s} is nested in {' in '.join(anc)}, so a {fname} function (paper 002 eq. 4/5)")
        last = "; as the last recursion its combiner and processor are FNNs (line 21)" if r == len(order) else ""
        sets[s] = SetPlan(kind, spec.parent(s), group, function, tiers, proc, r,
                          f"{kind_why}; {why}{last}")

    # joint relations and the output function ------------------------------
    joint: list[dict] = []
    for g in spec.joint:
        joint.append({"sets": list(g), "reason": "declared joint: one common permutation acts on "
                                                 f"{', '.join(g)}, so only entries with equal indices are updated"})
    for a in spec.sets:
        kids = [s for s in order if a in spec.ancestors(s)]
        if len(kids) >= 2 and a not in order:
            joint.append({"sets": kids, "via": a,
                          "reason": f"{', '.join(kids)} are all nested in {a}: permuting {a} moves their subsets "
                                    f"together, so only entries with the same {a} index are updated"})
    output_function = bool(joint)
    fout_reason = ("; ".join(j["reason"] for j in joint) + " (Procedure 1, lines 24-27)") if joint else \
        "no sets are jointly permuted, so no output function is cascaded"

    # modules ----------------------------------------------------------------
    # a set twice when an input repeats it: the order-2 state that the 2→2 layer of
    # paper 001 App. E updates (P-C's G[ue, ue])
    state = [x for s in order for x in ([s, s] if any(t.dims.count(s) == 2 for t in spec.inputs.values()) else [s])]
    outputs: dict[str, OutputPlan] = {}
    warnings: list[str] = []
    mdi: list[str] = []
    hoe: list[str] = []
    for name, t in spec.outputs.items():
        covered = {x for d in t.dims for x in [d, *spec.ancestors(d)]}
        pool = [s for s in order if s not in covered]
        second = [s for s in order if state.count(s) == 2 and s in covered and t.dims.count(s) < 2]
        lift = sorted({d for d in t.dims if t.dims.count(d) == 2}, key=t.dims.index)
        carried = {x for d in input_sets for x in [d, *spec.ancestors(d)]}
        broadcast = [d for d in dict.fromkeys(t.dims) if d not in carried]
        parts = []
        if pool:
            parts.append(f"MDI pooling over {', '.join(pool)} (its value must not change when they are permuted)")
        if second:
            parts.append(f"MDI pooling over the second {', '.join(second)} axis of the order-2 state "
                         "(an output over one copy is invariant to the other)")
        if lift:
            parts.append(f"HOE 1→2 lift on {', '.join(lift)} (the output repeats it, e.g. eq. 11b)")
        if not parts:
            parts.append("read directly from the equivariant state (MDE)")
        outputs[name] = OutputPlan(list(t.dims), pool, lift, broadcast, "; ".join(parts))
        for s in pool + second:
            if s not in mdi:
                mdi.append(s)
        for s in lift:
            if s not in hoe:
                hoe.append(s)
        for s in broadcast:
            warnings.append(
                f"output {name!r} uses set {s!r} that no input carries: an exactly equivariant model gives "
                f"identical outputs along {s!r}; add an input over {s!r} (e.g. an initial solution, "
                "paper 001 App. G) to break the tie")
    for name, t in spec.inputs.items():
        for d in dict.fromkeys(t.dims):
            if t.dims.count(d) == 2 and d not in hoe:
                hoe.append(d)
    for s_ in spec.sets:
        i, src = spec.interference_on(s_), unreflected(s_)
        if i is not None and i.reflected and src not in (None, s_):
            warnings.append(f"interference among {s_!r} is declared reflected, but its ancestor {src!r} is not: "
                            f"the unreflected interference across {src} elements puts attention on the sets nested "
                            f"in {src!r} anyway (declare {src!r} reflected if its inputs show it)")
    reasons = {
        "MDE": "every state axis is permuted equivariantly by the backbone (eq. 17)",
        "MDI": "state axes absent from an output are pooled invariantly (PMA, eqs. 26-30)",
        "HOE": "sets that a tensor repeats need high-order equivariance (eqs. 19-24; 2→2 for inputs)",
        "output_function": fout_reason,
    }
    return Plan(name=spec.name, sets=sets, recursion_order=order, state=state,
                modules={"MDE": list(order), "MDI": mdi, "HOE": hoe}, outputs=outputs,
                output_function=output_function, joint=joint, warnings=warnings, reasons=reasons)
