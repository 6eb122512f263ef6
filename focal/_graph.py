"""A networkx view of a pool: models as nodes, pairwise diversity as edge weights.

:func:`pool_graph` builds a complete undirected graph of a bundle's models. Each edge carries
the pair's score by a diversity metric (by default ``focal``: for a pair this is the *focal
negative correlation* of the two models, higher = more diverse / less correlated errors), the
correlation of their errors and the plurality-vote accuracy of the pair. :func:`write_graph`
exports it as GraphML or node-link JSON, :func:`read_graph` reads those back, and
:func:`draw_graph` draws it as a PNG (matplotlib, imported lazily, Agg canvas, never
``pyplot``). ``focal graph BUNDLE`` is the command-line front end (:func:`add_graph_parser`,
:func:`cmd_graph`).

networkx and matplotlib are imported only inside the functions that need them, so
``import focal`` stays light.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ensembles.util import InputError, write_atomic

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx

    from ensembles import Bundle

__all__ = [
    "GRAPH_FORMATS",
    "LAYOUTS",
    "IMAGE_SUFFIXES",
    "graph_format",
    "draw_graph",
    "graph_layout",
    "partners",
    "pool_graph",
    "read_graph",
    "to_json",
    "write_graph",
]

#: File suffixes understood by :func:`write_graph` / :func:`read_graph`, and their format.
GRAPH_FORMATS: dict[str, str] = {".graphml": "graphml", ".json": "json"}

#: Layouts understood by :func:`graph_layout` and :func:`draw_graph`.
LAYOUTS: tuple[str, ...] = ("spring", "kamada_kawai", "circular")

#: Image suffixes understood by :func:`draw_graph` (no suffix means PNG).
IMAGE_SUFFIXES = ("", ".png", ".svg", ".pdf")

#: Closeness given to an edge whose weight is NaN when laying the graph out.
_NAN_CLOSENESS = 0.5


# ---------------------------------------------------------------------------- building


def _pair_masks(n_models: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    pairs = [(i, j) for i in range(n_models) for j in range(i + 1, n_models)]
    masks = np.zeros((len(pairs), n_models), dtype=bool)
    for row, (i, j) in enumerate(pairs):
        masks[row, [i, j]] = True
    return pairs, masks


def pool_graph(bundle: Bundle, *, metric: str = "focal") -> nx.Graph:
    """The complete graph of a pool: one node per model, one weighted edge per pair.

    All ``M(M-1)/2`` pairs are scored at once: one batched call of
    :func:`focal.score_teams` per metric and one of :func:`ensembles.team_accuracy`.

    With the default ``metric="focal"``, an edge's weight is the focal diversity of the
    2-member team: the mean, over the two members with at least one error, of the generalized
    diversity on that member's negative samples (docs/metrics.md). For a pair this reads as the
    *focal negative correlation* of the two models: seen from a member whose errors the other
    member shares in a fraction ``x``, ``GD = (1 - x) / (1 + x)``; the weight is the mean of
    this over the two members (over the one member that is ever wrong, if only one is). It
    lies in ``[0, 1]``; higher means more diverse (less correlated failures): 1 when the two
    are never wrong together, 0 when they always fail together. Any name of
    :data:`focal.METRICS` may be used instead; the graph attribute ``direction`` says which way
    is more diverse.

    A pair whose members are never wrong has an undefined score: its edge is kept, with
    ``weight`` NaN. Such edges are written as ``null`` in JSON and *without* a ``weight``
    data element in GraphML (which has no portable NaN); :func:`read_graph` restores NaN.

    Args:
        bundle: the cached outputs of the pool (an :class:`ensembles.Bundle`).
        metric: edge-weight metric, any name of :data:`focal.METRICS` (default ``"focal"``).

    Returns:
        An undirected :class:`networkx.Graph` whose nodes are the model names, in member
        order, with attributes

        - nodes: ``index`` (member index, int), ``accuracy``, ``error_rate`` (``1 -
          accuracy``; an abstention is an error) and ``abstain_rate`` (floats);
        - edges: ``weight`` (the pair's ``metric`` score, NaN when undefined),
          ``correlation`` (error correlation ρ of the pair on all samples; lower = more
          diverse) and ``accuracy`` (plurality-vote accuracy of the pair; ties go to the lowest
          class index, docs/metrics.md);
        - graph: ``metric``, ``direction`` (``"higher"``/``"lower"`` is more diverse),
          ``n_models``, ``n_samples``, ``n_classes`` and ``task`` (only when the bundle has
          one).

    Raises:
        ValueError: unknown metric, or ``bundle`` is not a bundle.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
        ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
        >>> g = pool_graph(b)
        >>> g.number_of_nodes(), g.number_of_edges()
        (3, 3)
        >>> g.edges["a", "b"]["weight"], round(g.edges["a", "c"]["weight"], 4)
        (1.0, 0.3333)
        >>> g.nodes["c"]["accuracy"], g.graph["direction"]
        (0.5, 'higher')
    """
    import networkx as nx

    import ensembles

    from ._metrics import metric_spec
    from ._scoring import score_teams

    if not isinstance(bundle, ensembles.Bundle):
        raise InputError(f"bundle: expected an ensembles.Bundle, got {type(bundle).__name__}")
    spec = metric_spec(metric)
    pairs, masks = _pair_masks(bundle.n_models)
    weights = score_teams(bundle, masks, metric=spec.name)
    rho = (
        weights if spec.name == "correlation" else score_teams(bundle, masks, metric="correlation")
    )
    pair_acc = ensembles.team_accuracy(bundle, masks, combiner="plurality")

    graph = nx.Graph(
        metric=spec.name,
        direction=spec.direction,
        n_models=bundle.n_models,
        n_samples=bundle.n_samples,
        n_classes=bundle.n_classes,
    )
    if bundle.task is not None:
        graph.graph["task"] = str(bundle.task)
    accuracy = bundle.accuracies()
    abstain = (bundle.preds < 0).mean(axis=1)
    for i, name in enumerate(bundle.models):
        graph.add_node(
            str(name),
            index=i,
            accuracy=float(accuracy[i]),
            error_rate=float(1.0 - accuracy[i]),
            abstain_rate=float(abstain[i]),
        )
    for row, (i, j) in enumerate(pairs):
        graph.add_edge(
            str(bundle.models[i]),
            str(bundle.models[j]),
            weight=float(weights[row]),
            correlation=float(rho[row]),
            accuracy=float(pair_acc[row]),
        )
    return graph


def partners(graph: nx.Graph) -> dict[str, dict[str, tuple[str, float] | None]]:
    """Each node's most and least diverse partner, by edge weight and the graph's direction.

    Edges with a NaN weight are ignored; ties go to the partner that comes first in node
    order.

    Args:
        graph: a graph from :func:`pool_graph` (or :func:`read_graph`).

    Returns:
        ``{node: {"most_diverse": (partner, weight) | None, "least_diverse": ... }}``.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
        ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
        >>> partners(pool_graph(b))["a"]["most_diverse"]
        ('b', 1.0)
    """
    sign = -1.0 if graph.graph.get("direction") == "lower" else 1.0
    order = {node: k for k, node in enumerate(graph.nodes)}
    out: dict[str, dict[str, tuple[str, float] | None]] = {}
    for node in graph.nodes:
        scored = [
            (other, float(data.get("weight", math.nan)))
            for other, data in graph.adj[node].items()
            if other != node
        ]
        scored = sorted((p for p in scored if math.isfinite(p[1])), key=lambda p: order[p[0]])
        if not scored:
            out[node] = {"most_diverse": None, "least_diverse": None}
            continue
        most = max(scored, key=lambda p: sign * p[1])  # first maximum in node order
        least = min(scored, key=lambda p: sign * p[1])
        out[node] = {"most_diverse": most, "least_diverse": least}
    return out


# ---------------------------------------------------------------------------- export


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(graph: nx.Graph) -> dict[str, Any]:
    """The node-link JSON document of a graph, strict JSON (NaN and infinities become ``null``).

    The layout is networkx's node-link format with ``edges="edges"``: ``{"directed",
    "multigraph", "graph", "nodes": [{"id", ...}], "edges": [{"source", "target", ...}]}``,
    nodes in graph order. ``networkx.node_link_graph(doc, edges="edges")`` reads it back (with
    ``None`` for undefined weights); :func:`read_graph` restores NaN.

    Args:
        graph: any undirected networkx graph with JSON-serialisable attributes.

    Returns:
        A dict that ``json.dumps(..., allow_nan=False)`` accepts.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b"], labels=[0, 0],
        ...                             preds=[[0, 0], [0, 0]])
        >>> doc = to_json(pool_graph(b))
        >>> doc["edges"][0]["weight"] is None, [n["id"] for n in doc["nodes"]]
        (True, ['a', 'b'])
    """
    return {
        "directed": bool(graph.is_directed()),
        "multigraph": bool(graph.is_multigraph()),
        "graph": {k: _finite_or_none(v) for k, v in graph.graph.items()},
        "nodes": [
            {"id": node, **{k: _finite_or_none(v) for k, v in data.items()}}
            for node, data in graph.nodes(data=True)
        ],
        "edges": [
            {"source": u, "target": v, **{k: _finite_or_none(x) for k, x in data.items()}}
            for u, v, data in graph.edges(data=True)
        ],
    }


def graph_format(path: str | os.PathLike[str], what: str = "out") -> str:
    """The graph file format (``graphml`` or ``json``) named by ``path``'s suffix.

    Example:
        >>> graph_format("pool.graphml")
        'graphml'
    """
    suffix = Path(path).suffix.lower()
    if suffix not in GRAPH_FORMATS:
        raise InputError(
            f"{what}: unknown graph file suffix {suffix or '(none)'!r} in {os.fspath(path)!r}; "
            "use .graphml or .json"
        )
    return GRAPH_FORMATS[suffix]


def _without_undefined(graph: nx.Graph) -> nx.Graph:
    """A copy without ``None``/NaN/inf attributes (GraphML has no portable missing value)."""

    def keep(data: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in data.items() if _finite_or_none(v) is not None}

    out = graph.__class__()
    out.graph.update(keep(graph.graph))
    out.add_nodes_from((n, keep(d)) for n, d in graph.nodes(data=True))
    out.add_edges_from((u, v, keep(d)) for u, v, d in graph.edges(data=True))
    return out


def write_graph(graph: nx.Graph, path: str | os.PathLike[str]) -> Path:
    """Write a graph as GraphML (``.graphml``) or node-link JSON (``.json``), atomically.

    The format follows the suffix (case-insensitive). The file is written to a temporary file
    in the destination folder and renamed over ``path``; missing folders are created.
    Undefined values (NaN weights) are written as ``null`` in JSON and left out of GraphML.

    Args:
        graph: the graph, e.g. from :func:`pool_graph`.
        path: destination, ending in ``.graphml`` or ``.json``.

    Returns:
        The destination path.

    Raises:
        ValueError: any other suffix.

    Example:
        >>> import tempfile, pathlib, ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
        ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
        >>> out = write_graph(pool_graph(b), pathlib.Path(tempfile.mkdtemp()) / "pool.graphml")
        >>> sorted(read_graph(out).edges)
        [('a', 'b'), ('a', 'c'), ('b', 'c')]
    """
    fmt = graph_format(path, "path")
    if fmt == "json":
        text = json.dumps(to_json(graph), allow_nan=False, indent=2) + "\n"
        return write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))
    import networkx as nx

    clean = _without_undefined(graph)
    return write_atomic(path, lambda fh: nx.write_graphml(clean, fh))


def read_graph(path: str | os.PathLike[str]) -> nx.Graph:
    """Read a graph written by :func:`write_graph`, restoring undefined values as NaN.

    For every node (edge) attribute that some node (edge) has, a node (edge) where it is
    missing (GraphML) or ``null`` (JSON) gets NaN, so a pool graph reads back with the same
    attributes it was written with. GraphML ``long`` attributes come back as Python ``int``.

    Args:
        path: a ``.graphml`` or ``.json`` file.

    Returns:
        The graph.

    Raises:
        ValueError: unknown suffix, or a JSON file that is not a node-link document.

    Example:
        >>> import tempfile, pathlib, ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b"], labels=[0, 0],
        ...                             preds=[[0, 0], [0, 0]])
        >>> out = write_graph(pool_graph(b), pathlib.Path(tempfile.mkdtemp()) / "pool.json")
        >>> read_graph(out).edges["a", "b"]["weight"]
        nan
    """
    import networkx as nx

    fmt = graph_format(path, "path")
    if fmt == "graphml":
        graph = nx.read_graphml(os.fspath(path))
        for key in ("node_default", "edge_default"):
            graph.graph.pop(key, None)
    else:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        if not isinstance(doc, dict) or not {"nodes", "edges"} <= doc.keys():
            raise InputError(f"path: {os.fspath(path)!r} is not a node-link JSON graph")
        graph = nx.MultiGraph() if doc.get("multigraph") else nx.Graph()
        if doc.get("directed"):
            graph = graph.to_directed()
        graph.graph.update(doc.get("graph") or {})
        try:
            graph.add_nodes_from(
                (n["id"], {k: v for k, v in n.items() if k != "id"}) for n in doc["nodes"]
            )
            graph.add_edges_from(
                (
                    e["source"],
                    e["target"],
                    {k: v for k, v in e.items() if k not in ("source", "target")},
                )
                for e in doc["edges"]
            )
        except (KeyError, TypeError) as exc:
            raise InputError(
                f"path: {os.fspath(path)!r} is not a node-link JSON graph ({exc!r})"
            ) from None
    _restore_nan(graph)
    return graph


def _restore_nan(graph: nx.Graph) -> None:
    for view in (graph.nodes(data=True), graph.edges(data=True)):
        rows = [row[-1] for row in view]
        keys: list[str] = []
        for data in rows:
            keys += [k for k in data if k not in keys]
        for data in rows:
            for k in keys:
                if data.get(k) is None:
                    data[k] = math.nan


# ---------------------------------------------------------------------------- drawing


def _closeness(graph: nx.Graph) -> dict[tuple[Any, Any], float]:
    """Per edge, how alike its two models are, in ``[0.05, 1]`` (1 = least diverse pair)."""
    sign = -1.0 if graph.graph.get("direction") == "lower" else 1.0
    w = {
        (u, v): math.nan if d.get("weight") is None else float(d["weight"])
        for u, v, d in graph.edges(data=True)
    }
    finite = [x for x in w.values() if math.isfinite(x)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
    out = {}
    for edge, x in w.items():
        if not math.isfinite(x):
            c = _NAN_CLOSENESS
        elif hi > lo:
            diverse = (x - lo) / (hi - lo) if sign > 0 else (hi - x) / (hi - lo)
            c = 1.0 - diverse
        else:
            c = 0.5
        out[edge] = 0.05 + 0.95 * c
    return out


def graph_layout(
    graph: nx.Graph, *, layout: str = "spring", seed: int = 0
) -> dict[Any, tuple[float, float]]:
    """2-D node positions in which alike models sit close and diverse ones far apart.

    Each edge gets a *closeness* in ``[0.05, 1]``: the least diverse pair (by weight and the
    graph's ``direction``) gets 1, the most diverse 0.05, NaN weights a neutral middle value.
    ``"spring"`` (Fruchterman-Reingold) uses closeness as the attraction, seeded by ``seed``
    (a local NumPy generator; global random state is untouched), so the same graph and seed
    give the same positions. ``"kamada_kawai"`` uses ``1.05 - closeness`` as the target
    distance and ``"circular"`` puts the nodes on a circle in node order; both are
    deterministic and ignore ``seed``. The graph is not modified.

    Args:
        graph: a graph from :func:`pool_graph` (or :func:`read_graph`).
        layout: one of :data:`LAYOUTS`.
        seed: seed of the spring layout.

    Returns:
        ``{node: (x, y)}`` with Python floats.

    Raises:
        ValueError: unknown layout.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
        ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
        >>> g = pool_graph(b)
        >>> graph_layout(g, seed=3) == graph_layout(g, seed=3)
        True
    """
    import networkx as nx

    if layout not in LAYOUTS:
        raise InputError(f"layout: unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InputError(f"seed: expected an integer, got {seed!r}")
    if graph.number_of_nodes() == 0:
        return {}
    work = nx.Graph()
    work.add_nodes_from(graph.nodes)
    for (u, v), c in _closeness(graph).items():
        if u != v:
            work.add_edge(u, v, closeness=c, distance=1.05 - c)
    if layout == "spring":
        pos = nx.spring_layout(work, weight="closeness", seed=int(seed))
    elif layout == "kamada_kawai":
        pos = nx.kamada_kawai_layout(work, weight="distance")
    else:
        pos = nx.circular_layout(work)
    return {node: (float(pos[node][0]), float(pos[node][1])) for node in graph.nodes}


def _norm(values: np.ndarray) -> np.ndarray:
    """Min-max scale the finite entries to [0, 1] (0.5 when all equal); NaN stays NaN."""
    out = np.full(values.shape, np.nan)
    finite = np.isfinite(values)
    if finite.any():
        lo, hi = values[finite].min(), values[finite].max()
        out[finite] = (values[finite] - lo) / (hi - lo) if hi > lo else 0.5
    return out


def draw_graph(
    graph: nx.Graph,
    path: str | os.PathLike[str],
    *,
    layout: str = "spring",
    seed: int = 0,
    title: str | None = None,
    edge_labels: bool | None = None,
    figsize: tuple[float, float] = (8.0, 6.5),
    dpi: int = 120,
    node_cmap: str = "viridis",
    edge_cmap: str = "coolwarm",
) -> Path:
    """Draw a pool graph to an image file (PNG by default), atomically.

    Node size and colour follow each model's ``accuracy``; edge width and colour follow the
    edge ``weight`` (wider and warmer = larger value; the colour bar names the metric and its
    direction). Edges with a NaN weight are drawn thin, grey and dashed. Nodes are labelled
    with the model names. Positions come from :func:`graph_layout` with ``layout`` and
    ``seed``, so the drawing is reproducible.

    matplotlib is imported lazily and the figure is a standalone
    :class:`matplotlib.figure.Figure` on an Agg canvas: no display is needed and the global
    ``pyplot`` state is never touched.

    Args:
        graph: a graph from :func:`pool_graph` (or :func:`read_graph`).
        path: destination; the format follows the suffix: ``.png`` (or none), ``.svg``,
            ``.pdf``. Missing folders are created.
        layout: one of :data:`LAYOUTS`.
        seed: seed of the spring layout.
        title: figure title; default: models, samples and the metric with its direction.
        edge_labels: write each edge's weight at its midpoint; default only for 6 models or
            fewer.
        figsize: figure size in inches.
        dpi: resolution of raster formats.
        node_cmap: matplotlib colormap of node accuracy.
        edge_cmap: matplotlib colormap of edge weight.

    Returns:
        The destination path.

    Raises:
        ValueError: unknown layout or image suffix.

    Example:
        >>> import tempfile, pathlib, ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
        ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "pool.png"
        >>> draw_graph(pool_graph(b), out).read_bytes()[:4]
        b'\\x89PNG'
    """
    dest = Path(path)
    suffix = dest.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(
            f"png: unknown image suffix {suffix!r} in {os.fspath(path)!r}; use .png, .svg or .pdf"
        )
    pos = graph_layout(graph, layout=layout, seed=seed)
    from ._plot import require_matplotlib

    require_matplotlib()
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    nodes = list(graph.nodes)
    metric = str(graph.graph.get("metric", "weight"))
    direction = graph.graph.get("direction")

    # Edges, drawn in increasing weight so the largest values end up on top.
    edges = [(u, v, d) for u, v, d in graph.edges(data=True) if u != v]
    weights = np.array(
        [np.nan if d.get("weight") is None else float(d["weight"]) for _, _, d in edges],
        dtype=np.float64,
    ).reshape(-1)
    finite = np.isfinite(weights)
    scaled = _norm(weights)
    ecmap = colormaps[edge_cmap]
    if finite.any():
        lo, hi = weights[finite].min(), weights[finite].max()
        enorm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1e-12)
    else:
        enorm = Normalize(vmin=0.0, vmax=1.0)
    order = [int(k) for k in np.argsort(np.where(finite, weights, -np.inf), kind="stable")]
    segs = [[pos[edges[k][0]], pos[edges[k][1]]] for k in order if finite[k]]
    if segs:
        ax.add_collection(
            LineCollection(
                segs,
                colors=[ecmap(enorm(weights[k])) for k in order if finite[k]],
                linewidths=[0.6 + 3.4 * scaled[k] for k in order if finite[k]],
                alpha=0.8,
                zorder=1,
            )
        )
    nan_segs = [[pos[u], pos[v]] for (u, v, _), ok in zip(edges, finite, strict=True) if not ok]
    if nan_segs:
        ax.add_collection(
            LineCollection(
                nan_segs, colors="0.6", linewidths=0.6, linestyles="dashed", alpha=0.8, zorder=1
            )
        )
    if edge_labels is None:
        edge_labels = len(nodes) <= 6
    if edge_labels:
        for (u, v, _), w in zip(edges, weights, strict=True):
            (x0, y0), (x1, y1) = pos[u], pos[v]
            ax.text(
                (x0 + x1) / 2, (y0 + y1) / 2, "-" if not math.isfinite(w) else f"{w:.3f}",
                fontsize=7, ha="center", va="center", zorder=2,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7},
            )  # fmt: skip

    # Nodes: size and colour by accuracy.
    acc = np.array(
        [np.nan if graph.nodes[n].get("accuracy") is None else graph.nodes[n]["accuracy"]
         for n in nodes],
        dtype=np.float64,
    ).reshape(-1)  # fmt: skip
    acc_scaled = np.nan_to_num(_norm(acc), nan=0.5)
    xy = np.array([pos[n] for n in nodes], dtype=np.float64).reshape(-1, 2)
    ncmap = colormaps[node_cmap]
    afin = acc[np.isfinite(acc)]
    alo, ahi = (afin.min(), afin.max()) if afin.size else (0.0, 1.0)
    nnorm = Normalize(vmin=alo, vmax=ahi if ahi > alo else alo + 1e-12)
    ax.scatter(
        xy[:, 0],
        xy[:, 1],
        s=250.0 + 1000.0 * acc_scaled,
        c=[ncmap(nnorm(a)) if math.isfinite(a) else (0.7, 0.7, 0.7, 1.0) for a in acc],
        edgecolors="black",
        linewidths=0.8,
        zorder=3,
    )
    fontsize = 9 if len(nodes) <= 15 else 7
    for n, (x, y) in zip(nodes, xy, strict=True):
        ax.annotate(
            str(n), (x, y), xytext=(0, 13), textcoords="offset points", ha="center",
            fontsize=fontsize, zorder=4,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.7", "alpha": 0.85},
        )  # fmt: skip

    way = {"higher": "higher = more diverse", "lower": "lower = more diverse"}.get(direction, "")
    fig.colorbar(
        ScalarMappable(norm=enorm, cmap=ecmap),
        ax=ax,
        fraction=0.04,
        pad=0.02,
        label=f"edge: {metric}" + (f" ({way})" if way else ""),
    )
    fig.colorbar(
        ScalarMappable(norm=nnorm, cmap=ncmap),
        ax=ax,
        orientation="horizontal",
        fraction=0.04,
        pad=0.02,
        aspect=40,
        label="node: accuracy",
    )
    if title is None:
        n_samples = graph.graph.get("n_samples")
        task = graph.graph.get("task")
        title = (
            (f"{task}: " if task else "")
            + f"{len(nodes)} models"
            + (f", {n_samples:,} samples" if isinstance(n_samples, int) else "")
            + f"; edges: {metric}"
        )
    if title:
        ax.set_title(title, fontsize=10)
    ax.set_aspect("equal", adjustable="datalim")
    ax.margins(0.15)
    ax.autoscale_view()
    ax.set_axis_off()

    fmt = suffix.lstrip(".") or "png"
    meta = {"Software": None} if fmt == "png" else None
    return write_atomic(
        dest,
        lambda fh: fig.savefig(fh, format=fmt, dpi=dpi, bbox_inches="tight", metadata=meta),
    )


# ---------------------------------------------------------------------------- command line
