"""Data for the generative fuser: MMLU-Pro texts, AlpacaEval candidates, a synthetic check."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.util import InputError

from ._fuser import SummaryExample
from ._parse import LETTERS, parse_choice

__all__ = [
    "LETTERS",
    "SyntheticData",
    "alpaca_examples",
    "load_jsonl",
    "mmlu_pro_bundle",
    "mmlu_pro_examples",
    "parse_choice",
    "question_split",
    "synthetic_offsets",
]


def load_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file (gzipped when the name ends in ``.gz``).

    Raises:
        InputError: a missing file or a line that is not a JSON object.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.jsonl"
        >>> _ = p.write_text('{"a": 1}\\n\\n{"a": 2}\\n')
        >>> [r["a"] for r in load_jsonl(p)]
        [1, 2]
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    opener = gzip.open if p.name.endswith(".gz") else open
    rows = []
    try:
        with opener(p, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise InputError(f"{p}:{n}: expected a JSON object")
                    rows.append(row)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise InputError(f"{p}: not a JSON-lines file ({type(exc).__name__})") from None
    return rows


def question_split(
    n: int, *, seed: int, fractions: Sequence[float] = (0.7, 0.1, 0.2)
) -> np.ndarray:
    """A seeded question-level split: an array of ``"train"``, ``"val"``, ``"test"``.

    Example:
        >>> s = question_split(10, seed=0)
        >>> [int((s == k).sum()) for k in ("train", "val", "test")]
        [7, 1, 2]
    """
    f = np.asarray(fractions, np.float64)
    if f.shape != (3,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise InputError(f"fractions: three non-negative numbers summing to 1, got {fractions}")
    n_train, n_val = int(round(f[0] * n)), int(round(f[1] * n))
    order = np.random.default_rng(seed).permutation(n)
    split = np.empty(n, dtype=object)
    split[order[:n_train]] = "train"
    split[order[n_train : n_train + n_val]] = "val"
    split[order[n_train + n_val :]] = "test"
    return split.astype(str)


def _check_mmlu(rows: Sequence[dict[str, Any]]) -> None:
    need = ("question", "options", "answer_index", "candidates")
    for i, r in enumerate(rows):
        missing = [k for k in need if k not in r]
        if missing:
            raise InputError(f"MMLU-Pro row {i}: missing {', '.join(missing)}")
    counts = {len(r["candidates"]) for r in rows}
    if len(counts) != 1:
        raise InputError(f"MMLU-Pro rows: candidate counts differ ({sorted(counts)})")


def mmlu_pro_bundle(rows: Sequence[dict[str, Any]], split: Any = None):
    """An :class:`ensembles.Bundle` of the candidates' extracted options (``-1`` = none).

    Example:
        >>> rows = [{"question": "q", "options": ["x", "y"], "answer_index": 1,
        ...          "candidates": [{"model": "m", "pred_index": 1, "text": "(B)"},
        ...                         {"model": "n", "pred_index": -1, "text": "?"}]}]
        >>> mmlu_pro_bundle(rows).accuracies().tolist()
        [1.0, 0.0]
    """
    import ensembles

    _check_mmlu(rows)
    models = [c["model"] for c in rows[0]["candidates"]]
    preds = np.array([[c["pred_index"] for c in r["candidates"]] for r in rows], np.int64).T
    labels = np.array([r["answer_index"] for r in rows], np.int64)
    n_classes = max(max(len(r["options"]) for r in rows), int(preds.max()) + 1)
    return ensembles.Bundle.create(
        models=models, labels=labels, preds=preds, n_classes=n_classes, split=split,
        task="mmlu_pro_texts",
    )  # fmt: skip


def mmlu_pro_examples(
    rows: Sequence[dict[str, Any]], members: Sequence[int], *, question_only: bool = False
) -> list[SummaryExample]:
    """Fusion examples: the question with its lettered options, the members' outputs, and the
    target ``"The answer is (X)."`` (``answer`` = the gold option index).

    Example:
        >>> rows = [{"question": "2+2?", "options": ["3", "4"], "answer_index": 1,
        ...          "candidates": [{"model": "m", "pred_index": 1, "text": "The answer is (B)."}]}]
        >>> ex = mmlu_pro_examples(rows, [0])[0]
        >>> ex.question.splitlines()[1], ex.candidates, ex.target, ex.answer
        ('(A) 3', ('The answer is (B).',), 'The answer is (B).', 1)
    """
    _check_mmlu(rows)
    out = []
    for r in rows:
        opts = "\n".join(f"({LETTERS[k]}) {o}" for k, o in enumerate(r["options"]))
        cands = () if question_only else tuple(str(r["candidates"][j]["text"]) for j in members)
        gold = int(r["answer_index"])
        out.append(
            SummaryExample(
                f"{r['question']}\n{opts}", cands, f"The answer is ({LETTERS[gold]}).", gold
            )  # fmt: skip
        )
    return out


def alpaca_examples(
    rows: Sequence[dict[str, Any]],
    prompts: Sequence[dict[str, Any]],
    team: Sequence[str],
) -> list[SummaryExample]:
    """Open-ended fusion examples from AlpacaEval-1 judged outputs.

    Each prompt that every team member answered gives one example: the instruction, the
    members' outputs (team order), and as target the output of the member GPT-4 preferred
    most over the davinci-003 reference (``win``; the first such member on ties), or the
    reference itself when no member won. ``answer`` holds the reference text, for a judge.

    Args:
        rows: rows of ``alpaca_eval1_gpt4_judged`` (``model, idx, output, win``).
        prompts: rows of ``alpaca_eval_prompts`` (``idx, instruction, ref_text_davinci_003``).
        team: model names.

    Example:
        >>> rows = [{"model": "a", "idx": 0, "output": "A", "win": 0.0},
        ...         {"model": "b", "idx": 0, "output": "B", "win": 1.0}]
        >>> ex = alpaca_examples(rows, [{"idx": 0, "instruction": "Hi", "ref_text_davinci_003":
        ...                              "R"}], ["a", "b"])[0]
        >>> ex.candidates, ex.target, ex.answer
        (('A', 'B'), 'B', 'R')
    """
    by = {}
    for r in rows:
        by[(str(r["model"]), str(r["idx"]))] = r
    out = []
    for p in prompts:
        idx = str(p["idx"])
        got = [by.get((m, idx)) for m in team]
        if any(g is None or g.get("output") is None for g in got):
            continue
        wins = [float(g["win"]) if g.get("win") is not None else -1.0 for g in got]
        best = int(np.argmax(wins))
        ref = str(p["ref_text_davinci_003"])
        target = str(got[best]["output"]) if wins[best] > 0.5 else ref
        out.append(
            SummaryExample(
                str(p["instruction"]), tuple(str(g["output"]) for g in got), target, ref
            )  # fmt: skip
        )
    return out


@dataclasses.dataclass(frozen=True)
class SyntheticData:
    """Output of :func:`synthetic_offsets`.

    Attributes:
        examples: the fusion examples (target = the true digit).
        answers: ``(M, n)`` each member's stated answer.
        truth: ``(n,)`` the true digits.
    """

    examples: list[SummaryExample]
    answers: np.ndarray
    truth: np.ndarray

    def plurality_accuracy(self) -> float:
        """Accuracy of the plurality vote of the members' answers (lowest digit on ties)."""
        m, n = self.answers.shape
        counts = np.zeros((n, 10), np.int64)
        for j in range(m):
            counts[np.arange(n), self.answers[j]] += 1
        return float((counts.argmax(axis=1) == self.truth).mean())


def synthetic_offsets(
    n: int, *, n_members: int = 3, p_right: float = 0.3, seed: int = 0
) -> SyntheticData:
    """Members with structured errors: the truth is recoverable only by reading their texts.

    The true answer is a random digit the question does not reveal. Each member is right with
    probability ``p_right``; otherwise its answer is the truth shifted by the member's own
    offset (member ``j``: ``2j + 1`` modulo 10, never 0) modulo 10. Every member states its
    shift in its text (``"+3=7"``: the truth plus 3 is 7), so the truth is ``(answer - shift)
    mod 10`` of any member, while a vote of the answers is often wrong (wrong members agree
    with nobody).

    Example:
        >>> d = synthetic_offsets(200, seed=0)
        >>> d.examples[0].candidates[0][0], d.plurality_accuracy() < 0.6
        ('+', True)
    """
    if n < 1 or n_members < 1 or not 0 <= p_right <= 1:
        raise InputError("synthetic_offsets: need n >= 1, n_members >= 1, 0 <= p_right <= 1")
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 10, n)
    right = rng.random((n_members, n)) < p_right
    own = np.array([(2 * j + 1) % 10 or 9 for j in range(n_members)])[:, None]
    shift = np.where(right, 0, np.broadcast_to(own, (n_members, n)))
    answers = (truth[None] + shift) % 10
    examples = [
        SummaryExample(
            "Digit?",
            tuple(f"+{shift[j, i]}={answers[j, i]}" for j in range(n_members)),
            str(truth[i]),
        )
        for i in range(n)
    ]
    return SyntheticData(examples, answers, truth)
