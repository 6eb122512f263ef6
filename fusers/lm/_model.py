"""Decoder-only transformer in Flax NNX: Llama, Mistral and Qwen2.

Module and attribute names mirror transformers' PyTorch classes
(``model.layers[i].self_attn.q_proj`` ...), so a checkpoint key maps to a parameter path by
splitting at the dots and renaming ``weight``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from ensembles.util import InputError

from ._config import DecoderConfig

__all__ = ["CausalLM", "KVCache", "init_cache", "resize_token_embeddings"]

_NEG = float(np.finfo(np.float32).min)


@struct.dataclass
class KVCache:
    """Key/value cache of a decoder: an explicit pytree with a static maximum length.

    Slots are columns of the (left-padded) token sequence: the prompt fills slots
    ``0 .. P-1`` and every decoding step writes the next slot, for all rows at once.

    Attributes:
        keys: ``(layers, batch, max_length, kv_heads, head_dim)`` rotated keys.
        values: ``(layers, batch, max_length, kv_heads, head_dim)`` values.
        mask: ``(batch, max_length)`` bool, true where a slot holds a real (non-pad) token.
        index: ``()`` int32, the next slot to write.
        next_position: ``(batch,)`` int32, rotary position of each row's next real token.

    Examples:
        >>> from fusers.lm import DecoderConfig
        >>> cfg = DecoderConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
        ...                     num_hidden_layers=2, num_attention_heads=2)
        >>> init_cache(cfg, batch_size=3, max_length=10).keys.shape
        (2, 3, 10, 2, 8)
    """

    keys: jax.Array
    values: jax.Array
    mask: jax.Array
    index: jax.Array
    next_position: jax.Array

    @property
    def max_length(self) -> int:
        """Number of slots."""
        return self.keys.shape[2]


def init_cache(
    config: DecoderConfig, *, batch_size: int, max_length: int, dtype: Any = jnp.float32
) -> KVCache:
    """An empty :class:`KVCache` for ``batch_size`` rows and ``max_length`` slots.

    Args:
        config: the decoder configuration.
        batch_size: rows.
        max_length: slots (prompt length plus new tokens).
        dtype: dtype of the cached keys and values (the model's compute dtype).

    Returns:
        A cache with every slot empty.
    """
    shape = (
        config.num_hidden_layers,
        batch_size,
        max_length,
        config.num_key_value_heads,
        config.head_dim,
    )
    return KVCache(
        keys=jnp.zeros(shape, dtype),
        values=jnp.zeros(shape, dtype),
        mask=jnp.zeros((batch_size, max_length), bool),
        index=jnp.zeros((), jnp.int32),
        next_position=jnp.zeros((batch_size,), jnp.int32),
    )


def _eager(*values: Any) -> bool:
    """True when none of ``values`` (pytrees) holds a JAX tracer: plain Python, not under
    ``jit`` / ``grad`` / ``vmap``, where one compiled forward beats op-by-op dispatch."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(values))


@nnx.jit
def _jitted_forward(model, input_ids, attention_mask, positions, cache):
    hidden, cache = model.hidden_states(
        input_ids, attention_mask=attention_mask, positions=positions, cache=cache
    )
    logits = model.logits(hidden)
    return logits if cache is None else (logits, cache)


def _activation(name: str):
    return {
        "silu": jax.nn.silu,
        "gelu": lambda x: jax.nn.gelu(x, approximate=False),
        "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
        "relu": jax.nn.relu,
    }[name]


def _rotate_half(x: jax.Array) -> jax.Array:
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def _apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    return x * cos + _rotate_half(x) * sin


class RMSNorm(nnx.Module):
    """Root-mean-square layer norm (statistics in float32, as transformers computes them).

    Args:
        features: width.
        eps: added to the mean square.
        dtype: output dtype.
        param_dtype: dtype of the scale.
    """

    def __init__(self, features: int, *, eps: float, dtype: Any, param_dtype: Any) -> None:
        self.weight = nnx.Param(jnp.ones((features,), param_dtype))
        self.eps = eps
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        var = jnp.mean(x32 * x32, axis=-1, keepdims=True)
        normed = (x32 * jax.lax.rsqrt(var + self.eps)).astype(self.dtype)
        return self.weight[...].astype(self.dtype) * normed


def _linear(
    n_in: int, n_out: int, *, bias: bool, cfg: DecoderConfig, dtype, param_dtype, rngs
) -> nnx.Linear:
    return nnx.Linear(
        n_in,
        n_out,
        use_bias=bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=nnx.initializers.normal(cfg.initializer_range),
        rngs=rngs,
    )


class Attention(nnx.Module):
    """Grouped-query self-attention with rotary embeddings and an optional sliding window."""

    def __init__(self, cfg: DecoderConfig, layer: int, *, dtype, param_dtype, rngs) -> None:
        h, d = cfg.hidden_size, cfg.head_dim
        nq, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
        kw = dict(cfg=cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q_proj = _linear(h, nq * d, bias=cfg.attention_bias, **kw)
        self.k_proj = _linear(h, nkv * d, bias=cfg.attention_bias, **kw)
        self.v_proj = _linear(h, nkv * d, bias=cfg.attention_bias, **kw)
        self.o_proj = _linear(nq * d, h, bias=cfg.attention_out_bias, **kw)
        self.num_heads, self.num_kv_heads, self.head_dim = nq, nkv, d
        self.sliding_window = cfg.sliding_windows[layer]
        self.dtype = dtype

    def __call__(
        self,
        x: jax.Array,
        cos: jax.Array,
        sin: jax.Array,
        mask: jax.Array,
        kv: tuple[jax.Array, jax.Array, int] | None,
        index: jax.Array | int,
    ) -> tuple[jax.Array, Any]:
        b, t, _ = x.shape
        d, nkv = self.head_dim, self.num_kv_heads
        g = self.num_heads // nkv
        q = self.q_proj(x).reshape(b, t, self.num_heads, d)
        k = self.k_proj(x).reshape(b, t, nkv, d)
        v = self.v_proj(x).reshape(b, t, nkv, d)
        q, k = _apply_rope(q, cos, sin), _apply_rope(k, cos, sin)
        if kv is not None:
            # kv = (all layers' keys, all layers' values, this layer): update in place.
            keys, values, layer = kv
            start = (layer, 0, index, 0, 0)
            keys = jax.lax.dynamic_update_slice(keys, k.astype(keys.dtype)[None], start)
            values = jax.lax.dynamic_update_slice(values, v.astype(values.dtype)[None], start)
            k_all, v_all = keys[layer], values[layer]
            kv = (keys, values, layer)
        else:
            k_all, v_all = k, v
        if self.sliding_window is not None:
            s = k_all.shape[1]
            q_slot = index + jnp.arange(t)
            near = q_slot[:, None] - jnp.arange(s)[None, :] < self.sliding_window
            mask = mask & near[None]
        qg = q.reshape(b, t, nkv, g, d)
        scores = jnp.einsum("btkgd,bskd->bkgts", qg, k_all.astype(q.dtype))
        scores = scores.astype(jnp.float32) * (d**-0.5)
        scores = jnp.where(mask[:, None, None], scores, _NEG)
        probs = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        out = jnp.einsum("bkgts,bskd->btkgd", probs, v_all.astype(self.dtype))
        return self.o_proj(out.reshape(b, t, self.num_heads * d)), kv


class MLP(nnx.Module):
    """SwiGLU feed-forward block: ``down(act(gate(x)) * up(x))``."""

    def __init__(self, cfg: DecoderConfig, *, dtype, param_dtype, rngs) -> None:
        kw = dict(cfg=cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        h, f = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = _linear(h, f, bias=cfg.mlp_bias, **kw)
        self.up_proj = _linear(h, f, bias=cfg.mlp_bias, **kw)
        self.down_proj = _linear(f, h, bias=cfg.mlp_bias, **kw)
        self.act = cfg.hidden_act

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(_activation(self.act)(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
    """Pre-norm decoder block: attention and SwiGLU, each with a residual."""

    def __init__(self, cfg: DecoderConfig, layer: int, *, dtype, param_dtype, rngs) -> None:
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        self.input_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, **kw)
        self.self_attn = Attention(cfg, layer, rngs=rngs, **kw)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, **kw)
        self.mlp = MLP(cfg, rngs=rngs, **kw)

    def __call__(self, x, cos, sin, mask, kv, index):
        attn, kv = self.self_attn(self.input_layernorm(x), cos, sin, mask, kv, index)
        x = x + attn
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, kv


class DecoderModel(nnx.Module):
    """Embedding, decoder blocks and final norm (transformers' ``LlamaModel``)."""

    def __init__(self, cfg: DecoderConfig, *, dtype, param_dtype, rngs) -> None:
        self.embed_tokens = nnx.Embed(
            cfg.vocab_size,
            cfg.hidden_size,
            dtype=dtype,
            param_dtype=param_dtype,
            embedding_init=nnx.initializers.normal(cfg.initializer_range),
            rngs=rngs,
        )
        self.layers = nnx.List(
            [
                DecoderLayer(cfg, i, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                for i in range(cfg.num_hidden_layers)
            ]
        )
        self.norm = RMSNorm(
            cfg.hidden_size, eps=cfg.rms_norm_eps, dtype=dtype, param_dtype=param_dtype
        )


class CausalLM(nnx.Module):
    """Decoder-only causal language model (Llama, Mistral, Qwen2) in Flax NNX.

    Pre-norm blocks of grouped-query attention with rotary embeddings (every rotary scaling of
    transformers: default, linear, dynamic NTK, YaRN, Llama 3, LongRoPE) and a SwiGLU MLP;
    RMSNorm; tied or untied output head; q/k/v biases for Qwen2; sliding windows for Mistral and
    Qwen2. Logits agree with transformers' PyTorch classes to 1e-4 in float32
    (``tests/test_lm_agreement.py``).

    Args:
        config: the architecture.
        dtype: compute dtype (``jnp.bfloat16`` for mixed precision with float32 parameters).
        param_dtype: parameter dtype (float32 by default, ``jnp.bfloat16`` to halve memory).
        rngs: random streams for the initialisation (``params``).

    Call:
        ``model(input_ids, *, attention_mask=None, positions=None, cache=None)`` with
        ``input_ids`` of shape ``(batch, length)`` returns logits ``(batch, length, vocab)``;
        with a :class:`KVCache` it returns ``(logits, new_cache)``. ``attention_mask`` (1 = real
        token, 0 = pad) masks padded keys; ``positions`` default to the count of real tokens before
        each one, so left-padded rows start at position 0.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from fusers.lm import CausalLM, DecoderConfig
        >>> cfg = DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
        ...                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
        >>> model = CausalLM(cfg, rngs=nnx.Rngs(0))
        >>> model(jnp.zeros((2, 5), jnp.int32)).shape
        (2, 5, 64)
    """

    def __init__(
        self,
        config: DecoderConfig,
        *,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        self.config = config
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.model = DecoderModel(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        if not config.tie_word_embeddings:
            self.lm_head = _linear(
                config.hidden_size,
                config.vocab_size,
                bias=False,
                cfg=config,
                dtype=dtype,
                param_dtype=param_dtype,
                rngs=rngs,
            )
        inv_freq, factor = config.rope_frequencies()
        self._inv_freq = tuple(float(f) for f in inv_freq)
        self._rope_factor = factor

    # -------------------------------------------------------------------- rotary tables
    def _cos_sin(self, positions: jax.Array) -> tuple[jax.Array, jax.Array]:
        cfg = self.config
        inv_freq = jnp.asarray(np.asarray(self._inv_freq, np.float32))
        rope = cfg.rope_dict
        if cfg.rope_type == "dynamic":
            dim = cfg.head_dim
            factor = float(rope["factor"])
            max_pos = cfg.max_position_embeddings
            seq_len = jnp.maximum(jnp.max(positions) + 1, max_pos).astype(jnp.float32)
            base = cfg.rope_theta * ((factor * seq_len / max_pos) - (factor - 1)) ** (
                dim / (dim - 2)
            )
            exps = jnp.arange(0, dim, 2).astype(jnp.float32) / dim
            inv_freq = 1.0 / (base**exps)
        elif cfg.rope_type == "longrope":
            from ._config import _rope_frequencies

            long_freq, _ = _rope_frequencies(cfg, seq_len=10**12)
            orig = rope["original_max_position_embeddings"]
            inv_freq = jnp.where(jnp.max(positions) + 1 > orig, jnp.asarray(long_freq), inv_freq)
        freqs = positions[..., None].astype(jnp.float32) * inv_freq
        emb = jnp.concatenate([freqs, freqs], axis=-1)
        cos = (jnp.cos(emb) * self._rope_factor).astype(self.dtype)
        sin = (jnp.sin(emb) * self._rope_factor).astype(self.dtype)
        return cos, sin

    # -------------------------------------------------------------------- forward
    def __call__(
        self,
        input_ids: jax.Array,
        *,
        attention_mask: jax.Array | None = None,
        positions: jax.Array | None = None,
        cache: KVCache | None = None,
    ) -> jax.Array | tuple[jax.Array, KVCache]:
        probe = self.model.embed_tokens.embedding.get_value()  # traced under nnx.jit / grad
        if _eager(input_ids, attention_mask, positions, cache, probe):
            input_ids = jnp.asarray(input_ids)
            if attention_mask is not None:
                attention_mask = jnp.asarray(attention_mask)
            if positions is not None:
                positions = jnp.asarray(positions)
            return _jitted_forward(self, input_ids, attention_mask, positions, cache)
        hidden, cache = self.hidden_states(
            input_ids, attention_mask=attention_mask, positions=positions, cache=cache
        )
        logits = self.logits(hidden)
        return logits if cache is None else (logits, cache)

    def hidden_states(
        self,
        input_ids: jax.Array,
        *,
        attention_mask: jax.Array | None = None,
        positions: jax.Array | None = None,
        cache: KVCache | None = None,
    ) -> tuple[jax.Array, KVCache | None]:
        """Final-norm hidden states ``(batch, length, hidden)`` and the updated cache.

        Same arguments as calling the model; the output head is not applied.
        """
        input_ids = jnp.asarray(input_ids)
        b, t = input_ids.shape
        mask = jnp.ones((b, t), bool) if attention_mask is None else jnp.asarray(attention_mask) > 0
        start = jnp.zeros((b,), jnp.int32) if cache is None else cache.next_position
        if positions is None:
            positions = start[:, None] + jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
        positions = jnp.asarray(positions, jnp.int32)
        cos, sin = self._cos_sin(positions)
        if cache is None:
            index: jax.Array | int = 0
            key_mask = mask
            s = t
        else:
            index = cache.index
            key_mask = jax.lax.dynamic_update_slice(cache.mask, mask, (0, index))
            s = cache.max_length
        q_slot = index + jnp.arange(t)
        causal = jnp.arange(s)[None, :] <= q_slot[:, None]
        full_mask = causal[None] & key_mask[:, None, :]

        x = self.model.embed_tokens(input_ids)
        keys = values = None
        if cache is not None:
            keys, values = cache.keys, cache.values
        for i, layer in enumerate(self.model.layers):
            kv = None if cache is None else (keys, values, i)
            x, kv = layer(x, cos, sin, full_mask, kv, index)
            if kv is not None:
                keys, values, _ = kv
        x = self.model.norm(x)
        if cache is not None:
            cache = KVCache(
                keys=keys,
                values=values,
                mask=key_mask,
                index=jnp.asarray(index + t, jnp.int32),
                next_position=start + jnp.sum(mask, axis=1, dtype=jnp.int32),
            )
        return x, cache

    def block_outputs(
        self,
        input_ids: jax.Array,
        *,
        attention_mask: jax.Array | None = None,
        blocks: Sequence[int],
    ) -> list[jax.Array]:
        """Residual stream after each of ``blocks`` decoder blocks, in one forward without cache.

        ``0`` is the token embeddings, ``num_hidden_layers`` the last block's output (before the
        final norm). Only the blocks up to ``max(blocks)`` run. Positions and masking are those
        of :meth:`hidden_states` (right padding keeps real positions from 0).

        Args:
            input_ids: ``(batch, length)`` token ids.
            attention_mask: 1 = real token, 0 = pad.
            blocks: block counts, each in ``0 .. num_hidden_layers``.

        Returns:
            One ``(batch, length, hidden)`` array per entry of ``blocks``.

        Examples:
            >>> import jax.numpy as jnp
            >>> from flax import nnx
            >>> cfg = DecoderConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
            ...                     num_hidden_layers=2, num_attention_heads=2)
            >>> model = CausalLM(cfg, rngs=nnx.Rngs(0))
            >>> ids = jnp.ones((1, 4), jnp.int32)
            >>> last = model.block_outputs(ids, blocks=[2])[0]
            >>> bool(jnp.allclose(model.model.norm(last), model.hidden_states(ids)[0], atol=1e-6))
            True
        """
        n = self.config.num_hidden_layers
        blocks = [int(k) for k in blocks]
        if not blocks or min(blocks) < 0 or max(blocks) > n:
            raise InputError(f"blocks: each must be in 0..{n}, got {blocks}")
        input_ids = jnp.asarray(input_ids)
        b, t = input_ids.shape
        mask = jnp.ones((b, t), bool) if attention_mask is None else jnp.asarray(attention_mask) > 0
        positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0).astype(jnp.int32)
        cos, sin = self._cos_sin(positions)
        causal = jnp.arange(t)[None, :] <= jnp.arange(t)[:, None]
        full_mask = causal[None] & mask[:, None, :]
        x = self.model.embed_tokens(input_ids)
        outs = {0: x}
        for i, layer in enumerate(list(self.model.layers)[: max(blocks)]):
            x, _ = layer(x, cos, sin, full_mask, None, 0)
            outs[i + 1] = x
        return [outs[k] for k in blocks]

    def logits(self, hidden: jax.Array) -> jax.Array:
        """Apply the output head (tied embedding or ``lm_head``) to hidden states."""
        if self.config.tie_word_embeddings:
            return self.model.embed_tokens.attend(hidden)
        return self.lm_head(hidden)

    def init_cache(self, *, batch_size: int, max_length: int) -> KVCache:
        """An empty cache in the model's compute dtype (see :func:`init_cache`)."""
        return init_cache(
            self.config, batch_size=batch_size, max_length=max_length, dtype=self.dtype
        )

    def num_parameters(self) -> int:
        """Number of parameters actually held (adapters included)."""
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(self, nnx.Param)))


def resize_token_embeddings(model: CausalLM, vocab_size: int) -> CausalLM:
    """Grow (or shrink) the vocabulary of ``model`` in place, e.g. after adding special tokens.

    New rows of the input embedding (and of ``lm_head`` when untied) start at the mean of the
    existing rows (added markers begin as an "average" token); kept rows are
    unchanged. ``model.config.vocab_size`` is updated, so the model saves and reloads as usual.

    Args:
        model: the model.
        vocab_size: the new vocabulary size (``len(tokenizer)`` after adding tokens).

    Returns:
        ``model``.

    Examples:
        >>> from flax import nnx
        >>> from fusers.lm import DecoderConfig
        >>> cfg = DecoderConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
        ...                     num_hidden_layers=1, num_attention_heads=2)
        >>> model = resize_token_embeddings(CausalLM(cfg, rngs=nnx.Rngs(0)), 35)
        >>> model.model.embed_tokens.embedding[...].shape, model.config.vocab_size
        ((35, 16), 35)
    """
    old = model.config.vocab_size
    if vocab_size < 1:
        raise InputError(f"vocab_size: must be positive, got {vocab_size}")

    def grow(table: jax.Array) -> jax.Array:  # rows are tokens
        if vocab_size <= old:
            return table[:vocab_size]
        mean = jnp.mean(table.astype(jnp.float32), axis=0, keepdims=True).astype(table.dtype)
        return jnp.concatenate([table, jnp.repeat(mean, vocab_size - old, axis=0)], axis=0)

    embed = model.model.embed_tokens
    new_embed = nnx.eval_shape(
        lambda: nnx.Embed(vocab_size, embed.features, dtype=embed.dtype,
                          param_dtype=embed.param_dtype, rngs=nnx.Rngs(0))
    )  # fmt: skip
    new_embed.embedding = nnx.Param(grow(embed.embedding[...]))
    model.model.embed_tokens = new_embed
    if not model.config.tie_word_embeddings:
        head = model.lm_head
        new_kernel = grow(head.kernel[...].T).T
        head.kernel = nnx.Param(new_kernel)
        head.out_features = vocab_size
    model.config = model.config.replace(vocab_size=vocab_size)
    return model
