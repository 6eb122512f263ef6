"""Frozen decoder features of chat turns (several layers, mean and last token), cached on disk."""

from __future__ import annotations

import collections
import functools
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ensembles.util import InputError, write_atomic
from fusers.lm import CausalLM, chat_ids, pad_batch

__all__ = [
    "REPLY_STATS",
    "ChatFeatures",
    "chat_features",
    "chat_turn_ids",
    "hidden_features",
    "prefix_model",
    "reply_stats",
]


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


# ------------------------------------------------------------------ chat-turn features
_CHAT_FORMAT = "chat v1"  # bump when the token layout below changes (invalidates caches)


def chat_turn_ids(
    tokenizer: Any, prompt: str, reply: str, *, prompt_tokens: int, reply_tokens: int
) -> tuple[list[int], int, int]:
    """Token ids of one chat exchange: the user's prompt and the assistant's reply.

    The prompt is cut to its first ``prompt_tokens`` tokens and wrapped in the tokenizer's chat
    template (default system turn, assistant turn opened); the reply is cut to its first
    ``reply_tokens - 1`` tokens and closed with the end-of-turn token (``<|im_end|>`` for
    ChatML, else the EOS token).

    Args:
        tokenizer: a transformers tokenizer with a chat template (raw text without one).
        prompt: the user's message.
        reply: the assistant's answer.
        prompt_tokens: prompt truncation.
        reply_tokens: reply truncation, end-of-turn token included.

    Returns:
        ``(ids, reply_start, reply_length)``: the ids, the index of the reply's first token and
        the reply's full token count before truncation.

    Examples:
        >>> from fusers.lm import train_tokenizer
        >>> tok = train_tokenizer(["a b c"] * 10, vocab_size=270)
        >>> ids, start, n = chat_turn_ids(tok, "a b", "c c c", prompt_tokens=8, reply_tokens=2)
        >>> len(ids) - start, n
        (2, 3)
    """
    p_ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    if len(p_ids) > prompt_tokens:
        prompt = tokenizer.decode(p_ids[:prompt_tokens])
    head = chat_ids(tokenizer, prompt)
    r_ids = list(tokenizer(reply, add_special_tokens=False)["input_ids"])
    end = (
        tokenizer.convert_tokens_to_ids("<|im_end|>")
        if "<|im_end|>" in tokenizer.get_vocab()
        else None
    )
    if end is None:
        end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    return head + r_ids[: max(reply_tokens - 1, 0)] + [int(end)], len(head), len(r_ids)


#: Names of the text statistics of :func:`reply_stats`, in column order.
REPLY_STATS = (
    "log_words",
    "log_lines",
    "log_list_items",
    "code_block",
    "ends_complete",
    "log_max_line_repeats",
)
_LIST_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\d{1,3}[.)])\s+")
_ENDINGS = tuple(".!?)\"'`:*]")


def reply_stats(reply: str) -> np.ndarray:
    r"""Cheap structural statistics of a reply's text, float64 ``(len(REPLY_STATS),)``.

    ``log(1 + words)``, ``log(1 + non-empty lines)``, ``log(1 + list items)`` (lines opening
    with ``-``, ``*``, a bullet or ``1.`` / ``1)``), a code fence (0/1), whether the reply
    ends like a finished sentence (0/1; 0 for an empty or cut-off reply) and
    ``log(1 + the most repeats of one line)`` (degenerate repetition). A judge uses them beside
    its decoder features, never alone.

    Examples:
        >>> dict(zip(REPLY_STATS, reply_stats("Steps:\n1. Mix.\n2. Bake.").round(3).tolist()))
        ... # doctest: +NORMALIZE_WHITESPACE
        {'log_words': 1.792, 'log_lines': 1.386, 'log_list_items': 1.099, 'code_block': 0.0,
         'ends_complete': 1.0, 'log_max_line_repeats': 0.693}
    """
    text = reply.strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    counts = collections.Counter(lines)
    return np.asarray(
        [
            np.log1p(len(text.split())),
            np.log1p(len(lines)),
            np.log1p(sum(bool(_LIST_ITEM.match(ln)) for ln in lines)),
            float("```" in text),
            float(bool(text) and text.endswith(_ENDINGS)),
            np.log1p(max(counts.values(), default=0)),
        ],
        np.float64,
    )


class ChatFeatures(NamedTuple):
    """Features of chat exchanges, from one forward per exchange.

    Attributes:
        values: ``(n, len(blocks), len(cuts), 2, hidden)`` float32: for each block count and
            reply cut ``c``, the mean over the reply's first ``c`` tokens (index 0) and the
            hidden state of the ``c``-th reply token, or the last one for shorter replies
            (index 1); each RMS-normalised with the decoder's final norm.
        reply_length: ``(n,)`` the replies' full token counts (before truncation).
        blocks: the block counts.
        cuts: the reply cuts.
        stats: ``(n, len(REPLY_STATS))`` text statistics of the replies (:func:`reply_stats`;
            ``None`` when not computed).
    """

    values: np.ndarray
    reply_length: np.ndarray
    blocks: tuple[int, ...]
    cuts: tuple[int, ...]
    stats: np.ndarray | None = None


@functools.partial(nnx.jit, static_argnames=("blocks",))
def _chat_pooled(model, ids, mask, start, ends, blocks):
    outs = model.block_outputs(ids, attention_mask=mask, blocks=blocks)
    t = ids.shape[1]
    pos = jnp.arange(t)
    seg = (pos[None, None, :] >= start[:, None, None]) & (pos[None, None, :] < ends[:, :, None])
    seg = seg.astype(jnp.float32)  # (batch, cuts, length)
    count = jnp.maximum(seg.sum(-1, keepdims=True), 1.0)
    last = jnp.clip(ends - 1, 0, t - 1)  # (batch, cuts)
    feats = []
    for h in outs:
        h = model.model.norm(h).astype(jnp.float32)
        mean = jnp.einsum("bct,bth->bch", seg, h) / count
        tok = jnp.take_along_axis(h, last[:, :, None], axis=1)
        feats.append(jnp.stack([mean, tok], axis=2))  # (batch, cuts, 2, hidden)
    return jnp.stack(feats, axis=1)


def _store_key(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _text_key(prompt: str, reply: str) -> str:
    h = hashlib.sha256(prompt.encode("utf-8"))
    h.update(b"\x00")
    h.update(reply.encode("utf-8"))
    return h.hexdigest()[:32]


def _load_store(folder: Path) -> dict[str, tuple[np.ndarray, int]]:
    found: dict[str, tuple[np.ndarray, int]] = {}
    for f in sorted(folder.glob("shard-*.npz")):
        try:
            with np.load(f) as z:
                keys, vals, lens = z["keys"], z["values"], z["reply_length"]
        except (OSError, ValueError, KeyError):
            continue  # a damaged shard is recomputed
        for k, v, n in zip(keys, vals, lens, strict=True):
            found[str(k)] = (v, int(n))
    return found


def chat_features(
    model: CausalLM,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    *,
    blocks: Sequence[int],
    cuts: Sequence[int],
    prompt_tokens: int = 96,
    batch_size: int = 8,
    bucket: int = 64,
    cache_dir: str | os.PathLike | None = None,
    model_id: str = "model",
    shard_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> ChatFeatures:
    """Hidden-state features of ``(prompt, reply)`` chat exchanges from a frozen decoder.

    Each exchange is laid out by :func:`chat_turn_ids` with ``reply_tokens = max(cuts)``, run
    once through the first ``max(blocks)`` blocks (batches of ``batch_size``, sorted by length,
    right-padded to a multiple of ``bucket``), and pooled over the reply at every cut: mean and
    cut-point token, for every requested block (see :class:`ChatFeatures`). The decoder is
    causal, so a shorter cut sees exactly what a shorter truncation would.

    With ``cache_dir``, features are kept per exchange in ``chat-<hash>/shard-*.npz`` (hash of
    ``model_id``, blocks, cuts, prompt truncation and the layout version), written atomically
    every ``shard_size`` exchanges: a run that stops resumes where it was, and exchanges shared
    by several judges are computed once.

    Args:
        model: the decoder (kept frozen).
        tokenizer: its tokenizer (with a chat template).
        pairs: ``(prompt, reply)`` texts.
        blocks: block counts to read (``1 .. num_hidden_layers``).
        cuts: reply truncations (tokens, end-of-turn token included), increasing.
        prompt_tokens: prompt truncation.
        batch_size: exchanges per forward.
        bucket: padded lengths are multiples of this.
        cache_dir: feature cache folder (``None``: no cache).
        model_id: names the decoder in the cache key.
        shard_size: exchanges per cache shard.
        progress: called as ``progress(done, total)``.

    Returns:
        A :class:`ChatFeatures`, rows in the order of ``pairs``.

    Raises:
        InputError: a block or cut out of range.

    Examples:
        >>> from flax import nnx
        >>> from fusers.lm import DecoderConfig, train_tokenizer
        >>> tok = train_tokenizer(["a b c"] * 10, vocab_size=270)
        >>> cfg = DecoderConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
        ...                     num_hidden_layers=2, num_attention_heads=2)
        >>> f = chat_features(CausalLM(cfg, rngs=nnx.Rngs(0)), tok, [("a", "b c"), ("c", "a")],
        ...                   blocks=[1, 2], cuts=[2, 4])
        >>> f.values.shape, f.reply_length.tolist()
        ((2, 2, 2, 2, 16), [2, 1])
    """
    n_layers = model.config.num_hidden_layers
    blocks = tuple(sorted({int(b) for b in blocks}))
    cuts = tuple(sorted({int(c) for c in cuts}))
    if not blocks or blocks[0] < 1 or blocks[-1] > n_layers:
        raise InputError(f"blocks: each must be in 1..{n_layers}, got {list(blocks)}")
    if not cuts or cuts[0] < 1:
        raise InputError(f"cuts: each must be a positive token count, got {list(cuts)}")
    if prompt_tokens < 1:
        raise InputError(f"prompt_tokens: must be positive, got {prompt_tokens}")
    pairs = [(str(p), str(r)) for p, r in pairs]
    hidden = model.config.hidden_size
    keys = [_text_key(p, r) for p, r in pairs]
    store: dict[str, tuple[np.ndarray, int]] = {}
    folder = None
    if cache_dir is not None:
        spec = {"model": model_id, "blocks": blocks, "cuts": cuts, "prompt_tokens": prompt_tokens,
                "format": _CHAT_FORMAT}  # fmt: skip
        folder = Path(cache_dir) / f"chat-{_store_key(spec)}"
        if folder.is_dir():
            store = _load_store(folder)
    todo = sorted({k: i for i, k in enumerate(keys) if k not in store}.values())
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    done = len(pairs) - len(todo)
    if progress is not None and todo:
        progress(done, len(pairs))
    for s0 in range(0, len(todo), shard_size):
        chunk = todo[s0 : s0 + shard_size]
        laid = [
            chat_turn_ids(tokenizer, *pairs[i], prompt_tokens=prompt_tokens, reply_tokens=cuts[-1])
            for i in chunk
        ]
        vals = np.zeros((len(chunk), len(blocks), len(cuts), 2, hidden), np.float32)
        order = sorted(range(len(chunk)), key=lambda j: len(laid[j][0]))
        for b0 in range(0, len(order), batch_size):
            idx = order[b0 : b0 + batch_size]
            seqs = [laid[j][0] for j in idx]
            starts = [laid[j][1] for j in idx]
            fill = batch_size - len(idx)
            seqs, starts = seqs + [seqs[-1]] * fill, starts + [starts[-1]] * fill
            length = -(-max(len(q) for q in seqs) // bucket) * bucket
            arr, mask = pad_batch(seqs, pad_token_id=pad, side="right", length=length)
            ends = np.asarray(
                [[min(len(q), st + c) for c in cuts] for q, st in zip(seqs, starts, strict=True)],
                np.int32,
            )
            out = _chat_pooled(
                model, jnp.asarray(arr), jnp.asarray(mask), jnp.asarray(starts, jnp.int32),
                jnp.asarray(ends), blocks,
            )  # fmt: skip
            vals[idx] = np.asarray(jax.device_get(out))[: len(idx)]
            done += len(idx)
            if progress is not None:
                progress(done, len(pairs))
        lens = np.asarray([laid[j][2] for j in range(len(chunk))], np.int64)
        for j, i in enumerate(chunk):
            store[keys[i]] = (vals[j], int(lens[j]))
        if folder is not None:
            shard_keys = np.asarray([keys[i] for i in chunk])
            name = f"shard-{hashlib.sha256(''.join(shard_keys).encode()).hexdigest()[:16]}.npz"

            def save(fh: Any, k=shard_keys, v=vals, n=lens) -> None:
                buf = io.BytesIO()
                np.savez(buf, keys=k, values=v, reply_length=n)
                fh.write(buf.getvalue())

            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(folder / name, save)
    values = (
        np.stack([store[k][0] for k in keys])
        if keys
        else np.zeros((0, len(blocks), len(cuts), 2, hidden), np.float32)
    )
    lengths = np.asarray([store[k][1] for k in keys], np.int64)
    stats = np.asarray([reply_stats(r) for _, r in pairs], np.float64).reshape(-1, len(REPLY_STATS))
    return ChatFeatures(values, lengths, blocks, cuts, stats)
