"""``focal h3 experts|build|align|evaluate``: H3Fusion on a real decoder, stage by stage."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ._common import add_format, emit, log, progress_bar, subcommand, table

__all__ = ["register"]


def _default_data_dir() -> str:
    env = os.environ.get("FOCAL_DATA_DIR")
    return (
        str(Path(env) / "alignment") if env else os.path.join("..", "shared", "data", "alignment")
    )


def _common(p: argparse.ArgumentParser, *, data: bool = True, budget: bool = True) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (all stages)")
    p.add_argument("--model", default="smollm2",
                   help="base decoder: 'smollm2', a .gguf file or a model folder")  # fmt: skip
    if data:
        p.add_argument("--data-dir", default=None, metavar="DIR",
                       help="alignment data folder (default ../shared/data/alignment or "
                       "$FOCAL_DATA_DIR/alignment)")  # fmt: skip
        p.add_argument("--template", choices=("alpaca", "chatml"), default="alpaca",
                       help="prompt template: Alpaca with the ###END stop suffix (default, as "
                       "the reference) or the model's ChatML")  # fmt: skip
    if budget:
        p.add_argument("--budget", choices=("cpu", "full"), default="cpu",
                       help="cpu: a few steps and prompts (2 CPU cores, under an hour in all); "
                       "full: the reference's 3 epochs and every prompt (a GPU job)")  # fmt: skip
    add_format(p)


def register(sub: Any) -> None:
    """Add ``h3`` with its actions ``experts``, ``build``, ``align`` and ``evaluate``."""
    p = sub.add_parser(
        "h3",
        help="H3Fusion: a mixture of aligned LoRA experts with a trained router",
        description="H3Fusion on a real decoder, stage by stage, into one run folder. Actions: "
        "experts, build, align, evaluate. Every stage resumes from its checkpoints and skips "
        "what is done. See docs/h3fusion.md.",
    )
    actions = p.add_subparsers(dest="h3_action", required=True, parser_class=type(p))
    e = subcommand(
        actions,
        "experts",
        help="stage 1: train one FFN LoRA expert per goal",
        description="""\
        Stage 1: for each goal (helpfulness: helpfulness_train_500 with the gpt-3.5-turbo-instruct
        answers; harmlessness: safety_refusals_2483; honesty: TruthfulQA h3_split=train, one
        example per correct answer) fit LoRA (r 8, alpha 4, dropout 0.1) on every layer's
        gate/up/down projections with the loss on response tokens only; save the adapter
        (PEFT layout) to OUT/experts/GOAL/adapter. Rerunning resumes an interrupted expert.

        examples:
          focal h3 experts --out runs/h3 --budget cpu
          focal h3 experts --out runs/h3 --goals honesty --steps 40 --seed 1
        """,
        run=run_experts,
    )
    _common(e)
    e.add_argument("--goals", nargs="+", default=None, metavar="GOAL",
                   help="helpfulness, harmlessness, honesty (default: all)")  # fmt: skip
    e.add_argument("--steps", type=int, default=None, help="optimiser steps (default: budget)")
    e.add_argument("--seed", type=int, default=42)
    b = subcommand(
        actions,
        "build",
        help="stage 2: build the mixture variants from the experts",
        description="""\
        Stage 2 (no training): every layer's FFN becomes a routed block whose expert k is the
        base FFN plus expert k's delta, with a router per layer. Two variants: 'fixed' (delta
        scaled by alpha/r, top-k honoured, router trainable, NLL gate loss, squared-delta
        regulariser, per-dataset labels) and 'faithful' (the reference code on each switch).
        Writes OUT/moe/VARIANT/moe.json with the flags and parameter counts.

        examples:
          focal h3 build --out runs/h3
          focal h3 build --out runs/h3 --variants fixed --router-seed 3
        """,
        run=run_build,
    )
    _common(b, data=False, budget=False)
    b.add_argument("--variants", nargs="+", choices=("fixed", "faithful"),
                   default=["fixed", "faithful"])  # fmt: skip
    b.add_argument("--router-seed", type=int, default=0)
    a = subcommand(
        actions,
        "align",
        help="stage 3: align each mixture on the union of the three sets",
        description="""\
        Stage 3: add LoRA (r 8, alpha 4, dropout 0.1) on q/k/v/o and on every expert's
        gate/up/down, then train on the union of the three goal sets with
        L = L_LM + lambda * L_gate + R (gate loss and regulariser per variant). Saves
        OUT/moe/VARIANT/final and align.json; an interrupted run resumes.

        examples:
          focal h3 align --out runs/h3 --budget cpu
          focal h3 align --out runs/h3 --variants fixed --gate-weight 0.01 --gamma 0.001
        """,
        run=run_align,
    )
    _common(a)
    a.add_argument("--variants", nargs="+", choices=("fixed", "faithful"),
                   default=["fixed", "faithful"])  # fmt: skip
    a.add_argument("--steps", type=int, default=None, help="optimiser steps (default: budget)")
    a.add_argument("--gate-weight", type=float, default=0.01, help="lambda (default 0.01)")
    a.add_argument("--gamma", type=float, default=0.001,
                   help="regulariser weight of every expert (default 0.001)")  # fmt: skip
    a.add_argument("--seed", type=int, default=42)
    v = subcommand(
        actions,
        "evaluate",
        help="generate, judge and draw the routing heatmaps",
        description="""\
        Answer the evaluation prompts with each row (base, each expert alone, the uniform
        merge of the three experts, MoE faithful, MoE fixed), sampled at temperature 0.6 and
        cut at ###END, and score them with the validated judges: helpfulness win rate against
        the davinci-003 reference (AlpacaEval), flagged % on the unsafe safety prompts and
        red-team prompts, truthful % and informative % on TruthfulQA test questions, each
        beside its judge's held-apart accuracy. Judges are trained into OUT/eval/judges unless
        --judges-dir holds them. Writes OUT/eval/results.json and routing_*.png.

        examples:
          focal h3 evaluate --out runs/h3 --budget cpu
          focal h3 evaluate --out runs/h3 --rows base moe_fixed --judges-dir bench/out/judges
        """,
        run=run_evaluate,
    )
    _common(v)
    v.add_argument("--rows", nargs="+", default=None, metavar="ROW",
                   help="base, expert_helpfulness, expert_harmlessness, expert_honesty, "
                   "uniform_merge, moe_faithful, moe_fixed (default: all)")  # fmt: skip
    v.add_argument("--judges-dir", default=None, metavar="DIR",
                   help="folder of judge files (KIND.json) to use or fill")  # fmt: skip
    v.add_argument("--seed", type=int, default=0, help="sampling and judge seed")
    v.add_argument("--prompts", type=int, default=None, metavar="N",
                   help="prompts per goal (default: the budget's); answers already there for "
                   "other prompts are generated again")  # fmt: skip


def _bar(label: str):
    return progress_bar(label)


def run_experts(args: argparse.Namespace) -> int:
    """Stage 1."""
    from ensembles.util import check_writable_dir
    from fusers import h3

    check_writable_dir(args.out, name="--out")
    docs = h3.run_experts(
        args.out, data_dir=args.data_dir or _default_data_dir(), model=args.model,
        budget=args.budget, goals=args.goals or h3.GOALS, seed=args.seed,
        template=args.template, steps=args.steps, log=log, progress=_bar,
    )  # fmt: skip
    rows = [[g, d["steps"], d["rows"], d["losses"][0], d["losses"][-1], d["seconds"]]
            for g, d in docs.items()]  # fmt: skip
    doc = {g: {k: d[k] for k in ("steps", "rows", "seconds", "losses")} for g, d in docs.items()}
    return emit(args, doc, lambda: table(
        ["expert", "steps", "rows", "first loss", "last loss", "seconds"], rows))  # fmt: skip


def run_build(args: argparse.Namespace) -> int:
    """Stage 2."""
    from ensembles.util import check_writable_dir
    from fusers import h3

    check_writable_dir(args.out, name="--out")
    docs = h3.run_build(args.out, model=args.model, variants=args.variants,
                        seed=args.router_seed, log=log)  # fmt: skip
    rows = [[v, d["counts"]["experts"], d["counts"]["top_k"], d["delta_scale"],
             d["counts"]["held_parameters"]] for v, d in docs.items()]  # fmt: skip
    return emit(args, docs, lambda: table(
        ["variant", "experts", "top-k", "delta scale", "parameters held"], rows))  # fmt: skip


def run_align(args: argparse.Namespace) -> int:
    """Stage 3."""
    from ensembles.util import check_writable_dir
    from fusers import h3

    check_writable_dir(args.out, name="--out")
    docs = h3.run_align(
        args.out, data_dir=args.data_dir or _default_data_dir(), model=args.model,
        budget=args.budget, variants=args.variants, seed=args.seed, template=args.template,
        steps=args.steps, gate_weight=args.gate_weight, gamma=args.gamma, log=log,
        progress=_bar,
    )  # fmt: skip
    rows = [[v, d["steps"], d["history"][0]["lm"], d["history"][-1]["lm"],
             d["history"][0]["gate"], d["history"][-1]["gate"], d["seconds"]]
            for v, d in docs.items()]  # fmt: skip
    doc = {v: {k: d[k] for k in ("steps", "seconds", "history", "label_counts")}
           for v, d in docs.items()}  # fmt: skip
    return emit(args, doc, lambda: table(
        ["variant", "steps", "first LM", "last LM", "first gate", "last gate", "seconds"],
        rows))  # fmt: skip


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluation."""
    from ensembles.util import check_writable_dir
    from fusers import h3

    check_writable_dir(args.out, name="--out")
    doc = h3.run_evaluate(
        args.out, data_dir=args.data_dir or _default_data_dir(), model=args.model,
        budget=args.budget, rows=args.rows or h3.ROWS, seed=args.seed, template=args.template,
        judges_dir=args.judges_dir, prompts_per_goal=args.prompts, log=log, progress=_bar,
    )  # fmt: skip
    return emit(args, doc, lambda: h3.results_table(doc))
