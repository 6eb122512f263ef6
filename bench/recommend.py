"""``focal recommend`` on real pools: the recommendation vs the best single model, the whole pool
and the oracle, and (scikit-learn pools) vs scikit-learn's voting and stacking on the same rows.

    python -m bench.recommend [--quick] [--only bbh,mmlu,digits,sklearn,alpaca]

Every choice (team rule, combiner, the best single model) is made on the selection rows only;
the test rows are read once, for the report. Writes bench/out/recommend.json and prints Markdown.

Datasets:
* BBH, 22 label_ok tasks (``bbh_5llm_marl_focal.npz``): the file's train rows select (the
  split policy carves val from them; both select), test reports.
* MMLU-Pro, 29 LLMs: seeded stratified 60/20/20 splits (the project's split policy), 5 seeds;
  train+val select, test reports.
* digits: the demo's 14 classifiers (fitted on rows outside the bundle); train+val select.
* scikit-learn pools of 14 classifiers on digits, breast cancer, wine and a synthetic 4-class
  task; stratified 50/25/25 per seed (3 seeds). The members are fitted on the train rows and
  the bundle is cross-fitted (``ensembles.cross_fit_sklearn``: out-of-fold outputs on train), so
  the recommendation selects on train+val. Also reported: the same members' prefit bundle, where
  only val may select (``select_on="val"``). Peers: scikit-learn's soft/hard voting, stacking
  of the frozen members with a logistic regression fitted on val ("prefit"), its
  ``StackingClassifier(cv=5)`` fitted on train, and logistic stacking on the recommendation's
  own selection rows. DESlib needs an older scikit-learn: ``bench/deslib_peers.py``.
* AlpacaEval-1 open-ended (53 LLMs x 805 prompts, GPT-4 wins vs davinci-003): the combiner is a
  router; without query features it is the best single model by cross-validation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import ensembles
import focal
from ensembles.util import write_json_atomic

DATA = Path(
    os.environ.get("FOCAL_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)
OUT = Path(__file__).resolve().parent / "out"
# The four scikit-learn pools of the report runs (``_sklearn_pool``), split seeds 0-2.
SKLEARN_POOLS = ("digits", "breast_cancer", "wine", "synthetic4")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _row(rec: focal.Recommendation) -> dict[str, Any]:
    r = rec.report
    return {
        "kind": rec.kind,
        "members": list(rec.team.members),
        "combiner": rec.combiner,
        "rule": rec.rule,
        "cv_accuracy": rec.cv_accuracy,
        "p_value": rec.p_value,
        "recommendation": r["recommendation"],
        "best_single": r["best_single"]["report_accuracy"],
        "pool_plurality": r.get("pool_plurality"),
        "pool_soft": r.get("pool_soft"),
        "oracle": r["oracle"],
        "n_test": r["n_rows"],
        "seconds": rec.seconds,
    }


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str) -> float | None:
        vals = [r[key] for r in rows if r.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    keys = ("recommendation", "best_single", "pool_plurality", "pool_soft", "oracle", "seconds")
    out = {k: mean(k) for k in keys}
    out["n"] = len(rows)
    out["team_recommended"] = sum(r["kind"] == "team" for r in rows)
    out["beats_single"] = sum(r["recommendation"] > r["best_single"] + 1e-12 for r in rows)
    out["worse_than_single"] = sum(r["recommendation"] < r["best_single"] - 1e-12 for r in rows)
    return out


def run_bbh() -> dict[str, Any] | None:
    path = DATA / "bbh_5llm_marl_focal.npz"
    if not path.is_file():
        _log(f"{path} missing; skipping BBH")
        return None
    raw = np.load(path, allow_pickle=False)
    tasks = ensembles.load_tasks(path)
    rows = []
    for name, b in tasks.items():
        ok = f"{name}/label_ok"
        if ok in raw.files and not bool(raw[ok]):
            continue
        rec = focal.recommend(b, report_on="test", seed=0)  # select on train (+ carved val)
        rows.append({"task": name, **_row(rec)})
        _log(f"BBH {name}: {rec.kind} {rec.combiner} {rows[-1]['recommendation']:.4f} "
             f"vs single {rows[-1]['best_single']:.4f}")  # fmt: skip
    return {"tasks": rows, "summary": _summary(rows)}


def run_mmlu(seeds: list[int]) -> dict[str, Any] | None:
    path = DATA / "mmlu_pro_29llm.npz"
    if not path.is_file():
        _log(f"{path} missing; skipping MMLU-Pro")
        return None
    bundle = ensembles.load_bundle(path)
    rows = []
    for seed in seeds:
        rec = focal.recommend(bundle, seed=seed)
        rows.append({"seed": seed, **_row(rec)})
        r = rows[-1]
        _log(f"MMLU-Pro seed {seed}: {rec.kind} {rec.rule}+{rec.combiner} "
             f"{r['recommendation']:.4f} vs single {r['best_single']:.4f}")  # fmt: skip
    return {"seeds": rows, "summary": _summary(rows)}


def run_digits() -> dict[str, Any]:
    from focal_cli._demo import digits_pool

    bundle = digits_pool(seed=0)
    rec = focal.recommend(bundle, seed=0)
    rows = [{"seed": 0, **_row(rec)}]
    return {"seeds": rows, "summary": _summary(rows)}


def _classifiers(seed: int) -> dict[str, Any]:
    from focal_cli._demo import _classifiers as demo_classifiers

    return demo_classifiers(seed)


def _sklearn_pool(name: str, seed: int):
    """A dataset split 50/25/25 (stratified, seeded), the pool cross-fitted on its train rows.

    Returns the cross-fitted bundle (out-of-fold outputs on train), the same members' prefit
    bundle (in-sample outputs on train: only val may select), the fitted members and the data.
    """
    from sklearn import datasets

    if name == "synthetic4":
        x, y = datasets.make_classification(n_samples=2000, n_features=20, n_informative=8,
                                            n_classes=4, random_state=seed)  # fmt: skip
    else:
        loader = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer,
                  "wine": datasets.load_wine}[name]  # fmt: skip
        x, y = loader(return_X_y=True)
    return cross_fitted_pool(x, y, seed)


def cross_fitted_pool(x: np.ndarray, y: np.ndarray, seed: int):
    """The 14 classifiers on a stratified, seeded 50/25/25 split of ``(x, y)``, cross-fitted on
    its train rows; returns what :func:`_sklearn_pool` returns."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    idx = np.arange(len(y))
    tr, rest = train_test_split(idx, train_size=0.5, stratify=y, random_state=seed)
    va, te = train_test_split(rest, train_size=0.5, stratify=y[rest], random_state=seed)
    x = StandardScaler().fit(x[tr]).transform(x)
    split = np.empty(len(y), dtype="<U5")
    split[tr], split[va], split[te] = "train", "val", "test"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        crossed, models = ensembles.cross_fit_sklearn(
            _classifiers(seed), x, y, split=split, folds=5, seed=seed, sample_ids=idx
        )
    prefit = ensembles.from_sklearn(models, x, y, sample_ids=idx).with_split(split)
    return crossed, prefit, models, x, y, (tr, va, te)


def _peers(models, crossed, x, y, rows) -> dict[str, float]:
    """scikit-learn's combiners over the same 14 members, each on the rows it would use."""
    from sklearn.ensemble import StackingClassifier, VotingClassifier
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    tr, va, te = rows
    est = [(n, FrozenEstimator(m)) for n, m in models.items()]
    soft = [(n, e) for n, e in est if hasattr(e, "predict_proba")]
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["sk_soft_voting"] = float(VotingClassifier(soft, voting="soft").fit(x[va], y[va])
                                      .score(x[te], y[te]))  # fmt: skip
        out["sk_hard_voting"] = float(VotingClassifier(est, voting="hard").fit(x[va], y[va])
                                      .score(x[te], y[te]))  # fmt: skip
        # Prefit stacking: the frozen members' probabilities, logistic regression fitted on val.
        feats = lambda r: np.hstack([m.predict_proba(x[r]) for _, m in soft])  # noqa: E731
        lr = LogisticRegression(max_iter=2000).fit(feats(va), y[va])
        out["sk_stacking_prefit"] = float((lr.predict(feats(te)) == y[te]).mean())
        # scikit-learn's own StackingClassifier as a user runs it: members refitted on train,
        # the meta-learner on their 5-fold out-of-fold outputs there (val unused).
        members = [(n, m.estimator if isinstance(m, FrozenEstimator) else m) for n, m in est]
        cv = StratifiedKFold(5, shuffle=True, random_state=0)
        stack = StackingClassifier(_fresh(members), final_estimator=LogisticRegression(
            max_iter=2000), cv=cv).fit(x[tr], y[tr])  # fmt: skip
        out["sk_stacking_cv"] = float(stack.score(x[te], y[te]))
        # Logistic stacking on exactly the recommendation's selection rows (train out of fold +
        # val) from the cross-fitted bundle's scores.
        sel = np.r_[tr, va]
        flat = lambda r: crossed.probs[:, r].transpose(1, 0, 2).reshape(len(r), -1)  # noqa: E731
        lr = LogisticRegression(max_iter=2000).fit(flat(sel), y[sel])
        out["stacking_same_rows"] = float((lr.predict(flat(te)) == y[te]).mean())
    return out


def _fresh(members):
    from sklearn.base import clone

    return [(n, clone(m)) for n, m in members]


PEERS = (
    "sk_soft_voting",
    "sk_hard_voting",
    "sk_stacking_prefit",
    "sk_stacking_cv",
    "stacking_same_rows",
)


def run_sklearn(seeds: list[int]) -> dict[str, Any]:
    rows, frozen_rows = [], []
    for name in SKLEARN_POOLS:
        for seed in seeds:
            crossed, prefit, models, x, y, split_rows = _sklearn_pool(name, seed)
            rec = focal.recommend(crossed, report_on="test", seed=seed)
            old = focal.recommend(prefit, select_on="val", report_on="test", seed=seed)
            row = {"dataset": name, "seed": seed, **_row(rec),
                   **_peers(models, crossed, x, y, split_rows)}  # fmt: skip
            rows.append(row)
            frozen_rows.append({"dataset": name, "seed": seed, **_row(old)})
            _log(f"{name} seed {seed}: {rec.kind} {rec.rule}+{rec.combiner} "
                 f"{row['recommendation']:.4f} single {row['best_single']:.4f} "
                 f"stack {row['sk_stacking_prefit']:.4f} (val only: "
                 f"{frozen_rows[-1]['recommendation']:.4f})")  # fmt: skip
    summary = _summary(rows)
    for k in PEERS:
        summary[k] = float(np.mean([r[k] for r in rows]))
        # how often each peer beats the best single model chosen on the selection rows
        summary[f"{k}_beats_single"] = int(sum(r[k] > r["best_single"] + 1e-12 for r in rows))
    return {"runs": rows, "summary": summary,
            "val_only": {"runs": frozen_rows, "summary": _summary(frozen_rows)}}  # fmt: skip


def run_alpaca() -> dict[str, Any] | None:
    path = DATA / "alignment" / "alpaca_eval1_gpt4_judged.jsonl.gz"
    if not path.is_file():
        _log(f"{path} missing; skipping AlpacaEval")
        return None
    bundle = ensembles.from_alpaca_eval_judged(path, threshold=1.0)
    rows = []
    for seed in (0, 1, 2):
        rec = focal.recommend(bundle, seed=seed)
        rows.append({"seed": seed, **_row(rec)})
    return {"seeds": rows, "summary": _summary(rows)}


def _markdown(doc: dict[str, Any]) -> str:
    def p(x):
        return "–" if x is None else f"{100 * x:.2f}"

    lines = ["| data | runs | recommendation | best single | pool plurality | pool soft | oracle "
             "| team recommended | beats single | worse than single |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for key, label in (("bbh", "BBH, 22 label_ok tasks"), ("mmlu", "MMLU-Pro (5 seeds)"),
                       ("digits", "digits demo pool"), ("sklearn", "scikit-learn pools (4 x 3)"),
                       ("alpaca", "AlpacaEval-1 (win rate)")):  # fmt: skip
        if doc.get(key) is None:
            continue
        s = doc[key]["summary"]
        lines.append(
            f"| {label} | {s['n']} | {p(s['recommendation'])} | {p(s['best_single'])} | "
            f"{p(s['pool_plurality'])} | {p(s['pool_soft'])} | {p(s['oracle'])} | "
            f"{s['team_recommended']} | {s['beats_single']} | {s['worse_than_single']} |"
        )
    for key in sorted(k for k in doc if k.startswith("sklearn") and doc[k]):
        s, v, runs = doc[key]["summary"], doc[key]["val_only"]["summary"], doc[key]["runs"]
        beats = lambda k, s=s: f"{s.get(k + '_beats_single', '?')}/{s['n']}"  # noqa: E731
        diff = 100 * np.array([r["recommendation"] - r["sk_stacking_prefit"] for r in runs])
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        lines += ["", f"{key} ({s['n']} runs), mean test accuracy % (beats the best single "
                  f"model in): focal recommend on the cross-fitted bundle "
                  f"{p(s['recommendation'])} ({s['beats_single']}/{s['n']}); on the prefit "
                  f"bundle, val rows only {p(v['recommendation'])} ({v['beats_single']}/{s['n']}"
                  f"); scikit-learn soft voting {p(s['sk_soft_voting'])} "
                  f"({beats('sk_soft_voting')}), hard voting {p(s['sk_hard_voting'])} "
                  f"({beats('sk_hard_voting')}), prefit stacking (logistic regression on val) "
                  f"{p(s['sk_stacking_prefit'])} ({beats('sk_stacking_prefit')}), "
                  f"StackingClassifier(cv=5) on train {p(s['sk_stacking_cv'])} "
                  f"({beats('sk_stacking_cv')}), logistic stacking on the same selection rows "
                  f"{p(s['stacking_same_rows'])} ({beats('stacking_same_rows')}); "
                  f"recommendation − prefit stacking {diff.mean():+.2f} ± {se:.2f} (SE) "
                  "points."]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.recommend", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--only", default="bbh,mmlu,digits,sklearn,alpaca")
    ap.add_argument("--quick", action="store_true", help="1 MMLU seed, 1 scikit-learn seed")
    ap.add_argument(
        "--sklearn-seeds",
        type=int,
        default=3,
        metavar="N",
        help="seeds of the scikit-learn pools (default 3: the 4 x 3 runs of the "
        "main table; any other N is stored beside them as sklearn_<N>seeds)",
    )
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    seeds = [0] if args.quick else [0, 1, 2, 3, 4]
    # Earlier parts of the file survive a partial rerun (``--only``); each part has its date.
    doc: dict[str, Any] = {}
    if (OUT / "recommend.json").is_file():
        doc = json.loads((OUT / "recommend.json").read_text())
    runs = {
        "bbh": run_bbh,
        "digits": run_digits,
        "sklearn": lambda: run_sklearn([0] if args.quick else [0, 1, 2]),
        f"sklearn_{args.sklearn_seeds}seeds": lambda: run_sklearn(list(range(args.sklearn_seeds))),
        "alpaca": run_alpaca,
        "mmlu": lambda: run_mmlu(seeds),
    }
    if args.sklearn_seeds != 3 and "sklearn" in only:
        only = (only - {"sklearn"}) | {f"sklearn_{args.sklearn_seeds}seeds"}
    for key, run in runs.items():
        if key in only:
            doc[key] = run()
            if doc[key] is not None:
                doc[key]["started"] = time.strftime("%Y-%m-%d %H:%M:%S")
            write_json_atomic(OUT / "recommend.json", doc)  # partial results survive a stop
    print(_markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
