"""Decoder configuration: a hashable mirror of the transformers config classes we support."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from ensembles.util import InputError

__all__ = ["SUPPORTED_MODEL_TYPES", "DecoderConfig"]

#: ``model_type`` values of ``config.json`` that :class:`DecoderConfig` reads and writes.
SUPPORTED_MODEL_TYPES: tuple[str, ...] = ("llama", "mistral", "qwen2")

_ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3", "longrope")
_ACTIVATIONS = ("silu", "gelu", "gelu_pytorch_tanh", "relu")


def _freeze(value: Any) -> Any:
    """Turn dicts and lists into sorted tuples so the value is hashable."""
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, int):
        return (int(value),)
    return tuple(int(v) for v in value)


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """Architecture of a Llama / Mistral / Qwen2 decoder-only transformer.

    A frozen, hashable dataclass (so it can be a static argument of ``jax.jit``) holding what the
    Flax model needs from the transformers configuration classes ``LlamaConfig``,
    ``MistralConfig`` and ``Qwen2Config``. Field names follow transformers. Build one directly,
    from a transformers config (:meth:`from_hf`) or from a ``config.json`` dictionary
    (:meth:`from_dict`); :meth:`to_hf` goes back.

    Args:
        model_type: ``"llama"``, ``"mistral"`` or ``"qwen2"`` (decides the default biases and the
            transformers class used on save).
        vocab_size: number of token embeddings.
        hidden_size: model width.
        intermediate_size: SwiGLU hidden width.
        num_hidden_layers: number of decoder blocks.
        num_attention_heads: query heads.
        num_key_value_heads: key/value heads (grouped-query attention when fewer than the query
            heads); ``None`` means as many as the query heads.
        head_dim: per-head width; ``None`` means ``hidden_size // num_attention_heads``.
        rms_norm_eps: epsilon of every RMSNorm.
        max_position_embeddings: the context length the rotary scaling refers to.
        rope_theta: rotary base.
        rope_scaling: the rotary options of transformers' ``rope_parameters`` other than
            ``rope_theta`` (``rope_type`` one of ``default``, ``linear``, ``dynamic``, ``yarn``,
            ``llama3``, ``longrope``, with their keys), stored as a sorted tuple of items.
        tie_word_embeddings: the output projection reuses the input embedding matrix.
        attention_bias: bias on the q/k/v projections (Qwen2: always; Llama: ``attention_bias``).
        attention_out_bias: bias on the output projection (Llama's ``attention_bias`` sets both).
        mlp_bias: bias on the SwiGLU projections (Llama's ``mlp_bias``).
        hidden_act: activation of the gate projection (``silu`` for all three families).
        sliding_windows: per layer, the sliding-window size (a token attends to itself and the
            ``window - 1`` previous tokens) or ``None`` for full causal attention.
        initializer_range: standard deviation of the random initialisation.
        bos_token_id: beginning-of-sequence id or ``None``.
        eos_token_ids: end-of-sequence ids (possibly several).
        pad_token_id: padding id or ``None``.
        extra_json: the other keys of the source ``config.json`` (as JSON text), written back on
            save so that a round trip keeps them.

    Examples:
        >>> cfg = DecoderConfig(vocab_size=256, hidden_size=64, intermediate_size=128,
        ...                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
        >>> cfg.head_dim, cfg.rope_type, cfg.num_key_value_groups
        (16, 'default', 2)
        >>> DecoderConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    model_type: str = "llama"
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    rope_scaling: tuple[tuple[str, Any], ...] = ()
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    attention_out_bias: bool = False
    mlp_bias: bool = False
    hidden_act: str = "silu"
    sliding_windows: tuple[int | None, ...] | None = None
    initializer_range: float = 0.02
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None
    extra_json: str = dataclasses.field(default="{}", compare=False, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.num_key_value_heads is None:
            set_(self, "num_key_value_heads", self.num_attention_heads)
        if self.head_dim is None:
            set_(self, "head_dim", self.hidden_size // self.num_attention_heads)
        if self.sliding_windows is None:
            set_(self, "sliding_windows", (None,) * self.num_hidden_layers)
        rope = dict(self.rope_scaling)
        rope.setdefault("rope_type", "default")
        set_(self, "rope_scaling", _freeze(rope))
        set_(self, "eos_token_ids", _ids(self.eos_token_ids))
        self.validate()

    # ------------------------------------------------------------------ checks and derived values
    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when the configuration cannot be built."""
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise InputError(
                f"model_type: unsupported architecture {self.model_type!r}; supported are "
                f"{', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise InputError(
                f"num_key_value_heads: {self.num_key_value_heads} does not divide "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.head_dim % 2:
            raise InputError(
                f"head_dim: rotary embeddings need an even head_dim, got {self.head_dim}"
            )
        if len(self.sliding_windows) != self.num_hidden_layers:
            raise InputError(
                f"sliding_windows: {len(self.sliding_windows)} entries for "
                f"{self.num_hidden_layers} layers"
            )
        if self.hidden_act not in _ACTIVATIONS:
            raise InputError(
                f"hidden_act: unsupported activation {self.hidden_act!r}; supported are "
                f"{', '.join(_ACTIVATIONS)}"
            )
        if self.rope_type not in _ROPE_TYPES:
            raise InputError(
                f"rope_parameters: unsupported rope_type {self.rope_type!r}; supported are "
                f"{', '.join(_ROPE_TYPES)}"
            )
        prf = self.rope_dict.get("partial_rotary_factor", 1.0)
        if prf not in (None, 1, 1.0):
            raise InputError(f"rope_parameters: partial_rotary_factor {prf} is not supported")

    @property
    def rope_dict(self) -> dict[str, Any]:
        """The rotary options as a plain dictionary (``rope_type`` included)."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in self.rope_scaling}
        out.setdefault("rope_type", "default")
        return out

    @property
    def rope_type(self) -> str:
        """The rotary variant (``"default"`` when no scaling is configured)."""
        return dict(self.rope_scaling).get("rope_type", "default")

    @property
    def num_key_value_groups(self) -> int:
        """Query heads per key/value head."""
        return self.num_attention_heads // self.num_key_value_heads

    def num_parameters(self, *, include_embeddings: bool = True) -> int:
        """Parameter count of the model this configuration builds.

        Args:
            include_embeddings: count the input embedding (and the output projection when untied).
        """
        h, d = self.hidden_size, self.head_dim
        q, kv = self.num_attention_heads * d, self.num_key_value_heads * d
        attn = h * q + 2 * h * kv + q * h
        attn += (q + 2 * kv) * self.attention_bias + h * self.attention_out_bias
        mlp = 3 * h * self.intermediate_size
        mlp += (2 * self.intermediate_size + h) * self.mlp_bias
        per_layer = attn + mlp + 2 * h
        total = self.num_hidden_layers * per_layer + h
        if include_embeddings:
            total += self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        elif not self.tie_word_embeddings:
            total += self.vocab_size * h
        return total

    def flops_per_token(self, *, context: int) -> float:
        """Forward FLOPs for one token attending to ``context`` tokens (2 per multiply-add).

        Counts every matrix product (projections, SwiGLU, output head) and the two attention
        products; element-wise work is left out, as in the usual model-FLOPs utilisation figure.
        """
        matmul_params = self.num_parameters(include_embeddings=False) - (
            self.num_hidden_layers * 2 * self.hidden_size + self.hidden_size
        )
        if self.tie_word_embeddings:
            matmul_params += self.vocab_size * self.hidden_size
        attn = 2 * 2 * self.num_hidden_layers * self.num_attention_heads * self.head_dim * context
        return 2.0 * matmul_params + attn

    # ------------------------------------------------------------------ rotary frequencies
    def rope_frequencies(self) -> tuple[np.ndarray, float]:
        """Static inverse frequencies ``(head_dim // 2,)`` (float32) and the cos/sin scale.

        For ``dynamic`` and ``longrope`` these are the frequencies of sequences no longer than
        ``max_position_embeddings``; the model switches at run time, as transformers does.
        """
        return _rope_frequencies(self, seq_len=None)

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_hf(cls, hf_config: Any) -> DecoderConfig:
        """Build from a transformers ``LlamaConfig`` / ``MistralConfig`` / ``Qwen2Config``.

        Raises:
            ValueError: unsupported ``model_type`` or options.
        """
        return cls.from_dict(hf_config.to_dict())

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DecoderConfig:
        """Build from the dictionary of a ``config.json`` file.

        Raises:
            ValueError: unsupported ``model_type``, missing keys or unsupported options.
        """
        raw = dict(raw)
        model_type = raw.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise InputError(
                f"model_type: unsupported architecture {model_type!r}; supported are "
                f"{', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers")
        missing = [k for k in required + ("num_attention_heads",) if raw.get(k) is None]
        if missing:
            raise InputError(f"config: missing keys {', '.join(missing)}")
        rope = dict(raw.get("rope_parameters") or raw.get("rope_scaling") or {})
        if "type" in rope and "rope_type" not in rope:
            rope["rope_type"] = rope.pop("type")
        rope_theta = float(rope.pop("rope_theta", raw.get("rope_theta", 10000.0)))
        rope.setdefault("rope_type", "default")
        if rope["rope_type"] in ("llama3", "yarn", "longrope"):
            rope.setdefault(
                "original_max_position_embeddings",
                raw.get("original_max_position_embeddings", raw.get("max_position_embeddings")),
            )
        n_layers = int(raw["num_hidden_layers"])
        if model_type == "qwen2":
            qkv_bias, out_bias, mlp_bias = True, False, False
            window = raw.get("sliding_window") if raw.get("use_sliding_window") else None
            layer_types = raw.get("layer_types") or [
                "sliding_attention"
                if window is not None and i >= int(raw.get("max_window_layers", 28))
                else "full_attention"
                for i in range(n_layers)
            ]
            windows = tuple(
                int(window) if t == "sliding_attention" and window is not None else None
                for t in layer_types
            )
        elif model_type == "mistral":
            qkv_bias = out_bias = mlp_bias = False
            window = raw.get("sliding_window")
            windows = (int(window) if window is not None else None,) * n_layers
        else:
            qkv_bias = out_bias = bool(raw.get("attention_bias", False))
            mlp_bias = bool(raw.get("mlp_bias", False))
            windows = (None,) * n_layers
        used = {
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "model_type",
            "rms_norm_eps",
            "max_position_embeddings",
            "rope_theta",
            "rope_parameters",
            "rope_scaling",
            "tie_word_embeddings",
            "attention_bias",
            "mlp_bias",
            "hidden_act",
            "initializer_range",
            "bos_token_id",
            "eos_token_id",
            "pad_token_id",
        }
        extra = {k: v for k, v in raw.items() if k not in used}
        return cls(
            model_type=model_type,
            vocab_size=int(raw["vocab_size"]),
            hidden_size=int(raw["hidden_size"]),
            intermediate_size=int(raw["intermediate_size"]),
            num_hidden_layers=n_layers,
            num_attention_heads=int(raw["num_attention_heads"]),
            num_key_value_heads=raw.get("num_key_value_heads"),
            head_dim=raw.get("head_dim"),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            max_position_embeddings=int(raw.get("max_position_embeddings", 2048)),
            rope_theta=rope_theta,
            rope_scaling=_freeze(rope),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            attention_bias=qkv_bias,
            attention_out_bias=out_bias,
            mlp_bias=mlp_bias,
            hidden_act=str(raw.get("hidden_act", "silu")),
            sliding_windows=windows,
            initializer_range=float(raw.get("initializer_range", 0.02)),
            bos_token_id=raw.get("bos_token_id"),
            eos_token_ids=_ids(raw.get("eos_token_id")),
            pad_token_id=raw.get("pad_token_id"),
            extra_json=json.dumps(extra, sort_keys=True),
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` dictionary of this configuration (transformers' key names).

        Raises:
            ValueError: a setting the target family cannot express (e.g. per-layer windows
                on Llama, or Qwen2 without q/k/v biases).
        """
        out: dict[str, Any] = json.loads(self.extra_json)
        rope = self.rope_dict
        rope["rope_theta"] = self.rope_theta
        eos: int | list[int] | None
        eos = list(self.eos_token_ids) if len(self.eos_token_ids) != 1 else self.eos_token_ids[0]
        if not self.eos_token_ids:
            eos = None
        out.update(
            model_type=self.model_type,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.head_dim,
            rms_norm_eps=self.rms_norm_eps,
            max_position_embeddings=self.max_position_embeddings,
            rope_parameters=rope,
            tie_word_embeddings=self.tie_word_embeddings,
            hidden_act=self.hidden_act,
            initializer_range=self.initializer_range,
            bos_token_id=self.bos_token_id,
            eos_token_id=eos,
            pad_token_id=self.pad_token_id,
        )
        windows = set(self.sliding_windows)
        if self.model_type == "llama":
            if self.attention_bias != self.attention_out_bias:
                raise InputError("attention_bias: Llama has one flag for q/k/v and o biases")
            if windows != {None}:
                raise InputError("sliding_windows: Llama has no sliding-window attention")
            out.update(attention_bias=self.attention_bias, mlp_bias=self.mlp_bias)
        else:
            want = self.model_type == "qwen2"
            if (self.attention_bias, self.attention_out_bias, self.mlp_bias) != (
                want,
                False,
                False,
            ):
                raise InputError(f"attention_bias: fixed by the {self.model_type} architecture")
            if self.model_type == "mistral":
                if len(windows) != 1:
                    raise InputError("sliding_windows: Mistral uses one window for every layer")
                out["sliding_window"] = next(iter(windows))
            else:
                real = sorted(w for w in windows if w is not None)
                if len(real) > 1:
                    raise InputError("sliding_windows: Qwen2 uses one window size")
                out["use_sliding_window"] = bool(real)
                if real:
                    out["sliding_window"] = real[0]
                out["layer_types"] = [
                    "full_attention" if w is None else "sliding_attention"
                    for w in self.sliding_windows
                ]
        arch = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}
        out.setdefault("architectures", [arch.get(self.model_type, "Qwen2ForCausalLM")])
        return out

    def to_hf(self) -> Any:
        """The equivalent transformers configuration object (``LlamaConfig`` etc.)."""
        from ._deps import require

        transformers = require("transformers")

        cls = {
            "llama": transformers.LlamaConfig,
            "mistral": transformers.MistralConfig,
            "qwen2": transformers.Qwen2Config,
        }[self.model_type]
        raw = self.to_dict()
        for key in ("transformers_version", "model_type"):
            raw.pop(key, None)
        return cls(**raw)

    def replace(self, **changes: Any) -> DecoderConfig:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


def _rope_frequencies(cfg: DecoderConfig, *, seq_len: int | None) -> tuple[np.ndarray, float]:
    """Inverse frequencies and attention factor, following transformers' ``modeling_rope_utils``.

    ``seq_len`` matters only for ``dynamic`` (handled in the model, traced) and ``longrope``.
    """
    p = cfg.rope_dict
    rope_type = p["rope_type"]
    base = np.float32(cfg.rope_theta)
    dim = cfg.head_dim
    exponents = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)
    inv_freq = (np.float32(1.0) / (base**exponents)).astype(np.float32)
    factor = p.get("factor")
    attention_factor = 1.0
    if rope_type == "linear":
        inv_freq = inv_freq / np.float32(factor)
    elif rope_type == "llama3":
        old_len = p["original_max_position_embeddings"]
        low, high = p["low_freq_factor"], p["high_freq_factor"]
        low_wavelen, high_wavelen = old_len / low, old_len / high
        wavelen = np.float32(2 * math.pi) / inv_freq
        scaled = np.where(wavelen > low_wavelen, inv_freq / np.float32(factor), inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        inv_freq = np.where(medium, smoothed, scaled).astype(np.float32)
    elif rope_type == "yarn":
        orig = p["original_max_position_embeddings"]
        if factor is None:
            factor = cfg.max_position_embeddings / orig

        def get_mscale(scale: float, mscale: float = 1.0) -> float:
            return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0

        attention_factor = p.get("attention_factor")
        mscale, mscale_all = p.get("mscale"), p.get("mscale_all_dim")
        if attention_factor is None:
            if mscale and mscale_all:
                attention_factor = get_mscale(factor, mscale) / get_mscale(factor, mscale_all)
            else:
                attention_factor = get_mscale(factor)
        beta_fast = p.get("beta_fast") or 32
        beta_slow = p.get("beta_slow") or 1

        def corr_dim(rot: float) -> float:
            return (dim * math.log(orig / (rot * 2 * math.pi))) / (2 * math.log(cfg.rope_theta))

        lo, hi = corr_dim(beta_fast), corr_dim(beta_slow)
        if p.get("truncate", True):
            lo, hi = math.floor(lo), math.ceil(hi)
        lo, hi = max(lo, 0), min(hi, dim - 1)
        if lo == hi:
            hi += 0.001
        ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - lo) / (hi - lo), 0, 1)
        extrap = (1 - ramp).astype(np.float32)
        pos_freqs = base ** (np.arange(0, dim, 2).astype(np.float32) / np.float32(dim))
        inv_extra = np.float32(1.0) / pos_freqs
        inv_inter = np.float32(1.0) / (np.float32(factor) * pos_freqs)
        inv_freq = (inv_inter * (1 - extrap) + inv_extra * extrap).astype(np.float32)
    elif rope_type == "longrope":
        orig = p["original_max_position_embeddings"]
        if factor is None:
            factor = cfg.max_position_embeddings / orig
        attention_factor = p.get("attention_factor")
        if attention_factor is None:
            attention_factor = (
                1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
            )
        use_long = seq_len is not None and seq_len > orig
        ext = np.asarray(p["long_factor" if use_long else "short_factor"], dtype=np.float32)
        inv_freq = (np.float32(1.0) / (ext * base**exponents)).astype(np.float32)
    return inv_freq.astype(np.float32), float(attention_factor)
