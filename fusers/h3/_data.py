"""H3Fusion's data: the three alignment sets, prompt templates, response-only token masks."""

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

__all__ = [
    "ALPACA_INPUT",
    "ALPACA_NO_INPUT",
    "END",
    "GOALS",
    "SFTExample",
    "encode_examples",
    "load_eval_prompts",
    "load_goal",
    "prompt_text",
]

#: The alignment goals, in expert order (expert ``k`` serves ``GOALS[k]``).
GOALS: tuple[str, ...] = ("helpfulness", "harmlessness", "honesty")

#: The stop suffix appended to every training target (Alpaca template).
END = "###END"

ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:"
)
ALPACA_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)

_TRAIN_FILES = {
    "helpfulness": "helpfulness_train_500.jsonl.gz",
    "harmlessness": "safety_refusals_2483.jsonl.gz",
    "honesty": "truthfulqa_817.jsonl.gz",
}
_UNSAFE_SETS = (
    "I-CoNa",
    "I-Controversial",
    "I-MaliciousInstructions",
    "I-PhysicalSafetyUnsafe",
    "Q-Harm",
)


@dataclasses.dataclass(frozen=True)
class SFTExample:
    """One supervised example: an instruction (with optional input) and its target answer.

    Examples:
        >>> SFTExample("Say hi.", "Hi.").input
        ''
    """

    instruction: str
    target: str
    input: str = ""


def prompt_text(instruction: str, input: str = "", *, template: str = "alpaca") -> str:
    """The prompt a model sees: the Alpaca template (ending in ``### Response:``) or, for
    ``template="chatml"``, the bare instruction (the chat template is applied on encoding).

    Examples:
        >>> prompt_text("Add 2 and 2.").splitlines()[-4:]
        ['### Instruction:', 'Add 2 and 2.', '', '### Response:']
    """
    if template == "chatml":
        return instruction if not input else f"{instruction}\n\n{input}"
    if template != "alpaca":
        raise InputError(f"template: 'alpaca' or 'chatml', got {template!r}")
    if input:
        return ALPACA_INPUT.format(instruction=instruction, input=input)
    return ALPACA_NO_INPUT.format(instruction=instruction)


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError(f"{path}: no such data file (set --data-dir or FOCAL_DATA_DIR)")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_goal(goal: str, data_dir: str | os.PathLike) -> list[SFTExample]:
    """The training examples of one goal, in file order.

    - ``helpfulness``: ``helpfulness_train_500`` (target: the gpt-3.5-turbo-instruct output);
    - ``harmlessness``: ``safety_refusals_2483`` (harmful instruction → safe refusal);
    - ``honesty``: TruthfulQA questions with ``h3_split == "train"``, one example per correct
      answer.

    Args:
        goal: one of :data:`GOALS`.
        data_dir: the alignment data folder.

    Returns:
        The examples.

    Raises:
        InputError: an unknown goal or a missing file.

    Examples:
        >>> load_goal("kindness", ".")
        Traceback (most recent call last):
        ...
        ensembles.util.InputError: goal: one of helpfulness, harmlessness, honesty, got 'kindness'
    """
    if goal not in GOALS:
        raise InputError(f"goal: one of {', '.join(GOALS)}, got {goal!r}")
    rows = _read(Path(data_dir) / _TRAIN_FILES[goal])
    if goal == "helpfulness":
        return [SFTExample(r["instruction"], r["out_gpt35_turbo_instruct"].strip()) for r in rows]
    if goal == "harmlessness":
        return [
            SFTExample(r["instruction"], r["output"].strip(), r.get("input") or "") for r in rows
        ]
    out = []
    for r in rows:
        if r["h3_split"] != "train":
            continue
        for answer in r["correct_answers"]:
            out.append(SFTExample(r["question"], answer.strip()))
    return out


def load_eval_prompts(goal: str, data_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The evaluation prompts of one goal, in file order.

    - ``helpfulness``: the 805 AlpacaEval prompts, ``reference`` = the text-davinci-003 output;
    - ``harmlessness``: the unsafe sets of ``safety_eval_prompts_668`` then the 83 red-team
      prompts (``set`` names the source);
    - ``honesty``: the 409 TruthfulQA questions with ``h3_split == "test"`` (``reference`` =
      best answer).

    Returns:
        Dicts with ``id``, ``prompt`` and, where there is one, ``reference`` and ``set``.

    Examples:
        >>> load_eval_prompts("honesty", "/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ensembles.util.InputError: /nonexistent/truthfulqa_817.jsonl.gz: no such data file ...
    """
    root = Path(data_dir)
    if goal == "helpfulness":
        rows = _read(root / "alpaca_eval_prompts.jsonl.gz")
        return [
            {"id": f"alpaca-{r['idx']}", "prompt": r["instruction"],
             "reference": r["ref_text_davinci_003"], "set": r["dataset"]}
            for r in rows
        ]  # fmt: skip
    if goal == "harmlessness":
        rows = _read(root / "safety_eval_prompts_668.jsonl.gz")
        out = [
            {"id": f"safety-{r['set']}-{r['idx']}", "prompt": r["instruction"], "set": r["set"]}
            for r in rows
            if r["set"] in _UNSAFE_SETS
        ]
        red = _read(root / "redteam_prompts_83.jsonl.gz")
        out += [{"id": f"redteam-{r['idx']}", "prompt": r["prompt"], "set": "redteam"} for r in red]
        return out
    if goal == "honesty":
        rows = _read(root / "truthfulqa_817.jsonl.gz")
        return [
            {"id": f"tqa-{r['idx']}", "prompt": r["question"], "reference": r["best_answer"],
             "set": "truthfulqa"}
            for r in rows
            if r["h3_split"] == "test"
        ]  # fmt: skip
    raise InputError(f"goal: one of {', '.join(GOALS)}, got {goal!r}")


def _prompt_ids(tokenizer: Any, example: SFTExample, template: str) -> list[int]:
    from .. import lm

    text = prompt_text(example.instruction, example.input, template=template)
    return lm.chat_ids(tokenizer, text, chat=template == "chatml")


def encode_examples(
    tokenizer: Any,
    examples: Sequence[SFTExample],
    *,
    template: str = "alpaca",
    max_length: int = 128,
    eos_token_id: int | None = None,
) -> list[tuple[list[int], list[int]]]:
    """Token ids and response-only loss masks of the examples.

    Alpaca template: prompt ids, then ``target + "###END"`` and the end-of-sequence token;
    ChatML: the chat template's user turn and opened assistant turn, then the target and the
    end-of-turn token. The mask is 1 on the response tokens only (the prompt, including any
    beginning-of-sequence token, is masked). Sequences longer than ``max_length`` are cut on
    the right (a prompt of ``max_length`` tokens or more leaves no target).

    Args:
        tokenizer: the model's tokenizer.
        examples: the examples.
        template: ``"alpaca"`` or ``"chatml"``.
        max_length: tokens per sequence at most.
        eos_token_id: the end token (default: the tokenizer's).

    Returns:
        ``[(ids, mask)]``, one pair per example.

    Examples:
        >>> from fusers import lm
        >>> tok = lm.train_tokenizer(["a b c"] * 5, vocab_size=300)
        >>> ids, mask = encode_examples(tok, [SFTExample("a", "b")], eos_token_id=0,
        ...                             max_length=1000)[0]
        >>> len(ids) == len(mask), mask[0], mask[-1]
        (True, 0, 1)
    """
    if max_length < 2:
        raise InputError(f"max_length: at least 2, got {max_length}")
    eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    if eos is None:
        raise InputError("tokenizer: no end-of-sequence token (pass eos_token_id)")
    out = []
    for ex in examples:
        prompt = _prompt_ids(tokenizer, ex, template)
        suffix = END if template == "alpaca" else ""
        target = list(tokenizer(ex.target + suffix, add_special_tokens=False)["input_ids"])
        target.append(int(eos))
        ids = (prompt + target)[:max_length]
        mask = ([0] * len(prompt) + [1] * len(target))[:max_length]
        out.append((ids, mask))
    return out


def _lengths(encoded: Sequence[tuple[list[int], list[int]]]) -> np.ndarray:
    return np.asarray([len(i) for i, _ in encoded])
