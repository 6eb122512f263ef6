"""Shared helpers of every focal-fusion package: the input-error type, atomic writes, JSON.

These are the one place where the packages (``ensembles``, ``focal``, ``fusers``) and the
command line share mechanisms; no package reaches into another's private modules.

- :class:`InputError`: the base class of every "bad input" error. The command line prints it
  as one line and exits with status 2; any other exception is a bug (exit status 1).
- :func:`write_atomic`: every file the project writes goes through it.
- :func:`check_writable`: fail fast, before minutes of work, when an output path cannot be
  written.
- :func:`jsonable`: strict-JSON-ready copies of results (NaN becomes ``None``).
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "InputError",
    "check_vote_weights",
    "check_writable",
    "check_writable_dir",
    "jsonable",
    "write_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


class InputError(ValueError):
    """Bad input from a user (a file, an argument, a request); the message is one line.

    Example:
        >>> try:
        ...     raise InputError("team: unknown model 'gpt5'")
        ... except ValueError as exc:
        ...     print(exc)
        team: unknown model 'gpt5'
    """


def check_writable(path: str | os.PathLike[str], *, name: str = "output") -> Path:
    """Check, before any work, that ``path`` can be written; return it as a :class:`Path`.

    The parent folder is created if missing. Raises :class:`InputError` naming ``name`` (a flag
    such as ``--out``) when the path is a folder or its folder cannot be written.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> check_writable(d / "sub" / "x.json").name
        'x.json'
        >>> check_writable(d, name="--out")
        Traceback (most recent call last):
        ...
        ensembles.util.InputError: --out: ... is a folder, expected a file path
    """
    dest = Path(path)
    if dest.is_dir():
        raise InputError(f"{name}: {dest} is a folder, expected a file path")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{name}: cannot create folder {dest.parent} ({exc.strerror})") from None
    if not os.access(dest.parent, os.W_OK | os.X_OK):
        raise InputError(f"{name}: folder {dest.parent} is not writable")
    if dest.exists() and not os.access(dest, os.W_OK):
        raise InputError(f"{name}: {dest} exists and is not writable")
    return dest


def check_writable_dir(path: str | os.PathLike[str], *, name: str = "output") -> Path:
    """Like :func:`check_writable` for an output folder (created if missing).

    Example:
        >>> import tempfile, pathlib
        >>> check_writable_dir(pathlib.Path(tempfile.mkdtemp()) / "run").name
        'run'
    """
    dest = Path(path)
    if dest.exists() and not dest.is_dir():
        raise InputError(f"{name}: {dest} exists and is not a folder")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{name}: cannot create folder {dest} ({exc.strerror})") from None
    if not os.access(dest, os.W_OK | os.X_OK):
        raise InputError(f"{name}: folder {dest} is not writable")
    return dest


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`write_atomic`).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> write_text_atomic(p, "hello").read_text()
        'hello'
    """
    data = text.encode("utf-8")
    return write_atomic(path, lambda fh: fh.write(data))


def write_json_atomic(path: str | os.PathLike[str], doc: Any, *, indent: int | None = 2) -> Path:
    """Write ``doc`` as strict JSON (:func:`jsonable`, NaN as ``null``) atomically.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.json"
        >>> write_json_atomic(p, {"x": float("nan")}, indent=None).read_text().strip()
        '{"x": null}'
    """
    import json

    return write_text_atomic(path, json.dumps(jsonable(doc), allow_nan=False, indent=indent) + "\n")


def check_vote_weights(weights: Any, n_models: int, combiner: str) -> np.ndarray | None:
    """Validate per-model vote weights for ``combiner``; ``None`` for unweighted combiners.

    Weights are for the ``weighted_*`` combiners only: finite, non-negative numbers of shape
    ``(n_models,)``, not all zero. Every problem is one :class:`InputError` line.

    Example:
        >>> check_vote_weights([1, 0, 2], 3, "weighted_plurality").tolist()
        [1.0, 0.0, 2.0]
        >>> check_vote_weights(None, 3, "plurality") is None
        True
    """
    if not combiner.startswith("weighted_"):
        if weights is not None:
            raise InputError(
                f"weights: the {combiner!r} combiner takes no weights; "
                "use 'weighted_plurality' or 'weighted_soft'"
            )
        return None
    if weights is None:
        raise InputError(f"weights: the {combiner!r} combiner needs per-model weights")
    w = np.asarray(weights)
    if w.dtype.kind not in "iuf":
        raise InputError(f"weights: must be numbers, got dtype {w.dtype}")
    w = w.astype(np.float64)
    if w.shape != (n_models,):
        raise InputError(f"weights: shape {w.shape} != (n_models={n_models},)")
    if not np.isfinite(w).all():
        raise InputError("weights: contains NaN or inf")
    if (w < 0).any():
        raise InputError(f"weights: must be >= 0, got {w[w < 0][0]:g}")
    if not (w > 0).any():
        raise InputError("weights: all weights are zero")
    return w


def jsonable(value: Any) -> Any:
    """A strict-JSON-ready copy: NaN/inf become ``None``, NumPy values become Python values,
    objects with a ``to_dict()`` method become that dict.

    Example:
        >>> import numpy as np
        >>> jsonable({"a": np.float32(0.5), "b": [float("nan"), np.arange(2)], "c": (1, 2)})
        {'a': 0.5, 'b': [None, [0, 1]], 'c': [1, 2]}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if hasattr(value, "to_dict") and not isinstance(value, type):
        return jsonable(value.to_dict())
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_atomic(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Write a file atomically: ``write(fileobj)`` into a temp file beside it, then rename.

    The parent folder is created if needed; the file is fsynced before the rename and the
    folder after it (where the platform allows); an existing file keeps its permissions, a new
    one gets 0o644. A reader sees the old file or the complete new one, never a partial write;
    on any error the temp file is removed and the error propagates.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
        >>> write_atomic(p, lambda fh: fh.write(b"hi")).read_bytes()
        b'hi'
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    mode = dest.stat().st_mode & 0o777 if dest.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the platform allows
        dir_fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return dest
