"""How the defaults of ``focal recommend`` are chosen — without touching any test row.

    python -m bench.recommend_defaults [--only bbh,sklearn,digits,mmlu]

For every dataset, only its *selection* rows are used to choose: they are split again (seeded,
stratified 75/25) into inner-selection and inner-report rows, ``focal.recommend`` runs on the
inner split with each candidate default, and each candidate is scored by its mean accuracy on
the inner-report rows over all datasets. The candidate with the best mean wins (ties: the
simpler one, i.e. the smaller ``w_div`` and the smaller ``alpha``). Only then are the real test
rows read, once, to report the chosen default (``python -m bench.recommend``).

Candidates: ``w_div`` (weight of focal diversity in the objective of the ``search`` team rule;
``w_acc = 1 − w_div``) in {0, 0.2, 0.5}, the guard's ``alpha`` in {0.05, 0.2, 0.5, 1} (1 = no
guard: the cross-validated winner is always recommended) and ``folds`` in {5, 10}. Each
dataset's selection rows are re-split with three seeds (0, 1, 2) and the scores averaged, so
one lucky inner split does not decide. Ties: the smaller ``w_div``, then the smaller ``alpha``
(the more conservative guard), then fewer folds.

Writes bench/out/recommend_defaults.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import numpy as np

import ensembles
import focal
from ensembles.util import write_json_atomic

from .recommend import DATA, OUT, SKLEARN_POOLS, _log, _sklearn_pool

W_DIV = (0.0, 0.2, 0.5)
ALPHA = (0.05, 0.2, 0.5, 1.0)
FOLDS = (5, 10)
INNER_SEEDS = (0, 1, 2)


def _selection_rows(bundle: ensembles.Bundle, select_on: str) -> ensembles.Bundle:
    """The rows ``bench.recommend`` selects on (its test rows are dropped here, unread)."""
    full, _ = ensembles.ensure_splits(bundle, seed=0)
    split = np.asarray(full.split)
    return full.select_samples(split != "test" if select_on == "rest" else split == select_on)


def _inner(selection: ensembles.Bundle, seed: int) -> ensembles.Bundle:
    """Selection rows re-split into inner selection (train+val, 75 %) and inner report (25 %)."""
    return ensembles.with_random_split(selection, fractions=(0.6, 0.15, 0.25), seed=seed)


def _datasets(only: set[str]) -> list[tuple[str, ensembles.Bundle]]:
    """``(name, bundle of its selection rows only)`` for every dataset asked for."""
    out = []
    if "bbh" in only and (DATA / "bbh_5llm_marl_focal.npz").is_file():
        path = DATA / "bbh_5llm_marl_focal.npz"
        raw = np.load(path, allow_pickle=False)
        for name, b in ensembles.load_tasks(path).items():
            ok = f"{name}/label_ok"
            if ok in raw.files and not bool(raw[ok]):
                continue
            out.append((f"bbh/{name}", _selection_rows(b, "rest")))
    if "sklearn" in only:
        for name in SKLEARN_POOLS:
            crossed = _sklearn_pool(name, 0)[0]  # cross-fitted: train+val select
            out.append((f"sklearn/{name}", _selection_rows(crossed, "rest")))
    if "digits" in only:
        from focal_cli._demo import digits_pool

        out.append(("digits_demo", _selection_rows(digits_pool(seed=0), "rest")))
    if "mmlu" in only and (DATA / "mmlu_pro_29llm.npz").is_file():
        mmlu = ensembles.load_bundle(DATA / "mmlu_pro_29llm.npz")
        out.append(("mmlu_pro", _selection_rows(mmlu, "rest")))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.recommend_defaults", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--only", default="bbh,sklearn,digits")
    args = ap.parse_args(argv)
    data = _datasets(set(args.only.split(",")))
    grid = list(itertools.product(W_DIV, ALPHA, FOLDS))
    key = lambda g: f"{g[0]:g}/{g[1]:g}/{g[2]}"  # noqa: E731
    scores: dict[str, list[float]] = {key(g): [] for g in grid}
    teams: dict[str, int] = dict.fromkeys(scores, 0)
    t0 = time.perf_counter()
    for name, selection in data:
        for seed in INNER_SEEDS:
            inner = _inner(selection, seed)
            for g in grid:
                w, a, k = g
                rec = focal.recommend(
                    inner, select_on="rest", report_on="test", alpha=a, folds=k, seed=seed,
                    objective=focal.Objective(w_div=w, w_acc=1.0 - w),
                )  # fmt: skip
                scores[key(g)].append(rec.report["recommendation"])
                teams[key(g)] += rec.kind == "team"
        _log(f"{name}: done ({time.perf_counter() - t0:.0f} s)")
    means = {k: float(np.mean(v)) for k, v in scores.items()}
    best = max(grid, key=lambda g: (round(means[key(g)], 10), -g[0], -g[1], -g[2]))
    runs = len(data) * len(INNER_SEEDS)
    doc = {
        "datasets": [n for n, _ in data],
        "inner_seeds": list(INNER_SEEDS),
        "grid": [
            {
                "w_div": g[0],
                "alpha": g[1],
                "folds": g[2],
                "inner_report_accuracy": means[key(g)],
                "teams_recommended": teams[key(g)],
            }
            for g in grid
        ],  # fmt: skip
        "chosen": {"w_div": best[0], "alpha": best[1], "folds": best[2]},
        "seconds": time.perf_counter() - t0,
    }
    write_json_atomic(OUT / "recommend_defaults.json", doc)
    print(f"chosen on inner splits (seeds {list(INNER_SEEDS)}) of {len(data)} datasets' "
          "selection rows (no test rows):")  # fmt: skip
    print("| w_div | alpha | folds | mean inner-report accuracy % | teams recommended |")
    print("|---|---|---|---|---|")
    for g in doc["grid"]:
        mark = " **chosen**" if (g["w_div"], g["alpha"], g["folds"]) == best else ""
        print(f"| {g['w_div']:g} | {g['alpha']:g} | {g['folds']} | "
              f"{100 * g['inner_report_accuracy']:.2f}{mark} | "
              f"{g['teams_recommended']} / {runs} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
