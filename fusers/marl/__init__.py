"""MARL-Focal: a decider that picks which models to consult per query, an aggregator that fuses.

See ``docs/marl.md``. The environment is a set of pure JAX functions (:func:`reset`,
:func:`observe`, :func:`step`); the agents are Flax NNX policies trained by REINFORCE
(``faithful``) or PPO with a value baseline (``fixed``), with every phase rolled out under
``jax.lax.scan`` and vmapped over tasks and seeds.
"""

from ._agents import VoteAggregator as VoteAggregator
from ._config import MODES as MODES
from ._config import MarlConfig as MarlConfig
from ._context import read_texts as read_texts
from ._context import text_features as text_features
from ._env import WINDOW_METRICS as WINDOW_METRICS
from ._env import EnvData as EnvData
from ._env import EnvSpec as EnvSpec
from ._env import env_data as env_data
from ._env import observe as observe
from ._env import reset as reset
from ._env import scored_rows as scored_rows
from ._env import step as step
from ._env import window_metrics as window_metrics
from ._env import window_score as window_score
from ._fit import TaskArrays as TaskArrays
from ._fit import TaskRun as TaskRun
from ._fit import carve_validation as carve_validation
from ._fit import fit_tasks as fit_tasks
from ._fit import task_arrays as task_arrays
from ._model import MarlFocal as MarlFocal
from ._model import cost_metric as cost_metric
from ._model import inference_records as inference_records
from ._model import load_marl as load_marl
from ._model import write_records as write_records
from ._router import RouterRun as RouterRun
from ._router import check_quality as check_quality
from ._router import fit_router as fit_router

__all__ = [
    "MODES",
    "WINDOW_METRICS",
    "EnvData",
    "EnvSpec",
    "MarlConfig",
    "MarlFocal",
    "RouterRun",
    "TaskArrays",
    "TaskRun",
    "VoteAggregator",
    "carve_validation",
    "check_quality",
    "cost_metric",
    "env_data",
    "fit_router",
    "fit_tasks",
    "inference_records",
    "load_marl",
    "observe",
    "read_texts",
    "reset",
    "scored_rows",
    "step",
    "task_arrays",
    "text_features",
    "window_metrics",
    "window_score",
    "write_records",
]
