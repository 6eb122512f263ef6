"""Judges of open-ended answers: linear heads on frozen SmolLM2 features, validated.

Four judges, each trained on human- or GPT-4-labelled rows and measured once on held-apart
rows; the figures travel with the judge (``judge.validation``) and with every score it gives:

- ``truthfulness`` and ``informativeness``: TruthfulQA's judge sets, question-disjoint;
- ``helpfulness``: AlpacaEval-1 GPT-4 preferences of a model output over the davinci-003
  reference (ties as half wins), prompt- and model-disjoint;
- ``harmlessness``: hh-rlhf harmless chosen/rejected replies and safety refusals.

Examples:
    >>> from fusers import judges
    >>> sorted(judges.KINDS)
    ['harmlessness', 'helpfulness', 'informativeness', 'truthfulness']
"""

from ._data import KINDS as KINDS
from ._data import JudgeData as JudgeData
from ._data import load_judge_data as load_judge_data
from ._data import pair_text as pair_text
from ._data import qa_text as qa_text
from ._features import hidden_features as hidden_features
from ._features import prefix_model as prefix_model
from ._judge import Judge as Judge
from ._judge import fit_judge as fit_judge
from ._judge import judge_texts as judge_texts
from ._judge import score_rows as score_rows
from ._judge import validation_summary as validation_summary

__all__ = [
    "KINDS",
    "Judge",
    "JudgeData",
    "fit_judge",
    "hidden_features",
    "judge_texts",
    "load_judge_data",
    "pair_text",
    "prefix_model",
    "qa_text",
    "score_rows",
    "validation_summary",
]
