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
    python -m bench.vote_speed --alternatives  # also times an incremental (one member per
                                               # step) depth-first scan of the same tallies

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


def dfs_preorder(n_models: int, max_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Depth and last member of every team of size <= max_size, in depth-first preorder."""
    depth, last = [], []

    def visit(start: int, d: int) -> None:
        for a in range(start, n_models):
            depth.append(d)
            last.append(a)
            if d < max_size:
                visit(a + 1, d + 1)

    visit(0, 1)
    return np.array(depth, np.int32), np.array(last, np.int32)


def incremental_dfs(bundle, max_size: int, *, blocks: int = 32, tile: int = 2048) -> np.ndarray:
    """Alternative: packed tallies updated by ONE member per step of a lockstep DFS scan.

    ``blocks`` contiguous ranges of the preorder advance in lockstep (``jax.lax.scan``); each
    keeps a stack of its path's tallies, so every step is one gather + add + scatter. Samples
    are processed in tiles so the stacks stay in cache. Returns correct counts per preorder
    node (teams of every size 1..max_size).
    """

    import jax
    import jax.numpy as jnp

    from focal._votes import PackedVotes, field_bits

    pv = PackedVotes(bundle.preds, bundle.labels, bundle.n_classes, field_bits(max_size))
    assert pv.codes.shape[0] == 1, "single-word tallies only in this alternative"
    depth, last = dfs_preorder(bundle.n_models, max_size)
    n_nodes, rows = len(depth), max_size + 1
    steps = -(-n_nodes // blocks)
    pad = steps * blocks - n_nodes
    depth = np.concatenate([depth, np.ones(pad, np.int32)])
    last = np.concatenate([last, np.zeros(pad, np.int32)])
    path = np.zeros((len(depth), max_size), np.int32)  # members of each node's path
    for k in range(1, max_size + 1):
        at = np.maximum.accumulate(np.where(depth == k, np.arange(len(depth)), 0))
        path[:, k - 1] = last[at]
    first_path = path[np.arange(blocks) * steps]
    d2, l2 = depth.reshape(blocks, steps).T, last.reshape(blocks, steps).T
    row0 = np.arange(blocks)[None, :] * rows

    with jax.enable_x64(True):
        guard = jnp.uint64(int(pv.guard[0]))

        @jax.jit
        def scan(stack, read, write, member, codes):
            def step(stack, x):
                r, w, j = x
                tally = stack[r] + codes[j]
                stack = stack.at[w].set(tally, unique_indices=True)
                return stack, jnp.sum((tally & guard) == guard, axis=1, dtype=jnp.int32)

            return jax.lax.scan(step, stack, (read, write, member))[1]

        read = jnp.asarray(row0 + d2 - 1)
        write = jnp.asarray(row0 + np.minimum(d2, rows - 1))
        member = jnp.asarray(l2)
        codes_all, base_all = jnp.asarray(pv.codes[0]), jnp.asarray(pv.base[0])
        total = np.zeros((steps, blocks), np.int64)
        n = bundle.n_samples
        for s0 in range(0, n, tile):
            codes = codes_all[:, s0 : s0 + tile]
            base = base_all[s0 : s0 + tile]
            if codes.shape[1] < tile:  # zero base fails the test: padding never counts
                codes = jnp.pad(codes, ((0, 0), (0, tile - codes.shape[1])))
                base = jnp.pad(base, (0, tile - base.shape[0]))
            stack = [jnp.broadcast_to(base, (blocks, tile))]
            for k in range(1, rows):
                stack.append(stack[-1] + codes[first_path[:, k - 1]])
            stack = jnp.stack(stack, 1).reshape(blocks * rows, tile)
            total += np.asarray(scan(stack, read, write, member, codes))
    return total.T.reshape(-1)[:n_nodes], depth[:n_nodes], path[:n_nodes]


def alternative(bundle, reps: int) -> dict:
    """Time the incremental DFS scan against the direct kernel on all teams of sizes 2-5."""
    import focal
    from focal._teams import rank_teams

    incremental_dfs(bundle, 5)  # warm-up (compiles)
    t_inc, (counts, depth, path) = _median_time(lambda: incremental_dfs(bundle, 5), reps)
    t_dir, (_, acc) = _median_time(lambda: focal.team_vote_accuracies(bundle, (2, 5)), reps)
    # exactness: map preorder nodes (size >= 2) to canonical order through their masks
    keep = depth >= 2
    counts, depth, path = counts[keep], depth[keep], path[keep]
    node_masks = np.zeros((len(depth), bundle.n_models), bool)
    for k in range(1, 6):
        sel = depth >= k
        node_masks[np.flatnonzero(sel), path[sel, k - 1]] = True
    per_size = [focal.count_teams(bundle.n_models, [s]) for s in range(2, 5)]
    offsets = np.concatenate([[0], np.cumsum(per_size)])
    order = offsets[depth - 2] + rank_teams(node_masks)
    diff = float(np.abs(counts / bundle.n_samples - acc[order]).max())
    return {
        "sizes": "2-5 (the scan also visits the 29 single members)",
        "incremental_dfs_s": t_inc,
        "direct_kernel_s": t_dir,
        "direct_over_incremental": t_inc / t_dir,
        "max_abs_diff": diff,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="alternating repetitions (median)")
    parser.add_argument("--sample", type=int, default=8192, help="baseline teams timed per row")
    parser.add_argument("--full-baseline", action="store_true", help="time the baseline on all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alternatives", action="store_true", help="time the DFS scan too")
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

    alt = None
    if args.alternatives:
        alt = alternative(bundle, args.reps)
        print(json.dumps(alt), flush=True)

    doc = {
        "data": path.name,
        "n_models": bundle.n_models,
        "n_samples": bundle.n_samples,
        "n_classes": bundle.n_classes,
        "seed": args.seed,
        "rows": rows,
        "alternative": alt,
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
    if alt is not None:
        print(
            f"\nIncremental lockstep DFS scan (one member per step), sizes 2-5: "
            f"{alt['incremental_dfs_s']:.2f} s vs direct packed kernel "
            f"{alt['direct_kernel_s']:.2f} s"
            f" ({alt['direct_over_incremental']:.1f}× in favour of direct; max abs diff "
            f"{alt['max_abs_diff']:.1g})."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
