"""The cached-outputs bundle: the outputs of M models on N samples of one task (CONTRACT §1)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from .util import InputError

__all__ = ["MAX_CLASSES", "SPLIT_NAMES", "Bundle", "BundleError", "predictions_from_scores"]

SPLIT_NAMES = ("train", "val", "test")

#: Largest number of classes a bundle may have (one-hot votes are (M, N, C) arrays).
MAX_CLASSES = 1 << 16


class BundleError(InputError):
    """A bundle (or a request against one) is malformed; the message is one line naming the key."""


def _fail(key: str, problem: str) -> BundleError:
    return BundleError(f"{key}: {problem}")


@dataclasses.dataclass(frozen=True, eq=False)
class Bundle:
    """Cached outputs of ``M`` models on ``N`` samples of one task.

    Build one with :meth:`Bundle.create` (which validates), or load one with
    :func:`ensembles.load_bundle`. Arrays are read-only NumPy arrays.

    Attributes:
        models: model names, in member order, shape ``(n_models,)``.
        labels: ground-truth class indices in ``[0, n_classes)``, shape ``(n_samples,)``.
        preds: hard predictions, ``-1`` = abstain, shape ``(n_models, n_samples)``. Always
            present: derived from ``probs`` (argmax, lowest index on ties, ``-1`` for an
            all-zero row) when the source had only scores.
        probs: non-negative per-class scores, shape ``(n_models, n_samples, n_classes)``, or
            ``None``.
        n_classes: number of classes ``C``.
        split: ``"train"``/``"val"``/``"test"`` per sample, or ``None``.
        sample_ids: per-sample ids, or ``None``.
        groups: per-sample sub-task or category, or ``None``.
        task: name of the task (for multi-task files), or ``None``.

    Example:
        >>> import numpy as np
        >>> b = Bundle.create(models=["a", "b"], labels=[0, 1, 1], preds=[[0, 1, 0], [1, 1, 1]])
        >>> b.n_models, b.n_samples, b.accuracies().round(3).tolist()
        (2, 3, [0.667, 0.667])
    """

    models: tuple[str, ...]
    labels: np.ndarray
    preds: np.ndarray
    probs: np.ndarray | None
    n_classes: int
    split: np.ndarray | None = None
    sample_ids: np.ndarray | None = None
    groups: np.ndarray | None = None
    task: str | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        *,
        models: Sequence[str],
        labels: Any,
        probs: Any = None,
        preds: Any = None,
        n_classes: int | None = None,
        split: Any = None,
        sample_ids: Any = None,
        groups: Any = None,
        task: str | None = None,
    ) -> Bundle:
        """Validate raw arrays and build a bundle.

        Raises:
            BundleError: one line naming the key and the problem, for any malformed input.
        """
        prefix = f"{task}/" if task else ""
        models_arr = np.asarray(models)
        if models_arr.ndim != 1:
            raise _fail(prefix + "models", f"must be 1-D, got shape {models_arr.shape}")
        names = tuple(str(m) for m in models_arr.tolist())
        if len(names) < 2:
            raise _fail(prefix + "models", f"need at least 2 models, got {len(names)}")
        if any(not n for n in names):
            raise _fail(prefix + "models", "model names must be non-empty")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise _fail(prefix + "models", f"duplicate model names: {', '.join(dup[:5])}")
        n_models = len(names)

        labels_arr = _as_int_array(labels, prefix + "labels")
        if labels_arr.ndim != 1:
            raise _fail(prefix + "labels", f"must be 1-D, got shape {labels_arr.shape}")
        n_samples = labels_arr.shape[0]
        if n_samples == 0:
            raise _fail(prefix + "labels", "no samples")
        if labels_arr.min() < 0:
            raise _fail(prefix + "labels", f"negative label {int(labels_arr.min())}")

        if probs is None and preds is None:
            raise _fail(prefix + "probs", "bundle needs at least one of 'probs' and 'preds'")

        probs_arr = None
        if probs is not None:
            probs_arr = np.asarray(probs)
            if probs_arr.dtype.kind not in "fiub":
                raise _fail(prefix + "probs", f"must be numeric, got dtype {probs_arr.dtype}")
            probs_arr = probs_arr.astype(np.float64)
            if probs_arr.ndim != 3 or probs_arr.shape[:2] != (n_models, n_samples):
                raise _fail(
                    prefix + "probs",
                    f"shape {probs_arr.shape} does not match (n_models={n_models}, "
                    f"n_samples={n_samples}, n_classes)",
                )
            if probs_arr.shape[2] < 1:
                raise _fail(prefix + "probs", "needs at least one class column")
            if not np.isfinite(probs_arr).all():
                raise _fail(prefix + "probs", "contains NaN or inf")
            if (probs_arr < 0).any():
                raise _fail(prefix + "probs", "contains negative scores")

        if n_classes is None:
            if probs_arr is not None:
                n_classes = probs_arr.shape[2]
            else:
                top = int(labels_arr.max())
                if preds is not None:
                    pa = _as_int_array(preds, prefix + "preds")
                    if pa.size:
                        top = max(top, int(pa.max()))
                n_classes = top + 1
        n_classes = int(n_classes)
        if not 1 <= n_classes <= MAX_CLASSES:
            raise _fail(
                prefix + "labels",
                f"{n_classes} classes implied (largest label or prediction + 1); at most "
                f"{MAX_CLASSES} are supported",
            )
        if probs_arr is not None and probs_arr.shape[2] != n_classes:
            raise _fail(
                prefix + "probs",
                f"has {probs_arr.shape[2]} class columns but n_classes is {n_classes}",
            )
        if labels_arr.max() >= n_classes:
            raise _fail(
                prefix + "labels",
                f"label {int(labels_arr.max())} out of range [0, {n_classes})",
            )

        if preds is not None:
            preds_arr = _as_int_array(preds, prefix + "preds")
            if preds_arr.shape != (n_models, n_samples):
                raise _fail(
                    prefix + "preds",
                    f"shape {preds_arr.shape} does not match (n_models={n_models}, "
                    f"n_samples={n_samples})",
                )
            if preds_arr.size and preds_arr.min() < -1:
                raise _fail(prefix + "preds", f"prediction {int(preds_arr.min())} below -1")
            if preds_arr.size and preds_arr.max() >= n_classes:
                raise _fail(
                    prefix + "preds",
                    f"prediction {int(preds_arr.max())} out of range [-1, {n_classes})",
                )
            if probs_arr is not None and not np.array_equal(
                preds_arr, predictions_from_scores(probs_arr)
            ):
                raise _fail(
                    prefix + "preds", "disagrees with the argmax of 'probs' (lowest index on ties)"
                )
        else:
            preds_arr = predictions_from_scores(probs_arr)

        split_arr = None
        if split is not None:
            split_arr = np.asarray(split).astype(str)
            if split_arr.shape != (n_samples,):
                raise _fail(prefix + "split", f"shape {split_arr.shape} != ({n_samples},)")
            bad = sorted(set(split_arr.tolist()) - set(SPLIT_NAMES))
            if bad:
                raise _fail(
                    prefix + "split",
                    f"unknown split name(s) {', '.join(map(repr, bad[:3]))}; "
                    f"use {', '.join(SPLIT_NAMES)}",
                )
        ids_arr = _per_sample(sample_ids, prefix + "sample_ids", n_samples)
        groups_arr = _per_sample(groups, prefix + "groups", n_samples)

        return cls(
            models=names,
            labels=_readonly(labels_arr.astype(np.int64)),
            preds=_readonly(preds_arr.astype(np.int64)),
            probs=None if probs_arr is None else _readonly(probs_arr),
            n_classes=n_classes,
            split=None if split_arr is None else _readonly(split_arr),
            sample_ids=ids_arr,
            groups=groups_arr,
            task=task,
        )

    # ------------------------------------------------------------------ shapes
    @property
    def n_models(self) -> int:
        """Number of models ``M``."""
        return len(self.models)

    @property
    def n_samples(self) -> int:
        """Number of samples ``N``."""
        return int(self.labels.shape[0])

    @property
    def errors(self) -> np.ndarray:
        """Error matrix ``E`` of shape ``(n_models, n_samples)``: 1 where a model is wrong.

        An abstention (``-1``) counts as wrong (CONTRACT §2).
        """
        return (self.preds != self.labels[None, :]).astype(np.int8)

    def accuracies(self) -> np.ndarray:
        """Accuracy of each model, shape ``(n_models,)``."""
        return 1.0 - self.errors.mean(axis=1)

    def oracle_accuracy(self) -> float:
        """Fraction of samples on which at least one model is right."""
        return float((self.errors.min(axis=0) == 0).mean())

    # ------------------------------------------------------------------ selection
    def model_indices(self, names: Sequence[str]) -> list[int]:
        """Indices of the named models; raises :class:`BundleError` for an unknown name."""
        index = {m: i for i, m in enumerate(self.models)}
        out = []
        for name in names:
            if name not in index:
                raise BundleError(
                    f"team: unknown model {name!r}; models are {', '.join(self.models)}"
                )
            out.append(index[name])
        return out

    def select_samples(self, mask_or_index: Any) -> Bundle:
        """A new bundle restricted to some samples (boolean mask or integer indices)."""
        idx = np.asarray(mask_or_index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        if idx.size == 0:
            raise BundleError("samples: selection is empty")

        def take(a: np.ndarray | None, axis: int = 0) -> np.ndarray | None:
            return None if a is None else _readonly(np.take(a, idx, axis=axis))

        return dataclasses.replace(
            self,
            labels=take(self.labels),
            preds=take(self.preds, 1),
            probs=take(self.probs, 1),
            split=take(self.split),
            sample_ids=take(self.sample_ids),
            groups=take(self.groups),
        )

    def select_split(self, name: str) -> Bundle:
        """The samples of one split (``"train"``, ``"val"`` or ``"test"``)."""
        if self.split is None:
            raise BundleError(
                "split: this bundle has no 'split' key; add one or use ensembles.with_random_split"
            )
        if name not in SPLIT_NAMES:
            raise BundleError(f"split: unknown split {name!r}; use {', '.join(SPLIT_NAMES)}")
        mask = self.split == name
        if not mask.any():
            raise BundleError(f"split: no samples in split {name!r}")
        return self.select_samples(mask)

    def select_models(self, names_or_indices: Sequence[str] | Sequence[int]) -> Bundle:
        """A new bundle with only some models, in the order given."""
        items = list(names_or_indices)
        idx = (
            self.model_indices(items)  # type: ignore[arg-type]
            if items and isinstance(items[0], str)
            else [int(i) for i in items]
        )
        if len(idx) < 2:
            raise BundleError(f"models: need at least 2 models, got {len(idx)}")
        return dataclasses.replace(
            self,
            models=tuple(self.models[i] for i in idx),
            preds=_readonly(self.preds[idx]),
            probs=None if self.probs is None else _readonly(self.probs[idx]),
        )

    def with_split(self, split: Any) -> Bundle:
        """A copy with a new per-sample ``split`` array (validated)."""
        return Bundle.create(
            models=self.models,
            labels=self.labels,
            probs=self.probs,
            preds=self.preds,
            n_classes=self.n_classes,
            split=split,
            sample_ids=self.sample_ids,
            groups=self.groups,
            task=self.task,
        )


def predictions_from_scores(probs: np.ndarray) -> np.ndarray:
    """Hard predictions from scores: argmax (lowest index on ties), ``-1`` for an all-zero row.

    Args:
        probs: non-negative scores, shape ``(..., n_classes)``.

    Returns:
        int64 array of shape ``probs.shape[:-1]``.

    Example:
        >>> predictions_from_scores(np.array([[0.2, 0.2, 0.1], [0.0, 0.0, 0.0]])).tolist()
        [0, -1]
    """
    probs = np.asarray(probs)
    pred = np.argmax(probs, axis=-1)  # numpy argmax: the first maximal index
    return np.where((probs > 0).any(axis=-1), pred, -1).astype(np.int64)


def _as_int_array(value: Any, key: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind == "b":
        raise _fail(key, "must be integers, got booleans")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise _fail(key, "contains NaN or inf")
        if not (arr == np.round(arr)).all():
            raise _fail(key, "must be integers, got non-integral floats")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise _fail(key, f"must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _per_sample(value: Any, key: str, n_samples: int) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.shape != (n_samples,):
        raise _fail(key, f"shape {arr.shape} != ({n_samples},)")
    return _readonly(arr)


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a
