"""Whole methods in one call: LLM-TOPLA (prune, then learn to ensemble) and FusionShot.

Both follow the same protocol on explicit splits:

1. **Splits** (:func:`fusers.ensure_splits`): the bundle's own train / val / test when it has
   them; train / test only (BBH) → a seeded 20 % of train becomes val; no split (MMLU-Pro) →
   a seeded stratified 70 / 10 / 20 split (LLM-TOPLA's MMLU protocol).
2. **Team choice** on the ``select_on`` rows only (:func:`choose_team`): the best team by a
   focal-diversity objective, exhaustively when the pool is small enough, else by the P2
   search methods (beam for TOPLA, FusionShot's genetic algorithm).
3. **Learn to ensemble** the team on the ``train_on`` rows, early stopping on the remaining
   split (``val`` by default), never training on it.
4. **Report** on ``report_on``: the fuser's accuracy and, from the same run, every baseline of
   :func:`fusers.baselines`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import ensembles
from ensembles import Bundle
from ensembles.util import InputError

from ._baselines import baselines, remap_splits
from ._estimators import FUSERS, MLPFuser
from ._splits import DEFAULT_VAL_FRACTION, ensure_splits
from ._util import json_ready, package_versions

__all__ = ["EXHAUSTIVE_LIMIT", "FusionResult", "choose_team", "fusionshot", "topla"]

#: Pools with at most this many candidate teams are searched exhaustively by :func:`choose_team`.
EXHAUSTIVE_LIMIT = 1 << 18

ProgressFn = Callable[[dict[str, Any]], None]


def _objective(objective: Any, default: Any) -> Any:
    import focal

    if objective is None:
        return default
    if isinstance(objective, focal.Objective):
        return objective
    if objective == "focal":
        return focal.Objective(metric="focal", w_div=1.0, w_acc=0.0)
    if objective == "accuracy":
        return focal.Objective(metric="focal", w_div=0.0, w_acc=1.0)
    if objective == "default":
        return focal.DEFAULT_OBJECTIVE
    raise InputError(
        "objective: expected a focal.Objective, 'default', 'focal' or 'accuracy', "
        f"got {objective!r}"
    )


def choose_team(
    select: Bundle,
    *,
    objective: Any = None,
    sizes: Any = (2, 5),
    search: str = "auto",
    seed: int = 0,
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The best team of a bundle (the selection split) by a focal-diversity objective.

    Args:
        select: the selection rows (e.g. ``val``); nothing else is looked at.
        objective: a :class:`focal.Objective`, or ``"default"`` / ``None``
            (:data:`focal.DEFAULT_OBJECTIVE`: 0.2·focal + 0.8·plurality accuracy, the project
            default chosen in P2), ``"focal"`` (focal diversity alone, the pure TOPLA ranking),
            ``"accuracy"`` (plurality accuracy alone).
        sizes: team sizes (an int, ``(lo, hi)``, ``"2-5"``, …).
        search: ``"exhaustive"``, ``"ga"``, ``"beam"``, ``"greedy"`` or ``"auto"``
            (exhaustive up to :data:`EXHAUSTIVE_LIMIT` teams, else beam search).
        seed: seed of the genetic algorithm.

    Returns:
        ``(members, info)``: the member names (bundle order) and a dict with the objective's
        name, the method, the team's metric score, accuracy and fitness on ``select``, and the
        number of teams evaluated. Ties go to the smaller team, then canonical order.

    Raises:
        ValueError: bad sizes, objective or search method; ``"ga"``, ``"beam"`` or
            ``"greedy"`` when the search module of P2 is not installed.

    Example:
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
        ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
        >>> choose_team(b, objective="focal", sizes=2)[0]
        ('a', 'b')
    """
    import focal

    obj = _objective(objective, focal.DEFAULT_OBJECTIVE)
    size_tuple = focal.parse_sizes(sizes, select.n_models)
    n_teams = focal.count_teams(select.n_models, size_tuple)
    method = search
    if method == "auto":
        method = "exhaustive" if n_teams <= EXHAUSTIVE_LIMIT else "beam"
    if method == "exhaustive":
        masks, scores = focal.score_all(select, metric=obj.metric, sizes=size_tuple,
                                        max_teams=None)  # fmt: skip
        acc = ensembles.team_accuracy(select, masks, combiner=obj.combiner)
        fit = obj.fitness(scores, acc, masks.sum(axis=1), select.n_models)
        order = np.lexsort((np.arange(len(fit)), masks.sum(axis=1), -np.round(fit, 10)))
        i = int(order[0])
        mask, score, accuracy, fitness, evaluated = masks[i], scores[i], acc[i], fit[i], n_teams
    elif method in ("ga", "beam", "greedy"):
        try:
            from focal._search import search as run_search
        except ImportError:  # pragma: no cover - P2's search module missing
            raise InputError(f"search: {method!r} needs focal._search (issue P2)") from None
        kwargs: dict[str, Any] = {"objective": obj, "sizes": size_tuple, "top_k": 1}
        if method == "ga":
            kwargs["seed"] = int(seed)
        found = run_search(select, method, **kwargs)
        best = found.teams[0]
        mask, score, accuracy, fitness = best.mask, best.score, best.accuracy, best.fitness
        evaluated = found.n_evaluated
    else:
        raise InputError(
            f"search: unknown method {search!r}; use auto, exhaustive, ga, beam or greedy"
        )
    members = tuple(m for m, keep in zip(select.models, mask, strict=True) if keep)
    info = {
        "objective": obj.name,
        "method": method,
        "sizes": list(size_tuple),
        "n_evaluated": int(evaluated),
        "score": float(score),
        "accuracy": float(accuracy),
        "fitness": float(fitness),
    }
    return members, json_ready(info)


@dataclasses.dataclass(frozen=True)
class FusionResult:
    """Outcome of :func:`topla` / :func:`fusionshot`.

    Attributes:
        method: ``"topla"`` or ``"fusionshot"``.
        team: the fused members.
        selection: how the team was chosen (see :func:`choose_team`), or ``{"given": True}``.
        fuser: the fitted fuser (save it with ``fuser.save(folder)``).
        accuracy: the fuser's sample-level accuracy on ``report_on``.
        val_accuracy: its accuracy on the early-stopping split.
        baselines: :func:`fusers.baselines` on the same splits.
        splits: split source, seed and sizes.
        settings: the call's arguments (splits, sizes, seed, fuser parameters).
        seconds: wall-clock time of each stage.

    Example:
        >>> FusionResult("topla", ("a", "b"), {}, None, 0.5, 0.5, {}, {}, {}, {}).gain_over(
        ...     {"best_single": {"accuracy": 0.25}})
        0.25
    """

    method: str
    team: tuple[str, ...]
    selection: Mapping[str, Any]
    fuser: Any
    accuracy: float
    val_accuracy: float
    baselines: Mapping[str, Any]
    splits: Mapping[str, Any]
    settings: Mapping[str, Any]
    seconds: Mapping[str, float]

    def gain_over(self, baselines: Mapping[str, Any] | None = None) -> float:
        """Accuracy minus the best single model's (chosen on the selection split)."""
        base = self.baselines if baselines is None else baselines
        return float(self.accuracy - base["best_single"]["accuracy"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN → ``None``), with package versions."""
        fuser = self.fuser
        training = None
        if isinstance(fuser, MLPFuser):
            h = fuser.history_
            training = {
                "epochs_run": h["epochs_run"],
                "best_epoch": h["best_epoch"],
                "best_val_accuracy": h["best_val_accuracy"],
                "stopped_early": h["stopped_early"],
                "seconds": h["seconds"],
            }
        return json_ready(
            {
                "method": self.method,
                "team": list(self.team),
                "selection": dict(self.selection),
                "fuser": {"class": type(fuser).__name__, "params": fuser.get_params(),
                          "training": training},
                "accuracy": self.accuracy,
                "val_accuracy": self.val_accuracy,
                "baselines": dict(self.baselines),
                "splits": dict(self.splits),
                "settings": dict(self.settings),
                "seconds": dict(self.seconds),
                "versions": package_versions(),
            }
        )  # fmt: skip


def _run(
    bundle: Bundle,
    *,
    method: str,
    default_objective: Any,
    default_search: str,
    select_on: str,
    train_on: str,
    report_on: str,
    sizes: Any,
    team: Sequence[str] | None,
    objective: Any,
    search: str | None,
    seed: int,
    val_fraction: float,
    fuser_params: Mapping[str, Any] | None,
    callback: ProgressFn | None,
) -> FusionResult:
    if not isinstance(bundle, Bundle):
        raise TypeError(f"bundle: expected an ensembles.Bundle, got {type(bundle).__name__}")
    for name, value in (("select_on", select_on), ("train_on", train_on),
                        ("report_on", report_on)):  # fmt: skip
        if value not in ensembles.SPLIT_NAMES:
            raise InputError(f"{name}: unknown split {value!r}; use train, val or test")
    if select_on == report_on:
        raise InputError(
            f"select_on and report_on are both {select_on!r}; choose on one split, "
            "report on another"
        )
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    b, info = ensure_splits(bundle, seed=seed, val_fraction=val_fraction)
    if team is None:
        members, selection = choose_team(
            b.select_split(select_on), objective=_objective(objective, default_objective),
            sizes=sizes, search=search or default_search, seed=seed,
        )  # fmt: skip
    else:
        members = tuple(team)
        b.model_indices(members)
        selection = {"given": True}
    timings["select"] = time.perf_counter() - t0

    params = dict(fuser_params or {})
    params.setdefault("seed", seed)
    params.setdefault("val_fraction", val_fraction)
    fuser = FUSERS[method](**params)
    trainable = remap_splits(b, train_on=train_on, report_on=report_on)
    t1 = time.perf_counter()
    fuser.fit(trainable, team=members, callback=callback)
    # record where the rows came from (fit saw them already split) and their roles
    fuser.splits_ = {**info.to_dict(), "train_on": train_on, "report_on": report_on}
    timings["train"] = time.perf_counter() - t1
    accuracy = fuser.score(trainable, split="test")
    val_accuracy = fuser.score(trainable, split="val")

    t2 = time.perf_counter()
    base = baselines(
        b, members, select_on=select_on, report_on=report_on, train_on=train_on,
        scores=getattr(fuser, "scores", "auto"),
        valid_classes=getattr(fuser, "valid_classes", "all"), seed=seed,
        val_fraction=val_fraction,
    )  # fmt: skip
    timings["baselines"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0
    settings = {
        "select_on": select_on,
        "train_on": train_on,
        "report_on": report_on,
        "sizes": sizes if isinstance(sizes, int | str) else list(np.atleast_1d(sizes).tolist()),
        "seed": seed,
        "val_fraction": val_fraction,
        "task": bundle.task,
    }
    return FusionResult(
        method=method,
        team=members,
        selection=selection,
        fuser=fuser,
        accuracy=float(accuracy),
        val_accuracy=float(val_accuracy),
        baselines=base,
        splits=info.to_dict(),
        settings=settings,
        seconds=timings,
    )


def topla(
    bundle: Bundle,
    *,
    select_on: str = "val",
    train_on: str = "train",
    report_on: str = "test",
    sizes: Any = (2, 5),
    team: Sequence[str] | None = None,
    objective: Any = None,
    search: str = "auto",
    seed: int = 0,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    fuser_params: Mapping[str, Any] | None = None,
    callback: ProgressFn | None = None,
) -> FusionResult:
    """LLM-TOPLA in one call: focal-diversity pruning, then learn-to-ensemble on the team.

    Team choice: the best team by ``objective`` on the ``select_on`` rows. The default is the
    project's default objective (:data:`focal.DEFAULT_OBJECTIVE`, 0.2·focal diversity +
    0.8·plurality accuracy), chosen in P2 because focal diversity alone picks diverse but weak
    teams on the shared bundles; ``objective="focal"`` ranks by focal diversity alone, as the
    paper's pruning does. The team is then fused by :class:`fusers.ToplaFuser` trained on
    ``train_on`` rows, stopping early on the remaining split, and reported on ``report_on``
    beside the baselines of :func:`fusers.baselines`, computed in the same run.

    Args:
        bundle: the cached outputs (see the module docstring for how splits are obtained).
        select_on: split the team is chosen on.
        train_on: split the fuser is trained on.
        report_on: split the result is reported on (must differ from the other two).
        sizes: team sizes to consider.
        team: skip pruning and fuse these members.
        objective: see :func:`choose_team`.
        search: see :func:`choose_team`.
        seed: seed of the splits made here, the search and the fuser.
        val_fraction: fraction of train moved to val when the bundle has no val rows.
        fuser_params: keyword arguments of :class:`fusers.ToplaFuser` (e.g. ``epochs``,
            ``batch_size``, ``patience``, ``faithful``, ``valid_classes``).
        callback: per-epoch progress callback of the fuser.

    Returns:
        A :class:`FusionResult`.

    Raises:
        ValueError: bad split names or settings.
        BundleError: unknown model names, missing splits.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 4, 600)
        >>> noisy = lambda p: np.where(rng.random(600) < p, y, rng.integers(0, 4, 600))
        >>> b = ensembles.Bundle.create(models=list("abcd"), labels=y,
        ...     preds=np.stack([noisy(0.7), noisy(0.6), noisy(0.6), noisy(0.3)]))
        >>> r = topla(b, sizes=(2, 3), fuser_params={"epochs": 20})
        >>> r.team, sorted(r.baselines)[:3]
        (('a', 'b', 'c'), ['best_member', 'best_single', 'majority'])
    """
    import focal

    return _run(
        bundle, method="topla", default_objective=focal.DEFAULT_OBJECTIVE,
        default_search="auto", select_on=select_on, train_on=train_on, report_on=report_on,
        sizes=sizes, team=team, objective=objective, search=search, seed=seed,
        val_fraction=val_fraction, fuser_params=fuser_params, callback=callback,
    )  # fmt: skip


def fusionshot(
    bundle: Bundle,
    *,
    select_on: str = "val",
    train_on: str = "train",
    report_on: str = "test",
    sizes: Any = None,
    team: Sequence[str] | None = None,
    objective: Any = None,
    search: str = "ga",
    seed: int = 0,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    fuser_params: Mapping[str, Any] | None = None,
    callback: ProgressFn | None = None,
) -> FusionResult:
    """FusionShot in one call: genetic-algorithm team choice, then its learn-to-combine MLP.

    The team is chosen on ``select_on`` (FusionShot: ``val``) by the genetic algorithm of P2
    (``focal._search``, seeded) with FusionShot's run-script fitness
    ``0.5·focal + 0.5·plurality accuracy − 0.1·size/M`` over sizes 2…M; when the search module
    is missing use ``search="exhaustive"``. The team is fused by
    :class:`fusers.FusionShotFuser` (no early stopping, best val epoch kept) and reported with
    the same baselines as :func:`topla`. Arguments are those of :func:`topla`; ``sizes=None``
    means 2…M.

    Returns:
        A :class:`FusionResult`.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 5, 500)
        >>> p = rng.random((4, 500, 5)); p[:2, np.arange(500), y] += 0.6
        >>> b = ensembles.Bundle.create(models=list("abcd"), labels=y, probs=p)
        >>> r = fusionshot(b, fuser_params={"epochs": 100}, search="exhaustive")
        >>> r.method, r.accuracy > r.baselines["pool_plurality"]
        ('fusionshot', True)
    """
    import focal

    if sizes is None:
        sizes = (2, bundle.n_models)
    default = focal.Objective(metric="focal", w_div=0.5, w_acc=0.5, size_penalty=0.1)
    return _run(
        bundle, method="fusionshot", default_objective=default, default_search="ga",
        select_on=select_on, train_on=train_on, report_on=report_on, sizes=sizes, team=team,
        objective=objective, search=search, seed=seed, val_fraction=val_fraction,
        fuser_params=fuser_params, callback=callback,
    )  # fmt: skip
