"""focal: exact focal diversity and the classic diversity metrics for every sub-ensemble.

The numerical core of focal-fusion: moment tensors computed once per bundle, then XLA-jitted
closed forms score batches of teams independently of the number of samples.

Example:
    >>> import ensembles, focal
    >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
    ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
    >>> round(float(focal.score_teams(b, [("a", "c")])[0]), 3)
    0.333
    >>> focal.prune(b, sizes=2, top_k=1).teams[0].members
    ('a', 'b')
"""

from ._compat_ensemblebench import EB_METRICS as EB_METRICS
from ._compat_ensemblebench import FQOptions as FQOptions
from ._compat_ensemblebench import FQResult as FQResult
from ._compat_ensemblebench import TeamSelection as TeamSelection
from ._compat_ensemblebench import TeamStatistics as TeamStatistics
from ._compat_ensemblebench import fq_scores as fq_scores
from ._compat_ensemblebench import fq_select as fq_select
from ._compat_ensemblebench import team_statistics as team_statistics
from ._graph import draw_graph as draw_graph
from ._graph import graph_layout as graph_layout
from ._graph import pool_graph as pool_graph
from ._graph import read_graph as read_graph
from ._graph import to_json as graph_to_json
from ._graph import write_graph as write_graph
from ._hq import HQResult as HQResult
from ._hq import HQSearchResult as HQSearchResult
from ._hq import hq_search as hq_search
from ._hq import hq_select as hq_select
from ._metrics import METRICS as METRICS
from ._metrics import MetricSpec as MetricSpec
from ._metrics import metric_spec as metric_spec
from ._moments import Moments as Moments
from ._objective import Objective as Objective
from ._objective import pareto_front as pareto_front
from ._protocol import DEFAULT_OBJECTIVE as DEFAULT_OBJECTIVE
from ._protocol import SelectionReport as SelectionReport
from ._protocol import paired_improvement_pvalue as paired_improvement_pvalue
from ._protocol import protocol_splits as protocol_splits
from ._protocol import recommend as recommend
from ._protocol import report_teams as report_teams
from ._scoring import DEFAULT_MAX_TEAMS as DEFAULT_MAX_TEAMS
from ._scoring import PruneResult as PruneResult
from ._scoring import TeamScore as TeamScore
from ._scoring import pareto_prune as pareto_prune
from ._scoring import prune as prune
from ._scoring import score_all as score_all
from ._scoring import score_team as score_team
from ._scoring import score_teams as score_teams
from ._search import SEARCH_METHODS as SEARCH_METHODS
from ._search import GAState as GAState
from ._search import GeneticSearch as GeneticSearch
from ._search import SearchResult as SearchResult
from ._search import SearchTeam as SearchTeam
from ._search import beam as beam
from ._search import exhaustive_objective as exhaustive_objective
from ._search import genetic as genetic
from ._search import greedy as greedy
from ._search import search as search
from ._teams import count_teams as count_teams
from ._teams import parse_sizes as parse_sizes

# exact vote accuracy of all teams (packed tallies)
from ._votes import team_vote_accuracies as team_vote_accuracies

__all__ = [
    "SEARCH_METHODS",
    "GAState",
    "GeneticSearch",
    "SearchResult",
    "SearchTeam",
    "beam",
    "exhaustive_objective",
    "genetic",
    "greedy",
    "search",
    "DEFAULT_MAX_TEAMS",
    "DEFAULT_OBJECTIVE",
    "EB_METRICS",
    "METRICS",
    "FQOptions",
    "FQResult",
    "HQResult",
    "HQSearchResult",
    "MetricSpec",
    "Moments",
    "Objective",
    "PruneResult",
    "SelectionReport",
    "TeamScore",
    "TeamSelection",
    "TeamStatistics",
    "count_teams",
    "fq_scores",
    "fq_select",
    "draw_graph",
    "graph_layout",
    "graph_to_json",
    "hq_search",
    "hq_select",
    "metric_spec",
    "paired_improvement_pvalue",
    "pareto_front",
    "pareto_prune",
    "pool_graph",
    "parse_sizes",
    "protocol_splits",
    "prune",
    "read_graph",
    "recommend",
    "report_teams",
    "score_all",
    "score_team",
    "score_teams",
    "team_statistics",
    "write_graph",
]

# exact vote accuracy of all teams (packed tallies)
__all__ += ["team_vote_accuracies"]
