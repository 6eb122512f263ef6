"""The ``focal`` command line (CONTRACT §6): prune, score, info, recommend, graph, demo.

Each subcommand is a thin wrapper over one library call. ``--format json`` writes exactly one
JSON document to stdout; logs and progress go to stderr; bad input exits with status 2 and one
line on stderr.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._common import (
    UsageError,
    emit_json,
    fmt,
    formatter,
    load_bundle_arg,
    table,
)

__all__ = ["pool_summary", "register"]


def _add_objective(
    p: argparse.ArgumentParser, *, default: str, w_div: float = 0.5, w_acc: float = 0.5
) -> None:
    p.add_argument(
        "--objective",
        choices=("metric", "fitness", "pareto"),
        default=default,
        help=f"ranking: metric alone, fitness, or Pareto front (default {default})",
    )
    p.add_argument(
        "--w-div", type=float, default=w_div, help=f"fitness weight of the metric ({w_div})"
    )
    p.add_argument(
        "--w-acc", type=float, default=w_acc, help=f"fitness weight of accuracy ({w_acc})"
    )
    p.add_argument("--size-penalty", type=float, default=0.0, help="fitness: minus this*size/M")


def _add_protocol(
    p: argparse.ArgumentParser, *, select_on: str | None = None, report_on: str | None = None
) -> None:
    splits = ("train", "val", "test")
    p.add_argument("--select-on", choices=splits, default=select_on, help="split to choose on")
    p.add_argument("--report-on", choices=splits, default=report_on, help="split to report on")


def _add_common(p: argparse.ArgumentParser, *, task: bool = True, split: bool = True) -> None:
    p.add_argument("bundle", metavar="BUNDLE", help="cached-outputs bundle (.npz, CONTRACT §1)")
    if task:
        p.add_argument("--task", metavar="T", help="task name inside a multi-task bundle")
    if task and split:
        p.add_argument(
            "--split",
            metavar="NAME",
            choices=("train", "val", "test"),
            help="use only the samples of this split (train, val or test)",
        )
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="output: human-readable table (default) or one JSON document on stdout",
    )


def register(sub: Any) -> None:
    """Add ``prune``, ``recommend``, ``score`` and ``info``."""
    from focal import METRICS

    p = sub.add_parser(
        "prune",
        help="top-K sub-ensembles by a diversity metric (exhaustive, exact)",
        formatter_class=formatter,
        description=textwrap.dedent(
            """\
            Score every team with a size in --sizes and print the top K, most diverse first,
            with each team's plurality-vote accuracy on the same samples.

            Ranking (--objective): by the metric alone (default, exact and exhaustive); by
            FusionShot's fitness w_div*metric + w_acc*accuracy - size_penalty*size/M; or the
            Pareto front of (metric, plurality accuracy). Search (--search): exhaustive
            (exact; the Gray-code scan for large requests), or, for large pools, greedy,
            beam, ga (FusionShot's genetic algorithm) and hq (HQ-Ensemble's hierarchical
            pruning), which optimise the fitness. With --select-on/--report-on, teams are
            chosen on one split and reported on another next to the best single model
            (chosen on the selection split) and the whole pool.

            examples:
              focal prune outputs.npz --sizes 2-5 --top-k 10
              focal prune bbh.npz --task navigate --size 3 --metric focal_cohen_kappa
              focal prune outputs.npz --split val --format json > teams.json
              focal prune pool.npz --sizes 2-24 --checkpoint scan.ckpt   # resumable
              focal prune mmlu.npz --objective fitness --w-div 0.5 --sizes 2-4
              focal prune mmlu.npz --search ga --sizes 2-8 --seed 1
              focal prune mmlu.npz --select-on val --report-on test --objective pareto
            """
        ),
    )
    p.set_defaults(run=_cmd_prune)
    _add_common(p)
    p.add_argument(
        "--metric",
        default="focal",
        choices=METRICS,
        metavar="NAME",
        help="ranking metric (default: focal); one of: " + ", ".join(METRICS),
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--sizes", default="2-5", help="team sizes, e.g. 2-5 (default) or 3")
    group.add_argument("--size", type=int, help="a single team size")
    p.add_argument("--top-k", type=int, default=10, help="number of teams to report (default 10)")
    p.add_argument(
        "--max-teams",
        type=int,
        default=None,
        help="refuse scans above this many teams (default 2^22)",
    )
    _add_objective(p, default="metric")
    p.add_argument(
        "--search",
        choices=("exhaustive", "ga", "hq", "greedy", "beam"),
        default="exhaustive",
        help="search method (default exhaustive)",
    )
    p.add_argument(
        "--scan",
        choices=("auto", "chunked", "gray"),
        default="auto",
        help="exhaustive scan: batched closed forms, or Gray-code incremental (default auto)",
    )
    p.add_argument("--checkpoint", metavar="FILE", help="resumable scan: progress file")
    _add_protocol(p)
    p.add_argument("--seed", type=int, default=0, help="seed of ga and of seeded splits")
    p.add_argument("--generations", type=int, default=1000, help="ga: generation cap")
    p.add_argument("--population", type=int, default=100, help="ga: population size")
    p.add_argument("--mutation-rate", type=float, default=None, help="ga: default 1/M")
    p.add_argument("--beam-width", type=int, default=16, help="beam: width (default 16)")

    p = sub.add_parser(
        "recommend",
        help="recommend a team: choose on one split by the default objective, report on another",
        formatter_class=formatter,
        description=textwrap.dedent(
            """\
            Choose teams on the selection split by the default objective
            (0.2*focal + 0.8*plurality accuracy, chosen on the shared BBH and MMLU-Pro
            bundles: see bench/README.md), and report them on the report split next to the
            best single model chosen on the selection split and the whole pool. The
            recommendation is the best team only when it beats the best single model on the
            selection split by a one-sided exact McNemar test at --alpha (default 0.05);
            otherwise the best single model is recommended, and the report says so.

            examples:
              focal recommend outputs.npz --select-on val --report-on test
              focal recommend bbh.npz --task navigate --select-on train --report-on test
              focal recommend mmlu.npz --seed 3 --format json
            """
        ),
    )
    p.set_defaults(run=_cmd_recommend)
    _add_common(p, split=False)
    p.add_argument("--sizes", default="2-5", help="team sizes (default 2-5)")
    p.add_argument("--top-k", type=int, default=5, help="teams to report (default 5)")
    _add_objective(p, default="fitness", w_div=0.2, w_acc=0.8)
    _add_protocol(p, select_on="val", report_on="test")
    p.add_argument("--alpha", type=float, default=0.05, help="significance of the guard")
    p.add_argument("--seed", type=int, default=0, help="seed of a split made for the bundle")

    p = sub.add_parser(
        "score",
        help="every diversity metric and the vote accuracies of one team",
        formatter_class=formatter,
        description=textwrap.dedent(
            """\
            Compute every metric of CONTRACT §3-4 and the plurality / majority / soft vote
            accuracy of one team.

            example:
              focal score outputs.npz --team modelA,modelB,modelC --format json
            """
        ),
    )
    p.set_defaults(run=_cmd_score)
    _add_common(p)
    p.add_argument("--team", required=True, help="comma-separated model names (at least 2)")

    p = sub.add_parser(
        "info",
        help="models, accuracies, oracle and pool accuracy, error correlations",
        formatter_class=formatter,
        description=textwrap.dedent(
            """\
            Summarise a bundle: each model's accuracy, the oracle accuracy (any model right),
            the plurality / soft vote accuracy of the whole pool, and the pairwise correlation
            of the models' errors. For a multi-task file without --task, list the tasks.

            examples:
              focal info outputs.npz
              focal info bbh.npz --task navigate --format json
            """
        ),
    )
    p.set_defaults(run=_cmd_info)
    _add_common(p)


# ---------------------------------------------------------------------------- helpers


# ---------------------------------------------------------------------------- commands


def _objective_of(args: argparse.Namespace):
    import focal

    return focal.Objective(
        metric=getattr(args, "metric", "focal"),
        w_div=args.w_div,
        w_acc=args.w_acc,
        size_penalty=args.size_penalty,
    )


def _cmd_prune(args: argparse.Namespace) -> int:
    import focal

    from ._common import progress_bar

    bundle = load_bundle_arg(args)
    select, report, source = bundle, None, "bundle"
    if (args.select_on is None) != (args.report_on is None):
        raise UsageError("--select-on and --report-on go together")
    if args.select_on is not None:
        if args.split:
            raise UsageError("--split cannot be combined with --select-on/--report-on")
        select, report, source = focal.protocol_splits(
            bundle, select_on=args.select_on, report_on=args.report_on, seed=args.seed
        )
    sizes = args.size if args.size is not None else args.sizes
    kwargs = {} if args.max_teams is None else {"max_teams": args.max_teams}
    objective = None if args.objective == "metric" else _objective_of(args)
    if args.search != "exhaustive" and args.objective == "pareto":
        raise UsageError("--objective pareto needs --search exhaustive")
    if args.checkpoint and (args.search != "exhaustive" or args.objective != "metric"):
        raise UsageError("--checkpoint applies to exhaustive scans ranked by the metric")
    bar = progress_bar("scoring teams")
    fitness = None
    extra: dict[str, Any] = {}
    try:
        if args.search == "exhaustive" and args.objective == "metric":
            result = focal.prune(
                select, metric=args.metric, sizes=sizes, top_k=args.top_k, progress=bar,
                scan=args.scan, checkpoint=args.checkpoint, **kwargs,
            )  # fmt: skip
        elif args.objective == "pareto":
            result = focal.pareto_prune(
                select, metric=args.metric, sizes=sizes, top_k=args.top_k, progress=bar, **kwargs
            )
        else:
            from focal._search import search

            options: dict[str, Any] = {"objective": objective or _objective_of(args)}
            if args.search == "ga":
                options.update(
                    seed=args.seed, generations=args.generations, population=args.population,
                    mutation_rate=args.mutation_rate,
                )  # fmt: skip
            elif args.search == "beam":
                options["beam_width"] = args.beam_width
            found = search(select, args.search, sizes=sizes, top_k=args.top_k, **options)
            fitness = [t.fitness for t in found.teams]
            result = focal.PruneResult(
                metric=args.metric,
                direction=focal.metric_spec(args.metric).direction,
                n_models=select.n_models,
                n_samples=select.n_samples,
                n_teams_scored=found.n_evaluated,
                sizes=focal.parse_sizes(sizes, select.n_models),
                teams=tuple(
                    focal.TeamScore(t.members, t.size, t.score, t.accuracy, t.mask)
                    for t in found.teams
                ),
            )
            extra["search"] = {
                "method": args.search,
                "objective": found.objective,
                "n_evaluated": found.n_evaluated,
                "seconds": found.seconds,
            }
    finally:
        bar.close()
    doc = result.to_dict()
    if fitness is not None:
        for team, fit in zip(doc["teams"], fitness, strict=True):
            team["fitness"] = fit
    doc.update(extra)
    if args.objective == "pareto":
        doc["ranking"] = "pareto"
    if report is not None:
        masks = np.stack([t.mask for t in result.teams]) if result.teams else np.zeros((0, 0))
        doc["report"] = focal.report_teams(
            select, report, masks, metric=args.metric, objective=objective,
            method=args.search, select_on=args.select_on, report_on=args.report_on,
            split_source=source,
        ).to_dict()  # fmt: skip
    if args.format == "json":
        emit_json(doc)
        return 0
    where = f" ({bundle.task})" if bundle.task else ""
    on = f", chosen on {args.select_on}" if report is not None else ""
    how = "exhaustive" if args.search == "exhaustive" else f"{args.search} search"
    print(
        f"{result.n_teams_scored:,} teams ({how}) of sizes {_sizes_text(result.sizes)} from "
        f"{result.n_models} models{where}, {result.n_samples:,} samples{on}; metric "
        f"{result.metric} ({result.direction} is more diverse)"
        + (f"; objective {extra['search']['objective']}" if "search" in extra else "")
    )
    headers = ["rank", "score", "plurality acc"]
    if fitness is not None:
        headers.append("fitness")
    if report is not None:
        headers.append(f"acc on {args.report_on}")
    headers += ["size", "members"]
    rows = []
    for i, t in enumerate(result.teams):
        row = [i + 1, t.score, t.accuracy]
        if fitness is not None:
            row.append(fitness[i])
        if report is not None:
            row.append(doc["report"]["teams"][i]["report_accuracy"])
        rows.append([*row, t.size, ", ".join(t.members)])
    print(table(headers, rows))
    if report is not None:
        _print_baselines(doc["report"])
    return 0


def _print_baselines(rep: dict[str, Any]) -> None:
    single, pool = rep["best_single"], rep["pool"]
    print(
        f"\nbaselines on {rep['report_on']} ({rep['n_report']:,} samples; chosen on "
        f"{rep['select_on']}, {rep['n_select']:,} samples; split from {rep['split_source']}):"
    )
    print(
        table(
            ("baseline", f"acc on {rep['select_on']}", f"acc on {rep['report_on']}"),
            [
                (f"best single model: {single['name']}", single["accuracy"],
                 single["report_accuracy"]),
                ("whole pool (plurality)", pool["accuracy"], pool["report_accuracy"]),
            ],
        )
    )  # fmt: skip


def _cmd_recommend(args: argparse.Namespace) -> int:
    import ensembles
    import focal

    bundle = ensembles.load_bundle(args.bundle, task=args.task)
    objective = focal.Objective(w_div=args.w_div, w_acc=args.w_acc, size_penalty=args.size_penalty)
    if args.objective != "fitness":
        raise UsageError("recommend ranks by --objective fitness; use focal prune for others")
    rep = focal.recommend(
        bundle, select_on=args.select_on, report_on=args.report_on, objective=objective,
        sizes=args.sizes, top_k=args.top_k, alpha=args.alpha, seed=args.seed,
    ).to_dict()  # fmt: skip
    if args.format == "json":
        emit_json(rep)
        return 0
    rec = rep["recommendation"]
    print(
        f"recommendation ({rec['kind'].replace('_', ' ')}): {', '.join(rec['members'])} — "
        f"accuracy {fmt(rec['report_accuracy'])} on {rep['report_on']}"
    )
    print(f"  {rec['reason']} (one-sided McNemar p = {rec['p_value']:.3g}, alpha {rec['alpha']})")
    print(f"\nteams ranked by {rep['ranking']} on {rep['select_on']}:")
    rows = [
        (i + 1, t["fitness"], t["score"], t["accuracy"], t["report_accuracy"], t["size"],
         ", ".join(t["members"]))
        for i, t in enumerate(rep["teams"])
    ]  # fmt: skip
    print(
        table(
            ("rank", "fitness", "focal", f"acc {rep['select_on']}", f"acc {rep['report_on']}",
             "size", "members"),
            rows,
        )
    )  # fmt: skip
    _print_baselines(rep)
    return 0


def _sizes_text(sizes: Sequence[int]) -> str:
    if len(sizes) > 1 and list(sizes) == list(range(sizes[0], sizes[-1] + 1)):
        return f"{sizes[0]}-{sizes[-1]}"
    return ",".join(map(str, sizes))


def _cmd_score(args: argparse.Namespace) -> int:
    import focal
    from focal import metric_spec

    bundle = load_bundle_arg(args)
    team = [t.strip() for t in args.team.split(",") if t.strip()]
    if len(team) < 2:
        raise UsageError("--team: give at least 2 comma-separated model names")
    doc = focal.score_team(bundle, team)
    if args.format == "json":
        emit_json(doc)
        return 0
    print(f"team: {', '.join(doc['members'])} ({bundle.n_samples:,} samples)")
    rows = [(name, v, metric_spec(name).direction) for name, v in doc["metrics"].items()]
    print(table(("metric", "value", "more diverse"), rows))
    print()
    print(table(("combiner", "accuracy"), list(doc["accuracy"].items())))
    return 0


def pool_summary(bundle) -> dict[str, Any]:
    """The document of ``focal info`` for one bundle."""
    import ensembles
    import focal

    full = np.ones((1, bundle.n_models), dtype=bool)
    pairs = [(i, j) for i in range(bundle.n_models) for j in range(i + 1, bundle.n_models)]
    pair_masks = np.zeros((len(pairs), bundle.n_models), dtype=bool)
    for row, (i, j) in enumerate(pairs):
        pair_masks[row, [i, j]] = True
    rho = focal.score_teams(bundle, pair_masks, metric="correlation")
    corr = np.eye(bundle.n_models)
    for (i, j), r in zip(pairs, rho, strict=True):
        corr[i, j] = corr[j, i] = r
    abstain = (bundle.preds < 0).mean(axis=1)
    return {
        "task": bundle.task,
        "n_models": bundle.n_models,
        "n_samples": bundle.n_samples,
        "n_classes": bundle.n_classes,
        "splits": None
        if bundle.split is None
        else {s: int((bundle.split == s).sum()) for s in ensembles.SPLIT_NAMES},
        "models": [
            {"name": m, "accuracy": float(a), "abstain_rate": float(r)}
            for m, a, r in zip(bundle.models, bundle.accuracies(), abstain, strict=True)
        ],
        "oracle_accuracy": bundle.oracle_accuracy(),
        "pool_accuracy": {
            "plurality": float(ensembles.team_accuracy(bundle, full, combiner="plurality")[0]),
            "soft": None
            if bundle.probs is None
            else float(ensembles.team_accuracy(bundle, full, combiner="soft")[0]),
        },
        "error_correlation": corr.tolist(),
    }


def _cmd_info(args: argparse.Namespace) -> int:
    import ensembles

    if args.task is None and ensembles.list_tasks(args.bundle):
        tasks = ensembles.load_tasks(args.bundle)
        rows = []
        for name, b in tasks.items():
            if args.split:
                b = b.select_split(args.split)
            acc = b.accuracies()
            rows.append(
                {
                    "task": name,
                    "n_samples": b.n_samples,
                    "n_classes": b.n_classes,
                    "best_model": b.models[int(np.argmax(acc))],
                    "best_accuracy": float(acc.max()),
                    "oracle_accuracy": b.oracle_accuracy(),
                }
            )
        if args.format == "json":
            emit_json({"tasks": rows})
        else:
            print(f"{len(rows)} tasks; use --task T for one task's details")
            print(table(list(rows[0]), [list(r.values()) for r in rows]))
        return 0
    bundle = load_bundle_arg(args)
    doc = pool_summary(bundle)
    if args.format == "json":
        emit_json(doc)
        return 0
    where = f"task {bundle.task}: " if bundle.task else ""
    print(
        f"{where}{doc['n_models']} models, {doc['n_samples']:,} samples, "
        f"{doc['n_classes']} classes" + (f", splits {doc['splits']}" if doc["splits"] else "")
    )
    rows = [(m["name"], m["accuracy"], m["abstain_rate"]) for m in doc["models"]]
    print(table(("model", "accuracy", "abstain"), rows))
    pool = doc["pool_accuracy"]
    print(
        f"\noracle accuracy {fmt(doc['oracle_accuracy'])}  |  pool plurality "
        f"{fmt(pool['plurality'])}  |  pool soft {fmt(pool['soft'])}"
    )
    print("\npairwise correlation of errors (rho; lower = more diverse):")
    short = [f"m{i}" for i in range(bundle.n_models)]
    corr_rows = [
        [f"m{i}"] + [f"{v:+.2f}" for v in row] for i, row in enumerate(doc["error_correlation"])
    ]
    print(table(["", *short], corr_rows))
    print("  " + "  ".join(f"m{i} = {name}" for i, name in enumerate(bundle.models)))
    return 0
