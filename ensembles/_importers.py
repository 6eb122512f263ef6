"""Build bundles from fitted scikit-learn classifiers or from JSON-lines files."""

from __future__ import annotations

import gzip
import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._bundle import Bundle, BundleError, predictions_from_scores

__all__ = ["from_jsonl", "from_sklearn"]


# ---------------------------------------------------------------------------------- sklearn
def from_sklearn(
    estimators: Mapping[str, Any] | Sequence[Any],
    X: Any,
    y: Any = None,
    *,
    names: Sequence[str] | None = None,
    split: Any = None,
    sample_ids: Any = None,
    n_classes: int | None = None,
    prediction: str = "predict",
    task: str | None = None,
) -> Bundle:
    """A bundle of the outputs of fitted classifiers on ``X``.

    Each estimator's scores come from ``predict_proba(X)`` when it has one, with its columns
    (``classes_``) placed at those class indices in the global class space ``0..C-1``; an
    estimator without ``predict_proba`` (e.g. ``RidgeClassifier``, ``SVC(probability=False)``)
    contributes the one-hot of ``predict(X)``. ``decision_function`` is never used. The bundle
    therefore always has ``probs``. Each model's hard prediction (``preds``) is its own
    ``predict(X)`` by default, which is what the model would answer when used alone; for some
    estimators it differs from the argmax of ``predict_proba`` (e.g. ``SVC(probability=True)``,
    whose probabilities come from a separate calibration). ``prediction="argmax"`` uses the
    argmax of the scores instead (lowest index on ties).

    Args:
        estimators: ``{name: fitted classifier}``, or a sequence of fitted classifiers.
        X: the samples, anything the estimators accept (array, sparse matrix, DataFrame).
        y: integer labels in ``[0, C)``, one per row of ``X``; omit (``None``) for new,
            unlabeled data (e.g. to apply a fitted fuser).
        names: model names for a sequence of estimators; default: the class names, with
            ``_2``, ``_3``, ... appended to repeats. Not allowed with a mapping.
        split: optional ``train``/``val``/``test`` per sample.
        sample_ids: optional id per sample (kept through splits and into fuser outputs).
        n_classes: ``C``; default: one more than the largest label or estimator class.
        prediction: ``"predict"`` (each model's ``predict(X)``) or ``"argmax"`` (argmax of
            its scores).
        task: optional task name of the bundle.

    Returns:
        A validated :class:`~ensembles.Bundle` with ``probs`` of shape ``(M, N, C)``.

    Raises:
        BundleError: an estimator is unfitted or not a classifier, its classes are not integers
            in ``[0, C)``, its outputs do not match ``len(y)`` rows, ``X`` and ``y`` differ in
            length, bad names, or any check of :meth:`Bundle.create` fails.

    Example:
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.linear_model import LogisticRegression, RidgeClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> models = [LogisticRegression(max_iter=500).fit(X, y), RidgeClassifier().fit(X, y)]
        >>> b = from_sklearn(models, X, y)
        >>> b.models, b.probs.shape
        (('LogisticRegression', 'RidgeClassifier'), (2, 150, 3))
    """
    if prediction not in ("predict", "argmax"):
        raise BundleError(f"prediction: expected 'predict' or 'argmax', got {prediction!r}")
    pairs = _named_estimators(estimators, names)
    rows = _n_rows(X)
    labels = None
    if y is not None:
        labels = np.asarray(y)
        if labels.ndim != 1:
            raise BundleError(f"y: must be 1-D, got shape {labels.shape}")
        n = labels.shape[0]
        if rows is not None and rows != n:
            raise BundleError(f"X: has {rows} rows but y has {n} labels")
    elif rows is None:
        raise BundleError("X: cannot tell its number of rows; pass y or an array-like X")
    else:
        n = rows

    classes = [_classes_of(name, est) for name, est in pairs]
    if n_classes is None:
        top = max([int(c.max()) for c in classes if c.size] + [-1])
        if labels is not None and labels.size and labels.dtype.kind in "iu":
            top = max(top, int(labels.max()))
        n_classes = top + 1
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 1:
        raise BundleError(f"n_classes: expected a positive integer, got {n_classes!r}")
    n_classes = int(n_classes)
    for (name, _), cls in zip(pairs, classes, strict=True):
        if cls.size and (cls.min() < 0 or cls.max() >= n_classes):
            raise BundleError(
                f"estimators[{name!r}]: classes_ {cls.tolist()} outside [0, {n_classes})"
            )

    probs = np.zeros((len(pairs), n, n_classes), dtype=np.float64)
    preds = np.zeros((len(pairs), n), dtype=np.int64)
    for m, ((name, est), cls) in enumerate(zip(pairs, classes, strict=True)):
        has_proba = hasattr(est, "predict_proba")
        if has_proba:
            out = _call(name, est, "predict_proba", X)
            if out.ndim != 2 or out.shape != (n, cls.size):
                raise BundleError(
                    f"estimators[{name!r}]: predict_proba gave shape {out.shape}, "
                    f"expected ({n}, {cls.size})"
                )
            if out.dtype.kind not in "fiub":
                raise BundleError(f"estimators[{name!r}]: predict_proba gave dtype {out.dtype}")
            probs[m][:, cls] = out
            preds[m] = predictions_from_scores(probs[m])
        if not has_proba or prediction == "predict":
            pred = _call(name, est, "predict", X)
            if pred.shape != (n,):
                raise BundleError(
                    f"estimators[{name!r}]: predict gave shape {pred.shape}, expected ({n},)"
                )
            pred = _integral(pred, f"estimators[{name!r}]: predict")
            if pred.size and (pred.min() < 0 or pred.max() >= n_classes):
                raise BundleError(
                    f"estimators[{name!r}]: predict gave classes outside [0, {n_classes})"
                )
            preds[m] = pred
            if not has_proba:
                probs[m, np.arange(n), pred] = 1.0
    return Bundle.create(
        models=[name for name, _ in pairs],
        labels=labels,
        probs=probs,
        preds=preds,
        n_classes=n_classes,
        split=split,
        sample_ids=sample_ids,
        task=task,
    )


def cross_fit_sklearn(
    estimators: Mapping[str, Any] | Sequence[Any],
    X: Any,
    y: Any,
    *,
    split: Any = None,
    fit_on: str = "train",
    folds: int = 5,
    seed: int = 0,
    names: Sequence[str] | None = None,
    sample_ids: Any = None,
    n_classes: int | None = None,
    prediction: str = "predict",
    task: str | None = None,
) -> tuple[Bundle, dict[str, Any]]:
    """Fit classifiers and bundle their outputs so that no row is seen by the model scoring it.

    Each estimator is cloned and fitted on the ``fit_on`` rows (every row when ``split`` is
    ``None``); those fitted models are returned and score every other row. On the fitting rows
    themselves the bundle holds **out-of-fold** outputs: the rows are cut into ``folds``
    stratified, seeded folds and each fold is scored by clones fitted on the other folds (what
    scikit-learn's ``StackingClassifier`` does for its meta-learner). Every row of the bundle
    is therefore an honest output, and a combiner may be chosen and fitted on the training rows
    too (``focal.recommend(bundle)`` selects on train+val by default), instead of only on the
    few rows the fitted models never saw, as with :func:`from_sklearn` on prefit models.
    Outputs are read as in :func:`from_sklearn`. Costs ``folds + 1`` fits per estimator.

    Args:
        estimators: ``{name: classifier}`` or a sequence of classifiers (fitted or not: each is
            cloned with ``sklearn.base.clone``).
        X: the samples (array, sparse matrix or DataFrame).
        y: integer labels in ``[0, C)``, one per row.
        split: optional ``train``/``val``/``test`` per sample.
        fit_on: the split whose rows fit the models (needs ``split``).
        folds: number of cross-fitting folds (≥ 2).
        seed: seed of the fold assignment.
        names, sample_ids, n_classes, prediction, task: as in :func:`from_sklearn`.

    Returns:
        ``(bundle, fitted)``: the validated :class:`~ensembles.Bundle` and
        ``{name: estimator fitted on the fit_on rows}`` (apply them to new data with
        :func:`from_sklearn`).

    Raises:
        BundleError: no ``y``, ``fit_on`` rows missing or fewer than ``folds``, bad ``folds``, an
            estimator fails to fit, or any check of :func:`from_sklearn`.

    Example:
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.linear_model import LogisticRegression
        >>> from sklearn.naive_bayes import GaussianNB
        >>> X, y = load_iris(return_X_y=True)
        >>> b, fitted = cross_fit_sklearn([LogisticRegression(max_iter=500), GaussianNB()],
        ...                               X, y, folds=3, seed=0)
        >>> b.probs.shape, sorted(fitted)
        ((2, 150, 3), ['GaussianNB', 'LogisticRegression'])
    """
    from sklearn.base import clone
    from sklearn.model_selection import KFold, StratifiedKFold

    if y is None:
        raise BundleError("y: cross-fitting needs labels")
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise BundleError(f"y: must be 1-D, got shape {labels.shape}")
    labels = _integral(labels, "y")
    n = labels.shape[0]
    rows = _n_rows(X)
    if rows is not None and rows != n:
        raise BundleError(f"X: has {rows} rows but y has {n} labels")
    if isinstance(folds, bool) or not isinstance(folds, numbers.Integral) or folds < 2:
        raise BundleError(f"folds: expected an integer >= 2, got {folds!r}")
    if split is None:
        fit_rows = np.arange(n)
    else:
        split_arr = np.asarray(split).astype(str)
        if split_arr.shape != (n,):
            raise BundleError(f"split: expected {n} entries, got shape {split_arr.shape}")
        fit_rows = np.flatnonzero(split_arr == fit_on)
    if fit_rows.size < folds:
        raise BundleError(f"fit_on: {fit_rows.size} {fit_on!r} rows, fewer than folds={folds}")
    pairs = _named_estimators(estimators, names)
    if n_classes is None:
        n_classes = int(labels.max()) + 1 if n else 1

    def take(rows_: np.ndarray) -> Any:
        return X.iloc[rows_] if hasattr(X, "iloc") else X[rows_]

    def fitted_on(rows_: np.ndarray) -> dict[str, Any]:
        out = {}
        for name, est in pairs:
            model = clone(est)
            try:
                model.fit(take(rows_), labels[rows_])
            except Exception as exc:  # estimator failures become one line
                text = " ".join(str(exc).split())[:200]
                raise BundleError(
                    f"estimators[{name!r}]: fit failed: {type(exc).__name__}: {text}"
                ) from None
            out[name] = model
        return out

    probs = np.zeros((len(pairs), n, n_classes), dtype=np.float64)
    preds = np.zeros((len(pairs), n), dtype=np.int64)

    def score(models: dict[str, Any], rows_: np.ndarray) -> None:
        part = from_sklearn(models, take(rows_), labels[rows_], n_classes=n_classes,
                            prediction=prediction)  # fmt: skip
        probs[:, rows_] = part.probs
        preds[:, rows_] = part.preds

    final = fitted_on(fit_rows)
    others = np.setdiff1d(np.arange(n), fit_rows)
    if others.size:
        score(final, others)
    counts = np.bincount(labels[fit_rows])
    stratified = counts[counts > 0].min() >= folds
    kind = StratifiedKFold if stratified else KFold  # KFold: a class too rare to stratify
    for inner_fit, inner_out in kind(folds, shuffle=True, random_state=seed).split(
        fit_rows, labels[fit_rows]
    ):
        score(fitted_on(fit_rows[inner_fit]), fit_rows[inner_out])
    bundle = Bundle.create(
        models=[name for name, _ in pairs],
        labels=labels,
        probs=probs,
        preds=preds,
        n_classes=n_classes,
        split=split,
        sample_ids=sample_ids,
        task=task,
    )
    return bundle, final


def _named_estimators(
    estimators: Mapping[str, Any] | Sequence[Any], names: Sequence[str] | None
) -> list[tuple[str, Any]]:
    if isinstance(estimators, Mapping):
        if names is not None:
            raise BundleError(
                "names: not allowed with a mapping of estimators (its keys are names)"
            )
        pairs = [(k, v) for k, v in estimators.items()]
        for k, _ in pairs:
            if not isinstance(k, str):
                raise BundleError(f"estimators: model names must be strings, got {k!r}")
        return pairs
    if hasattr(estimators, "predict") or isinstance(estimators, str | bytes):
        raise BundleError("estimators: pass a mapping or a sequence of fitted classifiers")
    try:
        ests = list(estimators)
    except TypeError:
        raise BundleError(
            f"estimators: pass a mapping or a sequence, got {type(estimators).__name__}"
        ) from None
    if names is None:
        used: set[str] = set()
        out = []
        for est in ests:
            base = type(est).__name__
            name, k = base, 1
            while name in used:
                k += 1
                name = f"{base}_{k}"
            used.add(name)
            out.append((name, est))
        return out
    names = list(names)
    if len(names) != len(ests):
        raise BundleError(f"names: {len(names)} names for {len(ests)} estimators")
    return list(zip((str(n) for n in names), ests, strict=True))


def _classes_of(name: str, est: Any) -> np.ndarray:
    where = f"estimators[{name!r}]"
    if not hasattr(est, "predict"):
        raise BundleError(f"{where}: {type(est).__name__} is not a classifier (no predict)")
    try:
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        pass
    else:
        try:
            check_is_fitted(est)
        except NotFittedError:
            raise BundleError(f"{where}: {type(est).__name__} is not fitted") from None
        except TypeError:
            pass  # not a scikit-learn estimator: fall back to classes_ below
    if not hasattr(est, "classes_"):
        raise BundleError(f"{where}: no classes_; not a fitted classifier")
    cls = np.asarray(est.classes_)
    if cls.ndim != 1:
        raise BundleError(f"{where}: classes_ must be 1-D (multi-output is not supported)")
    return _integral(cls, f"{where}: classes_")


def _integral(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all():
        return arr.astype(np.int64)
    raise BundleError(f"{where}: must be integer class indices, got dtype {arr.dtype}")


def _call(name: str, est: Any, method: str, X: Any) -> np.ndarray:
    try:
        return np.asarray(getattr(est, method)(X))
    except Exception as exc:  # estimator failures become one line
        text = " ".join(str(exc).split())[:200]
        raise BundleError(
            f"estimators[{name!r}]: {method} failed: {type(exc).__name__}: {text}"
        ) from None


def _n_rows(X: Any) -> int | None:
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) >= 1:
        return int(shape[0])
    try:
        return len(X)
    except TypeError:
        return None


# ---------------------------------------------------------------------------------- JSON lines
def from_jsonl(path: str | os.PathLike[str], *, task: str | None = None) -> Bundle:
    """A bundle from a JSON-lines file, one sample per line.

    Each non-blank line is a JSON object::

        {"id": "q17", "label": 2, "answers": {"gpt": 2, "llama": null},
         "probs": {"gpt": [0.1, 0.2, 0.7], "llama": [0, 0, 0]}, "split": "test", "group": "math"}

    - ``label`` (int, required): the gold class index.
    - ``answers`` (object, required unless ``probs`` is given): model name → class index, or
      ``null`` for "no answer". A model missing from a line's ``answers`` also abstains there
      (``-1``). Models are ordered by first appearance in the file.
    - ``probs`` (object, optional): model name → list of ``C`` non-negative scores. If any line
      has ``probs``, the bundle has ``probs``: every answered (model, line) pair then needs a
      scores list, whose argmax (lowest index on ties; all-zero = no answer) must equal the
      answer when both are given; a model with neither answer nor scores on a line gets an
      all-zero row. Without ``probs`` anywhere, ``C`` is one more than the largest label or
      answer.
    - ``id`` (any JSON value), ``split`` (``train``/``val``/``test``), ``group`` (str):
      optional, but each either on every line or on none. Integer ids give an integer
      ``sample_ids`` array, other ids are stored as strings (non-strings as their JSON text);
      ids must be unique.

    A path ending in ``.gz`` is read through gzip. The file is UTF-8.

    Args:
        path: the ``.jsonl`` (or ``.jsonl.gz``) file.
        task: optional task name of the bundle.

    Returns:
        A validated :class:`~ensembles.Bundle`.

    Raises:
        BundleError: one line naming the file and the line number (1-based) for bad JSON or a
            malformed record, or the key for a bundle-level problem.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "runs.jsonl"
        >>> _ = p.write_text('{"id": 1, "label": 0, "answers": {"a": 0, "b": null}}\\n'
        ...                  '{"id": 2, "label": 1, "answers": {"a": 0, "b": 1}}\\n')
        >>> b = from_jsonl(p)
        >>> b.models, b.preds.tolist()
        (('a', 'b'), [[0, 0], [-1, 1]])
    """
    p = Path(path)
    records = _read_jsonl(p)
    if not records:
        raise BundleError(f"{p}: no samples (file has no non-blank lines)")

    models: dict[str, None] = {}
    labels: list[int] = []
    answers: list[dict[str, int | None]] = []
    scores: list[dict[str, list[float]]] = []
    extras: dict[str, list[Any]] = {"id": [], "split": [], "group": []}
    extra_lines: dict[str, list[int]] = {"id": [], "split": [], "group": []}

    for line_no, rec in records:
        where = f"{p}: line {line_no}"
        if not isinstance(rec, dict):
            raise BundleError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        if "label" not in rec:
            raise BundleError(f"{where}: missing 'label'")
        labels.append(_json_int(rec["label"], f"{where}: label"))
        if "answers" not in rec and "probs" not in rec:
            raise BundleError(f"{where}: needs 'answers' (or 'probs')")
        ans = rec.get("answers", {})
        if not isinstance(ans, dict):
            raise BundleError(f"{where}: answers must be an object of model -> int or null")
        row: dict[str, int | None] = {}
        for name, value in ans.items():
            models.setdefault(name, None)
            row[name] = None if value is None else _json_int(value, f"{where}: answers[{name!r}]")
        answers.append(row)
        sc = rec.get("probs", {})
        if not isinstance(sc, dict):
            raise BundleError(f"{where}: probs must be an object of model -> list of numbers")
        srow: dict[str, list[float]] = {}
        for name, value in sc.items():
            models.setdefault(name, None)
            srow[name] = _json_scores(value, f"{where}: probs[{name!r}]")
        scores.append(srow)
        for field in extras:
            if field in rec:
                extras[field].append(rec[field])
                extra_lines[field].append(line_no)

    n = len(records)
    for field, values in extras.items():
        if values and len(values) != n:
            given_on = set(extra_lines[field])
            missing = next(ln for ln, _ in records if ln not in given_on)
            raise BundleError(
                f"{p}: line {missing}: missing {field!r} (given on other lines; all or none)"
            )

    names = list(models)
    preds = np.full((len(names), n), -1, dtype=np.int64)
    for i, row in enumerate(answers):
        for m, name in enumerate(names):
            value = row.get(name)
            if value is not None:
                preds[m, i] = value

    probs = None
    if any(scores):
        first = next(len(v) for s in scores for v in s.values())
        for (line_no, _), srow in zip(records, scores, strict=True):
            for name, v in srow.items():
                if len(v) != first:
                    raise BundleError(
                        f"{p}: line {line_no}: probs[{name!r}] has {len(v)} scores, "
                        f"earlier lines have {first}"
                    )
        n_cls = first
        if n_cls < 1:
            raise BundleError(f"{p}: probs: lists are empty")
        probs = np.zeros((len(names), n, n_cls), dtype=np.float64)
        for i, srow in enumerate(scores):
            for m, name in enumerate(names):
                if name in srow:
                    probs[m, i] = srow[name]
        derived = predictions_from_scores(probs)
        for i, ((line_no, _), srow, arow) in enumerate(zip(records, scores, answers, strict=True)):
            for m, name in enumerate(names):
                if name in srow:
                    if name in arow:
                        given = -1 if arow[name] is None else arow[name]
                        if given != derived[m, i]:
                            raise BundleError(
                                f"{p}: line {line_no}: answers[{name!r}] = {given} disagrees "
                                f"with the argmax of probs[{name!r}] ({derived[m, i]})"
                            )
                elif arow.get(name) is not None:
                    raise BundleError(
                        f"{p}: line {line_no}: probs[{name!r}] missing for an answered model "
                        "(other lines give probs)"
                    )
        preds = derived

    ids = _ids(extras["id"], records, p) if extras["id"] else None
    try:
        return Bundle.create(
            models=names,
            labels=np.asarray(labels, dtype=np.int64),
            probs=probs,
            preds=preds,
            split=np.asarray(extras["split"]).astype(str) if extras["split"] else None,
            sample_ids=ids,
            groups=np.asarray([str(g) for g in extras["group"]]) if extras["group"] else None,
            task=task,
        )
    except BundleError as exc:
        raise BundleError(f"{p}: {exc}") from None


def _read_jsonl(p: Path) -> list[tuple[int, Any]]:
    try:
        if p.is_dir():
            raise BundleError(f"{p}: is a directory, not a JSON-lines file")
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt", encoding="utf-8") as fh:
            lines = fh.readlines()
    except BundleError:
        raise
    except FileNotFoundError:
        raise BundleError(f"{p}: no such file") from None
    except UnicodeDecodeError as exc:
        raise BundleError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (OSError, EOFError) as exc:
        text = getattr(exc, "strerror", None) or " ".join(str(exc).split())
        raise BundleError(f"{p}: cannot read ({text})") from None
    records = []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append((line_no, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise BundleError(
                f"{p}: line {line_no}: bad JSON ({exc.msg} at column {exc.colno})"
            ) from None
    return records


def _json_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BundleError(f"{where}: expected an integer, got {json.dumps(value)[:40]}")
    return value


def _json_scores(value: Any, where: str) -> list[float]:
    if not isinstance(value, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        raise BundleError(f"{where}: expected a list of numbers")
    if not all(math.isfinite(v) and v >= 0 for v in value):
        raise BundleError(f"{where}: scores must be finite and non-negative")
    return [float(v) for v in value]


def _ids(values: list[Any], records: list[tuple[int, Any]], p: Path) -> np.ndarray:
    keys: list[Any] = values
    if all(
        isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63 for v in values
    ):
        arr = np.asarray(values, dtype=np.int64)
    else:
        keys = [v if isinstance(v, str) else json.dumps(v) for v in values]
        arr = np.asarray(keys, dtype=str)
    seen: dict[Any, int] = {}
    for (line_no, _), key in zip(records, keys, strict=True):
        if key in seen:
            raise BundleError(
                f"{p}: line {line_no}: duplicate id {key!r} (first on line {seen[key]})"
            )
        seen[key] = line_no
    return arr
