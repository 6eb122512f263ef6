"""The cached-outputs bundle: the outputs of M models on N samples of one task.

The format is described for users in ``docs/bundle.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from .util import InputError

__all__ = [
    "DEFAULT_THRESHOLD",
    "MAX_CLASSES",
    "SPLIT_NAMES",
    "Bundle",
    "BundleError",
    "predictions_from_scores",
]

SPLIT_NAMES = ("train", "val", "test")

#: Largest number of classes a bundle may have (one-hot votes are (M, N, C) arrays).
MAX_CLASSES = 1 << 16

#: Default quality threshold of an open-ended bundle: correct when ``quality >= threshold``.
DEFAULT_THRESHOLD = 0.5


class BundleError(InputError):
    """A bundle (or a request against one) is malformed; the message is one line naming the key."""


def _fail(key: str, problem: str) -> BundleError:
    return BundleError(f"{key}: {problem}")


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Bundle:
    """Cached outputs of ``M`` models on ``N`` samples of one task.

    Build one with :meth:`Bundle.create` (which validates), or load one with
    :func:`ensembles.load_bundle`. Arrays are read-only NumPy arrays. The format, with every
    key, shape and convention, is described in ``docs/bundle.md``.

    Three kinds of bundle exist:

    * a **labelled** bundle has ``labels`` and class outputs (``probs`` and/or ``preds``);
    * an **unlabeled** bundle has class outputs but ``labels is None`` (e.g. outputs on new
      data, to apply a fitted fuser). Anything that needs the truth (the error matrix,
      accuracies, team accuracy) raises :class:`BundleError` naming ``labels``;
    * an **open-ended** bundle has ``quality`` (judged quality of each output in ``[0, 1]``,
      NaN = not judged) and no class outputs. An output counts as correct when
      ``quality >= threshold``. Its ``preds``/``labels`` hold the *correctness view* (``labels``
      all 0, ``preds`` 0 where correct and 1 where wrong, ``n_classes == 2``), so every
      computation that needs only the error matrix (diversity metrics, focal scoring, search)
      works unchanged; ``has_labels`` is ``False`` and voting combiners refuse it.

    Attributes:
        models: model names, in member order, shape ``(n_models,)``.
        labels: ground-truth class indices in ``[0, n_classes)``, shape ``(n_samples,)``;
            ``None`` for an unlabeled bundle; the correctness view (all 0) for an open-ended one.
        preds: hard predictions, ``-1`` = abstain, shape ``(n_models, n_samples)``. Always
            present: derived from ``probs`` (argmax, lowest index on ties, ``-1`` for an
            all-zero row) when the source had only scores. When both are given, ``preds`` are
            the models' own decisions and may differ from the argmax of ``probs`` (e.g.
            scikit-learn's ``SVC.predict`` vs ``predict_proba``).
        probs: non-negative per-class scores, shape ``(n_models, n_samples, n_classes)``, or
            ``None``.
        n_classes: number of classes ``C`` (2 for an open-ended bundle: correct / wrong).
        split: ``"train"``/``"val"``/``"test"`` per sample, or ``None``.
        sample_ids: per-sample ids, or ``None``.
        groups: per-sample sub-task or category, or ``None``.
        task: name of the task (for multi-task files), or ``None``.
        quality: judged quality in ``[0, 1]`` (NaN = not judged), shape
            ``(n_models, n_samples)``, for an open-ended bundle; else ``None``.
        threshold: quality at or above which an output counts as correct (open-ended bundles).

    Example:
        >>> import numpy as np
        >>> b = Bundle.create(models=["a", "b"], labels=[0, 1, 1], preds=[[0, 1, 0], [1, 1, 1]])
        >>> b.n_models, b.n_samples, b.accuracies().round(3).tolist()
        (2, 3, [0.667, 0.667])
        >>> b
        Bundle(models=2, samples=3, classes=2, preds)
        >>> q = Bundle.create(models=["a", "b"], quality=[[1.0, 0.5, 0.0], [0.0, np.nan, 1.0]])
        >>> q.errors.tolist(), q.oracle_accuracy()
        ([[0, 0, 1], [1, 1, 0]], 0.8333333333333334)
    """

    models: tuple[str, ...]
    labels: np.ndarray | None
    preds: np.ndarray
    probs: np.ndarray | None
    n_classes: int
    split: np.ndarray | None = None
    sample_ids: np.ndarray | None = None
    groups: np.ndarray | None = None
    task: str | None = None
    quality: np.ndarray | None = None
    threshold: float = DEFAULT_THRESHOLD

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        *,
        models: Sequence[str],
        labels: Any = None,
        probs: Any = None,
        preds: Any = None,
        n_classes: int | None = None,
        split: Any = None,
        sample_ids: Any = None,
        groups: Any = None,
        task: str | None = None,
        quality: Any = None,
        threshold: Any = None,
    ) -> Bundle:
        """Validate raw arrays and build a bundle.

        Args:
            models: unique, non-empty model names (at least 2).
            labels: true class per sample; omit for an unlabeled or open-ended bundle.
            probs: per-class scores ``(M, N, C)``.
            preds: hard predictions ``(M, N)``, ``-1`` = abstain.
            n_classes: ``C``; default: from ``probs``, else the largest label or prediction + 1.
            split: ``train``/``val``/``test`` per sample.
            sample_ids: per-sample ids.
            groups: per-sample sub-task or category.
            task: task name.
            quality: judged quality ``(M, N)`` in ``[0, 1]``, NaN = not judged: makes an
                open-ended bundle, which takes no ``labels``, ``probs``, ``preds`` or
                ``n_classes``.
            threshold: for ``quality``: an output is correct when ``quality >= threshold``;
                a number in ``(0, 1]``, default 0.5.

        Raises:
            BundleError: one line naming the key and the problem, for any malformed input.

        Example:
            >>> Bundle.create(models=["a", "b"], probs=[[[0.9, 0.1]], [[0.3, 0.7]]]).preds.tolist()
            [[0], [1]]
        """
        prefix = f"{task}/" if task else ""
        names = _check_models(models, prefix)
        n_models = len(names)
        if quality is not None:
            for key, value in (("labels", labels), ("probs", probs), ("preds", preds)):
                if value is not None:
                    raise _fail(
                        prefix + key,
                        "an open-ended bundle (with 'quality') takes no labels, probs or preds; "
                        "its correctness comes from quality >= threshold",
                    )
            if n_classes is not None:
                raise _fail(prefix + "n_classes", "an open-ended bundle (with 'quality') has none")
            q = _check_quality(quality, prefix, n_models)
            thr = _check_threshold(threshold, prefix)
            n_samples = q.shape[1]
            wrong = ~(q >= thr)  # NaN (not judged) compares False: wrong
            return cls(
                models=names,
                labels=_readonly(np.zeros(n_samples, dtype=np.int64)),
                preds=_readonly(wrong.astype(np.int64)),
                probs=None,
                n_classes=2,
                split=_check_split(split, prefix, n_samples),
                sample_ids=_per_sample(sample_ids, prefix + "sample_ids", n_samples),
                groups=_per_sample(groups, prefix + "groups", n_samples),
                task=task,
                quality=_readonly(q),
                threshold=thr,
            )
        if threshold is not None:
            raise _fail(prefix + "threshold", "given without 'quality'")

        labels_arr = None
        n_samples = None
        if labels is not None:
            labels_arr = _as_int_array(labels, prefix + "labels")
            if labels_arr.ndim != 1:
                raise _fail(prefix + "labels", f"must be 1-D, got shape {labels_arr.shape}")
            n_samples = labels_arr.shape[0]
            if n_samples == 0:
                raise _fail(prefix + "labels", "no samples")
            if labels_arr.min() < 0:
                raise _fail(prefix + "labels", f"negative label {int(labels_arr.min())}")

        if probs is None and preds is None:
            raise _fail(
                prefix + "probs",
                "bundle needs at least one of 'probs' and 'preds' (or 'quality')",
            )

        probs_arr = None
        if probs is not None:
            probs_arr = np.asarray(probs)
            if probs_arr.dtype.kind not in "fiub":
                raise _fail(prefix + "probs", f"must be numeric, got dtype {probs_arr.dtype}")
            probs_arr = probs_arr.astype(np.float64)
            if n_samples is None and probs_arr.ndim == 3:
                n_samples = probs_arr.shape[1]
            if probs_arr.ndim != 3 or probs_arr.shape[:2] != (n_models, n_samples):
                raise _fail(
                    prefix + "probs",
                    f"shape {probs_arr.shape} does not match (n_models={n_models}, "
                    f"n_samples={n_samples}, n_classes)",
                )
            if n_samples == 0:
                raise _fail(prefix + "probs", "no samples")
            if probs_arr.shape[2] < 1:
                raise _fail(prefix + "probs", "needs at least one class column")
            if not np.isfinite(probs_arr).all():
                raise _fail(prefix + "probs", "contains NaN or inf")
            if (probs_arr < 0).any():
                raise _fail(prefix + "probs", "contains negative scores")

        preds_arr = None
        if preds is not None:
            preds_arr = _as_int_array(preds, prefix + "preds")
            if n_samples is None and preds_arr.ndim == 2:
                n_samples = preds_arr.shape[1]
            if preds_arr.shape != (n_models, n_samples):
                raise _fail(
                    prefix + "preds",
                    f"shape {preds_arr.shape} does not match (n_models={n_models}, "
                    f"n_samples={n_samples})",
                )
            if n_samples == 0:
                raise _fail(prefix + "preds", "no samples")

        if n_classes is None:
            if probs_arr is not None:
                n_classes = probs_arr.shape[2]
            else:
                top = -1 if labels_arr is None else int(labels_arr.max())
                if preds_arr is not None and preds_arr.size:
                    top = max(top, int(preds_arr.max()))
                n_classes = max(top + 1, 1)
        if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
            raise _fail(prefix + "n_classes", f"must be an integer, got {n_classes!r}")
        n_classes = int(n_classes)
        if not 1 <= n_classes <= MAX_CLASSES:
            raise _fail(
                prefix + ("labels" if labels_arr is not None else "preds"),
                f"{n_classes} classes implied (largest label or prediction + 1); at most "
                f"{MAX_CLASSES} are supported",
            )
        if probs_arr is not None and probs_arr.shape[2] != n_classes:
            raise _fail(
                prefix + "probs",
                f"has {probs_arr.shape[2]} class columns but n_classes is {n_classes}",
            )
        if labels_arr is not None and labels_arr.max() >= n_classes:
            raise _fail(
                prefix + "labels",
                f"label {int(labels_arr.max())} out of range [0, {n_classes})",
            )

        if preds_arr is not None:
            if preds_arr.size and preds_arr.min() < -1:
                raise _fail(prefix + "preds", f"prediction {int(preds_arr.min())} below -1")
            if preds_arr.size and preds_arr.max() >= n_classes:
                raise _fail(
                    prefix + "preds",
                    f"prediction {int(preds_arr.max())} out of range [-1, {n_classes})",
                )
        else:
            preds_arr = predictions_from_scores(probs_arr)

        return cls(
            models=names,
            labels=None if labels_arr is None else _readonly(labels_arr.astype(np.int64)),
            preds=_readonly(preds_arr.astype(np.int64)),
            probs=None if probs_arr is None else _readonly(probs_arr),
            n_classes=n_classes,
            split=_check_split(split, prefix, n_samples),
            sample_ids=_per_sample(sample_ids, prefix + "sample_ids", n_samples),
            groups=_per_sample(groups, prefix + "groups", n_samples),
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
        return int(self.preds.shape[1])

    @property
    def has_labels(self) -> bool:
        """Whether the bundle has true class labels (``False`` for unlabeled and open-ended)."""
        return self.labels is not None and self.quality is None

    @property
    def is_open_ended(self) -> bool:
        """Whether the bundle is open-ended (correctness judged by ``quality``)."""
        return self.quality is not None

    def require_labels(self, what: str) -> None:
        """Raise :class:`BundleError` (one line naming ``what``) unless the bundle has labels.

        Example:
            >>> b = Bundle.create(models=["a", "b"], preds=[[0, 1], [1, 1]])
            >>> b.require_labels("stacking")
            Traceback (most recent call last):
            ...
            ensembles._bundle.BundleError: labels: stacking needs labels; this bundle has none ...
        """
        if self.quality is not None:
            raise BundleError(
                f"labels: {what} needs labels; this open-ended bundle has only 'quality' "
                "(use a router, which picks one member per sample)"
            )
        if self.labels is None:
            raise BundleError(
                f"labels: {what} needs labels; this bundle has none (unlabeled outputs can be "
                "combined or fused, not scored)"
            )

    @property
    def errors(self) -> np.ndarray:
        """Error matrix ``E`` of shape ``(n_models, n_samples)``: 1 where a model is wrong.

        An abstention (``-1``) counts as wrong; for an open-ended bundle an output is wrong
        when ``quality < threshold`` or not judged (NaN).

        Raises:
            BundleError: the bundle is unlabeled.
        """
        if self.labels is None:
            self.require_labels("the error matrix")
        return (self.preds != self.labels[None, :]).astype(np.int8)

    def accuracies(self) -> np.ndarray:
        """Accuracy of each model (fraction of samples it gets right), shape ``(n_models,)``."""
        return 1.0 - self.errors.mean(axis=1)

    def oracle_accuracy(self) -> float:
        """Oracle of the whole pool.

        For a labelled bundle, the fraction of samples on which at least one model is right;
        for an open-ended bundle, the mean over samples of the best member's ``quality``
        (not judged counts as 0).
        """
        if self.quality is not None:
            return float(np.where(np.isnan(self.quality), 0.0, self.quality).max(axis=0).mean())
        return float((self.errors.min(axis=0) == 0).mean())

    def __repr__(self) -> str:
        parts = []
        if self.task is not None:
            parts.append(f"task={self.task!r}")
        parts.append(f"models={self.n_models}")
        samples = f"samples={self.n_samples:,}"
        if self.split is not None:
            counts = [(s, int((self.split == s).sum())) for s in SPLIT_NAMES]
            samples += " [" + " / ".join(f"{s} {c:,}" for s, c in counts if c) + "]"
        parts.append(samples)
        if self.quality is not None:
            unjudged = int(np.isnan(self.quality).sum())
            parts.append(f"open-ended: quality (threshold {self.threshold:g}")
            parts[-1] += f", {unjudged:,} not judged)" if unjudged else ")"
        else:
            parts.append(f"classes={self.n_classes}")
            if self.probs is not None:
                parts.append("probs")
            parts.append("preds")
            if self.labels is None:
                parts.append("unlabeled")
        for name in ("sample_ids", "groups"):
            if getattr(self, name) is not None:
                parts.append(name)
        return f"Bundle({', '.join(parts)})"

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
        """A new bundle restricted to some samples (boolean mask or integer indices).

        Every per-sample array (labels, outputs, quality, split, ids, groups) follows.
        """
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
            quality=take(self.quality, 1),
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
            quality=None if self.quality is None else _readonly(self.quality[idx]),
        )

    def with_split(self, split: Any) -> Bundle:
        """A copy with a new per-sample ``split`` array (validated)."""
        prefix = f"{self.task}/" if self.task else ""
        return dataclasses.replace(self, split=_check_split(split, prefix, self.n_samples))


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


def _check_models(models: Any, prefix: str) -> tuple[str, ...]:
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
    return names


def _check_quality(quality: Any, prefix: str, n_models: int) -> np.ndarray:
    key = prefix + "quality"
    q = np.asarray(quality)
    if q.dtype.kind not in "fiub" or q.dtype.kind == "b":
        raise _fail(key, f"must be numbers in [0, 1], got dtype {q.dtype}")
    q = q.astype(np.float64)
    if q.ndim != 2 or q.shape[0] != n_models:
        raise _fail(key, f"shape {q.shape} does not match (n_models={n_models}, n_samples)")
    if q.shape[1] == 0:
        raise _fail(key, "no samples")
    if np.isinf(q).any():
        raise _fail(key, "contains inf (use NaN for 'not judged')")
    judged = q[~np.isnan(q)]
    if judged.size == 0:
        raise _fail(key, "every value is NaN (nothing judged)")
    if judged.min() < 0 or judged.max() > 1:
        bad = judged[(judged < 0) | (judged > 1)][0]
        raise _fail(key, f"value {bad:g} outside [0, 1]")
    return q


def _check_threshold(threshold: Any, prefix: str) -> float:
    key = prefix + "threshold"
    if threshold is None:
        return DEFAULT_THRESHOLD
    arr = np.asarray(threshold)
    if arr.shape != () or arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
        raise _fail(key, f"must be one number in (0, 1], got {threshold!r}")
    value = float(arr)
    if not (0.0 < value <= 1.0):
        raise _fail(key, f"{value:g} outside (0, 1]")
    return value


def _check_split(split: Any, prefix: str, n_samples: int) -> np.ndarray | None:
    if split is None:
        return None
    split_arr = np.asarray(split).astype(str)
    if split_arr.shape != (n_samples,):
        raise _fail(prefix + "split", f"shape {split_arr.shape} != ({n_samples},)")
    bad = sorted(set(split_arr.tolist()) - set(SPLIT_NAMES))
    if bad:
        raise _fail(
            prefix + "split",
            f"unknown split name(s) {', '.join(map(repr, bad[:3]))}; use {', '.join(SPLIT_NAMES)}",
        )
    return _readonly(split_arr)


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
