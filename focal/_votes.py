"""Exact vote accuracy of many teams at once, from packed integer vote tallies.

Plurality (and majority) voting only needs, per sample, whether the gold class wins. A team is
right on a sample with gold class ``y`` exactly when the gold class has at least one vote and,
for every other class ``c``, ``votes[c] < votes[y]`` when ``c < y`` (the lowest class index
wins a tie) and ``votes[c] <= votes[y]`` when ``c > y``. So instead of the class counts we keep
the *margins* of the gold class over every other class, one small biased counter ("field") per
class, packed side by side into 64-bit words:

* field ``c != y`` starts at ``2^(b-1) - 1 + [c > y]``; a member voting for ``y`` adds 1 to every
  such field, a member voting for ``c`` subtracts 1 from field ``c``, an abstention does nothing;
* one extra *sentinel* field starts at ``2^(b-1) - 1`` and counts the gold votes (so "no gold
  vote" fails the test);
* field ``y`` itself stays at ``2^(b-1)``.

Every member's effect is one precomputed 64-bit word per sample (its *code*), and a team's
packed tally is the plain integer sum of its members' codes plus a per-sample base. The team is
right on a sample iff the top bit of every field is set: ``(X & G) == G``, two machine
operations. With ``b``-bit fields no field over- or underflows for teams of up to ``2^(b-1) - 1``
members, so the test is exact (b = 4 for teams of up to 7, 16 fields per word). Majority (more
than half of *all* ``L`` members vote for the gold class) reads the sentinel field alone.

Weighted and soft voting have real-valued tallies; they are summed in float64, member by member
in increasing member index, exactly as :func:`ensembles.team_accuracy` does, so ties are decided
identically.

Team order: a team's packed sum is computed directly from its members (``L - 1`` additions of
codes rows gathered from a small table) in fixed-shape jitted chunks. Incremental schemes that
carry one tally per step (a lockstep depth-first scan over the team tree, or prefix tallies
fanned out over the last member) were measured slower under XLA on CPU, because their
per-step scatter/gather of tallies costs more than the ``L - 1`` adds they save; see
``bench/vote_speed.py``.
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ensembles import COMBINERS, Bundle
from ensembles.util import InputError, check_vote_weights

from ._teams import DEFAULT_MAX_TEAMS, binomial_table, count_teams, parse_sizes, unrank_teams

__all__ = [
    "VOTE_COMBINERS",
    "iter_vote_accuracies",
    "masks_vote_accuracy",
    "team_vote_accuracies",
]

#: Combiners with an exact packed-integer kernel; the others use the float64 kernel.
PACKED_COMBINERS = frozenset({"plurality", "majority"})
VOTE_COMBINERS = tuple(COMBINERS)


# Target elements of one chunk's (teams, samples[, classes]) intermediate.
_PACKED_ELEMENTS = 1 << 22
_FLOAT_ELEMENTS = 1 << 22
# Teams up to this size unroll their member loop in the kernel; larger ones use a fori_loop.
_UNROLL = 12

_CACHE: weakref.WeakKeyDictionary[Bundle, dict[Any, Any]] = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------------------------ encoding
def field_bits(max_size: int) -> int:
    """Bits per packed field so that teams of up to ``max_size`` members never overflow.

    Example:
        >>> field_bits(7), field_bits(8), field_bits(29)
        (4, 5, 6)
    """
    bits = 4
    while max_size > (1 << (bits - 1)) - 1:
        bits += 1
    return bits


class PackedVotes:
    """Per-sample base words, per-member codes and test masks of the packed tallies.

    Attributes:
        bits: bits per field.
        base: uint64 ``(W, N)``.
        codes: uint64 ``(W, M, N)``.
        guard: uint64 ``(W,)``, the top bit of every used field of each word.
        sentinel: ``(word, shift)`` of the gold-vote counter.
    """

    def __init__(self, preds: np.ndarray, labels: np.ndarray, n_classes: int, bits: int):
        n_models, n_samples = preds.shape
        per_word = 64 // bits
        n_fields = n_classes + 1
        n_words = -(-n_fields // per_word)
        half = np.uint64(1 << (bits - 1))
        one = np.uint64(1)
        field = np.arange(n_fields)
        word_of, shift_of = field // per_word, (field % per_word) * bits
        y = labels.astype(np.int64)
        base = np.zeros((n_words, n_samples), np.uint64)
        up = np.zeros((n_words, n_samples), np.uint64)  # +1 in every field but y's
        guard = np.zeros(n_words, np.uint64)
        for f in range(n_fields):
            w, s = int(word_of[f]), np.uint64(shift_of[f])
            guard[w] |= half << s
            if f == n_classes:  # sentinel: counts gold votes
                start = np.full(n_samples, half - one, np.uint64)
            else:
                start = np.where(f == y, half, half - one + (f > y).astype(np.uint64))
                start = start.astype(np.uint64)
            base[w] |= start << s
            up[w] += np.where(f == y, np.uint64(0), one << s).astype(np.uint64)
        codes = np.zeros((n_words, n_models, n_samples), np.uint64)
        right = preds == y[None, :]
        wrong = (preds >= 0) & ~right
        cls = np.maximum(preds, 0)
        for w in range(n_words):
            codes[w] = np.where(right, up[w][None, :], np.uint64(0))
            in_word = wrong & (word_of[np.minimum(cls, n_classes)] == w)
            down = one << shift_of[cls].astype(np.uint64)
            minus = ~down + one  # -down modulo 2^64
            codes[w] = np.where(in_word, minus, codes[w])
        self.bits = bits
        self.base = base
        self.codes = codes
        self.guard = guard
        self.sentinel = (int(word_of[n_classes]), int(shift_of[n_classes]))


def _labels_of(bundle: Any) -> np.ndarray:
    if not isinstance(bundle, Bundle):
        raise InputError(f"bundle: expected an ensembles.Bundle, got {type(bundle).__name__}")
    labels = getattr(bundle, "labels", None)
    if labels is None:
        raise InputError("labels: vote accuracy needs gold labels; this bundle has none")
    return np.asarray(labels)


def _check_combiner(combiner: Any, bundle: Bundle) -> str:
    if not isinstance(combiner, str) or combiner not in COMBINERS:
        raise InputError(
            f"combiner: unknown combiner {combiner!r}; valid names are {', '.join(COMBINERS)}"
        )
    if combiner in ("soft", "weighted_soft") and bundle.probs is None:
        raise InputError(f"probs: the {combiner!r} combiner needs probs; this bundle has none")
    return combiner


def _check_weights(bundle: Bundle, weights: Any, combiner: str) -> np.ndarray | None:
    return check_vote_weights(weights, bundle.n_models, combiner)


def _cache(bundle: Bundle) -> dict[Any, Any]:
    entry = _CACHE.get(bundle)
    if entry is None:
        entry = {}
        _CACHE[bundle] = entry
    return entry


def _packed(bundle: Bundle, bits: int) -> dict[str, Any]:
    cache = _cache(bundle)
    key = ("packed", bits)
    if key not in cache:
        pv = PackedVotes(np.asarray(bundle.preds), _labels_of(bundle), bundle.n_classes, bits)
        with jax.enable_x64(True):
            cache[key] = {
                "base": jnp.asarray(pv.base),
                "codes": jnp.asarray(pv.codes),
                "guard": jnp.asarray(pv.guard),
                "sentinel": pv.sentinel,
                "bits": bits,
            }
    return cache[key]


def _float_scores(bundle: Bundle, combiner: str, weights: np.ndarray | None) -> np.ndarray:
    """Per-member class scores (M, N, C) float64, built exactly as the combiners build them."""
    if combiner in ("soft", "weighted_soft"):
        p = bundle.probs
        total = p.sum(axis=-1, keepdims=True)
        x = np.divide(p, total, out=np.zeros_like(p), where=total > 0)
    else:
        preds = bundle.preds
        x = (preds[:, :, None] == np.arange(bundle.n_classes)[None, None, :]).astype(np.float64)
    if weights is not None:
        x = weights[:, None, None] * x
    return np.asarray(x, dtype=np.float64)


# ------------------------------------------------------------------------------------ kernels
def _sum_rows(table: jax.Array, idx: jax.Array, start: jax.Array) -> jax.Array:
    """``start + table[idx[:, 0]] + table[idx[:, 1]] + ...``, in member order."""
    size = idx.shape[1]
    if size <= _UNROLL:
        acc = start
        for pos in range(size):
            acc = acc + table[idx[:, pos]]
        return acc

    def body(pos, acc):
        return acc + table[idx[:, pos]]

    first = start + table[idx[:, 0]]
    return jax.lax.fori_loop(1, size, body, first)


@functools.partial(jax.jit, static_argnames=("majority", "sentinel", "bits"))
def packed_correct(idx, codes, base, guard, *, majority=False, sentinel=(0, 0), bits=4):
    """Number of samples each team gets right, from packed tallies (jittable building block).

    Args:
        idx: int32 ``(B, L)`` member indices of ``B`` teams of one size ``L``.
        codes: uint64 ``(W, M, N)`` member codes; base: uint64 ``(W, N)``; guard: uint64
            ``(W,)`` (see :class:`PackedVotes`).
        majority: count samples where more than half of the ``L`` members vote for the gold
            class, instead of plurality wins.

    Returns:
        int32 ``(B,)``.
    """
    size = idx.shape[1]
    if majority:
        w, shift = sentinel
        tally = _sum_rows(codes[w], idx, base[w][None, :])
        gold = (tally >> jnp.uint64(shift)) & jnp.uint64((1 << bits) - 1)
        need = (1 << (bits - 1)) + size // 2  # 2^(b-1) - 1 + votes >= 2^(b-1) + floor(L/2)
        return jnp.sum(gold >= jnp.uint64(need), axis=1, dtype=jnp.int32)
    ok = None
    for w in range(codes.shape[0]):
        tally = _sum_rows(codes[w], idx, base[w][None, :])
        hit = (tally & guard[w]) == guard[w]
        ok = hit if ok is None else ok & hit
    return jnp.sum(ok, axis=1, dtype=jnp.int32)


@jax.jit
def float_correct(idx, x, labels):
    """Samples right under weighted/soft voting: float64 sums in member order, argmax.

    Soft voting's mean has the argmax of its sum, so nothing is divided: a division by the team
    size could only merge near-ties by rounding (XLA divides by multiplying with a rounded
    reciprocal).
    """
    b = idx.shape[0]
    zero = jnp.zeros((b,) + x.shape[1:], x.dtype)
    votes = _sum_rows(x, idx, zero)
    top = votes.max(axis=-1)
    pred = jnp.where(top > 0, jnp.argmax(votes, axis=-1), -1)
    return jnp.sum(pred == labels[None, :], axis=1, dtype=jnp.int32)


# ------------------------------------------------------------------------------------ driver
class _Evaluator:
    """Counts correct samples for batches of same-size teams given as member indices."""

    def __init__(
        self,
        bundle: Bundle,
        combiner: Any,
        weights: Any,
        max_size: int,
        chunk_size: int | None,
    ):
        labels = _labels_of(bundle)
        self.combiner = _check_combiner(combiner, bundle)
        self.weights = _check_weights(bundle, weights, self.combiner)
        self.n_samples = bundle.n_samples
        self.packed = self.combiner in PACKED_COMBINERS
        if chunk_size is not None:
            if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer):
                raise InputError(f"chunk_size: must be a positive integer, got {chunk_size!r}")
            if chunk_size < 1:
                raise InputError(f"chunk_size: must be a positive integer, got {chunk_size}")
        with jax.enable_x64(True):
            if self.packed:
                self.tables = _packed(bundle, field_bits(max_size))
                width = self.n_samples * self.tables["codes"].shape[0]
                default = _PACKED_ELEMENTS // max(width, 1)
            else:
                cache = _cache(bundle)
                key = ("float", self.combiner, None if self.weights is None else
                       self.weights.tobytes())  # fmt: skip
                if key not in cache:
                    cache[key] = jnp.asarray(_float_scores(bundle, self.combiner, self.weights))
                self.x = cache[key]
                self.labels = jnp.asarray(labels, dtype=jnp.int64)
                default = _FLOAT_ELEMENTS // max(self.n_samples * bundle.n_classes, 1)
        default = 1 << (max(1, min(default, 4096)).bit_length() - 1)
        self.chunk = int(chunk_size) if chunk_size is not None else max(16, default)

    def correct(self, idx: np.ndarray) -> np.ndarray:
        """Correct-sample counts (int64) of teams ``idx`` (int ``(B, L)``, sorted rows)."""
        n, size = idx.shape
        if self.weights is not None:
            dead = np.flatnonzero(~(self.weights[idx] > 0).any(axis=1))
            if dead.size:
                raise InputError(f"weights: every member of team {int(dead[0])} has weight zero")
        out = np.empty(n, np.int64)
        with jax.enable_x64(True):
            for start in range(0, n, self.chunk):
                block = idx[start : start + self.chunk]
                rows = block.shape[0]
                if rows < self.chunk:  # pad with copies: one compilation per (chunk, size)
                    block = np.concatenate([block, np.repeat(block[-1:], self.chunk - rows, 0)])
                out[start : start + rows] = np.asarray(self._run(block))[:rows]
        return out

    def _run(self, block: np.ndarray) -> jax.Array:
        idx = jnp.asarray(block, dtype=jnp.int32)
        if self.packed:
            t = self.tables
            return packed_correct(
                idx, t["codes"], t["base"], t["guard"],
                majority=self.combiner == "majority", sentinel=t["sentinel"], bits=t["bits"],
            )  # fmt: skip
        return float_correct(idx, self.x, self.labels)


def _members(masks: np.ndarray, size: int) -> np.ndarray:
    """Sorted member indices ``(B, size)`` of masks that all have ``size`` members."""
    return np.nonzero(masks)[1].reshape(masks.shape[0], size).astype(np.int32)


def masks_vote_accuracy(
    bundle: Bundle,
    masks: Any,
    *,
    combiner: str = "plurality",
    weights: Any = None,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Vote accuracy of teams given as ``(B, n_models)`` boolean masks (any sizes ≥ 1).

    Equals :func:`ensembles.team_accuracy` with the same arguments, bit for bit.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 1, 2, 0],
        ...                             preds=[[0, 1, 2, 1], [0, 2, -1, 1], [1, 1, 0, 0]])
        >>> masks_vote_accuracy(b, [[1, 1, 1], [1, 1, 0]]).tolist()
        [0.5, 0.75]
    """
    _labels_of(bundle)
    arr = np.asarray(masks)
    if arr.ndim != 2 or arr.shape[1] != bundle.n_models:
        raise InputError(
            f"teams: expected a (n_teams, n_models={bundle.n_models}) mask, got shape {arr.shape}"
        )
    if arr.dtype.kind != "b":
        if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
            raise InputError("teams: a team mask must be boolean or contain only 0 and 1")
    arr = arr.astype(bool)
    sizes = arr.sum(axis=1)
    if arr.shape[0] and sizes.min() < 1:
        raise InputError(f"teams: team {int(np.argmin(sizes))} has no members")
    out = np.zeros(arr.shape[0], np.float64)
    if arr.shape[0] == 0:
        return out
    ev = _Evaluator(bundle, combiner, weights, int(sizes.max()), chunk_size)
    for size in np.unique(sizes):
        sel = np.flatnonzero(sizes == size)
        out[sel] = ev.correct(_members(arr[sel], int(size))) / float(bundle.n_samples)
    return out


def iter_vote_accuracies(
    bundle: Bundle,
    sizes: Any,
    *,
    combiner: str = "plurality",
    weights: Any = None,
    chunk_size: int | None = None,
    teams_per_yield: int = 1 << 16,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Stream the vote accuracy of every team of the given sizes, in canonical order.

    Canonical order is by size, then lexicographic over member indices (the order of
    ``itertools.combinations``); a team's position within its size is its rank.

    Yields:
        ``(size, first_rank, accuracies)`` for consecutive rank ranges of at most
        ``teams_per_yield`` teams; memory stays bounded by that and the chunk size.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 1, 2, 0],
        ...                             preds=[[0, 1, 2, 1], [0, 2, -1, 1], [1, 1, 0, 0]])
        >>> [(s, r, a.tolist()) for s, r, a in iter_vote_accuracies(b, (2, 3))]
        [(2, 0, [0.75, 0.75, 0.75]), (3, 0, [0.5])]
    """
    for size, start, _, acc in _iter_chunks(
        bundle, sizes, combiner, weights, chunk_size, teams_per_yield
    ):
        yield size, start, acc


def _iter_chunks(bundle, sizes, combiner, weights, chunk_size, teams_per_yield):
    """:func:`iter_vote_accuracies`, also yielding the masks."""
    _labels_of(bundle)
    m = bundle.n_models
    size_tuple = parse_sizes(sizes, m)
    ev = _Evaluator(bundle, combiner, weights, max(size_tuple), chunk_size)
    binom = binomial_table(m)
    step = max(1, int(teams_per_yield))
    for size in size_tuple:
        total = math.comb(m, size)
        for start in range(0, total, step):
            ranks = np.arange(start, min(total, start + step), dtype=np.int64)
            masks = unrank_teams(ranks, size, m, binom)
            yield size, start, masks, ev.correct(_members(masks, size)) / float(bundle.n_samples)


def team_vote_accuracies(
    bundle: Bundle,
    sizes: Any = (2, 5),
    *,
    combiner: str = "plurality",
    weights: Any = None,
    chunk_size: int | None = None,
    max_teams: int | None = DEFAULT_MAX_TEAMS,
) -> tuple[np.ndarray, np.ndarray]:
    """Vote accuracy of every team of the given sizes, exactly and fast.

    Each team's vote is tallied in packed 64-bit integer words (one small biased counter per
    class), so plurality and majority accuracy cost a few machine operations per team and
    sample; weighted and soft voting sum float64 scores in member order. Results equal
    :func:`ensembles.team_accuracy` bit for bit: plurality ties go to the lowest class index,
    abstentions (``-1``) do not vote, no votes means wrong, majority needs more than half of
    all members' votes.

    Args:
        bundle: cached outputs with gold labels.
        sizes: team sizes: an int, an inclusive ``(lo, hi)`` pair, ``"2-5"``, or an iterable.
        combiner: a name of :data:`ensembles.COMBINERS`.
        weights: per-model weights ``(n_models,)`` for the ``weighted_*`` combiners.
        chunk_size: teams per jitted call (default: about 2^22 tally elements per call).
        max_teams: refuse requests above this many teams (``None`` for no limit); both
            returned arrays are materialised.

    Returns:
        ``(masks, accuracies)``: boolean ``(n_teams, n_models)`` and float64 ``(n_teams,)``
        in canonical order (by size, then lexicographic over member indices).

    Raises:
        InputError: no labels, unknown combiner, bad sizes, weights or budget.

    Example:
        >>> import ensembles, focal.search
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 1, 2, 0],
        ...                             preds=[[0, 1, 2, 1], [0, 2, -1, 1], [1, 1, 0, 0]])
        >>> masks, acc = focal.search.team_vote_accuracies(b, sizes=(2, 3))
        >>> masks.astype(int).tolist(), acc.tolist()
        ([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]], [0.75, 0.75, 0.75, 0.5])
    """
    _labels_of(bundle)
    m = bundle.n_models
    size_tuple = parse_sizes(sizes, m)
    n_teams = count_teams(m, size_tuple)
    if max_teams is not None and n_teams > max_teams:
        raise InputError(
            f"sizes: {n_teams:,} teams exceed the budget of {max_teams:,}; narrow the sizes "
            "or raise max_teams"
        )
    masks, accs = [], []
    for _, _, chunk_masks, acc in _iter_chunks(
        bundle, size_tuple, combiner, weights, chunk_size, 1 << 16
    ):
        masks.append(chunk_masks)
        accs.append(acc)
    return np.concatenate(masks), np.concatenate(accs)
