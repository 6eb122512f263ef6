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

__all__ = [
    "ALPACA_BUDGETS",
    "BUDGETS",
    "choose_team",
    "results_table",
    "run_alpaca_eval",
    "run_mmlu_pro",
]

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

# Named budgets of :func:`run_alpaca_eval`. Replies are long, so the context holds the
# question's start and each candidate's end (cut from the left); targets up to 128 tokens on
# CPU. Early stopping reads the val targets' loss (there is no single right reply).
ALPACA_BUDGETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "train_limit": 96, "val_limit": 16, "test_limit": 40,
        "fuser": {"context": 448, "target_tokens": 128, "question_tokens": 64, "epochs": 1,
                  "batch_size": 4, "eval_every": 12, "patience": 2, "learning_rate": 1e-3,
                  "val_metric": "loss", "max_new_tokens": 128, "eval_batch_size": 8},
    },
    "full": {
        "train_limit": None, "val_limit": None, "test_limit": None,
        "fuser": {"context": 2048, "target_tokens": 512, "epochs": 3, "batch_size": 4,
                  "patience": 3, "val_metric": "loss", "max_new_tokens": 512,
                  "eval_batch_size": 16},
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


def _limits(spec: Mapping[str, Any], **given: int | None | str) -> dict[str, int | None]:
    """Rows kept per split: the given limit, or the budget's where ``"budget"`` was given."""
    limits = {}
    for name, value in given.items():
        lim = spec[f"{name}_limit"] if value == "budget" else value
        if lim is not None and (isinstance(lim, bool) or not isinstance(lim, int) or lim < 1):
            raise InputError(f"{name}_limit: expected a positive integer or None, got {lim!r}")
        limits[name] = lim
    return limits


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
    limits = _limits(spec, train=train_limit, val=val_limit, test=test_limit)
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


def _alpaca_team(quality: np.ndarray, models: Sequence[str], val: np.ndarray, *, size: int,
                 pool: int) -> tuple[tuple[str, ...], dict[str, float]]:  # fmt: skip
    """The ``pool`` members with the best mean val quality, then the ``size``-member team of
    those with the highest focal diversity on the val prompts (:func:`focal.select`)."""
    import ensembles
    import focal

    val_quality = np.nanmean(quality[:, val], axis=1)
    order = np.lexsort((np.arange(len(models)), -val_quality))[: max(size, pool)]
    names = [models[i] for i in order]
    if size == len(names):
        return tuple(names), {models[i]: float(val_quality[i]) for i in order}
    b = ensembles.Bundle.create(models=names, quality=quality[np.ix_(order, val)])
    team = focal.select(b, objective="focal", sizes=(size,), top_k=1).best.members
    return tuple(team), {models[i]: float(val_quality[i]) for i in order}


def run_alpaca_eval(
    judged_rows: Sequence[dict[str, Any]],
    prompt_rows: Sequence[dict[str, Any]],
    *,
    seed: int = 0,
    n_candidates: int = 3,
    pool: int = 8,
    budget: str = "cpu",
    train_limit: int | None | str = "budget",
    val_limit: int | None | str = "budget",
    test_limit: int | None | str = "budget",
    test_prompts: Sequence[int] | None = None,
    fuser_params: Mapping[str, Any] | None = None,
    judge: Callable[[list[dict[str, str]]], Sequence[float]] | None = None,
    judge_info: Mapping[str, Any] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    callback: Callable[[dict[str, Any]], Any] | None = None,
) -> dict[str, Any]:
    """The generative fuser on AlpacaEval-1: fuse the team's replies into one reply.

    Steps: the models that answered every prompt; a seeded prompt-level 70/10/20 split and a
    seeded subsample of each split per the budget (test prompts outside ``test_prompts``, e.g.
    the prompts a judge was trained on, are skipped; train and val never depend on them); the
    team: the ``pool`` members with
    the best GPT-4 win rate on the val prompts, then the ``n_candidates`` of them with the
    highest focal diversity there; the fuser (target: the team member GPT-4 preferred most
    over davinci-003, or the reference when none won; early stopping on the val targets'
    loss) trained on train; greedy replies on test. Reported on the same test prompts: each
    member's GPT-4 win rate (its stored label) and, with ``judge``, the judge's win rate of
    each member and of the fused reply against the davinci-003 reference, so the judge's own
    bias shows beside the labels.

    Args:
        judged_rows: rows of ``alpaca_eval1_gpt4_judged`` (``model, idx, output, win``).
        prompt_rows: rows of ``alpaca_eval_prompts`` (``idx, instruction,
            ref_text_davinci_003``).
        seed: seed of the split, the subsample and the fuser.
        n_candidates: team size; pool: members kept by val win rate before the search.
        budget: ``"cpu"`` or ``"full"`` (:data:`ALPACA_BUDGETS`).
        train_limit, val_limit, test_limit: prompts kept per split (``None``: all;
            ``"budget"``: the budget's).
        test_prompts: prompt ids allowed in the test split (``None``: any).
        fuser_params: :class:`SummaryFuser` arguments over the budget's.
        judge: ``judge(rows) -> probabilities`` that each row's ``output`` beats its
            ``reference`` for its ``prompt`` (e.g. built on :func:`fusers.judges.score_rows`).
        judge_info: the judge's validation figures, stored beside its numbers.
        checkpoint_dir: folder of resumable checkpoints.
        callback: progress callback of the fuser.

    Returns:
        A JSON-ready dict: ``win_rate`` (judge, fused replies; ``None`` without a judge),
        ``members`` (per member: GPT-4 and judge win rates on the test prompts),
        ``best_single`` (the member with the best val win rate), ``team``, ``splits``,
        ``settings``, ``training``, ``replies`` (test prompt ids and fused replies),
        ``seconds``, ``versions``.
    """
    from .._util import package_versions
    from ._data import alpaca_examples

    if budget not in ALPACA_BUDGETS:
        raise InputError(f"budget: one of {', '.join(ALPACA_BUDGETS)}, got {budget!r}")
    spec = ALPACA_BUDGETS[budget]
    t0 = time.perf_counter()
    prompts = {int(p["idx"]): p for p in prompt_rows}
    answered: dict[str, dict[int, dict[str, Any]]] = {}
    for r in judged_rows:
        if r.get("output") is not None and r.get("win") is not None:
            answered.setdefault(str(r["model"]), {})[int(r["idx"])] = r
    ids = sorted(prompts)
    models = sorted(m for m, got in answered.items() if all(i in got for i in ids))
    if len(models) < n_candidates or not ids:
        raise InputError(
            f"judged_rows: {len(models)} models answered every prompt; need {n_candidates}"
        )
    quality = np.array([[float(answered[m][i]["win"]) for i in ids] for m in models])
    split = question_split(len(ids), seed=seed)
    limits = _limits(spec, train=train_limit, val=val_limit, test=test_limit)
    keep = _subsample(split, {**limits, "test": 0}, seed)
    part = {k: [ids[i] for i in keep if split[i] == k] for k in ("train", "val")}
    # Test prompts: a seeded order of the test split, those outside ``test_prompts`` skipped,
    # so what trains never depends on which prompts a judge saw.
    order = np.random.default_rng([int(seed), 11]).permutation(np.flatnonzero(split == "test"))
    if test_prompts is not None:
        allowed = {int(i) for i in test_prompts}
        order = np.asarray([i for i in order if ids[i] in allowed], dtype=np.int64)
    lim = limits["test"]
    part["test"] = sorted(ids[i] for i in (order if lim is None else order[:lim]))
    if not part["test"] or not part["val"]:
        raise InputError("test_prompts: no test or val prompts left after the split")
    val_cols = np.isin(ids, part["val"])
    team, val_rates = _alpaca_team(quality, models, val_cols, size=n_candidates, pool=pool)
    best_single = max(val_rates, key=lambda m: (val_rates[m], -models.index(m)))
    seconds = {"select": time.perf_counter() - t0}

    def examples(name: str):
        rows = [answered[m][i] for m in team for i in part[name]]
        return alpaca_examples(rows, [prompts[i] for i in part[name]], team)

    params = {**spec["fuser"], **dict(fuser_params or {})}
    params.setdefault("seed", seed)
    ck = None if checkpoint_dir is None else Path(checkpoint_dir) / f"seed{seed}-alpaca"
    cb = None if callback is None else (lambda info: callback({**info, "run": "fuser"}))
    t = time.perf_counter()
    fuser = SummaryFuser(**params, checkpoint_dir=ck)
    fuser.fit(examples("train"), examples("val"), callback=cb)
    test_ex = examples("test")
    replies = fuser.generate(test_ex)
    seconds["fuser"] = time.perf_counter() - t

    test_cols = [ids.index(i) for i in part["test"]]
    members = {
        m: {"gpt4_win_rate": float(np.mean(quality[models.index(m), test_cols])),
            "val_gpt4_win_rate": val_rates.get(m)}
        for m in dict.fromkeys([*team, best_single])
    }  # fmt: skip
    win_rate = fused_probability = None
    if judge is not None:
        t = time.perf_counter()
        # one judge call for the fused replies and every member's (shared references)
        texts = [replies] + [[answered[m][i]["output"] for i in part["test"]] for m in members]
        rows = [
            {"prompt": str(prompts[i]["instruction"]), "output": str(o),
             "reference": str(prompts[i]["ref_text_davinci_003"])}
            for outputs in texts
            for i, o in zip(part["test"], outputs, strict=True)
        ]  # fmt: skip
        p = np.asarray(judge(rows), dtype=np.float64).reshape(len(texts), len(part["test"]))
        win_rate, fused_probability = float(np.mean(p[0] > 0.5)), float(p[0].mean())
        for m, p_m in zip(members, p[1:], strict=True):
            members[m].update(judge_win_rate=float(np.mean(p_m > 0.5)),
                              judge_mean_probability=float(p_m.mean()))  # fmt: skip
        seconds["judge"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    return jsonable(
        {
            "win_rate": win_rate,
            "mean_probability": fused_probability,
            "members": members,
            "best_single": best_single,
            "team": list(team),
            "selection": f"top {pool} by val GPT-4 win rate, then focal.select (focal "
            "diversity alone) on val prompts",
            "judge": dict(judge_info or {}) if judge is not None else None,
            "splits": {
                "source": "seeded prompt-level 70/10/20 split"
                + (
                    " (test prompts only from the given test_prompts)"
                    if test_prompts is not None
                    else ""
                ),
                "seed": seed,
                "used_sizes": {k: len(v) for k, v in part.items()},
                "limits": limits,
                "models_answering_every_prompt": len(models),
            },  # fmt: skip
            "budget": budget,
            "settings": {**params, "n_candidates": n_candidates, "pool": pool},
            "training": fuser.training_record(),
            "replies": [
                {"idx": i, "reply": r} for i, r in zip(part["test"], replies, strict=True)
            ],  # fmt: skip
            "seconds": seconds,
            "versions": package_versions(),
        }
    )
