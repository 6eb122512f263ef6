"""Checkpoint files of the fusers: orbax array trees plus atomically written JSON metadata.

Arrays (parameters, optimiser state) are written with orbax's ``StandardCheckpointer``, which
writes into a temporary folder and renames it when complete, so a checkpoint folder is either
absent or whole. Each array tree is stored as a flat ``{name: array}`` mapping whose names come
from the pytree paths, and its SHA-256 is kept in the JSON next to it, so that silent
corruption (a flipped byte orbax reads without complaint) is detected too. Every failure to
read is one ``ValueError`` (corrupt) or ``FileNotFoundError`` (missing) line naming the path.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.util import InputError

__all__ = [
    "arrays_digest",
    "arrays_to_tree",
    "load_arrays",
    "save_arrays",
    "tree_to_arrays",
]


def _name(path: Any) -> str:
    import jax

    text = jax.tree_util.keystr(path)
    return re.sub(r"[^0-9A-Za-z_]+", ".", text).strip(".") or "leaf"


def tree_to_arrays(tree: Any) -> dict[str, np.ndarray]:
    """Flatten a pytree (e.g. an ``nnx.State``) to ``{path name: NumPy array}``.

    Example:
        >>> tree_to_arrays({"a": {"b": np.ones(2)}, "c": [np.zeros(1)]})
        {'a.b': array([1., 1.]), 'c.0': array([0.])}
    """
    import jax

    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    out: dict[str, np.ndarray] = {}
    for path, leaf in leaves:
        name = _name(path)
        if name in out:  # pragma: no cover - distinct paths give distinct names in practice
            raise InputError(f"checkpoint: two leaves map to the name {name!r}")
        out[name] = np.asarray(leaf)
    return out


def arrays_to_tree(template: Any, arrays: Mapping[str, np.ndarray], *, where: str) -> Any:
    """Rebuild a pytree shaped like ``template`` from :func:`tree_to_arrays` output.

    Raises:
        ValueError: names, shapes or dtypes differ from the template (``where`` names the
            checkpoint in the message).

    Example:
        >>> t = {"a": np.zeros(2)}
        >>> arrays_to_tree(t, {"a": np.ones(2)}, where="x")
        {'a': array([1., 1.])}
    """
    import jax

    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [_name(p) for p, _ in leaves]
    if sorted(names) != sorted(arrays):
        missing = sorted(set(names) - set(arrays))
        extra = sorted(set(arrays) - set(names))
        raise InputError(
            f"{where}: checkpoint does not match the model (missing {missing[:3]}, "
            f"unexpected {extra[:3]})"
        )
    new = []
    for name, (_, leaf) in zip(names, leaves, strict=True):
        arr = np.asarray(arrays[name])
        ref = np.asarray(leaf)
        if arr.shape != ref.shape or arr.dtype != ref.dtype:
            raise InputError(
                f"{where}: checkpoint array {name!r} has shape {arr.shape} {arr.dtype}, "
                f"the model expects {ref.shape} {ref.dtype}"
            )
        new.append(arr)
    return jax.tree_util.tree_unflatten(treedef, new)


def arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of a ``{name: array}`` mapping (names, dtypes, shapes and bytes, sorted by name).

    Example:
        >>> len(arrays_digest({"a": np.zeros(3)}))
        64
    """
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_arrays(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> str:
    """Write ``{name: array}`` as an orbax checkpoint folder at ``path`` (replacing it).

    Orbax writes to a temporary folder and renames it, so ``path`` is never half written.
    An existing folder at ``path`` is replaced only after the new one is complete.

    Returns:
        The :func:`arrays_digest` of the arrays, to store beside them.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> digest = save_arrays(f"{d}/params", {"w": np.ones((2, 2), np.float32)})
        >>> load_arrays(f"{d}/params", digest=digest)["w"].tolist()
        [[1.0, 1.0], [1.0, 1.0]]
    """
    import orbax.checkpoint as ocp

    dest = Path(path).absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    staging = dest.with_name(dest.name + ".new")
    if staging.exists():
        shutil.rmtree(staging)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(staging, dict(arrays))
        ckptr.wait_until_finished()
    old = dest.with_name(dest.name + ".old")
    if dest.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(dest, old)
    os.replace(staging, dest)
    if old.exists():
        shutil.rmtree(old)
    return arrays_digest(arrays)


def load_arrays(
    path: str | os.PathLike[str], *, digest: str | None = None
) -> dict[str, np.ndarray]:
    """Read an orbax folder written by :func:`save_arrays`, checking its digest if given.

    Raises:
        FileNotFoundError: no checkpoint folder at ``path``.
        ValueError: the folder is corrupted, unreadable, or its content differs from
            ``digest``.

    Example:
        >>> load_arrays("/nonexistent/params")
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent/params: checkpoint not found
    """
    import orbax.checkpoint as ocp

    src = Path(path).absolute()
    if not src.is_dir():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        with ocp.StandardCheckpointer() as ckptr:
            restored = ckptr.restore(src)
        arrays = {str(k): np.asarray(v) for k, v in dict(restored).items()}
    except Exception as exc:  # orbax / tensorstore raise many types for damaged files
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise InputError(f"{path}: checkpoint is corrupted or unreadable ({msg})") from None
    if digest is not None and arrays_digest(arrays) != digest:
        raise InputError(f"{path}: checkpoint is corrupted (SHA-256 differs from the recorded one)")
    return arrays
