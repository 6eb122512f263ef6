"""Recommend a (team, combiner) pair, chosen by cross-validation inside the selection rows.

Candidates are *procedures*: a team rule (the best single model, the whole pool, the ``k`` most
accurate models, the team :func:`focal.select` finds with an objective that mixes focal diversity
and accuracy) paired with a combiner (plurality, soft or weighted vote, logistic stacking, or any
fuser object with ``fit``/``predict``). Every procedure is scored by K-fold cross-validation on
the selection rows: the team rule and the combiner are fitted on K−1 folds and judged on the
held-out fold, so a team chosen on rows is never judged on those rows. The best procedure is then
compared with the best-single-model procedure under the same folds (one-sided exact McNemar test on
the pooled held-out predictions); it is recommended only when significantly better. The report
rows are touched once, at the end, to report.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

import ensembles
from ensembles import Bundle, BundleError
from ensembles.util import InputError, jsonable

from ._objective import Objective
from ._protocol import paired_improvement_pvalue, protocol_splits
from ._scoring import score_teams
from ._teams import count_teams
from ._types import Selection, Team, make_teams

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_COMBINERS",
    "DEFAULT_FOLDS",
    "Recommendation",
    "recommend",
]

#: Built-in combiners tried by default (``soft`` only when the bundle has scores).
DEFAULT_COMBINERS: tuple[str, ...] = ("plurality", "soft", "weighted", "stacking")

#: Folds of the cross-validation inside the selection rows.
DEFAULT_FOLDS = 5

#: Significance of the guard against the best single model. Chosen, with the objective's
#: weights, on inner splits of selection rows only (bench/recommend_defaults.py): 0.2 recommended
#: a team more often and was more accurate there than 0.05.
DEFAULT_ALPHA = 0.2

#: Largest team of the top-k rule.
_TOP_K_MAX = 5

# Simpler procedures win ties: fewer members first, then this combiner order.
_COMBINER_RANK = {"plurality": 0, "soft": 1, "weighted": 2, "stacking": 3}


# ------------------------------------------------------------------------------ team rules
def _accuracy_order(b: Bundle) -> np.ndarray:
    acc = b.accuracies()
    return np.lexsort((np.arange(b.n_models), -np.round(acc, 12)))


def _rule_mask(rule: str, b: Bundle, objective: Objective, sizes: Any) -> np.ndarray:
    """The team a rule picks on the rows of ``b`` (a (M,) boolean mask)."""
    mask = np.zeros(b.n_models, dtype=bool)
    order = _accuracy_order(b)
    if rule == "best_single":
        mask[order[0]] = True
    elif rule == "pool":
        mask[:] = True
    elif rule.startswith("top"):
        mask[order[: int(rule[3:])]] = True
    elif rule == "search":
        from ._select import AUTO_EXHAUSTIVE_LIMIT, Beam, Exhaustive, resolve_sizes, select

        size_tuple = resolve_sizes(sizes, b.n_models)
        many = count_teams(b.n_models, size_tuple) > AUTO_EXHAUSTIVE_LIMIT // 8

        strategy = Beam(width=16) if many else Exhaustive()
        mask = select(b, objective=objective, sizes=size_tuple, top_k=1, search=strategy).best.mask
    else:  # pragma: no cover - rules are built here
        raise AssertionError(rule)
    return mask


def _rules(n_models: int) -> list[str]:
    rules = ["best_single", "pool"]
    rules += [f"top{k}" for k in range(2, min(_TOP_K_MAX, n_models - 1) + 1)]
    rules.append("search")
    return rules


# ------------------------------------------------------------------------------ combiners
def _features(b: Bundle, mask: np.ndarray) -> np.ndarray:
    """Stacking inputs: the members' normalised scores (or one-hot votes), side by side."""
    idx = np.flatnonzero(mask)
    if b.probs is not None:
        p = np.asarray(b.probs[idx], dtype=np.float64)
        total = p.sum(axis=2, keepdims=True)
        p = np.divide(p, total, out=np.zeros_like(p), where=total > 0)
    else:
        preds = b.preds[idx]
        p = np.zeros((len(idx), b.n_samples, b.n_classes))
        m_i, n_i = np.nonzero(preds >= 0)
        p[m_i, n_i, preds[m_i, n_i]] = 1.0
    return p.transpose(1, 0, 2).reshape(b.n_samples, -1)


def _log_odds_weights(b: Bundle, mask: np.ndarray) -> np.ndarray:
    """Closed-form vote weights ``log((C−1)·p/(1−p))`` (optimal for independent members with
    symmetric errors), from each member's accuracy ``p`` on the fitting rows; members no better
    than chance get weight 0."""
    p = np.clip(b.accuracies(), 1e-3, 1 - 1e-3)
    w = np.log(max(b.n_classes - 1, 1) * p / (1 - p))
    w = np.where(mask, np.maximum(w, 0.0), 0.0)
    return w


class _Fitted:
    """A combiner fitted on some rows: ``predict(rows)`` gives class indices (-1 = no answer)."""

    def __init__(self, name: str, fit_rows: Bundle, mask: np.ndarray, obj: Any = None):
        self.name, self.mask = name, mask
        if name == "weighted":
            w = _log_odds_weights(fit_rows, mask)
            self.weights = w if w[mask].sum() > 0 else None
        elif name == "stacking":
            from sklearn.linear_model import LogisticRegression

            x, y = _features(fit_rows, mask), fit_rows.labels
            self.classes = np.unique(y)
            if len(self.classes) > 1:
                self.model = LogisticRegression(C=1.0, max_iter=500).fit(x, y)
        elif obj is not None:
            self.model = _fit_object(obj, fit_rows, mask)

    def predict(self, rows: Bundle) -> np.ndarray:
        name, mask = self.name, self.mask
        if name in ("plurality", "soft") or (name == "weighted" and self.weights is None):
            combiner = "soft" if name == "soft" else "plurality"
            return np.asarray(ensembles.combine(rows, mask, combiner=combiner))
        if name == "weighted":
            combiner = "weighted_soft" if rows.probs is not None else "weighted_plurality"
            return np.asarray(
                ensembles.combine(rows, mask, combiner=combiner, weights=self.weights)
            )
        if name == "stacking":
            if len(self.classes) == 1:
                return np.full(rows.n_samples, self.classes[0])
            return np.asarray(self.model.predict(_features(rows, mask)))
        return np.asarray(self.model.predict(rows))


def _fit_object(obj: Any, rows: Bundle, mask: np.ndarray) -> Any:
    """Fit a fuser-like object (``fit(bundle, team=...)``/``predict``) on ``rows``: a fresh copy,
    trained on a seeded 80 % of the rows with the other 20 % as its own validation split."""
    fresh = type(obj)(**obj.get_params()) if hasattr(obj, "get_params") else obj
    rng = np.random.default_rng(0)
    split = np.full(rows.n_samples, "train", dtype="<U5")
    split[rng.permutation(rows.n_samples)[: max(1, rows.n_samples // 5)]] = "val"
    team = [m for m, keep in zip(rows.models, mask, strict=True) if keep]
    fresh.fit(rows.with_split(split), team=team)
    return fresh


def _combiner_name(c: Any) -> str:
    return c if isinstance(c, str) else getattr(c, "name", type(c).__name__)


# ------------------------------------------------------------------------------ result
@dataclasses.dataclass(frozen=True)
class Recommendation:
    """What :func:`recommend` advises: which team, combined how, and the evidence.

    Attributes:
        kind: ``"team"`` or ``"single_model"`` (the guard kept the best single model).
        team: the recommended :class:`Team`, chosen on all selection rows by the winning rule.
        combiner: how to combine it (``plurality``, ``soft``, ``weighted``, ``stacking`` or a
            fuser's name); ``single`` for a single model.
        rule: the team rule that won (``best_single``, ``pool``, ``top<k>``, ``search``).
        cv_accuracy: the winning procedure's cross-validated accuracy on the selection rows.
        cv_gain: the best procedure's cross-validated accuracy minus the best single model's
            (0 when the best single model is the best procedure).
        cv_gain_se: the paired standard error of ``cv_gain`` over the selection rows: a gain
            of one or two standard errors passes the guard at the default alpha but often
            shrinks on new rows (the best of many procedures is chosen on the same rows).
        p_value: one-sided exact McNemar p-value of the best procedure against the best single
            model, on the pooled held-out predictions of the same folds.
        alpha: significance level of the guard.
        reason: one sentence saying why.
        candidates: every procedure with its cross-validated accuracy, best first.
        selection: the teams the ``search`` rule finds on all selection rows.
        rows: the rows used (select_on, report_on, the split's source, seed and sizes) and the
            folds.
        report: on the report rows: the recommendation's accuracy and the baselines (best single
            model chosen on the selection rows, the whole pool's votes, the oracle).
        seconds: wall-clock time.

    Example:
        >>> import numpy as np, ensembles
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 1500)
        >>> preds = np.where(rng.random((4, 1500)) < 0.7, y, rng.integers(0, 3, (4, 1500)))
        >>> b = ensembles.Bundle.create(models=list("abcd"), labels=y, preds=preds)
        >>> rec = recommend(b, combiners=("plurality", "weighted"))
        >>> rec.kind, rec.team.size > 1
        ('team', True)
    """

    kind: str
    team: Team
    combiner: str
    rule: str
    cv_accuracy: float
    p_value: float
    alpha: float
    reason: str
    candidates: tuple[dict[str, Any], ...]
    cv_gain: float
    cv_gain_se: float
    selection: Selection | None
    rows: dict[str, Any]
    report: dict[str, Any] | None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the recommendation first, then the evidence."""
        rec = {
            "kind": self.kind,
            "members": list(self.team.members),
            "combiner": self.combiner,
            "rule": self.rule,
            "cv_accuracy": self.cv_accuracy,
            "report_accuracy": None if self.report is None else self.report["recommendation"],
            "cv_gain": self.cv_gain,
            "cv_gain_se": self.cv_gain_se,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "reason": self.reason,
        }
        return jsonable(
            {
                "recommendation": rec,
                "rows": self.rows,
                "candidates": list(self.candidates),
                "report": self.report,
                "teams": [] if self.selection is None else self.selection.to_dict()["teams"],
                "seconds": self.seconds,
            }
        )


# ------------------------------------------------------------------------------ recommend
def _folds(b: Bundle, k: int, seed: int) -> np.ndarray:
    """Fold id per row: stratified by label where every class has ``k`` rows, else shuffled."""
    n = b.n_samples
    rng = np.random.default_rng(seed)
    fold = np.empty(n, dtype=np.int64)
    labels = b.labels if b.has_labels else np.zeros(n, dtype=np.int64)
    _, counts = np.unique(labels, return_counts=True)
    if counts.min() >= k:
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            fold[idx] = (np.arange(len(idx)) + rng.integers(k)) % k
    else:
        fold[rng.permutation(n)] = np.arange(n) % k
    return fold


def _check(bundle: Bundle, folds: int, alpha: float, combiners: Sequence[Any]) -> None:
    if not isinstance(bundle, Bundle):
        raise TypeError(f"bundle: expected an ensembles.Bundle, got {type(bundle).__name__}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise InputError(f"folds: must be an integer of at least 2, got {folds!r}")
    if not (isinstance(alpha, int | float) and 0.0 <= alpha <= 1.0):
        raise InputError(f"alpha: must lie in [0, 1], got {alpha!r}")
    for c in combiners:
        if isinstance(c, str) and c not in _COMBINER_RANK:
            raise InputError(
                f"combiners: unknown combiner {c!r}; use {', '.join(_COMBINER_RANK)} or a fuser"
            )


def _select_rows(bundle: Bundle, select_on: str, report_on: str | None, seed: int):
    """The selection rows (every split but ``report_on`` when ``select_on`` is ``"rest"``)."""
    if report_on is None:
        if select_on != "rest":
            part, info = ensembles.ensure_splits(bundle, seed=seed)
            return part.select_split(select_on), None, {"select_on": select_on,
                                                        **info.to_dict()}  # fmt: skip
        return bundle, None, {"select_on": "all", "report_on": None, "n_rows": bundle.n_samples}
    if select_on != "rest":
        sel, rep, rows = protocol_splits(bundle, select_on=select_on, report_on=report_on,
                                         seed=seed)  # fmt: skip
        return sel, rep, rows
    full, info = ensembles.ensure_splits(bundle, seed=seed)
    split = np.asarray(full.split)
    sel, rep = full.select_samples(split != report_on), full.select_samples(split == report_on)
    if rep.n_samples == 0:
        raise BundleError(f"split: the {report_on!r} split has no rows ({info.sizes})")
    rows = {"select_on": "+".join(s for s in ensembles.SPLIT_NAMES if s != report_on),
            "report_on": report_on, **info.to_dict()}  # fmt: skip
    return sel, rep, rows


def _cross_validate(sel, fold, rules, names, objs, objective, sizes):
    """Per-row held-out correctness of every (rule, combiner) procedure, and the ranked table.

    Within each fold the team rule and the combiner see the training folds only.
    """
    correct: dict[tuple[str, str], np.ndarray] = {}
    sizes_seen: dict[tuple[str, str], list[int]] = {}
    for f in range(int(fold.max()) + 1):
        train, held = sel.select_samples(fold != f), sel.select_samples(fold == f)
        for rule in rules:
            mask = _rule_mask(rule, train, objective, sizes)
            for name in ["single"] if mask.sum() == 1 else names:
                if name == "stacking" and rule.startswith("top"):
                    continue  # stacking learns its own member weights: the pool and search teams
                key = (rule, name)
                if key not in correct:
                    correct[key] = np.zeros(sel.n_samples, dtype=bool)
                    sizes_seen[key] = []
                correct[key][fold == f] = _held_out_right(name, objs.get(name), train, held, mask)
                sizes_seen[key].append(int(mask.sum()))
    table = [
        {"rule": r, "combiner": c, "cv_accuracy": float(v.mean()),
         "mean_size": float(np.mean(sizes_seen[(r, c)]))}
        for (r, c), v in correct.items()
    ]  # fmt: skip
    # Best first; ties go to the smaller team, then the simpler combiner.
    table.sort(key=lambda d: (-round(d["cv_accuracy"], 12), d["mean_size"],
                              _COMBINER_RANK.get(d["combiner"], 9)))  # fmt: skip
    return correct, table


def _guard(best: dict[str, Any], p_value: float, alpha: float, folds: int):
    """``(kind, rule, combiner, reason)``: the best procedure if it beats the best single model
    significantly, else the best single model."""
    if best["rule"] != "best_single" and p_value <= alpha:
        rule, combiner = best["rule"], best["combiner"]
        reason = (
            f"{rule} + {combiner} beats the best single model in {folds}-fold cross-validation "
            "on the selection rows"
        )
        return "team", rule, combiner, reason
    reason = (
        "nothing beats the best single model significantly in cross-validation on the "
        "selection rows"
        if best["rule"] != "best_single"
        else "the best single model is the best procedure in cross-validation"
    )
    return "single_model", "best_single", "single", reason


def recommend(
    bundle: Bundle,
    *,
    select_on: str = "rest",
    report_on: str | None = "test",
    objective: Objective | None = None,
    sizes: Any = None,
    combiners: Sequence[Any] = DEFAULT_COMBINERS,
    folds: int = DEFAULT_FOLDS,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
) -> Recommendation:
    """Recommend a (team, combiner) pair by cross-validation inside the selection rows.

    Args:
        bundle: the cached outputs.
        select_on: the rows to choose on: ``"rest"`` (default: every row outside ``report_on``,
            i.e. train+val) or one split name. Splits follow :func:`ensembles.ensure_splits`.
        report_on: the split reported on once the choice is made (``None``: no report).
        objective: the objective of the ``search`` team rule (default :class:`Objective`:
            ``0.2·focal + 0.8·plurality accuracy``: diversity is part of the objective).
        sizes: team sizes of the ``search`` rule (default 2 to min(5, M)).
        combiners: built-in names (``plurality``, ``soft``, ``weighted``, ``stacking``) and/or
            fuser objects with ``fit(bundle, team=...)`` and ``predict(bundle)`` (for example
            ``fusers.ToplaFuser()``); each is fitted inside the folds.
        folds: K of the K-fold cross-validation.
        alpha: significance of the guard against the best single model (default 0.2, chosen
            without test rows; see bench/README.md).
        seed: seed of the split made for the bundle (if any) and of the folds.

    Returns:
        A :class:`Recommendation`.

    Example:
        >>> import numpy as np, ensembles
        >>> rng = np.random.default_rng(1)
        >>> y = rng.integers(0, 3, 900)
        >>> strong = np.where(rng.random(900) < 0.9, y, (y + 1) % 3)
        >>> weak = np.where(rng.random((2, 900)) < 0.5, y, (y + 2) % 3)
        >>> b = ensembles.Bundle.create(models=["strong", "w1", "w2"], labels=y,
        ...                             preds=np.vstack([strong, weak]))
        >>> rec = recommend(b, combiners=("plurality",))
        >>> rec.kind, rec.team.members
        ('single_model', ('strong',))
    """
    start = time.perf_counter()
    _check(bundle, folds, alpha, combiners)
    objective = Objective() if objective is None else objective
    sel, rep, rows = _select_rows(bundle, select_on, report_on, seed)
    if sel.n_samples < 2 * folds:
        raise BundleError(
            f"rows: {sel.n_samples} selection rows are too few for {folds}-fold cross-validation"
        )
    names = [_combiner_name(c) for c in combiners if not (c == "soft" and sel.probs is None)]
    objs = {_combiner_name(c): c for c in combiners if not isinstance(c, str)}
    if sel.is_open_ended:
        rules, names = ["best_single"], ["single"]
    else:
        rules = _rules(sel.n_models)
    fold = _folds(sel, folds, seed)
    correct, table = _cross_validate(sel, fold, rules, names, objs, objective, sizes)
    best = table[0]
    single_right = correct[("best_single", "single")]
    best_right = correct[(best["rule"], best["combiner"])]
    p_value = paired_improvement_pvalue(best_right, single_right)
    diff = best_right.astype(np.float64) - single_right.astype(np.float64)
    kind, rule, combiner, reason = _guard(best, p_value, alpha, folds)
    mask = _rule_mask(rule, sel, objective, sizes)
    if kind == "team" and mask.sum() == 1:  # the rule picked one model on all rows
        kind, combiner = "single_model", "single"
    cv_acc = float(best_right.mean()) if kind == "team" else float(single_right.mean())
    fitted = _Fitted(combiner if kind == "team" else "plurality", sel, mask, objs.get(combiner))
    team = _team(sel, mask, objective, fitted if kind == "team" else None)
    selection = None
    if not sel.is_open_ended:
        from ._select import select

        selection = select(sel, objective=objective, sizes=sizes, top_k=5)
        selection = dataclasses.replace(selection, rows=rows)
    report = None if rep is None else _report(sel, rep, mask, fitted)
    rows = {**rows, "folds": folds, "fold_seed": seed}
    return Recommendation(
        kind=kind,
        team=team,
        combiner=combiner,
        rule=rule,
        cv_accuracy=cv_acc,
        p_value=float(p_value),
        alpha=float(alpha),
        reason=reason,
        candidates=tuple(table),
        cv_gain=float(diff.mean()),
        cv_gain_se=float(diff.std(ddof=1) / np.sqrt(diff.size)),  # >= 2 * folds rows
        selection=selection,
        rows=rows,
        report=report,
        seconds=time.perf_counter() - start,
    )


def _held_out_right(name, obj, train: Bundle, held: Bundle, mask: np.ndarray) -> np.ndarray:
    if held.is_open_ended:
        (m,) = np.flatnonzero(mask)
        return held.errors[m] == 0
    if name == "single":
        (m,) = np.flatnonzero(mask)
        return held.errors[m] == 0
    pred = _Fitted(name, train, mask, obj).predict(held)
    return pred == held.labels


def _team(sel: Bundle, mask: np.ndarray, objective: Objective, fitted: Any) -> Team:
    if mask.sum() == 1:
        (m,) = np.flatnonzero(mask)
        return make_teams(sel.models, mask[None], [math.nan], [sel.accuracies()[m]])[0]
    score = float(score_teams(sel, mask[None], metric=objective.metric)[0])
    acc = float((fitted.predict(sel) == sel.labels).mean()) if fitted is not None else math.nan
    return make_teams(sel.models, mask[None], [score], [acc])[0]


def _report(sel: Bundle, rep: Bundle, mask: np.ndarray, fitted: _Fitted) -> dict[str, Any]:
    """Figures on the report rows; everything chosen on ``sel`` only."""
    from ._scoring import vote_accuracy

    acc_sel = sel.accuracies()
    best = int(_accuracy_order(sel)[0])
    pool = np.ones((1, sel.n_models), dtype=bool)
    if rep.is_open_ended:
        quality = np.nan_to_num(rep.quality, nan=0.0)
        m = int(np.flatnonzero(mask)[0])
        return {
            "recommendation": float(quality[m].mean()),
            "best_single": {"name": sel.models[best], "select_accuracy": float(acc_sel[best]),
                            "report_accuracy": float(quality[best].mean())},
            "oracle": float(quality.max(axis=0).mean()),
            "n_rows": rep.n_samples,
        }  # fmt: skip
    rec_acc = (
        float(rep.accuracies()[int(np.flatnonzero(mask)[0])])
        if mask.sum() == 1
        else float((fitted.predict(rep) == rep.labels).mean())
    )
    return {
        "recommendation": rec_acc,
        "best_single": {"name": sel.models[best], "select_accuracy": float(acc_sel[best]),
                        "report_accuracy": float(rep.accuracies()[best])},
        "pool_plurality": float(vote_accuracy(rep, pool)[0]),
        "pool_soft": None if rep.probs is None
        else float(ensembles.team_accuracy(rep, pool, combiner="soft")[0]),
        "oracle": float(rep.oracle_accuracy()),
        "n_rows": rep.n_samples,
    }  # fmt: skip
