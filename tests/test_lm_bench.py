"""bench.lm_small and bench.lm_speed: clean skip without data, and a tiny end-to-end run."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _synthetic_texts(path: Path, n: int = 60) -> Path:
    """A made-up file in the layout of mmlu_pro_texts.jsonl.gz (arithmetic questions)."""
    rng = np.random.default_rng(0)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for qid in range(n):
            a, b = (int(v) for v in rng.integers(1, 50, size=2))
            options = [str(a + b + d) for d in (-1, 0, 1, 2)]
            candidates = [
                {
                    "model": f"m{j}",
                    "pred_index": 1,
                    "text": f"Let's think step by step. {a} plus {b} is {a + b}. "
                    "The answer is (B).",
                }
                for j in range(6)
            ]
            record = {
                "question_id": qid,
                "category": "math",
                "question": f"What is {a} plus {b}?",
                "options": options,
                "answer_index": 1,
                "candidates": candidates,
            }
            f.write(json.dumps(record) + "\n")
    return path


def test_lm_small_skips_cleanly_without_data(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bench.lm_small", "--data", str(tmp_path / "absent.jsonl.gz"),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert out.returncode == 0
    assert "skipping" in out.stdout and "absent" in out.stdout
    assert not (tmp_path / "out").exists()


def test_lm_small_tiny_end_to_end(tmp_path):
    from bench import lm_small
    from fusers import lm

    data = _synthetic_texts(tmp_path / "texts.jsonl.gz")
    out = tmp_path / "out"
    argv = ["--data", str(data), "--tiny", "--max-steps", "3", "--skip-speed", "--out", str(out)]
    assert lm_small.main(argv) == 0
    doc = json.loads((out / "lm_small.json").read_text())
    assert doc["training"]["steps"] == 3
    assert len(doc["history"]["train"]) == 3 and len(doc["history"]["val"]) >= 2
    assert doc["data"]["sha256"] and doc["seed"] == 0
    assert len(doc["samples"]) == 3
    assert doc["speed"]["batch8"] is None  # measured by test_lm_speed_tiny
    assert (out / "lm_small.png").stat().st_size > 0
    model, tok = lm.from_pretrained(out / "lm_small_model")
    assert model.config.num_parameters() == doc["model"]["parameters"]
    assert tok.decode(tok("What is 2 plus 3?")["input_ids"]) == "What is 2 plus 3?"


def test_lm_speed_tiny(tmp_path):
    from bench import lm_speed

    target = tmp_path / "speed.json"
    args = ["--preset", "tiny", "--batch", "2", "--prompt", "8", "--new", "3", "--repeats", "1"]
    assert lm_speed.main([*args, "--out", str(target), "--peak-tflops", "1"]) == 0
    doc = json.loads(target.read_text())
    result = doc["result"]
    assert result["prefill_tokens_per_s"] > 0 and result["decode_tokens_per_s"] > 0
    assert 0 < result["prefill_mfu"] < 1
