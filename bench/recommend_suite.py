"""``focal recommend`` on a development suite of fresh scikit-learn pools, beside its peers and
beside other selection rules — rows that never report anything else.

    python -m bench.recommend_suite [--seeds 0 1 ... 9] [--inner] [--quick] [--ceiling]

Why: the 12 scikit-learn report runs of ``bench.recommend`` have 45–500 test rows each, too
few to tell the recommendation from stacking (their gap is one or two standard errors). This
suite asks the same question on 12 other datasets (scikit-learn's bundled iris and diabetes
(target above its median) and ten seeded synthetic tasks: moons, circles, Gaussian quantiles,
Hastie, blobs and five ``make_classification`` variants), with the real protocol: 14
classifiers cross-fitted on a stratified 50/25/25 split (``bench.recommend._sklearn_pool``'s
recipe), selection on train+val, scoring on the dataset's own test rows. None of these rows is
a report row of ``bench.recommend``, so they may be read to compare selection rules.

Per run it records (cached in ``bench/out/recommend_suite/``, so a stopped run resumes):
* ``focal.recommend`` with the shipped defaults, and scikit-learn's peers on the same members;
* every (team rule, combiner) candidate's held-out correctness under the recommendation's own
  folds and its correctness on the test rows, so selection *rules* can be compared on the same
  runs: the shipped rule (the best single model is kept unless the cross-validated winner beats
  it, one-sided McNemar p <= alpha) and the alternative tried here (logistic stacking of the
  whole pool is kept unless the winner beats *it*), at several alpha.

``--inner`` adds the same rule comparison on the inner re-splits that choose the defaults
(``bench.recommend_defaults``: the 22 BBH tasks' and the report pools' selection rows, three
inner seeds each; no test row of ``bench.recommend``). The shipped rule would be replaced only
if a rule beat it by >= 0.2 points on the mean of the three suites' accuracies without losing
more than 0.5 points on any one (fixed before the suite's seeds 3-9 were read).

``--ceiling`` adds, for the fresh runs and for the 12 report runs of ``bench.recommend`` (four
pools x split seeds 0-2), how often *any* candidate beats the best single model on test: the
hindsight pick, an upper bound for every selection rule over these candidates. It reads the
report runs' test rows to count, and chooses nothing from them.

Writes bench/out/recommend_suite.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

import ensembles
import focal
from ensembles.util import write_json_atomic
from focal import _recommend as R
from focal._protocol import paired_improvement_pvalue

from .recommend import DATA, OUT, SKLEARN_POOLS, _log, _peers, cross_fitted_pool

CACHE = OUT / "recommend_suite"
DATASETS = ("iris", "diabetes_bin", "moons", "circles", "quantiles3", "hastie", "cls2_noisy",
            "cls3_sep08", "cls6", "cls5_small", "cls2_imb", "blobs4")  # fmt: skip
SINGLE = "best_single/single"
POOL_STACKING = "pool/stacking"


def make_dataset(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of one suite dataset; synthetic ones are drawn with ``random_state=1000+seed``.

    Example:
        >>> x, y = make_dataset("moons", 0)
        >>> x.shape, sorted(set(y.tolist()))
        ((500, 2), [0, 1])
    """
    from sklearn import datasets as D

    r = 1000 + seed
    make: dict[str, Callable[[], Any]] = {
        "iris": lambda: D.load_iris(return_X_y=True),
        "diabetes_bin": lambda: D.load_diabetes(return_X_y=True),
        "moons": lambda: D.make_moons(500, noise=0.3, random_state=r),
        "circles": lambda: D.make_circles(500, noise=0.2, factor=0.5, random_state=r),
        "quantiles3": lambda: D.make_gaussian_quantiles(n_samples=600, n_features=4,
                                                        n_classes=3, random_state=r),
        "hastie": lambda: D.make_hastie_10_2(1000, random_state=r),
        "cls2_noisy": lambda: D.make_classification(400, 10, n_informative=4, flip_y=0.1,
                                                    random_state=r),
        "cls3_sep08": lambda: D.make_classification(1000, 15, n_informative=6, n_classes=3,
                                                    class_sep=0.8, random_state=r),
        "cls6": lambda: D.make_classification(3000, 30, n_informative=10, n_classes=6,
                                              random_state=r),
        "cls5_small": lambda: D.make_classification(300, 10, n_informative=6, n_classes=5,
                                                    random_state=r),
        "cls2_imb": lambda: D.make_classification(1500, 20, n_informative=5, weights=[0.85],
                                                  random_state=r),
        "blobs4": lambda: D.make_blobs(800, n_features=6, centers=4, cluster_std=3.0,
                                       random_state=r),
    }  # fmt: skip
    x, y = make[name]()
    if name == "diabetes_bin":
        y = (y > np.median(y)).astype(int)
    if name == "hastie":
        y = (y > 0).astype(int)
    return np.asarray(x, dtype=float), np.asarray(y)


def _bits(a: np.ndarray) -> str:
    return "".join("1" if v else "0" for v in np.asarray(a, dtype=bool))


def _unbits(s: str) -> np.ndarray:
    return np.frombuffer(s.encode(), dtype=np.uint8) == ord("1")


def candidate_evidence(sel: ensembles.Bundle, rep: ensembles.Bundle, seed: int) -> dict[str, Any]:
    """Every candidate's held-out correctness under ``focal.recommend``'s folds (same seed, same
    defaults) and its correctness on the report rows, refitted on all selection rows."""
    objective = focal.Objective()
    names = [c for c in R.DEFAULT_COMBINERS if not (c == "soft" and sel.probs is None)]
    fold = R._folds(sel, R.DEFAULT_FOLDS, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        correct, table = R._cross_validate(sel, fold, R._rules(sel.n_models), names, {},
                                           objective, None)  # fmt: skip
        report = {}
        for rule, comb in correct:
            mask = R._rule_mask(rule, sel, objective, None)
            name = "single" if mask.sum() == 1 else comb
            report[f"{rule}/{comb}"] = R._held_out_right(name, None, sel, rep, mask)
    return {
        "order": [f"{d['rule']}/{d['combiner']}" for d in table],
        "cv": {f"{r}/{c}": _bits(v) for (r, c), v in correct.items()},
        "report": {k: _bits(v) for k, v in report.items()},
    }


def keep_single(alpha: float = R.DEFAULT_ALPHA) -> Callable[[dict[str, Any]], str]:
    """The shipped rule: the CV winner if it beats the best single model (p <= alpha)."""

    def rule(ev: dict[str, Any]) -> str:
        best = ev["order"][0]
        cv = ev["cv"]
        if best != SINGLE and paired_improvement_pvalue(_unbits(cv[best]),
                                                         _unbits(cv[SINGLE])) <= alpha:  # fmt: skip
            return best
        return SINGLE

    return rule


def keep_pool_stacking(alpha: float) -> Callable[[dict[str, Any]], str]:
    """The alternative: whole-pool stacking unless the CV winner beats it (p <= alpha)."""

    def rule(ev: dict[str, Any]) -> str:
        best, cv = ev["order"][0], ev["cv"]
        if POOL_STACKING not in cv:
            return keep_single()(ev)
        if (
            best != POOL_STACKING
            and paired_improvement_pvalue(_unbits(cv[best]), _unbits(cv[POOL_STACKING])) <= alpha
        ):
            return best
        return POOL_STACKING

    return rule


RULES: dict[str, Callable[[dict[str, Any]], str]] = {
    "shipped: keep the best single model, alpha 0.2": keep_single(),
    "keep the best single model, alpha 0.05": keep_single(0.05),
    "no guard (the CV winner)": keep_single(1.0),
    "keep whole-pool stacking, alpha 0.05": keep_pool_stacking(0.05),
    "keep whole-pool stacking, alpha 0.2": keep_pool_stacking(0.2),
    "keep whole-pool stacking, alpha 0.5": keep_pool_stacking(0.5),
    "always whole-pool stacking": lambda ev: POOL_STACKING if POOL_STACKING in ev["cv"] else SINGLE,
}


def run_fresh(name: str, seed: int) -> dict[str, Any]:
    """One suite run: the shipped recommendation, the peers and every candidate's evidence."""
    t = time.perf_counter()
    crossed, _, models, x, y, rows = cross_fitted_pool(*make_dataset(name, seed), seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peers = _peers(models, crossed, x, y, rows)
        rec = focal.recommend(crossed, select_on="rest", report_on="test", seed=seed)
    sel, rep, _ = R._select_rows(crossed, "rest", "test", seed)
    return {
        "dataset": name,
        "seed": seed,
        "n_select": sel.n_samples,
        "n_test": rep.n_samples,
        "recommendation": {
            "rule": rec.rule,
            "combiner": rec.combiner,
            "kind": rec.kind,
            "accuracy": rec.report["recommendation"],
            "best_single": rec.report["best_single"]["report_accuracy"],
        },
        "peers": peers,
        "evidence": candidate_evidence(sel, rep, seed),
        "seconds": time.perf_counter() - t,
    }


def run_inner() -> list[dict[str, Any]]:
    """Evidence on the inner re-splits that choose the defaults (no test row of bench.recommend)."""
    from .recommend import _sklearn_pool
    from .recommend_defaults import INNER_SEEDS, _inner, _selection_rows

    out = []
    sources: list[tuple[str, str, Callable[[], ensembles.Bundle]]] = []
    path = DATA / "bbh_5llm_marl_focal.npz"
    if path.is_file():
        raw = np.load(path, allow_pickle=False)
        for task, b in ensembles.load_tasks(path).items():
            ok = f"{task}/label_ok"
            if ok not in raw.files or bool(raw[ok]):
                sources.append(("bbh", task, lambda b=b: _selection_rows(b, "rest")))
    else:
        _log(f"inner: {path} not found; BBH left out")
    for s in (0, 1, 2):
        for name in SKLEARN_POOLS:
            sources.append(
                (
                    "sklearn",
                    f"{name}_{s}",
                    lambda n=name, s=s: _selection_rows(_sklearn_pool(n, s)[0], "rest"),
                )
            )
    from focal_cli._demo import digits_pool

    sources.append(("sklearn", "digits_demo", lambda: _selection_rows(digits_pool(seed=0), "rest")))
    for suite, name, load in sources:
        file = CACHE / f"inner__{suite}__{name}.json"
        if file.is_file():
            out += json.loads(file.read_text())
            continue
        selection, runs = load(), []
        for seed in INNER_SEEDS:
            sel, rep, _ = R._select_rows(_inner(selection, seed), "rest", "test", seed)
            runs.append({"suite": f"{suite} inner", "dataset": name, "seed": seed,
                         "evidence": candidate_evidence(sel, rep, seed)})  # fmt: skip
        write_json_atomic(file, runs)
        out += runs
        _log(f"inner {suite}/{name}: done")
    return out


def ceiling(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """How often candidates beat the best single model on the report rows.

    Per run: the share of candidates above the best single model; over runs: in how many the
    hindsight-best candidate beats it (an upper bound for any rule choosing among these
    candidates), the expected count for a uniformly random candidate, and the shipped rule's.
    """
    above, best = [], []
    for r in runs:
        acc = [_unbits(v).mean() for v in r["evidence"]["report"].values()]
        single = _unbits(r["evidence"]["report"][SINGLE]).mean()
        above.append(float(np.mean([a > single + 1e-12 for a in acc])))
        best.append(max(acc) > single + 1e-12)
    return {
        "runs": len(runs),
        "hindsight_beats_single": int(np.sum(best)),
        "random_candidate_beats_single": float(np.sum(above)),
        "shipped_beats_single": rule_accuracy(runs, keep_single())["beats_single"],
        "share_above_per_run": above,
    }


def run_report_evidence(seeds: tuple[int, ...] = (0, 1, 2)) -> list[dict[str, Any]]:
    """Candidate evidence on ``bench.recommend``'s 12 report runs (cached per run)."""
    from .recommend import _sklearn_pool

    out = []
    for name in SKLEARN_POOLS:
        for seed in seeds:
            file = CACHE / f"report__{name}__{seed}.json"
            if file.is_file():
                out.append(json.loads(file.read_text()))
                continue
            crossed = _sklearn_pool(name, seed)[0]
            sel, rep, _ = R._select_rows(crossed, "rest", "test", seed)
            run = {"dataset": name, "seed": seed, "n_test": rep.n_samples,
                   "evidence": candidate_evidence(sel, rep, seed)}  # fmt: skip
            write_json_atomic(file, run)
            out.append(run)
            _log(f"report run {name} seed {seed}: done")
    return out


def rule_accuracy(runs: list[dict[str, Any]], rule: Callable[[dict[str, Any]], str]) -> dict:
    """Mean report accuracy of a rule's picks, and its picks against the best single model."""
    acc, single = [], []
    for r in runs:
        ev = r["evidence"]
        acc.append(_unbits(ev["report"][rule(ev)]).mean())
        single.append(_unbits(ev["report"][SINGLE]).mean())
    acc_a, single_a = np.asarray(acc), np.asarray(single)
    return {
        "accuracy": float(acc_a.mean()),
        "beats_single": int((acc_a > single_a + 1e-12).sum()),
        "worse_than_single": int((acc_a < single_a - 1e-12).sum()),
        "per_run": acc_a.tolist(),
    }


def _paired(a: np.ndarray, b: np.ndarray) -> str:
    d = 100 * (np.asarray(a) - np.asarray(b))
    return f"{d.mean():+.2f} ± {d.std(ddof=1) / np.sqrt(len(d)):.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.recommend_suite", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--inner", action="store_true", help="also the inner-split suites")
    ap.add_argument("--quick", action="store_true", help="three datasets, seed 0 (a smoke run)")
    ap.add_argument(
        "--ceiling",
        action="store_true",
        help="also how often any candidate beats the best single model (hindsight)",
    )
    args = ap.parse_args(argv)
    names, seeds = (DATASETS[:3], [0]) if args.quick else (DATASETS, args.seeds)
    CACHE.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fresh = []
    for seed in seeds:
        for name in names:
            file = CACHE / f"{name}__{seed}.json"
            if file.is_file():
                fresh.append(json.loads(file.read_text()))
                continue
            r = run_fresh(name, seed)
            # The bench's copy of the shipped rule must score what focal.recommend scored.
            pick = keep_single()(r["evidence"])
            picked = _unbits(r["evidence"]["report"][pick]).mean()
            if abs(picked - r["recommendation"]["accuracy"]) > 1e-12:
                raise AssertionError(f"{name} seed {seed}: the bench's shipped rule picks {pick}, "
                                     f"focal.recommend {r['recommendation']}")  # fmt: skip
            write_json_atomic(file, r)
            fresh.append(r)
            _log(f"{name} seed {seed}: {r['seconds']:.0f} s ({time.perf_counter() - t0:.0f} s)")
    suites = {"fresh pools": fresh}
    if args.inner:
        inner = run_inner()
        for s in ("sklearn inner", "bbh inner"):
            suites[s] = [r for r in inner if r["suite"] == s]

    rec = np.array([r["recommendation"]["accuracy"] for r in fresh])
    single = np.array([r["recommendation"]["best_single"] for r in fresh])
    lines = [f"Fresh pools: {len(names)} datasets x seeds {seeds} = {len(fresh)} runs. Mean test "
             "accuracy %; beats / worse = runs above / below the best single model; paired "
             "difference to scikit-learn prefit stacking ± SE.", "",
             "| method | accuracy | beats single | worse than single | − prefit stacking |",
             "|---|---|---|---|---|"]  # fmt: skip
    prefit = np.array([r["peers"]["sk_stacking_prefit"] for r in fresh])
    rows = [("focal recommend (shipped defaults)", rec)]
    labels = {"stacking_same_rows": "logistic stacking of the whole pool, same rows",
              "sk_stacking_cv": "scikit-learn StackingClassifier(cv=5)",
              "sk_stacking_prefit": "scikit-learn prefit stacking (val)",
              "sk_soft_voting": "scikit-learn soft voting", "sk_hard_voting":
              "scikit-learn hard voting"}  # fmt: skip
    rows += [(lab, np.array([r["peers"][k] for r in fresh])) for k, lab in labels.items()]
    rows.append(("best single model (chosen on selection rows)", single))
    for lab, acc in rows:
        lines.append(f"| {lab} | {100 * acc.mean():.2f} | {int((acc > single + 1e-12).sum())} | "
                     f"{int((acc < single - 1e-12).sum())} | {_paired(acc, prefit)} |")  # fmt: skip
    results = {s: {n: rule_accuracy(rs, f) for n, f in RULES.items()} for s, rs in suites.items()}
    lines += ["", "Selection rules on the same runs (mean report accuracy %; beats / worse than "
              "the best single model):", "",
              "| rule | " + " | ".join(f"{s} ({len(suites[s])} runs)" for s in suites)
              + (" | mean of suites |" if len(suites) > 1 else " |"),
              "|---|" + "---|" * (len(suites) + (len(suites) > 1))]  # fmt: skip
    for n in RULES:
        cells = [f"{100 * results[s][n]['accuracy']:.2f} (+{results[s][n]['beats_single']} "
                 f"−{results[s][n]['worse_than_single']})" for s in suites]  # fmt: skip
        if len(suites) > 1:
            cells.append(f"{100 * np.mean([results[s][n]['accuracy'] for s in suites]):.2f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    doc = {
        "fresh": [{k: v for k, v in r.items() if k != "evidence"} for r in fresh],
        "rules": results,
        "ceiling": None,
        "seconds": time.perf_counter() - t0,
    }
    if args.ceiling:
        doc["ceiling"] = {
            "fresh pools": ceiling(fresh),
            "report runs of bench.recommend": ceiling(run_report_evidence()),
        }
        lines += ["", "How often a candidate beats the best single model on test (hindsight: "
                  "the best candidate per run, an upper bound for any rule over them):", "",
                  "| runs | hindsight best candidate | random candidate (expected) | shipped "
                  "rule |", "|---|---|---|---|"]  # fmt: skip
        for s, c in doc["ceiling"].items():
            n = c["runs"]
            lines.append(f"| {s} ({n}) | {c['hindsight_beats_single']} / {n} | "
                         f"{c['random_candidate_beats_single']:.1f} / {n} | "
                         f"{c['shipped_beats_single']} / {n} |")  # fmt: skip
    write_json_atomic(OUT / "recommend_suite.json", doc)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
