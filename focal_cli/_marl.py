"""``focal marl train|evaluate``: MARL-Focal on the command line."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import (
    UsageError,
    add_bundle,
    add_format,
    baseline_accuracies,
    emit,
    load_bundle_arg,
    log,
    progress_bar,
)
from ._common import table as _table

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``marl`` with the actions ``train`` and ``evaluate``."""
    import textwrap

    from ._common import formatter

    p = sub.add_parser(
        "marl",
        help="MARL-Focal: learn which models to consult per query and how to fuse them",
        formatter_class=formatter,
        description=textwrap.dedent(
            """\
            MARL-Focal: a decider agent picks the models to consult for each query from a
            diversity state (focal diversity and plurality accuracy of its previous team on a
            window of past rows); an aggregator agent fuses the consulted models' scores. Two
            modes: fixed (default: PPO with a value baseline, library metrics, honest frozen
            test) and faithful (the published code, flag by flag). See docs/marl.md.

            examples:
              focal marl train bbh.npz --task navigate --out marl/
              focal marl train bbh.npz --task navigate --mode faithful --seed 1 --out m1/
              focal marl evaluate marl/ bbh.npz --task navigate --format json
              focal marl evaluate marl/ bbh.npz --task navigate --records queries.jsonl
            """
        ),
    )
    actions = p.add_subparsers(
        dest="marl_command", metavar="ACTION", required=True, parser_class=type(p)
    )

    t = actions.add_parser(
        "train",
        help="train both agents on the train rows and save them to a folder",
        formatter_class=formatter,
        description=textwrap.dedent(
            """\
            Train MARL-Focal on the bundle's train (and val) rows in document order, then test
            on its test rows twice: frozen (no update, window on the training rows) and online
            (both agents keep learning from test rewards, the published protocol). Writes
            marl.json (settings, curves, test accuracies, versions), params.npz and curve.png.

            The fixed mode holds out a seeded validation slice of the training rows
            (--val-fraction, default 0.2): the agents train on the rest, and when the trained
            router is not better than the best single model on the slice, the saved policy
            consults that best single model alone (--no-guard keeps the router). No test row
            is read by either choice. --context tfidf gives the decider TF-IDF + SVD features
            of each query's text (fitted on the training rows only); the texts come from a
            JSON-lines file (--texts) matched to the bundle's sample ids.

            examples:
              focal marl train bbh.npz --task navigate --out marl/
              focal marl train bbh.npz --task snarks --mode faithful --window 0 --out m/
              focal marl train mmlu.npz --out m/ --context tfidf --texts mmlu_texts.jsonl.gz \\
                  --id-field question_id --text-field question,options
            """
        ),
    )
    add_bundle(t)
    t.add_argument("--out", metavar="DIR", required=True, help="folder for the trained model")
    t.add_argument(
        "--mode", choices=("fixed", "faithful"), default="fixed", help="fixed (default) or faithful"
    )
    t.add_argument("--seed", type=int, default=0, help="seed of agents and actions (default 0)")
    t.add_argument("--window", type=int, default=None, help="window W (default 0 = all past)")
    t.add_argument("--alpha", type=float, default=None, help="size penalty (default 1.0)")
    t.add_argument("--passes", type=int, default=None, help="passes of each phase (default 15)")
    t.add_argument("--update-freq", type=int, default=None, help="steps per update (100)")
    t.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="share of the training rows held out for the guard (fixed 0.2, faithful 0)",
    )
    t.add_argument(
        "--no-guard",
        action="store_true",
        help="keep the trained router even when the best single model beats it on validation",
    )
    t.add_argument(
        "--context",
        choices=("none", "tfidf"),
        default="none",
        help="query features for the decider: none (default) or tfidf (needs --texts)",
    )
    t.add_argument("--context-dim", type=int, default=32, help="length of the query features")
    _add_texts(t)
    t.add_argument(
        "--as-stored",
        action="store_true",
        help="undo the BBH label fix (published-number comparisons)",
    )
    add_format(t)
    t.set_defaults(run=run_train)

    e = actions.add_parser(
        "evaluate",
        help="test accuracy of a trained model beside the baselines",
        formatter_class=formatter,
        description=textwrap.dedent(
            """\
            Run a trained model on the bundle's test rows: frozen accuracy (headline), online
            accuracy (reference protocol), mean number of models consulted per query, the cost
            metric (with --prices), and the baselines of 'focal fuse evaluate' computed in the
            same run (best single model chosen on val, votes of the pool, stacking, oracle).
            --records writes one JSON line per test query (models consulted, answer, correct).

            examples:
              focal marl evaluate marl/ bbh.npz --task navigate --format json
              focal marl evaluate marl/ mmlu.npz --prices 0.08,0.63,0.09 --records q.jsonl
            """
        ),
    )
    e.add_argument("dir", metavar="DIR", help="folder written by 'focal marl train'")
    add_bundle(e)
    e.add_argument("--prices", metavar="P,P,...", help="price per model (cost metric)")
    e.add_argument("--records", metavar="PATH", help="per-query records as JSON lines")
    _add_texts(e, evaluate=True)
    add_format(e)
    e.set_defaults(run=run_evaluate)


def _add_texts(p: Any, evaluate: bool = False) -> None:
    more = " (default: the file given at training)" if evaluate else ""
    p.add_argument("--texts", metavar="PATH", help="query texts, JSON lines (.gz ok)" + more)
    p.add_argument(
        "--text-field",
        default=None,
        help="field(s) holding the text, comma-separated (default: text)" + more,
    )
    p.add_argument(
        "--id-field", default=None, help="field matched to sample ids (default: id)" + more
    )


def _texts(args: argparse.Namespace, bundle: Any, saved: dict[str, Any] | None = None):
    from fusers.marl import read_texts

    saved = saved or {}
    path = args.texts or saved.get("texts")
    if path is None:
        return None
    return read_texts(
        path,
        bundle.sample_ids,
        text_field=args.text_field or saved.get("text_field") or "text",
        id_field=args.id_field or saved.get("id_field") or "id",
    )


def run_train(args: argparse.Namespace) -> int:
    """Train and save."""
    from ensembles.util import check_writable_dir
    from fusers.marl import MarlFocal

    check_writable_dir(args.out, name="--out")
    bundle = load_bundle_arg(args)
    settings: dict[str, Any] = {}
    if args.window is not None:
        settings["window"] = args.window
    if args.alpha is not None:
        settings["alpha"] = args.alpha
    if args.passes is not None:
        settings["select_passes"] = settings["ensemble_passes"] = args.passes
    if args.update_freq is not None:
        settings["update_freq"] = args.update_freq
    if args.val_fraction is not None:
        settings["val_fraction"] = args.val_fraction
    if args.no_guard:
        settings["guard"] = False
    context = None if args.context == "none" else args.context
    if context is not None and not args.texts:
        raise UsageError("--context tfidf needs --texts")
    texts = _texts(args, bundle) if context is not None else None
    model = MarlFocal(
        mode=args.mode,
        seed=args.seed,
        as_stored=args.as_stored,
        context=context,
        context_dim=args.context_dim,
        **settings,
    )
    bar = progress_bar("marl train")
    try:
        model.fit(bundle, texts=texts, progress=bar)
    finally:
        bar.close()
    model.save(args.out)
    if context is not None:
        _save_texts_ref(args)
    r = model.run_
    doc = {
        "out": args.out,
        "mode": args.mode,
        "seed": args.seed,
        "task": bundle.task,
        "select_curve": r.select_curve,
        "ensemble_curve": r.ensemble_curve,
        "frozen_accuracy": r.frozen_accuracy,
        "online_accuracy": r.online_accuracy,
        "mean_consulted": r.mean_consulted,
        "validation": {
            "accuracy": r.val_accuracy,
            "best_single": r.val_best_single,
            "fallback": r.fallback,
            "router_frozen_accuracy": r.router_frozen_accuracy,
        },
        "context": context,
    }
    text = (
        f"saved {args.out} ({args.mode}, seed {args.seed}): test accuracy frozen "
        f"{r.frozen_accuracy:.4f}, online {r.online_accuracy:.4f}; "
        f"{r.mean_consulted:.2f} models consulted per query"
    )
    if r.fallback:
        text += (
            f"; guard: the router ({r.val_accuracy:.4f} on validation) did not beat the best "
            f"single model ({r.val_best_single:.4f}), so it consults "
            f"{model.models_[r.fallback_model]} alone"
        )
    return emit(args, doc, text)


def _save_texts_ref(args: argparse.Namespace) -> None:
    """Record where the texts came from (``texts.json``), so evaluate can find them again."""
    import json
    from pathlib import Path

    from ensembles.util import write_atomic

    doc = {
        "texts": str(Path(args.texts).resolve()),
        "text_field": args.text_field or "text",
        "id_field": args.id_field or "id",
    }
    write_atomic(Path(args.out) / "texts.json", lambda f: f.write(json.dumps(doc).encode()))


def _load_texts_ref(directory: str) -> dict[str, Any]:
    import json
    from pathlib import Path

    p = Path(directory) / "texts.json"
    try:
        return json.loads(p.read_text()) if p.is_file() else {}
    except (OSError, ValueError):
        return {}


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a saved model beside the baselines."""
    from ensembles.util import check_writable
    from fusers import baselines
    from fusers.marl import load_marl, write_records

    model = load_marl(args.dir)
    if args.task is None and model.task_ is not None:
        args.task = model.task_
    if args.records:
        check_writable(args.records, name="--records")
    prices = None
    if args.prices:
        try:
            prices = [float(x) for x in args.prices.split(",")]
        except ValueError:
            raise UsageError("--prices: give comma-separated numbers") from None
    bundle = load_bundle_arg(args)
    texts = None
    if model.context is not None:
        texts = _texts(args, bundle, _load_texts_ref(args.dir))
        if texts is None:
            raise UsageError("--texts: this model was trained with query texts; give them")
    res = model.evaluate(bundle, prices=prices, texts=texts)
    base = baselines(
        bundle,
        list(bundle.models),
        select_on="val",
        report_on="test",
        train_on="train",
        seed=model.seed,
    )
    flat = baseline_accuracies(base, oracle=True)
    if args.records:
        write_records(args.records, res["records"])
        log(f"wrote {len(res['records'])} records to {args.records}")
    doc = {
        "accuracy": res["accuracy"],
        "frozen": res["frozen"],
        "online": res["online"],
        "mean_consulted": res["mean_consulted"],
        "fallback": res["fallback"],
        "cost": res["cost"],
        "baselines": flat,
        "best_single_name": base["best_single"]["name"],
        "mode": model.mode,
        "seed": model.seed,
    }

    def text() -> str:
        rows = [
            ["MARL-Focal, frozen (no test label read)", res["frozen"]["accuracy"]],
            ["MARL-Focal, online (learns from test rewards)", res["online"]["accuracy"]],
            [
                f"best single model ({base['best_single']['name']}, chosen on val)",
                flat["best_single"],
            ],
            ["plurality vote of the pool", flat["plurality"]],
            ["soft vote of the pool", flat["soft"]],
            ["stacking (logistic regression)", flat["stacking"]],
            ["oracle (some model right)", flat["oracle"]],
        ]
        extra = f"models consulted per query: {res['mean_consulted']:.2f}"
        if res["cost"] is not None:
            extra += f"; cost {res['cost']:.1f}"
        return _table(["method", "test accuracy"], rows) + "\n" + extra

    return emit(args, doc, text)
