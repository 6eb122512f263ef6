"""Read and write Hugging Face model directories (config.json + safetensors, single or sharded)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ensembles.util import InputError, write_atomic

from ._config import DecoderConfig
from ._extra import require
from ._model import CausalLM

__all__ = [
    "from_pretrained",
    "load_config",
    "load_weights",
    "save_pretrained",
    "state_dict",
]

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
_IGNORED = re.compile(r"(^|\.)rotary_emb\.inv_freq$")
_SHARD = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")


def _np_dtype(dtype: Any) -> np.dtype:
    return np.dtype(jnp.dtype(dtype))


# ---------------------------------------------------------------------------- naming
def _hf_name(path: tuple[Any, ...]) -> tuple[str, bool]:
    """Checkpoint key of a parameter path, and whether the tensor is transposed."""
    parts = [str(p) for p in path]
    leaf, prefix = parts[-1], ".".join(parts[:-1])
    if leaf == "kernel":
        return prefix + ".weight", True
    if leaf in ("embedding", "weight"):
        return prefix + ".weight", False
    if leaf == "bias":
        return prefix + ".bias", False
    raise InputError(f"parameter {'.'.join(parts)}: no checkpoint name for it")


def _params(model: CausalLM) -> Iterator[tuple[tuple[Any, ...], nnx.Variable]]:
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        if isinstance(var, nnx.LoRAParam) or any(str(p) == "base" for p in path):
            raise InputError(
                "model holds LoRA adapters: merge them first (fusers.lm.merge_lora) or save them "
                "alone (fusers.lm.save_adapters)"
            )
        yield path, var


def state_dict(model: CausalLM, *, dtype: Any = None) -> dict[str, np.ndarray]:
    """The model's parameters as NumPy arrays under transformers' names and layouts.

    Linear kernels are transposed to PyTorch's ``(out, in)`` layout; nothing else changes, so
    converting back is exact.

    Args:
        model: the model (without unmerged LoRA adapters).
        dtype: cast every tensor to this dtype; ``None`` keeps the parameter dtypes.

    Returns:
        A dictionary from checkpoint key (``model.layers.0.self_attn.q_proj.weight`` ...) to array.

    Raises:
        ValueError: the model holds unmerged LoRA adapters.
    """
    out: dict[str, np.ndarray] = {}
    for path, var in _params(model):
        name, transpose = _hf_name(path)
        value = np.asarray(jax.device_get(var.get_value()))
        if transpose:
            value = value.T
        if dtype is not None:
            value = value.astype(_np_dtype(dtype))
        out[name] = np.ascontiguousarray(value)
    return out


# ---------------------------------------------------------------------------- reading
def _check_dir(path: str | os.PathLike) -> Path:
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such model directory")
    if not (root / "config.json").is_file():
        raise FileNotFoundError(
            f"{root}: config.json is missing (a Hugging Face model directory holds config.json and "
            f"{WEIGHTS_NAME} or {INDEX_NAME} with its shards)"
        )
    return root


def load_config(path: str | os.PathLike) -> DecoderConfig:
    """Read ``config.json`` of a model directory.

    Args:
        path: the model directory.

    Returns:
        The :class:`DecoderConfig`.

    Raises:
        FileNotFoundError: the directory or its ``config.json`` is missing.
        ValueError: the ``model_type`` is not one of ``llama``, ``mistral``, ``qwen2`` (or the
            file is not valid JSON).
    """
    root = _check_dir(path)
    try:
        raw = json.loads((root / "config.json").read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{root / 'config.json'}: not valid JSON ({err})") from None
    try:
        return DecoderConfig.from_dict(raw)
    except ValueError as err:
        raise InputError(f"{root / 'config.json'}: {err}") from None


def _weight_files(root: Path) -> dict[str, Path]:
    """Map each tensor name to the safetensors file holding it."""
    safe_open = require("safetensors", feature="reading safetensors weights").safe_open

    index = root / INDEX_NAME
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map")
        if not isinstance(weight_map, dict):
            raise InputError(f"{index}: no weight_map")
        files = {name: root / shard for name, shard in weight_map.items()}
        for shard in sorted(set(files.values())):
            if not shard.is_file():
                raise FileNotFoundError(f"{index}: shard {shard.name} is missing")
        return files
    single = root / WEIGHTS_NAME
    if single.is_file():
        with safe_open(single, "numpy") as f:
            return {name: single for name in f.keys()}  # noqa: SIM118
    others = sorted(p.name for p in root.glob("*.bin")) + sorted(p.name for p in root.glob("*.pt"))
    hint = f" (found {', '.join(others)}: PyTorch pickles are not read)" if others else ""
    raise FileNotFoundError(f"{root}: neither {WEIGHTS_NAME} nor {INDEX_NAME} is present{hint}")


def load_weights(model: CausalLM, path: str | os.PathLike, *, strict: bool = True) -> CausalLM:
    """Fill ``model``'s parameters in place from the safetensors of a model directory.

    Args:
        model: a model (possibly abstract, from ``nnx.eval_shape``) of the matching configuration.
        path: the model directory (``model.safetensors`` or ``model.safetensors.index.json``).
        strict: raise on checkpoint tensors the model has no place for.

    Returns:
        ``model``, with every parameter replaced (cast to the model's parameter dtypes).

    Raises:
        FileNotFoundError: no weights file, or a shard named by the index is missing.
        ValueError: a tensor is missing, unexpected, or its shape does not match the config.
    """
    safe_open = require("safetensors", feature="fusers.lm.load_weights").safe_open
    root = Path(path)
    files = _weight_files(root)
    wanted = {}
    for p, var in _params(model):
        name, transpose = _hf_name(p)
        wanted[name] = (p, var, transpose)
    _check_names(root, set(wanted), set(files), tied=model.config.tie_word_embeddings,
                 strict=strict)  # fmt: skip
    by_file: dict[Path, list[str]] = {}
    for name in wanted:
        by_file.setdefault(files[name], []).append(name)
    new_state = []
    for file, names in sorted(by_file.items()):
        with safe_open(file, "numpy") as f:
            new_state += [_read_tensor(f, file, name, *wanted[name]) for name in names]
    nnx.update(model, nnx.from_flat_state(new_state))
    return model


def _more(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _check_names(root: Path, wanted: set[str], found: set[str], *, tied: bool, strict: bool):
    """Refuse a checkpoint lacking a parameter, or (``strict``) holding unknown tensors."""
    missing = sorted(wanted - found)
    if missing:
        raise InputError(f"{root}: checkpoint lacks tensors {_more(missing)}")
    extra = sorted(
        n for n in found - wanted if not _IGNORED.search(n) and not (tied and n == "lm_head.weight")
    )
    if extra and strict:
        raise InputError(
            f"{root}: unexpected tensors {_more(extra)} (is config.json the right one for these "
            "weights?)"
        )


def _read_tensor(f, file: Path, name: str, p, var: nnx.Variable, transpose: bool):
    """One tensor as ``(path, variable)``, shape-checked, transposed and cast as the model's."""
    expected = tuple(var.get_value().shape)
    if transpose:
        expected = expected[::-1]
    shape = tuple(f.get_slice(name).get_shape())
    if shape != expected:
        raise InputError(
            f"{file.name}: tensor {name} has shape {shape} but the config implies {expected}"
        )
    array = f.get_tensor(name)
    if transpose:
        array = array.T
    dtype = var.get_value().dtype
    return p, var.replace(jnp.asarray(array.astype(_np_dtype(dtype))))


def _checkpoint_dtype(root: Path) -> Any:
    safe_open = require("safetensors", feature="fusers.lm.from_pretrained").safe_open

    files = _weight_files(root)
    name = "model.embed_tokens.weight"
    file = files.get(name) or next(iter(files.values()))
    with safe_open(file, "numpy") as f:
        key = name if name in f.keys() else next(iter(f.keys()))  # noqa: SIM118
        code = f.get_slice(key).get_dtype()
    table = {"F32": jnp.float32, "BF16": jnp.bfloat16, "F16": jnp.float16, "F64": jnp.float64}
    return table.get(code, jnp.float32)


def from_pretrained(
    path: str | os.PathLike,
    *,
    dtype: Any = None,
    param_dtype: Any = None,
    tokenizer: bool = True,
) -> tuple[CausalLM, Any]:
    """Load a local Hugging Face model directory into a Flax :class:`CausalLM`.

    Reads ``config.json`` (Llama, Mistral or Qwen2), the weights from ``model.safetensors`` or
    from the shards listed in ``model.safetensors.index.json``, and the tokenizer through
    transformers' ``AutoTokenizer`` from the same directory. Nothing is downloaded.

    Args:
        path: the model directory.
        dtype: compute dtype; ``None`` means the parameter dtype.
        param_dtype: parameter dtype; ``None`` keeps the checkpoint's (so that
            :func:`save_pretrained` writes the same bytes back).
        tokenizer: also load the tokenizer (``False`` returns ``None`` in its place).

    Returns:
        ``(model, tokenizer)``; calling ``model(ids)`` on ``(batch, length)`` token ids returns
        ``(batch, length, vocab)`` logits.

    Raises:
        FileNotFoundError: the directory, ``config.json``, the weights, a shard, or the tokenizer
            files are missing.
        ValueError: unsupported architecture, or tensors that do not match the config.

    Examples:
        >>> import tempfile
        >>> from flax import nnx
        >>> from fusers.lm import CausalLM, DecoderConfig, from_pretrained, save_pretrained
        >>> cfg = DecoderConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
        ...                     num_hidden_layers=1, num_attention_heads=2)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = save_pretrained(CausalLM(cfg, rngs=nnx.Rngs(0)), d)
        ...     model, tok = from_pretrained(d, tokenizer=False)
        >>> model.config == cfg, tok is None
        (True, True)
    """
    require("safetensors", feature="fusers.lm.from_pretrained")
    if tokenizer:
        require("transformers", feature="fusers.lm.from_pretrained")
    root = _check_dir(path)
    config = load_config(root)
    if param_dtype is None:
        param_dtype = _checkpoint_dtype(root)
    dtype = param_dtype if dtype is None else dtype
    model = nnx.eval_shape(
        lambda: CausalLM(config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0))
    )
    load_weights(model, root)
    tok = None
    if tokenizer:
        from ._tokenizer import load_tokenizer

        tok = load_tokenizer(root)
    return model, tok


# ---------------------------------------------------------------------------- writing
def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", size, re.IGNORECASE)
    if not m:
        raise InputError(f"max_shard_size: cannot read {size!r} (e.g. '5GB', '200MB', 10_000)")
    unit = (m.group(2) or "B").upper()
    mult = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    return int(float(m.group(1)) * mult[unit])


def _write_bytes(path: Path, data: bytes) -> None:
    write_atomic(path, lambda fh: fh.write(data))


def _natural(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def save_pretrained(
    model: CausalLM,
    path: str | os.PathLike,
    *,
    tokenizer: Any = None,
    max_shard_size: int | str | None = None,
    dtype: Any = None,
) -> Path:
    """Write ``model`` as a Hugging Face model directory readable by transformers.

    Writes ``config.json`` and either ``model.safetensors`` or, when ``max_shard_size`` is given
    and exceeded, ``model-0000k-of-0000n.safetensors`` shards with ``model.safetensors.index.json``
    (transformers' layout, ``{"format": "pt"}`` metadata). Tied output heads are not written. Each
    file is written atomically; stale weight files of an earlier save are removed. Loading with
    :func:`from_pretrained` and saving again reproduces every tensor bit for bit.

    Args:
        model: the model (merge LoRA adapters first).
        path: the directory (created if needed).
        tokenizer: a transformers tokenizer to save alongside (``save_pretrained``).
        max_shard_size: bytes per shard (an int or a string such as ``"2GB"``); ``None`` writes
            one file.
        dtype: cast the tensors on save (``None`` keeps the parameter dtypes).

    Returns:
        The directory.

    Raises:
        ValueError: the model holds unmerged LoRA adapters, or a bad ``max_shard_size``.
    """
    st = require("safetensors.numpy", feature="fusers.lm.save_pretrained")
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    tensors = state_dict(model, dtype=dtype)
    limit = None if max_shard_size is None else _parse_size(max_shard_size)
    shards = _plan_shards(tensors, limit)
    written = _write_weights(root, tensors, shards, st.save)
    for old in root.iterdir():
        stale = old.name in (WEIGHTS_NAME, INDEX_NAME) or _SHARD.match(old.name)
        if stale and old.name not in written:
            old.unlink()
    config = model.config.to_dict()
    first = tensors[shards[0][0]].dtype
    config["dtype"] = str(jnp.dtype(first).name)
    config.pop("torch_dtype", None)
    _write_bytes(
        root / "config.json", (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
    )
    if tokenizer is not None:
        tokenizer.save_pretrained(str(root))
    return root


def _plan_shards(tensors: dict[str, np.ndarray], limit: int | None) -> list[list[str]]:
    """Tensor names in natural order, cut into shards of at most ``limit`` bytes (if given)."""
    shards: list[list[str]] = [[]]
    size = 0
    for name in sorted(tensors, key=_natural):
        nbytes = tensors[name].nbytes
        if limit is not None and shards[-1] and size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    return shards


def _write_weights(root: Path, tensors, shards: list[list[str]], save) -> set[str]:
    """Write one weights file or the shards and their index; return the file names."""
    meta = {"format": "pt"}
    if len(shards) == 1:
        _write_bytes(root / WEIGHTS_NAME, save(tensors, metadata=meta))
        return {WEIGHTS_NAME}
    weight_map: dict[str, str] = {}
    n = len(shards)
    for k, group in enumerate(shards, start=1):
        fname = f"model-{k:05d}-of-{n:05d}.safetensors"
        _write_bytes(root / fname, save({name: tensors[name] for name in group}, metadata=meta))
        weight_map.update({name: fname for name in group})
    index = {
        "metadata": {
            "total_size": int(sum(t.nbytes for t in tensors.values())),
            "total_parameters": int(sum(t.size for t in tensors.values())),
        },
        "weight_map": dict(sorted(weight_map.items(), key=lambda kv: _natural(kv[0]))),
    }
    _write_bytes(root / INDEX_NAME, (json.dumps(index, indent=2) + "\n").encode())
    return {*weight_map.values(), INDEX_NAME}
