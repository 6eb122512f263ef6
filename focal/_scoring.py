"""Public scoring API: score given teams, score every team, and exhaustive top-K pruning."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import ensembles
from ensembles import Bundle

from ._metrics import METRICS, metric_spec, prepare_metric, team_values, team_values_jit
from ._moments import Moments
from ._teams import (
    as_masks,
    binomial_table,
    count_teams,
    parse_sizes,
    unrank_teams,
    unrank_teams_jax,
)

__all__ = [
    "DEFAULT_MAX_TEAMS",
    "PruneResult",
    "TeamScore",
    "prune",
    "score_all",
    "score_team",
    "score_teams",
]

#: Refuse exhaustive requests above this many teams unless ``max_teams`` is raised.
DEFAULT_MAX_TEAMS = 1 << 22

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


def _round_key(scores: np.ndarray, sign: float) -> np.ndarray:
    """Ranking key: sign * score rounded to 10 decimals (ALGORITHMS §5.1), NaN -> -inf."""
    key = np.round(sign * np.asarray(scores, dtype=np.float64), 10)
    return np.where(np.isnan(key), -np.inf, key)


def _chunk_size(spec_kind: str, focal: bool, n_models: int, n_samples: int, largest: int) -> int:
    width = (n_models if focal else 1) * n_models
    if spec_kind == "entropy":
        width = max(width, n_samples)
    chunk = max(256, min(1 << 16, _CHUNK_ELEMENTS // max(width, 1)))
    chunk = 1 << (chunk.bit_length() - 1)
    return max(1, min(chunk, 1 << max(0, (largest - 1).bit_length())))


@dataclasses.dataclass(frozen=True)
class TeamScore:
    """One scored team.

    Attributes:
        members: model names, in member order of the bundle.
        size: number of members.
        score: metric value (NaN when undefined).
        accuracy: plurality-vote accuracy of the team on the same samples.
        mask: boolean membership mask of shape ``(n_models,)``.
    """

    members: tuple[str, ...]
    size: int
    score: float
    accuracy: float
    mask: np.ndarray = dataclasses.field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of CONTRACT §6 (NaN becomes ``None``)."""
        return {
            "members": list(self.members),
            "size": self.size,
            "score": _finite_or_none(self.score),
            "accuracy": _finite_or_none(self.accuracy),
        }


@dataclasses.dataclass(frozen=True)
class PruneResult:
    """Result of :func:`prune`: the top teams, best first.

    Attributes:
        metric: metric name used for ranking.
        direction: ``"higher"`` or ``"lower"`` is more diverse.
        n_models, n_samples: bundle dimensions.
        n_teams_scored: number of teams evaluated.
        sizes: team sizes scanned.
        teams: the top teams, best first (CONTRACT §6 order and ties, ALGORITHMS §5.1).
    """

    metric: str
    direction: str
    n_models: int
    n_samples: int
    n_teams_scored: int
    sizes: tuple[int, ...]
    teams: tuple[TeamScore, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of CONTRACT §6 for ``focal prune``."""
        return {
            "metric": self.metric,
            "n_models": self.n_models,
            "n_samples": self.n_samples,
            "n_teams_scored": self.n_teams_scored,
            "teams": [t.to_dict() for t in self.teams],
        }

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as strict JSON (NaN written as ``null``)."""
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)


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
        bundle: a :class:`ensembles.Bundle` (or precomputed :class:`focal.Moments`).
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
        [1.0, 0.5]
    """
    spec = metric_spec(metric)
    mom = moments_of(bundle)
    names = bundle.models if isinstance(bundle, Bundle) else models
    if names is None:
        names = [str(i) for i in range(mom.n_models)]
    masks = as_masks(teams, names)
    sizes = masks.sum(axis=1)
    if masks.shape[0] and sizes.min() < 2:
        raise ValueError("team: a team needs at least 2 members")
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

    Returns the document of ``focal score --format json`` (CONTRACT §6):
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
        raise ValueError("team: a team needs at least 2 members")
    members = [m for m, keep in zip(bundle.models, mask[0], strict=True) if keep]
    metrics = {
        name: _finite_or_none(float(score_teams(bundle, mask, metric=name)[0])) for name in METRICS
    }
    accuracy = {
        "plurality": float(ensembles.team_accuracy(bundle, mask, combiner="plurality")[0]),
        "majority": float(ensembles.team_accuracy(bundle, mask, combiner="majority")[0]),
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
    key = jnp.round(sign * scores, 10)
    key = jnp.where(jnp.isnan(key) | ~valid, -jnp.inf, key)
    if k is None:
        return scores, ranks, valid
    _, top = jax.lax.top_k(key, k)  # stable: equal keys keep canonical (lower index) order
    return scores[top], ranks[top], valid[top]


def _scan(
    bundle: Bundle | Moments,
    metric: str,
    sizes: tuple[int, ...],
    top_k: int | None,
    chunk_size: int | None,
    progress: ProgressFn | None,
):
    """Yield (size, scores, ranks) per chunk; with ``top_k`` only each chunk's best."""
    spec = metric_spec(metric)
    mom = moments_of(bundle)
    m = mom.n_models
    total = count_teams(m, sizes)
    largest = max(math.comb(m, s) for s in sizes)
    chunk = chunk_size or _chunk_size(spec.kind, spec.focal, m, mom.n_samples, largest)
    k = None if top_k is None else min(top_k, chunk)
    arrays = prepare_metric(spec, mom)
    done = 0
    with jax.enable_x64(True):
        dev_arrays = {name: jnp.asarray(v) for name, v in arrays.items()}
        binom = jnp.asarray(binomial_table(m))
        for size in sizes:
            count = math.comb(m, size)
            for start in range(0, count, chunk):
                scores, ranks, valid = _scan_chunk(
                    jnp.int64(size), jnp.int64(start), jnp.int64(count), dev_arrays, binom,
                    kind=spec.kind, focal=spec.focal, n_models=m, chunk=chunk, k=k,
                    sign=spec.sign,
                )  # fmt: skip
                valid = np.asarray(valid)
                yield size, np.asarray(scores)[valid], np.asarray(ranks)[valid]
                done += min(chunk, count - start)
                if progress is not None:
                    progress(done, total)


def _check_budget(n_teams: int, max_teams: int | None) -> None:
    if max_teams is not None and max_teams < 1:
        raise ValueError(f"max-teams: must be at least 1, got {max_teams}")
    if max_teams is not None and n_teams > max_teams:
        raise ValueError(
            f"sizes: {n_teams:,} teams exceed the budget of {max_teams:,}; narrow --sizes/--size "
            "or raise --max-teams"
        )


def prune(
    bundle: Bundle,
    *,
    metric: str = "focal",
    sizes: Any = (2, 5),
    top_k: int = 10,
    max_teams: int | None = DEFAULT_MAX_TEAMS,
    chunk_size: int | None = None,
    progress: ProgressFn | None = None,
) -> PruneResult:
    """Exhaustive top-K teams by a diversity metric (ALGORITHMS §5.1).

    Scores every team with a size in ``sizes`` through the closed forms (moments computed
    once, then XLA-jitted chunks of teams, memory bounded by the chunk size), keeps a running
    top-K, and returns it best first with each team's plurality-vote accuracy.

    Args:
        bundle: the cached outputs.
        metric: a name of :data:`focal.METRICS`; ranking follows its direction.
        sizes: team sizes: an int, an inclusive ``(lo, hi)`` pair, ``"2-5"``, or an iterable.
        top_k: number of teams to return.
        max_teams: refuse requests above this many teams (``None`` for no limit).
        chunk_size: teams per jitted batch (default: sized to keep ~32 MiB intermediates).
        progress: optional callback ``progress(done, total)`` after every chunk.

    Returns:
        A :class:`PruneResult`. Ties (scores equal to 10 decimals) go to the smaller team,
        then to canonical order; NaN scores rank last.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
        ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
        >>> [t.members for t in prune(b, sizes=2, top_k=2).teams]
        [('a', 'b'), ('a', 'c')]
    """
    spec = metric_spec(metric)
    if int(top_k) < 1:
        raise ValueError(f"top-k: must be at least 1, got {top_k}")
    size_tuple = parse_sizes(sizes, bundle.n_models)
    n_teams = count_teams(bundle.n_models, size_tuple)
    _check_budget(n_teams, max_teams)

    best_scores = np.zeros(0)
    best_sizes = np.zeros(0, dtype=np.int64)
    best_ranks = np.zeros(0, dtype=np.int64)
    for size, scores, ranks in _scan(bundle, metric, size_tuple, int(top_k), chunk_size, progress):
        # Earlier entries precede later ones in canonical order; a stable sort keeps that.
        all_scores = np.concatenate([best_scores, scores])
        all_sizes = np.concatenate([best_sizes, np.full(len(scores), size)])
        all_ranks = np.concatenate([best_ranks, ranks])
        order = np.argsort(-_round_key(all_scores, spec.sign), kind="stable")[:top_k]
        best_scores, best_sizes, best_ranks = all_scores[order], all_sizes[order], all_ranks[order]

    masks = _decode(best_sizes, best_ranks, bundle.n_models)
    accuracy = ensembles.team_accuracy(bundle, masks, combiner="plurality") if len(masks) else []
    teams = tuple(
        TeamScore(
            members=tuple(m for m, keep in zip(bundle.models, mask, strict=True) if keep),
            size=int(mask.sum()),
            score=float(score),
            accuracy=float(acc),
            mask=mask,
        )
        for mask, score, acc in zip(masks, best_scores, accuracy, strict=True)
    )
    return PruneResult(
        metric=metric,
        direction=spec.direction,
        n_models=bundle.n_models,
        n_samples=bundle.n_samples,
        n_teams_scored=n_teams,
        sizes=size_tuple,
        teams=teams,
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
        ((4, 3), [1.0, 0.333, 0.5, 0.5])
    """
    mom = moments_of(bundle)
    size_tuple = parse_sizes(sizes, mom.n_models)
    _check_budget(count_teams(mom.n_models, size_tuple), max_teams)
    all_masks, all_scores = [], []
    binom = binomial_table(mom.n_models)
    for size, scores, ranks in _scan(bundle, metric, size_tuple, None, chunk_size, progress):
        all_masks.append(unrank_teams(ranks, size, mom.n_models, binom))
        all_scores.append(scores)
    return np.concatenate(all_masks), np.concatenate(all_scores)
