"""``focal summary train|predict|evaluate``: generative fusion (LLM-TOPLA-Summary)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ._common import UsageError, add_format, emit, log, progress_bar, subcommand, table

__all__ = ["register"]

_PARSER_NAMES = ("choice", "exact")


def _default_data() -> str:
    root = os.environ.get("FOCAL_DATA_DIR", str(Path("..") / "shared" / "data"))
    return str(Path(root) / "mmlu_pro_texts.jsonl.gz")


def _add_fuser_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="smollm2",
        help="'smollm2' (default), a .gguf file, or 'tiny' (a small byte-level decoder from "
        "scratch, for smoke tests and synthetic data)",
    )
    p.add_argument("--finetune", choices=("lora", "full"), default=None, help="default lora")
    p.add_argument(
        "--budget",
        choices=("cpu", "full"),
        default="cpu",
        help="preset of lengths, steps and rows: cpu (2 CPU cores, under an hour) or full (GPU)",
    )
    p.add_argument("--steps", type=int, metavar="N", help="cap on optimiser steps")
    p.add_argument("--epochs", type=int, metavar="N")
    p.add_argument("--batch-size", type=int, metavar="B")
    p.add_argument("--eval-every", type=int, metavar="N", help="steps between val evaluations")
    p.add_argument("--patience", type=int, metavar="N", help="evaluations without improvement")
    p.add_argument("--context", type=int, metavar="T", help="sequence length")
    p.add_argument("--target-tokens", type=int, metavar="T")
    p.add_argument("--question-tokens", type=int, metavar="T")
    p.add_argument("--lr", type=float, metavar="LR", help="peak AdamW learning rate")
    p.add_argument("--seed", type=int, default=0)


def _fuser_params(args: argparse.Namespace) -> dict[str, Any]:
    from fusers.summary import BUDGETS

    params = dict(BUDGETS[args.budget]["fuser"])
    for flag, key in (
        ("finetune", "finetune"), ("steps", "max_steps"), ("epochs", "epochs"),
        ("batch_size", "batch_size"), ("eval_every", "eval_every"), ("patience", "patience"),
        ("context", "context"), ("target_tokens", "target_tokens"),
        ("question_tokens", "question_tokens"), ("lr", "learning_rate"),
    ):  # fmt: skip
        value = getattr(args, flag, None)
        if value is not None:
            params[key] = value
    params["model"] = _model(args.model)
    return params


def _model(name: str) -> Any:
    if name == "tiny":
        from fusers.lm import DecoderConfig

        return DecoderConfig(vocab_size=259, hidden_size=64, intermediate_size=128,
                             num_hidden_layers=2, num_attention_heads=4)  # fmt: skip
    if name != "smollm2" and not Path(name).is_file():
        raise UsageError(f"--model: {name} is not 'smollm2', 'tiny' or an existing .gguf file")
    return name


def _read_examples(path: str, flag: str) -> list[Any]:
    from fusers.summary import SummaryExample, load_jsonl

    rows = load_jsonl(path)
    if not rows:
        raise UsageError(f"{flag}: {path} has no examples")
    out = []
    for n, r in enumerate(rows, start=1):
        cands = r.get("candidates")
        if not isinstance(r.get("question"), str) or not isinstance(cands, list):
            raise UsageError(f"{flag}: {path} row {n} needs 'question' (text) and 'candidates'")
        cands = [c["text"] if isinstance(c, dict) else c for c in cands]
        if not all(isinstance(c, str) for c in cands):
            raise UsageError(f"{flag}: {path} row {n}: candidates must be texts")
        target = r.get("target")
        out.append(SummaryExample(r["question"], tuple(cands), "" if target is None else
                                  str(target), r.get("answer")))  # fmt: skip
    return out


class _Bar:
    """Fuser callback drawing a progress bar of optimiser steps."""

    def __init__(self, label: str) -> None:
        self.bar = progress_bar(label)

    def __call__(self, info: dict[str, Any]) -> None:
        self.bar(info["step"], info["steps"])
        if "val_score" in info:
            log(f"step {info['step']}/{info['steps']}: loss {info['loss']:.4f}, "
                f"val accuracy {info['val_score']:.4f}")  # fmt: skip

    def close(self) -> None:
        self.bar.close()


def register(sub: Any) -> None:
    """Add ``summary`` with its actions ``train``, ``predict`` and ``evaluate``."""
    p = sub.add_parser(
        "summary",
        help="generative fusion: a decoder reads the question and the team's answers",
        description="LLM-TOPLA-Summary: fine-tune a decoder (SmolLM2-135M-Instruct with LoRA "
        "by default) to write the answer from the question and the candidates' answers. "
        "Actions: train, predict, evaluate. See docs/summary.md.",
    )
    actions = p.add_subparsers(dest="summary_action", required=True, parser_class=type(p))

    t = subcommand(
        actions,
        "train",
        help="train a fuser on JSON-lines examples and save it",
        description="""\
        Train a generative fuser on --train examples, evaluating on --val examples (never
        trained on) for early stopping, and save it to --out (settings, adapters, marker
        rows). Each JSON line holds 'question', 'candidates' (texts) and 'target', and
        optionally 'answer' (what the parsed output is compared with; default the target).
        --parser choice reads "The answer is (X)" as an option index; exact compares the
        stripped text. Checkpoints go to OUT/checkpoints after every evaluation; running the
        same command again resumes from them. --budget sets the lengths and steps (cpu: 2
        CPU cores; full: the reference's 10 epochs for a GPU); explicit flags override it.

        examples:
          focal summary train --train train.jsonl --val val.jsonl --out fuser/ --parser choice
          focal summary train --train t.jsonl --val v.jsonl --out f/ --finetune full --steps 200
          focal summary train --train t.jsonl --val v.jsonl --out f/ --model tiny --lr 2e-3
        """,
        run=run_train,
    )
    t.add_argument("--train", required=True, metavar="FILE", help="training examples (.jsonl)")
    t.add_argument("--val", required=True, metavar="FILE", help="validation examples (.jsonl)")
    t.add_argument("--out", required=True, metavar="DIR", help="folder of the saved fuser")
    t.add_argument("--parser", choices=_PARSER_NAMES, default="exact")
    _add_fuser_flags(t)
    add_format(t)

    pr = subcommand(
        actions,
        "predict",
        help="fuse the candidates of JSON-lines examples with a saved fuser",
        description="""\
        Write the fused answer of each example of --examples with the fuser saved in FUSER:
        one JSON line per example (id, text, parsed answer) to --out, atomically. Decoding is
        greedy (--teacher-forced: the argmax of each target position with the gold target fed
        in, the reference's evaluation; needs 'target'). With 'answer' or 'target' in the
        examples the accuracy is printed too.

        examples:
          focal summary predict fuser/ --examples test.jsonl --out fused.jsonl
          focal summary predict fuser/ --examples test.jsonl --out fused.jsonl --format json
        """,
        run=run_predict,
    )
    pr.add_argument("fuser", metavar="FUSER", help="folder written by 'focal summary train'")
    pr.add_argument("--examples", required=True, metavar="FILE", help="examples (.jsonl)")
    pr.add_argument("--out", required=True, metavar="FILE", help="output JSON lines")
    pr.add_argument("--teacher-forced", action="store_true")
    add_format(pr)

    e = subcommand(
        actions,
        "evaluate",
        help="the MMLU-Pro protocol: fuser, question-only ablation and baselines",
        description="""\
        Run the generative fuser on the MMLU-Pro texts (3,000 questions x 6 models'
        chain-of-thought outputs) for each --seeds: a seeded question-level 70/10/20 split,
        a seeded subsample of each split for the budget, the team of --candidates chosen on
        val by focal.select, the fuser trained on train and early-stopped on val, scored on
        test by greedy generation and the "The answer is (X)" parser. Beside it, on the same
        test rows: each member, plurality of all members, plurality and TOPLA-Weighted of the
        team, the best single model chosen on val, the question-only ablation and the
        oracles. --out writes the JSON results atomically; checkpoints (--checkpoint-dir)
        make a stopped run resumable.

        examples:
          focal summary evaluate --seeds 0 1 --out summary.json
          focal summary evaluate --budget full --candidates 4 --format json
          focal summary evaluate --train-rows 48 --val-rows 16 --test-rows 60 --steps 12
        """,
        run=run_evaluate,
    )
    e.add_argument(
        "--data",
        default=None,
        metavar="FILE",
        help="mmlu_pro_texts.jsonl.gz (default: in $FOCAL_DATA_DIR or ../shared/data)",
    )
    e.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="S")
    e.add_argument("--candidates", type=int, default=3, metavar="K", help="team size")
    e.add_argument("--train-rows", type=int, metavar="N", help="train rows used (budget's)")
    e.add_argument("--val-rows", type=int, metavar="N")
    e.add_argument("--test-rows", type=int, metavar="N")
    e.add_argument("--all-rows", action="store_true", help="use every row of each split")
    e.add_argument("--no-ablation", action="store_true", help="skip the question-only fuser")
    e.add_argument("--teacher-forced", action="store_true", help="also the faithful evaluation")
    e.add_argument("--checkpoint-dir", metavar="DIR", help="resumable checkpoints")
    e.add_argument("--out", metavar="FILE", help="write the JSON results here")
    _add_fuser_flags(e)
    add_format(e)


def _positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        v = getattr(args, name, None)
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')}: must be a positive integer, got {v}")


def run_train(args: argparse.Namespace) -> int:
    """Read the examples, train, save."""
    from ensembles.util import check_writable_dir
    from fusers.summary import SummaryFuser, parse_choice

    _positive(args, "steps", "epochs", "batch_size", "eval_every", "patience", "context")
    out = check_writable_dir(args.out, name="--out")
    train = _read_examples(args.train, "--train")
    val = _read_examples(args.val, "--val")
    params = _fuser_params(args)
    params["parser"] = parse_choice if args.parser == "choice" else None
    if args.parser == "choice":
        train = [_with_choice(ex) for ex in train]
        val = [_with_choice(ex) for ex in val]
    bar = _Bar("training")
    try:
        fuser = SummaryFuser(**params, seed=args.seed, checkpoint_dir=out / "checkpoints")
        fuser.fit(train, val, callback=bar)
    finally:
        bar.close()
    fuser.save(out)
    doc = {
        "fuser": str(out),
        **fuser.training_record(),
        "settings": {**fuser.get_params(), "budget": args.budget},
        "rows": {"train": len(train), "val": len(val)},
    }
    return emit(args, doc, lambda: (
        f"saved {out}: best val accuracy {fuser.best_score_:.4f} at step {fuser.best_step_} "
        f"of {fuser.steps_run_} run ({fuser.total_steps_} planned)"))  # fmt: skip


def _with_choice(ex):
    """With the choice parser, a missing answer is read from the target."""
    from dataclasses import replace

    from fusers.summary import parse_choice

    return ex if ex.answer is not None else replace(ex, answer=parse_choice(ex.target))


def run_predict(args: argparse.Namespace) -> int:
    """Load the fuser, fuse, write the rows."""
    import json

    from ensembles.util import check_writable, write_atomic
    from fusers.summary import SummaryFuser

    check_writable(args.out, name="--out")
    fuser = SummaryFuser.load(args.fuser)
    examples = _read_examples(args.examples, "--examples")
    if args.teacher_forced and any(not ex.target for ex in examples):
        raise UsageError("--teacher-forced: every example needs a 'target'")
    if fuser.parser is not None:
        examples = [_with_choice(ex) for ex in examples]
    texts = fuser.generate(
        examples, evaluation="teacher_forced" if args.teacher_forced else "generate"
    )
    parse = fuser.parser or (lambda s: s.strip())
    rows = [{"id": i, "text": t, "parsed": parse(t)} for i, t in enumerate(texts)]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")
    write_atomic(args.out, lambda fh: fh.write(data))
    scored = [ex.gold != "" for ex in examples]
    acc = None
    if all(scored):
        acc = sum(r["parsed"] == ex.gold for r, ex in zip(rows, examples, strict=True)) / len(rows)
    doc = {"out": args.out, "rows": len(rows), "accuracy": acc,
           "evaluation": "teacher_forced" if args.teacher_forced else "generate"}  # fmt: skip
    return emit(args, doc, lambda: f"wrote {len(rows)} rows to {args.out}" + (
        "" if acc is None else f"; accuracy {acc:.4f}"))  # fmt: skip


def run_evaluate(args: argparse.Namespace) -> int:
    """The MMLU-Pro protocol for each seed."""
    from ensembles.util import check_writable, write_json_atomic
    from fusers.summary import load_jsonl, results_table, run_mmlu_pro

    _positive(args, "steps", "epochs", "batch_size", "eval_every", "patience", "context",
              "candidates", "train_rows", "val_rows", "test_rows")  # fmt: skip
    params = _fuser_params(args)
    if args.out is not None:
        check_writable(args.out, name="--out")
    path = args.data or _default_data()
    if not Path(path).is_file():
        raise UsageError(f"--data: {path} not found (set --data or FOCAL_DATA_DIR)")
    rows = load_jsonl(path)
    limits = {}
    for name in ("train", "val", "test"):
        given = getattr(args, f"{name}_rows")
        limits[f"{name}_limit"] = None if args.all_rows else ("budget" if given is None else given)
    results = []
    for seed in args.seeds:
        bar = _Bar(f"seed {seed}")
        try:
            results.append(
                run_mmlu_pro(
                    rows,
                    seed=seed,
                    n_candidates=args.candidates,
                    budget=args.budget,
                    fuser_params=params,
                    question_only=not args.no_ablation,
                    teacher_forced=args.teacher_forced,
                    callback=bar,
                    checkpoint_dir=args.checkpoint_dir,
                    **limits,
                )  # fmt: skip
            )
        finally:
            bar.close()
    doc = {"data": str(path), "runs": results}
    if args.out is not None:
        write_json_atomic(args.out, doc)

    def text() -> str:
        headers, body = results_table(results)
        return table(headers, body)

    return emit(args, doc, text)
