"""A dependency-free progress bar for the command line (stderr only, terminals only)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """Callable ``bar(done, total)`` drawing a one-line bar on stderr.

    Nothing is drawn during the first ``delay`` seconds, so short scans stay silent; redraws
    are limited to ``max_rate`` per second. Call :meth:`close` at the end.

    Example:
        >>> bar = ProgressBar("scoring", delay=3600.0)
        >>> bar(5, 10); bar.close()
    """

    def __init__(
        self,
        label: str,
        *,
        delay: float = 1.0,
        max_rate: float = 10.0,
        stream: TextIO | None = None,
        enabled: bool = True,
    ):
        self.label = label
        self.delay = delay
        self.min_interval = 1.0 / max_rate
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.drawn = False
        self.enabled = enabled

    def __call__(self, done: int, total: int) -> None:
        """Report progress; draws when due."""
        if not self.enabled:
            return
        now = time.perf_counter()
        elapsed = now - self.start
        if elapsed < self.delay or (now - self.last_draw < self.min_interval and done < total):
            return
        self.last_draw = now
        frac = done / total if total else 1.0
        width = 30
        filled = int(round(width * frac))
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("inf")
        eta_text = f"{eta:5.1f}s" if eta != float("inf") else "   ?s"
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {frac:6.1%} "
            f"{done:,}/{total:,} {rate:,.0f}/s eta {eta_text}"
        )
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """End the bar's line (if anything was drawn)."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
