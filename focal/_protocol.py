"""The selection protocol: choose teams on one split, report them on another.

Everything used to choose (diversity, accuracy, the best single model, tie-breaks) is computed
on the *selection* split only; the *report* split is touched only to report.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import ensembles
from ensembles import Bundle, BundleError
from ensembles.util import InputError

from ._scoring import vote_accuracy

__all__ = [
    "baselines",
    "paired_improvement_pvalue",
    "protocol_splits",
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


def report_teams(select: Bundle, report: Bundle, masks: Any) -> tuple[dict[str, Any], ...]:
    """Accuracies of chosen teams on the report rows (plurality, and soft where possible).

    Example:
        >>> b = ensembles.Bundle.create(models=["a", "b"], labels=[0, 1], preds=[[0, 1], [0, 0]])
        >>> report_teams(b, b, [[True, True]])  # a 1-1 tie goes to class 0: one right of two
        ({'report_accuracy': 0.5, 'report_soft_accuracy': None},)
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
