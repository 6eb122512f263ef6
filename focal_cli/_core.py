"""``focal prune``, ``focal recommend``, ``focal score`` and ``focal info``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._common import (
    UsageError,
    add_bundle,
    add_format,
    add_metric,
    emit,
    fmt,
    load_bundle_arg,
    parse_team,
    progress_bar,
    subcommand,
    table,
)

__all__ = ["pool_summary", "register", "rows_for"]

SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------------------ arguments
def _add_sizes(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--sizes", default=None, help="team sizes, e.g. 2-5 or 3 (default: 2 to min(5, M))"
    )
    group.add_argument("--size", type=int, help="a single team size")


def _add_objective(p: argparse.ArgumentParser, *, default: str) -> None:
    import focal

    d = focal.Objective()
    p.add_argument(
        "--objective",
        choices=("metric", "fitness", "pareto"),
        default=default,
        help="ranking: the metric alone, the fitness w_div*metric + w_acc*accuracy, or the "
        f"Pareto front of both (default {default})",
    )
    p.add_argument("--w-div", type=float, default=d.w_div, help=f"fitness weight ({d.w_div:g})")
    p.add_argument("--w-acc", type=float, default=d.w_acc, help=f"fitness weight ({d.w_acc:g})")
    p.add_argument("--size-penalty", type=float, default=0.0, help="fitness: minus this*size/M")


def _add_search(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("search")
    g.add_argument(
        "--search",
        choices=("auto", "exhaustive", "greedy", "beam", "ga", "hq"),
        default="auto",
        help="strategy (default auto: exhaustive when feasible, else beam)",
    )
    g.add_argument(
        "--scan",
        choices=("auto", "chunked", "gray"),
        default="auto",
        help="exhaustive metric scan: batched closed forms or Gray-code incremental",
    )
    g.add_argument("--checkpoint", metavar="FILE", help="resumable exhaustive scan: progress file")
    g.add_argument("--max-teams", type=int, default=None, help="refuse scans above this (2^22)")
    g.add_argument("--seed", type=int, default=0, help="seed of ga and of seeded splits (0)")
    g.add_argument("--generations", type=int, default=1000, help="ga: generation cap (1000)")
    g.add_argument("--population", type=int, default=100, help="ga: population size (100)")
    g.add_argument("--mutation-rate", type=float, default=None, help="ga: default 1/M")
    g.add_argument("--beam-width", type=int, default=16, help="beam: width (16)")


def _add_protocol(p: argparse.ArgumentParser, *, select_on: str | None, report_on: str | None):
    p.add_argument("--select-on", choices=SPLITS, default=select_on, help="split to choose on")
    p.add_argument("--report-on", choices=SPLITS, default=report_on, help="split to report on")


def register(sub: Any) -> None:
    """Add ``prune``, ``recommend``, ``score`` and ``info``."""

    p = subcommand(
        sub,
        "prune",
        help="the most diverse sub-ensembles by a diversity metric (exact, exhaustive)",
        description="""\
        Rank teams by a diversity metric (default focal diversity) and print the top K, most
        diverse first, with each team's plurality-vote accuracy on the same rows and the best
        single model's for comparison. Diversity alone does not make a team accurate: to
        choose the team to use, run 'focal recommend'.

        Rows: --split NAME (train, val, test or all); by default the val rows when the bundle
        has a split (made complete by the split policy: val carved from train when missing),
        else all rows. The rows used are printed and recorded in the JSON ("rows").

        Ranking (--objective): the metric alone (default), the fitness
        w_div*metric + w_acc*accuracy - size_penalty*size/M, or the Pareto front of (metric,
        plurality accuracy). Search (--search): exhaustive (exact; the Gray-code scan for large
        requests, resumable with --checkpoint), greedy, beam, ga (FusionShot's genetic
        algorithm) or hq (HQ-Ensemble). With --select-on/--report-on, teams are chosen on one
        split and reported on another beside the best single model and the whole pool.

        examples:
          focal prune outputs.npz --sizes 2-5 --top-k 10
          focal prune bbh.npz --task navigate --size 3 --metric focal_cohen_kappa
          focal prune outputs.npz --split all --format json > teams.json
          focal prune pool.npz --sizes 2-24 --checkpoint scan.ckpt   # resumable
          focal prune mmlu.npz --objective fitness --w-div 0.5 --w-acc 0.5 --sizes 2-4
          focal prune mmlu.npz --search ga --sizes 2-8 --seed 1
          focal prune mmlu.npz --select-on val --report-on test --objective pareto
        """,
        run=run_prune,
    )
    add_bundle(p, split=True)
    add_metric(p)
    _add_sizes(p)
    p.add_argument("--top-k", type=int, default=10, help="number of teams to report (10)")
    _add_objective(p, default="metric")
    _add_search(p)
    _add_protocol(p, select_on=None, report_on=None)
    add_format(p)

    p = subcommand(
        sub,
        "recommend",
        help="which team and combiner to use: chosen by cross-validation, guarded, reported",
        description="""\
        Recommend a (team, combiner) pair. Candidates are procedures: a team rule (the best
        single model, the whole pool, the k most accurate models, the team found by the
        objective 0.2*focal diversity + 0.8*accuracy) with a combiner (plurality, soft or
        weighted vote, logistic stacking; --topla adds the LLM-TOPLA fuser). Each is scored by
        K-fold cross-validation inside the selection rows (default: every row outside the
        report split), so no team is judged on the rows it was chosen on. The best procedure
        is recommended only when it beats the best single model under the same folds (one-sided
        exact McNemar test at --alpha); then it is refitted on all selection rows and reported
        once on the report split beside the baselines (alpha 0.2 and the objective's weights
        were chosen on inner splits of selection rows, never on test rows). Splits follow the
        one split policy (the bundle's split, completed; or a seeded 60/20/20 split); the rows
        used are recorded.

        examples:
          focal recommend outputs.npz
          focal recommend outputs.npz --out rec.json        # then: focal fuse train --from rec.json
          focal recommend bbh.npz --task navigate --format json
          focal recommend mmlu.npz --folds 10 --combiners plurality,weighted,stacking --seed 3
        """,
        run=run_recommend,
    )
    add_bundle(p)
    _add_sizes(p)
    p.add_argument(
        "--select-on",
        choices=("rest", *SPLITS),
        default="rest",
        help="rows to choose on: rest (every row outside --report-on; default) or a split",
    )
    p.add_argument(
        "--report-on",
        choices=(*SPLITS, "none"),
        default="test",
        help="split reported on once the choice is made (default test; none: no report)",
    )
    p.add_argument(
        "--combiners",
        default="plurality,soft,weighted,stacking",
        help="comma-separated built-in combiners (default all four)",
    )
    p.add_argument("--topla", action="store_true", help="also try the LLM-TOPLA fuser (slower)")
    p.add_argument("--folds", type=int, default=5, help="K of the cross-validation (5)")
    p.add_argument("--alpha", type=float, default=0.2, help="significance of the guard (0.2)")
    p.add_argument("--w-div", type=float, default=None, help="objective weight of focal diversity")
    p.add_argument("--seed", type=int, default=0, help="seed of a split made here and of the folds")
    p.add_argument("--out", metavar="FILE", help="also write the recommendation as JSON (atomic)")
    add_format(p)

    p = subcommand(
        sub,
        "score",
        help="every diversity metric and the vote accuracies of one team",
        description="""\
        Compute every diversity metric and the plurality / majority / soft vote accuracy of
        one team. Rows as in 'focal prune' (default: val when the bundle has a split).

        examples:
          focal score outputs.npz --team modelA,modelB,modelC --format json
          focal score outputs.npz --team all --split test
        """,
        run=run_score,
    )
    add_bundle(p, split=True)
    p.add_argument("--team", required=True, help="comma-separated model names, or 'all'")
    p.add_argument("--seed", type=int, default=0, help="seed of a split made for the bundle")
    add_format(p)

    p = subcommand(
        sub,
        "info",
        help="models, accuracies, oracle and pool accuracy, error correlations",
        description="""\
        Summarise a bundle: each model's accuracy, the oracle accuracy (any model right),
        the plurality / soft vote accuracy of the whole pool, and the pairwise correlation
        of the models' errors (all rows unless --split). For a multi-task file without
        --task, list the tasks.

        examples:
          focal info outputs.npz
          focal info bbh.npz --task navigate --format json
        """,
        run=run_info,
    )
    add_bundle(p, split=True)
    add_format(p)


# ------------------------------------------------------------------------------ rows
def rows_for(bundle, split: str | None, *, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """The rows a command works on and a record of them (``rows`` in every JSON output).

    ``split`` ``"all"``: every row. A split name: those rows of the bundle's split completed by
    :func:`ensembles.ensure_splits` (a seeded split when the bundle has none). ``None``: the
    val rows when the bundle has a split, else every row.
    """
    import ensembles

    if split == "all" or (split is None and bundle.split is None):
        return bundle, {"split": "all", "source": "bundle" if split else "no split in the bundle",
                        "n_rows": bundle.n_samples}  # fmt: skip
    name = split or "val"
    full, info = ensembles.ensure_splits(bundle, seed=seed)
    rows = full.select_split(name)
    if rows.n_samples == 0:
        raise UsageError(f"--split: the bundle has no {name!r} rows ({info.sizes})")
    return rows, {"split": name, "n_rows": rows.n_samples, **info.to_dict()}


def _rows_text(rows: dict[str, Any]) -> str:
    if rows.get("split") == "all":
        note = "" if rows.get("source") == "bundle" else " (the bundle has no split)"
        return f"all {rows['n_rows']:,} rows{note}"
    src = {"bundle": "the bundle's split", "bundle+val": "val carved from train, seed "
           f"{rows.get('seed')}", "seeded": f"a seeded split, seed {rows.get('seed')}"}  # fmt: skip
    return f"{rows['split']} rows ({rows['n_rows']:,}; {src.get(rows.get('source'), '?')})"


def _sizes_arg(args: argparse.Namespace) -> Any:
    return args.size if getattr(args, "size", None) is not None else args.sizes


def _objective(args: argparse.Namespace, metric: str = "focal"):
    import focal

    if args.objective == "metric":
        return metric
    if args.objective == "pareto":
        return "pareto"
    return focal.Objective(
        metric=metric, w_div=args.w_div, w_acc=args.w_acc, size_penalty=args.size_penalty
    )


def _strategy(args: argparse.Namespace):
    import focal

    for flag in ("max_teams", "beam_width", "population", "generations"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')}: must be at least 1, got {value}")
    search = args.search
    if args.checkpoint and search not in ("auto", "exhaustive"):
        raise UsageError("--checkpoint applies to exhaustive scans")
    if search in ("auto", "exhaustive") and (args.checkpoint or args.scan != "auto"
                                             or args.max_teams is not None):  # fmt: skip
        kwargs: dict[str, Any] = {"scan": args.scan, "checkpoint": args.checkpoint}
        if args.max_teams is not None:
            kwargs["max_teams"] = args.max_teams
        return focal.Exhaustive(**kwargs)
    if search == "ga":
        return focal.Genetic(
            seed=args.seed,
            population=args.population,
            generations=args.generations,
            mutation_rate=args.mutation_rate,
        )
    if search == "beam":
        return focal.Beam(width=args.beam_width)
    return search


# ------------------------------------------------------------------------------ prune
def run_prune(args: argparse.Namespace) -> int:
    """``focal prune``: one call to :func:`focal.select`, then print."""
    import dataclasses

    import focal
    from focal.search import baselines, protocol_splits, report_teams

    bundle = load_bundle_arg(args)
    protocol = args.select_on is not None or args.report_on is not None
    if protocol:
        if args.select_on is None or args.report_on is None:
            raise UsageError("--select-on and --report-on go together")
        if args.split:
            raise UsageError("--split cannot be combined with --select-on/--report-on")
        rows_b, report_b, rows = protocol_splits(
            bundle, select_on=args.select_on, report_on=args.report_on, seed=args.seed
        )
    else:
        rows_b, rows = rows_for(bundle, args.split, seed=args.seed)
    if args.objective == "pareto" and args.search not in ("auto", "exhaustive"):
        raise UsageError("--objective pareto needs --search exhaustive")
    if args.checkpoint and args.objective != "metric":
        raise UsageError("--checkpoint applies to scans ranked by the metric alone")
    bar = progress_bar("scoring teams")
    try:
        result = focal.select(
            rows_b,
            objective=_objective(args, args.metric),
            metric=args.metric,
            sizes=_sizes_arg(args),
            top_k=args.top_k,
            search=_strategy(args),
            progress=bar,
        )
    finally:
        bar.close()
    result = dataclasses.replace(result, rows=rows)
    doc = result.to_dict()
    single, pool = baselines(rows_b, report_b if protocol else rows_b)
    doc["best_single"] = single
    doc["pool"] = pool
    if protocol:
        for team, rep in zip(doc["teams"], report_teams(rows_b, report_b, result.masks),
                             strict=True):  # fmt: skip
            team.update(rep)
    return emit(args, doc, lambda: _prune_text(bundle, result, doc, protocol))


def _sizes_text(sizes: Sequence[int]) -> str:
    if len(sizes) > 1 and list(sizes) == list(range(sizes[0], sizes[-1] + 1)):
        return f"{sizes[0]}-{sizes[-1]}"
    return ",".join(map(str, sizes))


def _prune_text(bundle, result, doc: dict[str, Any], protocol: bool) -> str:
    where = f" ({bundle.task})" if bundle.task else ""
    how = result.strategy if result.strategy != "exhaustive" else "exhaustive"
    lines = [
        f"{result.n_evaluated:,} teams ({how}) of sizes {_sizes_text(result.sizes)} from "
        f"{result.n_models} models{where}; chosen on {_rows_text(doc['rows'])}",
        f"ranked by {result.objective}; metric {result.metric} ({result.direction} is more "
        "diverse)",
    ]
    fitness = result.objective not in (result.metric, "pareto")
    headers = ["rank", "score", "plurality acc"] + (["fitness"] if fitness else [])
    if protocol:
        headers.append(f"acc on {doc['rows']['report_on']}")
    headers += ["size", "members"]
    body = []
    for i, (t, d) in enumerate(zip(result.teams, doc["teams"], strict=True)):
        row = [i + 1, t.score, t.accuracy] + ([t.fitness] if fitness else [])
        if protocol:
            row.append(d["report_accuracy"])
        body.append([*row, t.size, ", ".join(t.members)])
    lines.append(table(headers, body))
    single, pool = doc["best_single"], doc["pool"]
    lines.append(
        f"\nbest single model: {single['name']} (accuracy {fmt(single['accuracy'])}); "
        f"whole pool plurality {fmt(pool['accuracy'])}"
        + (
            f"; on {doc['rows']['report_on']}: {fmt(single['report_accuracy'])} and "
            f"{fmt(pool['report_accuracy'])}"
            if protocol
            else ""
        )
    )
    top = [t.score for t in result.teams]
    if (
        len(top) > 1
        and np.allclose(top, top[0], equal_nan=True)
        and result.objective == result.metric
    ):
        lines.append(
            f"note: all {len(top)} teams shown tie at {fmt(top[0])}; diversity alone cannot "
            "separate them"
        )
    if result.objective == result.metric:
        lines.append("hint: diversity alone does not pick an accurate team; 'focal recommend' does")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ recommend
def run_recommend(args: argparse.Namespace) -> int:
    """``focal recommend``: one call to :func:`focal.recommend`, then print."""
    import ensembles
    import focal
    from ensembles.util import check_writable, write_json_atomic

    if args.out:
        check_writable(args.out, name="--out")
    bundle = ensembles.load_bundle(args.bundle, task=args.task)
    combiners: list[object] = [c.strip() for c in args.combiners.split(",") if c.strip()]
    if args.topla:
        import fusers

        combiners.append(fusers.ToplaFuser(seed=args.seed))
    objective = None
    if args.w_div is not None:
        if not 0.0 <= args.w_div <= 1.0:
            raise UsageError(f"--w-div: must lie in [0, 1], got {args.w_div}")
        objective = focal.Objective(w_div=args.w_div, w_acc=1.0 - args.w_div)
    rec = focal.recommend(
        bundle,
        select_on=args.select_on,
        report_on=None if args.report_on == "none" else args.report_on,
        objective=objective,
        sizes=_sizes_arg(args),
        combiners=combiners,
        folds=args.folds,
        alpha=args.alpha,
        seed=args.seed,
    )
    doc = rec.to_dict()
    doc["bundle"] = {"path": str(args.bundle), "task": args.task}
    if args.out:
        write_json_atomic(args.out, doc)
    return emit(args, doc, lambda: _recommend_text(doc))


def _recommend_text(doc: dict[str, Any]) -> str:
    rec, rows, rep = doc["recommendation"], doc["rows"], doc["report"]
    what = "team" if rec["kind"] == "team" else "the best single model"
    how = f", combined by {rec['combiner']}" if rec["kind"] == "team" else ""
    lines = [
        f"recommendation ({what}): {', '.join(rec['members'])}{how}",
        f"  {rec['reason']} (cross-validated accuracy {fmt(rec['cv_accuracy'])}; one-sided "
        f"McNemar p = {rec['p_value']:.3g}, alpha {rec['alpha']})",
        f"  best procedure vs the best single model in cross-validation: "
        f"{100 * rec['cv_gain']:+.2f} ± {100 * rec['cv_gain_se']:.2f} points (paired SE)",
        f"  chosen on the {rows['select_on']} rows ({rows.get('folds')} folds); split: "
        f"{rows.get('source')}, seed {rows.get('seed')}, sizes {rows.get('sizes')}",
        "",
        "procedures by cross-validated accuracy on the selection rows:",
        table(
            ("rank", "team rule", "combiner", "cv accuracy", "mean size"),
            [
                (i + 1, c["rule"], c["combiner"], c["cv_accuracy"], c["mean_size"])
                for i, c in enumerate(doc["candidates"][:10])
            ],
        ),
    ]
    if rep is not None:
        single = rep["best_single"]
        body = [
            ("the recommendation", rep["recommendation"]),
            (f"best single model ({single['name']}, chosen on the selection rows)",
             single["report_accuracy"]),
        ]  # fmt: skip
        extra = (
            ("pool_plurality", "whole pool, plurality"),
            ("pool_soft", "whole pool, soft vote"),
            ("oracle", "oracle"),
        )
        for key, label in extra:
            if key in rep:
                body.append((label, rep[key]))
        lines += ["", f"on the {rows.get('report_on')} rows ({rep['n_rows']:,}), touched once:",
                  table(("", "accuracy"), body)]  # fmt: skip
    return "\n".join(lines)


# ------------------------------------------------------------------------------ score
def run_score(args: argparse.Namespace) -> int:
    """``focal score``: every metric of one team."""
    import focal

    bundle = load_bundle_arg(argparse.Namespace(bundle=args.bundle, task=args.task))
    team = parse_team(bundle, args.team)
    rows_b, rows = rows_for(bundle, args.split, seed=args.seed)
    doc = {**focal.score_team(rows_b, team), "rows": rows}

    def text() -> str:
        body = [(n, v, focal.metric_spec(n).direction) for n, v in doc["metrics"].items()]
        return "\n".join(
            [
                f"team: {', '.join(doc['members'])}; {_rows_text(rows)}",
                table(("metric", "value", "more diverse"), body),
                "",
                table(("combiner", "accuracy"), list(doc["accuracy"].items())),
            ]
        )

    return emit(args, doc, text)


# ------------------------------------------------------------------------------ info
def pool_summary(bundle) -> dict[str, Any]:
    """The document of ``focal info`` for one bundle."""
    import ensembles
    import focal

    m = bundle.n_models
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    pair_masks = np.zeros((len(pairs), m), dtype=bool)
    for row, (i, j) in enumerate(pairs):
        pair_masks[row, [i, j]] = True
    rho = focal.score_teams(bundle, pair_masks, metric="correlation")
    corr = np.eye(m)
    for (i, j), r in zip(pairs, rho, strict=True):
        corr[i, j] = corr[j, i] = r
    from focal.search import vote_accuracy

    full = np.ones((1, m), dtype=bool)
    abstain = (bundle.preds < 0).mean(axis=1)
    return {
        "task": bundle.task,
        "n_models": m,
        "n_samples": bundle.n_samples,
        "n_classes": bundle.n_classes,
        "splits": None
        if bundle.split is None
        else {s: int((bundle.split == s).sum()) for s in ensembles.SPLIT_NAMES},
        "models": [
            {"name": name, "accuracy": float(a), "abstain_rate": float(r)}
            for name, a, r in zip(bundle.models, bundle.accuracies(), abstain, strict=True)
        ],
        "oracle_accuracy": bundle.oracle_accuracy(),
        "pool_accuracy": {
            "plurality": float(vote_accuracy(bundle, full)[0]),
            "soft": None
            if bundle.probs is None
            else float(ensembles.team_accuracy(bundle, full, combiner="soft")[0]),
        },
        "error_correlation": corr.tolist(),
    }


def _short(name: str, width: int = 10) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def run_info(args: argparse.Namespace) -> int:
    """``focal info``: a summary of a bundle (or the tasks of a multi-task file)."""
    import ensembles

    if args.task is None and ensembles.list_tasks(args.bundle):
        rows = []
        for name, b in ensembles.load_tasks(args.bundle).items():
            if args.split and args.split != "all":
                b = b.select_split(args.split)
            acc = b.accuracies()
            rows.append({"task": name, "n_samples": b.n_samples, "n_classes": b.n_classes,
                         "best_model": b.models[int(np.argmax(acc))],
                         "best_accuracy": float(acc.max()),
                         "oracle_accuracy": b.oracle_accuracy()})  # fmt: skip
        text = f"{len(rows)} tasks; use --task T for one task's details\n" + table(
            list(rows[0]), [list(r.values()) for r in rows]
        )
        return emit(args, {"tasks": rows}, text)
    bundle = load_bundle_arg(args)
    doc = pool_summary(bundle)

    def text() -> str:
        where = f"task {bundle.task}: " if bundle.task else ""
        pool = doc["pool_accuracy"]
        names = [_short(n) for n in bundle.models]
        corr_rows = [[names[i]] + [f"{v:+.2f}" for v in row]
                     for i, row in enumerate(doc["error_correlation"])]  # fmt: skip
        return "\n".join(
            [
                f"{where}{doc['n_models']} models, {doc['n_samples']:,} samples, "
                f"{doc['n_classes']} classes"
                + (f", splits {doc['splits']}" if doc["splits"] else ""),
                table(("model", "accuracy", "abstain"),
                      [(m["name"], m["accuracy"], m["abstain_rate"]) for m in doc["models"]]),
                f"\noracle accuracy {fmt(doc['oracle_accuracy'])}  |  pool plurality "
                f"{fmt(pool['plurality'])}  |  pool soft {fmt(pool['soft'])}",
                "\npairwise correlation of errors (rho; lower = more diverse):",
                table(["", *names], corr_rows),
            ]
        )  # fmt: skip

    return emit(args, doc, text)
