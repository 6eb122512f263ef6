"""Seeded train/val/test splits for bundles that have none (or a new one)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from ._bundle import SPLIT_NAMES, Bundle, BundleError

__all__ = ["with_random_split"]

_FRACTION_TOL = 1e-6


def with_random_split(
    bundle: Bundle,
    *,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    stratify: bool = True,
) -> Bundle:
    """A copy of ``bundle`` with a random ``split`` (``train``/``val``/``test``) per sample.

    The split sizes are exact: ``N * fractions`` rounded by largest remainder (ties go to the
    earlier split), so they always sum to ``N``. With ``stratify=True`` each class is split in
    the same proportions, and the per-class counts are rounded jointly so that the split sizes
    are still exactly those above. Stratification is used only when every class present has at
    least ``ceil(1 / f)`` samples, ``f`` the smallest non-zero fraction (enough for one expected
    sample of each class in each split); otherwise the split silently falls back to an
    unstratified shuffle. Randomness comes only from ``np.random.default_rng(seed)``: the same
    bundle, fractions and seed always give the same split, and global NumPy state is untouched.
    An existing ``split`` is replaced; every other array is kept.

    Args:
        bundle: the bundle to split.
        fractions: ``(train, val, test)`` fractions: three finite non-negative numbers summing
            to 1 (within 1e-6). A zero fraction gives an empty split.
        seed: non-negative integer seed of the NumPy generator.
        stratify: keep the class proportions in every split (see above).

    Returns:
        A new, validated :class:`~ensembles.Bundle` with ``split`` set.

    Raises:
        BundleError: bad ``fractions`` or ``seed`` (one line naming the argument).

    Example:
        >>> from ensembles import Bundle, with_random_split
        >>> b = Bundle.create(models=["a", "b"], labels=[0, 1] * 5, preds=[[0] * 10, [1] * 10])
        >>> s = with_random_split(b, fractions=(0.6, 0.2, 0.2), seed=1)
        >>> [int((s.split == name).sum()) for name in ("train", "val", "test")]
        [6, 2, 2]
    """
    if not isinstance(bundle, Bundle):
        raise TypeError(f"with_random_split: expected a Bundle, got {type(bundle).__name__}")
    frac = _check_fractions(fractions)
    rng = np.random.default_rng(_check_seed(seed))
    n = bundle.n_samples
    targets = _largest_remainder(n * frac)

    _, inverse, counts = np.unique(bundle.labels, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    needed = math.ceil(1.0 / frac[frac > 0].min() - _FRACTION_TOL)
    split = np.empty(n, dtype=f"<U{max(map(len, SPLIT_NAMES))}")
    table = None
    if stratify and counts.min() >= needed:
        table = _controlled_round(counts, frac, targets)
    if table is not None:
        for c in range(len(counts)):
            _assign(split, rng.permutation(np.flatnonzero(inverse == c)), table[c])
    else:
        _assign(split, rng.permutation(n), targets)
    return bundle.with_split(split)


def _assign(split: np.ndarray, order: np.ndarray, sizes: np.ndarray) -> None:
    for name, part in zip(SPLIT_NAMES, np.split(order, np.cumsum(sizes)[:-1]), strict=True):
        split[part] = name


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    try:
        values = [float(f) for f in fractions]
    except (TypeError, ValueError):
        raise BundleError(
            f"fractions: expected three numbers (train, val, test), got {fractions!r}"
        ) from None
    if len(values) != len(SPLIT_NAMES):
        raise BundleError(
            f"fractions: expected {len(SPLIT_NAMES)} numbers (train, val, test), got {len(values)}"
        )
    frac = np.asarray(values, dtype=np.float64)
    if not np.isfinite(frac).all() or (frac < 0).any():
        raise BundleError(f"fractions: must be finite and non-negative, got {values}")
    if abs(frac.sum() - 1.0) > _FRACTION_TOL:
        raise BundleError(f"fractions: must sum to 1, got {values} (sum {frac.sum():g})")
    return frac / frac.sum()


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise BundleError(f"seed: expected a non-negative integer, got {seed!r}")
    return int(seed)


def _largest_remainder(raw: np.ndarray) -> np.ndarray:
    """Integers with the same (integral) sum as ``raw``, each the floor or ceil of its entry."""
    base = np.floor(raw + 1e-9).astype(np.int64)
    short = int(round(raw.sum())) - int(base.sum())
    order = np.argsort(-(raw - base), kind="stable")
    base[order[:short]] += 1
    return base


def _controlled_round(
    counts: np.ndarray, frac: np.ndarray, targets: np.ndarray
) -> np.ndarray | None:
    """A (classes, splits) integer table with row sums ``counts`` and column sums ``targets``.

    Starts from the floors of ``counts[c] * frac[k]`` and hands out the missing units by largest
    fractional part (then class, then split order) wherever both the row and the column still
    need one, so the result is deterministic and close to proportional. ``None`` if float
    round-off made the margins inconsistent.
    """
    raw = counts[:, None] * frac[None, :]
    table = np.floor(raw + 1e-9).astype(np.int64)
    row_left = counts - table.sum(axis=1)
    col_left = targets - table.sum(axis=0)
    rem = raw - table
    cells = sorted(np.ndindex(*table.shape), key=lambda ck: (-rem[ck], ck))
    if (col_left < 0).any():  # only through float round-off; then do not stratify
        return None
    while row_left.sum() > 0:
        progress = False
        for c, k in cells:
            if row_left[c] > 0 and col_left[k] > 0:
                table[c, k] += 1
                row_left[c] -= 1
                col_left[k] -= 1
                progress = True
        if not progress:
            return None
    return table
