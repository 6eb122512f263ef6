"""Read and write bundles as ``.npz`` files (the format is described in ``docs/bundle.md``).

A *single-task* file holds the bundle keys at the top level: ``models``; ``labels`` (optional:
omitted for unlabeled outputs); ``probs`` and/or ``preds``, or ``quality`` with an optional
scalar ``threshold`` for an open-ended bundle; optional ``split``, ``sample_ids``, ``groups``.
A *multi-task* file
has a ``tasks`` key listing task names and one bundle per task under the prefix ``TASK/``
(``TASK/labels``, ``TASK/probs``, ...); ``models`` may be stored once at the top level, shared by
every task, or per task as ``TASK/models`` (the per-task array wins when both exist).

Outside strict mode the loader also accepts these aliases, as found in the shared data files:

==================  ==========================================================================
alias               meaning
==================  ==========================================================================
``scores``          ``probs``
``is_train`` (bool) ``split``: ``True`` → ``"train"``, ``False`` → ``"test"``
``question_id``     ``sample_ids``
``category``        ``groups``
``label_ok``        side information, ignored
``n_options``       side information, ignored
``preds == -2``     "question missing from that model's run": read as ``-1`` (abstain)
==================  ==========================================================================

Other unknown keys are ignored outside strict mode (one :class:`UserWarning` naming them, issued
only when loading succeeds, so a failure stays a single line) and refused in strict mode. Every
failure raises :class:`~ensembles.BundleError` with one line naming the file, the key and the
problem.

Example:
    >>> import tempfile, pathlib
    >>> from ensembles import Bundle, load_bundle, save_bundle
    >>> b = Bundle.create(models=["a", "b"], labels=[0, 1], preds=[[0, 1], [1, 1]])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "b.npz"
    >>> save_bundle(b, path)
    >>> load_bundle(path).preds.tolist()
    [[0, 1], [1, 1]]
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._bundle import Bundle, BundleError, predictions_from_scores
from .util import write_atomic

__all__ = ["list_tasks", "load_bundle", "load_tasks", "save_bundle", "save_tasks"]

PathLike = str | os.PathLike[str]

#: Keys of a single bundle.
_CONTRACT_KEYS = (
    "models",
    "labels",
    "probs",
    "preds",
    "quality",
    "threshold",
    "split",
    "sample_ids",
    "groups",
)
#: Non-strict aliases: file key -> contract key.
_ALIASES = {
    "scores": "probs",
    "is_train": "split",
    "question_id": "sample_ids",
    "category": "groups",
}
#: Known side information, ignored outside strict mode.
_IGNORED = ("label_ok", "n_options")
#: In ``preds``, "question missing from that model's run" (non-strict: read as abstain).
_MISSING_PRED = -2


# ---------------------------------------------------------------------------------- public API
def load_bundle(path: PathLike, *, task: str | None = None, strict: bool = False) -> Bundle:
    """Load one bundle from an ``.npz`` file.

    Args:
        path: the ``.npz`` file (read with ``allow_pickle=False``).
        task: for a multi-task file, the task to load; required when the file has more than one
            task. For a single-task file it may be omitted, or equal to the file's stem.
        strict: refuse every key that is not a contract key (aliases included) instead of
            mapping or ignoring it, and do not map ``preds == -2`` to ``-1``.

    Returns:
        The validated :class:`~ensembles.Bundle`. Its ``task`` is the task name for a multi-task
        file, ``None`` for a single-task file.

    Raises:
        BundleError: one line naming the file, the key and the problem: missing or unreadable
            file, not an ``.npz`` archive, corrupt or truncated data, pickled object arrays,
            missing keys, wrong dtypes or shapes, invalid values, unknown task, or
            (strict mode) unknown keys and aliases.

    Example:
        >>> b = load_bundle("../shared/data/bbh_5llm_marl_focal.npz", task="navigate")
        ... # doctest: +SKIP
        >>> b.n_models, b.n_samples, b.n_classes  # doctest: +SKIP
        (5, 250, 2)
    """
    with _open(path) as arc:
        tasks = arc.tasks()
        if tasks is None:
            if task is not None and task != arc.path.stem:
                raise BundleError(
                    f"{arc.path}: tasks: single-task file has no task {task!r} (leave task unset)"
                )
            if strict:
                arc.check_strict(None)
            else:
                arc.note_orphans(None)
            bundle = arc.read_bundle(None, strict=strict)
            arc.emit_warnings()
            return bundle
        if task is None:
            if len(tasks) > 1:
                raise BundleError(
                    f"{arc.path}: tasks: file holds {len(tasks)} tasks, choose one with task=...; "
                    f"available: {_listing(tasks)}"
                )
            task = tasks[0]
        if task not in tasks:
            raise BundleError(
                f"{arc.path}: tasks: unknown task {task!r}; available: {_listing(tasks)}"
            )
        if strict:
            arc.check_strict(tasks, first=task)
        else:
            arc.note_orphans(tasks)
        bundle = arc.read_bundle(task, strict=strict)
        arc.emit_warnings()
        return bundle


def list_tasks(path: PathLike) -> list[str]:
    """Task names of a multi-task ``.npz`` file, in file order.

    Args:
        path: the ``.npz`` file.

    Returns:
        The names in the file's ``tasks`` key; ``[]`` for a single-task file.

    Raises:
        BundleError: the file is missing or unreadable, or its ``tasks`` key is malformed.

    Example:
        >>> list_tasks("../shared/data/bbh_5llm_marl_focal.npz")[:2]  # doctest: +SKIP
        ['boolean_expressions', 'causal_judgement']
    """
    with _open(path) as arc:
        tasks = arc.tasks()
    return [] if tasks is None else list(tasks)


def load_tasks(path: PathLike, *, strict: bool = False) -> dict[str, Bundle]:
    """Load every task of an ``.npz`` file.

    Args:
        path: the ``.npz`` file.
        strict: as in :func:`load_bundle`.

    Returns:
        ``{task: bundle}`` in file order. A single-task file gives one entry keyed by the file
        stem (``"x"`` for ``x.npz``), whose bundle has ``task`` set to that stem.

    Raises:
        BundleError: as in :func:`load_bundle`, for the first task that fails.

    Example:
        >>> tasks = load_tasks("../shared/data/bbh_5llm_marl_focal.npz")  # doctest: +SKIP
        >>> len(tasks), sum(b.n_samples for b in tasks.values())  # doctest: +SKIP
        (24, 5761)
    """
    with _open(path) as arc:
        tasks = arc.tasks()
        if tasks is None:
            if strict:
                arc.check_strict(None)
            else:
                arc.note_orphans(None)
            bundle = arc.read_bundle(None, strict=strict)
            arc.emit_warnings()
            return {arc.path.stem: dataclasses.replace(bundle, task=arc.path.stem)}
        if strict:
            arc.check_strict(tasks)
        else:
            arc.note_orphans(tasks)
        bundles = {t: arc.read_bundle(t, strict=strict) for t in tasks}
        arc.emit_warnings()
        return bundles


def save_bundle(bundle: Bundle, path: PathLike) -> None:
    """Write one bundle as a single-task ``.npz`` file, atomically.

    Only bundle keys are written: ``models``; ``labels`` when the bundle has them; ``probs`` when
    present, and ``preds`` when there are no ``probs`` or the predictions differ from their
    argmax (otherwise they derive from ``probs`` and are not stored twice); for an open-ended
    bundle ``quality`` and ``threshold`` instead of labels and outputs; and ``split``,
    ``sample_ids``, ``groups`` when present. Strings are stored as unicode arrays, never object
    arrays (an object-dtype ``sample_ids``/``groups`` array is converted to a typed array, or to
    strings when its values are mixed). The data go to a temporary file in the same directory,
    which is fsynced and then renamed over ``path``, so readers never see a partial file. The
    file is written at ``path`` exactly (no ``.npz`` suffix is added); it is compressed.

    ``load_bundle(path)`` gives back equal arrays. Not stored: ``bundle.task``, and
    ``n_classes`` beyond what the arrays imply (for a bundle without ``probs``, ``n_classes`` is
    re-inferred from the largest label or prediction).

    Args:
        bundle: the bundle to write.
        path: destination file.

    Raises:
        TypeError: ``bundle`` is not a :class:`~ensembles.Bundle`.
        BundleError: the file cannot be written (one line naming the path).

    Example:
        >>> import tempfile, pathlib
        >>> b = Bundle.create(models=["a", "b"], labels=[0, 1], probs=[[[1, 0], [0, 1]]] * 2)
        >>> save_bundle(b, pathlib.Path(tempfile.mkdtemp()) / "b.npz")
    """
    if not isinstance(bundle, Bundle):
        raise TypeError(f"save_bundle: expected a Bundle, got {type(bundle).__name__}")
    _atomic_savez(path, _bundle_arrays(bundle, prefix="", with_models=True))


def save_tasks(bundles: Mapping[str, Bundle], path: PathLike) -> None:
    """Write several bundles as one multi-task ``.npz`` file, atomically.

    The file gets a ``tasks`` key (the mapping's keys, in order) and each bundle's contract keys
    under ``TASK/`` as in :func:`save_bundle`. When every bundle has the same models, in the same
    order, ``models`` is stored once at the top level; otherwise each task gets ``TASK/models``.

    Args:
        bundles: ``{task name: bundle}``; at least one entry, names non-empty strings. The
            bundles' own ``task`` attributes are not used.
        path: destination file.

    Raises:
        TypeError: a value is not a :class:`~ensembles.Bundle`.
        BundleError: no bundles, a bad task name, or the file cannot be written.

    Example:
        >>> import tempfile, pathlib
        >>> a = Bundle.create(models=["a", "b"], labels=[0, 1], preds=[[0, 1], [1, 1]])
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.npz"
        >>> save_tasks({"one": a, "two": a}, path)
        >>> list_tasks(path)
        ['one', 'two']
    """
    if not isinstance(bundles, Mapping):
        raise TypeError(f"save_tasks: expected a mapping of task name to Bundle, got {bundles!r}")
    if not bundles:
        raise BundleError(f"{path}: tasks: no bundles to save")
    names = list(bundles)
    for name in names:
        if not isinstance(name, str) or not name:
            raise BundleError(f"{path}: tasks: task names must be non-empty strings, got {name!r}")
        if not isinstance(bundles[name], Bundle):
            raise TypeError(
                f"save_tasks: tasks[{name!r}] is a {type(bundles[name]).__name__}, not a Bundle"
            )
    shared = len({bundles[n].models for n in names}) == 1
    arrays: dict[str, np.ndarray] = {"tasks": np.array(names, dtype=str)}
    if shared:
        arrays["models"] = np.array(bundles[names[0]].models, dtype=str)
    for name in names:
        arrays.update(_bundle_arrays(bundles[name], prefix=f"{name}/", with_models=not shared))
    _atomic_savez(path, arrays)


# ---------------------------------------------------------------------------------- reading
@contextlib.contextmanager
def _open(path: PathLike) -> Iterator[_Archive]:
    try:
        p = Path(path)
    except TypeError:
        raise BundleError(f"path: expected a file path, got {path!r}") from None
    if not p.exists():
        raise BundleError(f"{p}: no such file")
    if p.is_dir():
        raise BundleError(f"{p}: is a directory, not an .npz file")
    try:
        with open(p, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise BundleError(f"{p}: cannot read ({exc.strerror or _short(exc)})") from None
    if not magic:
        raise BundleError(f"{p}: empty file, not an .npz archive")
    if not magic.startswith(b"PK") and magic != b"\x93NUMPY":
        raise BundleError(f"{p}: not an .npz archive (no zip signature)")
    try:
        npz = np.load(p, allow_pickle=False)
    except Exception as exc:  # any reader failure becomes one line
        raise BundleError(
            f"{p}: not a readable .npz archive, corrupt or truncated ({_short(exc)})"
        ) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise BundleError(f"{p}: holds a single .npy array, not an .npz archive of named arrays")
    try:
        yield _Archive(p, npz)
    finally:
        npz.close()


class _Archive:
    """An open ``.npz`` file whose every read failure becomes a one-line :class:`BundleError`."""

    def __init__(self, path: Path, npz: Any) -> None:
        self.path = path
        self.npz = npz
        self.keys: list[str] = list(npz.files)
        self.ignored: list[str] = []  # unknown keys skipped outside strict mode

    def fail(self, key: str, problem: str) -> BundleError:
        return BundleError(f"{self.path}: {key}: {problem}")

    def get(self, key: str) -> np.ndarray:
        try:
            value = self.npz[key]
        except Exception as exc:
            text = str(exc)
            if "allow_pickle" in text or "pickle" in text.lower():
                raise self.fail(
                    key, "stored as a pickled object array; store strings as unicode arrays"
                ) from None
            problem = f"cannot be read, file corrupt or truncated ({_short(exc)})"
            raise self.fail(key, problem) from None
        if not isinstance(value, np.ndarray):
            raise self.fail(key, "archive member is not a .npy array")
        return value

    def strings(self, key: str, *, ndim: int = 1) -> np.ndarray:
        arr = self.get(key)
        if arr.dtype.kind not in "US":
            raise self.fail(key, f"must be strings, got dtype {arr.dtype}")
        if arr.ndim != ndim:
            raise self.fail(key, f"must be {ndim}-D, got shape {arr.shape}")
        return arr.astype(str)

    # ----------------------------------------------------------------- structure
    def tasks(self) -> list[str] | None:
        if "tasks" not in self.keys:
            return None
        names = [str(t) for t in self.strings("tasks").tolist()]
        if not names:
            raise self.fail("tasks", "lists no tasks")
        if any(not t for t in names):
            raise self.fail("tasks", "task names must be non-empty")
        dup = sorted({t for t in names if names.count(t) > 1})
        if dup:
            raise self.fail("tasks", f"duplicate task names: {', '.join(dup[:5])}")
        return names

    def fields(self, task: str | None) -> dict[str, str]:
        """``{field: file key}`` for one bundle (top level when ``task`` is None)."""
        out: dict[str, str] = {}
        for key in self.keys:
            prefix, _, field = key.rpartition("/")
            if task is None and "/" not in key:
                out[key] = key
            elif task is not None and prefix == task:
                out[field] = key
        return out

    def check_strict(self, tasks: list[str] | None, *, first: str | None = None) -> None:
        """Refuse any non-contract key of the file (those of task ``first`` reported first)."""
        allowed = set(_CONTRACT_KEYS)
        if tasks is None:
            for key in self.keys:
                if key not in allowed:
                    raise self.fail(key, _strict_problem(key))
            return
        task_set = set(tasks)
        keys = sorted(self.keys, key=lambda k: k.rpartition("/")[0] != first)
        for key in keys:
            if key in ("tasks", "models"):
                continue
            prefix, sep, field = key.rpartition("/")
            if not sep or prefix not in task_set:
                raise self.fail(key, "unknown key in strict mode (not under a listed task)")
            if field not in allowed:
                raise self.fail(key, _strict_problem(field))

    def note_orphans(self, tasks: list[str] | None) -> None:
        """Note (non-strict mode) the keys that belong to no bundle of the file."""
        task_set = set(tasks or ())
        orphans = []
        for key in self.keys:
            prefix, sep, _ = key.rpartition("/")
            if tasks is None:
                if sep:
                    orphans.append(key)
            elif not sep:
                if key not in ("tasks", "models"):
                    orphans.append(key)
            elif prefix not in task_set:
                orphans.append(key)
        self.ignored.extend(orphans)

    def emit_warnings(self) -> None:
        """One warning for all ignored unknown keys, issued only once loading succeeded."""
        if self.ignored:
            warnings.warn(
                f"{self.path}: unknown key(s) ignored: {_listing(self.ignored, 5)}",
                UserWarning,
                stacklevel=3,
            )

    # ----------------------------------------------------------------- one bundle
    def read_bundle(self, task: str | None, *, strict: bool) -> Bundle:
        fields = self.fields(task)
        prefix = f"{task}/" if task is not None else ""
        source: dict[str, str] = {}  # contract field -> file key it was read from
        for field, key in fields.items():
            if field in _CONTRACT_KEYS:
                canonical = field
            elif field in _ALIASES and not strict:
                canonical = _ALIASES[field]
            elif field in _IGNORED and not strict:
                continue
            elif strict:
                raise self.fail(key, _strict_problem(field))
            else:
                self.ignored.append(key)
                continue
            if canonical in source:
                raise self.fail(
                    key, f"both {source[canonical]!r} and {key!r} give {prefix}{canonical}"
                )
            source[canonical] = key

        if "models" not in source:
            if task is not None and "models" in self.keys:
                source["models"] = "models"
            else:
                shared = " (and no shared top-level 'models')" if task is not None else ""
                raise self.fail(prefix + "models", f"missing{shared}")
        if "probs" not in source and "preds" not in source and "quality" not in source:
            raise self.fail(
                prefix + "probs", "missing: a bundle needs 'probs', 'preds' or 'quality'"
            )

        kwargs: dict[str, Any] = {"task": task}
        kwargs["models"] = self.strings(source["models"])
        for name in ("labels", "probs", "quality", "threshold", "sample_ids", "groups"):
            if name in source:
                kwargs[name] = self.get(source[name])
        if "preds" in source:
            preds = self.get(source["preds"])
            if not strict and preds.dtype.kind in "iu" and (preds == _MISSING_PRED).any():
                preds = np.where(preds == _MISSING_PRED, -1, preds)
            kwargs["preds"] = preds
        if "split" in source:
            key = source["split"]
            if key.rpartition("/")[2] == "is_train":
                flags = self.get(key)
                if flags.dtype.kind != "b":
                    raise self.fail(key, f"must be booleans, got dtype {flags.dtype}")
                kwargs["split"] = np.where(flags, "train", "test")
            else:
                kwargs["split"] = self.strings(key)
        for name in ("sample_ids", "groups"):
            if name in kwargs and kwargs[name].dtype.kind == "S":
                kwargs[name] = kwargs[name].astype(str)

        try:
            return Bundle.create(**kwargs)
        except BundleError as exc:
            raise BundleError(f"{self.path}: {_rename_key(str(exc), source, prefix)}") from None


def _rename_key(message: str, source: dict[str, str], prefix: str) -> str:
    """Name the key as stored in the file when it was read through an alias or shared."""
    for canonical, key in source.items():
        head = f"{prefix}{canonical}:"
        if key != prefix + canonical and message.startswith(head):
            return f"{key} (read as {prefix}{canonical}):{message[len(head) :]}"
    return message


def _strict_problem(field: str) -> str:
    if field in _ALIASES:
        return f"alias of {_ALIASES[field]!r}, not accepted in strict mode"
    if field in _IGNORED:
        return "not a contract key, not accepted in strict mode"
    return f"unknown key in strict mode; allowed: {', '.join(_CONTRACT_KEYS)}"


def _listing(names: list[str], limit: int = 30) -> str:
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _short(exc: BaseException, limit: int = 160) -> str:
    text = re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------- writing
def _bundle_arrays(bundle: Bundle, *, prefix: str, with_models: bool) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if with_models:
        out[prefix + "models"] = np.array(bundle.models, dtype=str)
    if bundle.quality is not None:
        out[prefix + "quality"] = np.asarray(bundle.quality)
        out[prefix + "threshold"] = np.asarray(bundle.threshold, dtype=np.float64)
    else:
        if bundle.labels is not None:
            out[prefix + "labels"] = np.asarray(bundle.labels)
        if bundle.probs is not None:
            out[prefix + "probs"] = np.asarray(bundle.probs)
        if bundle.probs is None or not np.array_equal(
            bundle.preds, predictions_from_scores(bundle.probs)
        ):
            out[prefix + "preds"] = np.asarray(bundle.preds)
    if bundle.split is not None:
        out[prefix + "split"] = np.asarray(bundle.split).astype(str)
    for name in ("sample_ids", "groups"):
        value = getattr(bundle, name)
        if value is not None:
            out[prefix + name] = _typed(np.asarray(value))
    return out


def _typed(arr: np.ndarray) -> np.ndarray:
    """An array without object dtype: typed if the values allow it, else strings."""
    if arr.dtype.kind != "O":
        return arr
    values = arr.tolist()
    try:
        typed = np.array(values)
    except (ValueError, TypeError):
        typed = None
    if typed is None or typed.dtype.kind == "O" or typed.shape != arr.shape:
        typed = np.array([str(v) for v in values], dtype=str)
    return typed


def _atomic_savez(path: PathLike, arrays: dict[str, np.ndarray]) -> None:
    dest = Path(path)
    try:
        if not dest.parent.is_dir():
            raise FileNotFoundError(2, "No such file or directory")
        # no object arrays: see _typed
        write_atomic(dest, lambda fh: np.savez_compressed(fh, **arrays))
    except OSError as exc:
        raise BundleError(f"{dest}: cannot write ({exc.strerror or _short(exc)})") from None
