"""The MMLU-Pro protocol of the generative fuser: split, prune, fuse, compare with baselines."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.util import InputError, jsonable

from ._data import mmlu_pro_bundle, mmlu_pro_examples, parse_choice, question_split
from ._fuser import SummaryFuser

__all__ = ["BUDGETS", "choose_team", "results_table", "run_mmlu_pro"]

# Named budgets. "cpu": for two CPU cores (SmolLM2-135M, about 20 s per LoRA step of 4 x 160
# tokens; one seed's fuser in minutes, not hours); "full": the reference's setting (10 epochs,
# batch 4, patience 3) on all rows, for a GPU.
BUDGETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "train_limit": 96, "val_limit": 32, "test_limit": 120,
        "fuser": {"context": 160, "target_tokens": 10, "question_tokens": 48, "epochs": 1,
                  "batch_size": 4, "eval_every": 12, "patience": 3, "learning_rate": 1e-3,
                  "max_new_tokens": 10, "eval_batch_size": 8},
    },
    "full": {
        "train_limit": None, "val_limit": None, "test_limit": None,
        "fuser": {"context": 2048, "target_tokens": 16, "epochs": 10, "batch_size": 4,
                  "patience": 3, "max_new_tokens": 16, "eval_batch_size": 32},
    },
}  # fmt: skip


def choose_team(bundle, *, size: int, on: str = "val") -> tuple[str, ...]:
    """The team of ``size`` members chosen on the ``on`` rows by :func:`focal.select`
    (its default objective: focal diversity blended with plurality accuracy).

    Example:
        >>> import numpy as np, ensembles
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 4, 300)
        >>> b = ensembles.Bundle.create(models=list("abc"), labels=y, split=["val"] * 300,
        ...     preds=np.stack([y, np.where(rng.random(300) < .6, y, 0), rng.integers(0, 4, 300)]))
        >>> choose_team(b, size=2)
        ('a', 'b')
    """
    import focal

    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= len(bundle.models):
        raise InputError(f"n_candidates: expected 1..{len(bundle.models)}, got {size!r}")
    if size == len(bundle.models):
        return tuple(bundle.models)
    sel = focal.select(bundle.select_split(on), sizes=(size,), top_k=1)
    return tuple(sel.best.members)


def _subsample(split: np.ndarray, limits: Mapping[str, int | None], seed: int) -> np.ndarray:
    """Row indices kept: for each split the first ``limit`` rows of a seeded permutation."""
    rng = np.random.default_rng([int(seed), 7])
    keep = []
    for name in ("train", "val", "test"):
        idx = np.flatnonzero(split == name)
        idx = idx[rng.permutation(idx.size)]
        lim = limits.get(name)
        keep.append(np.sort(idx if lim is None else idx[: int(lim)]))
    return np.concatenate(keep)


def run_mmlu_pro(
    rows: Sequence[dict[str, Any]],
    *,
    seed: int = 0,
    n_candidates: int = 3,
    budget: str = "cpu",
    train_limit: int | None | str = "budget",
    val_limit: int | None | str = "budget",
    test_limit: int | None | str = "budget",
    fuser_params: Mapping[str, Any] | None = None,
    topla_params: Mapping[str, Any] | None = None,
    question_only: bool = True,
    teacher_forced: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    callback: Callable[[dict[str, Any]], Any] | None = None,
) -> dict[str, Any]:
    """The generative fuser on the MMLU-Pro texts, with every baseline on the same rows.

    Steps: a seeded question-level 70/10/20 split (then, for a budget, a seeded subsample
    of each split); the team of ``n_candidates`` chosen on val by :func:`focal.select`; the
    fuser trained on train, early-stopped on val, scored once on test by greedy generation
    and :func:`parse_choice`. Baselines on the same test rows: each member, plurality of all
    members, plurality and TOPLA-Weighted (:func:`fusers.topla`, trained on the same train
    rows) of the team, the best single model chosen on val, the oracles, and the
    question-only ablation (the same fuser without candidates).

    Args:
        rows: rows of ``mmlu_pro_texts.jsonl.gz`` (see :func:`load_jsonl`).
        seed: seed of the split, the subsample, the team search and the fusers.
        n_candidates: team size.
        budget: ``"cpu"`` or ``"full"`` (see :data:`BUDGETS`); gives the row limits and the
            fuser's settings, which the other arguments override.
        train_limit, val_limit, test_limit: rows kept per split (``None``: all;
            ``"budget"``: the budget's).
        fuser_params: :class:`SummaryFuser` arguments over the budget's.
        topla_params: :class:`fusers.ToplaFuser` arguments of the TOPLA-Weighted baseline.
        question_only: also run the question-only ablation.
        teacher_forced: also report the teacher-forced accuracy.
        checkpoint_dir: folder of resumable checkpoints (one subfolder per fuser and seed).
        callback: progress callback of the fusers (the dict gains ``"run"``).

    Returns:
        A JSON-ready dict: ``accuracy``, ``baselines``, ``team``, ``splits``, ``settings``,
        ``training``, ``seconds``, ``versions``.
    """
    import fusers

    from .._util import package_versions

    if budget not in BUDGETS:
        raise InputError(f"budget: one of {', '.join(BUDGETS)}, got {budget!r}")
    spec = BUDGETS[budget]
    limits = {}
    for name, value in (("train", train_limit), ("val", val_limit), ("test", test_limit)):
        lim = spec[f"{name}_limit"] if value == "budget" else value
        if lim is not None and (isinstance(lim, bool) or not isinstance(lim, int) or lim < 1):
            raise InputError(f"{name}_limit: expected a positive integer or None, got {lim!r}")
        limits[name] = lim
    t0 = time.perf_counter()
    rows = list(rows)
    full_split = question_split(len(rows), seed=seed)
    keep = _subsample(full_split, limits, seed)
    used = [rows[i] for i in keep]
    split = full_split[keep]
    bundle = mmlu_pro_bundle(used, split=split)
    team = choose_team(bundle, size=n_candidates)
    members = [list(bundle.models).index(m) for m in team]
    seconds = {"select": time.perf_counter() - t0}

    # ---------------------------------------------------------------- baselines
    t1 = time.perf_counter()
    topla = fusers.topla(bundle, team=team, select_on="val", train_on="train",
                         report_on="test", seed=seed, fuser_params=topla_params)  # fmt: skip
    test = bundle.select_split("test")
    test_preds = np.asarray(test.preds)
    member_acc = dict(zip(test.models, test.accuracies().tolist(), strict=True))
    base = dict(topla.baselines)
    baselines = {
        "members": member_acc,
        "plurality_all": base["pool_plurality"],
        "plurality_team": base["plurality"],
        "topla_weighted_team": topla.accuracy,
        "best_single": base["best_single"],
        "oracle_team": base["oracle_team"],
        "oracle_all": base["oracle_pool"],
    }
    seconds["baselines"] = time.perf_counter() - t1

    # ---------------------------------------------------------------- the fuser
    params = {**spec["fuser"], **dict(fuser_params or {})}
    params.setdefault("seed", seed)
    params["parser"] = parse_choice

    def examples(name: str, q_only: bool):
        part = [r for r, s in zip(used, split, strict=True) if s == name]
        return mmlu_pro_examples(part, members, question_only=q_only)

    def one(tag: str, q_only: bool) -> dict[str, Any]:
        ck = None if checkpoint_dir is None else Path(checkpoint_dir) / f"seed{seed}-{tag}"
        cb = None if callback is None else (lambda info: callback({**info, "run": tag}))
        t = time.perf_counter()
        fuser = SummaryFuser(**params, checkpoint_dir=ck)
        fuser.fit(examples("train", q_only), examples("val", q_only), callback=cb)
        test_ex = examples("test", q_only)
        texts = fuser.generate(test_ex)
        pred = [parse_choice(x) for x in texts]
        gold = [ex.answer for ex in test_ex]
        out = {
            "accuracy": float(np.mean(np.equal(pred, gold))),
            "unparsed": float(np.mean(np.equal(pred, -1))),
            **fuser.training_record(),
            "seconds": time.perf_counter() - t,
            "examples": [texts[i] for i in range(min(3, len(texts)))],
            "predictions": [int(x) for x in pred],
            "agreement_with_members": {
                name: float(np.mean(np.equal(pred, test_preds[k])))
                for k, name in enumerate(bundle.models)
            },
        }
        if teacher_forced:
            tf = fuser.generate(test_ex, evaluation="teacher_forced")
            out["teacher_forced_accuracy"] = float(
                np.mean(np.equal([parse_choice(x) for x in tf], gold))
            )
        return out

    fused = one("fuser", False)
    seconds["fuser"] = fused["seconds"]
    if question_only:
        ablation = one("question_only", True)
        baselines["question_only"] = ablation["accuracy"]
        seconds["question_only"] = ablation["seconds"]
    seconds["total"] = time.perf_counter() - t0
    settings = {k: v for k, v in params.items() if k != "parser"}
    return jsonable(
        {
            "accuracy": fused["accuracy"],
            "baselines": baselines,
            "team": list(team),
            "selection": "focal.select, default objective, on val rows",
            "splits": {
                "source": "seeded question-level 70/10/20 split",
                "seed": seed,
                "full_sizes": {k: int((full_split == k).sum()) for k in ("train", "val", "test")},
                "used_sizes": {k: int((split == k).sum()) for k in ("train", "val", "test")},
                "limits": limits,
            },
            "budget": budget,
            "topla_params": dict(topla_params or {}),
            "settings": {**settings, "n_candidates": n_candidates,
                         "model": str(settings.get("model", "smollm2"))},
            "training": {"fuser": fused,
                         "question_only": ablation if question_only else None},
            "seconds": seconds,
            "versions": package_versions(),
        }
    )  # fmt: skip


def results_table(results: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """``(headers, rows)`` of :func:`run_mmlu_pro` results: one column per seed, then the mean.

    Example:
        >>> r = {"accuracy": 0.5, "splits": {"seed": 0}, "training": {"fuser": {"unparsed": 0.0}},
        ...      "baselines": {"members": {"m": 0.4}, "plurality_all": 0.6}}
        >>> headers, rows = results_table([r])
        >>> headers, rows[0]
        (['method', 'seed 0', 'mean'], ['summary fuser (greedy + parser)', 0.5, 0.5])
    """

    def get(r: Mapping[str, Any], *keys: str) -> Any:
        cur: Any = r
        for k in keys:
            if not isinstance(cur, Mapping) or k not in cur:
                return None
            cur = cur[k]
        return cur

    lines: list[tuple[str, tuple[str, ...]]] = [
        ("summary fuser (greedy + parser)", ("accuracy",)),
        ("summary fuser, teacher-forced (faithful)",
         ("training", "fuser", "teacher_forced_accuracy")),
        ("question-only ablation", ("baselines", "question_only")),
        ("plurality of the team", ("baselines", "plurality_team")),
        ("TOPLA-Weighted of the team", ("baselines", "topla_weighted_team")),
        ("plurality of all members", ("baselines", "plurality_all")),
        ("best single (chosen on val)", ("baselines", "best_single", "accuracy")),
    ]  # fmt: skip
    members = get(results[0], "baselines", "members") or {} if results else {}
    lines += [(f"member {m}", ("baselines", "members", m)) for m in members]
    lines += [
        ("oracle of the team", ("baselines", "oracle_team")),
        ("oracle of all members", ("baselines", "oracle_all")),
        ("fuser outputs not parsed (share)", ("training", "fuser", "unparsed")),
    ]
    headers = ["method"] + [f"seed {get(r, 'splits', 'seed')}" for r in results] + ["mean"]
    rows = []
    for name, keys in lines:
        vals = [get(r, *keys) for r in results]
        if all(v is None for v in vals):
            continue
        ok = [float(v) for v in vals if v is not None]
        rows.append([name, *vals, float(np.mean(ok))])
    return headers, rows
