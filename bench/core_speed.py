"""Speed of the focal core: fast path vs a per-team NumPy implementation, CLI wall time, scaling.

Run from the repository root::

    python -m bench.core_speed            # full run (a few minutes on 2 cores)
    python -m bench.core_speed --quick    # skips M = 24 and N = 100k in the scaling table

Writes ``bench/out/core_speed.json`` and prints Markdown tables (copied into bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT_DIR = Path(__file__).resolve().parent / "out"


def naive_focal(errors: np.ndarray, team: np.ndarray) -> float:
    """Focal diversity of one team, straight from the definition (CONTRACT §3), NumPy per team."""
    members = np.flatnonzero(team)
    size = len(members)
    sub = errors[members]
    values = []
    for row in sub:
        negatives = row == 1
        if not negatives.any():
            continue
        wrong_counts = sub[:, negatives].sum(axis=0)
        p = np.bincount(wrong_counts, minlength=size + 1) / negatives.sum()
        i = np.arange(size + 1)
        p1 = (i / size * p).sum()
        p2 = (i * (i - 1) / (size * (size - 1)) * p).sum()
        values.append(1.0 - p2 / p1)
    return float(np.mean(values)) if values else float("nan")


def speedup(n_models: int, n_samples: int, n_naive: int, seed: int) -> dict:
    """Score all teams (sizes 2..M) with the fast path; time the naive one on a sample of teams."""
    import focal
    from bench._synthetic import synthetic_bundle
    from focal._teams import binomial_table, unrank_teams

    bundle = synthetic_bundle(n_models, n_samples, seed=seed)
    sizes = (2, n_models)
    n_teams = focal.count_teams(n_models, range(2, n_models + 1))

    timings = {}
    for scan in ("chunked", "gray"):
        t0 = time.perf_counter()
        focal.prune(bundle, sizes=sizes, top_k=10, max_teams=None, scan=scan)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = focal.prune(bundle, sizes=sizes, top_k=10, max_teams=None, scan=scan)
        timings[scan] = (cold, time.perf_counter() - t0)
    cold, warm = min(timings.values(), key=lambda cw: cw[1])

    # Naive: a random sample of teams, stratified like the full population (sizes weighted by
    # C(M, L)), extrapolated to all teams; checked against the fast path on the same teams.
    rng = np.random.default_rng(seed)
    counts = np.array([focal.count_teams(n_models, [s]) for s in range(2, n_models + 1)])
    size_draw = rng.choice(np.arange(2, n_models + 1), size=n_naive, p=counts / counts.sum())
    binom = binomial_table(n_models)
    masks = np.stack(
        [
            unrank_teams(np.array([rng.integers(0, counts[s - 2])]), s, n_models, binom)[0]
            for s in size_draw
        ]
    )
    errors = bundle.errors
    t0 = time.perf_counter()
    naive_scores = np.array([naive_focal(errors, m) for m in masks])
    naive_per_team = (time.perf_counter() - t0) / n_naive
    fast_scores = focal.score_teams(bundle, masks)
    max_err = float(np.nanmax(np.abs(naive_scores - fast_scores)))
    naive_total = naive_per_team * n_teams
    return {
        "n_models": n_models,
        "n_samples": n_samples,
        "n_teams": n_teams,
        "chunked_seconds_cold_warm": timings["chunked"],
        "gray_seconds_cold_warm": timings["gray"],
        "fast_seconds_cold": cold,
        "fast_seconds_warm": warm,
        "fast_teams_per_second": n_teams / warm,
        "naive_teams_timed": n_naive,
        "naive_seconds_per_team": naive_per_team,
        "naive_seconds_extrapolated": naive_total,
        "speedup_warm": naive_total / warm,
        "speedup_cold": naive_total / cold,
        "max_abs_difference": max_err,
        "best_team": list(result.teams[0].members),
    }


def cli_wall_time(n_models: int, n_samples: int, seed: int) -> dict:
    """Wall time of the whole ``focal prune`` process (import, load, scan, accuracy, JSON)."""
    import ensembles
    from bench._synthetic import synthetic_bundle

    bundle = synthetic_bundle(n_models, n_samples, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "pool.npz")
        ensembles.save_bundle(bundle, path)
        cmd = [sys.executable, "-m", "focal", "prune", path, "--sizes", f"2-{n_models}"]
        cmd += ["--top-k", "10", "--format", "json"]
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            times.append(time.perf_counter() - t0)
        doc = json.loads(proc.stdout)
    return {
        "command": " ".join(["focal", *cmd[3:]]),
        "n_teams_scored": doc["n_teams_scored"],
        "wall_seconds": times,
        "wall_seconds_median": float(np.median(times)),
    }


def one_config(n_models: int, n_samples: int, seed: int) -> dict:
    """Time one full scan (all sizes 2..M) in this process; report peak RSS."""
    import focal
    from bench._synthetic import synthetic_bundle

    bundle = synthetic_bundle(n_models, n_samples, seed=seed)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    focal.prune(bundle, sizes=(2, n_models), top_k=10, max_teams=None)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    focal.prune(bundle, sizes=(2, n_models), top_k=10, max_teams=None)
    warm = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n_teams = focal.count_teams(n_models, range(2, n_models + 1))
    return {
        "n_models": n_models,
        "n_samples": n_samples,
        "n_teams": n_teams,
        "seconds_cold": cold,
        "seconds_warm": warm,
        "teams_per_second": n_teams / warm,
        "peak_rss_mib": peak / 1024,
        "rss_before_scan_mib": base_rss / 1024,
    }


def scaling(models: list[int], samples: list[int], seed: int) -> list[dict]:
    """Each configuration in a fresh subprocess, so peak memory is per configuration."""
    rows = []
    for m in models:
        for n in samples:
            cmd = [sys.executable, "-m", "bench.core_speed", "--one", str(m), str(n)]
            cmd += ["--seed", str(seed)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row = json.loads(proc.stdout)
            print(
                f"  M={m:2d} N={n:6d}: {row['seconds_warm']:.2f} s warm, "
                f"{row['peak_rss_mib']:.0f} MiB peak",
                file=sys.stderr,
            )
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print Markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller scaling table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--naive-teams", type=int, default=2000)
    parser.add_argument("--one", nargs=2, type=int, metavar=("M", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_config(args.one[0], args.one[1], args.seed)))
        return 0

    import jax

    env = {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
    print(f"environment: {env}", file=sys.stderr)
    print("speedup vs per-team NumPy (M=20, N=10,000) ...", file=sys.stderr)
    speed = speedup(20, 10_000, args.naive_teams, args.seed)
    print("wall time of the focal prune process ...", file=sys.stderr)
    cli = cli_wall_time(20, 10_000, args.seed)
    models = [8, 12, 16, 20] if args.quick else [8, 12, 16, 20, 24]
    samples = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    print("scaling ...", file=sys.stderr)
    table = scaling(models, samples, args.seed)

    OUT_DIR.mkdir(exist_ok=True)
    doc = {"environment": env, "speedup": speed, "cli": cli, "scaling": table}
    tmp = OUT_DIR / "core_speed.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, OUT_DIR / "core_speed.json")

    s = speed
    print("\n| quantity | value |\n|---|---|")
    print(f"| teams scored (M=20, sizes 2-20, N=10,000) | {s['n_teams']:,} |")
    rate = s["fast_teams_per_second"]
    for scan in ("chunked", "gray"):
        c, w = s[f"{scan}_seconds_cold_warm"]
        print(f"| {scan} scan: first call / warm | {c:.2f} s / {w:.2f} s |")
    print(f"| fast path, warm | {s['fast_seconds_warm']:.2f} s ({rate:,.0f} teams/s) |")
    print(f"| fast path, first call (with XLA compile) | {s['fast_seconds_cold']:.2f} s |")
    print(
        f"| per-team NumPy ({s['naive_teams_timed']:,} teams timed, extrapolated) | "
        f"{s['naive_seconds_per_team'] * 1e3:.3f} ms/team, "
        f"{s['naive_seconds_extrapolated']:,.0f} s |"
    )
    print(
        f"| **speedup** (warm / cold) | **{s['speedup_warm']:,.0f}x** / {s['speedup_cold']:,.0f}x |"
    )
    print(f"| max abs difference fast vs NumPy | {s['max_abs_difference']:.1e} |")
    print(
        f"| `{cli['command']}` process wall time (median of 3) | "
        f"{cli['wall_seconds_median']:.2f} s |"
    )
    print("\n| M | N | teams | warm s | first-call s | teams/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in table:
        print(
            f"| {r['n_models']} | {r['n_samples']:,} | {r['n_teams']:,} | "
            f"{r['seconds_warm']:.2f} | "
            f"{r['seconds_cold']:.2f} | {r['teams_per_second']:,.0f} | {r['peak_rss_mib']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
