"""The H3Fusion mixture of experts: every FFN becomes a routed block of aligned experts.

Expert ``k`` of a layer is the base SwiGLU FFN plus adapter ``k``'s low-rank delta on its
``gate``, ``up`` and ``down`` projections. The base kernels are held once (shared by all
experts); the deltas stay factored, so the block costs one base FFN plus ``E`` rank-``r``
corrections. Attention, embeddings, norms and the output head are the base model's.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ensembles.util import InputError

from .. import lm
from ..lm._model import _activation

__all__ = [
    "PROJECTIONS",
    "Adapter",
    "ExpertDelta",
    "H3Flags",
    "MoEFFN",
    "RouterParam",
    "build_moe",
    "moe_blocks",
    "read_adapter",
    "router_logits",
    "set_recording",
]

#: The FFN projections an expert adapts, in the order they are stored.
PROJECTIONS: tuple[str, ...] = ("gate_proj", "up_proj", "down_proj")


@dataclasses.dataclass(frozen=True)
class H3Flags:
    """The switches where the reference code and the fixed defaults differ.

    Every field defaults to the fixed behaviour; :meth:`faithful` gives the reference's.

    Attributes:
        top_k: experts kept per token (the reference hard-codes 2 whatever its flag says).
        honour_top_k: use ``top_k``; ``False`` reproduces the reference (always 2).
        delta_scale: ``"alpha_over_r"`` adds ``(alpha / r) · A B`` to each expert (what the
            adapter was trained with); ``"none"`` adds ``A B`` (the reference: twice the delta
            when ``alpha / r = 0.5``).
        train_router: the router trains in the alignment stage (the reference freezes it at its
            random initialisation).
        gate_loss: ``"nll"`` (``-log p̄[y]`` over real tokens) or ``"ce_on_probs"`` (softmax
            cross-entropy treating ``p̄`` as logits, pads included).
        regularizer: ``"delta"`` (squared norm of each expert's scaled alignment-stage delta) or
            ``"param_norm"`` (un-squared norms of every tensor of the expert, the frozen merged
            weight included).
        labels: ``"per_dataset"`` (one task label per source set) or ``"cumulative"`` (the
            reference's labels built from cumulative lengths).

    Examples:
        >>> H3Flags().gate_loss, H3Flags.faithful().gate_loss
        ('nll', 'ce_on_probs')
        >>> H3Flags.faithful().effective_top_k(3)
        2
    """

    top_k: int = 2
    honour_top_k: bool = True
    delta_scale: str = "alpha_over_r"
    train_router: bool = True
    gate_loss: str = "nll"
    regularizer: str = "delta"
    labels: str = "per_dataset"

    def __post_init__(self) -> None:
        choices = {
            "delta_scale": ("alpha_over_r", "none"),
            "gate_loss": ("nll", "ce_on_probs"),
            "regularizer": ("delta", "param_norm"),
            "labels": ("per_dataset", "cumulative"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InputError(
                    f"{name}: one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise InputError(f"top_k: a positive integer, got {self.top_k!r}")

    @classmethod
    def faithful(cls, **overrides: Any) -> H3Flags:
        """The reference code's behaviour on every switch (``overrides`` change single ones)."""
        base = dict(
            honour_top_k=False,
            delta_scale="none",
            train_router=False,
            gate_loss="ce_on_probs",
            regularizer="param_norm",
            labels="cumulative",
        )
        return cls(**{**base, **overrides})

    def effective_top_k(self, num_experts: int) -> int:
        """Experts kept per token for ``num_experts`` experts."""
        k = self.top_k if self.honour_top_k else 2
        return max(1, min(k, num_experts))

    def to_dict(self) -> dict[str, Any]:
        """The flags as a JSON-able dict."""
        return dataclasses.asdict(self)


class RouterParam(nnx.Param):
    """Variable type of the router weights (a subclass of ``nnx.Param``).

    Examples:
        >>> isinstance(RouterParam(jnp.zeros(2)), nnx.Param)
        True
    """


class ExpertDelta(nnx.Variable):
    """Variable type of the experts' frozen low-rank deltas (not an ``nnx.Param``: never trained).

    Examples:
        >>> isinstance(ExpertDelta(jnp.zeros(2)), nnx.Param)
        False
    """


class RouterLogits(nnx.Intermediate):
    """Router logits sown by a :class:`MoEFFN` while recording (``(batch, length, experts)``)."""


@dataclasses.dataclass(frozen=True)
class Adapter:
    """One expert's LoRA factors on the FFN projections of every layer.

    Attributes:
        factors: ``{(layer, projection): (A, B)}`` with ``A`` of shape ``(in, r)`` and ``B`` of
            shape ``(r, out)`` (the delta is ``scaling · A B``).
        scaling: ``alpha / r`` the adapter was trained with.
        name: a label (e.g. the goal).

    Examples:
        >>> a = Adapter({(0, "up_proj"): (np.zeros((4, 2)), np.zeros((2, 6)))}, 0.5)
        >>> a.rank
        2
    """

    factors: Mapping[tuple[int, str], tuple[np.ndarray, np.ndarray]]
    scaling: float
    name: str = ""

    @property
    def rank(self) -> int:
        """The adapter rank (that of its first factor)."""
        return int(next(iter(self.factors.values()))[0].shape[1])

    @classmethod
    def from_model(cls, model: Any, *, name: str = "") -> Adapter:
        """Read the FFN adapters of a model wrapped by :func:`fusers.lm.apply_lora`.

        Examples:
            >>> cfg = lm.DecoderConfig(vocab_size=16, hidden_size=8, intermediate_size=16,
            ...                        num_hidden_layers=1, num_attention_heads=2)
            >>> m = lm.apply_lora(lm.CausalLM(cfg, rngs=nnx.Rngs(0)), targets=PROJECTIONS,
            ...                   rank=2, alpha=4.0, rngs=nnx.Rngs(1))
            >>> sorted(Adapter.from_model(m).factors)[0], Adapter.from_model(m).scaling
            ((0, 'down_proj'), 2.0)
        """
        factors: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
        scales = set()
        for path, mod in lm.lora_modules(model).items():
            layer, proj = _layer_proj(path)
            if proj is None:
                continue
            a = np.asarray(mod.lora_a[...], np.float32)
            b = np.asarray(mod.lora_b[...], np.float32)
            factors[(layer, proj)] = (a, b)
            scales.add(mod.scaling)
        if not factors:
            raise InputError("model: no LoRA adapter on gate_proj, up_proj or down_proj")
        if len(scales) > 1:
            raise InputError(f"model: adapters with different scalings {sorted(scales)}")
        return cls(factors, float(scales.pop()), name)


def _layer_proj(path: str) -> tuple[int, str | None]:
    parts = path.split(".")
    if "layers" not in parts or parts[-1] not in PROJECTIONS:
        return -1, None
    return int(parts[parts.index("layers") + 1]), parts[-1]


def read_adapter(path: str | os.PathLike, *, name: str = "") -> Adapter:
    """Read FFN adapters saved by :func:`fusers.lm.save_adapters` (PEFT layout).

    Args:
        path: folder with ``adapter_config.json`` and ``adapter_model.safetensors``.
        name: label of the expert.

    Returns:
        The :class:`Adapter`.

    Raises:
        InputError: missing files, or no FFN adapter in them.

    Examples:
        >>> import tempfile
        >>> cfg = lm.DecoderConfig(vocab_size=16, hidden_size=8, intermediate_size=16,
        ...                        num_hidden_layers=1, num_attention_heads=2)
        >>> m = lm.apply_lora(lm.CausalLM(cfg, rngs=nnx.Rngs(0)), targets=PROJECTIONS,
        ...                   rank=2, alpha=4.0, rngs=nnx.Rngs(1))
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = lm.save_adapters(m, d)
        ...     a = read_adapter(d)
        >>> len(a.factors), a.scaling
        (3, 2.0)
    """
    from safetensors.numpy import load_file

    root = Path(path)
    cfg_path, w_path = root / "adapter_config.json", root / "adapter_model.safetensors"
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise InputError(f"{root}: {p.name} is missing (not an adapter folder)")
    config = json.loads(cfg_path.read_text())
    tensors = load_file(str(w_path))
    factors: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
    for key, value in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[: -len(".lora_A.weight")]
        layer, proj = _layer_proj(module)
        if proj is None:
            continue
        b_key = module + ".lora_B.weight"
        if b_key not in tensors:
            raise InputError(f"{w_path}: tensor {b_key} is missing")
        factors[(layer, proj)] = (
            np.asarray(value, np.float32).T,
            np.asarray(tensors[b_key], np.float32).T,
        )
    if not factors:
        raise InputError(f"{w_path}: no adapter on gate_proj, up_proj or down_proj")
    return Adapter(factors, float(config["lora_alpha"]) / float(config["r"]), name or root.name)


class MoEFFN(nnx.Module):
    """A routed FFN block: ``E`` experts sharing the base kernels, each with its own delta.

    For a token ``x``: router logits ``l = x W_g + b`` (float32), ``p = softmax(l)``; the
    ``top_k`` largest probabilities are kept and renormalised to sum to 1 (the others weigh 0);
    the output is ``Σ_e w_e · down_e(act(gate_e(x)) ⊙ up_e(x))`` where projection ``P`` of
    expert ``e`` is ``x W_P + s · (x A_Pe) B_Pe`` (``s`` the delta scale) plus, once
    :meth:`add_lora` was called, a trainable ``(alpha / r) · (dropout(x) A'_Pe) B'_Pe``.
    Because the down projection is linear and the weights sum to 1, its shared base matmul is
    applied once to ``Σ_e w_e h_e``; the result is the weighted sum of the full experts.

    Args:
        mlp: the base model's SwiGLU block (its three ``nnx.Linear`` are reused, not copied).
        deltas: per projection, the stacked factors ``(A (E, in, r), B (E, r, out))``.
        scale: the factor ``s`` of the deltas.
        top_k: experts kept per token.
        activation: the FFN activation name.
        rngs: random streams (``params`` for the router).

    Attributes:
        router: ``RouterParam`` ``(hidden, E)``, initialised N(0, 0.02²).
        router_bias: a frozen ``(E,)`` offset, 0 unless set (forces routing in tests).
        record: when true, calls sow their router logits (see :func:`router_logits`).

    Examples:
        >>> cfg = lm.DecoderConfig(vocab_size=16, hidden_size=8, intermediate_size=16,
        ...                        num_hidden_layers=1, num_attention_heads=2)
        >>> base = lm.CausalLM(cfg, rngs=nnx.Rngs(0))
        >>> z = (np.zeros((3, 8, 2), np.float32), np.zeros((3, 2, 16), np.float32))
        >>> deltas = {"gate_proj": z, "up_proj": z,
        ...           "down_proj": (np.zeros((3, 16, 2)), np.zeros((3, 2, 8)))}
        >>> block = MoEFFN(base.model.layers[0].mlp, deltas, scale=0.5, top_k=2,
        ...                activation="silu", rngs=nnx.Rngs(1))
        >>> block(jnp.ones((1, 2, 8))).shape
        (1, 2, 8)
    """

    def __init__(
        self,
        mlp: Any,
        deltas: Mapping[str, tuple[Any, Any]],
        *,
        scale: float,
        top_k: int,
        activation: str,
        rngs: nnx.Rngs,
    ) -> None:
        self.gate_proj = mlp.gate_proj
        self.up_proj = mlp.up_proj
        self.down_proj = mlp.down_proj
        pdtype = self.gate_proj.kernel[...].dtype
        num = None
        for proj in PROJECTIONS:
            a, b = deltas[proj]
            a, b = jnp.asarray(a, pdtype), jnp.asarray(b, pdtype)
            if num is None:
                num = a.shape[0]
            if a.shape[0] != num or b.shape[0] != num:
                raise InputError(f"{proj}: every projection needs the same number of experts")
            setattr(self, f"{proj}_a", ExpertDelta(a))
            setattr(self, f"{proj}_b", ExpertDelta(b))
        assert num is not None
        self.num_experts = int(num)
        hidden = self.gate_proj.in_features
        init = 0.02 * jax.random.normal(rngs.params(), (hidden, self.num_experts), jnp.float32)
        self.router = RouterParam(init.astype(pdtype))
        self.router_bias = nnx.Variable(jnp.zeros((self.num_experts,), jnp.float32))
        self.scale = float(scale)
        self.top_k = int(top_k)
        self.activation = activation
        self.record = False
        self.lora_rank = 0
        self.lora_scaling = 0.0

    # ------------------------------------------------------------------ alignment-stage LoRA
    def add_lora(self, *, rank: int, alpha: float, dropout: float, rngs: nnx.Rngs) -> None:
        """Add trainable LoRA factors (``A`` uniform ±1/sqrt(in), ``B`` zero) to every expert's
        three projections."""
        pdtype = self.gate_proj.kernel[...].dtype
        for proj in PROJECTIONS:
            lin = getattr(self, proj)
            n_in, n_out = lin.in_features, lin.out_features
            bound = 1.0 / np.sqrt(n_in)
            a = jax.random.uniform(
                rngs.params(), (self.num_experts, n_in, rank), jnp.float32, -bound, bound
            )
            setattr(self, f"{proj}_lora_a", lm.LoRAParam(a.astype(pdtype)))
            setattr(
                self,
                f"{proj}_lora_b",
                lm.LoRAParam(jnp.zeros((self.num_experts, rank, n_out), pdtype)),
            )
        self.lora_rank = int(rank)
        self.lora_scaling = float(alpha) / float(rank)
        self.lora_dropout = nnx.Dropout(dropout, rngs=rngs)

    def lora_deltas(self) -> dict[str, jax.Array]:
        """Per projection, the experts' dense alignment-stage deltas ``(E, in, out)`` (float32);
        empty before :meth:`add_lora`."""
        if not self.lora_rank:
            return {}
        out = {}
        for proj in PROJECTIONS:
            a = getattr(self, f"{proj}_lora_a")[...].astype(jnp.float32)
            b = getattr(self, f"{proj}_lora_b")[...].astype(jnp.float32)
            out[proj] = self.lora_scaling * jnp.einsum("eir,ero->eio", a, b)
        return out

    def expert_kernels(self, *, lora: bool = True) -> dict[str, jax.Array]:
        """Per projection, the merged kernels of every expert ``(E, in, out)`` (float32):
        base + scaled stage-one delta (+ the alignment-stage delta when ``lora``)."""
        out = {}
        lora = self.lora_deltas() if lora else {}
        for proj in PROJECTIONS:
            w = getattr(self, proj).kernel[...].astype(jnp.float32)
            a = getattr(self, f"{proj}_a")[...].astype(jnp.float32)
            b = getattr(self, f"{proj}_b")[...].astype(jnp.float32)
            k = w[None] + self.scale * jnp.einsum("eir,ero->eio", a, b)
            out[proj] = k + lora[proj] if proj in lora else k
        return out

    # ------------------------------------------------------------------ forward
    def routing(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Router logits ``(..., E)`` (float32) and the top-k mixing weights ``(..., E)``."""
        logits = x.astype(jnp.float32) @ self.router[...].astype(jnp.float32)
        logits = logits + self.router_bias[...]
        probs = jax.nn.softmax(logits, axis=-1)
        k = min(self.top_k, self.num_experts)
        if k >= self.num_experts:
            weights = probs
        else:
            top, idx = jax.lax.top_k(probs, k)
            top = top / jnp.sum(top, axis=-1, keepdims=True)
            onehot = jax.nn.one_hot(idx, self.num_experts, dtype=probs.dtype)
            weights = jnp.einsum("...k,...ke->...e", top, onehot)
        return logits, weights

    def _project(self, proj: str, x: jax.Array, base: jax.Array, per_expert: bool) -> jax.Array:
        """Base output (already computed) plus each expert's low-rank corrections.

        ``x`` is ``(B, T, in)`` when shared by the experts, else ``(B, T, E, in)``.
        """
        dtype = base.dtype
        a = getattr(self, f"{proj}_a")[...].astype(dtype)
        b = getattr(self, f"{proj}_b")[...].astype(dtype)
        if per_expert:
            low = jnp.einsum("btei,eir->bter", x, a)
        else:
            low = jnp.einsum("bti,eir->bter", x, a)
        out = base + self.scale * jnp.einsum("bter,ero->bteo", low, b)
        if self.lora_rank:
            la = getattr(self, f"{proj}_lora_a")[...].astype(dtype)
            lb = getattr(self, f"{proj}_lora_b")[...].astype(dtype)
            h = self.lora_dropout(x)
            spec = "btei,eir->bter" if per_expert else "bti,eir->bter"
            out = out + self.lora_scaling * jnp.einsum(
                "bter,ero->bteo", jnp.einsum(spec, h, la), lb
            )
        return out

    def __call__(self, x: jax.Array) -> jax.Array:
        logits, weights = self.routing(x)
        if self.record:
            self.router_logits = RouterLogits(logits)
        dtype = self.gate_proj.dtype or x.dtype
        gate = self._project("gate_proj", x, self.gate_proj(x)[:, :, None], False)
        up = self._project("up_proj", x, self.up_proj(x)[:, :, None], False)
        hidden = _activation(self.activation)(gate) * up  # (B, T, E, F)
        w = weights.astype(dtype)[..., None]
        mixed = jnp.sum(w * hidden, axis=2)
        out = self.down_proj(mixed)  # shared base kernel (and bias) once: Σ w = 1
        corr = self._project("down_proj", hidden, jnp.zeros((), dtype), True)
        return out + jnp.sum(w * corr, axis=2).astype(out.dtype)


def moe_blocks(model: Any) -> list[MoEFFN]:
    """The :class:`MoEFFN` blocks of a model, by layer.

    Examples:
        >>> moe_blocks(lm.CausalLM(lm.DecoderConfig(vocab_size=16, hidden_size=8,
        ...     intermediate_size=16, num_hidden_layers=1, num_attention_heads=2),
        ...     rngs=nnx.Rngs(0)))
        []
    """
    return [layer.mlp for layer in model.model.layers if isinstance(layer.mlp, MoEFFN)]


def set_recording(model: Any, on: bool) -> Any:
    """Switch the sowing of router logits on or off in every block (returns ``model``).

    Examples:
        >>> set_recording(lm.CausalLM(lm.DecoderConfig(vocab_size=16, hidden_size=8,
        ...     intermediate_size=16, num_hidden_layers=1, num_attention_heads=2),
        ...     rngs=nnx.Rngs(0)), True).__class__.__name__
        'CausalLM'
    """
    for block in moe_blocks(model):
        block.record = bool(on)
    return model


def router_logits(model: Any) -> jax.Array:
    """Pop the router logits sown by the last recorded call: ``(layers, batch, length, E)``.

    Call ``set_recording(model, True)`` first, then the model, then this (the sown values are
    removed, so the next call starts empty).

    Raises:
        InputError: nothing was recorded.

    Examples:
        >>> router_logits(lm.CausalLM(lm.DecoderConfig(vocab_size=16, hidden_size=8,
        ...     intermediate_size=16, num_hidden_layers=1, num_attention_heads=2),
        ...     rngs=nnx.Rngs(0)))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ensembles.util.InputError: model: no router logits recorded ...
    """
    blocks = moe_blocks(model)
    values = []
    for block in blocks:
        var = getattr(block, "router_logits", None)
        if var is None:
            break
        values.append(var.get_value())
        del block.router_logits
    if not blocks or len(values) != len(blocks):
        raise InputError(
            "model: no router logits recorded (set_recording(model, True) and call the model first)"
        )
    return jnp.stack(values)


def build_moe(
    base: Any,
    adapters: Sequence[Adapter],
    *,
    flags: H3Flags | None = None,
    shared: Any = None,
    seed: int = 0,
) -> Any:
    """Turn ``base`` into the H3Fusion mixture of ``len(adapters)`` experts, in place.

    Every layer's ``mlp`` becomes a :class:`MoEFFN` whose expert ``k`` adds adapter ``k``'s
    delta, scaled by its ``alpha / r`` (``flags.delta_scale="alpha_over_r"``) or not at all
    (``"none"``), to the base FFN; ``flags.effective_top_k`` experts are kept per token; a
    router per layer starts N(0, 0.02²) from ``seed``. Attention, embeddings, norms and head
    stay the base model's, or, with ``shared`` (e.g. a chat variant of the base), are copied
    from that model (the reference took them from the chat model while its experts were
    trained on the base).

    Args:
        base: a :class:`fusers.lm.CausalLM` without adapters (modified in place).
        adapters: one :class:`Adapter` per expert, each covering every layer's three FFN
            projections (a missing projection counts as a zero delta).
        flags: the switches (:class:`H3Flags`).
        shared: optional model of the same architecture giving the non-FFN weights.
        seed: seed of the router initialisation.

    Returns:
        ``base``, now the mixture.

    Raises:
        InputError: no adapters, adapters of different ranks or shapes, or a ``shared`` model
            of another architecture.

    Examples:
        >>> cfg = lm.DecoderConfig(vocab_size=16, hidden_size=8, intermediate_size=16,
        ...                        num_hidden_layers=2, num_attention_heads=2)
        >>> experts = []
        >>> for k in range(3):
        ...     m = lm.apply_lora(lm.CausalLM(cfg, rngs=nnx.Rngs(0)), targets=PROJECTIONS,
        ...                       rank=2, alpha=1.0, rngs=nnx.Rngs(k + 1))
        ...     experts.append(Adapter.from_model(m))
        >>> moe = build_moe(lm.CausalLM(cfg, rngs=nnx.Rngs(0)), experts)
        >>> len(moe_blocks(moe)), moe_blocks(moe)[0].num_experts, moe_blocks(moe)[0].top_k
        (2, 3, 2)
    """
    flags = H3Flags() if flags is None else flags
    if not adapters:
        raise InputError("adapters: need at least one expert")
    ranks = {a.rank for a in adapters}
    if len(ranks) > 1:
        raise InputError(f"adapters: all experts need the same rank, got {sorted(ranks)}")
    rank = ranks.pop()
    scales = {a.scaling for a in adapters}
    if flags.delta_scale == "alpha_over_r" and len(scales) > 1:
        raise InputError(f"adapters: different alpha / r scalings {sorted(scales)}")
    scale = float(scales.pop()) if flags.delta_scale == "alpha_over_r" else 1.0
    cfg = base.config
    if lm.lora_modules(base):
        raise InputError("base: remove (or merge) its LoRA adapters before building the mixture")
    if moe_blocks(base):
        raise InputError("base: already a mixture")
    if shared is not None:
        _copy_shared(base, shared)
    rngs = nnx.Rngs(params=seed)
    top_k = flags.effective_top_k(len(adapters))
    for i, layer in enumerate(base.model.layers):
        deltas = {}
        for proj in PROJECTIONS:
            lin = getattr(layer.mlp, proj)
            n_in, n_out = lin.in_features, lin.out_features
            a_all, b_all = [], []
            for adapter in adapters:
                a, b = adapter.factors.get(
                    (i, proj), (np.zeros((n_in, rank), np.float32), np.zeros((rank, n_out)))
                )
                if a.shape != (n_in, rank) or b.shape != (rank, n_out):
                    raise InputError(
                        f"adapter {adapter.name or '?'}: layer {i} {proj} has shapes "
                        f"{a.shape} and {b.shape}, expected {(n_in, rank)} and {(rank, n_out)}"
                    )
                a_all.append(a)
                b_all.append(b)
            deltas[proj] = (np.stack(a_all), np.stack(b_all))
        layer.mlp = MoEFFN(
            layer.mlp, deltas, scale=scale, top_k=top_k, activation=cfg.hidden_act, rngs=rngs
        )
    return base


def _copy_shared(base: Any, shared: Any) -> None:
    """Copy every non-FFN weight of ``shared`` into ``base`` (same architecture)."""
    if shared.config != base.config:
        raise InputError("shared: a model of another architecture than the base")
    src = nnx.state(shared, nnx.Param)
    dst = nnx.state(base, nnx.Param)
    flat_src = dict(nnx.to_flat_state(src))
    new = []
    for path, var in nnx.to_flat_state(dst):
        if "mlp" in path:
            new.append((path, var))
            continue
        if path not in flat_src:
            raise InputError(f"shared: no weight {'.'.join(map(str, path))}")
        var = var.replace(jnp.asarray(flat_src[path][...], var[...].dtype))
        new.append((path, var))
    nnx.update(base, nnx.from_flat_state(new))
