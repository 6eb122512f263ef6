"""Hugging Face checkpoints: loading, sharding, bit-exact round trips, tokenizers, clear errors."""

from __future__ import annotations

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file
from test_lm_support import CASES, VOCAB, hf_config, make_checkpoint, tiny_tokenizer

from fusers import lm


def _tensors(path) -> dict[str, np.ndarray]:
    """Every tensor of a model directory (single file or shards)."""
    out: dict[str, np.ndarray] = {}
    for file in sorted(path.glob("*.safetensors")):
        out.update(load_file(str(file)))
    return out


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    path = make_checkpoint(tmp_path_factory.mktemp("ckpt") / "llama", "llama")
    tiny_tokenizer().save_pretrained(str(path))
    return path


@pytest.mark.parametrize("case", ["llama", "llama-tied-bias", "mistral", "qwen2-tied-window"])
@pytest.mark.parametrize("shard", [None, "30KB"])
def test_round_trip_is_bit_exact(tmp_path, case, shard):
    src = make_checkpoint(tmp_path / "src", case, max_shard_size=shard)
    if shard:
        assert (src / "model.safetensors.index.json").is_file()
        assert len(list(src.glob("model-*-of-*.safetensors"))) > 1
    model, _ = lm.from_pretrained(src, tokenizer=False)
    dst = lm.save_pretrained(model, tmp_path / "dst", max_shard_size=shard)
    before, after = _tensors(src), _tensors(dst)
    assert sorted(before) == sorted(after)
    for name, value in before.items():
        assert after[name].dtype == value.dtype, name
        assert np.array_equal(after[name], value), name
    assert lm.load_config(dst) == lm.load_config(src)
    again, _ = lm.from_pretrained(dst, tokenizer=False)
    ids = jnp.arange(10).reshape(1, 10)
    assert np.array_equal(np.asarray(again(ids)), np.asarray(model(ids)))


def test_sharded_load_equals_single_file(tmp_path):
    single = make_checkpoint(tmp_path / "single", "qwen2", seed=3)
    sharded = make_checkpoint(tmp_path / "sharded", "qwen2", max_shard_size="20KB", seed=3)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    a, _ = lm.from_pretrained(single, tokenizer=False)
    b, _ = lm.from_pretrained(sharded, tokenizer=False)
    ids = jnp.arange(12).reshape(2, 6)
    assert np.array_equal(np.asarray(a(ids)), np.asarray(b(ids)))


def test_bfloat16_checkpoint_round_trip(tmp_path):
    cfg = lm.DecoderConfig.from_hf(hf_config("llama", {}))
    model = lm.CausalLM(cfg, param_dtype=jnp.bfloat16, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    src = lm.save_pretrained(model, tmp_path / "src")
    loaded, _ = lm.from_pretrained(src, tokenizer=False)
    assert loaded.model.embed_tokens.embedding[...].dtype == jnp.bfloat16
    dst = lm.save_pretrained(loaded, tmp_path / "dst")
    before, after = _tensors(src), _tensors(dst)
    for name, value in before.items():
        assert after[name].dtype == value.dtype
        assert np.array_equal(after[name].view(np.uint16), value.view(np.uint16)), name
    as32, _ = lm.from_pretrained(src, tokenizer=False, param_dtype=jnp.float32)
    assert as32.model.norm.weight[...].dtype == jnp.float32


def test_from_pretrained_returns_model_and_tokenizer(llama_dir):
    model, tok = lm.from_pretrained(llama_dir)
    assert isinstance(model, lm.CausalLM)
    ids = tok(["The answer is (A).", "two plus two"], padding=True, return_tensors="np")
    logits = model(ids["input_ids"], attention_mask=ids["attention_mask"])
    assert logits.shape == (2, ids["input_ids"].shape[1], VOCAB)
    text = "Question: what is two plus two?"
    assert tok.decode(tok(text)["input_ids"]) == text
    assert tok.pad_token_id == 0 and tok.eos_token_id == 2


def test_save_with_tokenizer_and_stale_shards_removed(tmp_path, llama_dir):
    model, tok = lm.from_pretrained(llama_dir)
    out = lm.save_pretrained(model, tmp_path / "out", max_shard_size="30KB", tokenizer=tok)
    assert (out / "model.safetensors.index.json").is_file()
    lm.save_pretrained(model, out)  # single file now: the shards and index must go
    assert not list(out.glob("model-*-of-*.safetensors"))
    assert not (out / "model.safetensors.index.json").exists()
    again, tok2 = lm.from_pretrained(out)
    assert tok2("hello")["input_ids"] == tok("hello")["input_ids"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_round_trip_through_transformers(case):
    model_type, overrides = CASES[case]
    hf = hf_config(model_type, overrides)
    cfg = lm.DecoderConfig.from_hf(hf)
    assert cfg.model_type == model_type
    assert lm.DecoderConfig.from_hf(cfg.to_hf()) == cfg
    assert cfg.num_parameters() > 0


def test_parameter_count_matches_the_model():
    for case in ("llama", "llama-tied-bias", "qwen2"):
        model_type, overrides = CASES[case]
        cfg = lm.DecoderConfig.from_hf(hf_config(model_type, overrides))
        model = nnx.eval_shape(lambda cfg=cfg: lm.CausalLM(cfg, rngs=nnx.Rngs(0)))
        assert model.num_parameters() == cfg.num_parameters()


# ------------------------------------------------------------------------------- clear errors
def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_error_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        lm.from_pretrained(tmp_path / "nope")


def test_error_missing_config(tmp_path, llama_dir):
    path = _copy(llama_dir, tmp_path / "m")
    (path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"config\.json is missing"):
        lm.from_pretrained(path)


def test_error_unsupported_architecture(tmp_path, llama_dir):
    path = _copy(llama_dir, tmp_path / "m")
    raw = json.loads((path / "config.json").read_text())
    raw["model_type"] = "gpt2"
    (path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"unsupported architecture 'gpt2'.*llama, mistral, qwen2"):
        lm.from_pretrained(path)


def test_error_shape_does_not_match_config(tmp_path, llama_dir):
    path = _copy(llama_dir, tmp_path / "m")
    raw = json.loads((path / "config.json").read_text())
    raw["intermediate_size"] = 96
    (path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(
        ValueError,
        match=r"tensor model\.layers\.0\.mlp\.\w+\.weight has shape .* but the config implies",
    ):
        lm.from_pretrained(path)


def test_error_missing_weights_and_shards(tmp_path, llama_dir):
    path = _copy(llama_dir, tmp_path / "m")
    (path / "model.safetensors").unlink()
    (path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"neither model\.safetensors.*pytorch_model\.bin"):
        lm.from_pretrained(path)
    sharded = make_checkpoint(tmp_path / "s", "llama", max_shard_size="30KB")
    next(iter(sorted(sharded.glob("model-*.safetensors")))).unlink()
    with pytest.raises(
        FileNotFoundError, match=r"shard model-00001-of-\d+\.safetensors is missing"
    ):
        lm.from_pretrained(sharded, tokenizer=False)


def test_error_missing_and_unexpected_tensors(tmp_path, llama_dir):
    path = _copy(llama_dir, tmp_path / "m")
    tensors = load_file(str(path / "model.safetensors"))
    extra = dict(tensors, **{"model.layers.9.mlp.up_proj.weight": np.zeros((2, 2), np.float32)})
    save_file(extra, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"unexpected tensors model\.layers\.9"):
        lm.from_pretrained(path)
    del tensors["model.norm.weight"]
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"lacks tensors model\.norm\.weight"):
        lm.from_pretrained(path)


def test_error_missing_tokenizer(tmp_path):
    path = make_checkpoint(tmp_path / "m", "llama")
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        lm.from_pretrained(path)
    model, tok = lm.from_pretrained(path, tokenizer=False)
    assert tok is None


def test_error_saving_unmerged_lora(tmp_path):
    cfg = lm.DecoderConfig.from_hf(hf_config("llama", {}))
    model = lm.apply_lora(lm.CausalLM(cfg, rngs=nnx.Rngs(0)), rank=2, rngs=nnx.Rngs(1))
    with pytest.raises(ValueError, match="merge them first"):
        lm.save_pretrained(model, tmp_path / "x")


def test_config_validation_errors():
    base = dict(vocab_size=10, hidden_size=16, intermediate_size=8, num_hidden_layers=1)
    with pytest.raises(ValueError, match="num_key_value_heads"):
        lm.DecoderConfig(**base, num_attention_heads=4, num_key_value_heads=3)
    with pytest.raises(ValueError, match="rope_type 'weird'"):
        lm.DecoderConfig(**base, num_attention_heads=4, rope_scaling={"rope_type": "weird"})
    with pytest.raises(ValueError, match="model_type"):
        lm.DecoderConfig(**base, num_attention_heads=4, model_type="gpt2")


@pytest.mark.parametrize("tied", [False, True])
def test_resize_token_embeddings_keeps_old_rows_and_saves(tmp_path, tied):
    cfg = lm.DecoderConfig.from_hf(hf_config("llama", dict(tie_word_embeddings=tied)))
    model = lm.CausalLM(cfg, rngs=nnx.Rngs(0))
    ids = jnp.arange(12).reshape(2, 6)
    before = np.asarray(model(ids))
    lm.resize_token_embeddings(model, VOCAB + 5)
    after = np.asarray(model(ids))
    assert after.shape == (2, 6, VOCAB + 5)
    np.testing.assert_allclose(after[..., :VOCAB], before, atol=1e-6)
    table = np.asarray(model.model.embed_tokens.embedding[...])
    np.testing.assert_allclose(table[VOCAB:], np.broadcast_to(table[:VOCAB].mean(0), (5, 64)),
                               atol=1e-7)  # fmt: skip
    reloaded, _ = lm.from_pretrained(lm.save_pretrained(model, tmp_path / "m"), tokenizer=False)
    assert reloaded.config.vocab_size == VOCAB + 5
    np.testing.assert_array_equal(np.asarray(reloaded(ids)), after)
