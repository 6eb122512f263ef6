"""Running top-K of scored teams with the ranking rule of docs/selection.md

Teams are identified by ``(size, rank)``: their position in canonical order (by size, then
lexicographic member indices). The key is ``rint(sign · score · 1e10)``: scores equal to 10
decimals tie, and ties go to the smaller team, then to canonical order. NaN ranks last.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["NAN_KEY", "TopK", "ranking_key"]

#: Key of a NaN score: below every finite key (|score| ≤ 1e3 for every metric), above padding.
NAN_KEY = -1e16
SCALE = 1e10


def ranking_key(scores: np.ndarray, sign: float, xp=np):
    """``rint(sign · score · 1e10)`` as float64 (exactly an integer), ``NAN_KEY`` for NaN."""
    key = xp.round(sign * scores * SCALE)
    return xp.where(xp.isnan(key), NAN_KEY, key)


@dataclasses.dataclass
class TopK:
    """Best ``k`` teams seen so far; :meth:`add` in any order gives the same result.

    Example:
        >>> top = TopK(2, sign=1.0)
        >>> top.add(np.array([0.5, 0.7, 0.7]), np.array([2, 3, 2]), np.array([4, 0, 9]))
        >>> top.sizes.tolist(), top.ranks.tolist()
        ([2, 3], [9, 0])
    """

    k: int
    sign: float
    scores: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    sizes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    ranks: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    def add(self, scores: np.ndarray, sizes: np.ndarray, ranks: np.ndarray) -> None:
        """Merge candidate teams (duplicates of kept teams must not be added)."""
        scores = np.concatenate([self.scores, np.asarray(scores, dtype=np.float64)])
        sizes = np.concatenate([self.sizes, np.asarray(sizes, dtype=np.int64)])
        ranks = np.concatenate([self.ranks, np.asarray(ranks, dtype=np.int64)])
        order = np.lexsort((ranks, sizes, -ranking_key(scores, self.sign)))[: self.k]
        self.scores, self.sizes, self.ranks = scores[order], sizes[order], ranks[order]

    @property
    def worst_key(self) -> float:
        """Key of the k-th best team, or ``-inf`` while fewer than k are kept."""
        if len(self.scores) < self.k:
            return -np.inf
        return float(ranking_key(self.scores[-1:], self.sign)[0])

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to checkpoint."""
        return {"scores": self.scores, "sizes": self.sizes, "ranks": self.ranks}

    def load(self, state: dict[str, np.ndarray]) -> None:
        """Restore from :meth:`state`."""
        self.scores = np.asarray(state["scores"], dtype=np.float64)
        self.sizes = np.asarray(state["sizes"], dtype=np.int64)
        self.ranks = np.asarray(state["ranks"], dtype=np.int64)
