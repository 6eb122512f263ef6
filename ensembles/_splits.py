"""The one split policy: seeded, stratified train/val/test splits (:func:`ensure_splits`)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._bundle import SPLIT_NAMES, Bundle, BundleError
from .util import InputError

__all__ = [
    "DEFAULT_FRACTIONS",
    "DEFAULT_VAL_FRACTION",
    "SplitInfo",
    "ensure_splits",
    "with_random_split",
]

_FRACTION_TOL = 1e-6

#: Train / val / test fractions of the seeded split made for a bundle without a ``split`` key.
#: Every command, fuser and search of focal-fusion uses this one default.
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.6, 0.2, 0.2)

#: Fraction of the ``train`` rows moved to ``val`` when a bundle has train rows but no val rows
#: (for example a benchmark that ships a train / test split only).
DEFAULT_VAL_FRACTION = 0.2


@dataclasses.dataclass(frozen=True)
class SplitInfo:
    """Where a bundle's train / val / test split came from, and its sizes.

    Attributes:
        source: ``"bundle"`` (the bundle's own split), ``"bundle+val"`` (its train rows split
            into train / val with ``seed``), or ``"seeded"`` (a fresh stratified split with
            ``fractions`` and ``seed``).
        seed: seed of the split made here (``None`` for ``"bundle"``).
        val_fraction: fraction of train moved to val (``"bundle+val"`` only).
        fractions: train / val / test fractions (``"seeded"`` only).
        sizes: number of rows per split name.

    Example:
        >>> SplitInfo("bundle", None, None, None, {"train": 3, "val": 1, "test": 1}).to_dict()
        {'source': 'bundle', 'seed': None, 'val_fraction': None, 'fractions': None, \
'sizes': {'train': 3, 'val': 1, 'test': 1}}
    """

    source: str
    seed: int | None
    val_fraction: float | None
    fractions: tuple[float, float, float] | None
    sizes: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "source": self.source,
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "fractions": None if self.fractions is None else list(self.fractions),
            "sizes": dict(self.sizes),
        }


def _sizes(split: np.ndarray) -> dict[str, int]:
    return {name: int((split == name).sum()) for name in SPLIT_NAMES}


def ensure_splits(
    bundle: Bundle,
    *,
    seed: int = 0,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> tuple[Bundle, SplitInfo]:
    """The split policy of focal-fusion: a copy of ``bundle`` with train, val (and usually
    test) rows, made reproducibly. Every command, search and fuser goes through it.

    The rules, in order:

    1. The bundle has ``val`` rows: its split is kept as is.
    2. It has ``train`` rows but no ``val`` rows (BBH's ``is_train`` → train / test): a seeded
       random ``val_fraction`` of the train rows (rounded, at least one row) becomes ``val``;
       test rows are untouched. Unlike the reference, those rows are then never trained on.
    3. It has no ``split``: a seeded, stratified ``fractions`` split
       (:func:`with_random_split`; default :data:`DEFAULT_FRACTIONS`, 60 / 20 / 20).

    Randomness comes only from ``np.random.default_rng(seed)``.

    Args:
        bundle: the cached outputs.
        seed: non-negative seed of the split made here.
        val_fraction: fraction of the train rows moved to val in rule 2, in ``(0, 1)``.
        fractions: train / val / test fractions of rule 3.

    Returns:
        ``(bundle_with_split, info)``.

    Raises:
        BundleError: the bundle has a split without train rows, or too few train rows to
            carve a val split from.
        ValueError: bad ``seed`` or ``val_fraction``.

    Example:
        >>> from ensembles import Bundle
        >>> b = Bundle.create(models=["a", "b"], labels=[0, 1] * 5,
        ...                             preds=[[0, 1] * 5, [1, 1] * 5], split=["train"] * 10)
        >>> s, info = ensure_splits(b, seed=0)
        >>> info.source, info.sizes
        ('bundle+val', {'train': 8, 'val': 2, 'test': 0})
    """
    seed = _check_seed(seed)
    if not isinstance(bundle, Bundle):
        raise TypeError(f"bundle: expected an ensembles.Bundle, got {type(bundle).__name__}")
    if bundle.split is None:
        frac = tuple(float(f) for f in fractions)
        out = with_random_split(bundle, fractions=frac, seed=seed)
        return out, SplitInfo("seeded", seed, None, frac, _sizes(out.split))  # type: ignore[arg-type]
    split = np.asarray(bundle.split)
    sizes = _sizes(split)
    if sizes["val"] > 0:
        return bundle, SplitInfo("bundle", None, None, None, sizes)
    if sizes["train"] == 0:
        raise BundleError(
            f"split: the bundle's split has neither val rows nor train rows to carve them from "
            f"({sizes})"
        )
    vf = float(val_fraction)
    if not (math.isfinite(vf) and 0.0 < vf < 1.0):
        raise InputError(f"val_fraction: must lie in (0, 1), got {val_fraction!r}")
    train_idx = np.flatnonzero(split == "train")
    if train_idx.size < 2:
        raise BundleError(
            f"split: only {train_idx.size} train row(s); need at least 2 to carve a val split"
        )
    n_val = min(train_idx.size - 1, max(1, round(vf * train_idx.size)))
    rng = np.random.default_rng(seed)
    val_idx = rng.permutation(train_idx)[:n_val]
    new = split.astype("<U5").copy()
    new[val_idx] = "val"
    out = bundle.with_split(new)
    return out, SplitInfo("bundle+val", seed, vf, None, _sizes(new))


def with_random_split(
    bundle: Bundle,
    *,
    fractions: Sequence[float] | None = None,
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
            to 1 (within 1e-6); ``None`` for :data:`DEFAULT_FRACTIONS`. A zero fraction gives
            an empty split.
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
    frac = _check_fractions(DEFAULT_FRACTIONS if fractions is None else fractions)
    rng = np.random.default_rng(_check_seed(seed))
    n = bundle.n_samples
    targets = _largest_remainder(n * frac)

    # Stratify by class where there are classes (open-ended bundles stratify by correctness of
    # nothing: an unlabeled or judged bundle is shuffled).
    strata = bundle.labels if bundle.has_labels else np.zeros(bundle.n_samples, dtype=np.int64)
    _, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
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
