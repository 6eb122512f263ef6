"""The one checkpoint scheme of the fusers and of ``fusers.lm``: numbered orbax checkpoints.

A :class:`CheckpointStore` is a folder of numbered steps managed by orbax's
``CheckpointManager``. Each step holds an array tree (parameters, optimiser state, ...) and a
JSON metadata document (epoch, history, settings), written together into a temporary folder
that is renamed when complete, so a step is either absent or whole. Only the last ``keep``
steps are kept. The metadata records the SHA-256 of the arrays, so silent corruption (a
flipped byte orbax would read without complaint) is detected too, and an optional run
fingerprint, so that a folder of another run is never resumed by mistake.

Every failure to read is one line naming the path: :class:`ensembles.util.InputError` for a
corrupted, mismatched or foreign checkpoint, ``FileNotFoundError`` for a missing one.

The saved parameters of a fitted fuser (:meth:`fusers.MLPFuser.save`) are a one-step store
written by :func:`save_arrays` and read by :func:`load_arrays`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.util import InputError, jsonable

__all__ = [
    "CheckpointStore",
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
        InputError: names, shapes or dtypes differ from the template (``where`` names the
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


@contextlib.contextmanager
def _quiet_orbax() -> Iterator[None]:
    """Silence absl's log lines while reading: a damaged file is reported by one error line."""
    logger = logging.getLogger("absl")
    before = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = before


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


class CheckpointStore:
    """A folder of numbered, atomic, digest-checked checkpoints (orbax ``CheckpointManager``).

    Args:
        directory: the folder (created on the first save).
        keep: how many of the most recent steps to keep (older ones are deleted after a new
            step is complete).
        fingerprint: identity of the run writing here (e.g. a hash of data and settings);
            recorded with every step, and :meth:`restore` refuses a step recorded with
            another one.

    Example:
        >>> import tempfile
        >>> store = CheckpointStore(tempfile.mkdtemp(), keep=2)
        >>> for step in (1, 2, 3):
        ...     store.save(step, {"w": np.full(2, float(step))}, {"epoch": step})
        >>> store.steps(), store.latest()
        ([2, 3], 3)
        >>> state, meta = store.restore({"w": np.zeros(2)})
        >>> state["w"].tolist(), meta["epoch"]
        ([3.0, 3.0], 3)
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, keep: int = 2, fingerprint: str | None = None
    ) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise InputError(f"keep: expected an integer >= 1, got {keep!r}")
        self.directory = Path(directory).absolute()
        self.keep = keep
        self.fingerprint = fingerprint
        self._manager: Any = None

    def _open(self) -> Any:
        if self._manager is None:
            import orbax.checkpoint as ocp

            if self.directory.exists() and not self.directory.is_dir():
                raise InputError(f"{self.directory}: exists and is not a checkpoint folder")
            options = ocp.CheckpointManagerOptions(
                max_to_keep=self.keep, enable_async_checkpointing=False, create=True
            )
            try:
                with _quiet_orbax():
                    self._manager = ocp.CheckpointManager(self.directory, options=options)
            except Exception as exc:  # orbax raises many types for unreadable folders
                raise InputError(
                    f"{self.directory}: checkpoint folder is unreadable ({_one_line(exc)})"
                ) from None
        return self._manager

    def close(self) -> None:
        """Release orbax's resources (the store reopens itself when used again)."""
        if self._manager is not None:
            self._manager.close()
            self._manager = None

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def steps(self) -> list[int]:
        """The complete steps in the folder, ascending (empty when there is none)."""
        if not self.directory.is_dir():
            return []
        return sorted(int(s) for s in self._open().all_steps())

    def latest(self) -> int | None:
        """The most recent complete step, or ``None``."""
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: Any, metadata: Mapping[str, Any] | None = None) -> None:
        """Write ``state`` (a pytree of arrays) and ``metadata`` (JSON-able) as ``step``.

        Saving a step that already exists replaces it (the old one is deleted first, so
        write new steps with new numbers when the previous one must survive a crash); a step
        older than one in the folder is refused (orbax would skip it silently).
        """
        import orbax.checkpoint as ocp

        arrays = tree_to_arrays(state)
        meta = {
            "metadata": jsonable(dict(metadata or {})),
            "sha256": arrays_digest(arrays),
            "fingerprint": self.fingerprint,
        }
        manager = self._open()
        step = int(step)
        later = [s for s in manager.all_steps() if s > step]
        if later:
            raise InputError(
                f"{self.directory}: holds step {max(later)}, later than step {step}; "
                "use a new folder (or delete this one) for a new run"
            )
        if step in manager.all_steps():
            manager.delete(step)
        manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)
            ),
        )
        manager.wait_until_finished()
        if step not in manager.all_steps():  # pragma: no cover - orbax skipped it silently
            raise InputError(f"{self.directory}: checkpoint step {step} was not written")

    def restore(self, template: Any = None, *, step: int | None = None) -> tuple[Any, dict]:
        """Read a step (default: the latest): ``(state, metadata)``.

        Args:
            template: a pytree shaped like the saved state; the arrays are checked against it
                and returned in its structure. ``None`` returns the flat ``{name: array}``.
            step: the step to read.

        Raises:
            FileNotFoundError: no complete checkpoint in the folder (or no such step).
            InputError: the step is corrupted, altered, or belongs to another run.
        """
        import orbax.checkpoint as ocp

        step = self.latest() if step is None else int(step)
        if step is None or step not in self.steps():
            raise FileNotFoundError(f"{self.directory}: checkpoint not found")
        where = self.directory / str(step)
        try:
            with _quiet_orbax():
                got = self._open().restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()
                    ),
                )
            arrays = {str(k): np.asarray(v) for k, v in dict(got["state"]).items()}
            meta = dict(got["meta"])
            digest, user = meta["sha256"], dict(meta["metadata"])
        except Exception as exc:  # orbax / tensorstore raise many types for damaged files
            raise InputError(
                f"{where}: checkpoint is corrupted or unreadable ({_one_line(exc)})"
            ) from None
        if arrays_digest(arrays) != digest:
            raise InputError(
                f"{where}: checkpoint is corrupted (SHA-256 differs from the recorded one)"
            )
        if self.fingerprint is not None and meta.get("fingerprint") != self.fingerprint:
            raise InputError(
                f"{self.directory}: the checkpoint belongs to another run (other data, model or "
                "settings); delete it or use another folder"
            )
        if template is None:
            return arrays, user
        return arrays_to_tree(template, arrays, where=str(where)), user


def save_arrays(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> str:
    """Write ``{name: array}`` as a one-step checkpoint folder at ``path`` (replacing it).

    The new step is complete before the old one is deleted, so ``path`` always holds a whole
    checkpoint.

    Returns:
        The :func:`arrays_digest` of the arrays, to store beside them.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> digest = save_arrays(f"{d}/params", {"w": np.ones((2, 2), np.float32)})
        >>> load_arrays(f"{d}/params", digest=digest)["w"].tolist()
        [[1.0, 1.0], [1.0, 1.0]]
    """
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    with CheckpointStore(path, keep=1) as store:
        last = store.latest()
        store.save(0 if last is None else last + 1, arrays)
    return arrays_digest(arrays)


def load_arrays(
    path: str | os.PathLike[str], *, digest: str | None = None
) -> dict[str, np.ndarray]:
    """Read a folder written by :func:`save_arrays`, checking its digest if given.

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        InputError: the folder is corrupted, unreadable, or its content differs from
            ``digest``.

    Example:
        >>> load_arrays("/nonexistent/params")
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent/params: checkpoint not found
    """
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    with CheckpointStore(path, keep=1) as store:
        arrays, _ = store.restore()
    if digest is not None and arrays_digest(arrays) != digest:
        raise InputError(f"{path}: checkpoint is corrupted (SHA-256 differs from the recorded one)")
    return arrays
