"""``focal summary``: bad input gives one line and exit 2; train → predict on a tiny model."""

from __future__ import annotations

import json

import pytest

import focal_cli


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _examples(n, *, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        y = "ABCD"[int(rng.integers(0, 4))]
        rows.append({"question": "Which?", "candidates": [f"The answer is ({y}).", "no idea"],
                     "target": f"The answer is ({y})."})  # fmt: skip
    return rows


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["summary", "train", "--train", "missing.jsonl", "--val", "v.jsonl", "--out", "o"],
         "missing.jsonl"),
        (["summary", "evaluate", "--data", "nowhere.jsonl.gz"], "--data"),
        (["summary", "evaluate", "--data", "x", "--model", "nomodel"], "--model"),
        (["summary", "evaluate", "--steps", "0"], "--steps"),
        (["summary", "predict", "nofuser", "--examples", "e.jsonl", "--out", "o.jsonl"],
         "nofuser"),
        (["summary", "train", "--train", "a"], "required"),
        (["summary", "evaluate", "--budget", "huge"], "budget"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = focal_cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert needle in lines[0]
    assert "Traceback" not in err


def test_bad_example_rows_are_one_line(capsys, tmp_path):
    bad = _write(tmp_path / "bad.jsonl", [{"question": "q", "candidates": "not a list"}])
    code = focal_cli.main(["summary", "train", "--train", bad, "--val", bad, "--out",
                           str(tmp_path / "o"), "--model", "tiny"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "candidates" in err


def test_train_then_predict_tiny(capsys, tmp_path):
    train = _write(tmp_path / "train.jsonl", _examples(16))
    val = _write(tmp_path / "val.jsonl", _examples(4, seed=1))
    out = tmp_path / "fuser"
    code = focal_cli.main([
        "summary", "train", "--train", train, "--val", val, "--out", str(out), "--model", "tiny",
        "--parser", "choice", "--context", "64", "--question-tokens", "8", "--target-tokens",
        "20", "--steps", "4", "--eval-every", "2", "--batch-size", "4", "--format", "json",
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out)
    assert doc["steps_run"] == 4 and len(doc["history"]) == 2
    assert doc["settings"]["finetune_used"] == "full"
    assert (out / "summary_fuser.json").is_file()
    # same command again: resumes from the checkpoints, nothing left to run
    code = focal_cli.main([
        "summary", "train", "--train", train, "--val", val, "--out", str(out), "--model", "tiny",
        "--parser", "choice", "--context", "64", "--question-tokens", "8", "--target-tokens",
        "20", "--steps", "4", "--eval-every", "2", "--batch-size", "4", "--format", "json",
    ])  # fmt: skip
    again = json.loads(capsys.readouterr().out)
    assert again["history"] == doc["history"]
    pred = tmp_path / "pred.jsonl"
    code = focal_cli.main(["summary", "predict", str(out), "--examples", val, "--out", str(pred),
                           "--format", "json"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out)
    rows = [json.loads(x) for x in pred.read_text().splitlines()]
    assert len(rows) == 4 and doc["rows"] == 4 and 0.0 <= doc["accuracy"] <= 1.0
    assert all(isinstance(r["parsed"], int) for r in rows)


def test_help_has_examples(capsys):
    for action in ("train", "predict", "evaluate"):
        with pytest.raises(SystemExit) as exc:
            focal_cli.main(["summary", action, "--help"])
        assert exc.value.code == 0
        assert "examples:" in capsys.readouterr().out
