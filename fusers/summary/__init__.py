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

from ._fuser import SummaryExample as SummaryExample
from ._fuser import SummaryFuser as SummaryFuser
from ._layout import ByteTokenizer as ByteTokenizer
from ._layout import Layout as Layout
from ._layout import TokenizerAdapter as TokenizerAdapter

__all__ = [
    "ByteTokenizer",
    "Layout",
    "SummaryExample",
    "SummaryFuser",
    "TokenizerAdapter",
]
