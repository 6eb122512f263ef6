"""Plots of scored teams (matplotlib, imported lazily).

Example:
    >>> from focal.plot import DiversityAccuracyDisplay
    >>> DiversityAccuracyDisplay.__name__
    'DiversityAccuracyDisplay'
"""

from ._plot import DiversityAccuracyDisplay as DiversityAccuracyDisplay

__all__ = ["DiversityAccuracyDisplay"]
