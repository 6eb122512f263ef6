"""Batched autoregressive decoding with a key-value cache, all inside one ``jax.jit``."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ensembles.util import InputError

from ._model import CausalLM

__all__ = ["GenerationResult", "generate", "pad_batch"]

# Incremented each time the decoding loop is traced (compiled); tests read it.
_TRACES = {"generate": 0}


@dataclasses.dataclass(frozen=True)
class GenerationResult:
    """Output of :func:`generate`.

    Attributes:
        tokens: ``(batch, max_new_tokens)`` int32 new tokens; after a row's stop token (which is
            kept) the row holds ``pad_token_id``.
        lengths: ``(batch,)`` number of new tokens of each row, its stop token included.
        finished: ``(batch,)`` bool, the row produced a stop token.
        logits: ``(batch, max_new_tokens, vocab)`` float32 logits each token was chosen from
            (``None`` unless ``return_logits``); rows past their stop hold zeros.
    """

    tokens: jax.Array
    lengths: jax.Array
    finished: jax.Array
    logits: jax.Array | None = None

    def to_lists(self) -> list[list[int]]:
        """The new tokens of each row as Python lists (stop token included, padding dropped)."""
        toks, lens = np.asarray(self.tokens), np.asarray(self.lengths)
        return [toks[i, : lens[i]].tolist() for i in range(toks.shape[0])]


def pad_batch(
    sequences: Sequence[Sequence[int]],
    *,
    pad_token_id: int = 0,
    side: str = "left",
    length: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pad token lists into ``(input_ids, attention_mask)`` arrays of shape ``(batch, length)``.

    Args:
        sequences: token id lists.
        pad_token_id: filler id.
        side: ``"left"`` (generation prompts) or ``"right"`` (training).
        length: pad to this length (default: the longest sequence); longer sequences raise.

    Returns:
        ``input_ids`` int32 and ``attention_mask`` int32 (1 = real token).

    Examples:
        >>> ids, mask = pad_batch([[5, 6, 7], [8]], pad_token_id=0)
        >>> ids.tolist(), mask.tolist()
        ([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]])
    """
    if side not in ("left", "right"):
        raise InputError(f"side: must be 'left' or 'right', got {side!r}")
    longest = max((len(s) for s in sequences), default=0)
    length = longest if length is None else length
    if longest > length:
        raise InputError(f"length: a sequence has {longest} tokens, more than {length}")
    ids = np.full((len(sequences), length), pad_token_id, np.int32)
    mask = np.zeros((len(sequences), length), np.int32)
    for i, seq in enumerate(sequences):
        n = len(seq)
        sl = slice(length - n, length) if side == "left" else slice(0, n)
        ids[i, sl] = np.asarray(seq, np.int32)
        mask[i, sl] = 1
    return ids, mask


def _filter_logits(logits: jax.Array, temperature, top_k, top_p) -> jax.Array:
    """Temperature, then top-k (``top_k <= 0``: off), then nucleus filtering; all traced."""
    logits = logits / jnp.maximum(temperature, 1e-6)
    vocab = logits.shape[-1]
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
    k = jnp.where((top_k <= 0) | (top_k > vocab), vocab, top_k)
    kth = jnp.take(sorted_logits, k - 1, axis=-1)[..., None]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
    sorted_logits = jnp.where(jnp.arange(vocab) < k, sorted_logits, -jnp.inf)
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs
    keep = before < top_p
    keep = keep.at[..., 0].set(True)
    threshold = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(logits < threshold, -jnp.inf, logits)


@functools.partial(
    jax.jit,
    static_argnames=(
        "graphdef",
        "max_new_tokens",
        "greedy",
        "pad_token_id",
        "return_logits",
    ),
)
def _generate(
    graphdef,
    state,
    input_ids,
    attention_mask,
    key,
    temperature,
    top_k,
    top_p,
    stops,
    *,
    max_new_tokens: int,
    greedy: bool,
    pad_token_id: int,
    return_logits: bool,
):
    _TRACES["generate"] += 1
    model = nnx.merge(graphdef, state)
    b, p = input_ids.shape
    cache = model.init_cache(batch_size=b, max_length=p + max_new_tokens)
    logits, cache = model(input_ids, attention_mask=attention_mask, cache=cache)
    last = logits[:, -1].astype(jnp.float32)
    vocab = last.shape[-1]

    def body(carry):
        step, cache, last, tokens, done, lengths, seen = carry
        if greedy:
            tok = jnp.argmax(last, axis=-1).astype(jnp.int32)
        else:
            filtered = _filter_logits(last, temperature, top_k, top_p)
            tok = jax.random.categorical(jax.random.fold_in(key, step), filtered).astype(jnp.int32)
        active = ~done
        tok = jnp.where(active, tok, pad_token_id)
        tokens = tokens.at[:, step].set(tok)
        if return_logits:
            seen = seen.at[:, step].set(jnp.where(active[:, None], last, 0.0))
        lengths = lengths + active.astype(jnp.int32)
        done = done | (active & jnp.isin(tok, stops))
        logits, cache = model(tok[:, None], attention_mask=active[:, None], cache=cache)
        return step + 1, cache, logits[:, -1].astype(jnp.float32), tokens, done, lengths, seen

    def cond(carry):
        step, done = carry[0], carry[4]
        return (step < max_new_tokens) & ~jnp.all(done)

    seen = jnp.zeros((b, max_new_tokens, vocab) if return_logits else (0,), jnp.float32)
    carry = (
        jnp.zeros((), jnp.int32),
        cache,
        last,
        jnp.full((b, max_new_tokens), pad_token_id, jnp.int32),
        jnp.zeros((b,), bool),
        jnp.zeros((b,), jnp.int32),
        seen,
    )
    _, _, _, tokens, done, lengths, seen = jax.lax.while_loop(cond, body, carry)
    return tokens, lengths, done, seen


def generate(
    model: CausalLM,
    input_ids: Any,
    *,
    max_new_tokens: int,
    attention_mask: Any = None,
    key: jax.Array | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    stop_tokens: Sequence[int] | None = None,
    pad_token_id: int | None = None,
    return_logits: bool = False,
) -> GenerationResult:
    """Decode ``max_new_tokens`` tokens for a batch of left-padded prompts.

    The prompt is run once (prefill) into a :class:`~fusers.lm.KVCache` of static length
    ``prompt + max_new_tokens``; then one token per step is chosen and fed back through the cache
    inside a ``jax.lax.while_loop``, all in one jitted function: the loop compiles once per
    (model, batch shape, options) and never per token. The loop stops early once every row has
    produced one of its stop tokens. Positions start at 0 at each row's first real token.

    With ``dynamic`` rotary scaling, keys cached before the sequence outgrows
    ``max_position_embeddings`` keep their original rotation (as in transformers), so cached
    decoding then differs slightly from recomputing the whole sequence.

    Args:
        model: the decoder.
        input_ids: ``(batch, prompt_length)`` prompt ids, **left**-padded (see :func:`pad_batch`).
        max_new_tokens: tokens to generate at most.
        attention_mask: ``(batch, prompt_length)``, 1 on real tokens (default: all ones).
        key: a ``jax.random`` key for sampling; ``None`` decodes greedily (argmax).
        temperature: softmax temperature for sampling.
        top_k: keep the ``top_k`` most likely tokens when sampling (``None``: all).
        top_p: nucleus sampling mass (1.0: all).
        stop_tokens: ids that end a row (kept in the output); default: the config's
            ``eos_token_ids``; ``()`` never stops early. ``temperature``, ``top_k``, ``top_p``
            and the stop ids are traced: changing their values does not recompile (the number
            of stop ids does).
        pad_token_id: filler after a row stops (default: the config's, else 0).
        return_logits: also return the logits each token was chosen from.

    Returns:
        A :class:`GenerationResult`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from fusers.lm import CausalLM, DecoderConfig, generate
        >>> cfg = DecoderConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
        ...                     num_hidden_layers=1, num_attention_heads=2)
        >>> model = CausalLM(cfg, rngs=nnx.Rngs(0))
        >>> out = generate(model, jnp.array([[1, 2, 3]]), max_new_tokens=4, stop_tokens=())
        >>> out.tokens.shape, out.lengths.tolist()
        ((1, 4), [4])
    """
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens: must be at least 1, got {max_new_tokens}")
    input_ids = jnp.asarray(input_ids, jnp.int32)
    if input_ids.ndim != 2:
        raise InputError(f"input_ids: expected (batch, length), got shape {input_ids.shape}")
    if attention_mask is None:
        attention_mask = jnp.ones(input_ids.shape, bool)
    attention_mask = jnp.asarray(attention_mask) > 0
    if attention_mask.shape != input_ids.shape:
        raise InputError(
            f"attention_mask: shape {attention_mask.shape} differs from input_ids {input_ids.shape}"
        )
    if stop_tokens is None:
        stop_tokens = model.config.eos_token_ids
    if pad_token_id is None:
        pad_token_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    greedy = key is None
    if greedy:
        key = jax.random.key(0)
    graphdef, state = nnx.split(model)
    tokens, lengths, done, seen = _generate(
        graphdef,
        state,
        input_ids,
        attention_mask,
        key,
        jnp.asarray(temperature, jnp.float32),
        jnp.asarray(0 if top_k is None else top_k, jnp.int32),
        jnp.asarray(top_p, jnp.float32),
        jnp.asarray(tuple(int(t) for t in stop_tokens) or (-1,), jnp.int32),
        max_new_tokens=int(max_new_tokens),
        greedy=greedy,
        pad_token_id=int(pad_token_id),
        return_logits=bool(return_logits),
    )
    return GenerationResult(
        tokens=tokens,
        lengths=lengths,
        finished=done,
        logits=seen if return_logits else None,
    )
