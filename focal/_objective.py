"""Objectives that mix diversity and accuracy (FusionShot's fitness, ALGORITHMS §5.2)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

import ensembles
from ensembles import Bundle
from ensembles.util import InputError

from ._metrics import metric_spec

__all__ = ["Objective", "pareto_front"]


@dataclasses.dataclass(frozen=True)
class Objective:
    """``fitness(S) = w_div · d(S) + w_acc · acc(S) − size_penalty · |S| / M``.

    ``d`` is the diversity metric oriented so that higher is more diverse (``score`` for
    "higher" metrics, ``−score`` for "lower" ones), ``acc`` the accuracy of the team's
    ``combiner`` vote on the same samples (a fraction in [0, 1]). Teams of fewer than two
    members get ``−99`` and a NaN diversity gives ``−inf``, so neither is ever chosen.
    FusionShot's script defaults are ``w_div=0.6, w_acc=0.4`` without penalty; its run script
    uses ``0.5 / 0.5`` with ``size_penalty=0.1``.

    Example:
        >>> obj = Objective(w_div=0.5, w_acc=0.5)
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
        ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
        >>> obj(b, np.array([[1, 1, 0]], dtype=bool)).round(3).tolist()  # focal 1, acc 1
        [1.0]
    """

    metric: str = "focal"
    w_div: float = 0.5
    w_acc: float = 0.5
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

    @property
    def name(self) -> str:
        """Short description, e.g. ``0.5*focal+0.5*acc``."""
        text = f"{self.w_div:g}*{self.metric}+{self.w_acc:g}*{self.combiner}_acc"
        if self.size_penalty:
            text += f"-{self.size_penalty:g}*size/M"
        return text

    def components(self, bundle: Bundle, masks: Any) -> dict[str, np.ndarray]:
        """Diversity score, accuracy and fitness of a batch of (B, M) masks."""
        from ._scoring import score_teams

        masks = np.asarray(masks, dtype=bool)
        sizes = masks.sum(axis=1)
        ok = sizes >= 2
        score = np.full(len(masks), np.nan)
        acc = np.full(len(masks), np.nan)
        if ok.any():
            score[ok] = score_teams(bundle, masks[ok], metric=self.metric)
            acc[ok] = ensembles.team_accuracy(bundle, masks[ok], combiner=self.combiner)
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


def pareto_front(diversity: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the teams on the Pareto front of (diversity, accuracy), both maximised.

    A team is on the front when no other team is at least as good on both and better on one.
    Returned in order of decreasing accuracy (ties: higher diversity first, then index).

    Example:
        >>> pareto_front(np.array([0.1, 0.5, 0.3, 0.5]), np.array([0.9, 0.2, 0.8, 0.1])).tolist()
        [0, 2, 1]
    """
    div = np.where(np.isnan(diversity), -np.inf, np.asarray(diversity, dtype=np.float64))
    acc = np.asarray(accuracy, dtype=np.float64)
    order = np.lexsort((np.arange(len(acc)), -div, -acc))
    front = []
    best_div = -np.inf
    for i in order:
        if div[i] > best_div:
            front.append(i)
            best_div = div[i]
    return np.asarray(front, dtype=np.int64)
