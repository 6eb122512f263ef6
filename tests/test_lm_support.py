"""Helpers shared by the ``test_lm_*`` files: tiny checkpoints of each family (no tests here).

With torch installed the checkpoints are written by transformers' own PyTorch classes
(``LlamaForCausalLM(config).save_pretrained(dir)``); without it, by our model's save path, so the
loading and round-trip tests still run.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

# FUSERS_LM_TESTS_NO_TORCH=1 exercises the torch-free path on a machine that has torch.
HAS_TORCH = importlib.util.find_spec("torch") is not None and not os.environ.get(
    "FUSERS_LM_TESTS_NO_TORCH"
)
NO_TORCH_REASON = (
    "torch is not installed (pip install torch==2.13.0, a CPU build): agreement with "
    "transformers' PyTorch models is not checked"
)

VOCAB = 320
BASE: dict[str, Any] = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=16,
    initializer_range=0.1,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)

# name -> (model_type, config overrides). Sequences of 24 tokens exceed max_position_embeddings
# (16) and the original lengths (8), so dynamic NTK, YaRN, Llama 3 and LongRoPE all act.
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("llama", {}),
    "llama-tied-bias": (
        "llama",
        dict(tie_word_embeddings=True, attention_bias=True, mlp_bias=True),
    ),
    "llama-linear": ("llama", dict(rope_parameters={"rope_type": "linear", "factor": 2.0})),
    "llama-dynamic": ("llama", dict(rope_parameters={"rope_type": "dynamic", "factor": 2.0})),
    "llama-yarn": (
        "llama",
        dict(
            max_position_embeddings=32,
            rope_parameters={
                "rope_type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 8,
            },
        ),
    ),
    "llama-llama3": (
        "llama",
        dict(
            rope_parameters={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8,
                "rope_theta": 500000.0,
            }
        ),
    ),
    "llama-longrope": (
        "llama",
        dict(
            max_position_embeddings=32,
            rope_parameters={
                "rope_type": "longrope",
                "factor": 4.0,
                "short_factor": [1.0 + 0.1 * i for i in range(8)],
                "long_factor": [1.5 + 0.2 * i for i in range(8)],
                "original_max_position_embeddings": 8,
            },
        ),
    ),
    "mistral": ("mistral", dict(sliding_window=6)),
    "qwen2": ("qwen2", {}),
    "qwen2-tied-window": (
        "qwen2",
        dict(
            tie_word_embeddings=True, use_sliding_window=True, sliding_window=6, max_window_layers=1
        ),
    ),
}


def hf_config(model_type: str, overrides: dict[str, Any]) -> Any:
    """A transformers config object of the tiny shape."""
    import transformers

    cls = {
        "llama": transformers.LlamaConfig,
        "mistral": transformers.MistralConfig,
        "qwen2": transformers.Qwen2Config,
    }[model_type]
    kw = {**BASE, **overrides}
    if "rope_parameters" in kw:
        kw["rope_parameters"] = {"rope_theta": 10000.0, **kw["rope_parameters"]}
    return cls(**kw)


def make_checkpoint(
    path: Path, case: str = "llama", *, max_shard_size: str | None = None, seed: int = 0
) -> Path:
    """Write a tiny randomly initialised checkpoint of ``case`` into ``path``."""
    model_type, overrides = CASES[case]
    config = hf_config(model_type, overrides)
    if HAS_TORCH:
        import torch
        import transformers

        cls = {
            "llama": transformers.LlamaForCausalLM,
            "mistral": transformers.MistralForCausalLM,
            "qwen2": transformers.Qwen2ForCausalLM,
        }[model_type]
        torch.manual_seed(seed)
        model = cls(config).eval()
        kw = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
        model.save_pretrained(path, safe_serialization=True, **kw)
    else:
        from flax import nnx

        from fusers import lm

        cfg = lm.DecoderConfig.from_hf(config)
        model = lm.CausalLM(cfg, rngs=nnx.Rngs(seed))
        lm.save_pretrained(model, path, max_shard_size=max_shard_size)
    return path


def hf_model(path: Path) -> Any:
    """transformers' PyTorch model of a checkpoint directory (needs torch)."""
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()


def tiny_tokenizer() -> Any:
    """A byte-level BPE tokenizer trained on a few sentences, ids below ``VOCAB``."""
    from fusers.lm import train_tokenizer

    texts = [
        "The answer is (A). The answer is (B).",
        "Question: what is two plus two? Answer: four.",
        "Large language models write answers; fusers combine them.",
    ] * 10
    return train_tokenizer(texts, vocab_size=VOCAB, special_tokens=("<pad>", "<s>", "</s>"))
