"""``focal h3``: the whole pipeline on a tiny random decoder and synthetic data files."""

from __future__ import annotations

import dataclasses
import gzip
import json

import numpy as np
import pytest
from flax import nnx

import focal_cli
from fusers import h3, judges, lm


def _write(path, rows):
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("h3")
    data = root / "data"
    data.mkdir()
    words = "apple pie water safe no help true false sky blue cat dog".split()
    rng = np.random.default_rng(0)

    def sent(n):
        return " ".join(rng.choice(words, n))

    _write(data / "helpfulness_train_500.jsonl.gz",
           [{"idx": str(i), "instruction": sent(4), "out_gpt35_turbo_instruct": sent(8),
             "out_davinci_002": sent(3)} for i in range(6)])  # fmt: skip
    _write(data / "safety_refusals_2483.jsonl.gz",
           [{"idx": str(i), "instruction": sent(4), "input": "", "output": "no " + sent(3)}
            for i in range(5)])  # fmt: skip
    _write(data / "truthfulqa_817.jsonl.gz",
           [{"idx": i, "question": sent(4) + "?", "best_answer": sent(2),
             "correct_answers": [sent(2), sent(3)], "h3_split": "train" if i < 3 else "test"}
            for i in range(6)])  # fmt: skip
    _write(data / "alpaca_eval_prompts.jsonl.gz",
           [{"idx": i, "dataset": "x", "instruction": sent(4), "ref_text_davinci_003": sent(5)}
            for i in range(3)])  # fmt: skip
    _write(data / "safety_eval_prompts_668.jsonl.gz",
           [{"set": s, "idx": str(i), "instruction": sent(4), "tag": "None"}
            for i, s in enumerate(["I-Alpaca", "Q-Harm", "I-CoNa"])])  # fmt: skip
    _write(data / "redteam_prompts_83.jsonl.gz",
           [{"idx": str(i), "prompt": sent(4), "category": "c"} for i in range(2)])  # fmt: skip
    tok = lm.train_tokenizer(
        [h3.prompt_text(sent(5)) + " " + sent(10) + h3._data.END for _ in range(50)],
        vocab_size=400,
    )
    cfg = lm.DecoderConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=48,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=512)  # fmt: skip
    model_dir = root / "tiny"
    lm.save_pretrained(lm.CausalLM(cfg, rngs=nnx.Rngs(0)), model_dir, tokenizer=tok)
    jdir = root / "judges"
    hidden = cfg.hidden_size
    for k, kind in enumerate(judges.KINDS):
        coef = np.random.default_rng(k).normal(0, 1, hidden)
        spec = judges.FeatureSpec((1,), "mean", 32, 32, 32, False)
        judges.Judge(kind, "tiny", spec, np.zeros(hidden), np.ones(hidden), coef, 0.0,
                     {"accuracy": 0.5 + 0.01 * k, "auc": 0.5, "test_rows": 10,
                      "split": {"disjoint": "synthetic"}}).save(jdir / f"{kind}.json")  # fmt: skip
    return {"data": data, "model": model_dir, "judges": jdir, "root": root}


def _run(capsys, *argv):
    code = focal_cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_pipeline_end_to_end_and_resume(setup, capsys):
    out = setup["root"] / "run"
    common = ["--out", str(out), "--model", str(setup["model"])]
    data = ["--data-dir", str(setup["data"])]
    code, stdout, err = _run(capsys, "h3", "experts", *common, *data, "--steps", "2")
    assert code == 0, err
    assert "honesty" in stdout
    for goal in h3.GOALS:
        assert (out / "experts" / goal / "adapter" / "adapter_model.safetensors").is_file()
    code, _, err = _run(capsys, "h3", "experts", *common, *data, "--steps", "2")
    assert code == 0 and "already trained" in err
    code, stdout, err = _run(capsys, "h3", "build", *common, "--format", "json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["fixed"]["delta_scale"] == 0.5 and doc["faithful"]["delta_scale"] == 1.0
    assert doc["fixed"]["counts"]["top_k"] == 2
    code, stdout, err = _run(capsys, "h3", "align", *common, *data, "--steps", "2",
                             "--format", "json")  # fmt: skip
    assert code == 0, err
    doc = json.loads(stdout)
    # 6 helpfulness, 5 safety, 6 TruthfulQA answers: the reference's labels starve expert 2
    assert doc["fixed"]["label_counts"] == [6, 5, 6]
    assert doc["faithful"]["label_counts"] == [6, 11, 0]
    code, stdout, err = _run(capsys, "h3", "evaluate", *common, *data, "--judges-dir",
                             str(setup["judges"]), "--format", "json")  # fmt: skip
    assert code == 0, err
    res = json.loads(stdout)
    assert list(res["table"]) == list(h3.ROWS)
    assert res["prompts"] == {"helpfulness": 3, "harmlessness": 4, "honesty": 3}
    for m in res["table"].values():
        for key in ("help_win_pct", "harm_flagged_pct", "truthful_pct", "informative_pct"):
            assert 0.0 <= m[key] <= 100.0
    heat = np.asarray(res["routing"]["moe_fixed"]["honesty"])
    assert heat.shape == (2, 3)
    np.testing.assert_allclose(heat.sum(axis=1), 1.0, atol=1e-5)
    assert (out / "eval" / "routing_moe_fixed.png").is_file()
    assert res["judges"]["truthfulness"]["accuracy"] == pytest.approx(0.5)
    assert "judge acc" in h3.results_table(res)
    # A rerun with other judges reuses the generations but rescores them: no stale score.
    before = (out / "eval" / "base" / "honesty.jsonl").read_text()
    other = setup["root"] / "other_judges"
    first = h3.load_eval_prompts("helpfulness", setup["data"])[0]["prompt"]
    for kind in judges.KINDS:
        j = judges.Judge.load(setup["judges"] / f"{kind}.json")
        # this helpfulness judge was trained on the first AlpacaEval prompt: it must not be asked
        seen = [judges.prompt_hash(first)] if kind == "helpfulness" else []
        val = {**j.validation, "train_prompt_hashes": seen}
        dataclasses.replace(j, coef=-j.coef, validation=val).save(other / f"{kind}.json")
    code, stdout, err = _run(capsys, "h3", "evaluate", *common, *data, "--judges-dir",
                             str(other), "--format", "json")  # fmt: skip
    assert code == 0, err
    res = json.loads(stdout)
    assert res["prompts"]["helpfulness"] == 2
    assert res["prompts_left_out_seen_by_judges"] == {"helpfulness": 1, "harmlessness": 0,
                                                       "honesty": 0}  # fmt: skip
    helped = (out / "eval" / "base" / "helpfulness.jsonl").read_text()
    assert first not in [json.loads(x)["prompt"] for x in helped.splitlines()]
    after = (out / "eval" / "base" / "honesty.jsonl").read_text()
    rows_before = [json.loads(x) for x in before.splitlines()]
    rows_after = [json.loads(x) for x in after.splitlines()]
    assert [r["output"] for r in rows_after] == [r["output"] for r in rows_before]
    for a, b in zip(rows_before, rows_after, strict=True):
        assert b["p_truthful"] == pytest.approx(1.0 - a["p_truthful"], abs=1e-6)
    # Other prompts: the stored answers are not reused for them but generated again.
    code, stdout, err = _run(capsys, "h3", "evaluate", *common, *data, "--judges-dir",
                             str(other), "--prompts", "2", "--rows", "base",
                             "--format", "json")  # fmt: skip
    assert code == 0, err
    res = json.loads(stdout)
    assert res["prompts"] == {"helpfulness": 2, "harmlessness": 2, "honesty": 2}
    for goal in h3.GOALS:
        stored = (out / "eval" / "base" / f"{goal}.jsonl").read_text().splitlines()
        assert len(stored) == 2
    code, _, err = _run(capsys, "h3", "evaluate", *common, *data, "--prompts", "0")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--prompts" in err


def test_bad_input_is_one_line(setup, capsys, tmp_path):
    code, _, err = _run(capsys, "h3", "build", "--out", str(tmp_path / "empty"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "focal h3 experts" in err
    code, _, err = _run(capsys, "h3", "experts", "--out", str(tmp_path / "x"), "--model",
                        str(setup["model"]), "--data-dir", str(tmp_path / "nodata"))  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no such data file" in err


@pytest.mark.parametrize("action", ["experts", "build", "align", "evaluate"])
def test_help_has_examples(action, capsys):
    with pytest.raises(SystemExit) as exc:
        focal_cli.main(["h3", action, "--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_full_budget_paths_on_the_tiny_pipeline(setup, capsys):
    """``--budget full`` trains by epochs (not steps) and evaluates every prompt."""
    out = setup["root"] / "run_full"
    common = ["--out", str(out), "--model", str(setup["model"])]
    data = ["--data-dir", str(setup["data"])]
    full = ["--budget", "full"]
    code, stdout, err = _run(capsys, "h3", "experts", *common, *data, *full, "--format", "json")
    assert code == 0, err
    doc = json.loads(stdout)
    # 6 / 5 / 6 training rows, batch 8: one step per epoch, 3 epochs
    assert {g: doc[g]["steps"] for g in h3.GOALS} == {g: 3 for g in h3.GOALS}
    code, _, err = _run(capsys, "h3", "build", *common)
    assert code == 0, err
    code, stdout, err = _run(capsys, "h3", "align", *common, *data, *full, "--variants", "fixed",
                             "--format", "json")  # fmt: skip
    assert code == 0, err
    # the union's 17 rows, batch 8: three steps per epoch, 3 epochs
    assert json.loads(stdout)["fixed"]["steps"] == 9
    code, stdout, err = _run(capsys, "h3", "evaluate", *common, *data, *full, "--judges-dir",
                             str(setup["judges"]), "--rows", "base", "moe_fixed",
                             "--format", "json")  # fmt: skip
    assert code == 0, err
    res = json.loads(stdout)
    assert res["prompts"] == {"helpfulness": 3, "harmlessness": 4, "honesty": 3}
    assert res["budget"]["name"] == "full" and res["budget"]["max_new_tokens"] == 512
