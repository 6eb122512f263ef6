"""How the defaults of ``focal recommend`` are chosen — without touching any test row.

    python -m bench.recommend_defaults [--only bbh,sklearn,digits,mmlu]

For every dataset, only its *selection* rows are used to choose: they are split again (seeded,
stratified 75/25) into inner-selection and inner-report rows, ``focal.recommend`` runs on the
inner split with each candidate default, and each candidate is scored by its mean accuracy on
the inner-report rows over all datasets. The candidate with the best mean wins (ties: the
simpler one, i.e. the smaller ``w_div`` and the smaller ``alpha``). Only then are the real test
rows read, once, to report the chosen default (``python -m bench.recommend``).

Candidates: ``w_div`` (weight of focal diversity in the objective of the ``search`` team rule;
``w_acc = 1 − w_div``) in {0, 0.2, 0.5} and the guard's ``alpha`` in {0.05, 0.2}; ``folds`` = 5
(a fold count changes the variance of the estimate, not what is estimated).

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

from .recommend import DATA, OUT, _log, _sklearn_pool

W_DIV = (0.0, 0.2, 0.5)
ALPHA = (0.05, 0.2)


def _inner(bundle: ensembles.Bundle, select_on: str, seed: int) -> ensembles.Bundle:
    """The selection rows only, re-split into inner selection (train+val, 75 %) and inner
    report rows (test, 25 %)."""
    full, _ = ensembles.ensure_splits(bundle, seed=seed)
    split = np.asarray(full.split)
    rows = split != "test" if select_on == "rest" else split == select_on
    sel = full.select_samples(rows)
    return ensembles.with_random_split(sel, fractions=(0.6, 0.15, 0.25), seed=seed)


def _datasets(only: set[str]) -> list[tuple[str, ensembles.Bundle]]:
    out = []
    if "bbh" in only and (DATA / "bbh_5llm_marl_focal.npz").is_file():
        path = DATA / "bbh_5llm_marl_focal.npz"
        raw = np.load(path, allow_pickle=False)
        for name, b in ensembles.load_tasks(path).items():
            ok = f"{name}/label_ok"
            if ok in raw.files and not bool(raw[ok]):
                continue
            out.append((f"bbh/{name}", _inner(b, "rest", 0)))
    if "sklearn" in only:
        for name in ("digits", "breast_cancer", "wine", "synthetic4"):
            b = _sklearn_pool(name, 0)[0]
            out.append((f"sklearn/{name}", _inner(b, "val", 0)))
    if "digits" in only:
        from focal_cli._demo import digits_pool

        out.append(("digits_demo", _inner(digits_pool(seed=0), "rest", 0)))
    if "mmlu" in only and (DATA / "mmlu_pro_29llm.npz").is_file():
        out.append(("mmlu_pro", _inner(ensembles.load_bundle(DATA / "mmlu_pro_29llm.npz"),
                                       "rest", 0)))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.recommend_defaults", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--only", default="bbh,sklearn,digits")
    args = ap.parse_args(argv)
    data = _datasets(set(args.only.split(",")))
    grid = list(itertools.product(W_DIV, ALPHA))
    scores: dict[str, list[float]] = {f"{w:g}/{a:g}": [] for w, a in grid}
    teams: dict[str, int] = dict.fromkeys(scores, 0)
    t0 = time.perf_counter()
    for name, inner in data:
        for w, a in grid:
            rec = focal.recommend(
                inner, select_on="rest", report_on="test", alpha=a, seed=0,
                objective=focal.Objective(w_div=w, w_acc=1.0 - w),
            )  # fmt: skip
            key = f"{w:g}/{a:g}"
            scores[key].append(rec.report["recommendation"])
            teams[key] += rec.kind == "team"
        _log(f"{name}: done ({time.perf_counter() - t0:.0f} s)")
    means = {k: float(np.mean(v)) for k, v in scores.items()}
    best = max(grid, key=lambda g: (round(means[f"{g[0]:g}/{g[1]:g}"], 10), -g[0], -g[1]))
    doc = {
        "datasets": [n for n, _ in data],
        "grid": [
            {
                "w_div": w,
                "alpha": a,
                "inner_report_accuracy": means[f"{w:g}/{a:g}"],
                "teams_recommended": teams[f"{w:g}/{a:g}"],
            }
            for w, a in grid
        ],  # fmt: skip
        "chosen": {"w_div": best[0], "alpha": best[1]},
        "seconds": time.perf_counter() - t0,
    }
    write_json_atomic(OUT / "recommend_defaults.json", doc)
    print(f"chosen on the inner splits of {len(data)} datasets' selection rows (no test rows):")
    print("| w_div | alpha | mean inner-report accuracy % | teams recommended |")
    print("|---|---|---|---|")
    for g in doc["grid"]:
        mark = " **chosen**" if (g["w_div"], g["alpha"]) == best else ""
        print(f"| {g['w_div']:g} | {g['alpha']:g} | {100 * g['inner_report_accuracy']:.2f}{mark} "
              f"| {g['teams_recommended']} / {len(data)} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
