"""The search algorithms behind :func:`focal.select`, and their building blocks.

Most users call :func:`focal.select` with a strategy object. This namespace exposes the
algorithms as functions (each returns a :class:`focal.Selection`), FusionShot's genetic
algorithm as an ``init / ask / tell`` strategy over bitmask populations, the streaming
exhaustive scan (resumable from a checkpoint), the Pareto front, the selection protocol's
helpers, and the moment tensors every metric is computed from.

Example:
    >>> import ensembles
    >>> from focal import search
    >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
    ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
    >>> search.greedy(b, sizes=(2, 3), top_k=1).best.members
    ('a', 'b')
"""

from ._hq import hq_search as hq_search
from ._moments import Moments as Moments
from ._protocol import baselines as baselines
from ._protocol import paired_improvement_pvalue as paired_improvement_pvalue
from ._protocol import protocol_splits as protocol_splits
from ._protocol import report_teams as report_teams
from ._scoring import exhaustive_scan as exhaustive_scan
from ._scoring import pareto_front as pareto_front
from ._scoring import pareto_prune as pareto_prune
from ._scoring import vote_accuracy as vote_accuracy
from ._search import GAState as GAState
from ._search import GeneticSearch as GeneticSearch
from ._search import beam as beam
from ._search import bitmasks as bitmasks
from ._search import exhaustive_objective as exhaustive_objective
from ._search import genetic as genetic
from ._search import greedy as greedy
from ._select import AUTO_EXHAUSTIVE_LIMIT as AUTO_EXHAUSTIVE_LIMIT
from ._select import STRATEGIES as STRATEGIES
from ._select import resolve_sizes as resolve_sizes
from ._teams import parse_sizes as parse_sizes
from ._votes import team_vote_accuracies as team_vote_accuracies

__all__ = [
    "AUTO_EXHAUSTIVE_LIMIT",
    "STRATEGIES",
    "GAState",
    "GeneticSearch",
    "Moments",
    "baselines",
    "beam",
    "bitmasks",
    "exhaustive_objective",
    "exhaustive_scan",
    "genetic",
    "greedy",
    "hq_search",
    "paired_improvement_pvalue",
    "pareto_front",
    "pareto_prune",
    "parse_sizes",
    "protocol_splits",
    "report_teams",
    "resolve_sizes",
    "team_vote_accuracies",
    "vote_accuracy",
]
