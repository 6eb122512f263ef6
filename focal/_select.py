"""One entry point for choosing teams: :func:`select`, with strategy objects.

``select(bundle, objective=..., sizes=..., top_k=..., search=...)`` ranks teams by an
:class:`~focal.Objective` (or a diversity metric alone, or the Pareto front of diversity and
accuracy) with one of the strategies below, and returns a :class:`~focal.Selection`:

==================  ========================================================================
:class:`Exhaustive`  every team of the sizes, exactly. Ranked by a metric alone it is a
                     streaming top-K scan in bounded memory (chunked closed forms, or the
                     Gray-code scan sharded over devices; resumable from a checkpoint);
                     ranked by an objective, every team's accuracy is computed too.
:class:`Greedy`      forward selection from the best pair, one member at a time.
:class:`Beam`        the same with a beam of the ``width`` best teams per size.
:class:`Genetic`     FusionShot's genetic algorithm, seeded and memoised.
:class:`HQ`          HQ-Ensemble's hierarchical pruning, its teams ranked by the objective.
==================  ========================================================================

``search="auto"`` (the default) is :class:`Exhaustive` when the request has at most
:data:`AUTO_EXHAUSTIVE_LIMIT` teams (:data:`focal.DEFAULT_MAX_TEAMS` for a ranking by a metric
alone, which streams in bounded memory), else :class:`Beam`. Defaults that depend on the pool
(team sizes) come from :func:`default_sizes`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ensembles import Bundle
from ensembles.util import InputError

from ._metrics import METRICS, metric_spec
from ._objective import Objective
from ._scoring import DEFAULT_MAX_TEAMS, exhaustive_scan, pareto_prune
from ._search import beam, exhaustive_objective, genetic, greedy
from ._teams import count_teams, parse_sizes
from ._types import Selection

__all__ = [
    "AUTO_EXHAUSTIVE_LIMIT",
    "STRATEGIES",
    "Beam",
    "Exhaustive",
    "Genetic",
    "Greedy",
    "HQ",
    "default_sizes",
    "prune",
    "resolve_sizes",
    "select",
]

ProgressFn = Callable[[int, int], None]

#: ``search="auto"`` scores every team exhaustively up to this many teams, else runs beam search.
AUTO_EXHAUSTIVE_LIMIT = 1 << 18

#: Largest default team size: larger teams rarely pay for their cost in practice.
DEFAULT_MAX_SIZE = 5


def default_sizes(n_models: int) -> tuple[int, int]:
    """The default team sizes of a pool of ``n_models``: ``2`` to ``min(5, n_models)``.

    Example:
        >>> default_sizes(4), default_sizes(29)
        ((2, 4), (2, 5))
    """
    if n_models < 2:
        raise InputError(f"sizes: a pool needs at least 2 models, got {n_models}")
    return (2, min(DEFAULT_MAX_SIZE, n_models))


def resolve_sizes(sizes: Any, n_models: int) -> tuple[int, ...]:
    """Team sizes as a sorted tuple; ``None`` means :func:`default_sizes`.

    A size error names the pool size and suggests a valid range.

    Example:
        >>> resolve_sizes(None, 4), resolve_sizes("2-3", 4)
        ((2, 3, 4), (2, 3))
        >>> resolve_sizes("2-6", 4)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ensembles.util.InputError: sizes: ...; use sizes within 2-4 (the default is 2-4)
    """
    default = default_sizes(n_models)
    if sizes is None:
        return tuple(range(default[0], default[1] + 1))
    try:
        return parse_sizes(sizes, n_models)
    except InputError as exc:
        text = str(exc)
        hint = f"use sizes within 2-{n_models} (the default is {default[0]}-{default[1]})"
        if hint in text:
            raise
        raise InputError(f"{text.rstrip('.')}; {hint}") from None


# ---------------------------------------------------------------------------------- strategies
@dataclasses.dataclass(frozen=True)
class Exhaustive:
    """Score every team of the requested sizes exactly.

    Args:
        scan: metric-only ranking: ``"auto"``, ``"chunked"`` (batched closed forms) or
            ``"gray"`` (Gray-code incremental scan, sharded over ``devices``).
        max_teams: refuse requests above this many teams (``None``: no limit).
        chunk_size: teams per jitted batch of the chunked scan (default: ~32 MiB per batch).
        devices: devices of the Gray scan (default: all local devices, a power of two).
        checkpoint: metric-only ranking: file to save progress to; resumed when it matches.
        checkpoint_every: seconds between checkpoint writes.

    Example:
        >>> Exhaustive().name
        'exhaustive'
    """

    scan: str = "auto"
    max_teams: int | None = DEFAULT_MAX_TEAMS
    chunk_size: int | None = None
    devices: Any = None
    checkpoint: str | os.PathLike[str] | None = None
    checkpoint_every: float = 5.0

    name = "exhaustive"

    def run(self, bundle, objective, sizes, top_k, progress) -> Selection:
        """Run on ``bundle``; see :func:`select`."""
        if isinstance(objective, str) and objective == "pareto":
            raise AssertionError("pareto is handled by select()")
        if objective.metric_only:
            return exhaustive_scan(
                bundle,
                metric=objective.metric,
                sizes=sizes,
                top_k=top_k,
                max_teams=self.max_teams,
                chunk_size=self.chunk_size,
                progress=progress,
                scan=self.scan,
                devices=self.devices,
                checkpoint=self.checkpoint,
                checkpoint_every=self.checkpoint_every,
            )
        if self.checkpoint is not None:
            raise InputError("checkpoint: only scans ranked by a metric alone are resumable")
        return exhaustive_objective(
            bundle,
            objective=objective,
            sizes=sizes,
            top_k=top_k,
            max_teams=self.max_teams,
            progress=progress,
        )


@dataclasses.dataclass(frozen=True)
class Greedy:
    """Forward selection: the best pair, then the best member to add, one at a time.

    Example:
        >>> Greedy().name
        'greedy'
    """

    name = "greedy"

    def run(self, bundle, objective, sizes, top_k, progress) -> Selection:
        """Run on ``bundle``; see :func:`select`."""
        return greedy(bundle, objective=objective, sizes=sizes, top_k=top_k)


@dataclasses.dataclass(frozen=True)
class Beam:
    """Beam search: keep the ``width`` best teams of each size and extend them by one member.

    Example:
        >>> Beam(width=8).width
        8
    """

    width: int = 16

    name = "beam"

    def run(self, bundle, objective, sizes, top_k, progress) -> Selection:
        """Run on ``bundle``; see :func:`select`."""
        return beam(bundle, objective=objective, sizes=sizes, top_k=top_k, beam_width=self.width)


@dataclasses.dataclass(frozen=True)
class Genetic:
    """FusionShot's genetic algorithm over team bitmasks, seeded and memoised.

    Args:
        seed: seed of the :func:`jax.random.key`.
        population: chromosomes per generation.
        generations: generation cap.
        mutation_rate: bit-flip probability per gene (``None``: ``1/M``; 0 as FusionShot).
        parents, elitism, saturate, init: see :func:`focal.compat.genetic_search`.

    Example:
        >>> Genetic(seed=3).seed
        3
    """

    seed: int = 0
    population: int = 100
    generations: int = 1000
    mutation_rate: float | None = None
    parents: int | None = None
    elitism: int = 1
    saturate: int | None = 100
    init: str = "auto"

    name = "ga"

    def run(self, bundle, objective, sizes, top_k, progress) -> Selection:
        """Run on ``bundle``; see :func:`select`."""
        return genetic(
            bundle,
            objective=objective,
            sizes=sizes,
            top_k=top_k,
            seed=self.seed,
            population=self.population,
            generations=self.generations,
            mutation_rate=self.mutation_rate,
            parents=self.parents,
            elitism=self.elitism,
            saturate=self.saturate,
            init=self.init,
            progress=progress,
        )


@dataclasses.dataclass(frozen=True)
class HQ:
    """HQ-Ensemble's hierarchical pruning; the teams it keeps are ranked by the objective.

    Args:
        prune_rate: fraction of teams pruned at each level.
        variant: ``"rate"`` or ``"mean"`` thresholding.
        seed: seed of the pipeline's random choices.
        faithful: reproduce the published code's conventions.

    Example:
        >>> HQ().variant
        'rate'
    """

    prune_rate: float = 0.1
    variant: str = "rate"
    seed: int = 0
    faithful: bool = False

    name = "hq"

    def run(self, bundle, objective, sizes, top_k, progress) -> Selection:
        """Run on ``bundle``; see :func:`select`."""
        from ._hq import hq_search

        return hq_search(
            bundle,
            objective=objective,
            sizes=sizes,
            top_k=top_k,
            prune_rate=self.prune_rate,
            variant=self.variant,
            seed=self.seed,
            faithful=self.faithful,
        )


#: Strategies by name (the command line's ``--search``).
STRATEGIES: dict[str, type] = {
    "exhaustive": Exhaustive,
    "greedy": Greedy,
    "beam": Beam,
    "ga": Genetic,
    "hq": HQ,
}


def _strategy(search: Any, n_teams: int, obj: Objective | str) -> Any:
    if isinstance(search, str):
        if search == "auto":
            # A metric-only ranking streams in bounded memory; an objective needs every
            # team's accuracy, so large requests go to beam search.
            streaming = isinstance(obj, str) or obj.metric_only
            limit = DEFAULT_MAX_TEAMS if streaming else AUTO_EXHAUSTIVE_LIMIT
            return Exhaustive() if n_teams <= limit else Beam()
        if search not in STRATEGIES:
            raise InputError(
                f"search: unknown strategy {search!r}; choose from auto, {', '.join(STRATEGIES)}"
            )
        return STRATEGIES[search]()
    if not hasattr(search, "run"):
        raise TypeError(f"search: expected a strategy object or a name, got {search!r}")
    return search


def _objective(objective: Any) -> Objective | str:
    if objective is None:
        return Objective()
    if isinstance(objective, Objective):
        return objective
    if isinstance(objective, str):
        if objective == "pareto":
            return "pareto"
        if objective == "accuracy":
            return Objective(w_div=0.0, w_acc=1.0)
        if objective in METRICS:
            return Objective.diversity(objective)
        raise InputError(
            f"objective: unknown name {objective!r}; give a focal.Objective, 'accuracy', "
            f"'pareto', or a metric name ({', '.join(METRICS)})"
        )
    raise TypeError(f"objective: expected a focal.Objective or a name, got {objective!r}")


def select(
    bundle: Bundle,
    *,
    objective: Objective | str | None = None,
    sizes: Any = None,
    top_k: int = 10,
    search: Any = "auto",
    metric: str = "focal",
    progress: ProgressFn | None = None,
) -> Selection:
    """Choose the ``top_k`` best teams of a pool.

    Args:
        bundle: the cached outputs of the rows to choose on (select a split first; see
            :func:`ensembles.ensure_splits` and :func:`focal.recommend`).
        objective: what to maximise: an :class:`Objective` (default ``Objective()``:
            ``0.2·focal + 0.8·plurality accuracy``), a metric name (rank by that diversity
            metric alone, in its direction), ``"accuracy"`` (plurality accuracy alone), or
            ``"pareto"`` (the Pareto front of ``metric``
            and plurality accuracy, most accurate first; exhaustive only).
        sizes: team sizes: an int, ``(lo, hi)``, ``"2-5"``, an iterable, or ``None`` for
            :func:`default_sizes` (2 to min(5, M)).
        top_k: number of teams returned.
        search: a strategy object (:class:`Exhaustive`, :class:`Greedy`, :class:`Beam`,
            :class:`Genetic`, :class:`HQ`), a strategy name, or ``"auto"``.
        metric: the diversity metric of ``objective="pareto"``.
        progress: optional callback ``progress(done, total)``.

    Returns:
        A :class:`Selection`, best team first.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
        ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
        >>> sel = select(b, objective="focal", sizes=2, top_k=2)
        >>> [t.members for t in sel.teams], sel.strategy
        ([('a', 'b'), ('a', 'c')], 'exhaustive')
        >>> select(b, search=Beam(width=2), top_k=1).best.members
        ('a', 'b')
    """
    if not isinstance(bundle, Bundle):
        raise TypeError(f"bundle: expected an ensembles.Bundle, got {type(bundle).__name__}")
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise InputError(f"top-k: must be a positive integer, got {top_k!r}")
    obj = _objective(objective)
    size_tuple = resolve_sizes(sizes, bundle.n_models)
    pareto = isinstance(obj, str)
    strategy = _strategy(search, count_teams(bundle.n_models, size_tuple), obj)
    start = time.perf_counter()
    if pareto:
        if not isinstance(strategy, Exhaustive):
            raise InputError("objective: the Pareto front needs the exhaustive strategy")
        metric_spec(metric)
        result = pareto_prune(
            bundle,
            metric=metric,
            sizes=size_tuple,
            top_k=int(top_k),
            max_teams=strategy.max_teams,
            progress=progress,
        )
    else:
        result = strategy.run(bundle, obj, size_tuple, int(top_k), progress)
    if not result.seconds:
        result = dataclasses.replace(result, seconds=time.perf_counter() - start)
    return result


def prune(
    bundle: Bundle,
    *,
    metric: str = "focal",
    sizes: Any = None,
    top_k: int = 10,
    search: Any = "auto",
    progress: ProgressFn | None = None,
) -> Selection:
    """The ``top_k`` most diverse teams by ``metric`` alone: ``select(objective=metric)``.

    Diversity alone does not make a team accurate; to choose a team to use, see
    :func:`focal.recommend`.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
        ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
        >>> prune(b, sizes=2, top_k=1).best.members
        ('a', 'b')
    """
    metric_spec(metric)
    return select(
        bundle, objective=metric, sizes=sizes, top_k=top_k, search=search, progress=progress
    )
