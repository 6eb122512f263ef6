"""``focal lm generate`` on a tiny GGUF model written here (fast) and its bad-input paths."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("gguf", reason="gguf is not installed (focal-fusion[lm])")
pytest.importorskip("transformers", reason="transformers is not installed (focal-fusion[lm])")
nnx = pytest.importorskip("flax.nnx")

import focal_cli  # noqa: E402
from fusers import lm  # noqa: E402


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    texts = ["the cat sat on the mat", "a dog ran in the park", "one two three four"] * 20
    tok = lm.train_tokenizer(texts, vocab_size=300)
    cfg = lm.DecoderConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, eos_token_ids=(tok.eos_token_id,), pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    return lm.save_gguf(lm.CausalLM(cfg, rngs=nnx.Rngs(0)), d / "tiny.gguf", tokenizer=tok)


def _prompts(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_generate_file_then_resume(tiny_gguf, tmp_path, capsys):
    prompts = _prompts(
        tmp_path / "p.jsonl",
        [{"id": "a", "prompt": "the cat"}, {"instruction": "a dog ran"}, {"question": "one"}],
    )
    out = tmp_path / "o.jsonl"
    args = ["lm", "generate", str(tiny_gguf), "--prompts", str(prompts), "--out", str(out),
            "--batch-size", "2", "--max-new-tokens", "5", "--raw"]  # fmt: skip
    assert focal_cli.main(args) == 0
    rows = _read(out)
    assert [r["id"] for r in rows] == ["a", 1, 2]
    assert [r["prompt"] for r in rows] == ["the cat", "a dog ran", "one"]
    for r in rows:
        assert r["model"] == "tiny" and isinstance(r["output"], str)
        assert 1 <= r["num_tokens"] <= 5 and r["settings"]["temperature"] == 0.0
    capsys.readouterr()
    # resume: answered rows are kept as they are, the missing one is added
    kept = rows[0] | {"output": "KEPT"}
    out.write_text(json.dumps(kept) + "\n")
    assert focal_cli.main([*args, "--resume", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["new"] == 2 and doc["rows"] == 3
    again = _read(out)
    assert again[0]["output"] == "KEPT" and again[1:] == rows[1:]


def test_sampling_is_seeded_and_stop_strings_cut(tiny_gguf, capsys):
    base = ["lm", "generate", str(tiny_gguf), "--prompt", "the cat", "--raw", "--format", "json",
            "--max-new-tokens", "12", "--temperature", "1.5"]  # fmt: skip
    outs = []
    for seed in ("1", "1", "2"):
        assert focal_cli.main([*base, "--seed", seed]) == 0
        outs.append(json.loads(capsys.readouterr().out)["output"])
    assert outs[0] == outs[1]
    text = outs[0]
    assert len(text) > 2
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    assert focal_cli.main([*base, "--seed", "1", "--stop", stop]) == 0
    cut = json.loads(capsys.readouterr().out)
    assert cut["output"] == text[: text.find(stop)] and cut["finished"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--prompts", "{p}"], "--out: required with --prompts"),
        (["--prompt", "x", "--top-p", "0"], "top_p: must be in (0, 1]"),
        (["--prompt", "x", "--temperature", "-1"], "temperature: must be >= 0"),
        (["--prompts", "{bad}", "--out", "{o}"], "not valid JSON"),
    ],
)
def test_bad_input_is_one_line(tiny_gguf, tmp_path, capsys, argv, message):
    p = _prompts(tmp_path / "p.jsonl", [{"prompt": "x"}])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n{oops\n')
    argv = [a.format(p=p, bad=bad, o=tmp_path / "o.jsonl") for a in argv]
    assert focal_cli.main(["lm", "generate", str(tiny_gguf), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_unknown_model_is_one_line(tmp_path, capsys):
    assert focal_cli.main(["lm", "generate", str(tmp_path / "nope"), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "neither a GGUF file" in err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        focal_cli.main(["lm", "generate", "--help"])
    assert "examples:" in capsys.readouterr().out


def test_text_module_doctests():
    import doctest
    import importlib

    module = importlib.import_module("fusers.lm._text")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
