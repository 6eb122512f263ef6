"""Small helpers shared by the fusers: atomic JSON files, package versions, argument checks."""

from __future__ import annotations

import json
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.util import InputError

__all__ = [
    "check_int",
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
