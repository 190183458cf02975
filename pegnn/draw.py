"""Drawing of one problem instance, as ``pegnn inspect --draw`` shows it.

The picture is read top to bottom:

* **set elements** (circles, one colour per set, numbered by their index inside
  their parent) in bands by nesting depth: root sets on top, the children of each
  parent element placed right under it, so the ``(child, 'in', parent)`` nesting
  edges are short dark lines;
* **tensor entries** (small squares for inputs, diamonds for outputs), one row per
  field, each linked to its element in every dim by a thin line in that set's
  colour (the ``(field, 'at_<set>', set)`` incidence edges). An entry sits at the
  mean position of its elements, so entries over the same elements line up.

Everything drawn is read from the built graph, not recomputed, so the picture
shows what the model sees. The state field ``_D`` and the engine's cached edges
(fibres, pairs, pooling maps) are not drawn: they are products of the same sets
and would hide the structure. Above :data:`MAX_ENTRIES` entries the drawing keeps
the set elements, the nesting and one representative input field, and says so in
its title.

Only the Agg canvas is used (no pyplot state, no display needed).
"""
from __future__ import annotations

from pathlib import Path

import networkx as nx
from matplotlib.figure import Figure
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.lines import Line2D

from .spec import ProblemSpec

__all__ = ["draw_graph", "MAX_ENTRIES", "MAX_LABELLED"]

MAX_ENTRIES = 120     # more tensor entries than this: draw one representative input only
MAX_FIELD = 400       # the representative input itself must stay below this
MAX_LABELLED = 80     # more set elements than this: no index labels inside the circles
_BAND = 1.8           # vertical distance between nesting levels
_ROW = 1.1            # vertical distance between field rows
_ENTRY_GAP = 0.55     # minimum horizontal distance between entries in one row


def draw_graph(spec: ProblemSpec, graph, path: str | Path, title: str | None = None) -> str:
    """Draw the sets, nesting and tensor entries of ``graph`` to an image file.

    Args:
        spec: the problem the graph was built from (gives the fields' dims and roles).
        graph: a :class:`~pegnn.graph.SetGraph` from :func:`~pegnn.graph.build_graph`.
        path: the output file; the format follows the suffix (``.png``, ``.svg``, ``.pdf``).
        title: first title line; defaults to the spec's name.

    Returns:
        One line saying what was drawn (all fields, or which representative field).
        Raises ``OSError`` if the file cannot be written.
    """
    fields = [(n, t, "input") for n, t in spec.inputs.items()] + \
             [(n, t, "output") for n, t in spec.outputs.items()]
    total = sum(graph[n].num_nodes for n, _, _ in fields)
    if total <= MAX_ENTRIES:
        shown, note = fields, f"all {len(fields)} tensor fields ({total} entries)"
    else:
        rep = _representative(spec, graph)
        shown = [(rep, spec.inputs[rep], "input")] if rep else []
        note = (f"{total} tensor entries: showing sets, nesting and only input {rep!r} "
                f"({graph[rep].num_nodes} entries)" if rep else
                f"{total} tensor entries: showing sets and nesting only")

    pos, depth = _set_positions(spec, graph)
    g = nx.Graph()
    for s in spec.sets:
        for e in range(graph[s].num_nodes):
            g.add_node((s, e))
    for s in spec.sets:
        p = spec.parent(s)
        if p is not None:
            child, parent = graph[s, "in", p].edge_index.tolist()
            g.add_edges_from((((s, c), (p, q)) for c, q in zip(child, parent)), kind="in")

    y = -(max(depth.values()) + 1) * _BAND + 0.3
    rows = []
    for name, t, role in shown:
        elems = _entry_elements(graph, name, t.dims)
        xs = [sum(pos[(d, e)][0] for d, e in els) / len(els) if els else None for els in elems]
        for i, x in enumerate(_spread(xs, pos)):
            g.add_node((name, i))
            pos[(name, i)] = (x, y)
            g.add_edges_from(((name, i), el, {"kind": "at", "set": el[0]}) for el in elems[i])
        rows.append((name, t, role, y))
        y -= _ROW

    colours = _palette(list(spec.sets))
    xs_all = [x for x, _ in pos.values()]
    width = max(xs_all) - min(xs_all) if xs_all else 1.0
    height = -y + 0.5
    fig = Figure(figsize=(min(max(8.0, 0.45 * width + 4.5), 26.0), min(max(4.5, 0.75 * height + 1.8), 18.0)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)

    # incidence first (thin, under everything), then nesting, then nodes
    for s in spec.sets:
        at = [(u, v) for u, v, d in g.edges(data=True) if d["kind"] == "at" and d["set"] == s]
        if at:
            nx.draw_networkx_edges(g, pos, edgelist=at, ax=ax, edge_color=[colours[s]], width=0.8, alpha=0.45)
    nest = [(u, v) for u, v, d in g.edges(data=True) if d["kind"] == "in"]
    if nest:
        nx.draw_networkx_edges(g, pos, edgelist=nest, ax=ax, edge_color="#333333", width=2.0)

    n_elems = sum(graph[s].num_nodes for s in spec.sets)
    big = n_elems > MAX_LABELLED
    for s in spec.sets:
        nodes = [(s, e) for e in range(graph[s].num_nodes)]
        nx.draw_networkx_nodes(g, pos, nodelist=nodes, ax=ax, node_color=[colours[s]], node_shape="o",
                               node_size=90 if big else 300, edgecolors="#222222", linewidths=0.8)
        if not big:
            nx.draw_networkx_labels(g, pos, labels={n: str(i) for n, i in zip(nodes, _local_index(spec, graph, s))},
                                    ax=ax, font_size=7, font_color=_text_on(colours[s]))
    for name, t, role, yr in rows:
        nodes = [(name, i) for i in range(graph[name].num_nodes)]
        nx.draw_networkx_nodes(g, pos, nodelist=nodes, ax=ax, node_color="#d9d9d9" if role == "input" else "#ffffff",
                               node_shape="s" if role == "input" else "D", node_size=55 if role == "input" else 45,
                               edgecolors="#222222", linewidths=0.8)
        dims = " × ".join(t.dims) if t.dims else "scalar"
        ax.annotate(f"{name} [{dims}]  ({role}, {len(nodes)})", xy=(min(xs_all) - 0.8, yr), ha="right",
                    va="center", fontsize=8, annotation_clip=False)

    # a name over each root set's block, a name beside each nesting band
    for s in spec.sets:
        xs = [pos[(s, e)][0] for e in range(graph[s].num_nodes)]
        if spec.parent(s) is None:
            ax.annotate(s, xy=((min(xs) + max(xs)) / 2, 0.55), ha="center", va="bottom", fontsize=9,
                        fontweight="bold", color=colours[s], annotation_clip=False)
    for lvl in range(1, max(depth.values()) + 1):
        names = ", ".join(f"{s} in {spec.parent(s)}" for s in spec.sets if depth[s] == lvl)
        ax.annotate(f"nested: {names}", xy=(min(xs_all) - 0.8, -lvl * _BAND), ha="right", va="center",
                    fontsize=8, style="italic", annotation_clip=False)

    handles = [Line2D([], [], marker="o", ls="", markersize=9, markerfacecolor=colours[s], markeredgecolor="#222222",
                      label=f"{s} ({graph[s].num_nodes})" + (f", in {spec.parent(s)}" if spec.parent(s) else ""))
               for s in spec.sets]
    if nest:
        handles.append(Line2D([], [], color="#333333", lw=2, label="nesting (child in parent)"))
    if any(r[2] == "input" for r in rows):
        handles.append(Line2D([], [], marker="s", ls="", markerfacecolor="#d9d9d9", markeredgecolor="#222222",
                              label="input entry"))
    if any(r[2] == "output" for r in rows):
        handles.append(Line2D([], [], marker="D", ls="", markersize=5, markerfacecolor="#ffffff",
                              markeredgecolor="#222222", label="output entry"))
    if rows:
        handles.append(Line2D([], [], color="#888888", lw=0.8, label="entry at element (set colour)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
              title="sets (elements)", title_fontsize=9)

    state = f"state field _D: {graph['_D'].num_nodes} entries, not drawn" if "_D" in graph.node_types else ""
    ax.set_title(f"{title or spec.name}\n{note}" + (f"; {state}" if state else ""), fontsize=10, loc="left")
    ax.set_xlim(min(xs_all) - 0.7, max(xs_all) + 0.7)
    ax.set_ylim(y + _ROW - 0.7, 1.2)
    ax.axis("off")
    # "tight" grows the canvas to hold the legend and the row labels outside the axes
    fig.savefig(path, dpi=130, bbox_inches="tight", pad_inches=0.2)
    return note


# ------------------------------------------------------------------ layout
def _set_positions(spec: ProblemSpec, graph) -> tuple[dict, dict]:
    """x of every set element: roots left to right, each parent element centred
    over the block of its children (grouped by child set). y by nesting depth."""
    kids: dict[tuple[str, int], dict[str, list[int]]] = {}
    for s in spec.sets:
        p = spec.parent(s)
        if p is not None:
            child, parent = graph[s, "in", p].edge_index.tolist()
            for c, q in zip(child, parent):
                kids.setdefault((p, q), {}).setdefault(s, []).append(c)

    width: dict[tuple[str, int], float] = {}

    def w(node) -> float:
        if node not in width:
            blocks = [sum(w((c, k)) for k in ks) for c, ks in kids.get(node, {}).items()]
            width[node] = max(1.0, sum(blocks) + 0.6 * (len(blocks) - 1))
        return width[node]

    pos: dict = {}

    def place(node, x0: float) -> None:
        x = x0
        for c, ks in kids.get(node, {}).items():
            for k in ks:
                place((c, k), x)
                x += w((c, k))
            x += 0.6
        pos[node] = (x0 + w(node) / 2 - 0.5, -spec.depth(node[0]) * _BAND)

    x = 0.0
    for s in spec.sets:
        if spec.parent(s) is None:
            for e in range(graph[s].num_nodes):
                place((s, e), x)
                x += w((s, e))
            x += 1.2
    return pos, {s: spec.depth(s) for s in spec.sets}


def _entry_elements(graph, name: str, dims) -> list[list[tuple[str, int]]]:
    """For each entry of a field, its elements ``(set, id)``, read from the incidence edges."""
    out: list[list[tuple[str, int]]] = [[] for _ in range(graph[name].num_nodes)]
    seen: set[str] = set()
    for d in dims:
        rel = f"at2_{d}" if d in seen else f"at_{d}"
        seen.add(d)
        src, dst = graph[name, rel, d].edge_index.tolist()
        for i, e in zip(src, dst):
            out[i].append((d, e))
    return out


def _spread(xs: list, pos: dict) -> list[float]:
    """Entry x positions: their barycentres, pushed apart to at least ``_ENTRY_GAP``
    in a row (order kept) and re-centred; entries without dims go to the middle."""
    all_x = [x for x, _ in pos.values()] or [0.0]
    mid = (min(all_x) + max(all_x)) / 2
    want = [mid if x is None else x for x in xs]
    order = sorted(range(len(want)), key=lambda i: want[i])
    out = [0.0] * len(want)
    last = None
    for i in order:
        x = want[i] if last is None else max(want[i], last + _ENTRY_GAP)
        out[i] = last = x
    if out:
        shift = sum(want) / len(want) - sum(out) / len(out)
        out = [x + shift for x in out]
    return out


def _local_index(spec: ProblemSpec, graph, s: str) -> list[int]:
    """Index of each element inside its parent (its global id for a normal set)."""
    p = spec.parent(s)
    if p is None:
        return list(range(graph[s].num_nodes))
    parents = graph[s, "in", p].edge_index[1].tolist()
    out, count = [], {}
    for q in parents:
        out.append(count.get(q, 0))
        count[q] = count.get(q, 0) + 1
    return out


def _representative(spec: ProblemSpec, graph) -> str | None:
    """The input to show in a reduced drawing: the one over the most sets among
    those small enough to read, first declared on ties."""
    small = [n for n, t in spec.inputs.items() if t.dims and graph[n].num_nodes <= MAX_FIELD]
    if not small:
        return None
    return max(small, key=lambda n: (len(set(spec.inputs[n].dims)), -list(spec.inputs).index(n)))


def _palette(sets: list[str]) -> dict[str, str]:
    import matplotlib
    cmap = matplotlib.colormaps["tab10" if len(sets) <= 10 else "tab20"]
    return {s: matplotlib.colors.to_hex(cmap(i % cmap.N)) for i, s in enumerate(sets)}


def _text_on(colour: str) -> str:
    import matplotlib
    r, g, b = matplotlib.colors.to_rgb(colour)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"
