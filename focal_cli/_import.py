"""``focal import``: build a bundle file from the outputs of common evaluation tools."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import UsageError, add_format, emit, fmt, formatter, subcommand, table

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``import`` and its actions (``lm-eval``, ``alpaca-eval``, ``table``, ``jsonl``)."""
    p = sub.add_parser(
        "import",
        help="build a bundle (.npz) from lm-eval logs, AlpacaEval results or score tables",
        description="Build a bundle file from the outputs of an evaluation tool. The bundle "
        "format is described in docs/bundle.md.\n\nexamples:\n"
        "  focal import lm-eval out/llama out/qwen out/phi --task arc_easy --out arc.npz\n"
        "  focal import alpaca-eval results/gpt4 results/guanaco --out alpaca.npz\n"
        "  focal import table scores.csv --out routing.npz\n"
        "  focal import jsonl answers.jsonl --out answers.npz",
        formatter_class=formatter,
    )
    actions = p.add_subparsers(dest="source", required=True, metavar="SOURCE", parser_class=type(p))

    lm = subcommand(
        actions,
        "lm-eval",
        help="lm-evaluation-harness --log_samples output, one run per model",
        description="""\
        Read the samples_<task>_<date>.jsonl files that `lm_eval --log_samples` writes, one run
        per model, aligned by doc_id. Multiple-choice tasks give probs (softmax of the per-choice
        log-likelihoods) and labels (the target); generation tasks give an open-ended bundle
        whose quality is a per-sample metric (default exact_match). A RUN is a samples file or
        a folder searched for them (the newest file of the task is read), optionally named
        NAME=PATH (default name: the folder lm-eval names after the model).

        examples:
          focal import lm-eval out/llama out/qwen --task arc_easy --out arc.npz
          focal import lm-eval llama=out/a qwen=out/b --task hellaswag --normalize --out hs.npz
          focal import lm-eval out/* --task gsm8k --filter strict-match --out gsm8k.npz
        """,
        run=run_lm_eval,
    )
    lm.add_argument("runs", nargs="+", metavar="RUN", help="PATH or NAME=PATH, one per model")
    lm.add_argument("--task", metavar="T", help="task to read when a folder holds several")
    lm.add_argument("--metric", metavar="NAME", help="generation: per-sample quality field")
    lm.add_argument("--filter", metavar="NAME", help="filter to read when the logs hold several")
    lm.add_argument(
        "--normalize",
        action="store_true",
        help="multiple choice: divide log-likelihoods by choice length in bytes (acc_norm)",
    )
    lm.add_argument(
        "--common-only", action="store_true", help="keep only documents every model has"
    )
    _add_threshold(lm, "generation tasks; default 0.5")
    _add_out(lm)

    al = subcommand(
        actions,
        "alpaca-eval",
        help="AlpacaEval annotations (one run per model) or a long judged-rows file",
        description="""\
        Build an open-ended bundle from AlpacaEval results: per model, a folder holding
        annotations.json (and model_outputs.json), or the annotations.json file itself;
        preference 1 (reference better) -> quality 0, 2 (model better) -> 1, draws -> 0.5,
        missing -> not judged. Samples are the instructions, aligned by text. A single .jsonl
        or .jsonl.gz file of rows {model, idx, win} is read as judged rows instead.

        examples:
          focal import alpaca-eval results/gpt4 results/guanaco results/alpaca-7b --out a.npz
          focal import alpaca-eval ../shared/data/alignment/alpaca_eval1_gpt4_judged.jsonl.gz \\
              --threshold 0.5 --out alpaca1.npz --format json
        """,
        run=run_alpaca,
    )
    al.add_argument("runs", nargs="+", metavar="RUN", help="PATH or NAME=PATH, or one .jsonl file")
    al.add_argument("--models", metavar="A,B", help="judged rows: the models to keep")
    _add_threshold(al, "default 1.0: wins only; 0.5 counts draws as correct")
    al.add_argument("--name", metavar="T", help="task name stored in the bundle")
    _add_out(al)

    tb = subcommand(
        actions,
        "table",
        help="a CSV/TSV/Parquet/JSONL table of per-sample scores or predictions",
        description="""\
        Read a table of per-sample results: wide (one row per sample, one column per model) or
        long (one row per model and sample: columns model, sample, score). Values are quality
        scores in [0, 1] (an open-ended bundle; empty = not judged) or, with --label-column,
        each model's predicted class (a labelled bundle).

        examples:
          focal import table correctness.csv --out routing.npz
          focal import table scores.parquet --sample-column prompt_id --threshold 0.7 --out r.npz
          focal import table long.csv --layout long --score-column correct --out r.npz
          focal import table answers.csv --label-column gold --out answers.npz
        """,
        run=run_table,
    )
    tb.add_argument("path", metavar="FILE", help=".csv, .tsv, .parquet or .jsonl (optionally .gz)")
    tb.add_argument("--layout", choices=("auto", "wide", "long"), default="auto")
    tb.add_argument("--sample-column", metavar="COL", help="column of sample ids")
    tb.add_argument("--model-column", metavar="COL", default="model", help="long: model names")
    tb.add_argument("--score-column", metavar="COL", default="score", help="long: values")
    tb.add_argument("--label-column", metavar="COL", help="true class: values are predictions")
    tb.add_argument("--group-column", metavar="COL", help="per-sample group (category)")
    tb.add_argument("--models", metavar="A,B", help="model columns (wide) or models (long)")
    _add_threshold(tb, "default 0.5")
    tb.add_argument("--name", metavar="T", help="task name stored in the bundle")
    _add_out(tb)

    js = subcommand(
        actions,
        "jsonl",
        help="the project's JSON-lines format: one sample per line (label, answers, probs)",
        description="""\
        Read a JSON-lines file with one sample per line:
        {"id": .., "label": 2, "answers": {"model": 2, ...}, "probs": {"model": [..]}, ...}
        (see docs/bundle.md).

        examples:
          focal import jsonl answers.jsonl --out answers.npz
          focal import jsonl answers.jsonl.gz --name mmlu --out mmlu.npz --format json
        """,
        run=run_jsonl,
    )
    js.add_argument("path", metavar="FILE", help=".jsonl or .jsonl.gz file")
    js.add_argument("--name", metavar="T", help="task name stored in the bundle")
    _add_out(js)


def _add_threshold(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--threshold",
        type=float,
        metavar="X",
        help=f"quality at or above which an output counts as correct ({default})",
    )


def _add_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="PATH", help="bundle file to write (.npz)")
    add_format(p)


def _runs(items: list[str], flag: str = "RUN") -> dict[str, str] | list[str]:
    """``NAME=PATH`` items as a mapping; plain paths as a list (named by the importer)."""
    named = [i for i in items if "=" in i]
    if not named:
        return list(items)
    if len(named) != len(items):
        raise UsageError(f"{flag}: name every run (NAME=PATH) or none")
    out: dict[str, str] = {}
    for item in items:
        name, _, path = item.partition("=")
        if not name or not path:
            raise UsageError(f"{flag}: expected NAME=PATH, got {item!r}")
        if name in out:
            raise UsageError(f"{flag}: model name {name!r} given twice")
        out[name] = path
    return out


def _models(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UsageError("--models: give comma-separated model names")
    return names


# ---------------------------------------------------------------------------------- handlers
def run_lm_eval(args: argparse.Namespace) -> int:
    """Import lm-eval logs."""
    import ensembles

    return _write(
        args,
        "lm-eval",
        lambda: ensembles.from_lm_eval(
            _runs(args.runs),
            task=args.task,
            metric=args.metric,
            filter=args.filter,
            normalize=args.normalize,
            common_only=args.common_only,
            threshold=args.threshold,
        ),
    )


def run_alpaca(args: argparse.Namespace) -> int:
    """Import AlpacaEval runs or judged rows."""
    import ensembles

    kwargs: dict[str, Any] = {"task": args.name}
    if args.threshold is not None:
        kwargs["threshold"] = args.threshold
    single = args.runs[0]
    if len(args.runs) == 1 and single.lower().endswith((".jsonl", ".jsonl.gz")):
        return _write(
            args,
            "alpaca-eval",
            lambda: ensembles.from_alpaca_eval_judged(
                single, models=_models(args.models), **kwargs
            ),
        )
    if args.models is not None:
        raise UsageError("--models: applies to a judged-rows .jsonl file; name runs NAME=PATH")
    return _write(
        args, "alpaca-eval", lambda: ensembles.from_alpaca_eval(_runs(args.runs), **kwargs)
    )


def run_table(args: argparse.Namespace) -> int:
    """Import a score table."""
    import ensembles

    return _write(
        args,
        "table",
        lambda: ensembles.from_table(
            args.path,
            layout=args.layout,
            sample_column=args.sample_column,
            model_column=args.model_column,
            score_column=args.score_column,
            label_column=args.label_column,
            group_column=args.group_column,
            models=_models(args.models),
            threshold=args.threshold,
            task=args.name,
        ),
    )


def run_jsonl(args: argparse.Namespace) -> int:
    """Import the project's JSON-lines format."""
    import ensembles

    return _write(args, "jsonl", lambda: ensembles.from_jsonl(args.path, task=args.name))


def _write(args: argparse.Namespace, source: str, build) -> int:
    import ensembles
    from ensembles.util import check_writable

    out = check_writable(args.out, name="--out")
    bundle = build()
    ensembles.save_bundle(bundle, out)
    doc = _summary(bundle, source, str(out))
    return emit(args, doc, lambda: _text(bundle, doc))


def _summary(bundle, source: str, out: str) -> dict[str, Any]:
    import numpy as np

    if bundle.is_open_ended:
        kind = "open-ended"
    elif bundle.has_labels:
        kind = "labelled"
    else:
        kind = "unlabeled"
    doc: dict[str, Any] = {
        "source": source,
        "out": out,
        "kind": kind,
        "task": bundle.task,
        "n_models": bundle.n_models,
        "n_samples": bundle.n_samples,
        "n_classes": None if bundle.is_open_ended else bundle.n_classes,
        "has_probs": bundle.probs is not None,
        "threshold": bundle.threshold if bundle.is_open_ended else None,
        "not_judged": int(np.isnan(bundle.quality).sum()) if bundle.is_open_ended else None,
        "models": list(bundle.models),
    }
    if kind != "unlabeled":
        doc["accuracy"] = dict(zip(bundle.models, bundle.accuracies().tolist(), strict=True))
        doc["oracle_accuracy"] = bundle.oracle_accuracy()
    if bundle.is_open_ended:
        q = np.where(np.isnan(bundle.quality), 0.0, bundle.quality)
        doc["mean_quality"] = dict(zip(bundle.models, q.mean(axis=1).tolist(), strict=True))
    return doc


def _text(bundle, doc: dict[str, Any]) -> str:
    lines = [f"wrote {doc['out']}: {bundle!r}"]
    if "accuracy" in doc:
        headers = ["model", "accuracy"] + (["mean quality"] if "mean_quality" in doc else [])
        rows = []
        for m in bundle.models:
            row = [m, fmt(doc["accuracy"][m])]
            if "mean_quality" in doc:
                row.append(fmt(doc["mean_quality"][m]))
            rows.append(row)
        lines.append(table(headers, rows))
        lines.append(f"oracle {fmt(doc['oracle_accuracy'])}")
    return "\n".join(lines)
