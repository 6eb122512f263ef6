"""LLM-TOPLA-Summary (generative fusion) on the MMLU-Pro texts, with its baselines.

    python -m bench.summary [--budget cpu|full] [--seeds 0 1] [--candidates 3]
                            [--part all|mmlu|synthetic|alpaca|letters] [--teacher-forced]
                            [--judge bench/out/judges/helpfulness.json]
                            [--test-rows N|all]

For each seed: a seeded question-level 70/10/20 split of ``mmlu_pro_texts.jsonl.gz`` (3,000
questions x 6 models' chain-of-thought outputs), a seeded subsample of each split for the
budget, the team of ``--candidates`` chosen on val by ``focal.select``, SmolLM2-135M-Instruct
with LoRA trained on train and early-stopped on val, scored once on test by greedy generation
and the "The answer is (X)" parser. Baselines on the same test rows: each member, plurality of
the six, plurality and TOPLA-Weighted of the team, the question-only ablation, the oracles.
``--part synthetic`` runs only the synthetic check (tiny decoder from scratch; members right with
probability 0.3, otherwise shifted by their own offset, which they state).

``--part alpaca`` (not part of ``all``): open-ended fusion on AlpacaEval-1 (``run_alpaca_eval``):
the team's replies fused into one, judged by the helpfulness judge of ``python -m
bench.lm_judges`` against the davinci-003 reference, beside each member's GPT-4 and judge win
rates on the same prompts. Test prompts are drawn only from prompts the judge never saw in
training.

``--part letters`` (not part of ``all``; seconds, no decoder): what combining the six models'
*answers* alone reaches on each seed's full split (2,100 / 300 / 600 questions, no budget
subsample): logistic stacking of the six answers and of the team's (fitted on train, as the
fuser is), and ``focal.recommend``'s pick (chosen on train+val), beside the best single model
chosen on val, plurality of the six and the oracle, all on the same 600 test questions. The CPU
budget's fuser sees only the last ~30 tokens of each candidate, mostly the stated answer, so this
is what it could learn from much more data.

``--test-rows N|all`` scores the MMLU-Pro fusers on N (or all) test questions instead of the
budget's; training rows, team and settings stay the budget's.

Each seed's result is written atomically to
``bench/out/summary_<budget>_k<c>[_test<N>]_seed<k>.json`` (a seed already there is reused: the
run resumes); the Markdown table printed at the end is the one in ``bench/README.md``
("Generative fusion"). A missing data file is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ensembles.util import write_json_atomic

DATA = Path(
    os.environ.get("FOCAL_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)
OUT = Path(__file__).resolve().parent / "out"
TEXTS = "mmlu_pro_texts.jsonl.gz"


def synthetic(seed: int) -> dict[str, Any]:
    """The synthetic check: fuser vs plurality of the members' answers on fresh test rows."""
    from fusers.lm import DecoderConfig
    from fusers.summary import SummaryFuser, synthetic_offsets

    train = synthetic_offsets(1000, seed=3 * seed)
    val = synthetic_offsets(100, seed=3 * seed + 1)
    test = synthetic_offsets(300, seed=3 * seed + 2)
    cfg = DecoderConfig(vocab_size=259, hidden_size=64, intermediate_size=128,
                        num_hidden_layers=2, num_attention_heads=4)  # fmt: skip
    t = time.perf_counter()
    f = SummaryFuser(model=cfg, **SYNTHETIC, seed=seed).fit(train.examples, val.examples)
    return {
        "seed": seed,
        "fuser": f.score(test.examples),
        "plurality": test.plurality_accuracy(),
        "best_val": f.best_score_,
        "steps": f.steps_run_,
        "seconds": time.perf_counter() - t,
    }


SYNTHETIC = {
    "context": 32,
    "target_tokens": 2,
    "epochs": 6,
    "batch_size": 32,
    "eval_every": 31,
    "patience": None,
    "learning_rate": 2e-3,
    "eval_batch_size": 100,
}


def _done(path: Path, results: list[dict[str, Any]]) -> bool:
    """A seed already written by an earlier run is reused (the bench resumes)."""
    if path.is_file():
        results.append(json.loads(path.read_text()))
    return path.is_file()


def alpaca(args) -> int:
    """The AlpacaEval part: one JSON per seed, then a Markdown table."""
    from fusers import judges, lm
    from fusers.summary import load_jsonl, run_alpaca_eval

    root = DATA / "alignment"
    judged, prompts = (
        root / "alpaca_eval1_gpt4_judged.jsonl.gz",
        root / "alpaca_eval_prompts.jsonl.gz",
    )
    if not (judged.is_file() and prompts.is_file()):
        print(f"skipped AlpacaEval: {root} lacks the AlpacaEval files", file=sys.stderr)
        return 0
    judge_path = Path(args.judge)
    if not judge_path.is_file():
        print(f"skipped AlpacaEval: no helpfulness judge at {judge_path} (train it with "
              "`python -m bench.lm_judges --kinds helpfulness`)", file=sys.stderr)  # fmt: skip
        return 0
    judge = judges.Judge.load(judge_path)
    model, tok, _ = lm.load_model("smollm2")
    prompt_rows = load_jsonl(prompts)
    # The judge's training prompts never reach the fusion test split.
    seen = judges.trained_on(judge, [p["instruction"] for p in prompt_rows])
    if seen is None:
        print(
            f"skipped AlpacaEval: {judge_path} does not record its training prompts; "
            "retrain it: python -m bench.lm_judges --kinds helpfulness",
            file=sys.stderr,
        )
        return 0
    allowed = [int(p["idx"]) for p, s in zip(prompt_rows, seen, strict=True) if not s]
    rows = load_jsonl(judged)
    info = judges.validation_summary(judge)

    def score(batch):
        out = judges.score_rows(judge, model, tok, batch, cache_dir=OUT / "feature_cache")
        return [r["score"] for r in out]

    results = []
    for seed in args.seeds:
        out = OUT / f"summary_alpaca_{args.budget}_k{args.candidates}_seed{seed}.json"
        if _done(out, results):
            continue

        def progress(info, seed=seed):
            if "val_score" in info:
                print(f"alpaca seed {seed}: step {info['step']}/{info['steps']} loss "
                      f"{info['loss']:.3f} val loss {-info['val_score']:.3f}", file=sys.stderr,
                      flush=True)  # fmt: skip

        r = run_alpaca_eval(
            rows, prompt_rows, seed=seed, n_candidates=args.candidates, budget=args.budget,
            test_prompts=allowed, judge=score, judge_info=info, callback=progress,
            checkpoint_dir=OUT / f"summary_ck_alpaca_{args.budget}_k{args.candidates}",
        )  # fmt: skip
        write_json_atomic(out, r)
        results.append(r)
        print(f"alpaca seed {seed} done: judge win rate {r['win_rate']:.3f}", file=sys.stderr)
    print(alpaca_table(results))
    return 0


def alpaca_table(results: list[dict[str, Any]]) -> str:
    """Markdown: fused reply vs each member, judge and GPT-4 win rates, one column per seed."""
    if not results:
        return ""
    seeds = [r["splits"]["seed"] for r in results]
    head = "| reply | " + " | ".join(f"seed {s}: judge / GPT-4 win %" for s in seeds) + " |"
    lines = [head, "|---|" + "---|" * len(seeds)]
    cells = [f"{100 * r['win_rate']:.1f} / –" for r in results]
    lines.append(
        "| fused (team of " + str(len(results[0]["team"])) + ") | " + " | ".join(cells) + " |"
    )
    names = list(dict.fromkeys(m for r in results for m in r["members"]))
    for m in names:
        row = []
        for r in results:
            v = r["members"].get(m)
            rates = "–" if v is None else f"{100 * v['judge_win_rate']:.1f}"
            row.append(rates if v is None else f"{rates} / {100 * v['gpt4_win_rate']:.1f}")
        tags = [t for t, key in (("team", "team"), ("best single", "best_single"))
                if any(m in (r[key] if key == "team" else [r[key]]) for r in results)]  # fmt: skip
        lines.append(f"| {m} ({', '.join(tags)}) | " + " | ".join(row) + " |")
    r0 = results[0]
    j = r0["judge"] or {}
    lines += ["", f"Budget `{r0['budget']}`: prompts train/val/test = "
              f"{r0['splits']['used_sizes']}; judge: held-apart AUC {j.get('auc')}, accuracy "
              f"{j.get('accuracy')} ({j.get('held_apart')}-disjoint); seconds per seed "
              + ", ".join(f"{r['seconds']['total']:.0f}" for r in results) + "."]  # fmt: skip
    return "\n".join(lines)


def letters(rows: list[dict[str, Any]], seed: int, n_candidates: int) -> dict[str, Any]:
    """Combiners of the members' parsed answers on one seed's full split of ``rows`` (the
    MMLU-Pro texts; see the module doc)."""
    import warnings

    import focal
    import fusers
    from fusers.summary import choose_team, mmlu_pro_bundle, question_split

    t = time.perf_counter()
    bundle = mmlu_pro_bundle(rows, split=question_split(len(rows), seed=seed))
    team = choose_team(bundle, size=n_candidates)
    test = bundle.select_split("test")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = focal.recommend(bundle, select_on="rest", report_on="test", seed=seed)
        stack_all = fusers.StackingFuser(scores="onehot", seed=seed).fit(bundle)
        stack_team = fusers.StackingFuser(scores="onehot", seed=seed).fit(bundle, team=team)
    val_acc = bundle.select_split("val").accuracies()
    best = int(val_acc.argmax())
    return {
        "seed": seed,
        "n_test": test.n_samples,
        "team": list(team),
        "best_single": {
            "name": bundle.models[best],
            "accuracy": float(test.accuracies()[best]),
        },
        "stacking_all": stack_all.score(test),
        "stacking_team": stack_team.score(test),
        "recommend": {
            "kind": rec.kind,
            "rule": rec.rule,
            "combiner": rec.combiner,
            "members": list(rec.team.members),
            "accuracy": rec.report["recommendation"],
        },
        "plurality_all": rec.report["pool_plurality"],
        "oracle_all": rec.report["oracle"],
        "seconds": time.perf_counter() - t,
    }


def letters_table(runs: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`letters`: one column per seed, then the mean."""
    import numpy as np

    rows = [
        ("logistic stacking of the six answers (train)", lambda r: r["stacking_all"]),
        ("logistic stacking of the team's answers (train)", lambda r: r["stacking_team"]),
        ("focal recommend (train+val)", lambda r: r["recommend"]["accuracy"]),
        ("best single (chosen on val)", lambda r: r["best_single"]["accuracy"]),
        ("plurality of the six", lambda r: r["plurality_all"]),
        ("oracle of the six", lambda r: r["oracle_all"]),
    ]
    head = ["method"] + [f"seed {r['seed']}" for r in runs] + ["mean"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---|" * (len(head) - 1)]
    for name, get in rows:
        v = [get(r) for r in runs]
        v.append(float(np.mean(v)))
        lines.append(f"| {name} | " + " | ".join(f"{x:.3f}" for x in v) + " |")
    picks = "; ".join(f"seed {r['seed']}: {r['recommend']['kind']} "
                      f"{'+'.join(r['recommend']['members'])} / {r['recommend']['combiner']}"
                      for r in runs)  # fmt: skip
    teams = "; ".join(f"seed {r['seed']}: {', '.join(r['team'])}" for r in runs)
    return "\n".join(lines + ["", f"Teams (chosen on val): {teams}. Recommended: {picks}. "
                               f"Test questions per seed: {runs[0]['n_test']}."])  # fmt: skip


def _fmt(x: Any) -> str:
    return "–" if x is None else (x if isinstance(x, str) else f"{x:.3f}")


def table(results: list[dict[str, Any]]) -> str:
    """Markdown table (one column per seed, then the mean) and a line on the budget."""
    from fusers.summary import results_table

    if not results:
        return ""
    headers, rows = results_table(results)
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "---|" * (len(headers) - 1)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    r0 = results[0]
    used = r0["splits"]["used_sizes"]
    steps = ", ".join(str(r["training"]["fuser"]["steps_run"]) for r in results)
    secs = ", ".join(f"{r['seconds']['total']:.0f}" for r in results)
    teams = "; ".join(", ".join(r["team"]) for r in results)
    lines += [
        "",
        f"Budget `{r0['budget']}`: rows used train/val/test = {used['train']}/{used['val']}/"
        f"{used['test']} (of {r0['splits']['full_sizes']}); teams per seed: {teams}; fuser "
        f"settings {json.dumps(r0['settings'])}; fuser steps run {steps}; seconds per seed "
        f"{secs}.",
    ]
    return "\n".join(lines)


def _test_rows(text: str) -> int | str | None:
    """``--test-rows``: a positive integer, ``all`` (every test question) or ``budget``."""
    if text in ("all", "budget"):
        return None if text == "all" else text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}")
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", choices=("cpu", "full"), default="cpu")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--candidates", type=int, default=3)
    p.add_argument(
        "--part",
        choices=("all", "mmlu", "synthetic", "alpaca", "letters"),
        default="all",
        help="the MMLU-Pro protocol, the synthetic check, both (default), AlpacaEval, or "
        "the answer-only combiners on the full MMLU-Pro splits",
    )
    p.add_argument(
        "--judge",
        default=str(OUT / "judges" / "helpfulness.json"),
        help="helpfulness judge file of the AlpacaEval part",
    )
    p.add_argument("--teacher-forced", action="store_true", help="also the faithful evaluation")
    p.add_argument("--no-ablation", action="store_true", help="skip the question-only fuser")
    p.add_argument(
        "--test-rows",
        type=_test_rows,
        default="budget",
        metavar="N|all",
        help="MMLU-Pro test questions scored per seed (default: the budget's; the fuser, its "
        "team and its training rows do not depend on this)",
    )
    args = p.parse_args(argv)
    from fusers.summary import load_jsonl, run_mmlu_pro

    OUT.mkdir(parents=True, exist_ok=True)
    if args.part == "alpaca":
        return alpaca(args)
    if args.part == "letters":
        if not (DATA / TEXTS).is_file():
            print(f"skipped MMLU-Pro: {DATA / TEXTS} not found", file=sys.stderr)
            return 0
        rows = load_jsonl(DATA / TEXTS)
        runs = [letters(rows, s, args.candidates) for s in args.seeds]
        write_json_atomic(OUT / f"summary_letters_k{args.candidates}.json", {"runs": runs})
        print(letters_table(runs))
        return 0
    if args.part in ("all", "synthetic"):
        syn = [synthetic(s) for s in args.seeds]
        write_json_atomic(OUT / "summary_synthetic.json", {"settings": SYNTHETIC, "runs": syn})
        print("| seed | fuser | plurality | steps | seconds |\n|---|---|---|---|---|")
        for r in syn:
            print(f"| {r['seed']} | {r['fuser']:.3f} | {r['plurality']:.3f} | {r['steps']} | "
                  f"{r['seconds']:.0f} |")  # fmt: skip
    if args.part == "synthetic":
        return 0
    path = DATA / TEXTS
    if not path.is_file():
        print(f"skipped MMLU-Pro: {path} not found", file=sys.stderr)
        return 0
    rows = load_jsonl(path)
    results = []
    for seed in args.seeds:
        tag = "" if args.test_rows == "budget" else f"_test{args.test_rows or 'all'}"
        out = OUT / f"summary_{args.budget}_k{args.candidates}{tag}_seed{seed}.json"
        if _done(out, results):
            continue

        def progress(info, seed=seed):
            if "val_score" in info:
                print(f"seed {seed} {info['run']}: step {info['step']}/{info['steps']} loss "
                      f"{info['loss']:.3f} val {info['val_score']:.3f}", file=sys.stderr,
                      flush=True)  # fmt: skip

        r = run_mmlu_pro(
            rows, seed=seed, n_candidates=args.candidates, budget=args.budget,
            teacher_forced=args.teacher_forced, callback=progress,
            question_only=not args.no_ablation, test_limit=args.test_rows,
            checkpoint_dir=OUT / f"summary_ck_{args.budget}_k{args.candidates}",
        )  # fmt: skip
        write_json_atomic(out, r)
        results.append(r)
        print(f"seed {seed} done: fuser {r['accuracy']:.3f}", file=sys.stderr, flush=True)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
