"""Resumable scans: atomic checkpoints of a running top-K."""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.util import InputError, write_atomic

from ._topk import TopK

__all__ = ["ScanCheckpoint", "scan_fingerprint"]

_VERSION = 1


def scan_fingerprint(bundle: Any, metric: str, sizes: tuple[int, ...], top_k: int, config) -> str:
    """SHA-256 over the bundle's predictions and labels and the scan's parameters."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(bundle.preds, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(bundle.labels, dtype=np.int64).tobytes())
    params = {"n_classes": bundle.n_classes, "metric": metric, "sizes": list(sizes),
              "top_k": top_k, "config": list(config), "version": _VERSION}  # fmt: skip
    h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()


class ScanCheckpoint:
    """Progress of one scan in a file: the next unit of work and the top-K so far.

    Args:
        path: checkpoint file (``.npz``).
        fingerprint: :func:`scan_fingerprint` of the scan; a file with another one is refused.
        every: minimum seconds between two writes of :meth:`maybe_save`.
    """

    def __init__(self, path: str | os.PathLike, *, fingerprint: str, every: float = 5.0):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.every = every
        self.last = time.monotonic()

    def resume(self, top: TopK) -> int:
        """Load the file into ``top`` if it exists; returns the unit to start from."""
        if not self.path.exists():
            return 0
        try:
            with np.load(self.path, allow_pickle=False) as z:
                state = {key: z[key] for key in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise InputError(f"checkpoint: cannot read {self.path}: {exc}") from None
        missing = {"fingerprint", "next_unit", "scores", "sizes", "ranks"} - set(state)
        if missing:
            raise InputError(f"checkpoint: {self.path} lacks {', '.join(sorted(missing))}")
        if str(state["fingerprint"]) != self.fingerprint:
            raise InputError(
                f"checkpoint: {self.path} belongs to another scan (bundle, metric, sizes, "
                "top-k or scan settings differ); remove it or choose another file"
            )
        top.load(state)
        return int(state["next_unit"])

    def maybe_save(self, next_unit: int, top: TopK) -> None:
        """Save if ``every`` seconds have passed since the last write."""
        if time.monotonic() - self.last >= self.every:
            self.save(next_unit, top)

    def save(self, next_unit: int, top: TopK) -> None:
        """Write the checkpoint atomically."""
        arrays = {"fingerprint": np.array(self.fingerprint), "next_unit": np.array(next_unit)}
        arrays.update(top.state())
        write_atomic(self.path, lambda fh: np.savez(fh, **arrays))
        self.last = time.monotonic()
