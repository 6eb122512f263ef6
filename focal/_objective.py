"""Objectives that mix diversity and accuracy (FusionShot's fitness)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

import ensembles
from ensembles import Bundle
from ensembles.util import InputError

from ._metrics import metric_spec
from ._scoring import score_teams, vote_accuracy

__all__ = ["Objective"]


@dataclasses.dataclass(frozen=True)
class Objective:
    """``fitness(S) = w_div · d(S) + w_acc · acc(S) − size_penalty · |S| / M``.

    ``d`` is the diversity metric oriented so that higher is more diverse (``score`` for
    "higher" metrics, ``−score`` for "lower" ones), ``acc`` the accuracy of the team's
    ``combiner`` vote on the same samples (a fraction in [0, 1]). Teams of fewer than two
    members get ``−99`` and a NaN diversity gives ``−inf``, so neither is ever chosen.
    The default, ``0.2·focal + 0.8·plurality accuracy``, is the one :func:`focal.recommend`
    uses (accuracy first, diversity as a regulariser; bench/README.md says how it was chosen).
    FusionShot's script defaults are ``w_div=0.6, w_acc=0.4`` without penalty; its run script
    uses ``0.5 / 0.5`` with ``size_penalty=0.1``. :meth:`diversity` ranks by a metric alone.

    Example:
        >>> Objective().name
        '0.2*focal+0.8*plurality_acc'
        >>> obj = Objective(w_div=0.5, w_acc=0.5)
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
        ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
        >>> obj(b, np.array([[1, 1, 0]], dtype=bool)).round(3).tolist()  # focal 1, acc 1
        [1.0]
    """

    metric: str = "focal"
    w_div: float = 0.2
    w_acc: float = 0.8
    size_penalty: float = 0.0
    combiner: str = "plurality"

    def __post_init__(self) -> None:
        metric_spec(self.metric)
        for name in ("w_div", "w_acc", "size_penalty"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise InputError(f"objective: {name} must be a finite number ≥ 0, got {value}")
        if self.combiner not in ensembles.COMBINERS:
            raise InputError(
                f"objective: unknown combiner {self.combiner!r}; "
                f"choose from {', '.join(ensembles.COMBINERS)}"
            )

    def check(self, bundle: Bundle) -> None:
        """Refuse, in one line, an objective with an accuracy term on an open-ended bundle."""
        if bundle.is_open_ended and not self.metric_only:
            raise InputError(
                f"objective: {self.name} needs vote accuracy, which an open-ended bundle does not "
                "have (its outputs are judged, not voted); rank by a metric alone"
            )

    @classmethod
    def diversity(cls, metric: str = "focal") -> Objective:
        """Rank by the diversity ``metric`` alone (in its direction).

        Example:
            >>> Objective.diversity("q_statistic").name
            'q_statistic'
        """
        return cls(metric=metric, w_div=1.0, w_acc=0.0)

    @property
    def metric_only(self) -> bool:
        """True when the ranking is the diversity metric alone (no accuracy, no penalty)."""
        return self.w_acc == 0 and self.size_penalty == 0 and self.w_div > 0

    @property
    def name(self) -> str:
        """Short description, e.g. ``0.2*focal+0.8*plurality_acc``; a metric-only ranking is
        named by its metric."""
        if self.metric_only:
            return self.metric
        text = f"{self.w_div:g}*{self.metric}+{self.w_acc:g}*{self.combiner}_acc"
        if self.size_penalty:
            text += f"-{self.size_penalty:g}*size/M"
        return text

    def components(self, bundle: Bundle, masks: Any) -> dict[str, np.ndarray]:
        """Diversity score, accuracy and fitness of a batch of (B, M) masks."""
        masks = np.asarray(masks, dtype=bool)
        self.check(bundle)
        sizes = masks.sum(axis=1)
        ok = sizes >= 2
        score = np.full(len(masks), np.nan)
        acc = np.full(len(masks), np.nan)
        if ok.any():
            score[ok] = score_teams(bundle, masks[ok], metric=self.metric)
            acc[ok] = vote_accuracy(bundle, masks[ok], combiner=self.combiner)
        return {
            "score": score,
            "accuracy": acc,
            "fitness": self.fitness(score, acc, sizes, bundle.n_models),
        }

    def fitness(
        self, score: np.ndarray, accuracy: np.ndarray, sizes: np.ndarray, n_models: int
    ) -> np.ndarray:
        """Fitness from precomputed diversity scores and accuracies."""
        sign = metric_spec(self.metric).sign
        fit = (
            self.w_div * sign * np.asarray(score, dtype=np.float64)
            + self.w_acc * np.asarray(accuracy, dtype=np.float64)
            - self.size_penalty * np.asarray(sizes) / n_models
        )
        fit = np.where(np.isnan(fit), -np.inf, fit)
        return np.where(np.asarray(sizes) < 2, -99.0, fit)

    def __call__(self, bundle: Bundle, masks: Any) -> np.ndarray:
        """Fitness of a batch of (B, M) masks, shape (B,)."""
        return self.components(bundle, masks)["fitness"]
