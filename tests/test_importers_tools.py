"""Importers from evaluation tools: lm-evaluation-harness, AlpacaEval, score tables.

Every test writes a file in the tool's documented format, then imports it.
"""

from __future__ import annotations

import gzip
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ensembles
from ensembles import BundleError, from_alpaca_eval, from_lm_eval, from_table


def _one_line(excinfo, *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------ lm-eval, multiple choice
CHOICES = ["red", "green", "blue", "yellow"]


def _mc_logliks(rng: np.random.Generator, n_docs: int) -> list[np.ndarray]:
    # doc 2 has 3 choices, the others 4
    return [-rng.gamma(2.0, 2.0, 3 if d == 2 else 4) for d in range(n_docs)]


def _mc_rows(logliks, targets, *, target_as_text=False, new_style=False) -> list[dict]:
    rows = []
    for d, (ll, t) in enumerate(zip(logliks, targets, strict=True)):
        n = len(ll)
        texts = [" " + c for c in CHOICES[:n]]
        if new_style:  # recent lm-eval: arguments as a dict, a filter field, a metrics list
            arguments = {f"gen_args_{i}": {"arg_0": "Q?", "arg_1": texts[i]} for i in range(n)}
        else:
            arguments = [["Q?", texts[i]] for i in range(n)]
        pred = int(np.argmax(ll))
        norm = int(np.argmax(ll / np.array([len(x.encode()) for x in texts])))
        row = {
            "doc_id": d,
            "doc": {"question": f"q{d}", "choices": CHOICES[:n]},
            "target": texts[t].strip() if target_as_text else str(t),
            "arguments": arguments,
            "resps": [[[str(v), "False"]] for v in ll],
            "filtered_resps": [[str(v), "False"] for v in ll],
            "acc": float(pred == t),
            "acc_norm": float(norm == t),
        }
        if new_style:
            row.update(filter="none", metrics=["acc", "acc_norm"])
        rows.append(row)
    return rows


@pytest.fixture
def mc_runs(tmp_path):
    rng = np.random.default_rng(0)
    n_docs = 6
    targets = rng.integers(0, 3, n_docs).tolist()
    runs, raw = {}, {}
    for k, model in enumerate(["llama", "qwen", "phi"]):
        ll = _mc_logliks(rng, n_docs)
        raw[model] = ll
        rows = _mc_rows(ll, targets, target_as_text=(k == 1), new_style=(k == 2))
        folder = tmp_path / "out" / model
        # an older run of the same task (ignored: the newest is read) and another task
        _write_jsonl(folder / "samples_arc_easy_2024-01-01T00-00-00.000001.jsonl", rows[::-1][:2])
        _write_jsonl(folder / "samples_arc_easy_2024-05-01T12-30-45.123456.jsonl", rows[::-1])
        _write_jsonl(folder / "samples_piqa_2024-05-01T12-30-45.123456.jsonl", rows[:1])
        runs[model] = folder
    return runs, raw, targets


def test_lm_eval_multiple_choice(mc_runs) -> None:
    runs, raw, targets = mc_runs
    b = from_lm_eval(list(runs.values()), task="arc_easy")
    assert b.models == ("llama", "qwen", "phi") and b.task == "arc_easy"
    assert b.sample_ids.tolist() == list(range(6)) and b.labels.tolist() == targets
    assert b.probs.shape == (3, 6, 4)
    for m, model in enumerate(runs):
        for d, ll in enumerate(raw[model]):
            z = [math.exp(v) for v in ll]  # softmax written element by element
            want = [v / sum(z) for v in z] + [0.0] * (4 - len(ll))
            assert np.allclose(b.probs[m, d], want, rtol=1e-12, atol=0)
            assert b.preds[m, d] == int(np.argmax(ll))
    # the error matrix agrees with lm-eval's own per-sample acc
    for m, model in enumerate(runs):
        rows = _mc_rows(raw[model], targets)
        assert b.errors[m].tolist() == [int(1 - r["acc"]) for r in rows]
    norm = from_lm_eval(runs, task="arc_easy", normalize=True)
    for m, model in enumerate(runs):
        rows = _mc_rows(raw[model], targets)
        assert norm.errors[m].tolist() == [int(1 - r["acc_norm"]) for r in rows]


def test_lm_eval_needs_task_when_several(mc_runs) -> None:
    runs, _, _ = mc_runs
    with pytest.raises(BundleError) as ei:
        from_lm_eval(runs)
    _one_line(ei, "several tasks", "arc_easy", "piqa")
    with pytest.raises(BundleError) as ei:
        from_lm_eval(runs, task="hellaswag")
    _one_line(ei, "hellaswag")


def test_lm_eval_documents_must_match(mc_runs, tmp_path) -> None:
    runs, raw, targets = mc_runs
    short = _write_jsonl(
        tmp_path / "short" / "samples_arc_easy_2024-06-01T00-00-00.0.jsonl",
        _mc_rows(raw["llama"], targets)[:4],
    )
    both = {"llama": runs["llama"] / "samples_arc_easy_2024-05-01T12-30-45.123456.jsonl"}
    both["short"] = short
    with pytest.raises(BundleError) as ei:
        from_lm_eval(both)
    _one_line(ei, "doc_id", "common_only")
    b = from_lm_eval(both, common_only=True)
    assert b.sample_ids.tolist() == [0, 1, 2, 3]


def test_lm_eval_generation_quality(tmp_path) -> None:
    answers = {"a": ["4", "9", "x", "7"], "b": ["4", "8", "6", "y"]}
    gold = ["4", "8", "6", "7"]
    runs = {}
    for model, outs in answers.items():
        rows = []
        for flt in ("strict-match", "flexible-extract"):
            for d, (o, g) in enumerate(zip(outs, gold, strict=True)):
                em = float(o == g) if flt == "strict-match" else 1.0
                rows.append(
                    {
                        "doc_id": d,
                        "doc": {"question": f"q{d}", "answer": g},
                        "target": g,
                        "arguments": [[f"q{d}", {"until": ["\n"]}]],
                        "resps": [[f"The answer is {o}"]],
                        "filtered_resps": [o],
                        "filter": flt,
                        "metrics": ["exact_match"],
                        "exact_match": em,
                    }
                )
        runs[model] = _write_jsonl(
            tmp_path / model / "samples_gsm8k_2024-05-01T00-00-00.0.jsonl", rows
        )
    with pytest.raises(BundleError) as ei:
        from_lm_eval(runs)
    _one_line(ei, "filter", "strict-match", "flexible-extract")
    b = from_lm_eval(runs, filter="strict-match")
    assert b.is_open_ended and b.task == "gsm8k"
    want = [[float(o == g) for o, g in zip(outs, gold, strict=True)] for outs in answers.values()]
    assert b.quality.tolist() == want
    assert b.errors.tolist() == [[0, 1, 1, 0], [0, 0, 0, 1]]
    with pytest.raises(BundleError) as ei:
        from_lm_eval(runs, filter="strict-match", metric="bleu")
    _one_line(ei, "bleu", "missing", "line 1")


BAD_LM_EVAL = {
    "bad json": ("{not json", "line 1", "bad JSON"),
    "doc_id": ({"target": "0", "filtered_resps": [["-1", "False"]]}, "line 1", "doc_id"),
    "no responses": ({"doc_id": 0, "target": "0"}, "line 1", "filtered_resps"),
    "loglik text": (
        {"doc_id": 0, "target": "0", "filtered_resps": [["abc", "False"], ["-1", "False"]]},
        "filtered_resps[0]",
        "not a number",
    ),
    "positive loglik": (
        {"doc_id": 0, "target": "0", "filtered_resps": [["2.5", "False"], ["-1", "False"]]},
        "filtered_resps[0]",
        "<= 0",
    ),
    "target range": (
        {"doc_id": 0, "target": "5", "filtered_resps": [["-2", "False"], ["-1", "False"]]},
        "target",
        "out of range",
    ),
    "target text": (
        {"doc_id": 0, "target": "mauve", "filtered_resps": [["-2", "False"], ["-1", "False"]]},
        "target",
        "not a choice",
    ),
    "metric out of range": (
        {"doc_id": 0, "target": "x", "filtered_resps": ["x"], "exact_match": 3},
        "exact_match",
        "[0, 1]",
    ),
}


@pytest.mark.parametrize("case", list(BAD_LM_EVAL))
def test_lm_eval_bad_files_one_line(tmp_path, case) -> None:
    row, field, text = BAD_LM_EVAL[case]
    good = {"doc_id": 0, "target": "0", "filtered_resps": [["-1", "False"], ["-2", "False"]]}
    bad = tmp_path / "bad" / "samples_t_2024-01-01T00-00-00.0.jsonl"
    bad.parent.mkdir()
    bad.write_text(row + "\n" if isinstance(row, str) else json.dumps(row) + "\n")
    if case == "metric out of range":
        good = {"doc_id": 0, "target": "x", "filtered_resps": ["x"], "exact_match": 1}
    ok = _write_jsonl(tmp_path / "ok" / "samples_t_2024-01-01T00-00-00.0.jsonl", [good])
    with pytest.raises(BundleError) as ei:
        from_lm_eval({"ok": ok, "bad": bad})
    msg = _one_line(ei, str(bad), field, text)
    assert msg.startswith(str(bad))


# ------------------------------------------------------------------------ AlpacaEval
INSTRUCTIONS = ["Write a poem.", "Explain gravity.", "List three fruits.", "Say hi."]


def _alpaca_run(root: Path, model: str, prefs: list, *, datasets=True) -> Path:
    folder = root / model
    (folder / "weighted_alpaca_eval_gpt4_turbo").mkdir(parents=True)
    outputs = [
        {"instruction": ins, "output": f"{model} says {i}", "generator": model}
        | ({"dataset": ["vicuna", "koala", "oasst", "vicuna"][i]} if datasets else {})
        for i, ins in enumerate(INSTRUCTIONS)
    ]
    (folder / "model_outputs.json").write_text(json.dumps(outputs))
    annotations = [
        {
            "instruction": ins,
            "output_1": f"reference {i}",
            "generator_1": "text_davinci_003",
            "output_2": f"{model} says {i}",
            "generator_2": model,
            "annotator": "alpaca_eval_gpt4",
            "preference": p,
        }
        for i, (ins, p) in enumerate(zip(INSTRUCTIONS, prefs, strict=True))
        if p != "skip"
    ]
    (folder / "weighted_alpaca_eval_gpt4_turbo" / "annotations.json").write_text(
        json.dumps(annotations[::-1])  # annotation order differs from the outputs' order
    )
    return folder


def test_alpaca_eval_quality(tmp_path) -> None:
    a = _alpaca_run(tmp_path, "gpt4", [2, 1, 1.5, 2])
    b = _alpaca_run(tmp_path, "alpaca-7b", [1, 0, None, "skip"])
    c = _alpaca_run(tmp_path, "guanaco", [1.75, 2, 1, 1.25])
    bundle = from_alpaca_eval([a, b, c])
    assert bundle.models == ("gpt4", "alpaca-7b", "guanaco")
    nan = float("nan")
    want = [[1.0, 0.0, 0.5, 1.0], [0.0, 0.5, nan, nan], [0.75, 1.0, 0.0, 0.25]]
    assert np.array_equal(bundle.quality, np.array(want), equal_nan=True)
    assert bundle.threshold == 1.0  # wins only
    assert bundle.errors.tolist() == [[0, 1, 1, 0], [1, 1, 1, 1], [1, 0, 1, 1]]
    assert bundle.groups.tolist() == ["vicuna", "koala", "oasst", "vicuna"]
    assert bundle.oracle_accuracy() == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    draws = from_alpaca_eval({"x": a, "y": b}, threshold=0.5)
    assert draws.errors.tolist() == [[0, 1, 0, 0], [1, 0, 1, 1]]
    with pytest.raises(ensembles.util.InputError) as ei:
        ensembles.combine(bundle, ["gpt4", "guanaco"])
    _one_line(ei, "router")


def test_alpaca_eval_bad_preference(tmp_path) -> None:
    a = _alpaca_run(tmp_path, "gpt4", [2, 1, 1.5, 2])
    b = _alpaca_run(tmp_path, "bad", [1, 3, 1, 1])
    with pytest.raises(BundleError) as ei:
        from_alpaca_eval([a, b])
    _one_line(ei, "annotations.json", "item", "preference", "3")
    (b / "weighted_alpaca_eval_gpt4_turbo" / "annotations.json").write_text("[{]")
    with pytest.raises(BundleError) as ei:
        from_alpaca_eval([a, b])
    _one_line(ei, "annotations.json", "bad JSON")


def test_alpaca_eval_judged_shared_data(shared_data) -> None:
    judged = shared_data("alignment/alpaca_eval1_gpt4_judged.jsonl.gz")
    wins = shared_data("alignment/alpaca_eval1_wins.npz")
    b = ensembles.from_alpaca_eval_judged(judged)
    with np.load(wins) as z:
        names, win = z["models"].astype(str).tolist(), z["win"].astype(np.float64)
    assert sorted(b.models) == sorted(names)
    order = [names.index(m) for m in b.models]
    ids = np.asarray(b.sample_ids, dtype=np.int64)
    assert np.array_equal(b.quality, win[order][:, ids], equal_nan=True)
    assert int(np.isnan(b.quality).sum()) == int(np.isnan(win).sum())
    # per-model win rate (ties 0.5, missing skipped) in [0, 1]; the correctness is wins only
    assert np.allclose(b.accuracies(), (b.quality >= 1).sum(axis=1) / b.n_samples)


# ------------------------------------------------------------------------ tables
def test_wide_csv_quality_and_labels(tmp_path) -> None:
    p = tmp_path / "wide.csv"
    p.write_text("id,gpt,llama,mistral\nq1,1,0,0.25\nq2,0,,1\nq3,0.5,1,NaN\n")
    b = from_table(p, sample_column="id", threshold=0.5)
    assert b.models == ("gpt", "llama", "mistral") and b.sample_ids.tolist() == ["q1", "q2", "q3"]
    nan = float("nan")
    assert np.array_equal(b.quality, [[1, 0, 0.5], [0, nan, 1], [0.25, 1, nan]], equal_nan=True)
    p2 = tmp_path / "preds.csv"
    p2.write_text("id,truth,gpt,llama\nq1,2,2,1\nq2,0,0,\nq3,1,-1,1\n")
    c = from_table(p2, sample_column="id", label_column="truth")
    assert c.has_labels and c.labels.tolist() == [2, 0, 1]
    assert c.preds.tolist() == [[2, 0, -1], [1, -1, 1]]
    assert c.accuracies().tolist() == pytest.approx([2 / 3, 1 / 3])


def test_long_csv_and_jsonl(tmp_path) -> None:
    rows = [("m1", "s1", 1), ("m2", "s1", 0), ("m1", "s2", 0.5), ("m2", "s3", 1), ("m1", "s3", 0)]
    p = tmp_path / "long.csv"
    p.write_text("model,sample,score\n" + "".join(f"{m},{s},{v}\n" for m, s, v in rows))
    b = from_table(p)
    assert b.models == ("m1", "m2") and b.sample_ids.tolist() == ["s1", "s2", "s3"]
    assert np.array_equal(b.quality, [[1, 0.5, 0], [0, np.nan, 1]], equal_nan=True)
    j = tmp_path / "long.jsonl.gz"
    with gzip.open(j, "wt") as fh:
        for m, s, v in rows:
            fh.write(json.dumps({"model": m, "idx": int(s[1]), "win": v}) + "\n")
    c = ensembles.from_alpaca_eval_judged(j, threshold=0.5)
    assert c.sample_ids.tolist() == [1, 2, 3]
    assert np.array_equal(c.quality, b.quality, equal_nan=True)


def test_parquet_wide(tmp_path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    q = rng.random((3, 20))
    table = pa.table({"sample": np.arange(20)} | {f"m{i}": q[i] for i in range(3)})
    p = tmp_path / "scores.parquet"
    pq.write_table(table, p)
    b = from_table(p, sample_column="sample")
    assert b.models == ("m0", "m1", "m2") and np.array_equal(b.quality, q)
    assert b.sample_ids.tolist() == list(range(20))


def test_parquet_without_pyarrow(tmp_path, monkeypatch) -> None:
    p = tmp_path / "x.parquet"
    p.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(BundleError) as ei:
        from_table(p)
    _one_line(ei, str(p), "pyarrow")


BAD_TABLES = {
    "not a number": ("id,a,b\nq1,1,zero\n", {}, ["line 2", "b", "not a number"]),
    "out of range": ("id,a,b\nq1,1,1.5\n", {}, ["line 2", "b", "outside [0, 1]"]),
    "ragged": ("id,a,b\nq1,1\n", {}, ["line 2", "fields"]),
    "duplicate id": ("id,a,b\nq1,1,0\nq1,0,1\n", {"sample_column": "id"}, ["line 3", "q1"]),
    "duplicate pair": (
        "model,sample,score\na,s1,1\nb,s1,0\na,s1,0\n",
        {},
        ["line 4", "already has sample"],
    ),
    "bad prediction": (
        "id,y,a,b\nq1,1,0.5,1\n",
        {"label_column": "y"},
        ["line 2", "a", "class index"],
    ),
    "no label column": ("id,a,b\nq1,1,0\n", {"label_column": "truth"}, ["truth", "no such"]),
    "one model": ("id,a\nq1,1\n", {"sample_column": "id"}, ["at least 2 model columns"]),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_bad_tables_one_line(tmp_path, case) -> None:
    text, kwargs, needles = BAD_TABLES[case]
    p = tmp_path / "t.csv"
    p.write_text(text)
    with pytest.raises(BundleError) as ei:
        from_table(p, **kwargs)
    assert _one_line(ei, *needles).startswith(str(p))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.integers(2, 4),
    st.integers(1, 8),
    st.data(),
)
def test_tables_wide_and_long_agree(tmp_path, m, n, data) -> None:
    cell = st.one_of(st.just(float("nan")), st.floats(0, 1), st.sampled_from([0.0, 1.0]))
    q = np.array(data.draw(st.lists(cell, min_size=m * n, max_size=m * n))).reshape(m, n)
    if np.isnan(q).all():
        q[0, 0] = 1.0
    names = [f"m{i}" for i in range(m)]
    wide = tmp_path / f"w{m}_{n}.csv"
    lines = ["sample," + ",".join(names)]
    lines += [f"s{j}," + ",".join("" if np.isnan(v) else repr(float(v)) for v in q[:, j])
              for j in range(n)]  # fmt: skip
    wide.write_text("\n".join(lines) + "\n")
    long = tmp_path / f"l{m}_{n}.jsonl"
    rows = [{"model": names[i], "sample": f"s{j}", "score": None if np.isnan(q[i, j]) else q[i, j]}
            for j in range(n) for i in range(m)]  # fmt: skip
    long.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a, b = from_table(wide), from_table(long)
    assert a.models == b.models == tuple(names)
    assert a.sample_ids.tolist() == b.sample_ids.tolist() == [f"s{j}" for j in range(n)]
    assert np.array_equal(a.quality, q, equal_nan=True)
    assert np.array_equal(b.quality, q, equal_nan=True)


def test_lm_eval_resps_only_and_list_target(tmp_path) -> None:
    runs = {}
    for model, lls in (("a", [[-1.0, -2.0], [-3.0, -1.0]]), ("b", [[-2.0, -1.0], [-1.0, -2.0]])):
        rows = [
            {"doc_id": d, "target": [1], "resps": [[[v, False]] for v in ll]}
            for d, ll in enumerate(lls)
        ]
        runs[model] = _write_jsonl(tmp_path / f"{model}.jsonl", rows)  # renamed files
    b = from_lm_eval(runs)
    assert b.labels.tolist() == [1, 1] and b.preds.tolist() == [[0, 1], [1, 0]]
    assert b.task is None
