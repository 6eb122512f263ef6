"""Vote accuracy of every team: packed-tally kernel vs ``ensembles.team_accuracy``, side by side.

Scores all teams of sizes 2-5 (and 2-6) of the 29-model MMLU-Pro pool with plurality voting
(and majority for 2-5). The packed kernel runs in full (``focal.team_vote_accuracies``); the
batched-matmul path of ``ensembles.team_accuracy`` is timed on a random sample of the same teams
(its cost per team does not depend on the team size) and extrapolated to the full count, unless
``--full-baseline`` is given. Repetitions of the two sides alternate, so CPU contention hits both;
medians are reported. Exactness: the kernel's accuracies are compared with the baseline's on
every team the baseline scored.

Run from the repository root::

    python -m bench.vote_speed                 # ~2-4 minutes on 2 shared cores
    python -m bench.vote_speed --full-baseline # also runs the baseline on every team (slow)

Writes ``bench/out/vote_speed.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

OUT_DIR = Path(__file__).resolve().parent / "out"


def data_path() -> Path:
    env = os.environ.get("FOCAL_DATA_DIR")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return root / "mmlu_pro_29llm.npz"


def _median_time(fn, reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def compare(bundle, lo: int, hi: int, combiner: str, *, reps: int, sample: int, full: bool, seed):
    """One row of the table: all teams of sizes lo..hi with one combiner."""
    import ensembles
    import focal

    sizes = tuple(range(lo, hi + 1))
    n_teams = focal.count_teams(bundle.n_models, sizes)

    t0 = time.perf_counter()
    masks, fast_acc = focal.team_vote_accuracies(bundle, sizes, combiner=combiner)
    cold = time.perf_counter() - t0  # includes compilation (one per team size)

    rng = np.random.default_rng(seed)
    pick = np.arange(n_teams) if full else np.sort(rng.choice(n_teams, sample, replace=False))
    sub = masks[pick]
    ensembles.team_accuracy(bundle, sub[:64], combiner=combiner)  # compile its kernel

    fast_times, base_times, base_acc = [], [], None
    for _ in range(reps):  # alternate the two sides
        t_fast, (_, fast_acc) = _median_time(
            lambda: focal.team_vote_accuracies(bundle, sizes, combiner=combiner), 1
        )
        t_base, base_acc = _median_time(
            lambda: ensembles.team_accuracy(bundle, sub, combiner=combiner), 1
        )
        fast_times.append(t_fast)
        base_times.append(t_base)
    t_fast, t_base_sample = float(np.median(fast_times)), float(np.median(base_times))
    t_base = t_base_sample * n_teams / len(pick)
    diff = float(np.abs(np.asarray(base_acc) - fast_acc[pick]).max())
    return {
        "sizes": f"{lo}-{hi}",
        "combiner": combiner,
        "n_teams": int(n_teams),
        "baseline_teams_timed": int(len(pick)),
        "baseline_extrapolated": not full,
        "baseline_s": t_base,
        "baseline_us_per_team": 1e6 * t_base_sample / len(pick),
        "kernel_s": t_fast,
        "kernel_cold_s": cold,
        "kernel_us_per_team": 1e6 * t_fast / n_teams,
        "speedup": t_base / t_fast,
        "max_abs_diff": diff,
        "reps": reps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="alternating repetitions (median)")
    parser.add_argument("--sample", type=int, default=8192, help="baseline teams timed per row")
    parser.add_argument("--full-baseline", action="store_true", help="time the baseline on all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT_DIR / "vote_speed.json"))
    args = parser.parse_args(argv)

    path = data_path()
    if not path.is_file():
        print(f"skipped: {path} is absent (set FOCAL_DATA_DIR)")
        return 0
    import jax

    import ensembles
    from ensembles.util import write_atomic

    bundle = ensembles.load_bundle(path)
    rows = []
    for lo, hi, combiner in ((2, 5, "plurality"), (2, 5, "majority"), (2, 6, "plurality")):
        row = compare(
            bundle, lo, hi, combiner, reps=args.reps, sample=args.sample,
            full=args.full_baseline, seed=args.seed,
        )  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)

    doc = {
        "data": path.name,
        "n_models": bundle.n_models,
        "n_samples": bundle.n_samples,
        "n_classes": bundle.n_classes,
        "seed": args.seed,
        "rows": rows,
        "versions": {"jax": jax.__version__, "numpy": np.__version__},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    write_atomic(args.out, lambda fh: fh.write(json.dumps(doc, indent=1).encode()))

    print()
    print(
        "| sizes | combiner | teams | team_accuracy (s) | packed kernel (s) | speed-up "
        "| µs/team (old → new) | max abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        star = "*" if r["baseline_extrapolated"] else ""
        print(
            f"| {r['sizes']} | {r['combiner']} | {r['n_teams']:,} | {r['baseline_s']:.1f}{star} "
            f"| {r['kernel_s']:.2f} (cold {r['kernel_cold_s']:.2f}) | {r['speedup']:.0f}× "
            f"| {r['baseline_us_per_team']:.0f} → {r['kernel_us_per_team']:.1f} "
            f"| {r['max_abs_diff']:.1g} |"
        )
    if any(r["baseline_extrapolated"] for r in rows):
        print(
            f"\n\\* extrapolated from {args.sample:,} random teams per row "
            "(team_accuracy's cost per team does not depend on the team size)."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
