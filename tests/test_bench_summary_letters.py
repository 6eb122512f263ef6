"""bench.summary --part letters: the answer-only combiners, checked against plain NumPy."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest


def test_letters_baselines_match_a_plain_recount(shared_data):
    from bench import summary
    from fusers.summary import load_jsonl, question_split

    path = shared_data("mmlu_pro_texts.jsonl.gz")
    run = summary.letters(load_jsonl(path), 3, 3)

    with gzip.open(path, "rt") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    split = question_split(len(rows), seed=3)
    preds = np.array([[c["pred_index"] for c in r["candidates"]] for r in rows])
    labels = np.array([r["answer_index"] for r in rows])
    models = [c["model"] for c in rows[0]["candidates"]]
    right = preds == labels[:, None]
    val, test = split == "val", split == "test"
    best = int(np.argmax(right[val].mean(axis=0)))  # first maximum, as argmax
    assert run["best_single"]["name"] == models[best]
    assert run["best_single"]["accuracy"] == pytest.approx(right[test, best].mean())
    assert run["oracle_all"] == pytest.approx(right[test].any(axis=1).mean())
    assert run["n_test"] == int(test.sum())
    assert len(run["team"]) == 3 and set(run["team"]) <= set(models)
    for key in ("stacking_all", "stacking_team"):
        assert 0.0 <= run[key] <= run["oracle_all"]
    assert run["recommend"]["accuracy"] <= run["oracle_all"] + 1e-12

    table = summary.letters_table([run, run])
    lines = table.splitlines()
    assert lines[0] == "| method | seed 3 | seed 3 | mean |"
    stack = next(line for line in lines if line.startswith("| logistic stacking of the six"))
    assert stack.endswith(f"| {run['stacking_all']:.3f} |")
