"""The selection protocol: choose teams on one split, report them on another.

Everything used to choose (diversity, accuracy, the best single model, tie-breaks) is computed
on the *selection* split only; the *report* split is touched only to report.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

import ensembles
from ensembles import Bundle, BundleError
from ensembles.util import InputError, jsonable

from ._objective import Objective
from ._scoring import vote_accuracy
from ._types import Selection, Team

__all__ = [
    "Recommendation",
    "baselines",
    "paired_improvement_pvalue",
    "protocol_splits",
    "recommend",
    "report_teams",
]


def protocol_splits(
    bundle: Bundle, *, select_on: str = "val", report_on: str = "test", seed: int = 0
) -> tuple[Bundle, Bundle, dict[str, Any]]:
    """The selection and report rows of a protocol run, through the one split policy.

    The bundle's split is completed by :func:`ensembles.ensure_splits` (its own split when it
    has train and val rows; val carved from train when it has none; else a seeded, stratified
    60/20/20 split). The two splits must differ.

    Returns:
        ``(select_bundle, report_bundle, rows)`` where ``rows`` records the split used:
        ``select_on``, ``report_on``, ``source``, ``seed`` and the row counts.

    Example:
        >>> b = ensembles.Bundle.create(models=["a", "b"], labels=[0, 1] * 10,
        ...                             preds=[[0, 1] * 10, [1, 1] * 10])
        >>> sel, rep, rows = protocol_splits(b, seed=0)
        >>> sel.n_samples, rep.n_samples, rows["source"]
        (4, 4, 'seeded')
    """
    for name, value in (("select-on", select_on), ("report-on", report_on)):
        if value not in ensembles.SPLIT_NAMES:
            raise InputError(f"{name}: expected train, val or test, got {value!r}")
    if select_on == report_on:
        raise BundleError(
            f"split: select-on and report-on are both {select_on!r}; choose teams on one split "
            "and report them on another"
        )
    split_bundle, info = ensembles.ensure_splits(bundle, seed=seed)
    rows = {"select_on": select_on, "report_on": report_on, **info.to_dict()}
    select, report = split_bundle.select_split(select_on), split_bundle.select_split(report_on)
    for name, part in ((select_on, select), (report_on, report)):
        if part.n_samples == 0:
            raise BundleError(f"split: the {name!r} split has no rows ({info.sizes})")
    return select, report, rows


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """What :func:`recommend` advises, with the evidence: which team, combined how.

    Attributes:
        kind: ``"team"`` or ``"single_model"`` (the guard kept the best single model).
        team: the recommended :class:`Team` (one member for ``single_model``).
        combiner: how to combine the team's outputs (``"plurality"``).
        p_value: one-sided exact McNemar p-value of the best team against the best single
            model, on the selection rows.
        alpha: significance level of the guard.
        reason: one sentence saying why.
        selection: the candidate teams, ranked on the selection rows.
        rows: the rows used: ``select_on``, ``report_on``, the split's source, seed and sizes.
        best_single: the best single model on the selection rows, with its accuracies.
        pool: plurality (and soft) accuracy of the whole pool.
        report: each candidate team's accuracy on the report rows (touched only to report).

    Example:
        >>> import numpy as np, ensembles
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 2000)
        >>> preds = np.where(rng.random((4, 2000)) < 0.7, y, rng.integers(0, 3, (4, 2000)))
        >>> b = ensembles.Bundle.create(models=list("abcd"), labels=y, preds=preds)
        >>> rec = recommend(b, seed=0)
        >>> rec.kind, rec.team.members, rec.combiner
        ('team', ('a', 'b', 'c'), 'plurality')
    """

    kind: str
    team: Team
    combiner: str
    p_value: float
    alpha: float
    reason: str
    selection: Selection
    rows: dict[str, Any]
    best_single: dict[str, Any]
    pool: dict[str, Any]
    report: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the recommendation first, then the candidates and baselines."""
        rec = {
            "kind": self.kind,
            "members": list(self.team.members),
            "combiner": self.combiner,
            "accuracy": self.team.accuracy,
            "report_accuracy": self.best_single["report_accuracy"]
            if self.kind == "single_model"
            else self.report[0]["report_accuracy"],
            "p_value": self.p_value,
            "alpha": self.alpha,
            "reason": self.reason,
        }
        teams = [
            {**t.to_dict(), **r} for t, r in zip(self.selection.teams, self.report, strict=True)
        ]
        return jsonable(
            {
                "recommendation": rec,
                "rows": self.rows,
                "objective": self.selection.objective,
                "strategy": self.selection.strategy,
                "n_teams_scored": self.selection.n_evaluated,
                "teams": teams,
                "best_single": self.best_single,
                "pool": self.pool,
            }
        )


def report_teams(select: Bundle, report: Bundle, masks: Any) -> tuple[dict[str, Any], ...]:
    """Accuracies of chosen teams on the report rows (plurality, and soft where possible).

    Example:
        >>> b = ensembles.Bundle.create(models=["a", "b"], labels=[0, 1], preds=[[0, 1], [0, 0]])
        >>> report_teams(b, b, [[True, True]])
        ({'report_accuracy': 1.0, 'report_soft_accuracy': None},)
    """
    masks = np.asarray(masks, dtype=bool).reshape(-1, select.n_models)
    if select.models != report.models:
        raise BundleError("models: the selection and report bundles differ in their models")
    if not len(masks):
        return ()
    rep = vote_accuracy(report, masks)
    soft = (
        ensembles.team_accuracy(report, masks, combiner="soft")
        if report.probs is not None
        else [None] * len(masks)
    )
    return tuple(
        {"report_accuracy": float(r), "report_soft_accuracy": None if s is None else float(s)}
        for r, s in zip(rep, soft, strict=True)
    )


def baselines(select: Bundle, report: Bundle) -> tuple[dict[str, Any], dict[str, Any]]:
    """The best single model (chosen on ``select``) and the whole pool, on both row sets.

    Example:
        >>> b = ensembles.Bundle.create(models=["a", "b"], labels=[0, 1], preds=[[0, 1], [0, 0]])
        >>> baselines(b, b)[0]
        {'name': 'a', 'accuracy': 1.0, 'report_accuracy': 1.0}
    """
    sel_acc = select.accuracies()
    best = int(np.argmax(sel_acc))
    everyone = np.ones((1, select.n_models), dtype=bool)
    single = {
        "name": select.models[best],
        "accuracy": float(sel_acc[best]),
        "report_accuracy": float(report.accuracies()[best]),
    }
    pool = {
        "accuracy": float(vote_accuracy(select, everyone)[0]),
        "report_accuracy": float(vote_accuracy(report, everyone)[0]),
        "report_soft_accuracy": None
        if report.probs is None
        else float(ensembles.team_accuracy(report, everyone, combiner="soft")[0]),
    }
    return single, pool


def paired_improvement_pvalue(team_right: np.ndarray, single_right: np.ndarray) -> float:
    """One-sided exact McNemar test that a team is more accurate than a single model.

    With ``b`` samples the team gets right and the model wrong, and ``c`` the reverse, the
    p-value is ``P(X ≥ b)`` for ``X ~ Binomial(b + c, 1/2)``; 1.0 when ``b + c = 0``.

    Example:
        >>> team = np.array([1, 1, 1, 1, 1, 0], bool)
        >>> one = np.array([0, 0, 0, 0, 1, 1], bool)
        >>> round(paired_improvement_pvalue(team, one), 4)
        0.1875
    """
    team_right = np.asarray(team_right, dtype=bool)
    single_right = np.asarray(single_right, dtype=bool)
    b = int((team_right & ~single_right).sum())
    c = int((~team_right & single_right).sum())
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(b, n + 1))
    return float(tail / 2**n)


def recommend(
    bundle: Bundle,
    *,
    select_on: str = "val",
    report_on: str = "test",
    objective: Objective | None = None,
    sizes: Any = None,
    top_k: int = 5,
    alpha: float = 0.05,
    seed: int = 0,
    search: Any = "auto",
) -> Recommendation:
    """Recommend a team: choose on one split by ``objective``, report on another.

    The ``top_k`` teams by ``objective`` (default :class:`Objective`:
    ``0.2·focal + 0.8·plurality accuracy``) are chosen on the selection rows with
    :func:`focal.select` and reported on the report rows beside the best single model (chosen
    on the selection rows) and the whole pool. The recommendation is the best team when it
    beats the best single model on the selection rows (one-sided exact McNemar test,
    :func:`paired_improvement_pvalue` ≤ ``alpha``), else the best single model. Splits follow
    :func:`ensembles.ensure_splits`; the rows used are recorded in the result.

    Example:
        >>> import numpy as np, ensembles
        >>> rng = np.random.default_rng(1)
        >>> y = rng.integers(0, 3, 600)
        >>> good = np.where(rng.random(600) < 0.9, y, (y + 1) % 3)
        >>> noise = rng.integers(0, 3, (2, 600))
        >>> b = ensembles.Bundle.create(models=["good", "n1", "n2"], labels=y,
        ...                             preds=np.vstack([good, noise]))
        >>> recommend(b).kind
        'single_model'
    """
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha: must lie in [0, 1], got {alpha}")
    obj = Objective() if objective is None else objective
    select_rows, report_rows, rows = protocol_splits(
        bundle, select_on=select_on, report_on=report_on, seed=seed
    )
    from ._select import select as select_teams

    selection = select_teams(select_rows, objective=obj, sizes=sizes, top_k=top_k, search=search)
    selection = dataclasses.replace(selection, rows=rows)
    report = report_teams(select_rows, report_rows, selection.masks)
    single, pool = baselines(select_rows, report_rows)
    best = selection.best
    index = select_rows.model_indices([single["name"]])[0]
    p_value = paired_improvement_pvalue(
        ensembles.combine(select_rows, best.mask, combiner=obj.combiner) == select_rows.labels,
        select_rows.errors[index] == 0,
    )
    if p_value <= alpha:
        kind, team = "team", best
        reason = "the best team beats the best single model on the selection rows"
    else:
        mask = np.zeros(select_rows.n_models, dtype=bool)
        mask[index] = True
        kind = "single_model"
        team = Team((single["name"],), float("nan"), single["accuracy"], None, mask)
        reason = "no team beats the best single model significantly on the selection rows"
    return Recommendation(
        kind=kind,
        team=team,
        combiner=obj.combiner,
        p_value=p_value,
        alpha=alpha,
        reason=reason,
        selection=selection,
        rows=rows,
        best_single=single,
        pool=pool,
        report=report,
    )
