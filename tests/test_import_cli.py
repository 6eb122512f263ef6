"""``focal import``: each source through ``focal_cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ensembles
from focal_cli import main


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _lm_eval_run(root: Path, model: str, logliks: list[list[float]], targets: list[int]) -> Path:
    folder = root / model
    folder.mkdir(parents=True)
    rows = [
        {
            "doc_id": d,
            "doc": {"q": d},
            "target": t,
            "arguments": [["ctx", f" c{i}"] for i in range(len(ll))],
            "resps": [[[str(v), "False"]] for v in ll],
            "filtered_resps": [[str(v), "False"] for v in ll],
            "acc": float(int(np.argmax(ll)) == t),
        }
        for d, (ll, t) in enumerate(zip(logliks, targets, strict=True))
    ]
    path = folder / "samples_boolq_2024-05-01T00-00-00.0.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_import_lm_eval_json(capsys, tmp_path) -> None:
    a = _lm_eval_run(tmp_path, "llama", [[-1, -2], [-3, -0.5], [-1, -1.5]], [0, 1, 1])
    b = _lm_eval_run(tmp_path, "qwen", [[-2, -1], [-3, -0.5], [-0.1, -4]], [0, 1, 1])
    out_path = tmp_path / "boolq.npz"
    code, out, err = _run(
        capsys, ["import", "lm-eval", str(a), str(b), "--out", str(out_path), "--format", "json"]
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "labelled" and doc["task"] == "boolq"
    assert doc["models"] == ["llama", "qwen"] and doc["n_samples"] == 3
    assert doc["accuracy"] == {"llama": pytest.approx(2 / 3), "qwen": pytest.approx(1 / 3)}
    bundle = ensembles.load_bundle(out_path)
    assert bundle.preds.tolist() == [[0, 1, 0], [1, 1, 0]]
    assert bundle.sample_ids.tolist() == [0, 1, 2]


def test_import_lm_eval_named_runs_text(capsys, tmp_path) -> None:
    a = _lm_eval_run(tmp_path, "x", [[-1, -2]], [0])
    b = _lm_eval_run(tmp_path, "y", [[-2, -1]], [0])
    out_path = tmp_path / "o.npz"
    code, out, err = _run(capsys, ["import", "lm-eval", f"A={a}", f"B={b}", "--out", str(out_path)])
    assert code == 0, err
    assert "wrote" in out and "models=2" in out
    assert ensembles.load_bundle(out_path).models == ("A", "B")


def test_import_alpaca_eval(capsys, tmp_path) -> None:
    runs = []
    for model, prefs in (("m1", [2, 1, 1.5]), ("m2", [1, 2, None])):
        folder = tmp_path / model / "alpaca_eval_gpt4"
        folder.mkdir(parents=True)
        ann = [
            {
                "instruction": f"i{k}",
                "output_1": "ref",
                "output_2": "x",
                "generator_2": model,
                "preference": p,
            }  # fmt: skip
            for k, p in enumerate(prefs)
        ]
        (folder / "annotations.json").write_text(json.dumps(ann))
        runs.append(str(tmp_path / model))
    out_path = tmp_path / "a.npz"
    code, out, err = _run(
        capsys,
        [
            "import",
            "alpaca-eval",
            *runs,
            "--threshold",
            "0.5",
            "--out",
            str(out_path),
            "--format",
            "json",
        ],  # fmt: skip
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "open-ended" and doc["not_judged"] == 1 and doc["threshold"] == 0.5
    b = ensembles.load_bundle(out_path)
    assert np.array_equal(b.quality, [[1, 0, 0.5], [0, 1, np.nan]], equal_nan=True)


def test_import_table_and_jsonl(capsys, tmp_path) -> None:
    csv = tmp_path / "scores.csv"
    csv.write_text("id,gold,a,b\nq1,1,1,0\nq2,0,0,0\n")
    out_path = tmp_path / "t.npz"
    code, out, err = _run(
        capsys, ["import", "table", str(csv), "--label-column", "gold", "--out", str(out_path)]
    )
    assert code == 0, err
    b = ensembles.load_bundle(out_path)
    assert b.labels.tolist() == [1, 0] and b.preds.tolist() == [[1, 0], [0, 0]]
    jl = tmp_path / "s.jsonl"
    jl.write_text(
        json.dumps({"label": 1, "answers": {"a": 1, "b": 0}})
        + "\n"
        + json.dumps({"label": 0, "answers": {"a": 0, "b": 0}})
        + "\n"
    )
    code, out, err = _run(capsys, ["import", "jsonl", str(jl), "--out", str(tmp_path / "j.npz")])
    assert code == 0, err
    assert ensembles.load_bundle(tmp_path / "j.npz").accuracies().tolist() == [1.0, 0.5]


@pytest.mark.parametrize(
    "argv_tail",
    [
        ["table", "{bad}", "--out", "{out}"],
        ["lm-eval", "{missing}", "{missing}", "--out", "{out}"],
        ["alpaca-eval", "A={missing}", "{missing}", "--out", "{out}"],
        ["table", "{bad}", "--out", "{dir}"],
    ],
    ids=["bad-cell", "missing-run", "half-named", "out-is-dir"],
)
def test_import_bad_input_one_line(capsys, tmp_path, argv_tail) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("id,a,b\nq1,1,maybe\n")
    subs = {"{bad}": str(bad), "{out}": str(tmp_path / "o.npz"),
            "{missing}": str(tmp_path / "nope"), "{dir}": str(tmp_path)}  # fmt: skip
    argv = ["import"] + [
        subs.get(a, a.replace("{missing}", str(tmp_path / "nope"))) for a in argv_tail
    ]
    code, out, err = _run(capsys, argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert not (tmp_path / "o.npz").exists()


def test_import_help_has_examples(capsys) -> None:
    for source in ("lm-eval", "alpaca-eval", "table", "jsonl"):
        with pytest.raises(SystemExit) as ei:
            main(["import", source, "--help"])
        assert ei.value.code == 0
        out, _ = capsys.readouterr()
        assert "examples:" in out and f"focal import {source}" in out
