"""The one vocabulary of team selection: :class:`Team` and :class:`Selection`.

Every way of choosing teams (exhaustive scans, greedy, beam, genetic and HQ search, the
recommender, LLM-TOPLA's pruning) returns a :class:`Selection` of :class:`Team` records.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ensembles.util import jsonable

__all__ = ["Selection", "Team", "make_teams"]


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclasses.dataclass(frozen=True)
class Team:
    """One team (sub-ensemble) of a pool, with its figures on the rows it was chosen on.

    Attributes:
        members: model names, in the pool's member order.
        score: the diversity metric of the selection (NaN when undefined).
        accuracy: vote accuracy of the team on the same rows (the objective's combiner).
        fitness: the objective's value, or ``None`` when the ranking is the metric alone.
        mask: boolean membership mask, shape ``(n_models,)``.

    Example:
        >>> import numpy as np
        >>> t = Team(("a", "c"), 0.5, 0.75, 0.7, mask=np.array([True, False, True]))
        >>> t.size, t.bitmask, t.to_dict()
        (2, 5, {'members': ['a', 'c'], 'size': 2, 'score': 0.5, 'accuracy': 0.75, 'fitness': 0.7})
    """

    members: tuple[str, ...]
    score: float
    accuracy: float
    fitness: float | None = None
    mask: np.ndarray = dataclasses.field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    @property
    def size(self) -> int:
        """Number of members."""
        return len(self.members)

    @property
    def bitmask(self) -> int:
        """The team as an integer: bit ``m`` set when model ``m`` of the pool is a member."""
        return sum(1 << int(i) for i in np.flatnonzero(self.mask))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: members, size, score, accuracy (NaN → ``None``) and fitness."""
        return {
            "members": list(self.members),
            "size": self.size,
            "score": _num(self.score),
            "accuracy": _num(self.accuracy),
            "fitness": _num(self.fitness),
        }


def make_teams(
    models: Sequence[str],
    masks: Any,
    score: Any,
    accuracy: Any,
    fitness: Any = None,
) -> tuple[Team, ...]:
    """:class:`Team` records from ``(B, M)`` masks and per-team arrays (``fitness`` optional).

    Example:
        >>> import numpy as np
        >>> [t.members for t in make_teams(["a", "b", "c"], np.array([[1, 0, 1]], bool),
        ...                                [0.5], [1.0])]
        [('a', 'c')]
    """
    masks = np.asarray(masks, dtype=bool).reshape(-1, len(models))
    fit = [None] * len(masks) if fitness is None else list(fitness)
    return tuple(
        Team(
            members=tuple(m for m, keep in zip(models, mask, strict=True) if keep),
            score=float(s),
            accuracy=float(a),
            fitness=None if f is None else float(f),
            mask=np.array(mask, dtype=bool),
        )
        for mask, s, a, f in zip(masks, score, accuracy, fit, strict=True)
    )


@dataclasses.dataclass(frozen=True)
class Selection:
    """The best teams found by a selection strategy, best first.

    Attributes:
        teams: the top teams, best first. Ties (equal to 10 decimals) go to the smaller team,
            then to canonical order (by size, then lexicographic member indices); NaN last.
        metric: the diversity metric of the teams' ``score``.
        direction: ``"higher"`` or ``"lower"``: which scores are more diverse.
        objective: what was ranked: the metric name, an objective's name such as
            ``0.2*focal+0.8*plurality_acc``, or ``pareto``.
        strategy: ``exhaustive``, ``greedy``, ``beam``, ``ga`` or ``hq``.
        n_models, n_samples: the pool and the number of rows chosen on.
        n_evaluated: distinct teams scored.
        sizes: team sizes considered.
        seconds: wall-clock time.
        trajectory: greedy/beam: the best team of each size; else empty.
        history: best fitness after each size (greedy, beam) or generation (GA).
        params: the strategy's settings and extra facts (seed, widths, generations run, ...).
        rows: which rows were used (split name, source, seed, sizes), when known.

    Example:
        >>> import ensembles, focal
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
        ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
        >>> sel = focal.select(b, objective="focal", sizes=2, top_k=2)
        >>> sel.best.members, sel.n_evaluated, sel.to_dict()["n_teams_scored"]
        (('a', 'b'), 3, 3)
    """

    teams: tuple[Team, ...]
    metric: str
    direction: str
    objective: str
    strategy: str
    n_models: int
    n_samples: int
    n_evaluated: int
    sizes: tuple[int, ...]
    seconds: float = 0.0
    trajectory: tuple[Team, ...] = ()
    history: tuple[float, ...] = ()
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    rows: Mapping[str, Any] | None = None

    @property
    def best(self) -> Team:
        """The best team."""
        return self.teams[0]

    @property
    def masks(self) -> np.ndarray:
        """The teams' masks, ``(len(teams), n_models)`` booleans, best first."""
        if not self.teams:
            return np.zeros((0, self.n_models), dtype=bool)
        return np.stack([t.mask for t in self.teams])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; the first five keys are the ``focal prune`` document.

        ``{"metric", "n_models", "n_samples", "n_teams_scored", "teams": [...]}`` then
        ``objective``, ``direction``, ``strategy``, ``sizes``, ``seconds``, ``params``,
        ``rows`` (and ``trajectory``/``history`` when the strategy has them).
        """
        doc: dict[str, Any] = {
            "metric": self.metric,
            "n_models": self.n_models,
            "n_samples": self.n_samples,
            "n_teams_scored": self.n_evaluated,
            "teams": [t.to_dict() for t in self.teams],
            "objective": self.objective,
            "direction": self.direction,
            "strategy": self.strategy,
            "sizes": list(self.sizes),
            "seconds": self.seconds,
            "params": jsonable(dict(self.params)),
            "rows": jsonable(dict(self.rows)) if self.rows is not None else None,
        }
        if self.trajectory:
            doc["trajectory"] = [t.to_dict() for t in self.trajectory]
        if self.history:
            doc["history"] = [_num(h) for h in self.history]
        return doc

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as strict JSON (NaN written as ``null``)."""
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)
