"""focal: choose teams of models by focal diversity and accuracy, exactly and fast.

The numerical core of focal-fusion. Moment tensors of a pool's error matrix are computed once,
then XLA-jitted closed forms score batches of teams independently of the number of samples.

- Score: :func:`score_teams` (many teams, one metric), :func:`score_team` (one team, every
  metric), :func:`score_all`; the metrics registry :data:`METRICS` / :func:`metric_spec`.
- Choose: :func:`select` ranks teams by an :class:`Objective` with a strategy
  (:class:`Exhaustive`, :class:`Greedy`, :class:`Beam`, :class:`Genetic`, :class:`HQ`) and
  returns a :class:`Selection` of :class:`Team` records; :func:`prune` ranks by diversity
  alone; :func:`recommend` chooses a (team, combiner) pair by cross-validation inside the
  selection rows and keeps the best single model unless the pair beats it significantly (a
  :class:`Recommendation`), reporting on rows it never chose on.
- Sub-namespaces: :mod:`focal.search` (the search algorithms and their building blocks),
  :mod:`focal.compat` (EnsembleBench and HQ-Ensemble pipelines), :mod:`focal.graph`,
  :mod:`focal.plot`.

Example:
    >>> import ensembles, focal
    >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
    ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
    >>> round(float(focal.score_teams(b, [("a", "c")])[0]), 3)
    0.333
    >>> focal.select(b, objective="focal", sizes=2, top_k=1).best.members
    ('a', 'b')
"""

from ._metrics import METRICS as METRICS
from ._metrics import MetricSpec as MetricSpec
from ._metrics import metric_spec as metric_spec
from ._objective import Objective as Objective
from ._recommend import Recommendation as Recommendation
from ._recommend import recommend as recommend
from ._scoring import DEFAULT_MAX_TEAMS as DEFAULT_MAX_TEAMS
from ._scoring import score_all as score_all
from ._scoring import score_team as score_team
from ._scoring import score_teams as score_teams
from ._select import HQ as HQ
from ._select import Beam as Beam
from ._select import Exhaustive as Exhaustive
from ._select import Genetic as Genetic
from ._select import Greedy as Greedy
from ._select import default_sizes as default_sizes
from ._select import prune as prune
from ._select import select as select
from ._teams import count_teams as count_teams
from ._types import Selection as Selection
from ._types import Team as Team

__all__ = [
    "DEFAULT_MAX_TEAMS",
    "HQ",
    "METRICS",
    "Beam",
    "Exhaustive",
    "Genetic",
    "Greedy",
    "MetricSpec",
    "Objective",
    "Recommendation",
    "Selection",
    "Team",
    "count_teams",
    "default_sizes",
    "metric_spec",
    "prune",
    "recommend",
    "score_all",
    "score_team",
    "score_teams",
    "select",
]
