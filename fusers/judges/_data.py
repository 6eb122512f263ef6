"""Labelled rows for the judges, with question-, prompt- and model-disjoint splits."""

from __future__ import annotations

import ast
import gzip
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ensembles.util import InputError

__all__ = ["JudgeData", "KINDS", "load_judge_data"]

#: Judges this package trains.
KINDS = ("truthfulness", "informativeness", "helpfulness", "harmlessness")

_PER_PROMPT = 5  # helpfulness: outputs drawn per training prompt
_MODEL_STRATUM = 5  # helpfulness: one held-apart model per this many, ranked by win rate

_FILES = {
    "truthfulness": ("truthfulqa_judge_truth.jsonl.gz",),
    "informativeness": ("truthfulqa_judge_info.jsonl.gz",),
    "helpfulness": ("alpaca_eval1_gpt4_judged.jsonl.gz", "alpaca_eval_prompts.jsonl.gz"),
    "harmlessness": ("hh_rlhf_harmless_test.jsonl.gz", "safety_refusals_2483.jsonl.gz"),
}


class JudgeData(NamedTuple):
    """Rows of one judge, split into training and held-apart rows.

    Attributes:
        kind: the judge.
        train_a, test_a: ``(prompt, reply)`` pairs (the model output for pairwise judges).
        train_b, test_b: ``(prompt, reference)`` pairs of pairwise judges (``None`` for
            pointwise ones).
        train_y, test_y: labels in ``[0, 1]`` (``0.5`` = tie for helpfulness).
        split: how the rows were chosen and split (source, seed, sizes, disjointness).
        test_groups: for harmlessness, the pair id of each held-apart row (``-1``: refusal).
        train_groups: group of each training row for grouped cross-validation (question,
            prompt, or hh pair; rows of one group always fall in the same fold).
        train_models: for helpfulness, the model of each training row (an index); with it,
            cross-validation folds are disjoint in models as well as in prompts.

    Examples:
        >>> d = JudgeData("truthfulness", [("Why?", "Because.")], None, np.ones(1),
        ...               [("How?", "Thus.")], None, np.zeros(1), {"disjoint": "question"})
        >>> d.train_a[0][1], d.train_groups is None
        ('Because.', True)
    """

    kind: str
    train_a: list[tuple[str, str]]
    train_b: list[tuple[str, str]] | None
    train_y: np.ndarray
    test_a: list[tuple[str, str]]
    test_b: list[tuple[str, str]] | None
    test_y: np.ndarray
    split: dict[str, Any]
    test_groups: np.ndarray | None = None
    train_groups: np.ndarray | None = None
    train_models: np.ndarray | None = None


def _rows(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _pick(rng: np.random.Generator, items: list, n: int) -> list:
    if n >= len(items):
        return list(items)
    return [items[i] for i in sorted(rng.choice(len(items), n, replace=False))]


def _qa(kind: str, rows: list[dict], n_train: int, n_test: int, seed: int, source: str):
    rng = np.random.default_rng(seed)
    # both TruthfulQA judge sets hold the same (question, answer) rows in different orders:
    # a fixed order makes one seed draw the same rows for both judges
    rows = sorted(rows, key=lambda r: (r["question"], r["answer"], r["label"]))
    # a few rows hold "question\nA: answer\nA: ..." in the question field: group by the question
    key = lambda r: " ".join(r["question"].split("\nA:")[0].split()).lower()  # noqa: E731
    questions = sorted({key(r) for r in rows})
    order = rng.permutation(len(questions))
    n_test_q = max(1, len(questions) // 4)
    test_q = {questions[i] for i in order[:n_test_q]}
    train_rows = [r for r in rows if key(r) not in test_q]
    test_rows = [r for r in rows if key(r) in test_q]
    train_rows, test_rows = _pick(rng, train_rows, n_train), _pick(rng, test_rows, n_test)
    split = {
        "source": source, "seed": seed, "disjoint": "question",
        "train_rows": len(train_rows), "test_rows": len(test_rows),
        "train_questions": len({key(r) for r in train_rows}),
        "test_questions": len({key(r) for r in test_rows}),
    }  # fmt: skip
    groups = {q: i for i, q in enumerate(questions)}
    return JudgeData(
        kind,
        [(r["question"].strip(), r["answer"].strip()) for r in train_rows],
        None,
        np.asarray([r["label"] for r in train_rows], np.float32),
        [(r["question"].strip(), r["answer"].strip()) for r in test_rows],
        None,
        np.asarray([r["label"] for r in test_rows], np.float32),
        split,
        train_groups=np.asarray([groups[key(r)] for r in train_rows]),
    )


def _helpfulness(root: Path, n_train: int, n_test: int, seed: int) -> JudgeData:
    judged = _rows(root / _FILES["helpfulness"][0])
    prompts = {int(p["idx"]): p for p in _rows(root / _FILES["helpfulness"][1])}
    judged = [r for r in judged if r.get("win") is not None and r.get("output")]
    rng = np.random.default_rng(seed)
    models = sorted({r["model"] for r in judged})
    idxs = sorted(prompts)
    test_prompts = {idxs[i] for i in rng.permutation(len(idxs))[: max(1, len(idxs) // 5)]}
    # held-apart models span the win-rate range: models sorted by their win rate on the
    # training prompts, cut into equal strata, one model drawn from each stratum
    wins: dict[str, list[float]] = {m: [] for m in models}
    for r in judged:
        if int(r["idx"]) not in test_prompts:
            wins[r["model"]].append(float(r["win"]))
    rate = {m: float(np.mean(w)) if w else 0.5 for m, w in wins.items()}
    ranked = sorted(models, key=lambda m: (rate[m], m))
    strata = np.array_split(np.arange(len(ranked)), max(1, len(ranked) // _MODEL_STRATUM))
    test_models = {ranked[int(rng.choice(s))] for s in strata if len(s)}
    by_prompt: dict[int, list[dict]] = {}
    for r in judged:
        by_prompt.setdefault(int(r["idx"]), []).append(r)
    for rows in by_prompt.values():
        rows.sort(key=lambda r: r["model"])
    # whole prompts are drawn (several outputs each), so one reference serves several pairs
    # training and held-apart draws use their own streams: the held-apart rows do not depend
    # on n_train, and a smaller n_test takes a prefix of a larger one's rows
    rng_train, rng_test = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    train: list[dict] = []
    for i in rng_train.permutation(len(idxs)):
        if len(train) >= n_train:
            break
        if idxs[i] in test_prompts:
            continue
        rows = [r for r in by_prompt.get(idxs[i], []) if r["model"] not in test_models]
        train += _pick(rng_train, rows, min(_PER_PROMPT, n_train - len(train)))
    test: list[dict] = []
    for i in rng_test.permutation(len(idxs)):
        if len(test) >= n_test:
            break
        if idxs[i] not in test_prompts:
            continue
        rows = [r for r in by_prompt.get(idxs[i], []) if r["model"] in test_models]
        test += rows[: n_test - len(test)]

    def unpack(rows: list[dict]):
        outs, refs, ys = [], [], []
        for r in rows:
            p = prompts[int(r["idx"])]
            ref = p["ref_davinci_versions"][int(r["ref_ver"])]
            outs.append((p["instruction"].strip(), r["output"].strip()))
            refs.append((p["instruction"].strip(), ref.strip()))
            ys.append(float(r["win"]))
        return outs, refs, np.asarray(ys, np.float32)

    tr_a, tr_b, tr_y = unpack(train)
    te_a, te_b, te_y = unpack(test)
    split = {
        "source": "alpaca_eval1_gpt4_judged.jsonl.gz (GPT-4 preference, model output vs "
        "davinci-003 reference; win 1 / 0.5 tie / 0)",
        "seed": seed, "disjoint": "prompt and model",
        "train_rows": len(train), "test_rows": len(test),
        "train_prompts": len({r["idx"] for r in train}),
        "test_prompts": len({r["idx"] for r in test}),
        "train_models": len({r["model"] for r in train}),
        "test_models": sorted(test_models),
        "test_model_train_prompt_win_rates": {m: round(rate[m], 3) for m in sorted(test_models)},
        "test_models_chosen_by": f"one per stratum of {_MODEL_STRATUM} models ranked by win "
        "rate on the training prompts",
        "test_ties": int(np.sum(te_y == 0.5)),
    }  # fmt: skip
    groups = np.asarray([int(r["idx"]) for r in train])
    model_ids = np.asarray([models.index(r["model"]) for r in train], np.int64)
    return JudgeData(
        "helpfulness", tr_a, tr_b, tr_y, te_a, te_b, te_y, split, train_groups=groups,
        train_models=model_ids,
    )  # fmt: skip


def _last_human(turns: Any) -> str:
    if isinstance(turns, str):
        try:
            turns = ast.literal_eval(turns)
        except (ValueError, SyntaxError):
            return turns
    if not turns:
        return ""
    humans = [t[1] for t in turns if t and t[0] == "human"]
    return humans[-1] if humans else str(turns[-1][1])


def _harmlessness(root: Path, n_train: int, n_test: int, seed: int) -> JudgeData:
    hh = [r for r in _rows(root / _FILES["harmlessness"][0]) if r.get("prompt_turns")]
    hh = [r for r in hh if r["chosen"].strip() != r["rejected"].strip()]
    refusals = _rows(root / _FILES["harmlessness"][1])
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(hh))
    n_test_pairs = min(n_test // 2, len(hh) // 4)
    test_pairs = [hh[i] for i in order[:n_test_pairs]]
    train_pairs = [hh[i] for i in order[n_test_pairs:]][: max(0, (n_train * 2) // 5)]
    r_order = rng.permutation(len(refusals))
    n_ref_test = max(1, n_test // 4)
    test_ref = [refusals[i] for i in r_order[:n_ref_test]]
    train_ref = [refusals[i] for i in r_order[n_ref_test:]][: max(0, n_train // 5)]

    def refusal_pair(r: dict) -> tuple[str, str]:
        prompt = r["instruction"] + (f"\n{r['input']}" if r.get("input") else "")
        return prompt.strip(), r["output"].strip()

    def pointwise(pairs, refs):
        texts, ys, groups = [], [], []
        for k, r in enumerate(pairs):
            prompt = _last_human(r["prompt_turns"]).strip()
            texts += [(prompt, r["chosen"].strip()), (prompt, r["rejected"].strip())]
            ys += [1.0, 0.0]
            groups += [k, k]
        for r in refs:
            texts.append(refusal_pair(r))
            ys.append(1.0)
            groups.append(-1)
        return texts, np.asarray(ys, np.float32), np.asarray(groups)

    tr_a, tr_y, tr_g = pointwise(train_pairs, train_ref)
    te_a, te_y, te_g = pointwise(test_pairs, test_ref)
    # refusals are their own groups in cross-validation
    tr_g = np.where(tr_g >= 0, tr_g, len(train_pairs) + np.arange(len(tr_g)))
    split = {
        "source": "hh_rlhf_harmless_test.jsonl.gz (chosen = 1, rejected = 0) + "
        "safety_refusals_2483.jsonl.gz (refusal = 1)",
        "seed": seed, "disjoint": "row (pair)",
        "train_pairs": len(train_pairs), "train_refusals": len(train_ref),
        "test_pairs": len(test_pairs), "test_refusals": len(test_ref),
    }  # fmt: skip
    return JudgeData("harmlessness", tr_a, None, tr_y, te_a, None, te_y, split, te_g, tr_g)


def load_judge_data(
    kind: str,
    data_dir: str | os.PathLike,
    *,
    n_train: int,
    n_test: int,
    seed: int = 0,
) -> JudgeData:
    """Seeded subsample of one judge's labelled rows, split into training and held-apart rows.

    - ``truthfulness`` / ``informativeness``: TruthfulQA's human-labelled judge sets; a quarter
      of the questions are held apart (question-disjoint).
    - ``helpfulness``: AlpacaEval-1 GPT-4 judgments of model outputs against the davinci-003
      reference (win 1, tie 0.5, loss 0); a fifth of the prompts and a fifth of the models are
      held apart, training uses neither (prompt- and model-disjoint). The held-apart models
      span the win-rate range: the models are ranked by their win rate on the training
      prompts, cut into strata of five, and one is drawn from each. Training draws whole
      prompts with up to five outputs each; held-apart rows take every held-apart model's
      output of each drawn held-apart prompt.
    - ``harmlessness``: hh-rlhf harmless pairs (chosen 1, rejected 0) and safety refusals (1);
      held-apart pairs and refusals are distinct rows.

    Args:
        kind: one of :data:`KINDS`.
        data_dir: the folder of the alignment files.
        n_train: training rows to draw.
        n_test: held-apart rows to draw.
        seed: subsampling and split seed.

    Returns:
        A :class:`JudgeData`.

    Raises:
        InputError: unknown kind or missing files.
    """
    if kind not in KINDS:
        raise InputError(f"kind: unknown judge {kind!r}; choose from {', '.join(KINDS)}")
    root = Path(data_dir)
    for name in _FILES[kind]:
        if not (root / name).is_file():
            raise InputError(f"{root / name}: missing (the {kind} judge is trained on it)")
    if kind in ("truthfulness", "informativeness"):
        name = _FILES[kind][0]
        return _qa(kind, _rows(root / name), n_train, n_test, seed, name)
    if kind == "helpfulness":
        return _helpfulness(root, n_train, n_test, seed)
    return _harmlessness(root, n_train, n_test, seed)
