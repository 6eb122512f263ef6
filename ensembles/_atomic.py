"""Atomic file writes: the one mechanism every writer of the project goes through."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["write_atomic"]


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
