"""Search for good teams when exhaustive enumeration is too large (docs/selection.md).

Every method here maximises an :class:`focal.Objective` (default ``0.2·focal + 0.8·plurality
accuracy``) over teams whose size lies in a requested set, and returns a
:class:`Selection` with the top-K **distinct** teams it evaluated:

=================  ==========================================================================
``exhaustive``     every team of the sizes, exactly (:func:`exhaustive_objective`); the ground
                   truth, refused above :data:`focal.DEFAULT_MAX_TEAMS` teams
``greedy``         forward selection from the best pair, one member at a time
                   (:func:`greedy`)
``beam``           the same with a beam of the ``beam_width`` best teams per size (:func:`beam`)
``ga``             FusionShot's genetic algorithm, seeded and memoised (:func:`genetic`,
                   :class:`GeneticSearch`)
``hq``             HQ-Ensemble's hierarchical pruning ranked by the objective
                   (:func:`focal.search.hq_search`)
=================  ==========================================================================

Greedy and beam search extend teams with O(M²) incremental updates of the moment statistics,
batched over every (team, new member) pair at once::

    A1 ← A1 + g[:, j]          Q ← Q + 2·(X[:, j, :]·s) + X[:, j, j]

for each quadratic statistic ``Q = sᵀ X_w s`` of the metric (``X = T`` for focal diversity).
Accuracy goes through :func:`ensembles.team_accuracy` with the objective's combiner. Every
method memoises fitness by team bitmask on the host, so no team is scored twice.

Everything is deterministic: the GA takes a seed and splits a :func:`jax.random.key` per
generation; ties in fitness (equal to 10 decimals) go to the smaller team, then to canonical
order (docs/selection.md).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ensembles import Bundle
from ensembles.util import InputError

from ._metrics import (
    finish,
    metric_spec,
    prepare_metric,
    quadratic_tensors,
    reduce_members,
    team_statistics,
    team_values_jit,
)
from ._objective import Objective
from ._scoring import DEFAULT_MAX_TEAMS, moments_of, score_all
from ._teams import binomial_table, parse_sizes, rank_teams, unrank_teams
from ._types import Selection, Team, make_teams
from ._votes import masks_vote_accuracy, team_vote_accuracies

__all__ = [
    "INVALID_FITNESS",
    "GAState",
    "GeneticSearch",
    "Selection",
    "Team",
    "beam",
    "bitmasks",
    "exhaustive_objective",
    "genetic",
    "greedy",
]

ProgressFn = Callable[[int, int], None]

#: Fitness of a chromosome whose size is below 2 or outside the requested sizes (FusionShot).
INVALID_FITNESS = -99.0


# Smallest batch (rows) sent to a kernel by the memoised evaluator; batches are padded to
# powers of two from here, which bounds the number of compilations.
_MIN_ROWS = 16


# ---------------------------------------------------------------------------------- helpers
def bitmasks(masks: np.ndarray) -> np.ndarray:
    """Integer bitmask of each row of a ``(B, M)`` boolean array (bit m = model m).

    ``uint64`` for ``M ≤ 64``, else an object array of Python ints.

    Example:
        >>> bitmasks(np.array([[1, 0, 1], [0, 1, 1]], dtype=bool)).tolist()
        [5, 6]
    """
    masks = np.asarray(masks, dtype=bool)
    m = masks.shape[1]
    if m <= 64:
        weights = np.left_shift(np.uint64(1), np.arange(m, dtype=np.uint64))
        return (masks.astype(np.uint64) * weights[None, :]).sum(axis=1, dtype=np.uint64)
    packed = np.packbits(masks, axis=1, bitorder="little")
    return np.array([int.from_bytes(row.tobytes(), "little") for row in packed], dtype=object)


def _order(masks: np.ndarray, fitness: np.ndarray) -> np.ndarray:
    """Best-first order: fitness to 10 decimals, then smaller size, then canonical order."""
    if len(masks) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.lexsort((rank_teams(masks), masks.sum(axis=1), -np.round(fitness, 10)))


def _resolve(bundle: Bundle, objective: Objective | None, sizes: Any) -> tuple:
    if not isinstance(bundle, Bundle):
        raise TypeError(f"bundle: expected an ensembles.Bundle, got {type(bundle).__name__}")
    obj = Objective() if objective is None else objective
    if not isinstance(obj, Objective):
        raise TypeError(f"objective: expected a focal.Objective, got {type(obj).__name__}")
    obj.check(bundle)
    return obj, parse_sizes(sizes, bundle.n_models)


def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise InputError(f"{name}: must be a positive integer, got {value!r}")
    return int(value)


def _teams(bundle: Bundle, masks, score, accuracy, fitness) -> tuple[Team, ...]:
    return make_teams(bundle.models, masks, score, accuracy, fitness)


def _selection(strategy: str, bundle: Bundle, obj: Objective, **fields: Any) -> Selection:
    spec = metric_spec(obj.metric)
    return Selection(
        metric=spec.name,
        direction=spec.direction,
        objective=obj.name,
        strategy=strategy,
        n_models=bundle.n_models,
        n_samples=bundle.n_samples,
        **fields,
    )


# ---------------------------------------------------------------------------------- statistics
def _incremental(kind: str) -> bool:
    return kind != "entropy"


@functools.partial(jax.jit, static_argnames=("kind",))
def _update(S, a1, quads, j, arrays, sign, *, kind):
    """Add (``sign = +1``, j ∉ S) or remove (``sign = -1``, j ∈ S) member ``j[b]`` of each team.

    ``S`` is the **old** (B, M) indicator; docs/selection.md:
    ``A1 ← A1 ± g[:, j]``, ``Q ← Q ± 2·(X[:, j, :]·s) + X[:, j, j]``.
    """
    rows = jnp.arange(S.shape[0])
    if a1 is not None:
        a1 = a1 + sign * arrays["g"][:, j].T
    new = []
    for name, q in zip(quadratic_tensors(kind), quads, strict=True):
        X = arrays[name]  # (W, M, M)
        xs = jnp.einsum("wbl,bl->bw", X[:, j, :], S)
        new.append(q + 2.0 * sign * xs + X[:, j, j].T)
    S = S.at[rows, j].set(jnp.where(sign > 0, 1.0, 0.0))
    return S, a1, tuple(new)


@functools.partial(jax.jit, static_argnames=("kind", "focal"))
def _expand(S, a1, quads, arrays, *, kind, focal):
    """Statistics and scores of ``S[b] ∪ {j}`` for every team b and every member j at once.

    Returns ``(scores (B, M), a1 (B, M, W) or None, quads tuple of (B, M, W))``; entries with
    ``j`` already in ``S[b]`` are meaningless (callers mask them). Cost O(B·W·M²).
    """
    b, m = S.shape
    L = jnp.broadcast_to(S.sum(axis=1)[:, None] + 1.0, (b, m)).reshape(-1)
    a1c = None if a1 is None else a1[:, None, :] + arrays["g"].T[None, :, :]
    quads_c = []
    for name, q in zip(quadratic_tensors(kind), quads, strict=True):
        X = arrays[name]
        xs = jnp.einsum("wjl,bl->bjw", X, S)
        diag = jnp.diagonal(X, axis1=1, axis2=2).T  # (M, W): X[w, j, j]
        quads_c.append(q[:, None, :] + 2.0 * xs + diag[None])
    quads_c = tuple(quads_c)
    children = (S[:, None, :] + jnp.eye(m, dtype=S.dtype)[None]).reshape(b * m, m)
    flat_a1 = None if a1c is None else a1c.reshape(b * m, -1)
    values = finish(kind, L, flat_a1, tuple(q.reshape(b * m, -1) for q in quads_c), arrays)
    scores = reduce_members(focal, children, values, arrays["n"]).reshape(b, m)
    return scores, a1c, quads_c


class _Evaluator:
    """Diversity, accuracy and fitness of teams, memoised by bitmask; each team scored once.

    ``evaluate(masks, scores=None)`` looks every row up in the cache and scores the new ones
    in one batched call: the diversity metric from ``scores`` when given (incremental
    statistics), else through the jitted closed forms; accuracy through
    :func:`ensembles.team_accuracy` with the objective's combiner.
    """

    def __init__(self, bundle: Bundle, objective: Objective):
        self.bundle = bundle
        self.objective = objective
        self.spec = metric_spec(objective.metric)
        self.n_models = bundle.n_models
        arrays = prepare_metric(self.spec, moments_of(bundle))
        self.arrays64 = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
        with jax.enable_x64(True):
            self.dev = {k: jnp.asarray(v) for k, v in arrays.items()}
            self.dev64 = {k: jnp.asarray(v) for k, v in self.arrays64.items()}
        self.index: dict[Any, int] = {}
        cap = 1024
        self._masks = np.zeros((cap, self.n_models), dtype=bool)
        self._vals = np.zeros((3, cap))  # score, accuracy, fitness
        self.n = 0  # distinct teams scored

    # -- direct scoring (closed forms of docs/selection.md), padded to powers of two
    def direct_scores(self, masks: np.ndarray) -> np.ndarray:
        out = []
        width = self.n_models * (self.n_models if self.spec.focal else 1)
        if self.spec.kind == "entropy":
            width = max(width, self.bundle.n_samples)
        chunk_max = max(_MIN_ROWS, 1 << max(0, ((1 << 22) // max(width, 1)).bit_length() - 1))
        with jax.enable_x64(True):
            for start in range(0, len(masks), chunk_max):
                block = masks[start : start + chunk_max].astype(np.float64)
                rows = len(block)
                chunk = min(chunk_max, max(_MIN_ROWS, 1 << (rows - 1).bit_length()))
                block = np.pad(block, ((0, chunk - rows), (0, 0)), constant_values=1.0)
                vals = team_values_jit(
                    jnp.asarray(block), self.dev, kind=self.spec.kind, focal=self.spec.focal
                )
                out.append(np.asarray(vals)[:rows])
        return np.concatenate(out) if out else np.zeros(0)

    def accuracy(self, masks: np.ndarray) -> np.ndarray:
        # At least _MIN_ROWS rows per call (padded with the first team): fewer shapes to compile.
        rows = len(masks)
        if rows < _MIN_ROWS:
            masks = np.concatenate([masks, np.repeat(masks[:1], _MIN_ROWS - rows, axis=0)])
        acc = masks_vote_accuracy(self.bundle, masks, combiner=self.objective.combiner)
        return acc[:rows]

    def _grow(self, need: int) -> None:
        cap = len(self._masks)
        if need <= cap:
            return
        while cap < need:
            cap *= 2
        masks = np.zeros((cap, self.n_models), dtype=bool)
        masks[: self.n] = self._masks[: self.n]
        vals = np.zeros((3, cap))
        vals[:, : self.n] = self._vals[:, : self.n]
        self._masks, self._vals = masks, vals

    def lookup(self, masks: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        """Cache slots of the rows, scoring the new teams (every row needs size ≥ 2)."""
        keys = bitmasks(masks).tolist()
        slots = np.empty(len(keys), dtype=np.int64)
        new_rows: list[int] = []
        pending: dict[Any, int] = {}
        for r, key in enumerate(keys):
            slot = self.index.get(key)
            if slot is None:
                slot = pending.get(key)
                if slot is None:
                    slot = self.n + len(new_rows)
                    pending[key] = slot
                    new_rows.append(r)
            slots[r] = slot
        if new_rows:
            rows = np.asarray(new_rows)
            new = np.asarray(masks[rows], dtype=bool)
            sizes = new.sum(axis=1)
            if sizes.min() < 2:
                raise AssertionError("teams of fewer than 2 members are never scored")
            score = (
                self.direct_scores(new)
                if scores is None
                else np.asarray(scores, dtype=np.float64)[rows]
            )
            acc = self.accuracy(new)
            fit = self.objective.fitness(score, acc, sizes, self.n_models)
            self._grow(self.n + len(rows))
            sl = slice(self.n, self.n + len(rows))
            self._masks[sl] = new
            self._vals[:, sl] = np.stack([score, acc, fit])
            self.index.update(pending)
            self.n += len(rows)
        return slots

    def evaluate(self, masks: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        """``(3, B)``: diversity score, accuracy and fitness of each row."""
        slots = self.lookup(masks, scores)  # may grow the buffers: index them afterwards
        return self._vals[:, slots]

    def top(self, sizes: tuple[int, ...], top_k: int) -> tuple[Team, ...]:
        """The best ``top_k`` distinct teams evaluated so far with a size in ``sizes``."""
        masks = self._masks[: self.n]
        vals = self._vals[:, : self.n]
        keep = np.isin(masks.sum(axis=1), sizes)
        masks, vals = masks[keep], vals[:, keep]
        order = _order(masks, vals[2])[:top_k]
        return _teams(self.bundle, masks[order], *vals[:, order])


# ---------------------------------------------------------------------------------- exhaustive
def exhaustive_objective(
    bundle: Bundle,
    *,
    objective: Objective | None = None,
    sizes: Any = (2, 5),
    top_k: int = 10,
    max_teams: int | None = DEFAULT_MAX_TEAMS,
    progress: ProgressFn | None = None,
) -> Selection:
    """The exact top-K teams by an objective: every team of the sizes scored (docs/selection.md).

    The ground truth for the search methods. Diversity comes from :func:`focal.score_all`
    (closed forms), accuracy from :func:`ensembles.team_accuracy` in chunks. Both arrays are
    materialised, so requests above ``max_teams`` teams are refused.

    Args:
        bundle: the cached outputs (the selection split).
        objective: the objective to maximise (default :class:`focal.Objective`:
            ``0.2·focal + 0.8·plurality accuracy``).
        sizes: team sizes: an int, an inclusive ``(lo, hi)`` pair, ``"2-5"``, or an iterable.
        top_k: number of teams returned.
        max_teams: refuse more teams than this (``None``: no limit).
        progress: optional callback ``progress(done, total)`` over the accuracy chunks.

    Returns:
        A :class:`Selection` with ``method="exhaustive"``.

    Raises:
        ValueError: bad sizes or ``top_k``, or more teams than ``max_teams``.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
        ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
        >>> res = exhaustive_objective(b, sizes=(2, 3), top_k=2)
        >>> [(t.members, round(t.fitness, 3)) for t in res.teams]
        [(('a', 'b'), 1.0), (('a', 'c'), 0.667)]
    """
    start = time.perf_counter()
    obj, size_tuple = _resolve(bundle, objective, sizes)
    top_k = _check_positive("top-k", top_k)
    masks, scores = score_all(bundle, metric=obj.metric, sizes=size_tuple, max_teams=max_teams)
    # Every team's vote accuracy through the packed kernel, in the same canonical order.
    acc_masks, accuracy = team_vote_accuracies(
        bundle, size_tuple, combiner=obj.combiner, max_teams=max_teams
    )
    if not np.array_equal(acc_masks, masks):  # pragma: no cover - both enumerate canonically
        raise AssertionError("team order of the accuracy and diversity scans differ")
    if progress is not None:
        progress(len(masks), len(masks))
    fitness = obj.fitness(scores, accuracy, masks.sum(axis=1), bundle.n_models)
    # score_all returns canonical order, so a stable sort on fitness is the tie rule.
    order = np.argsort(-np.round(fitness, 10), kind="stable")[:top_k]
    teams = _teams(bundle, masks[order], scores[order], accuracy[order], fitness[order])
    return _selection(
        "exhaustive",
        bundle,
        obj,
        teams=teams,
        n_evaluated=len(masks),
        seconds=time.perf_counter() - start,
        sizes=size_tuple,
    )


# ---------------------------------------------------------------------------------- greedy / beam
def _all_pairs(m: int) -> np.ndarray:
    n = math.comb(m, 2)
    return unrank_teams(np.arange(n), 2, m, binomial_table(m))


def _beam_search(
    bundle: Bundle, obj: Objective, size_tuple: tuple[int, ...], width: int
) -> tuple[_Evaluator, list[Team], list[float]]:
    """Beam search from the ``width`` best pairs up to the largest size; ``width=1`` is greedy.

    At each size every (beam team, non-member) extension is scored through :func:`_expand`,
    duplicates are merged by bitmask, and the ``width`` best distinct teams form the next beam.
    """
    ev = _Evaluator(bundle, obj)
    kind, focal = ev.spec.kind, ev.spec.focal
    m = bundle.n_models
    largest = max(size_tuple)
    pairs = _all_pairs(m)
    vals = ev.evaluate(pairs)
    sel = _order(pairs, vals[2])[:width]
    beam_masks = pairs[sel]
    trajectory = [_teams(bundle, beam_masks[:1], *vals[:, sel[:1]])[0]]
    best_so_far = float(vals[2, sel[0]])
    history = [best_so_far]
    with jax.enable_x64(True):
        if _incremental(kind):
            S = jnp.asarray(beam_masks, dtype=jnp.float64)
            a1, quads = team_statistics(kind, S, ev.dev64)
        for _size in range(3, largest + 1):
            if _incremental(kind):
                scores, a1c, quads_c = _expand(S, a1, quads, ev.dev64, kind=kind, focal=focal)
                scores = np.asarray(scores)
            ii, jj = np.nonzero(~beam_masks)  # row-major: best beam team first, then j
            cand = beam_masks[ii].copy()
            cand[np.arange(len(ii)), jj] = True
            _, first = np.unique(bitmasks(cand), return_index=True)
            first = np.sort(first)
            ii, jj, cand = ii[first], jj[first], cand[first]
            vals = ev.evaluate(cand, scores[ii, jj] if _incremental(kind) else None)
            sel = _order(cand, vals[2])[:width]
            beam_masks = cand[sel]
            if _incremental(kind):
                pick_i, pick_j = jnp.asarray(ii[sel]), jnp.asarray(jj[sel])
                S = jnp.asarray(beam_masks, dtype=jnp.float64)
                a1 = None if a1c is None else a1c[pick_i, pick_j]
                quads = tuple(q[pick_i, pick_j] for q in quads_c)
            trajectory.append(_teams(bundle, beam_masks[:1], *vals[:, sel[:1]])[0])
            best_so_far = max(best_so_far, float(vals[2, sel[0]]))
            history.append(best_so_far)
    return ev, trajectory, history


def _beam_result(method, bundle, obj, size_tuple, top_k, width, start) -> Selection:
    """Run :func:`_beam_search` with ``width`` and package the result (greedy: width 1)."""
    ev, trajectory, history = _beam_search(bundle, obj, size_tuple, width)
    return _selection(
        method,
        bundle,
        obj,
        teams=ev.top(size_tuple, top_k),
        n_evaluated=ev.n,
        seconds=time.perf_counter() - start,
        sizes=size_tuple,
        trajectory=tuple(trajectory),
        history=tuple(history),
        params={} if method == "greedy" else {"beam_width": width},
    )


def greedy(
    bundle: Bundle,
    *,
    objective: Objective | None = None,
    sizes: Any = (2, 6),
    top_k: int = 10,
) -> Selection:
    """Greedy forward selection by an objective (docs/selection.md).

    Starts from the best pair (all pairs scored), then repeatedly adds the member whose
    addition gives the highest fitness (even if lower than the current one) until the largest
    requested size. Candidates are scored with O(M²) incremental statistics, batched over all
    candidate members. The whole trajectory is recorded, and the result holds the best
    distinct teams **seen** (every pair and every candidate of a requested size), so the best
    team is the best along the trajectory, not merely the last one. Sizes outside ``sizes``
    are passed through but never returned.

    Args:
        bundle: the cached outputs (the selection split).
        objective: the objective (default ``Objective()``: ``0.2·focal + 0.8·plurality acc``).
        sizes: team sizes to return (an int, ``(lo, hi)``, ``"2-6"``, or an iterable).
        top_k: number of teams returned.

    Returns:
        A :class:`Selection`; ``trajectory`` holds the team of every size 2..max(sizes).

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c", "d"], labels=[0] * 4,
        ...     preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1]])
        >>> res = greedy(b, sizes=(2, 4), top_k=2)
        >>> [t.members for t in res.trajectory]
        [('a', 'b'), ('a', 'b', 'd'), ('a', 'b', 'c', 'd')]
        >>> res.teams[0].members
        ('a', 'b')
    """
    start = time.perf_counter()
    obj, size_tuple = _resolve(bundle, objective, sizes)
    top_k = _check_positive("top-k", top_k)
    return _beam_result("greedy", bundle, obj, size_tuple, top_k, 1, start)


def beam(
    bundle: Bundle,
    *,
    objective: Objective | None = None,
    sizes: Any = (2, 6),
    beam_width: int = 16,
    top_k: int = 10,
) -> Selection:
    """Beam search by an objective (docs/selection.md).

    Keeps the ``beam_width`` best distinct teams of each size (deduplicated by bitmask): the
    best pairs first, then every extension of every beam team by one member, scored with
    batched O(M²) incremental statistics. With ``beam_width=1`` this is :func:`greedy`; with
    ``beam_width`` at least the number of teams of every size it is exhaustive.

    Args:
        bundle: the cached outputs (the selection split).
        objective: the objective (default ``Objective()``: ``0.2·focal + 0.8·plurality acc``).
        sizes: team sizes to return (an int, ``(lo, hi)``, ``"2-6"``, or an iterable).
        beam_width: teams kept per size.
        top_k: number of teams returned.

    Returns:
        A :class:`Selection` with the best distinct teams evaluated; ``trajectory`` holds
        the best team of each size's beam.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c", "d"], labels=[0] * 4,
        ...     preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1]])
        >>> res = beam(b, sizes=(2, 3), beam_width=3, top_k=2)
        >>> [t.members for t in res.teams], res.n_evaluated
        ([('a', 'b'), ('a', 'd')], 10)
    """
    start = time.perf_counter()
    obj, size_tuple = _resolve(bundle, objective, sizes)
    top_k = _check_positive("top-k", top_k)
    width = _check_positive("beam-width", beam_width)
    return _beam_result("beam", bundle, obj, size_tuple, top_k, width, start)


# ---------------------------------------------------------------------------------- genetic
@dataclasses.dataclass(frozen=True)
class GAState:
    """State of :class:`GeneticSearch` between generations (a JAX pytree).

    Attributes:
        population: ``(population, n_models)`` boolean chromosomes; after :meth:`tell`,
            sorted best first (fitness to 10 decimals, then size, then canonical order).
        fitness: ``(population,)`` float64 fitness in the same order (``-inf`` before the
            first :meth:`GeneticSearch.tell`).
        best_fitness: best fitness seen (rounded to 10 decimals).
        generation: number of :meth:`GeneticSearch.tell` calls so far.
        stall: generations since ``best_fitness`` last improved.
    """

    population: jax.Array
    fitness: jax.Array
    best_fitness: jax.Array
    generation: jax.Array
    stall: jax.Array


jax.tree_util.register_dataclass(
    GAState,
    data_fields=["population", "fitness", "best_fitness", "generation", "stall"],
    meta_fields=[],
)


@dataclasses.dataclass(frozen=True)
class GeneticSearch:
    """FusionShot's genetic algorithm as an ``init / ask / tell`` strategy (docs/selection.md).

    Binary chromosomes of length M (gene m = 1: model m is in the team). Each generation keeps
    the ``elitism`` fittest chromosomes and breeds ``population − elitism`` offspring from the
    ``parents`` fittest (steady-state selection): offspring k copies parent ``k mod parents``
    and takes the slice ``[a, a + ⌊M/2⌋)`` (clipped at M) from parent ``(k+1) mod parents``,
    with ``a`` uniform in ``{0, …, ⌈M/2 + 1⌉ − 1}`` (pygad's two-point crossover); then every
    gene flips independently with probability ``mutation_rate``.

    The strategy is pure and hashable: methods are jitted with the strategy static, and the
    fitness is computed outside (:func:`genetic` memoises it by bitmask).

    Args:
        n_models: chromosome length M.
        population: chromosomes per generation.
        parents: number of fittest chromosomes that breed.
        mutation_rate: bit-flip probability per gene (0: FusionShot's faithful setting).
        elitism: fittest chromosomes copied unchanged into the next generation.
        init: ``"uniform"`` (each gene uniform in {0, 1}, FusionShot) or ``"sizes"`` (a size
            drawn uniformly from ``sizes``, then a uniform team of that size).
        sizes: team sizes for ``init="sizes"``.

    Example:
        >>> import jax, numpy as np
        >>> ga = GeneticSearch(n_models=6, population=8, parents=4, mutation_rate=0.2)
        >>> state = ga.init(jax.random.key(0))
        >>> pop = np.asarray(state.population)
        >>> state = ga.tell(state, pop, pop.sum(axis=1).astype(float))  # fitness: team size
        >>> bool(np.asarray(state.population).sum(axis=1)[0] == pop.sum(axis=1).max())
        True
        >>> ga.ask(state, jax.random.key(1)).shape
        (8, 6)
    """

    n_models: int
    population: int = 100
    parents: int = 50
    mutation_rate: float = 0.0
    elitism: int = 1
    init_mode: str = "uniform"
    sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("n_models", "population", "parents"):
            _check_positive(name, getattr(self, name))
        if self.parents > self.population:
            raise InputError(
                f"parents: at most the population ({self.population}), got {self.parents}"
            )
        if isinstance(self.elitism, bool) or not 0 <= int(self.elitism) < self.population:
            raise InputError(
                f"elitism: must lie in [0, {self.population - 1}], got {self.elitism!r}"
            )
        if not (math.isfinite(self.mutation_rate) and 0.0 <= self.mutation_rate <= 1.0):
            raise InputError(f"mutation-rate: must lie in [0, 1], got {self.mutation_rate}")
        if self.init_mode not in ("uniform", "sizes"):
            raise InputError(f"init: unknown mode {self.init_mode!r}; use uniform or sizes")
        if self.init_mode == "sizes" and not self.sizes:
            raise InputError("init: mode 'sizes' needs sizes")

    def init(self, key: jax.Array) -> GAState:
        """The initial state; its ``population`` must be evaluated and told first."""
        sizes = jnp.asarray(self.sizes or (0,), dtype=jnp.int32)
        with jax.enable_x64(True):
            return _ga_init(
                key, sizes, population=self.population, n_models=self.n_models,
                mode=self.init_mode,
            )  # fmt: skip

    def ask(self, state: GAState, key: jax.Array) -> jax.Array:
        """The next population ``(population, n_models)`` bred from a told state."""
        with jax.enable_x64(True):
            rate = jnp.asarray(self.mutation_rate, dtype=jnp.float64)
            return _ga_ask(state, key, rate, parents=self.parents, elitism=self.elitism)

    def tell(self, state: GAState, population: Any, fitness: Any) -> GAState:
        """Sort an evaluated population best first and update the best-fitness bookkeeping."""
        with jax.enable_x64(True):
            return _ga_tell(
                state,
                jnp.asarray(population, dtype=bool),
                jnp.asarray(fitness, dtype=jnp.float64),
            )


# Jitted kernels of GeneticSearch. Only what fixes shapes is static (so the mutation rate and
# the sizes do not trigger recompilation); the strategy's methods pass the rest as arrays.
@functools.partial(jax.jit, static_argnames=("population", "n_models", "mode"))
def _ga_init(key, sizes, *, population, n_models, mode) -> GAState:
    p, m = population, n_models
    if mode == "uniform":
        pop = jax.random.bernoulli(key, 0.5, (p, m))
    else:
        k_size, k_perm = jax.random.split(key)
        size = sizes[jax.random.randint(k_size, (p,), 0, sizes.shape[0])]
        order = jnp.argsort(jnp.argsort(jax.random.uniform(k_perm, (p, m)), axis=1), axis=1)
        pop = order < size[:, None]
    return GAState(
        population=pop,
        fitness=jnp.full(p, -jnp.inf, dtype=jnp.float64),
        best_fitness=jnp.asarray(-jnp.inf, dtype=jnp.float64),
        generation=jnp.asarray(0, dtype=jnp.int32),
        stall=jnp.asarray(0, dtype=jnp.int32),
    )


@functools.partial(jax.jit, static_argnames=("parents", "elitism"))
def _ga_ask(state: GAState, key, rate, *, parents, elitism) -> jax.Array:
    p, m = state.population.shape
    n_off = p - elitism
    k_cross, k_mut = jax.random.split(key)
    chosen = state.population[:parents]
    k = jnp.arange(n_off)
    first = chosen[k % parents]
    second = chosen[(k + 1) % parents]
    a = jax.random.randint(k_cross, (n_off, 1), 0, math.ceil(m / 2 + 1))
    pos = jnp.arange(m)[None, :]
    children = jnp.where((pos >= a) & (pos < a + m // 2), second, first)
    flips = jax.random.bernoulli(k_mut, rate, (n_off, m))
    return jnp.concatenate([state.population[:elitism], children ^ flips], axis=0)


@jax.jit
def _ga_tell(state: GAState, population, fitness) -> GAState:
    fit = jnp.round(fitness, 10)
    size = population.sum(axis=1)
    # lexsort: last key is primary. Canonical order within a size: at the first differing
    # gene, the team holding it comes first.
    m = population.shape[1]
    genes = [-population[:, i].astype(jnp.int32) for i in range(m - 1, -1, -1)]
    order = jnp.lexsort((*genes, size, -fit))
    best = fit[order[0]]
    improved = best > state.best_fitness
    return GAState(
        population=population[order],
        fitness=fitness[order],
        best_fitness=jnp.maximum(best, state.best_fitness),
        generation=state.generation + 1,
        stall=jnp.where(improved, 0, state.stall + 1),
    )


def genetic(
    bundle: Bundle,
    *,
    objective: Objective | None = None,
    sizes: Any = None,
    population: int = 100,
    parents: int | None = None,
    generations: int = 1000,
    mutation_rate: float | None = None,
    elitism: int = 1,
    saturate: int | None = 100,
    seed: int = 0,
    top_k: int = 10,
    init: str = "auto",
    progress: ProgressFn | None = None,
) -> Selection:
    """FusionShot's genetic algorithm, seeded and memoised (docs/selection.md, sftekin/fusionshot).

    Fitness is the objective's (FusionShot: ``w_div·focal + w_acc·plurality acc``); a
    chromosome with fewer than 2 genes set, or a size outside ``sizes``, gets ``-99``. The
    loop runs :class:`GeneticSearch` with a :func:`jax.random.key` split per generation (same
    seed → same result), evaluates each population in one batched call, and memoises fitness
    by bitmask on the host, so no team is scored twice. Selection ties go to the smaller team,
    then canonical order. It stops when the best fitness has not improved for ``saturate``
    generations (``None``: never) or after ``generations`` generations, and returns the top-K
    **distinct** teams among every chromosome evaluated, not only the last population.

    Faithful FusionShot run: ``mutation_rate=0``, ``init="uniform"``, ``sizes=(2, M)``, with
    its objective (``Objective(w_div=0.6, w_acc=0.4)``, or ``0.5/0.5`` with
    ``size_penalty=0.1``). For M up to about 20, exhaustive search
    (:func:`exhaustive_objective`) is exact and cheaper: 100 × 1000 evaluations exceed
    ``2^M`` for M ≤ 16.

    Args:
        bundle: the cached outputs (the selection split; FusionShot used ``val``).
        objective: the fitness (default ``Objective()``: ``0.2·focal + 0.8·plurality acc``).
        sizes: allowed team sizes (default all, ``(2, M)``).
        population: chromosomes per generation.
        parents: fittest chromosomes that breed each generation (steady-state selection);
            ``None`` → ``population // 2`` (FusionShot: 50 of 100).
        generations: generation cap (the initial population is generation 0).
        mutation_rate: bit-flip probability per gene; ``None`` → ``1/M``; 0 = faithful.
        elitism: fittest chromosomes carried over unchanged.
        saturate: stop after this many generations without improvement (``None``: never).
        seed: seed of the :func:`jax.random.key`.
        top_k: number of distinct teams returned.
        init: ``"uniform"`` (each gene uniform, FusionShot), ``"sizes"`` (a uniform size of
            ``sizes`` then a uniform team of it), or ``"auto"``: uniform when ``sizes``
            contains ``M // 2`` (where uniform chromosomes concentrate), else sizes.
        progress: optional callback ``progress(generation, generations)``.

    Returns:
        A :class:`Selection`; ``history`` holds the best fitness after each generation,
        ``params`` the settings and ``generations_run``.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c", "d"], labels=[0] * 4,
        ...     preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1]])
        >>> res = genetic(b, population=10, parents=5, generations=20, seed=0, top_k=2)
        >>> [t.members for t in res.teams]
        [('a', 'b'), ('a', 'd')]
    """
    start = time.perf_counter()
    m = bundle.n_models if isinstance(bundle, Bundle) else 0
    obj, size_tuple = _resolve(bundle, objective, (2, m) if sizes is None else sizes)
    top_k = _check_positive("top-k", top_k)
    generations = int(generations)
    if generations < 0:
        raise InputError(f"generations: must be at least 0, got {generations}")
    if saturate is not None:
        saturate = _check_positive("saturate", saturate)
    rate = 1.0 / m if mutation_rate is None else float(mutation_rate)
    if init == "auto":
        init = "uniform" if m // 2 in size_tuple else "sizes"
    ga = GeneticSearch(
        n_models=m,
        population=_check_positive("population", population),
        parents=_check_positive("parents", max(1, population // 2) if parents is None else parents),
        mutation_rate=rate,
        elitism=elitism,
        init_mode=init,
        sizes=size_tuple,
    )
    ev = _Evaluator(bundle, obj)
    valid_size = np.zeros(m + 1, dtype=bool)
    valid_size[list(size_tuple)] = True

    def fitness_of(pop: np.ndarray) -> np.ndarray:
        fit = np.full(len(pop), INVALID_FITNESS)
        ok = valid_size[pop.sum(axis=1)]
        if ok.any():
            fit[ok] = ev.evaluate(pop[ok])[2]
        return fit

    key = jax.random.key(int(seed))
    key, sub = jax.random.split(key)
    state = ga.init(sub)
    pop = np.asarray(state.population)
    state = ga.tell(state, pop, fitness_of(pop))
    history = [float(state.best_fitness)]
    n_proposed = len(pop)
    done = 0
    for g in range(1, generations + 1):
        if saturate is not None and int(state.stall) >= saturate:
            break
        key, sub = jax.random.split(key)
        pop = np.asarray(ga.ask(state, sub))
        state = ga.tell(state, pop, fitness_of(pop))
        history.append(float(state.best_fitness))
        n_proposed += len(pop)
        done = g
        if progress is not None:
            progress(g, generations)
    return _selection(
        "ga",
        bundle,
        obj,
        teams=ev.top(size_tuple, top_k),
        n_evaluated=ev.n,
        seconds=time.perf_counter() - start,
        sizes=size_tuple,
        history=tuple(history),
        params={
            "seed": int(seed),
            "population": ga.population,
            "parents": ga.parents,
            "generations": generations,
            "generations_run": done,
            "mutation_rate": rate,
            "elitism": ga.elitism,
            "saturate": saturate,
            "init": init,
            "chromosomes_evaluated": n_proposed,
        },
    )
