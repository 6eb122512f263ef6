"""``focal judge train|score``: validated judges of open-ended answers on SmolLM2 features."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ._common import UsageError, add_format, emit, log, progress_bar, subcommand, table

__all__ = ["register"]


def _default_data_dir() -> str:
    env = os.environ.get("FOCAL_DATA_DIR")
    return (
        str(Path(env) / "alignment") if env else os.path.join("..", "shared", "data", "alignment")
    )


def register(sub: Any) -> None:
    """Add ``judge`` with its actions ``train`` and ``score``."""
    kinds = ("truthfulness", "informativeness", "helpfulness", "harmlessness")
    p = sub.add_parser(
        "judge",
        help="train or apply a validated judge (truthfulness, informativeness, helpfulness, "
        "harmlessness)",
        description="Judges of open-ended answers on frozen SmolLM2 features. Actions: train, "
        "score.",
    )
    actions = p.add_subparsers(dest="judge_action", required=True, parser_class=type(p))
    t = subcommand(
        actions,
        "train",
        help="train one judge and measure it on held-apart rows",
        description="""\
        Train a judge: a logistic head on frozen decoder features of each (prompt, reply)
        exchange in the model's chat template, from a seeded subsample of labelled rows
        (truthfulness / informativeness: TruthfulQA judge sets, question-disjoint; helpfulness:
        a preference model of AlpacaEval-1 GPT-4 judgments against the davinci-003 reference on
        output - reference feature differences, ties as half wins, prompt- and model-disjoint,
        held-apart models spanning the win-rate range; harmlessness: hh-rlhf chosen/rejected
        and safety refusals, held-apart rows). Blocks, pooling (mean / last token), reply cut,
        log reply length and C are chosen by grouped cross-validation on the training rows
        (helpfulness: folds disjoint in prompts and models, and also the reply text
        statistics, a principal-component projection and a bias; under 400 training pairs a
        fixed low-capacity head instead); the held-apart accuracy and AUC are then measured
        once and saved in the judge file; every score it later gives carries them.

        examples:
          focal judge train truthfulness --out truth.json
          focal judge train helpfulness --out help.json --n-train 400 --n-test 150 --seed 1
          focal judge train harmlessness --out harm.json --blocks 8 12 --cuts 64 128 --C 0.01
        """,
        run=run_train,
    )
    t.add_argument("kind", choices=kinds, metavar="KIND", help=", ".join(kinds))
    t.add_argument("--out", required=True, metavar="FILE", help="judge file (.json)")
    t.add_argument("--model", default="smollm2", help="decoder: 'smollm2' (default) or a .gguf")
    t.add_argument("--data-dir", default=None, help="alignment data folder")
    t.add_argument("--n-train", type=int, default=600, metavar="N")
    t.add_argument("--n-test", type=int, default=200, metavar="N")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--blocks",
        type=int,
        nargs="+",
        default=[4, 8, 12, 16, 20],
        metavar="K",
        help="candidate decoder blocks (default: 4 8 12 16 20)",
    )
    t.add_argument(
        "--cuts",
        type=int,
        nargs="+",
        default=[48, 96, 192],
        metavar="N",
        help="candidate reply truncations in tokens (default: 48 96 192)",
    )
    t.add_argument(
        "--prompt-tokens", type=int, default=96, metavar="N", help="prompt truncation (default: 96)"
    )
    t.add_argument(
        "--C",
        type=float,
        nargs="+",
        default=[0.001, 0.003, 0.01, 0.03, 0.1],
        help="candidate inverse L2 strengths of the head",
    )
    t.add_argument(
        "--folds",
        type=int,
        default=4,
        help="grouped cross-validation folds (helpfulness: parts per axis of a prompt x model "
        "grid, folds x folds folds)",
    )
    t.add_argument("--cache", default=None, metavar="DIR", help="feature cache folder")
    add_format(t)
    s = subcommand(
        actions,
        "score",
        help="score answers (JSON lines) with a trained judge",
        description="""\
        Score rows with a judge file. Each input row needs 'prompt' (or 'question' /
        'instruction') and 'output' (or 'answer'), as written by 'focal lm generate'; for the
        helpfulness judge a 'reference' text gives P(output beats reference), else the score
        is a reward. Output rows are the input rows plus judge, score, score_type and
        judge_validation (the judge's held-apart accuracy and AUC).

        examples:
          focal judge score truth.json --in answers.jsonl --out scored.jsonl
          focal judge score harm.json --prompt "How do I pick a lock?" --output "I can't help."
        """,
        run=run_score,
    )
    s.add_argument("judge", metavar="JUDGE", help="judge file from 'focal judge train'")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--in", dest="inp", metavar="FILE", help="JSON lines to score")
    src.add_argument("--prompt", help="one prompt (with --output)")
    s.add_argument("--output", help="the answer to score (with --prompt)")
    s.add_argument("--reference", help="reference answer (helpfulness, with --prompt)")
    s.add_argument("--out", metavar="FILE", help="output JSON lines (required with --in)")
    s.add_argument("--model", default="smollm2", help="decoder the judge was trained on")
    s.add_argument("--cache", default=None, metavar="DIR", help="feature cache folder")
    add_format(s)


def run_train(args: argparse.Namespace) -> int:
    """Load data and decoder, train, save, print the held-apart figures."""
    from ensembles.util import check_writable
    from fusers import judges, lm

    check_writable(args.out, name="--out")
    data_dir = args.data_dir or _default_data_dir()
    data = judges.load_judge_data(
        args.kind, data_dir, n_train=args.n_train, n_test=args.n_test, seed=args.seed
    )
    model, tok, name = lm.load_model(args.model)
    bar = progress_bar("features")
    try:
        judge = judges.fit_judge(
            data, model, tok, model_id=name, blocks=args.blocks, cuts=args.cuts,
            prompt_tokens=args.prompt_tokens, Cs=args.C, folds=args.folds, seed=args.seed,
            cache_dir=args.cache, progress=bar,
        )  # fmt: skip
    finally:
        bar.close()
    judge.save(args.out)
    v = judge.validation
    doc = {"judge": args.kind, "out": str(args.out), "validation": v}
    keys = ("features", "head", "cv_auc", "accuracy", "auc", "majority_accuracy", "test_rows",
            "train_rows")  # fmt: skip
    rows = [[k, v[k]] for k in keys]
    for k in ("pair_accuracy", "refusal_recall", "tie_rows"):
        if k in v:
            rows.append([k, v[k]])
    return emit(args, doc, lambda: table(["held-apart", "value"], rows))


def run_score(args: argparse.Namespace) -> int:
    """Score one answer or a JSON-lines file."""
    from ensembles.util import check_writable, write_atomic
    from fusers import judges, lm

    judge = judges.Judge.load(args.judge)
    if args.inp is not None:
        if args.out is None:
            raise UsageError("--out: required with --in")
        check_writable(args.out, name="--out")
        rows = lm.read_prompts(args.inp)
    else:
        if args.output is None:
            raise UsageError("--output: required with --prompt")
        row = {"prompt": args.prompt, "output": args.output}
        if args.reference is not None:
            row["reference"] = args.reference
        rows = [row]
    model, tok, name = lm.load_model(args.model)
    if name != judge.model_id:
        raise UsageError(f"--model: the judge was trained on {judge.model_id}, not {name}")
    bar = progress_bar("features")
    try:
        scored = judges.score_rows(judge, model, tok, rows, cache_dir=args.cache, progress=bar)
    finally:
        bar.close()
    out = [{**r, **s} for r, s in zip(rows, scored, strict=True)]
    if args.inp is None:
        doc = out[0]
        v = doc["judge_validation"]
        text = (
            f"{judge.kind} {doc['score_type']} = {doc['score']:.4f} (judge held-apart accuracy "
            f"{v['accuracy']:.3f}, AUC {v['auc'] if v['auc'] is None else round(v['auc'], 3)}, "
            f"{v['test_rows']} rows)"
        )
        return emit(args, doc, text)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out)
    write_atomic(args.out, lambda fh: fh.write(text.encode("utf-8")))
    log(f"focal judge score: {len(out)} rows scored")
    doc = {"judge": judge.kind, "out": str(args.out), "rows": len(out),
           "judge_validation": judges.validation_summary(judge)}  # fmt: skip
    return emit(args, doc, f"{len(out)} rows scored with {judge.kind} into {args.out}")
