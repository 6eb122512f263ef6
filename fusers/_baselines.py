"""Baselines reported beside every fuser, computed in the same run on the same splits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import ensembles
from ensembles import DEFAULT_VAL_FRACTION, Bundle
from ensembles.util import InputError

__all__ = ["baselines", "batch_mean_accuracy", "remap_splits"]


def remap_splits(bundle: Bundle, *, train_on: str, report_on: str) -> Bundle:
    """Rename splits: ``train_on`` → ``train``, ``report_on`` → ``test``, the third → ``val``.

    The fusers train on ``train`` and stop early on ``val``; this lets a caller train on any
    split and report on any other, the remaining one serving for early stopping.

    Example:
        >>> b = ensembles.Bundle.create(models=["a", "b"], labels=[0, 1, 0],
        ...     preds=[[0, 1, 0], [1, 1, 0]], split=["train", "val", "test"])
        >>> remap_splits(b, train_on="val", report_on="test").split.tolist()
        ['val', 'train', 'test']
    """
    names = ensembles.SPLIT_NAMES
    for arg, value in (("train_on", train_on), ("report_on", report_on)):
        if value not in names:
            raise InputError(f"{arg}: unknown split {value!r}; use {', '.join(names)}")
    if train_on == report_on:
        raise InputError(f"train_on and report_on are both {train_on!r}; report on another split")
    if (train_on, report_on) == ("train", "test"):
        return bundle
    stop_on = next(s for s in names if s not in (train_on, report_on))
    rename = {train_on: "train", stop_on: "val", report_on: "test"}
    split = np.asarray(bundle.split)
    return bundle.with_split(np.array([rename[s] for s in split.tolist()]))


def batch_mean_accuracy(correct: Any, *, batch_size: int = 64, seed: int | None = None) -> float:
    """The reference's reporting metric: mean of per-batch accuracies.

    Biased when the last batch is short; kept only as a faithful reporting option beside the
    sample-level accuracy. ``seed`` shuffles the rows first (the reference's shuffled loader);
    ``None`` keeps them in order.

    Example:
        >>> batch_mean_accuracy([1, 1, 1, 1, 0], batch_size=4)  # (1.0 + 0.0) / 2
        0.5
    """
    c = np.asarray(correct, dtype=np.float64).reshape(-1)
    if c.size == 0:
        raise InputError("correct: no rows")
    if seed is not None:
        c = c[np.random.default_rng(seed).permutation(c.size)]
    batches = [c[i : i + batch_size].mean() for i in range(0, c.size, batch_size)]
    return float(np.mean(batches))


def _acc(bundle: Bundle, members: Sequence[str], combiner: str) -> float | None:
    if combiner in ("soft",) and bundle.probs is None:
        return None
    return float(ensembles.team_accuracy(bundle, [tuple(members)], combiner=combiner)[0])


def baselines(
    bundle: Bundle,
    team: Sequence[str],
    *,
    select_on: str = "val",
    report_on: str = "test",
    train_on: str = "train",
    scores: str = "auto",
    valid_classes: str = "all",
    C: float = 1.0,
    seed: int = 0,
    val_fraction: float = DEFAULT_VAL_FRACTION,
) -> dict[str, Any]:
    """Accuracy on ``report_on`` of the baselines a fuser is compared with.

    Every choice uses the ``select_on`` rows only; stacking is fitted on ``train_on`` rows.

    * ``best_single``: the pool's model with the best ``select_on`` accuracy (lowest index on
      ties), and ``best_member``: the same within the team;
    * ``plurality``, ``majority``, ``soft`` (``None`` without ``probs``): votes of the team
      (see ``ensembles.team_accuracy``);
    * ``stacking``: :class:`fusers.StackingFuser` (logistic regression on the team's scores);
    * ``pool_plurality``, ``pool_soft``: votes of the whole pool;
    * ``oracle_team``, ``oracle_pool``: some member right (upper bounds, not baselines).

    Args:
        bundle: the cached outputs with a split (see :func:`ensembles.ensure_splits`).
        team: the fuser's members.
        select_on, report_on, train_on: split names.
        scores, valid_classes, C: inputs and regularisation of the stacking baseline.
        seed, val_fraction: as for the fusers (only used when a split must be made).

    Returns:
        A JSON-ready dict (see above).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 300)
        >>> b = ensembles.with_random_split(ensembles.Bundle.create(
        ...     models=["a", "b", "c"], labels=y,
        ...     preds=np.stack([y, y, rng.integers(0, 3, 300)])), seed=0)
        >>> r = baselines(b, ["a", "c"])
        >>> r["best_single"]["name"], r["plurality"] < 1.0, r["stacking"]
        ('a', True, 1.0)
    """
    from ensembles import ensure_splits

    from ._estimators import StackingFuser

    b, _ = ensure_splits(bundle, seed=seed, val_fraction=val_fraction)
    team = tuple(team)
    select, report = b.select_split(select_on), b.select_split(report_on)
    sel_acc = select.accuracies()
    rep_acc = report.accuracies()
    best = int(np.argmax(sel_acc))
    idx = select.model_indices(team)
    best_m = idx[int(np.argmax(sel_acc[idx]))]
    stack = StackingFuser(C=C, scores=scores, valid_classes=valid_classes, seed=seed,
                          val_fraction=val_fraction)  # fmt: skip
    stack.fit(remap_splits(b, train_on=train_on, report_on=report_on), team=team)
    report_idx = np.flatnonzero(np.asarray(b.split) == report_on)
    stack_acc = float((stack.predict(b.select_samples(report_idx)) == report.labels).mean())
    pool = tuple(b.models)
    team_err = report.errors[idx]
    return {
        "best_single": {
            "name": select.models[best],
            "select_accuracy": float(sel_acc[best]),
            "accuracy": float(rep_acc[best]),
        },
        "best_member": {
            "name": select.models[best_m],
            "select_accuracy": float(sel_acc[best_m]),
            "accuracy": float(rep_acc[best_m]),
        },
        "plurality": _acc(report, team, "plurality"),
        "majority": _acc(report, team, "majority"),
        "soft": _acc(report, team, "soft"),
        "stacking": stack_acc,
        "pool_plurality": _acc(report, pool, "plurality"),
        "pool_soft": _acc(report, pool, "soft"),
        "oracle_team": float((team_err.min(axis=0) == 0).mean()),
        "oracle_pool": report.oracle_accuracy(),
    }
