"""How the default objective of ``focal recommend`` was chosen, from the shared bundles only.

For each candidate objective, the rank-1 team is chosen on the selection split (exhaustively,
sizes 2..5) and its plurality accuracy is reported on the report split, next to the best single
model chosen on the selection split. BBH: each of the 22 tasks with ``label_ok`` (select on
``train``, report on ``test``: the file's own split). MMLU-Pro: a seeded stratified 60/20/20
split (select on ``val``, report on ``test``), seeds 0-4.

    python -m bench.recommend_defaults

Writes bench/out/recommend_defaults.json and prints a Markdown table.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

import ensembles
import focal
from focal._protocol import protocol_splits

DATA = Path(
    os.environ.get("FOCAL_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)
OUT = Path(__file__).resolve().parent / "out"

ALPHAS = (0.05, 0.2)

#: (label, w_div, w_acc, size_penalty)
CANDIDATES = [
    ("focal only", 1.0, 0.0, 0.0),
    ("0.6*focal + 0.4*acc (FusionShot script)", 0.6, 0.4, 0.0),
    ("0.5*focal + 0.5*acc - 0.1*size/M (FusionShot run)", 0.5, 0.5, 0.1),
    ("0.5*focal + 0.5*acc", 0.5, 0.5, 0.0),
    ("0.3*focal + 0.7*acc", 0.3, 0.7, 0.0),
    ("0.2*focal + 0.8*acc", 0.2, 0.8, 0.0),
    ("0.1*focal + 0.9*acc", 0.1, 0.9, 0.0),
    ("0.05*focal + 0.95*acc", 0.05, 0.95, 0.0),
    ("accuracy only", 0.0, 1.0, 0.0),
]


def evaluate(select, report, sizes):
    """Test accuracy of each candidate's rank-1 team, and of the best single model."""
    masks, scores = focal.score_all(select, sizes=sizes)
    acc_sel = ensembles.team_accuracy(select, masks)
    acc_rep = ensembles.team_accuracy(report, masks)
    out = {}
    single = int(np.argmax(select.accuracies()))
    single_right = select.errors[single] == 0
    for label, w_div, w_acc, pen in CANDIDATES:
        obj = focal.Objective(w_div=w_div, w_acc=w_acc, size_penalty=pen)
        fit = obj.fitness(scores, acc_sel, masks.sum(axis=1), select.n_models)
        best = int(np.argmax(np.round(fit, 10)))  # first maximum = canonical order
        out[label] = {"report_accuracy": float(acc_rep[best]), "size": int(masks[best].sum())}
        team_right = ensembles.combine(select, masks[best]) == select.labels
        p = focal.paired_improvement_pvalue(team_right, single_right)
        for alpha in ALPHAS:
            keep = p <= alpha
            out[f"{label}, guard p<={alpha}"] = {
                "report_accuracy": float(acc_rep[best] if keep else report.accuracies()[single]),
                "size": int(masks[best].sum()) if keep else 1,
            }
    out["best single (on selection split)"] = {
        "report_accuracy": float(report.accuracies()[single]),
        "size": 1,
    }
    return out


def main() -> int:
    """Run the comparison and print the table."""
    bbh_path, mmlu_path = DATA / "bbh_5llm_marl_focal.npz", DATA / "mmlu_pro_29llm.npz"
    if not bbh_path.is_file() or not mmlu_path.is_file():
        print(f"skipped: shared data files not found under {DATA}", file=sys.stderr)
        return 0
    rows: dict[str, dict[str, list[float]]] = {}
    for task, bundle in ensembles.load_tasks(bbh_path).items():
        with np.load(bbh_path) as z:
            if not bool(z[f"{task}/label_ok"]):
                continue
        sel, rep, _ = protocol_splits(bundle, select_on="train", report_on="test")
        for label, r in evaluate(sel, rep, (2, 5)).items():
            rows.setdefault(label, {}).setdefault("bbh", []).append(r["report_accuracy"])
    mmlu = ensembles.load_bundle(mmlu_path)
    for seed in range(5):
        sel, rep, _ = protocol_splits(mmlu, select_on="val", report_on="test", seed=seed)
        print(f"MMLU-Pro seed {seed} ...", file=sys.stderr)
        for label, r in evaluate(sel, rep, (2, 5)).items():
            rows.setdefault(label, {}).setdefault("mmlu", []).append(r["report_accuracy"])
            rows[label].setdefault("mmlu_size", []).append(r["size"])
    OUT.mkdir(exist_ok=True)
    tmp = OUT / "recommend_defaults.json.tmp"
    tmp.write_text(json.dumps(rows, indent=2))
    os.replace(tmp, OUT / "recommend_defaults.json")
    base = rows["best single (on selection split)"]
    print(
        "| rank-1 team chosen by | BBH mean test acc (22 tasks) | Δ vs best single | "
        "MMLU-Pro mean test acc (5 seeds) | Δ vs best single | MMLU team sizes |"
    )
    print("|---|---|---|---|---|---|")
    for label, r in rows.items():
        bbh, mmlu_acc = np.mean(r["bbh"]), np.mean(r["mmlu"])
        print(
            f"| {label} | {bbh:.4f} | {bbh - np.mean(base['bbh']):+.4f} | {mmlu_acc:.4f} | "
            f"{mmlu_acc - np.mean(base['mmlu']):+.4f} | {r.get('mmlu_size', ['1'])} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
