"""Public scoring API: score given teams, score every team, and exhaustive top-K pruning."""

from __future__ import annotations

import functools
import math
import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import ensembles
from ensembles import Bundle
from ensembles.util import InputError

from ._checkpoint import ScanCheckpoint, scan_fingerprint
from ._gray import GRAY_KINDS, GrayPlan, gray_groups
from ._metrics import METRICS, metric_spec, prepare_metric, team_values, team_values_jit
from ._moments import Moments
from ._teams import (
    DEFAULT_MAX_TEAMS,
    as_masks,
    binomial_table,
    count_teams,
    parse_sizes,
    unrank_teams,
    unrank_teams_jax,
)
from ._topk import TopK, ranking_key
from ._types import Selection, make_teams
from ._votes import masks_vote_accuracy

__all__ = [
    "DEFAULT_MAX_TEAMS",
    "exhaustive_scan",
    "pareto_front",
    "pareto_prune",
    "score_all",
    "score_team",
    "score_teams",
    "vote_accuracy",
]


# Target elements of the largest per-chunk intermediate (float64): 2^22 = 32 MiB.
_CHUNK_ELEMENTS = 1 << 22

ProgressFn = Callable[[int, int], None]

_MOMENTS_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def moments_of(bundle: Bundle | Moments) -> Moments:
    """The (cached) :class:`Moments` of a bundle; a ``Moments`` passes through."""
    if isinstance(bundle, Moments):
        return bundle
    if bundle not in _MOMENTS_CACHE:
        _MOMENTS_CACHE[bundle] = Moments.from_bundle(bundle)
    return _MOMENTS_CACHE[bundle]


def _chunk_size(spec_kind: str, focal: bool, n_models: int, n_samples: int, largest: int) -> int:
    width = (n_models if focal else 1) * n_models
    if spec_kind == "entropy":
        width = max(width, n_samples)
    chunk = max(256, min(1 << 16, _CHUNK_ELEMENTS // max(width, 1)))
    chunk = 1 << (chunk.bit_length() - 1)
    return max(1, min(chunk, 1 << max(0, (largest - 1).bit_length())))


def vote_accuracy(bundle: Bundle, masks: Any, combiner: str = "plurality") -> np.ndarray:
    """Vote accuracy of (B, M) team masks; NaN for an open-ended bundle (no labels to vote on).

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b"], labels=[0, 1], preds=[[0, 1], [0, 0]])
        >>> vote_accuracy(b, [[True, True]]).tolist()  # the 1-1 tie goes to class 0
        [0.5]
    """
    masks = np.asarray(masks, dtype=bool).reshape(-1, bundle.n_models)
    if bundle.is_open_ended:
        return np.full(len(masks), np.nan)
    return masks_vote_accuracy(bundle, masks, combiner=combiner)


def _finite_or_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def score_teams(
    bundle: Bundle | Moments,
    teams: Any,
    *,
    metric: str = "focal",
    models: Sequence[str] | None = None,
) -> np.ndarray:
    """Score a batch of teams with one metric, exactly (float64 closed forms).

    Args:
        bundle: a :class:`ensembles.Bundle` (or precomputed :class:`focal.search.Moments`).
        teams: ``(B, n_models)`` boolean masks, or a sequence of teams given as model names or
            member indices.
        metric: any name of :data:`focal.METRICS`.
        models: model names, needed only when ``bundle`` is a ``Moments`` and teams are names.

    Returns:
        float64 array of shape ``(B,)``; NaN where the metric is undefined (e.g. ``focal``
        of a team whose members are never wrong).

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
        ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
        >>> score_teams(b, [("a", "b"), ("a", "c")]).round(4).tolist()
        [1.0, 0.3333]
    """
    spec = metric_spec(metric)
    mom = moments_of(bundle)
    names = bundle.models if isinstance(bundle, Bundle) else models
    if names is None:
        names = [str(i) for i in range(mom.n_models)]
    masks = as_masks(teams, names)
    sizes = masks.sum(axis=1)
    if masks.shape[0] and sizes.min() < 2:
        raise InputError("team: a team needs at least 2 members")
    if masks.shape[0] == 0:
        return np.zeros(0)
    arrays = prepare_metric(spec, mom)
    chunk = _chunk_size(spec.kind, spec.focal, mom.n_models, mom.n_samples, masks.shape[0])
    out = []
    with jax.enable_x64(True):
        dev_arrays = {k: jnp.asarray(v) for k, v in arrays.items()}
        for start in range(0, masks.shape[0], chunk):
            block = masks[start : start + chunk].astype(np.float64)
            pad = chunk - block.shape[0]
            block = np.pad(block, ((0, pad), (0, 0)), constant_values=1.0)
            vals = team_values_jit(jnp.asarray(block), dev_arrays, kind=spec.kind, focal=spec.focal)
            out.append(np.asarray(vals)[: chunk - pad])
    return np.concatenate(out)


def score_team(bundle: Bundle, team: Sequence[str] | Sequence[int]) -> dict[str, Any]:
    """Every metric of :data:`focal.METRICS` and the combiner accuracies of one team.

    Returns the document of ``focal score --format json`` (docs/cli.md):
    ``{"members": [...], "metrics": {name: float}, "accuracy": {"plurality", "majority",
    "soft"}}``, with NaN as ``None`` and ``soft`` ``None`` when the bundle has no ``probs``.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b"], labels=[0, 0],
        ...                             preds=[[1, 0], [0, 1]])
        >>> score_team(b, ["a", "b"])["metrics"]["focal"]
        1.0
    """
    mask = as_masks([team], bundle.models)
    if mask.sum() < 2:
        raise InputError("team: a team needs at least 2 members")
    members = [m for m, keep in zip(bundle.models, mask[0], strict=True) if keep]
    metrics = {
        name: _finite_or_none(float(score_teams(bundle, mask, metric=name)[0])) for name in METRICS
    }
    accuracy = {
        "plurality": _finite_or_none(float(vote_accuracy(bundle, mask, "plurality")[0])),
        "majority": _finite_or_none(float(vote_accuracy(bundle, mask, "majority")[0])),
        "soft": None
        if bundle.probs is None
        else float(ensembles.team_accuracy(bundle, mask, combiner="soft")[0]),
    }
    return {"members": members, "metrics": metrics, "accuracy": accuracy}


@functools.partial(jax.jit, static_argnames=("kind", "focal", "n_models", "chunk", "k", "sign"))
def _scan_chunk(size, start, count, arrays, binom, *, kind, focal, n_models, chunk, k, sign):
    ranks = start + jnp.arange(chunk, dtype=jnp.int64)
    valid = ranks < count
    S = unrank_teams_jax(jnp.minimum(ranks, count - 1), size, n_models, binom)
    scores = team_values(kind, focal, S.astype(jnp.float64), arrays)
    if k is None:
        return scores, ranks, valid
    key = jnp.where(valid, ranking_key(scores, sign, xp=jnp), -jnp.inf)
    top_keys, top = jax.lax.top_k(key, k)
    # Teams tied with the k-th may straddle the cut: report how many reach it.
    n_at_least = jnp.sum(key >= top_keys[-1])
    return scores[top], ranks[top], valid[top] & (top_keys > -jnp.inf), n_at_least


def _chunk_units(m: int, sizes: tuple[int, ...], chunk: int) -> list[tuple[int, int]]:
    return [(size, start) for size in sizes for start in range(0, math.comb(m, size), chunk)]


def _scan(
    bundle: Bundle | Moments,
    metric: str,
    sizes: tuple[int, ...],
    top_k: int | None,
    chunk_size: int | None,
    *,
    start_unit: int = 0,
    threshold: Callable[[], float] | None = None,
):
    """Yield ``(unit, size, scores, ranks, n_teams)`` per chunk of teams in canonical order.

    With ``top_k`` a chunk yields only the teams that can enter a top-k (its k best, plus
    every team tied with the k-th when ties straddle the cut and reach ``threshold()``).
    """
    spec = metric_spec(metric)
    mom = moments_of(bundle)
    m = mom.n_models
    largest = max(math.comb(m, s) for s in sizes)
    chunk = chunk_size or _chunk_size(spec.kind, spec.focal, m, mom.n_samples, largest)
    k = None if top_k is None else min(top_k, chunk)
    arrays = prepare_metric(spec, mom)
    units = _chunk_units(m, sizes, chunk)
    with jax.enable_x64(True):
        dev_arrays = {name: jnp.asarray(v) for name, v in arrays.items()}
        binom = jnp.asarray(binomial_table(m))
        for unit in range(start_unit, len(units)):
            size, start = units[unit]
            count = math.comb(m, size)
            args = (jnp.int64(size), jnp.int64(start), jnp.int64(count), dev_arrays, binom)
            static = dict(kind=spec.kind, focal=spec.focal, n_models=m, chunk=chunk, sign=spec.sign)
            out = _scan_chunk(*args, k=k, **static)
            if k is not None:
                scores, ranks, valid, n_ge = out
                bar = -np.inf if threshold is None else threshold()
                kth = ranking_key(np.asarray(scores)[-1:], spec.sign)[0]
                if int(n_ge) > k and bool(np.asarray(valid)[-1]) and kth >= bar:
                    out = _scan_chunk(*args, k=None, **static)
            scores, ranks, valid = (np.asarray(x) for x in out[:3])
            yield unit, size, scores[valid], ranks[valid], min(chunk, count - start)


def _check_budget(n_teams: int, max_teams: int | None) -> None:
    if max_teams is not None and max_teams < 1:
        raise InputError(f"max-teams: must be at least 1, got {max_teams}")
    if max_teams is not None and n_teams > max_teams:
        raise InputError(
            f"sizes: {n_teams:,} teams exceed the budget of {max_teams:,}; narrow --sizes/--size "
            "or raise --max-teams"
        )


def _use_gray(scan: str, kind: str, n_models: int, n_teams: int) -> bool:
    if scan not in ("auto", "gray", "chunked"):
        raise InputError(f"scan: unknown scan {scan!r}; use auto, gray or chunked")
    if scan == "gray" and kind not in GRAY_KINDS:
        raise InputError(f"scan: the Gray-code scan does not support this metric ({kind})")
    if scan != "auto":
        return scan == "gray"
    # All 2^M subsets are walked: worth it when the request covers a good part of them.
    return kind in GRAY_KINDS and n_models >= 12 and 16 * n_teams >= (1 << n_models)


def exhaustive_scan(
    bundle: Bundle,
    *,
    metric: str = "focal",
    sizes: Any = (2, 5),
    top_k: int = 10,
    max_teams: int | None = DEFAULT_MAX_TEAMS,
    chunk_size: int | None = None,
    progress: ProgressFn | None = None,
    scan: str = "auto",
    devices: Sequence[Any] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: float = 5.0,
) -> Selection:
    """Exhaustive top-K teams by a diversity metric (docs/selection.md).

    Scores every team with a size in ``sizes`` exactly and keeps a running top-K, in memory
    bounded by the chunk size. Two exact scans: ``"chunked"`` evaluates the closed forms for
    batches of teams in canonical order (any metric); ``"gray"`` walks all ``2^M`` subsets in
    Gray-code order with O(M²) incremental updates, sharded over ``devices`` (metrics with
    integer statistics: focal / generalized diversity, KW, disagreement, Fleiss' kappa, and
    their focal variants). ``"auto"`` takes the Gray scan when the request covers at least
    1/16 of all subsets. Both give the same teams and scores.

    Args:
        bundle: the cached outputs.
        metric: a name of :data:`focal.METRICS`; ranking follows its direction.
        sizes: team sizes: an int, an inclusive ``(lo, hi)`` pair, ``"2-5"``, or an iterable.
        top_k: number of teams to return.
        max_teams: refuse requests above this many teams (``None`` for no limit).
        chunk_size: teams per jitted batch of the chunked scan (default: ~32 MiB per batch).
        progress: optional callback ``progress(done, total)``.
        scan: ``"auto"``, ``"chunked"`` or ``"gray"``.
        devices: devices for the Gray scan (default: all local devices, a power of two).
        checkpoint: file to write progress to (atomically, every ``checkpoint_every``
            seconds, at the end and on interrupt); an existing checkpoint of the same scan is
            resumed, one of another scan is refused.
        checkpoint_every: seconds between checkpoint writes.

    Returns:
        A :class:`focal.Selection`. Ties (scores equal to 10 decimals) go to the smaller team,
        then to canonical order; NaN scores rank last.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
        ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
        >>> [t.members for t in exhaustive_scan(b, sizes=2, top_k=2).teams]
        [('a', 'b'), ('a', 'c')]
    """
    spec = metric_spec(metric)
    if int(top_k) < 1:
        raise InputError(f"top-k: must be at least 1, got {top_k}")
    m = bundle.n_models
    size_tuple = parse_sizes(sizes, m)
    n_teams = count_teams(m, size_tuple)
    _check_budget(n_teams, max_teams)
    gray = _use_gray(scan, spec.kind, m, n_teams)
    top = TopK(int(top_k), spec.sign)
    mom = moments_of(bundle)

    n_proc, proc = jax.process_count(), jax.process_index()
    if gray:
        devs = list(devices) if devices is not None else _power_of_two_devices()
        plan = GrayPlan(m, n_devices=len(devs), n_processes=n_proc)
        total, per_unit = plan.n_groups, plan.group_steps * plan.n_blocks
        config = ("gray", plan.block_bits, plan.group_steps)
    else:
        largest = max(math.comb(m, s) for s in size_tuple)
        chunk = chunk_size or _chunk_size(spec.kind, spec.focal, m, mom.n_samples, largest)
        total = len(_chunk_units(m, size_tuple, chunk))
        config = ("chunked", chunk)
    ckpt = None
    start_unit = 0
    if checkpoint is not None:
        if gray and n_proc > 1:  # each process checkpoints its own range of blocks
            checkpoint = f"{os.fspath(checkpoint)}.process{proc}"
        ckpt = ScanCheckpoint(
            checkpoint,
            fingerprint=scan_fingerprint(bundle, metric, size_tuple, int(top_k), config),
            every=checkpoint_every,
        )
        start_unit = ckpt.resume(top)

    if gray:
        visited_total = 1 << m
        arrays = prepare_metric(spec, mom)

        def units():
            with jax.enable_x64(True):
                for group, scores, sizes_, ranks in gray_groups(
                    spec, arrays, plan, size_tuple, int(top_k), devices=devs,
                    process_index=proc, start_group=start_unit, threshold=lambda: top.worst_key,
                ):  # fmt: skip
                    yield group, scores, sizes_, ranks, per_unit
    else:
        visited_total = n_teams

        def units():
            for unit, size, scores, ranks, n in _scan(
                bundle, metric, size_tuple, int(top_k), chunk, start_unit=start_unit,
                threshold=lambda: top.worst_key,
            ):  # fmt: skip
                yield unit, scores, np.full(len(scores), size), ranks, n

    done = 0
    unit = start_unit - 1
    try:
        for unit, scores, sizes_arr, ranks, n in units():
            top.add(scores, sizes_arr, ranks)
            done += n
            if progress is not None:
                progress(done, visited_total)
            if ckpt is not None:
                ckpt.maybe_save(unit + 1, top)
    except KeyboardInterrupt:
        if ckpt is not None:
            ckpt.save(unit + 1, top)
        raise
    if ckpt is not None:
        ckpt.save(total, top)
    if gray and n_proc > 1:
        _gather_processes(top)
    return _result(bundle, spec, size_tuple, n_teams, top)


def _gather_processes(top: TopK) -> None:
    """Merge every process's top-K (multi-host Gray scans; all processes end up equal)."""
    from jax.experimental import multihost_utils

    k = top.k
    pad = k - len(top.scores)
    local = np.stack(
        [
            np.pad(top.scores, (0, pad), constant_values=np.nan),
            np.pad(top.sizes.astype(np.float64), (0, pad), constant_values=-1),
            np.pad(top.ranks.astype(np.float64), (0, pad), constant_values=-1),
        ]
    )
    gathered = np.asarray(multihost_utils.process_allgather(local))  # (processes, 3, k)
    merged = TopK(k, top.sign)
    for scores, sizes, ranks in gathered:
        keep = sizes >= 0
        merged.add(scores[keep], sizes[keep].astype(np.int64), ranks[keep].astype(np.int64))
    top.load(merged.state())


def _power_of_two_devices() -> list:
    devs = jax.local_devices()
    return devs[: 1 << (len(devs).bit_length() - 1)]


def _result(bundle, spec, size_tuple, n_teams, top: TopK) -> Selection:
    masks = _decode(top.sizes, top.ranks, bundle.n_models)
    accuracy = vote_accuracy(bundle, masks, "plurality") if len(masks) else []
    # Re-score the winners through one fixed kernel: scans fuse the final ratio differently
    # (per scan kind and device count), which can move the last bit; reported scores don't.
    scores = score_teams(bundle, masks, metric=spec.name) if len(masks) else top.scores
    return Selection(
        teams=make_teams(bundle.models, masks, scores, accuracy),
        metric=spec.name,
        direction=spec.direction,
        objective=spec.name,
        strategy="exhaustive",
        n_models=bundle.n_models,
        n_samples=bundle.n_samples,
        n_evaluated=n_teams,
        sizes=size_tuple,
    )


def _decode(sizes: np.ndarray, ranks: np.ndarray, n_models: int) -> np.ndarray:
    binom = binomial_table(n_models)
    masks = np.zeros((len(ranks), n_models), dtype=bool)
    for size in np.unique(sizes):
        sel = sizes == size
        masks[sel] = unrank_teams(ranks[sel], int(size), n_models, binom)
    return masks


def score_all(
    bundle: Bundle | Moments,
    *,
    metric: str = "focal",
    sizes: Any = (2, 5),
    max_teams: int | None = DEFAULT_MAX_TEAMS,
    chunk_size: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of every team of the given sizes, in canonical order.

    Returns:
        ``(masks, scores)``: boolean ``(n_teams, n_models)`` and float64 ``(n_teams,)``.
        Refuses (``ValueError``) more than ``max_teams`` teams, since both arrays are
        materialised; use :func:`prune` for a bounded-memory top-K.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0],
        ...                             preds=[[1, 0], [0, 1], [1, 1]])
        >>> masks, scores = score_all(b, sizes=(2, 3))
        >>> masks.shape, scores.round(3).tolist()
        ((4, 3), [1.0, 0.167, 0.167, 0.5])
    """
    mom = moments_of(bundle)
    size_tuple = parse_sizes(sizes, mom.n_models)
    _check_budget(count_teams(mom.n_models, size_tuple), max_teams)
    all_masks, all_scores = [], []
    binom = binomial_table(mom.n_models)
    done, total = 0, count_teams(mom.n_models, size_tuple)
    for _, size, scores, ranks, n in _scan(bundle, metric, size_tuple, None, chunk_size):
        all_masks.append(unrank_teams(ranks, size, mom.n_models, binom))
        all_scores.append(scores)
        done += n
        if progress is not None:
            progress(done, total)
    return np.concatenate(all_masks), np.concatenate(all_scores)


def pareto_prune(
    bundle: Bundle,
    *,
    metric: str = "focal",
    sizes: Any = (2, 5),
    top_k: int | None = None,
    max_teams: int | None = DEFAULT_MAX_TEAMS,
    progress: ProgressFn | None = None,
) -> Selection:
    """Teams on the Pareto front of (diversity, plurality accuracy), most accurate first.

    Every team of the sizes is scored (exactly) and voted; a team is kept when no other team
    is at least as diverse (in the metric's direction) and as accurate, and better in one.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
        ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
        >>> [t.members for t in pareto_prune(b, sizes=(2, 3)).teams]
        [('a', 'b')]
    """
    spec = metric_spec(metric)
    masks, scores = score_all(
        bundle, metric=metric, sizes=sizes, max_teams=max_teams, progress=progress
    )
    if bundle.is_open_ended:
        raise InputError(
            "objective: the Pareto front needs vote accuracy, which an open-ended bundle does not "
            "have; rank by a metric alone"
        )
    accuracy = vote_accuracy(bundle, masks)
    front = pareto_front(spec.sign * scores, accuracy)
    if top_k is not None:
        front = front[: int(top_k)]
    return Selection(
        teams=make_teams(bundle.models, masks[front], scores[front], accuracy[front]),
        metric=spec.name,
        direction=spec.direction,
        objective="pareto",
        strategy="exhaustive",
        n_models=bundle.n_models,
        n_samples=bundle.n_samples,
        n_evaluated=len(masks),
        sizes=parse_sizes(sizes, bundle.n_models),
    )


def pareto_front(diversity: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the teams on the Pareto front of (diversity, accuracy), both maximised.

    A team is on the front when no other team is at least as good on both and better on one.
    Returned in order of decreasing accuracy (ties: higher diversity first, then index).

    Example:
        >>> pareto_front(np.array([0.1, 0.5, 0.3, 0.5]), np.array([0.9, 0.2, 0.8, 0.1])).tolist()
        [0, 2, 1]
    """
    div = np.where(np.isnan(diversity), -np.inf, np.asarray(diversity, dtype=np.float64))
    acc = np.asarray(accuracy, dtype=np.float64)
    order = np.lexsort((np.arange(len(acc)), -div, -acc))
    front = []
    best_div = -np.inf
    for i in order:
        if div[i] > best_div:
            front.append(i)
            best_div = div[i]
    return np.asarray(front, dtype=np.int64)
