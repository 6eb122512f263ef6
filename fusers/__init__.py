"""fusers: learn-to-combine fusers on cached model outputs (LLM-TOPLA, FusionShot, stacking).

Importing this package is light (NumPy and the ``ensembles`` package only): Flax, optax and
orbax are imported when a network is first built, trained, saved or loaded. The network
module :class:`MLP` and the training toolkit (:func:`fit_classifier`, :func:`train_step`, ...)
are loaded on first attribute access for the same reason. The generative fuser
:class:`SummaryFuser` (LLM-TOPLA-Summary) and its protocol live in :mod:`fusers.summary`.

Example:
    >>> import numpy as np, ensembles, fusers
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 4, 400)
    >>> preds = np.stack([y, rng.integers(0, 4, 400), rng.integers(0, 4, 400)])
    >>> b = ensembles.with_random_split(
    ...     ensembles.Bundle.create(models=["right", "noise1", "noise2"], labels=y, preds=preds),
    ...     seed=0)
    >>> fusers.ToplaFuser(epochs=30).fit(b).score(b, split="test")
    1.0
"""

from typing import Any

from ._baselines import baselines as baselines
from ._baselines import batch_mean_accuracy as batch_mean_accuracy
from ._estimators import CONFIG_FILE as FUSER_CONFIG_FILE
from ._estimators import FUSERS as FUSERS
from ._estimators import FusionShotFuser as FusionShotFuser
from ._estimators import MLPFuser as MLPFuser
from ._estimators import StackingFuser as StackingFuser
from ._estimators import ToplaFuser as ToplaFuser
from ._estimators import load_fuser as load_fuser
from ._features import AnswerSpace as AnswerSpace
from ._features import answer_space as answer_space
from ._features import choice_scores as choice_scores
from ._features import flatten_members as flatten_members
from ._features import valid_classes as valid_classes
from ._topla import FusionResult as FusionResult
from ._topla import fusionshot as fusionshot
from ._topla import topla as topla

# Names backed by Flax / optax, loaded on first access (PEP 562) to keep `import fusers` light.
_LAZY = {
    "MLP": "._mlp",
    "ClassifierData": "._train",
    "History": "._train",
    "TrainConfig": "._train",
    "fit_classifier": "._train",
    "make_optimizer": "._train",
    "train_step": "._train",
    "SummaryFuser": ".summary",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fusers' has no attribute {name!r}")


__all__ = [
    "FUSERS",
    "FUSER_CONFIG_FILE",
    "MLP",
    "AnswerSpace",
    "ClassifierData",
    "FusionResult",
    "FusionShotFuser",
    "History",
    "MLPFuser",
    "StackingFuser",
    "SummaryFuser",
    "ToplaFuser",
    "TrainConfig",
    "answer_space",
    "baselines",
    "batch_mean_accuracy",
    "choice_scores",
    "fit_classifier",
    "flatten_members",
    "fusionshot",
    "load_fuser",
    "make_optimizer",
    "topla",
    "train_step",
    "valid_classes",
]
