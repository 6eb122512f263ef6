"""Combiners (consensus rules) and batched team accuracy.

A *team* is a set of members of a bundle. Its fused prediction on a sample is decided by one of
the rules in :data:`COMBINERS`; ``-1`` means the rule gives no answer (counted as wrong).

=======================  ====================================================================
``plurality``            most votes among the members that did not abstain; ties → lowest
                         class index; no votes → ``-1``
``majority``             a class with more than half of **all** ``L`` members' votes (abstainers
                         count in ``L``), else ``-1``
``soft``                 each member's ``probs`` row divided by its sum (an all-zero row
                         contributes nothing), mean over the ``L`` members, argmax, ties →
                         lowest index; every member all-zero → ``-1``. Needs ``probs``
``weighted_plurality``   ``argmax_c Σ_m w_m·1[P_m = c]``, same tie and no-vote rules
``weighted_soft``        ``argmax_c Σ_m w_m·p̂_m[c]``, same tie and no-answer rules
=======================  ====================================================================

Numerics: ``plurality`` and ``majority`` count votes with one float32 matrix product per chunk of
teams (counts are small integers, so exact). The other rules accumulate members one at a time,
in member (index) order, in float64, exactly as a sample-by-sample NumPy loop does, so ties are
decided identically to a float64 NumPy reference on any backend.

Example:
    >>> import ensembles
    >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 1, 2],
    ...                             preds=[[0, 1, 1], [0, 2, -1], [1, 1, 2]])
    >>> sorted(ensembles.COMBINERS)[:2]
    ['majority', 'plurality']
    >>> ensembles.combine(b, ["a", "b", "c"]).tolist()
    [0, 1, 1]
    >>> ensembles.team_accuracy(b, [[1, 1, 1], [0, 1, 1]], combiner="majority").round(3).tolist()
    [0.667, 0.0]
"""

from __future__ import annotations

import functools
import types
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._bundle import Bundle, BundleError
from .util import InputError, check_vote_weights

__all__ = ["COMBINERS", "combine", "team_accuracy"]

COMBINERS: Mapping[str, str] = types.MappingProxyType(
    {
        "plurality": "most votes among non-abstaining members; ties -> lowest class; "
        "no votes -> -1",
        "majority": "class with more than half of all members' votes, else -1",
        "soft": "mean of the members' row-normalised probs, argmax (ties -> lowest class); "
        "needs probs",
        "weighted_plurality": "plurality with per-member vote weights",
        "weighted_soft": "soft voting with per-member weights: argmax of sum_m w_m * probs_m",
    }
)
"""Names of the combiners, mapped to a one-line description (read-only).

Example:
    >>> "plurality" in COMBINERS, len(COMBINERS)
    (True, 5)
"""

# Upper bound on the elements of the (teams, samples, classes) intermediate of one chunk.
_MAX_CHUNK_ELEMENTS = 1 << 24

# Per-bundle cache of device arrays (one-hot votes, normalised probs, labels).
_CACHE: weakref.WeakKeyDictionary[Bundle, dict[str, Any]] = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------------------------- public API
def combine(
    bundle: Bundle,
    team: Any,
    *,
    combiner: str = "plurality",
    weights: Any = None,
) -> np.ndarray:
    """Fused prediction of one team on every sample of a bundle.

    Args:
        bundle: the cached outputs.
        team: the members, as a sequence of model names, a sequence of integer model indices, or
            a boolean mask of length ``n_models``. Order does not matter (a team is a set);
            integers are always indices, so pass booleans for a mask.
        combiner: one of :data:`COMBINERS`.
        weights: per-model weights, shape ``(n_models,)`` in the bundle's model order (only the
            members' entries are used); required by, and only accepted by, the ``weighted_*``
            combiners. Non-negative and finite; the members' weights must not all be zero.

    Returns:
        int64 array of shape ``(n_samples,)``: the fused class per sample, ``-1`` where the rule
        gives no answer.

    Raises:
        ValueError: unknown combiner, empty team, duplicate or out-of-range member, bad weights.
        BundleError: unknown model name, ``soft`` voting on a bundle without ``probs``, or an
            open-ended bundle (only ``quality``: voting needs class predictions). An unlabeled
            bundle is fine: only predictions are computed.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 1],
        ...                             probs=[[[0.6, 0.4], [0.5, 0.5]],
        ...                                    [[0.2, 0.8], [0.0, 0.0]],
        ...                                    [[0.9, 0.1], [0.3, 0.7]]])
        >>> combine(b, ["a", "b"]).tolist(), combine(b, [0, 1, 2], combiner="soft").tolist()
        ([0, 0], [0, 1])
        >>> combine(b, ["a", "b"], combiner="weighted_plurality", weights=[1, 2, 1]).tolist()
        [1, 0]
    """
    _check_bundle(bundle)
    mask = _one_team_mask(bundle, team)
    return _run(bundle, mask[None, :], combiner, weights, None, reduce=False)[0]


def team_accuracy(
    bundle: Bundle,
    teams: Any,
    *,
    combiner: str = "plurality",
    weights: Any = None,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Accuracy of the fused prediction of many teams, computed in batched JAX kernels.

    The teams are processed in chunks; each chunk is one jitted call (padded to a fixed size,
    so there is one compilation per chunk size). A ``-1`` (no answer) counts as wrong, and the
    accuracy is the sample-level mean over all ``n_samples`` samples.

    Args:
        bundle: the cached outputs.
        teams: a ``(n_teams, n_models)`` boolean or 0/1 array-like (one row per team), or a
            list of teams given as sequences of model names. Every team needs at least one
            member.
        combiner: one of :data:`COMBINERS`.
        weights: per-model weights, shape ``(n_models,)``, for the ``weighted_*`` combiners (see
            :func:`combine`).
        chunk_size: teams per kernel call. Default: as many as keep the
            ``(chunk, n_samples, n_classes)`` intermediate under ``2**24`` elements (and no more
            than the next power of two above ``n_teams``).

    Returns:
        float64 array of shape ``(n_teams,)``.

    Raises:
        ValueError: unknown combiner, malformed team array, empty team, bad weights or
            ``chunk_size``.
        BundleError: unknown model name, ``soft`` voting on a bundle without ``probs``, a
            bundle without labels, or an open-ended bundle.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 1, 2, 0],
        ...                             preds=[[0, 1, 2, 1], [0, 2, -1, 1], [1, 1, 0, 0]])
        >>> team_accuracy(b, [[1, 1, 1], [1, 1, 0]]).tolist()
        [0.5, 0.75]
        >>> team_accuracy(b, [("a", "c")], combiner="majority").tolist()
        [0.25]
    """
    _check_bundle(bundle)
    bundle.require_labels("team accuracy")
    masks = _team_masks(bundle, teams)
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
            raise InputError(f"chunk_size: must be a positive integer, got {chunk_size!r}")
        if chunk_size < 1:
            raise InputError(f"chunk_size: must be a positive integer, got {chunk_size}")
    correct = _run(bundle, masks, combiner, weights, chunk_size, reduce=True)
    return correct.astype(np.float64) / float(bundle.n_samples)


# ---------------------------------------------------------------------------------- input checks
def _check_bundle(bundle: Any) -> None:
    if not isinstance(bundle, Bundle):
        raise TypeError(f"bundle: expected an ensembles.Bundle, got {type(bundle).__name__}")
    if bundle.quality is not None:
        raise BundleError(
            "combiner: voting needs labels and class predictions; this open-ended bundle has "
            "only 'quality': use a router (one member's output per sample) instead"
        )


def _check_combiner(combiner: Any) -> str:
    if not isinstance(combiner, str) or combiner not in COMBINERS:
        raise InputError(
            f"combiner: unknown combiner {combiner!r}; valid names are {', '.join(COMBINERS)}"
        )
    return combiner


def _one_team_mask(bundle: Bundle, team: Any) -> np.ndarray:
    """A single team (names, indices or boolean mask) as a boolean mask of length M."""
    m = bundle.n_models
    if isinstance(team, str):
        raise InputError(f"team: expected a sequence of model names, got the string {team!r}")
    arr = np.asarray(list(team) if not hasattr(team, "__array__") else team)
    if arr.ndim != 1:
        raise InputError(f"team: must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError("team: a team needs at least one member")
    if arr.dtype.kind == "b":
        if arr.shape[0] != m:
            raise InputError(f"team: boolean mask has length {arr.shape[0]}, expected {m}")
        mask = arr.copy()
    elif arr.dtype.kind in "US":
        mask = _mask_from_names(bundle, [str(x) for x in arr.tolist()])
    elif arr.dtype.kind in "iu":
        idx = arr.astype(np.int64)
        if idx.min() < 0 or idx.max() >= m:
            raise InputError(f"team: model index out of range [0, {m}): {idx.tolist()}")
        if len(set(idx.tolist())) != idx.size:
            raise InputError(f"team: duplicate member in {idx.tolist()}")
        mask = np.zeros(m, dtype=bool)
        mask[idx] = True
    else:
        raise InputError(
            f"team: expected model names, integer indices or a boolean mask, got dtype {arr.dtype}"
        )
    if not mask.any():
        raise InputError("team: a team needs at least one member")
    return mask


def _mask_from_names(bundle: Bundle, names: Sequence[str]) -> np.ndarray:
    idx = bundle.model_indices(names)  # BundleError for an unknown name
    if len(set(idx)) != len(idx):
        dup = sorted({n for n in names if list(names).count(n) > 1})
        raise InputError(f"team: model {dup[0]!r} listed more than once")
    mask = np.zeros(bundle.n_models, dtype=bool)
    mask[idx] = True
    return mask


def _is_name_team(item: Any) -> bool:
    if isinstance(item, (str, bytes)) or not isinstance(item, (Sequence, np.ndarray)):
        return False
    return len(item) > 0 and all(isinstance(x, (str, np.str_)) for x in item)


def _team_masks(bundle: Bundle, teams: Any) -> np.ndarray:
    """A batch of teams as a (B, M) boolean array; every row has at least one member."""
    m = bundle.n_models
    if isinstance(teams, str):
        raise InputError("teams: expected a list of teams, got a string")
    if not hasattr(teams, "__array__"):
        teams = list(teams)
        if teams and isinstance(teams[0], str):
            raise InputError(
                "teams: got a single team of names; pass a list of teams, e.g. [('a', 'b')], "
                "or use combine() for one team"
            )
        if teams and any(_is_name_team(t) for t in teams):
            if not all(_is_name_team(t) for t in teams):
                raise InputError("teams: mix of name tuples and other rows; use one form")
            return np.stack([_mask_from_names(bundle, [str(x) for x in t]) for t in teams])
    try:
        arr = np.asarray(teams)
    except ValueError as exc:  # ragged rows
        raise InputError(f"teams: not a rectangular (n_teams, {m}) array ({exc})") from None
    if arr.size == 0 and arr.ndim <= 2 and (arr.ndim < 2 or arr.shape[0] == 0):
        return np.zeros((0, m), dtype=bool)
    if arr.ndim != 2 or arr.shape[1] != m:
        raise InputError(
            f"teams: expected a (n_teams, n_models={m}) mask or a list of name tuples, "
            f"got shape {arr.shape}"
        )
    if arr.dtype.kind == "b":
        masks = arr.astype(bool)
    elif arr.dtype.kind in "iuf":
        if not np.isin(arr, (0, 1)).all():
            raise InputError("teams: a numeric team mask must contain only 0 and 1")
        masks = arr != 0
    else:
        raise InputError(f"teams: expected a boolean or 0/1 mask, got dtype {arr.dtype}")
    empty = np.flatnonzero(~masks.any(axis=1))
    if empty.size:
        raise InputError(f"teams: team {int(empty[0])} has no members (need at least one)")
    return masks


def _check_weights(bundle: Bundle, weights: Any, combiner: str, masks: np.ndarray) -> np.ndarray:
    w = check_vote_weights(weights, bundle.n_models, combiner)
    if w is None:
        return np.ones(bundle.n_models)
    dead = np.flatnonzero(~(masks & (w > 0)[None, :]).any(axis=1))
    if dead.size:
        raise InputError(f"weights: every member of team {int(dead[0])} has weight zero")
    return w


# ---------------------------------------------------------------------------------- kernels
@functools.partial(jax.jit, static_argnames=("mode", "reduce"))
def _kernel(s: jax.Array, x: jax.Array, labels: jax.Array, *, mode: str, reduce: bool):
    """Fused predictions (or number correct) of a chunk of teams.

    ``s``: (B, M) 0/1 team masks; ``x``: (M, N, C) per-member class scores.
    ``mode``: ``"count"`` / ``"majority"`` (one matmul over members) or ``"sum"`` (sequential
    accumulation in member order: weighted and soft votes; soft voting's mean has the argmax of
    its sum, so nothing is divided, which could only merge near-ties by rounding).
    """
    b = s.shape[0]
    n_models, n_samples, n_classes = x.shape
    size = s.sum(axis=1)
    if mode in ("count", "majority"):
        votes = jnp.matmul(
            s, x.reshape(n_models, n_samples * n_classes), precision=jax.lax.Precision.HIGHEST
        ).reshape(b, n_samples, n_classes)
    else:

        def add_member(acc, member):
            s_m, x_m = member
            return acc + s_m[:, None, None] * x_m[None, :, :], None

        votes, _ = jax.lax.scan(add_member, jnp.zeros((b, n_samples, n_classes), x.dtype), (s.T, x))
    top = votes.max(axis=-1)
    ok = top > 0
    if mode == "majority":
        ok = ok & (2 * top > size[:, None])
    pred = jnp.where(ok, jnp.argmax(votes, axis=-1), -1)
    if reduce:
        return (pred == labels[None, :]).sum(axis=1)
    return pred


def _cached(bundle: Bundle) -> dict[str, Any]:
    entry = _CACHE.get(bundle)
    if entry is None:
        entry = {}
        _CACHE[bundle] = entry
    return entry


def _labels_or_zeros(bundle: Bundle) -> np.ndarray:
    """The labels, or zeros for an unlabeled bundle (only predictions are asked of it then)."""
    if bundle.labels is None:
        return np.zeros(bundle.n_samples, dtype=np.int64)
    return bundle.labels


def _one_hot(bundle: Bundle) -> np.ndarray:
    """(M, N, C) one-hot votes, no abstain category (an abstention is an all-zero row)."""
    c = bundle.n_classes
    preds = bundle.preds
    return (preds[:, :, None] == np.arange(c)[None, None, :]).astype(np.float64)


def _normalised_probs(bundle: Bundle) -> np.ndarray:
    if bundle.probs is None:
        raise BundleError("probs: soft voting needs probs")
    p = bundle.probs
    total = p.sum(axis=-1, keepdims=True)
    return np.divide(p, total, out=np.zeros_like(p), where=total > 0)


def _run(
    bundle: Bundle,
    masks: np.ndarray,
    combiner: Any,
    weights: Any,
    chunk_size: int | None,
    *,
    reduce: bool,
) -> np.ndarray:
    combiner = _check_combiner(combiner)
    if combiner in ("soft", "weighted_soft") and bundle.probs is None:
        raise BundleError("probs: soft voting needs probs")
    w = _check_weights(bundle, weights, combiner, masks)
    n_teams = masks.shape[0]
    n_samples, n_classes = bundle.n_samples, bundle.n_classes
    if n_teams == 0:
        return np.zeros((0,) if reduce else (0, n_samples), dtype=np.int64)

    if chunk_size is None:
        limit = max(1, _MAX_CHUNK_ELEMENTS // (n_samples * n_classes))
        chunk = min(limit, 1 << (n_teams - 1).bit_length())
    else:
        chunk = int(chunk_size)

    cache = _cached(bundle)
    if combiner in ("plurality", "majority"):
        if "onehot32" not in cache:
            cache["onehot32"] = jnp.asarray(_one_hot(bundle), dtype=jnp.float32)
            cache["labels32"] = jnp.asarray(_labels_or_zeros(bundle), dtype=jnp.int32)
        mode = "count" if combiner == "plurality" else "majority"
        return _chunked(
            masks, cache["onehot32"], cache["labels32"], np.float32, mode, chunk, reduce
        )

    with jax.enable_x64(True):
        if combiner == "soft":
            if "phat64" not in cache:
                cache["phat64"] = jnp.asarray(_normalised_probs(bundle), dtype=jnp.float64)
            x = cache["phat64"]
        else:
            base = (
                _one_hot(bundle) if combiner == "weighted_plurality" else _normalised_probs(bundle)
            )
            x = jnp.asarray(w[:, None, None] * base, dtype=jnp.float64)
        if "labels64" not in cache:
            cache["labels64"] = jnp.asarray(_labels_or_zeros(bundle), dtype=jnp.int64)
        return _chunked(masks, x, cache["labels64"], np.float64, "sum", chunk, reduce)


def _chunked(
    masks: np.ndarray,
    x: jax.Array,
    labels: jax.Array,
    dtype: Any,
    mode: str,
    chunk: int,
    reduce: bool,
) -> np.ndarray:
    n_teams, n_models = masks.shape
    out = []
    for start in range(0, n_teams, chunk):
        block = masks[start : start + chunk]
        rows = block.shape[0]
        if rows < chunk:  # pad to a fixed shape: one compilation for every chunk
            block = np.concatenate([block, np.zeros((chunk - rows, n_models), dtype=bool)])
        res = _kernel(jnp.asarray(block, dtype=dtype), x, labels, mode=mode, reduce=reduce)
        out.append(np.asarray(res)[:rows].astype(np.int64))
    return np.concatenate(out, axis=0)
