"""LoRA adapters: identity at start, only adapters train, merge equivalence, PEFT-layout files."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

from fusers import lm

CFG = lm.DecoderConfig(
    vocab_size=61,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    initializer_range=0.2,
)
TARGETS = ("q_proj", "v_proj", "o_proj", "gate_proj", "down_proj")
IDS = jnp.asarray(np.random.default_rng(0).integers(0, 61, size=(2, 9)))
_forward = nnx.jit(lambda m, x: m(x))


def _fwd(model):
    return np.asarray(_forward(model, IDS))


def _batch():
    rng = np.random.default_rng(1)
    return lm.make_batch([rng.integers(0, 61, size=n).tolist() for n in (12, 9, 12, 7)])


def _params(model, kind=nnx.Param):
    return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, kind)))


def _trained_lora_model(dropout=0.0):
    model = lm.CausalLM(CFG, rngs=nnx.Rngs(0))
    lm.apply_lora(model, targets=TARGETS, rank=4, alpha=8.0, dropout=dropout, rngs=nnx.Rngs(1))
    opt = lm.make_optimizer(model, learning_rate=3e-2, wrt=lm.LoRAParam)
    for _ in range(3):
        lm.train_step(model, opt, _batch())
    model.eval()
    return model


def test_fresh_adapters_are_the_identity():
    base = lm.CausalLM(CFG, rngs=nnx.Rngs(0))
    ref = _fwd(base)
    lm.apply_lora(base, targets=TARGETS, rank=4, alpha=8.0, rngs=nnx.Rngs(1))
    assert len(lm.lora_modules(base)) == 2 * len(TARGETS)
    np.testing.assert_array_equal(_fwd(base), ref)


def test_only_adapters_train():
    model = lm.CausalLM(CFG, rngs=nnx.Rngs(0))
    lm.apply_lora(model, targets=("q_proj", "v_proj"), rank=2, alpha=4.0, rngs=nnx.Rngs(1))
    base_before = _params(model, nnx.All(nnx.Param, nnx.Not(lm.LoRAParam)))
    lora_before = _params(model, lm.LoRAParam)
    opt = lm.make_optimizer(model, learning_rate=1e-2, wrt=lm.LoRAParam)
    losses = [float(lm.train_step(model, opt, _batch())) for _ in range(4)]
    assert losses[-1] < losses[0]
    base_after = _params(model, nnx.All(nnx.Param, nnx.Not(lm.LoRAParam)))
    jax.tree.map(np.testing.assert_array_equal, base_before, base_after)
    lora_after = _params(model, lm.LoRAParam)
    changed = jax.tree.leaves(
        jax.tree.map(lambda a, b: not np.array_equal(a, b), lora_before, lora_after)
    )
    assert all(changed)


def test_merge_equals_unmerged():
    model = _trained_lora_model()
    unmerged = _fwd(model)
    assert np.abs(np.asarray(next(iter(lm.lora_modules(model).values())).lora_b[...])).max() > 0
    lm.merge_lora(model)
    assert not lm.lora_modules(model)
    np.testing.assert_allclose(_fwd(model), unmerged, atol=1e-5, rtol=0)


def test_adapters_save_and_load(tmp_path):
    model = _trained_lora_model(dropout=0.1)
    expected = _fwd(model)
    out = lm.save_adapters(model, tmp_path / "adapter", base_model_name_or_path="tiny")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (4, 8.0, 0.1)
    assert config["target_modules"] == sorted(TARGETS)
    tensors = load_file(str(out / "adapter_model.safetensors"))
    assert len(tensors) == 2 * 2 * len(TARGETS)
    a = tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
    b = tensors["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"]
    assert a.shape == (4, 32) and b.shape == (32, 4)

    fresh = lm.CausalLM(CFG, rngs=nnx.Rngs(0))  # same base weights (same seed)
    lm.load_adapters(fresh, out, rngs=nnx.Rngs(5))
    fresh.eval()
    np.testing.assert_array_equal(_fwd(fresh), expected)


def test_adapter_errors(tmp_path):
    model = lm.CausalLM(CFG, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="no LoRA adapters"):
        lm.save_adapters(model, tmp_path / "x")
    with pytest.raises(ValueError, match="no nnx.Linear named"):
        lm.apply_lora(model, targets=("query",), rngs=nnx.Rngs(0))
    with pytest.raises(FileNotFoundError, match="adapter_config.json is missing"):
        lm.load_adapters(model, tmp_path, rngs=nnx.Rngs(0))
    lora = _trained_lora_model()
    out = lm.save_adapters(lora, tmp_path / "a")
    small = lm.CausalLM(CFG.replace(hidden_size=16, intermediate_size=32), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="has shape"):
        lm.load_adapters(small, out, rngs=nnx.Rngs(0))


def test_dropout_only_in_training_mode():
    model = lm.CausalLM(CFG, rngs=nnx.Rngs(0))
    lm.apply_lora(model, targets=("q_proj",), rank=2, alpha=4.0, dropout=0.5, rngs=nnx.Rngs(1))
    for m in lm.lora_modules(model).values():
        m.lora_b[...] = jnp.ones_like(m.lora_b[...])
    model.eval()
    a, b = _fwd(model), _fwd(model)
    np.testing.assert_array_equal(a, b)
    model.train()
    c, d = _fwd(model), _fwd(model)
    assert not np.array_equal(c, d)
