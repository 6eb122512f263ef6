"""Command-line glue of the fusers: ``focal fuse train|predict|evaluate`` and ``focal topla``.

:func:`add_parsers` adds the subcommands to the ``focal`` parser; :func:`cmd_fuse` and
:func:`cmd_topla` run them. Heavy modules (JAX, Flax, orbax, scikit-learn) are imported inside
the handlers so that ``focal --help`` stays fast. Bad input raises ``ValueError`` (or
``FileNotFoundError``), which the ``focal`` entry point prints as one line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

from ._common import UsageError, baseline_accuracies, emit_json, fmt, formatter, log, table

__all__ = ["EVALUATE_BASELINES", "register"]

#: Keys of ``baselines`` in ``focal fuse evaluate --format json``.
EVALUATE_BASELINES = ("best_single", "plurality", "soft", "stacking", "pool_plurality")

_METHODS = ("topla", "fusionshot", "stacking")
_SPLITS = ("train", "val", "test")


def _add_bundle(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE", help="cached-outputs bundle (.npz, docs/bundle.md)")
    p.add_argument("--task", metavar="T", help="task name inside a multi-task bundle")


def _add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format", choices=("table", "json"), default="table",
        help="human-readable text (default) or one JSON document on stdout",
    )  # fmt: skip


def _add_training(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fuser training")
    g.add_argument("--epochs", type=int, default=300, help="maximum epochs (default 300)")
    g.add_argument("--batch-size", type=int, default=64, help="rows per Adam step (default 64)")
    g.add_argument("--learning-rate", type=float, default=1e-3, help="Adam rate (default 1e-3)")
    g.add_argument(
        "--patience", type=int, default=None,
        help="early-stopping patience in epochs on val accuracy (default: topla 200, "
        "fusionshot none)",
    )  # fmt: skip
    g.add_argument(
        "--faithful", action="store_true",
        help="reference network: sigmoid+softmax head, double-softmax loss, no masking",
    )  # fmt: skip
    g.add_argument(
        "--valid-classes", choices=("all", "support"), default="all",
        help="classes the fuser may predict: all (default), or those some member scores > 0 "
        "(answer-frequency bundles)",
    )  # fmt: skip
    g.add_argument(
        "--scores", choices=("auto", "probs", "onehot"), default="auto",
        help="member inputs: probs, one-hot preds, or auto (probs when present)",
    )  # fmt: skip
    g.add_argument("--seed", type=int, default=0, help="seed of splits, search and fuser (0)")
    g.add_argument(
        "--val-fraction", type=float, default=0.2,
        help="fraction of train moved to val when the bundle has no val rows (0.2)",
    )  # fmt: skip
    g.add_argument("--progress", action="store_true", help="per-epoch progress on stderr")


def _add_selection(p: argparse.ArgumentParser, *, sizes: str | None) -> None:
    g = p.add_argument_group("team choice")
    g.add_argument(
        "--team", metavar="NAMES",
        help="comma-separated members, or 'all'; default: the method's own choice",
    )  # fmt: skip
    g.add_argument("--sizes", default=sizes, help="team sizes (default: 2 to min(5, M))")
    g.add_argument(
        "--objective", choices=("default", "focal", "accuracy", "fusionshot"), default=None,
        help="ranking of teams: default (0.2*focal+0.8*acc), focal, accuracy, or fusionshot "
        "(0.5*focal+0.5*acc-0.1*size/M); default per method",
    )  # fmt: skip
    g.add_argument(
        "--search", choices=("auto", "exhaustive", "ga", "beam", "greedy"), default=None,
        help="search method (default: topla auto, fusionshot ga)",
    )  # fmt: skip


def register(subparsers: Any) -> None:
    """Add ``fuse`` (with ``train``, ``predict``, ``evaluate``) and ``topla`` to ``focal``.

    Args:
        subparsers: the object returned by ``parser.add_subparsers(...)`` of ``focal``.
    """
    fuse = subparsers.add_parser(
        "fuse",
        help="train, apply and evaluate a learned fuser (LLM-TOPLA, FusionShot, stacking)",
        formatter_class=formatter,
        description=textwrap.dedent(
            """\
            Learn to combine a team's cached outputs, save the fuser, predict with it, and
            evaluate it beside the baselines.

            examples:
              focal fuse train mmlu.npz --method topla --out fuser/
              focal fuse train mmlu.npz --from rec.json --out fuser/   # from focal recommend --out
              focal fuse train bbh.npz --task navigate --method fusionshot --team all --out f/
              focal fuse predict fuser/ mmlu.npz --split test --out preds.json
              focal fuse evaluate fuser/ mmlu.npz --format json
            """
        ),
    )
    fuse.set_defaults(run=cmd_fuse)
    actions = fuse.add_subparsers(dest="fuse_command", metavar="ACTION", parser_class=type(fuse))

    p = actions.add_parser(
        "train",
        help="train a fuser and save it to a folder (resumable)",
        formatter_class=formatter,
        description=textwrap.dedent(
            """\
            Train a fuser on the bundle's train rows, choosing the epoch on its val rows
            (never trained on), and save it to --out (orbax parameters + fuser.json).
            Without --team the method chooses: topla by the default focal objective on val
            (exhaustive or beam), fusionshot by its genetic algorithm on val, stacking takes
            every model. Splits: the bundle's own; train/test only -> a seeded 20 % of train
            becomes val; none -> a seeded stratified 70/10/20 split. Training checkpoints go
            to OUT/train; rerunning the same command after an interruption resumes there.

            examples:
              focal fuse train mmlu.npz --method topla --out fuser/
              focal fuse train mmlu.npz --from rec.json --out fuser/   # from focal recommend --out
              focal fuse train bbh.npz --task snarks --method stacking --team all --out s/
            """
        ),
    )
    _add_bundle(p)
    p.add_argument("--method", choices=_METHODS, help="fuser to train (or take it from --from)")
    p.add_argument(
        "--from",
        dest="from_file",
        metavar="REC.json",
        help="a file written by 'focal recommend --out': train its team with its combiner",
    )
    p.add_argument("--out", metavar="DIR", required=True, help="folder to save the fuser to")
    p.add_argument("--overwrite", action="store_true", help="replace a fuser already in DIR")
    p.add_argument("--checkpoint-every", type=int, default=10, help="epochs between checkpoints")
    _add_selection(p, sizes=None)
    _add_training(p)
    _add_format(p)

    p = actions.add_parser(
        "predict",
        help="write a saved fuser's predictions on a bundle",
        formatter_class=formatter,
        description=textwrap.dedent(
            """\
            Apply a saved fuser to a bundle holding its team's models and write the fused
            predictions (-1 = no answer) to FILE: .json (predictions, probabilities and
            sample ids), .csv (row, sample_id, prediction) or .npy (predictions only).

            example:
              focal fuse predict fuser/ mmlu.npz --split test --out preds.json
            """
        ),
    )
    p.add_argument("dir", metavar="DIR", help="folder written by 'focal fuse train'")
    _add_bundle(p)  # --task defaults to the task the fuser was trained on
    p.add_argument("--split", choices=_SPLITS, help="only this split (made as in training)")
    p.add_argument("--out", metavar="FILE", required=True, help="output .json, .csv or .npy")
    _add_format(p)

    p = actions.add_parser(
        "evaluate",
        help="accuracy of a saved fuser beside the baselines",
        formatter_class=formatter,
        description=textwrap.dedent(
            """\
            Accuracy of a saved fuser on the bundle's test rows (the split is made as in
            training), beside the baselines computed in the same run: the best single model
            chosen on val, plurality and soft vote of the team, stacking (logistic regression
            on the team's scores, fitted on train) and the whole pool's plurality vote.

            JSON: {"accuracy": float, "baselines": {"best_single": float, "plurality": float,
            "soft": float|null, "stacking": float, "pool_plurality": float}}

            example:
              focal fuse evaluate fuser/ mmlu.npz --format json
            """
        ),
    )
    p.add_argument("dir", metavar="DIR", help="folder written by 'focal fuse train'")
    _add_bundle(p)  # --task defaults to the task the fuser was trained on
    p.add_argument("--split", choices=_SPLITS, default="test", help="split to report on")
    _add_format(p)

    p = subparsers.add_parser(
        "topla",
        help="LLM-TOPLA: focal-diversity pruning, then learn-to-ensemble, with baselines",
        formatter_class=formatter,
        description=textwrap.dedent(
            """\
            The whole LLM-TOPLA method in one command: choose the team on --select-on by a
            focal-diversity objective, train the TOPLA fuser on --train-on (early stopping on
            the remaining split, never trained on), and report on --report-on beside the
            baselines (best single model chosen on --select-on, plurality / majority / soft
            vote of the team, stacking, the whole pool). Splits as in 'focal fuse train'.

            examples:
              focal topla mmlu.npz --select-on val --train-on train --report-on test
              focal topla bbh.npz --task navigate --sizes 2-3 --format json
              focal topla mmlu.npz --objective focal --out topla_fuser/
            """
        ),
    )
    _add_bundle(p)
    p.add_argument("--select-on", choices=_SPLITS, default="val", help="split to choose on")
    p.add_argument("--train-on", choices=_SPLITS, default="train", help="split to train on")
    p.add_argument("--report-on", choices=_SPLITS, default="test", help="split to report on")
    p.add_argument("--out", metavar="DIR", help="also save the trained fuser to DIR")
    _add_selection(p, sizes=None)
    _add_training(p)
    _add_format(p)
    p.set_defaults(run=cmd_topla)


# ---------------------------------------------------------------------------- helpers
def _load(args: argparse.Namespace):
    import ensembles

    return ensembles.load_bundle(args.bundle, task=args.task)


def _load_for(fuser, args: argparse.Namespace):
    """The bundle of ``predict`` / ``evaluate``; ``--task`` defaults to the training task."""
    import ensembles

    if args.task is None and ensembles.list_tasks(args.bundle):
        args.task = (fuser.metadata_.get("bundle") or {}).get("task")
    return _load(args)


def _bundle_info(args: argparse.Namespace) -> dict[str, Any]:
    """Path, task and SHA-256 of the input bundle file (recorded in JSON results)."""
    import hashlib

    h = hashlib.sha256()
    with open(args.bundle, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return {"path": str(args.bundle), "task": args.task, "sha256": h.hexdigest()}


def _positive(name: str, value: int | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value < 1:
        raise UsageError(f"--{name}: must be a positive integer, got {value}")


def _fuser_params(args: argparse.Namespace, method: str) -> dict[str, Any]:
    if method == "stacking":
        return {"scores": args.scores, "valid_classes": args.valid_classes}
    _positive("epochs", args.epochs)
    _positive("batch-size", args.batch_size)
    _positive("patience", args.patience, allow_none=True)
    params: dict[str, Any] = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "faithful": args.faithful,
        "scores": args.scores,
        "valid_classes": args.valid_classes,
    }
    if args.patience is not None:
        params["patience"] = args.patience
    if getattr(args, "checkpoint_every", None) is not None:
        _positive("checkpoint-every", args.checkpoint_every)
        params["checkpoint_every"] = args.checkpoint_every
    return params


def _objective(name: str | None):
    """The ``--objective`` flag as an argument of :func:`focal.select` (``None``: default)."""
    import focal

    if name is None or name == "default":
        return None
    if name == "fusionshot":
        return focal.Objective(metric="focal", w_div=0.5, w_acc=0.5, size_penalty=0.1)
    return name


def _team_arg(bundle, text: str | None) -> list[str] | None:
    if text is None:
        return None
    if text.strip() == "all":
        return list(bundle.models)
    team = [t.strip() for t in text.split(",") if t.strip()]
    if len(team) < 2:
        raise UsageError("--team: give at least 2 comma-separated model names, or 'all'")
    bundle.model_indices(team)
    return team


def _progress(args: argparse.Namespace):
    if not getattr(args, "progress", False):
        return None

    def report(info: dict[str, Any]) -> None:
        e = info["epoch"]
        if e == 1 or e % 10 == 0 or e == info["epochs"]:
            log(
                f"epoch {e}/{info['epochs']}: loss {info['loss']:.4f}, val acc "
                f"{info['val_accuracy']:.4f} (best {info['best_val_accuracy']:.4f} at "
                f"epoch {info['best_epoch']})"
            )

    return report


def _check_seed(args: argparse.Namespace) -> None:
    if args.seed < 0:
        raise UsageError(f"--seed: must be non-negative, got {args.seed}")
    if not 0.0 < args.val_fraction < 1.0:
        raise UsageError(f"--val-fraction: must lie in (0, 1), got {args.val_fraction}")


# ---------------------------------------------------------------------------- commands
def cmd_fuse(args: argparse.Namespace) -> int:
    """Run ``focal fuse ACTION``; returns the exit status."""
    action = getattr(args, "fuse_command", None)
    if action == "train":
        return _fuse_train(args)
    if action == "predict":
        return _fuse_predict(args)
    if action == "evaluate":
        return _fuse_evaluate(args)
    raise UsageError("fuse: missing action (train, predict or evaluate); try 'focal fuse --help'")


def _apply_recommendation(args: argparse.Namespace) -> None:
    """Set ``--team`` and ``--method`` from a recommendation file (``focal recommend --out``)."""
    path = Path(args.from_file)
    try:
        doc = json.loads(path.read_text())
        rec = doc["recommendation"]
        members, combiner = list(rec["members"]), str(rec["combiner"])
    except FileNotFoundError:
        raise UsageError(f"--from: {path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--from: {path} is not a recommendation file ({exc})") from None
    method = {"stacking": "stacking", "ToplaFuser": "topla"}.get(combiner)
    if method is None:
        what = "a single model" if rec.get("kind") == "single_model" else f"a {combiner} vote"
        raise UsageError(
            f"--from: the recommendation is {what} of {', '.join(members)}: there is nothing to "
            "train; combine its outputs directly (ensembles.combine)"
        )
    if args.method is not None and args.method != method:
        raise UsageError(f"--method {args.method} contradicts the recommendation ({method})")
    if args.team is not None:
        raise UsageError("--team cannot be combined with --from")
    args.method, args.team = method, ",".join(members)


def _fuse_train(args: argparse.Namespace) -> int:
    import ensembles
    import focal
    from ensembles.util import check_writable_dir
    from fusers import FUSER_CONFIG_FILE as CONFIG_FILE
    from fusers import FUSERS

    _check_seed(args)
    if args.from_file:
        _apply_recommendation(args)
    if args.method is None:
        raise UsageError("--method: required (topla, fusionshot or stacking), or give --from")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} exists and is not a folder")
    check_writable_dir(out, name="--out")
    if (out / CONFIG_FILE).exists():
        if not args.overwrite:
            raise UsageError(f"--out: {out} already holds a trained fuser; use --overwrite")
        shutil.rmtree(out / "train", ignore_errors=True)
    bundle = _load(args)
    params = _fuser_params(args, args.method)
    params.update(seed=args.seed, val_fraction=args.val_fraction)
    fuser = FUSERS[args.method](**params)
    split_bundle, _ = ensembles.ensure_splits(
        bundle, seed=args.seed, val_fraction=args.val_fraction
    )
    team = _team_arg(bundle, args.team)
    selection: dict[str, Any] | None = None  # the team was given
    if team is None:
        if args.method == "stacking":
            team = list(bundle.models)
            selection = {"strategy": "whole pool"}
        else:
            default = None if args.method == "topla" else _objective("fusionshot")
            obj = _objective(args.objective) if args.objective else default
            search = args.search or ("auto" if args.method == "topla" else "ga")
            found = focal.select(
                split_bundle.select_split("val"), objective=obj, sizes=args.sizes, top_k=1,
                search=focal.Genetic(seed=args.seed) if search == "ga" else search,
            )  # fmt: skip
            team = list(found.best.members)
            selection = found.to_dict()
    fit_kwargs: dict[str, Any] = {"team": team}
    if args.method != "stacking":
        fit_kwargs.update(checkpoint_dir=out / "train", callback=_progress(args))
    fuser.fit(bundle, **fit_kwargs)  # makes the same split as above and records its source
    info = _bundle_info(args)
    fuser.save(out, metadata={"bundle": info, "method": args.method, "selection": selection})
    doc = {
        "method": args.method,
        "bundle": info,
        "out": str(out),
        "team": list(fuser.team_),
        "selection": selection,
        "val_accuracy": fuser.score(split_bundle, split="val"),
        "splits": fuser.splits_,
        "fit_seconds": fuser.fit_seconds_,
    }
    if hasattr(fuser, "history_"):
        h = fuser.history_
        doc["training"] = {k: h[k] for k in ("epochs_run", "best_epoch", "best_val_accuracy",
                                             "stopped_early", "resumed_from")}  # fmt: skip
    if args.format == "json":
        emit_json(doc)
        return 0
    print(f"{args.method} fuser of {', '.join(fuser.team_)} saved to {out}")
    print(f"val accuracy {fmt(doc['val_accuracy'])}; splits {fuser.splits_['sizes']} "
          f"({fuser.splits_['source']}); trained in {fuser.fit_seconds_:.1f} s")  # fmt: skip
    if "training" in doc:
        t = doc["training"]
        resumed = f", resumed from epoch {t['resumed_from']}" if t["resumed_from"] else ""
        print(f"epochs run {t['epochs_run']}, best epoch {t['best_epoch']}{resumed}")
    return 0


def _write_predictions(path: Path, preds, proba, bundle, meta: dict[str, Any], index) -> None:
    import numpy as np

    from ensembles.util import write_json_atomic, write_text_atomic

    suffix = path.suffix.lower()
    # Each row's id: the bundle's sample id, else its row number in the bundle file.
    ids = (index if bundle.sample_ids is None else bundle.sample_ids).tolist()
    if suffix == ".json":
        write_json_atomic(path, {**meta, "sample_ids": ids, "predictions": preds.tolist(),
                                 "probabilities": np.round(proba, 6).tolist()})  # fmt: skip
    elif suffix == ".csv":
        rows = ["row,sample_id,prediction"]
        for i, p in enumerate(preds.tolist()):
            rows.append(f"{i},{ids[i]},{p}")
        write_text_atomic(path, "\n".join(rows) + "\n")
    elif suffix == ".npy":
        import io

        buf = io.BytesIO()
        np.save(buf, preds.astype(np.int64))
        _atomic_write_bytes(path, buf.getvalue())
    else:
        raise UsageError(
            f"--out: unsupported file type {suffix or '(none)'!r}; use .json, .csv or .npy"
        )


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    from ensembles.util import write_atomic

    write_atomic(path, lambda fh: fh.write(data))


def _fuse_predict(args: argparse.Namespace) -> int:
    import numpy as np

    import ensembles
    from ensembles.util import check_writable
    from fusers import load_fuser

    out = Path(args.out)
    if out.suffix.lower() not in (".json", ".csv", ".npy"):
        raise UsageError(
            f"--out: unsupported file type {out.suffix or '(none)'!r}; use .json, .csv or .npy"
        )
    check_writable(out, name="--out")
    fuser = load_fuser(args.dir)
    bundle = _load_for(fuser, args)
    index = np.arange(bundle.n_samples)
    rows = bundle
    if args.split:
        full, _ = ensembles.ensure_splits(
            bundle, seed=fuser.seed, val_fraction=getattr(fuser, "val_fraction", 0.2)
        )
        index = np.flatnonzero(np.asarray(full.split) == args.split)
        rows = full.select_split(args.split)
    preds = fuser.predict(rows)
    proba = fuser.predict_proba(rows)
    labels = getattr(rows, "labels", None)
    accuracy = None if labels is None else float((preds == labels).mean())
    meta = {"fuser": str(args.dir), "team": list(fuser.team_), "split": args.split,
            "n_samples": int(rows.n_samples), "accuracy": accuracy}  # fmt: skip
    _write_predictions(out, preds, proba, rows, meta, index)
    if args.format == "json":
        emit_json({**meta, "out": str(args.out)})
    else:
        where = f" ({args.split})" if args.split else ""
        acc = "" if accuracy is None else f"; accuracy {accuracy:.4f}"
        print(f"wrote {rows.n_samples:,} predictions{where} to {args.out}{acc}")
    return 0


def _fuse_evaluate(args: argparse.Namespace) -> int:
    from fusers import baselines, load_fuser

    fuser = load_fuser(args.dir)
    bundle = _load_for(fuser, args)
    if args.split == "val":
        raise UsageError("--split: val chooses the baselines; report on train or test")
    accuracy = fuser.score(bundle, split=args.split)
    base = baselines(
        bundle, fuser.team_, select_on="val", report_on=args.split, train_on="train",
        scores=fuser.scores, valid_classes=fuser.valid_classes, seed=fuser.seed,
        val_fraction=fuser.val_fraction,
    )  # fmt: skip
    flat = baseline_accuracies(base)
    if args.format == "json":
        emit_json({"accuracy": accuracy, "baselines": flat})
        return 0
    print(f"fuser {args.dir} ({', '.join(fuser.team_)}): accuracy {accuracy:.4f} on {args.split}")
    rows = [
        [f"best single model ({base['best_single']['name']}, chosen on val)", flat["best_single"]],
        ["plurality vote of the team", flat["plurality"]],
        ["soft vote of the team", flat["soft"]],
        ["stacking (logistic regression)", flat["stacking"]],
        ["whole pool, plurality", flat["pool_plurality"]],
    ]
    print(table(["baseline", f"acc {args.split}"], rows))
    return 0


def cmd_topla(args: argparse.Namespace) -> int:
    """Run ``focal topla``; returns the exit status."""
    from fusers import topla

    _check_seed(args)
    bundle = _load(args)
    if args.out:
        from ensembles.util import check_writable_dir

        check_writable_dir(args.out, name="--out")
    team = _team_arg(bundle, args.team)
    params = _fuser_params(args, "topla")
    result = topla(
        bundle, select_on=args.select_on, train_on=args.train_on, report_on=args.report_on,
        sizes=args.sizes, team=team, objective=_objective(args.objective),
        search=args.search or "auto", seed=args.seed, val_fraction=args.val_fraction,
        fuser_params=params, callback=_progress(args),
    )  # fmt: skip
    doc = result.to_dict()
    doc["bundle"] = _bundle_info(args)
    if args.out:
        result.fuser.save(args.out, metadata={"bundle": doc["bundle"], "method": "topla",
                                              "selection": doc["selection"]})  # fmt: skip
        doc["out"] = str(args.out)
    if args.format == "json":
        emit_json(doc)
        return 0
    sel = doc["selection"]
    chosen = (
        "given" if sel is None else
        f"{sel['strategy']} search by {sel['objective']} on {args.select_on}"
    )  # fmt: skip
    print(f"LLM-TOPLA team ({chosen}): {', '.join(result.team)}")
    tr = doc["fuser"]["training"]
    print(
        f"fuser trained on {args.train_on} ({doc['splits']['sizes']}, {doc['splits']['source']}):"
        f" {tr['epochs_run']} epochs, best {tr['best_epoch']}, {tr['seconds']:.1f} s"
    )
    b = doc["baselines"]
    rows = [
        ["LLM-TOPLA fuser", result.accuracy],
        [f"best single model ({b['best_single']['name']}, chosen on {args.select_on})",
         b["best_single"]["accuracy"]],
        ["plurality vote of the team", b["plurality"]],
        ["majority vote of the team", b["majority"]],
        ["soft vote of the team", b["soft"]],
        ["stacking (logistic regression)", b["stacking"]],
        ["whole pool, plurality", b["pool_plurality"]],
        ["whole pool, soft", b["pool_soft"]],
        ["oracle of the team (upper bound)", b["oracle_team"]],
    ]  # fmt: skip
    print(table(["method", f"acc {args.report_on}"], rows))
    if args.out:
        print(f"fuser saved to {args.out}")
    return 0
