"""``focal graph``: the networkx view of a pool on the command line."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

from ._common import (
    UsageError,
    add_bundle,
    add_format,
    add_metric,
    emit,
    load_bundle_arg,
    subcommand,
    table,
)

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``graph``."""
    from focal.graph import LAYOUTS

    p = subcommand(
        sub,
        "graph",
        help="networkx graph of the pool: pairwise focal negative correlation as edge weights",
        description="""\
        Build the complete graph of a pool: one node per model (accuracy, error and abstain
        rates), one edge per pair weighted by the pair's diversity score (default focal: the
        focal negative correlation of the two models, higher = less correlated failures), with
        the pair's error correlation and plurality accuracy. Print each model's most and least
        diverse partner, and optionally draw the graph (--png) and export it (--out, GraphML or
        node-link JSON, chosen by suffix). Pairs never wrong have an undefined weight: null in
        JSON, left out of GraphML, a dashed grey edge in the drawing.

        examples:
          focal graph outputs.npz --png pool.png --out pool.graphml
          focal graph bbh.npz --task navigate --split val --out pool.json --format json
          focal graph outputs.npz --metric focal_cohen_kappa --png pool.png --layout kamada_kawai
        """,
        run=run_graph,
    )
    add_bundle(p, split=True)
    add_metric(p, what="edge-weight metric")
    p.add_argument("--png", metavar="PATH", help="draw the graph (.png; .svg or .pdf also work)")
    p.add_argument("--out", metavar="PATH", help="export: .graphml (GraphML) or .json (node-link)")
    p.add_argument("--layout", choices=LAYOUTS, default="spring", help="layout (default spring)")
    p.add_argument("--seed", type=int, default=0, help="seed of the spring layout (default 0)")
    add_format(p)


def run_graph(args: argparse.Namespace) -> int:
    """Build the pool graph, write the requested files, print a summary."""
    from ensembles.util import check_writable
    from focal.graph import (
        IMAGE_SUFFIXES,
        draw_graph,
        graph_format,
        partners,
        pool_graph,
        to_json,
        write_graph,
    )

    if args.out is not None:
        graph_format(args.out, "--out")
        check_writable(args.out, name="--out")
    if args.png is not None:
        if Path(args.png).suffix.lower() not in IMAGE_SUFFIXES:
            raise UsageError(
                f"--png: unknown image suffix {Path(args.png).suffix!r} in {args.png!r}; "
                "use .png, .svg or .pdf"
            )
        check_writable(args.png, name="--png")
    bundle = load_bundle_arg(args)
    graph = pool_graph(bundle, metric=args.metric)
    files: dict[str, str | None] = {"png": None, "out": None}
    if args.out is not None:
        files["out"] = os.fspath(write_graph(graph, args.out))
    if args.png is not None:
        files["png"] = os.fspath(draw_graph(graph, args.png, layout=args.layout, seed=args.seed))
    best = partners(graph)

    def pick(p: tuple[str, float] | None) -> dict[str, Any] | None:
        return None if p is None else {"model": p[0], "weight": p[1]}

    rows = [
        {
            "model": node,
            "accuracy": data["accuracy"],
            "most_diverse": pick(best[node]["most_diverse"]),
            "least_diverse": pick(best[node]["least_diverse"]),
        }
        for node, data in graph.nodes(data=True)
    ]
    doc = {
        "metric": graph.graph["metric"],
        "direction": graph.graph["direction"],
        "n_models": graph.graph["n_models"],
        "n_samples": graph.graph["n_samples"],
        "task": graph.graph.get("task"),
        "graph": to_json(graph),
        "partners": rows,
        "files": files,
    }

    def cell(p: dict[str, Any] | None) -> str:
        if p is None:
            return "-"
        w = p["weight"]
        return f"{p['model']} ({w:.4f})" if math.isfinite(w) else p["model"]

    def text() -> str:
        where = f"task {bundle.task}: " if bundle.task else ""
        lines = [
            f"{where}{graph.number_of_nodes()} models, {graph.number_of_edges()} pairs, "
            f"{bundle.n_samples:,} samples; edge weight {graph.graph['metric']} "
            f"({graph.graph['direction']} is more diverse)",
            table(
                ("model", "accuracy", "most diverse partner", "least diverse partner"),
                [
                    (r["model"], r["accuracy"], cell(r["most_diverse"]), cell(r["least_diverse"]))
                    for r in rows
                ],
            ),
        ]
        lines += [
            f"wrote {'drawing' if kind == 'png' else 'graph'}: {value}"
            for kind, value in files.items()
            if value is not None
        ]
        return "\n".join(lines)

    return emit(args, doc, text)
