"""The ``pegnn`` command line.

    pegnn inspect graphs/ris_pr.yaml                             # the plan, with its reasons
    pegnn inspect graphs/ris_pr.yaml --sizes cell=2,ue=[1,2],rf=2,ant_bs=3,re=4
    pegnn inspect graphs/ris_pr.yaml --json                      # one JSON object
    pegnn inspect graphs/ris_pr.yaml --draw ris_pr.png           # a picture of a small instance

Every user mistake (a bad spec, bad ``--sizes``, an unwritable output) is reported
as one line ``error: <source>: <key path>: <message>`` on stderr with exit status 2,
never as a traceback; usage errors (an unknown option, a missing command) are one
line ``error: pegnn ...: <message> (see --help)``, exit 2, as in the task scripts. Subcommands are
argparse subparsers, registered in :data:`COMMANDS`, so more can be added beside
``inspect``.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

from .config import TaskArgumentParser, out_of_memory, positive_int
from .graph import build_graph, resolve_sizes
from .plan import plan as make_plan
from .spec import ProblemSpec, SpecError, load_spec

__all__ = ["main", "default_sizes", "graph_summary"]

EXIT_USAGE = 2  # user errors share argparse's exit status


def default_sizes(spec: ProblemSpec) -> dict[str, int | list[int]]:
    """The small instance ``--draw`` uses without ``--sizes``: 2 elements per normal
    set, and for a nested set 1, 2, 1, 2, ... children per parent element (ragged, so
    the drawing shows that children are counted per parent)."""
    sizes: dict[str, int | list[int]] = {}
    total: dict[str, int] = {}
    for s in sorted(spec.sets, key=spec.depth):  # parents before children
        p = spec.parent(s)
        if p is None:
            sizes[s] = total[s] = 2
        else:
            counts = [1 + i % 2 for i in range(total[p])]
            sizes[s], total[s] = counts, sum(counts)
    return {s: sizes[s] for s in spec.sets}


def format_sizes(sizes) -> str:
    """``{"ue": [1, 2], "re": 2}`` → ``"ue=[1,2],re=2"`` (the ``--sizes`` syntax)."""
    return ",".join(f"{k}=[{','.join(map(str, v))}]" if isinstance(v, (list, tuple)) else f"{k}={v}"
                    for k, v in sizes.items())


def graph_summary(graph) -> dict:
    """Node types and edge types of a built graph with their counts (JSON-ready;
    an edge type ``(src, rel, dst)`` is keyed ``"src|rel|dst"``)."""
    return {"node_types": {n: int(graph[n].num_nodes) for n in graph.node_types},
            "edge_types": {"|".join(e): int(graph[e].edge_index.shape[1]) for e in graph.edge_types}}


# ------------------------------------------------------------------ inspect
def _add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="show the plan (and graph) a spec yields",
                       description="Print the plan derived from a spec with the reason for every decision; "
                                   "with --sizes also the graph's node and edge types with their counts.")
    p.add_argument("spec", help="a problem spec (YAML), e.g. graphs/ris_pr.yaml")
    p.add_argument("--sizes", metavar="SIZES",
                   help="build the graph for these sizes, e.g. 'cell=2,ue=[1,2],rf=2,ant_bs=3,re=4' "
                        "(nested sets: one count, or a [list] with one count per parent element)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--draw", metavar="FILE.png",
                   help="draw the instance (the --sizes one, else a small default) to an image file")
    p.add_argument("--hidden", type=positive_int, default=32,
                   help="hidden width of the model whose parameters are counted")
    p.add_argument("--layers", type=_layers, default=3,
                   help=f"backbone layers of that model (at most {MAX_LAYERS}: the count builds it)")
    p.set_defaults(run=_inspect)


#: ``--layers`` above this would take minutes to build (10⁵ layers: over a minute of silence)
MAX_LAYERS = 1000


def _layers(text: str) -> int:
    n = positive_int(text)
    if n > MAX_LAYERS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_LAYERS} layers, got {text!r}")
    return n


def model_summary(spec: ProblemSpec, hidden: int, layers: int) -> dict:
    """Parameter count of the :class:`~pegnn.models.PEGNN` the plan yields (judicious
    attention), in total and per module; it does not depend on the sizes."""
    if hidden < 1 or layers < 1:
        raise SpecError("--hidden/--layers", "model", f"must be positive ints, got {hidden}, {layers}")
    from .models import PEGNN
    model = PEGNN(spec, hidden=hidden, layers=layers)
    per = {}
    for name, mod in model.named_children():
        n = sum(p.numel() for p in mod.parameters())
        if n:
            per[name] = n
    return {"hidden": hidden, "layers": layers, "attention": model.attention_sets,
            "parameters": sum(per.values()), "per_module": per}


def _inspect(args) -> int:
    spec = load_spec(args.spec)
    p = make_plan(spec)
    graph = None
    if args.sizes is not None:
        sizes = resolve_sizes(args.sizes, "--sizes")
        graph = build_graph(spec, sizes, None, plan=p, source="--sizes")
    drawing = None
    if args.draw is not None:      # checked before the plan is printed: '' is a mistake, not "no drawing"
        _check_image_path(args.draw)
        # imported here: matplotlib is slow to import and only --draw needs it
        from .draw import draw_graph
        if graph is None:
            dsizes = default_sizes(spec)
            dgraph = build_graph(spec, dsizes, None, plan=p, source="default sizes")
            used = f"default sizes {format_sizes(dsizes)} (pass --sizes to choose)"
        else:
            dsizes, dgraph, used = sizes, graph, f"sizes {format_sizes(sizes)}"
        try:
            note = draw_graph(spec, dgraph, args.draw, title=f"{spec.name}: {format_sizes(dsizes)}")
        except OSError as e:
            raise SpecError(args.draw, "--draw", f"cannot write the drawing ({e.strerror or e})") from None
        drawing = {"path": args.draw, "sizes": dsizes, "note": note}

    model = model_summary(spec, args.hidden, args.layers)
    if args.json:
        out = p.to_dict()
        out["model"] = model
        if graph is not None:
            out["graph"] = {"sizes": sizes, **graph_summary(graph)}
        if drawing is not None:
            out["drawing"] = drawing
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0

    print(p)
    print(f"model: PEGNN(hidden={model['hidden']}, layers={model['layers']}, attention on {model['attention'] or 'no set'})"
          f": {model['parameters']:,} parameters (" + ", ".join(f"{k} {v:,}" for k, v in model["per_module"].items()) + ")")
    if graph is not None:
        summary = graph_summary(graph)
        print(f"graph for sizes {format_sizes(sizes)}:")
        print("  node types (entries/elements):")
        width = max(map(len, summary["node_types"]))
        for n, c in summary["node_types"].items():
            what = _node_role(spec, n)
            print(f"    {n:<{width}} {c:>8}  {what}")
        print("  edge types:")
        width = max((len(f"({e.replace('|', ', ')})") for e in summary["edge_types"]), default=0)
        for e, c in summary["edge_types"].items():
            print(f"    {'(' + e.replace('|', ', ') + ')':<{width}} {c:>8}")
    if drawing is not None:
        print(f"drew {args.draw} with {used}: {drawing['note']}")
    return 0


def _check_image_path(path: str) -> None:
    """Reject an image format matplotlib cannot write before any work is done."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    formats = FigureCanvasAgg.get_supported_filetypes()
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    if suffix not in formats:
        raise SpecError(path or "''", "--draw", f"unknown image format {suffix!r}; expected a file name ending in "
                                        f"one of {', '.join('.' + f for f in sorted(formats))}")


def _node_role(spec: ProblemSpec, n: str) -> str:
    if n in spec.sets:
        return f"set, nested in {spec.parent(n)}" if spec.parent(n) else "set"
    if n in spec.inputs:
        return "input field"
    if n in spec.outputs:
        return "output field"
    if n == "_D":
        return "state field (the tensor the engine updates)"
    if n.startswith("_B_"):
        return f"base field of {n[3:]} (before its HOE lift)"
    return ""


# --------------------------------------------------------------------- main
COMMANDS: list[Callable] = [_add_inspect]


def build_parser() -> argparse.ArgumentParser:
    ap = TaskArgumentParser(prog="pegnn", description="Permutation-equivariant GNNs for wireless resource "
                                                      "allocation, declared from the problem's sets.")
    sub = ap.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pegnn`` command line; returns the exit status (0 ok, 2 user error)."""
    ap = build_parser()
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2): keep main() returning
        return int(e.code or 0) if not isinstance(e.code, str) else EXIT_USAGE
    try:
        return args.run(args)
    except SpecError as e:
        print("error: " + " ".join(str(e).splitlines()), file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `pegnn inspect ... | head`
        return 0
    except (MemoryError, RuntimeError) as e:  # e.g. --sizes re=10**11: torch cannot allocate the graph
        what = out_of_memory(e)
        if what is None:
            raise
        print(f"error: pegnn {args.command}: out of memory for these --sizes/--hidden ({what}); "
              f"expected sizes that fit in memory", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
