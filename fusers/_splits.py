"""Train / val / test splits for fusers (FUSERS.md §0.3): explicit, seeded, never train on val."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

import ensembles
from ensembles import Bundle, BundleError
from ensembles.util import InputError

from ._util import check_int

__all__ = ["DEFAULT_FRACTIONS", "DEFAULT_VAL_FRACTION", "SplitInfo", "ensure_splits"]

#: Train / val / test fractions of the seeded split made for a bundle without a ``split`` key
#: (the LLM-TOPLA MMLU protocol: a random 70 / 10 / 20 permutation).
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.1, 0.2)

#: Fraction of the ``train`` rows moved to ``val`` when a bundle has train rows but no val rows
#: (BBH: the file's ``is_train`` gives train / test only; the reference took the last 20 % of
#: train as val, and also trained on it).
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
    return {name: int((split == name).sum()) for name in ensembles.SPLIT_NAMES}


def ensure_splits(
    bundle: Bundle,
    *,
    seed: int = 0,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> tuple[Bundle, SplitInfo]:
    """A copy of ``bundle`` with train, val (and usually test) rows, made reproducibly.

    The rules, in order:

    1. The bundle has ``train`` and ``val`` rows: kept as is.
    2. It has ``train`` rows but no ``val`` rows (BBH's ``is_train`` → train / test): a seeded
       random ``val_fraction`` of the train rows (rounded, at least one row) becomes ``val``;
       test rows are untouched. Unlike the reference, those rows are then never trained on.
    3. It has no ``split``: a seeded, stratified ``fractions`` split
       (:func:`ensembles.with_random_split`; default 70 / 10 / 20 as in LLM-TOPLA's MMLU
       protocol).

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
        >>> b = ensembles.Bundle.create(models=["a", "b"], labels=[0, 1] * 5,
        ...                             preds=[[0, 1] * 5, [1, 1] * 5], split=["train"] * 10)
        >>> s, info = ensure_splits(b, seed=0)
        >>> info.source, info.sizes
        ('bundle+val', {'train': 8, 'val': 2, 'test': 0})
    """
    seed = check_int("seed", seed)
    if not isinstance(bundle, Bundle):
        raise TypeError(f"bundle: expected an ensembles.Bundle, got {type(bundle).__name__}")
    if bundle.split is None:
        frac = tuple(float(f) for f in fractions)
        out = ensembles.with_random_split(bundle, fractions=frac, seed=seed)
        return out, SplitInfo("seeded", seed, None, frac, _sizes(out.split))  # type: ignore[arg-type]
    split = np.asarray(bundle.split)
    sizes = _sizes(split)
    if sizes["train"] == 0:
        raise BundleError("split: the bundle has no 'train' rows to train a fuser on")
    if sizes["val"] > 0:
        return bundle, SplitInfo("bundle", None, None, None, sizes)
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
