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
from ensembles.util import InputError

from ._metrics import metric_spec
from ._objective import Objective

__all__ = [
    "DEFAULT_OBJECTIVE",
    "SelectionReport",
    "paired_improvement_pvalue",
    "protocol_splits",
    "recommend",
    "report_teams",
    "top_by_objective",
]


def protocol_splits(
    bundle: Bundle, *, select_on: str = "val", report_on: str = "test", seed: int = 0
) -> tuple[Bundle, Bundle, str]:
    """The selection and report bundles of a protocol run.

    Uses the bundle's ``split`` key when it has one; otherwise makes a seeded, stratified
    60/20/20 train/val/test split (:func:`ensembles.with_random_split`). The two splits must
    differ.

    Returns:
        ``(select_bundle, report_bundle, source)`` with ``source`` ``"bundle"`` or
        ``"seeded:<seed>"``.

    Example:
        >>> b = ensembles.Bundle.create(models=["a", "b"], labels=[0, 1] * 10,
        ...                             preds=[[0, 1] * 10, [1, 1] * 10])
        >>> sel, rep, source = protocol_splits(b, seed=0)
        >>> sel.n_samples, rep.n_samples, source
        (4, 4, 'seeded:0')
    """
    if select_on == report_on:
        raise BundleError(
            f"split: select-on and report-on are both {select_on!r}; choose teams on one split "
            "and report them on another"
        )
    source = "bundle"
    if bundle.split is None:
        bundle = ensembles.with_random_split(bundle, seed=seed)
        source = f"seeded:{seed}"
    return bundle.select_split(select_on), bundle.select_split(report_on), source


@dataclasses.dataclass(frozen=True)
class ReportedTeam:
    """A team chosen on the selection split, with its figures on both splits."""

    members: tuple[str, ...]
    size: int
    score: float
    accuracy: float
    fitness: float | None
    report_accuracy: float
    report_soft_accuracy: float | None
    mask: np.ndarray = dataclasses.field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN → ``None``)."""
        return _clean(
            {
                "members": list(self.members),
                "size": self.size,
                "score": self.score,
                "accuracy": self.accuracy,
                "fitness": self.fitness,
                "report_accuracy": self.report_accuracy,
                "report_soft_accuracy": self.report_soft_accuracy,
            }
        )


@dataclasses.dataclass(frozen=True)
class SelectionReport:
    """Teams chosen on ``select_on`` and reported on ``report_on``, beside the baselines.

    ``best_single`` is the model with the best accuracy on the selection split (lowest index
    on ties) and its accuracy on both splits; ``pool`` is the whole pool's plurality (and soft)
    vote on the report split.
    """

    select_on: str
    report_on: str
    split_source: str
    n_select: int
    n_report: int
    method: str
    ranking: str
    teams: tuple[ReportedTeam, ...]
    best_single: dict[str, Any]
    pool: dict[str, Any]
    recommendation: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "select_on": self.select_on,
            "report_on": self.report_on,
            "split_source": self.split_source,
            "n_select": self.n_select,
            "n_report": self.n_report,
            "method": self.method,
            "ranking": self.ranking,
            "teams": [t.to_dict() for t in self.teams],
            "best_single": _clean(self.best_single),
            "pool": _clean(self.pool),
            **({"recommendation": _clean(self.recommendation)} if self.recommendation else {}),
        }


def report_teams(
    select: Bundle,
    report: Bundle,
    masks: np.ndarray,
    *,
    metric: str = "focal",
    objective: Objective | None = None,
    method: str = "exhaustive",
    select_on: str = "val",
    report_on: str = "test",
    split_source: str = "bundle",
) -> SelectionReport:
    """Figures of chosen teams on the selection and report splits, with the baselines.

    Args:
        select, report: the two splits of one bundle (same models).
        masks: chosen teams, (K, M) booleans, best first.
        metric: diversity metric reported as ``score`` (the objective's metric if given).
        objective: if given, each team's fitness on the selection split is reported.
        method, select_on, report_on, split_source: recorded in the report.
    """
    masks = np.asarray(masks, dtype=bool).reshape(-1, select.n_models)
    if select.models != report.models:
        raise BundleError("models: the selection and report bundles differ in their models")
    metric = objective.metric if objective is not None else metric
    metric_spec(metric)
    from ._scoring import score_teams

    teams: list[ReportedTeam] = []
    if len(masks):
        score = score_teams(select, masks, metric=metric)
        acc = ensembles.team_accuracy(select, masks)
        fitness: list[float | None] = [None] * len(masks)
        if objective is not None:
            obj_acc = ensembles.team_accuracy(select, masks, combiner=objective.combiner)
            fitness = list(objective.fitness(score, obj_acc, masks.sum(axis=1), select.n_models))
        rep = ensembles.team_accuracy(report, masks)
        rep_soft = (
            ensembles.team_accuracy(report, masks, combiner="soft")
            if report.probs is not None
            else [None] * len(masks)
        )
        for i, mask in enumerate(masks):
            teams.append(
                ReportedTeam(
                    members=tuple(m for m, k in zip(select.models, mask, strict=True) if k),
                    size=int(mask.sum()),
                    score=float(score[i]),
                    accuracy=float(acc[i]),
                    fitness=None if fitness[i] is None else float(fitness[i]),
                    report_accuracy=float(rep[i]),
                    report_soft_accuracy=None if rep_soft[i] is None else float(rep_soft[i]),
                    mask=mask,
                )
            )
    sel_acc = select.accuracies()
    best = int(np.argmax(sel_acc))
    everyone = np.ones((1, select.n_models), dtype=bool)
    return SelectionReport(
        select_on=select_on,
        report_on=report_on,
        split_source=split_source,
        n_select=select.n_samples,
        n_report=report.n_samples,
        method=method,
        ranking=objective.name if objective is not None else metric,
        teams=tuple(teams),
        best_single={
            "name": select.models[best],
            "accuracy": float(sel_acc[best]),
            "report_accuracy": float(report.accuracies()[best]),
        },
        pool={
            "accuracy": float(ensembles.team_accuracy(select, everyone)[0]),
            "report_accuracy": float(ensembles.team_accuracy(report, everyone)[0]),
            "report_soft_accuracy": None
            if report.probs is None
            else float(ensembles.team_accuracy(report, everyone, combiner="soft")[0]),
        },
    )


def _clean(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


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


#: Default objective of :func:`recommend`, chosen on the shared BBH and MMLU-Pro bundles
#: (bench/recommend_defaults.py): accuracy first, focal diversity as a regulariser.
DEFAULT_OBJECTIVE = Objective(metric="focal", w_div=0.2, w_acc=0.8)

#: Teams scored exhaustively by :func:`recommend` before it switches to beam search.
RECOMMEND_EXHAUSTIVE_LIMIT = 1 << 18


def top_by_objective(
    bundle: Bundle, *, objective: Objective, sizes: Any, top_k: int, max_teams: int | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Exhaustively the ``top_k`` teams by ``objective`` (canonical order on ties).

    Returns ``(masks, fitness, method)``; refuses more than ``max_teams`` teams.
    """
    from ._scoring import score_all

    masks, scores = score_all(bundle, metric=objective.metric, sizes=sizes, max_teams=max_teams)
    accuracy = ensembles.team_accuracy(bundle, masks, combiner=objective.combiner)
    fitness = objective.fitness(scores, accuracy, masks.sum(axis=1), bundle.n_models)
    order = np.argsort(-np.round(fitness, 10), kind="stable")[: int(top_k)]
    return masks[order], fitness[order], "exhaustive"


def recommend(
    bundle: Bundle,
    *,
    select_on: str = "val",
    report_on: str = "test",
    objective: Objective = DEFAULT_OBJECTIVE,
    sizes: Any = (2, 5),
    top_k: int = 5,
    alpha: float = 0.05,
    seed: int = 0,
) -> SelectionReport:
    """Recommend a team: choose on one split by ``objective``, report on another.

    The ``top_k`` teams by ``objective`` on the selection split are reported on the report
    split beside the best single model (chosen on the selection split) and the whole pool.
    The recommendation is the best team when it beats the best single model on the selection
    split (one-sided exact McNemar test, :func:`paired_improvement_pvalue` ≤ ``alpha``),
    else the best single model. Pools too large for exhaustive scoring
    (more than 2^18 teams) are searched by beam search.

    Example:
        >>> import numpy as np, ensembles
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 2000)
        >>> preds = np.where(rng.random((4, 2000)) < 0.7, y, rng.integers(0, 3, (4, 2000)))
        >>> b = ensembles.Bundle.create(models=list("abcd"), labels=y, preds=preds)
        >>> rec = recommend(b, sizes=(2, 4), seed=0).recommendation
        >>> rec["kind"], rec["members"]
        ('team', ['a', 'b', 'c'])
    """
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha: must lie in [0, 1], got {alpha}")
    select, report, source = protocol_splits(
        bundle, select_on=select_on, report_on=report_on, seed=seed
    )
    from ._teams import count_teams, parse_sizes

    size_tuple = parse_sizes(sizes, select.n_models)
    if count_teams(select.n_models, size_tuple) <= RECOMMEND_EXHAUSTIVE_LIMIT:
        masks, _, method = top_by_objective(select, objective=objective, sizes=size_tuple,
                                            top_k=top_k)  # fmt: skip
    else:
        from ._search import search

        found = search(select, "beam", objective=objective, sizes=size_tuple, top_k=top_k)
        masks, method = np.stack([t.mask for t in found.teams]), "beam"
    result = report_teams(
        select, report, masks, objective=objective, method=method, select_on=select_on,
        report_on=report_on, split_source=source,
    )  # fmt: skip
    best = result.teams[0]
    single = select.model_indices([result.best_single["name"]])[0]
    p_value = paired_improvement_pvalue(
        ensembles.combine(select, best.mask) == select.labels, select.errors[single] == 0
    )
    if p_value <= alpha:
        rec = {"kind": "team", "members": list(best.members),
               "report_accuracy": best.report_accuracy}  # fmt: skip
        reason = "beats the best single model on the selection split"
    else:
        rec = {"kind": "single_model", "members": [result.best_single["name"]],
               "report_accuracy": result.best_single["report_accuracy"]}  # fmt: skip
        reason = "no team beats the best single model significantly on the selection split"
    rec.update(p_value=p_value, alpha=alpha, reason=reason)
    return dataclasses.replace(result, recommendation=rec)
