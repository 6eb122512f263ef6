"""Whole methods in one call: LLM-TOPLA (prune, then learn to ensemble) and FusionShot.

Both follow the same protocol on explicit splits:

1. **Splits** (:func:`ensembles.ensure_splits`, the one split policy): the bundle's own
   train / val / test when it has them; train / test only → a seeded 20 % of train becomes
   val; no split → a seeded stratified 60 / 20 / 20 split.
2. **Team choice** on the ``select_on`` rows only (:func:`focal.select`): the best team by a
   focal-diversity objective, exhaustively when the pool is small enough, else by beam
   search (TOPLA) or FusionShot's genetic algorithm.
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
from ensembles import DEFAULT_VAL_FRACTION, Bundle, ensure_splits
from ensembles.util import InputError, jsonable

from ._baselines import baselines, remap_splits
from ._estimators import FUSERS, MLPFuser
from ._util import package_versions

__all__ = ["FusionResult", "fusionshot", "topla"]

ProgressFn = Callable[[dict[str, Any]], None]


def _choose(select_rows: Bundle, *, objective: Any, sizes: Any, search: Any, seed: int):
    """The best team of the selection rows through :func:`focal.select` (one team)."""
    import focal

    strategy = focal.Genetic(seed=int(seed)) if search == "ga" else search
    return focal.select(select_rows, objective=objective, sizes=sizes, top_k=1, search=strategy)


@dataclasses.dataclass(frozen=True)
class FusionResult:
    """Outcome of :func:`topla` / :func:`fusionshot`.

    Attributes:
        method: ``"topla"`` or ``"fusionshot"``.
        team: the fused members.
        selection: how the team was chosen (a :class:`focal.Selection` on the ``select_on``
            rows), or ``None`` when the team was given.
        fuser: the fitted fuser (save it with ``fuser.save(folder)``).
        accuracy: the fuser's sample-level accuracy on ``report_on``.
        val_accuracy: its accuracy on the early-stopping split.
        baselines: :func:`fusers.baselines` on the same splits.
        splits: split source, seed and sizes.
        settings: the call's arguments (splits, sizes, seed, fuser parameters).
        seconds: wall-clock time of each stage.

    Example:
        >>> FusionResult("topla", ("a", "b"), None, None, 0.5, 0.5, {}, {}, {}, {}).gain_over(
        ...     {"best_single": {"accuracy": 0.25}})
        0.25
    """

    method: str
    team: tuple[str, ...]
    selection: Any
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
        return jsonable(
            {
                "method": self.method,
                "team": list(self.team),
                "selection": None if self.selection is None else self.selection.to_dict(),
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
        selection = _choose(
            b.select_split(select_on), objective=default_objective if objective is None
            else objective, sizes=sizes, search=search or default_search, seed=seed,
        )  # fmt: skip
        members = selection.best.members
    else:
        members = tuple(team)
        b.model_indices(members)
        selection = None
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
    sizes: Any = None,
    team: Sequence[str] | None = None,
    objective: Any = None,
    search: str = "auto",
    seed: int = 0,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    fuser_params: Mapping[str, Any] | None = None,
    callback: ProgressFn | None = None,
) -> FusionResult:
    """LLM-TOPLA in one call: focal-diversity pruning, then learn-to-ensemble on the team.

    Team choice: the best team by ``objective`` on the ``select_on`` rows through
    :func:`focal.select`. The default is :class:`focal.Objective` (0.2·focal diversity +
    0.8·plurality accuracy), because focal diversity alone picks diverse but weak teams on the
    shared bundles; ``objective="focal"`` ranks by focal diversity alone, as the paper's
    pruning does. The team is then fused by :class:`fusers.ToplaFuser` trained on
    ``train_on`` rows, stopping early on the remaining split, and reported on ``report_on``
    beside the baselines of :func:`fusers.baselines`, computed in the same run.

    Args:
        bundle: the cached outputs (see the module docstring for how splits are obtained).
        select_on: split the team is chosen on.
        train_on: split the fuser is trained on.
        report_on: split the result is reported on (must differ from the other two).
        sizes: team sizes to consider (``None``: :func:`focal.default_sizes`).
        team: skip pruning and fuse these members.
        objective: what :func:`focal.select` maximises: a :class:`focal.Objective`, a metric
            name, ``"accuracy"``, or ``None`` for the default objective.
        search: a :func:`focal.select` strategy or name (``"ga"`` is seeded with ``seed``).
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
    return _run(
        bundle, method="topla", default_objective=None,
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

    The team is chosen on ``select_on`` (FusionShot: ``val``) by the genetic algorithm
    (:class:`focal.Genetic`, seeded) with FusionShot's run-script fitness
    ``0.5·focal + 0.5·plurality accuracy − 0.1·size/M`` over sizes 2…M
    (``search="exhaustive"`` is exact for small pools). The team is fused by
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
