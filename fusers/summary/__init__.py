"""Generative fusion (LLM-TOPLA-Summary): a decoder reads the question and the team's answers.

The fuser (:class:`SummaryFuser`) lays out each example as one decoder sequence with added
marker tokens (:class:`Layout`), fine-tunes SmolLM2-135M-Instruct with LoRA (or fully, or a
tiny decoder from scratch) to write the target, and is evaluated by greedy generation and a
task parser. :func:`run_mmlu_pro` runs the whole MMLU-Pro protocol with its baselines;
:func:`synthetic_offsets` builds the synthetic check. See ``docs/summary.md``.

Example:
    >>> from fusers.summary import Layout
    >>> Layout(n_candidates=3, first_marker=100, eos_id=2).n_markers
    9
"""

from ._data import LETTERS as LETTERS
from ._data import SyntheticData as SyntheticData
from ._data import alpaca_examples as alpaca_examples
from ._data import load_jsonl as load_jsonl
from ._data import mmlu_pro_bundle as mmlu_pro_bundle
from ._data import mmlu_pro_examples as mmlu_pro_examples
from ._data import parse_choice as parse_choice
from ._data import question_split as question_split
from ._data import synthetic_offsets as synthetic_offsets
from ._fuser import SummaryExample as SummaryExample
from ._fuser import SummaryFuser as SummaryFuser
from ._layout import ByteTokenizer as ByteTokenizer
from ._layout import Layout as Layout
from ._layout import TokenizerAdapter as TokenizerAdapter
from ._protocol import ALPACA_BUDGETS as ALPACA_BUDGETS
from ._protocol import BUDGETS as BUDGETS
from ._protocol import choose_team as choose_team
from ._protocol import results_table as results_table
from ._protocol import run_alpaca_eval as run_alpaca_eval
from ._protocol import run_mmlu_pro as run_mmlu_pro

__all__ = [
    "ALPACA_BUDGETS",
    "BUDGETS",
    "LETTERS",
    "ByteTokenizer",
    "Layout",
    "SummaryExample",
    "SummaryFuser",
    "SyntheticData",
    "TokenizerAdapter",
    "alpaca_examples",
    "choose_team",
    "load_jsonl",
    "mmlu_pro_bundle",
    "mmlu_pro_examples",
    "parse_choice",
    "question_split",
    "results_table",
    "run_alpaca_eval",
    "run_mmlu_pro",
    "synthetic_offsets",
]
