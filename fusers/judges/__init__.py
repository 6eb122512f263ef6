"""Judges of open-ended answers: linear heads on frozen SmolLM2 features, validated.

Each judge reads a ``(prompt, reply)`` exchange laid out in the decoder's chat template; its
features (decoder blocks, mean or last-token pooling, reply truncation) and head strength are
chosen by grouped cross-validation inside its training rows.

Four judges, each trained on human- or GPT-4-labelled rows and measured once on held-apart
rows; the figures travel with the judge (``judge.validation``) and with every score it gives:

- ``truthfulness`` and ``informativeness``: TruthfulQA's judge sets, question-disjoint;
- ``helpfulness``: AlpacaEval-1 GPT-4 preferences of a model output over the davinci-003
  reference (ties as half wins), prompt- and model-disjoint, its held-apart models spanning
  the win-rate range; its cross-validation folds are disjoint in prompts and models too;
- ``harmlessness``: hh-rlhf harmless chosen/rejected replies and safety refusals.

Examples:
    >>> from fusers import judges
    >>> sorted(judges.KINDS)
    ['harmlessness', 'helpfulness', 'informativeness', 'truthfulness']
"""

from ._data import KINDS as KINDS
from ._data import JudgeData as JudgeData
from ._data import load_judge_data as load_judge_data
from ._features import REPLY_STATS as REPLY_STATS
from ._features import ChatFeatures as ChatFeatures
from ._features import chat_features as chat_features
from ._features import chat_turn_ids as chat_turn_ids
from ._features import hidden_features as hidden_features
from ._features import prefix_model as prefix_model
from ._features import reply_stats as reply_stats
from ._judge import SMALL_HEAD as SMALL_HEAD
from ._judge import SMALL_PAIRS as SMALL_PAIRS
from ._judge import FeatureSpec as FeatureSpec
from ._judge import Judge as Judge
from ._judge import fit_judge as fit_judge
from ._judge import judge_texts as judge_texts
from ._judge import prompt_hash as prompt_hash
from ._judge import score_rows as score_rows
from ._judge import select_features as select_features
from ._judge import trained_on as trained_on
from ._judge import validation_summary as validation_summary

__all__ = [
    "KINDS",
    "REPLY_STATS",
    "SMALL_HEAD",
    "SMALL_PAIRS",
    "ChatFeatures",
    "FeatureSpec",
    "Judge",
    "JudgeData",
    "chat_features",
    "chat_turn_ids",
    "fit_judge",
    "hidden_features",
    "judge_texts",
    "load_judge_data",
    "prefix_model",
    "prompt_hash",
    "reply_stats",
    "score_rows",
    "select_features",
    "trained_on",
    "validation_summary",
]
