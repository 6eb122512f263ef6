"""Bundles of cached model outputs: load, validate, split, import, and combine.

Example:
    >>> import ensembles
    >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 1],
    ...                             preds=[[0, 1], [0, 0], [1, 1]])
    >>> ensembles.team_accuracy(b, [[True, True, True]]).tolist()
    [1.0]
"""

from ._bundle import SPLIT_NAMES as SPLIT_NAMES
from ._bundle import Bundle as Bundle
from ._bundle import BundleError as BundleError
from ._bundle import predictions_from_scores as predictions_from_scores
from ._combiners import COMBINERS as COMBINERS
from ._combiners import combine as combine
from ._combiners import team_accuracy as team_accuracy
from ._importers import cross_fit_sklearn as cross_fit_sklearn
from ._importers import from_jsonl as from_jsonl
from ._importers import from_sklearn as from_sklearn
from ._importers_alpaca import from_alpaca_eval as from_alpaca_eval
from ._importers_alpaca import from_alpaca_eval_judged as from_alpaca_eval_judged
from ._importers_lmeval import from_lm_eval as from_lm_eval
from ._importers_table import from_table as from_table
from ._io import list_tasks as list_tasks
from ._io import load_bundle as load_bundle
from ._io import load_tasks as load_tasks
from ._io import save_bundle as save_bundle
from ._io import save_tasks as save_tasks
from ._splits import DEFAULT_FRACTIONS as DEFAULT_FRACTIONS
from ._splits import DEFAULT_VAL_FRACTION as DEFAULT_VAL_FRACTION
from ._splits import SplitInfo as SplitInfo
from ._splits import ensure_splits as ensure_splits
from ._splits import with_random_split as with_random_split
from .util import InputError as InputError

__all__ = [
    "COMBINERS",
    "DEFAULT_FRACTIONS",
    "DEFAULT_VAL_FRACTION",
    "InputError",
    "SplitInfo",
    "ensure_splits",
    "SPLIT_NAMES",
    "Bundle",
    "BundleError",
    "combine",
    "from_alpaca_eval",
    "from_alpaca_eval_judged",
    "from_jsonl",
    "from_lm_eval",
    "cross_fit_sklearn",
    "from_sklearn",
    "from_table",
    "list_tasks",
    "load_bundle",
    "load_tasks",
    "predictions_from_scores",
    "save_bundle",
    "save_tasks",
    "team_accuracy",
    "with_random_split",
]
