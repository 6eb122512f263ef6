"""Compatibility pipelines of published ensemble-pruning code, as explicit opt-in modes.

- EnsembleBench's FQ pipeline (:func:`fq_select`, :func:`fq_scores`, :class:`FQOptions`) with a
  switch for each of its behaviours, faithful or fixed.
- HQ-Ensemble's hierarchical pruning as a pipeline (:func:`hq_select`, :class:`HQResult`); as a
  search strategy it is :class:`focal.HQ`.

Example:
    >>> from focal import compat
    >>> compat.FQOptions().faithful
    False
"""

from ._compat_ensemblebench import EB_METRICS as EB_METRICS
from ._compat_ensemblebench import FQOptions as FQOptions
from ._compat_ensemblebench import FQResult as FQResult
from ._compat_ensemblebench import TeamSelection as TeamSelection
from ._compat_ensemblebench import TeamStatistics as TeamStatistics
from ._compat_ensemblebench import fq_scores as fq_scores
from ._compat_ensemblebench import fq_select as fq_select
from ._compat_ensemblebench import team_statistics as team_statistics
from ._hq import HQ_METRICS as HQ_METRICS
from ._hq import HQLevel as HQLevel
from ._hq import HQMetricResult as HQMetricResult
from ._hq import HQResult as HQResult
from ._hq import hq_select as hq_select

__all__ = [
    "EB_METRICS",
    "HQ_METRICS",
    "FQOptions",
    "FQResult",
    "HQLevel",
    "HQMetricResult",
    "HQResult",
    "TeamSelection",
    "TeamStatistics",
    "fq_scores",
    "fq_select",
    "hq_select",
    "team_statistics",
]
