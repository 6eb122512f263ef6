"""Quality of the search methods against the exhaustive optimum, on the 29-model MMLU-Pro pool.

Every method maximises FusionShot's objective (``focal.Objective(w_div=0.5, w_acc=0.5)``:
0.5·focal + 0.5·plurality accuracy) over teams of sizes 2..6 (621,586 teams: exhaustive is
feasible, so each method's gap to the true optimum is known), then over each fixed size
L = 3, 4, 5, 6. Methods: exhaustive (the ground truth), greedy forward selection, beam search
(two widths) and FusionShot's genetic algorithm (mutation 1/M, several seeds).

    python -m bench.search_quality            # full run (a few minutes on 2 CPU cores)
    python -m bench.search_quality --quick    # sizes 2..4 and L = 3, 4 only

The exhaustive optimum over sizes 2..6 is the best of the per-size exhaustive scans (their
union is the same set of teams); its time and team count are their sums. Skips with a message
when ``../shared/data/mmlu_pro_29llm.npz`` (or ``$FOCAL_DATA_DIR``) is absent. Writes
``bench/out/search_quality.json`` (atomically) and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

DATA = Path(
    os.environ.get("FOCAL_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)
OUT = Path(__file__).resolve().parent / "out"
FILE = "mmlu_pro_29llm.npz"


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _methods(widths: list[int], seeds: list[int]) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, registry name, keyword arguments) of every non-exhaustive method run."""
    out: list[tuple[str, str, dict[str, Any]]] = [("greedy", "greedy", {})]
    out += [(f"beam (width {w})", "beam", {"beam_width": w}) for w in widths]
    out += [(f"GA (seed {s})", "ga", {"seed": s}) for s in seeds]
    return out


def _row(label: str, result: Any, optimum: float) -> dict[str, Any]:
    best = result.teams[0]
    return {
        "method": label,
        "best_fitness": best.fitness,
        "gap": optimum - best.fitness,
        "best_team": list(best.members),
        "best_size": best.size,
        "best_score": best.score,
        "best_accuracy": best.accuracy,
        "seconds": result.seconds,
        "n_evaluated": result.n_evaluated,
        "result": {k: v for k, v in result.to_dict().items() if k != "trajectory"},
    }


def _exhaustive_row(label: str, results: list, optimum: float) -> dict[str, Any]:
    """One row from per-size exhaustive results (their union is the whole request)."""
    import numpy as np

    from focal._search import _order

    teams = [t for r in results for t in r.teams]
    masks = np.stack([t.mask for t in teams])
    best = teams[int(_order(masks, np.array([t.fitness for t in teams]))[0])]
    return {
        "method": label,
        "best_fitness": best.fitness,
        "gap": optimum - best.fitness,
        "best_team": list(best.members),
        "best_size": best.size,
        "best_score": best.score,
        "best_accuracy": best.accuracy,
        "seconds": sum(r.seconds for r in results),
        "n_evaluated": sum(r.n_evaluated for r in results),
        "result": {"per_size": [r.to_dict() for r in results]},
    }


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| method | best fitness | gap to optimum | best team | seconds | teams evaluated |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        team = " + ".join(r["best_team"])
        lines.append(
            f"| {r['method']} | {r['best_fitness']:.6f} | {r['gap']:.6f} | {team} | "
            f"{r['seconds']:.2f} | {r['n_evaluated']:,} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every method, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 2..4 and L = 3, 4 only")
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 64], help="beam widths")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="GA seeds")
    args = parser.parse_args(argv)

    path = DATA / FILE
    if not path.is_file():
        print(f"skipped: shared data file {path} not found (set FOCAL_DATA_DIR)", file=sys.stderr)
        return 0

    import jax

    import ensembles
    import focal
    from focal.search import exhaustive_objective

    def search(bundle, name, *, objective, sizes, beam_width=16, seed=0, **kwargs):
        strategy = {"greedy": focal.Greedy(), "beam": focal.Beam(width=beam_width),
                    "ga": focal.Genetic(seed=seed, **kwargs)}[name]  # fmt: skip
        return focal.select(bundle, objective=objective, sizes=sizes, search=strategy, top_k=10)

    bundle = ensembles.load_bundle(path)
    objective = focal.Objective(w_div=0.5, w_acc=0.5)
    largest = 4 if args.quick else 6
    fixed = [3, 4] if args.quick else [3, 4, 5, 6]
    env = {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpy": _version("numpy"),
        "focal_fusion": _version("focal-fusion"),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
    print(f"environment: {env}", file=sys.stderr)

    # Warm up the jitted kernels on a small request, so timings below exclude compilation.
    for _, name, kwargs in _methods(args.widths, args.seeds[:1]):
        search(bundle, name, objective=objective, sizes=(2, 3), **kwargs)

    exhaustive: dict[int, Any] = {}
    for size in range(2, largest + 1):
        t0 = time.perf_counter()
        exhaustive[size] = exhaustive_objective(bundle, objective=objective, sizes=size, top_k=10)
        print(
            f"exhaustive size {size}: {exhaustive[size].n_evaluated:,} teams, "
            f"{time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )

    requests: list[tuple[str, tuple[int, ...]]] = [(f"sizes 2..{largest}", (2, largest))]
    requests += [(f"size {size}", (size, size)) for size in fixed]
    sections: dict[str, list[dict[str, Any]]] = {}
    for title, (lo, hi) in requests:
        per_size = [exhaustive[s] for s in range(lo, hi + 1)]
        optimum = max(r.teams[0].fitness for r in per_size)
        label = "exhaustive" if lo == hi else "exhaustive (sum of per-size scans)"
        rows = [_exhaustive_row(label, per_size, optimum)]
        for label, name, kwargs in _methods(args.widths, args.seeds):
            sizes = lo if lo == hi else (lo, hi)
            result = search(bundle, name, objective=objective, sizes=sizes, **kwargs)
            rows.append(_row(label, result, optimum))
            print(f"{title}: {label} {result.seconds:.2f} s", file=sys.stderr)
        sections[title] = rows

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    doc = {
        "schema_version": 1,
        "environment": env,
        "input": {
            "file": FILE,
            "sha256": digest,
            "n_models": bundle.n_models,
            "n_samples": bundle.n_samples,
        },
        "objective": objective.name,
        "settings": {"beam_widths": args.widths, "ga_seeds": args.seeds, "quick": args.quick},
        "sections": sections,
    }
    OUT.mkdir(exist_ok=True)
    tmp = OUT / "search_quality.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=False))
    os.replace(tmp, OUT / "search_quality.json")

    print(
        f"Objective {objective.name} on {FILE} ({bundle.n_models} models, "
        f"{bundle.n_samples:,} samples); gap = exhaustive optimum − best fitness found."
    )
    for title, rows in sections.items():
        print(f"\n### {title}\n")
        print(_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
