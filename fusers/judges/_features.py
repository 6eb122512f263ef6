"""Frozen decoder features: mean-pooled hidden states of one layer, cached on disk."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ensembles.util import InputError, write_atomic
from fusers.lm import CausalLM, pad_batch

__all__ = ["hidden_features", "prefix_model"]


def prefix_model(model: CausalLM, layers: int) -> CausalLM:
    """A view of ``model`` that stops after ``layers`` blocks (then the final norm).

    The embedding, the first ``layers`` blocks and the final norm are shared with ``model`` (no
    copy); the output head is unused for features.

    Args:
        model: the decoder.
        layers: number of blocks to keep, ``1 .. num_hidden_layers``.

    Returns:
        A :class:`~fusers.lm.CausalLM` whose ``hidden_states`` are layer ``layers``'s output,
        RMS-normalised with the final norm.

    Examples:
        >>> from flax import nnx
        >>> from fusers.lm import DecoderConfig
        >>> cfg = DecoderConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
        ...                     num_hidden_layers=3, num_attention_heads=2)
        >>> prefix_model(CausalLM(cfg, rngs=nnx.Rngs(0)), 2).config.num_hidden_layers
        2
    """
    cfg = model.config
    if not 1 <= layers <= cfg.num_hidden_layers:
        raise InputError(f"layer: must be in 1..{cfg.num_hidden_layers}, got {layers}")
    sub_cfg = cfg.replace(
        num_hidden_layers=layers, sliding_windows=tuple(cfg.sliding_windows[:layers])
    )
    sub = nnx.eval_shape(
        lambda: CausalLM(
            sub_cfg.replace(tie_word_embeddings=True),
            dtype=model.dtype,
            param_dtype=model.param_dtype,
            rngs=nnx.Rngs(0),
        )
    )
    sub.model.embed_tokens = model.model.embed_tokens
    sub.model.layers = nnx.List(list(model.model.layers)[:layers])
    sub.model.norm = model.model.norm
    return sub


@nnx.jit
def _pooled(model: CausalLM, ids: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    hidden, _ = model.hidden_states(ids, attention_mask=mask)
    m = mask[..., None].astype(jnp.float32)
    return jnp.sum(hidden.astype(jnp.float32) * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)


def _cache_key(model_id: str, layer: int, max_tokens: int, texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([model_id, layer, max_tokens], sort_keys=True).encode())
    for t in texts:
        h.update(hashlib.sha256(t.encode("utf-8")).digest())
    return h.hexdigest()[:24]


def hidden_features(
    model: CausalLM,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    layer: int,
    max_tokens: int = 128,
    batch_size: int = 16,
    bucket: int = 32,
    cache_dir: str | os.PathLike | None = None,
    model_id: str = "model",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Mean-pooled hidden states of layer ``layer`` for each text, ``(n, hidden)`` float32.

    Each text is tokenised (no special tokens added), cut to its first ``max_tokens`` tokens,
    right-padded to a multiple of ``bucket`` and run through the first ``layer`` blocks in
    batches of ``batch_size`` (texts sorted by length; one compilation per length bucket). The
    pooled vector is the mean over the real tokens of the final-norm hidden states. With
    ``cache_dir``, the matrix is stored as ``feat-<hash>.npy`` (hash of ``model_id``, ``layer``,
    ``max_tokens`` and the texts), written atomically, and reused.

    Args:
        model: the decoder (kept frozen).
        tokenizer: its tokenizer.
        texts: the texts.
        layer: blocks to run (``1 .. num_hidden_layers``).
        max_tokens: truncation length.
        batch_size: texts per forward.
        bucket: padded lengths are multiples of this.
        cache_dir: folder of the feature cache (``None``: no cache).
        model_id: names the model in the cache key (e.g. the GGUF file name).
        progress: called as ``progress(done, total)``.

    Returns:
        The feature matrix, rows in the order of ``texts``.

    Examples:
        >>> from flax import nnx
        >>> from fusers.lm import DecoderConfig, train_tokenizer
        >>> tok = train_tokenizer(["a b c"] * 10, vocab_size=270)
        >>> cfg = DecoderConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
        ...                     num_hidden_layers=2, num_attention_heads=2)
        >>> hidden_features(CausalLM(cfg, rngs=nnx.Rngs(0)), tok, ["a b", "c"], layer=1).shape
        (2, 16)
    """
    texts = list(texts)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"feat-{_cache_key(model_id, layer, max_tokens, texts)}.npy"
        if path.is_file():
            cached = np.load(path)
            if cached.shape[0] == len(texts):
                return cached
    sub = prefix_model(model, layer)
    ids = [list(tokenizer(t, add_special_tokens=False)["input_ids"])[:max_tokens] for t in texts]
    ids = [s if s else [tokenizer.eos_token_id or 0] for s in ids]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = np.zeros((len(texts), model.config.hidden_size), np.float32)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        seqs = [ids[i] for i in idx]
        seqs += [seqs[-1]] * (batch_size - len(seqs))
        length = -(-max(len(s) for s in seqs) // bucket) * bucket
        arr, mask = pad_batch(seqs, pad_token_id=pad, side="right", length=length)
        pooled = np.asarray(_pooled(sub, jnp.asarray(arr), jnp.asarray(mask)))
        out[idx] = pooled[: len(idx)]
        if progress is not None:
            progress(min(start + batch_size, len(order)), len(order))
    if path is not None:

        def save(fh: Any) -> None:
            buf = io.BytesIO()
            np.save(buf, out)
            fh.write(buf.getvalue())

        write_atomic(path, save)
    return out
