"""Small helpers shared by the fusers: atomic JSON files, package versions, argument checks."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.util import InputError, write_atomic

__all__ = [
    "atomic_write_json",
    "atomic_write_text",
    "check_int",
    "json_ready",
    "package_versions",
    "read_json",
]

_PACKAGES = (
    "focal-fusion",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "numpy",
    "scikit-learn",
)


def package_versions() -> dict[str, str | None]:
    """Versions of Python and of the packages a fuser result depends on (``None`` if absent).

    Example:
        >>> sorted(package_versions())[:3]
        ['flax', 'focal-fusion', 'jax']
    """
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def json_ready(x: Any) -> Any:
    """A strict-JSON-ready copy: NumPy scalars/arrays to Python, NaN/inf to ``None``.

    Example:
        >>> json_ready({"a": np.float32(0.5), "b": [float("nan"), np.int64(2)]})
        {'a': 0.5, 'b': [None, 2]}
    """
    if isinstance(x, Mapping):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_ready(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_ready(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    A reader never sees a half-written file: it sees the old file or the new one.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
        >>> atomic_write_text(p, "hello"); p.read_text()
        'hello'
    """
    write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike[str], doc: Any) -> None:
    """Write ``doc`` as strict, indented JSON, atomically (see :func:`atomic_write_text`).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.json"
        >>> atomic_write_json(p, {"a": float("nan")}); read_json(p, what="x")
        {'a': None}
    """
    atomic_write_text(path, json.dumps(json_ready(doc), allow_nan=False, indent=2) + "\n")


def read_json(path: str | os.PathLike[str], *, what: str) -> Any:
    """Read a JSON file; a missing file or invalid JSON gives one clear line.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not valid JSON (``what`` names it in the message).

    Example:
        >>> read_json("/nonexistent/fuser.json", what="fuser config")
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent/fuser.json: fuser config not found
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: {what} not found")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = " ".join(str(exc).split())
        raise InputError(f"{p}: {what} is corrupted (invalid JSON: {msg})") from None


def check_int(name: str, value: Any, *, minimum: int = 0, allow_none: bool = False) -> int | None:
    """Validate an integer argument; one-line ``ValueError`` naming it otherwise.

    Example:
        >>> check_int("epochs", 3, minimum=1)
        3
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)
