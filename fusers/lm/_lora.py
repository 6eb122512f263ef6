"""LoRA adapters on chosen linear projections: apply, merge, save and load (PEFT layout)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ensembles.util import InputError

__all__ = [
    "LoRALinear",
    "LoRAParam",
    "apply_lora",
    "load_adapters",
    "lora_modules",
    "merge_lora",
    "save_adapters",
]


class LoRAParam(nnx.LoRAParam):
    """Variable type of LoRA adapter weights (a subclass of ``nnx.LoRAParam``, so of ``nnx.Param``).

    ``nnx.Optimizer(model, tx, wrt=LoRAParam)`` trains only the adapters;
    ``nnx.All(nnx.Param, nnx.Not(LoRAParam))`` selects the base weights.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> isinstance(LoRAParam(jnp.zeros(2)), nnx.Param)
        True
    """


ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
_PREFIX = "base_model.model."


class LoRALinear(nnx.Module):
    """A linear layer plus a low-rank update: ``base(x) + (alpha / rank) · dropout(x) A B``.

    ``A`` (``(in, rank)``) starts uniform in ``±1/sqrt(in)`` (PEFT's Kaiming-uniform) and ``B``
    (``(rank, out)``) at zero, so a fresh adapter leaves the layer unchanged. Both are
    :data:`LoRAParam` variables; the base layer's parameters stay ``nnx.Param``.

    Args:
        base: the wrapped ``nnx.Linear``.
        rank: adapter rank ``r``.
        alpha: scale numerator (the update is multiplied by ``alpha / rank``).
        dropout: dropout rate on the adapter input (training mode only).
        rngs: random streams (``params`` for ``A``, ``dropout``).

    Examples:
        >>> from flax import nnx
        >>> import jax.numpy as jnp
        >>> lin = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
        >>> lora = LoRALinear(lin, rank=2, alpha=4.0, rngs=nnx.Rngs(1))
        >>> x = jnp.ones((1, 4))
        >>> bool(jnp.allclose(lora(x), lin(x)))
        True
    """

    def __init__(
        self,
        base: nnx.Linear,
        *,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ) -> None:
        if rank < 1:
            raise InputError(f"rank: must be at least 1, got {rank}")
        n_in, n_out = base.in_features, base.out_features
        pdtype = base.kernel[...].dtype
        bound = 1.0 / math.sqrt(n_in)
        a = jax.random.uniform(rngs.params(), (n_in, rank), jnp.float32, -bound, bound)
        self.base = base
        self.lora_a = LoRAParam(a.astype(pdtype))
        self.lora_b = LoRAParam(jnp.zeros((rank, n_out), pdtype))
        self.rank = int(rank)
        self.alpha = float(alpha)
        self.dropout_rate = float(dropout)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    @property
    def scaling(self) -> float:
        """``alpha / rank``."""
        return self.alpha / self.rank

    def delta(self) -> jax.Array:
        """The dense update ``(alpha / rank) · A B`` of shape ``(in, out)``, in float32."""
        a = self.lora_a[...].astype(jnp.float32)
        b = self.lora_b[...].astype(jnp.float32)
        return self.scaling * (a @ b)

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = self.base.dtype or x.dtype
        h = self.dropout(x).astype(dtype)
        update = (h @ self.lora_a[...].astype(dtype)) @ self.lora_b[...].astype(dtype)
        return self.base(x) + (self.scaling * update).astype(dtype)


def _targets(model: nnx.Module, names: Sequence[str], cls: type) -> list[tuple[Any, str, Any]]:
    found = []
    for path, module in nnx.iter_modules(model):
        for name in names:
            child = getattr(module, name, None)
            if isinstance(child, cls) and not (
                cls is nnx.Linear and isinstance(module, LoRALinear)
            ):
                found.append((path + (name,), module, name, child))
    return found


def apply_lora(
    model: nnx.Module,
    *,
    targets: Sequence[str] = ("q_proj", "v_proj"),
    rank: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    rngs: nnx.Rngs,
) -> nnx.Module:
    """Wrap every ``nnx.Linear`` named in ``targets`` with a :class:`LoRALinear`, in place.

    Names are attribute names (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``, ``gate_proj``,
    ``up_proj``, ``down_proj``, ``lm_head``), matched in every layer. Train only the adapters with
    ``nnx.Optimizer(model, tx, wrt=LoRAParam)``.

    Args:
        model: the model to modify.
        targets: attribute names of the projections to adapt.
        rank: adapter rank.
        alpha: LoRA alpha (scale ``alpha / rank``).
        dropout: adapter input dropout.
        rngs: random streams for ``A`` and dropout.

    Returns:
        ``model`` (modified in place).

    Raises:
        ValueError: no projection matched ``targets``.

    Examples:
        >>> from flax import nnx
        >>> from fusers.lm import CausalLM, DecoderConfig
        >>> cfg = DecoderConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
        ...                     num_hidden_layers=2, num_attention_heads=2)
        >>> model = apply_lora(CausalLM(cfg, rngs=nnx.Rngs(0)), targets=("q_proj", "v_proj"),
        ...                    rank=4, rngs=nnx.Rngs(1))
        >>> len(lora_modules(model))
        4
    """
    found = _targets(model, targets, nnx.Linear)
    if not found:
        raise InputError(f"targets: no nnx.Linear named {', '.join(targets)} in the model")
    for _, parent, name, child in found:
        setattr(parent, name, LoRALinear(child, rank=rank, alpha=alpha, dropout=dropout, rngs=rngs))
    return model


def lora_modules(model: nnx.Module) -> dict[str, LoRALinear]:
    """The adapted projections, by dotted module path (``model.layers.0.self_attn.q_proj``)."""
    return {
        ".".join(str(p) for p in path): module
        for path, module in nnx.iter_modules(model)
        if isinstance(module, LoRALinear)
    }


def merge_lora(model: nnx.Module) -> nnx.Module:
    """Fold every adapter into its base weight (``W += (alpha / rank) A B``) and unwrap it.

    The merged model computes the same function (up to rounding) without the adapters, and
    can be saved with :func:`fusers.lm.save_pretrained`.

    Args:
        model: a model with :class:`LoRALinear` layers.

    Returns:
        ``model`` (modified in place).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from fusers.lm import CausalLM, DecoderConfig
        >>> cfg = DecoderConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
        ...                     num_hidden_layers=1, num_attention_heads=2)
        >>> model = apply_lora(CausalLM(cfg, rngs=nnx.Rngs(0)), rank=2, rngs=nnx.Rngs(1))
        >>> for m in lora_modules(model).values():
        ...     m.lora_b[...] = jnp.full_like(m.lora_b[...], 0.1)
        >>> ids = jnp.array([[1, 2, 3]])
        >>> before = model(ids)
        >>> after = merge_lora(model)(ids)
        >>> lora_modules(model), bool(jnp.allclose(before, after, atol=1e-5))
        ({}, True)
    """
    for _, parent, name, lora in _targets(model, _lora_names(model), LoRALinear):
        base = lora.base
        kernel = base.kernel[...]
        base.kernel[...] = (kernel.astype(jnp.float32) + lora.delta()).astype(kernel.dtype)
        setattr(parent, name, base)
    return model


def _lora_names(model: nnx.Module) -> tuple[str, ...]:
    return tuple(sorted({path.rsplit(".", 1)[-1] for path in lora_modules(model)}))


def save_adapters(
    model: nnx.Module,
    path: str | os.PathLike,
    *,
    base_model_name_or_path: str | None = None,
) -> Path:
    """Write the adapters alone, in the PEFT layout.

    Files: ``adapter_model.safetensors`` with, for each adapted projection ``P`` (its
    transformers module path), ``base_model.model.P.lora_A.weight`` of shape ``(r, in)`` and
    ``base_model.model.P.lora_B.weight`` of shape ``(out, r)``; and ``adapter_config.json`` with
    ``peft_type: "LORA"``, ``task_type: "CAUSAL_LM"``, ``r``, ``lora_alpha``, ``lora_dropout``,
    ``target_modules``, ``bias: "none"``. PEFT's ``PeftModel.from_pretrained`` reads this layout.

    Args:
        model: a model with adapters (one rank, alpha and dropout for all of them).
        path: output directory.
        base_model_name_or_path: recorded in the config.

    Returns:
        The directory.

    Raises:
        ValueError: the model has no adapters, or adapters with different settings.

    Examples:
        >>> import tempfile
        >>> from flax import nnx
        >>> from fusers.lm import CausalLM, DecoderConfig
        >>> cfg = DecoderConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
        ...                     num_hidden_layers=1, num_attention_heads=2)
        >>> model = apply_lora(CausalLM(cfg, rngs=nnx.Rngs(0)), rank=2, rngs=nnx.Rngs(1))
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = save_adapters(model, d)
        ...     base = load_adapters(CausalLM(cfg, rngs=nnx.Rngs(0)), d, rngs=nnx.Rngs(2))
        >>> sorted(lora_modules(base))
        ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj']
    """
    from ._deps import require

    save_file = require("safetensors.numpy").save_file

    from ._checkpoint import _atomic_write

    mods = lora_modules(model)
    if not mods:
        raise InputError("model has no LoRA adapters (apply_lora first)")
    settings = {(m.rank, m.alpha, m.dropout_rate) for m in mods.values()}
    if len(settings) > 1:
        raise InputError(f"adapters with different (rank, alpha, dropout): {sorted(settings)}")
    rank, alpha, dropout = settings.pop()
    tensors: dict[str, np.ndarray] = {}
    for name, m in mods.items():
        tensors[f"{_PREFIX}{name}.lora_A.weight"] = np.ascontiguousarray(
            np.asarray(m.lora_a[...]).T
        )
        tensors[f"{_PREFIX}{name}.lora_B.weight"] = np.ascontiguousarray(
            np.asarray(m.lora_b[...]).T
        )
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": dropout,
        "target_modules": sorted({n.rsplit(".", 1)[-1] for n in mods}),
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "use_rslora": False,
        "modules_to_save": None,
        "base_model_name_or_path": base_model_name_or_path,
    }
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    _atomic_write(
        root / ADAPTER_WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"})
    )
    text = json.dumps(config, indent=2) + "\n"
    _atomic_write(root / ADAPTER_CONFIG, lambda tmp: Path(tmp).write_text(text))
    return root


def load_adapters(model: nnx.Module, path: str | os.PathLike, *, rngs: nnx.Rngs) -> nnx.Module:
    """Apply adapters saved by :func:`save_adapters` (or PEFT) to a model without adapters.

    Args:
        model: the base model (same architecture as when the adapters were trained).
        path: directory with ``adapter_config.json`` and ``adapter_model.safetensors``.
        rngs: random streams for the adapters' dropout.

    Returns:
        ``model`` with the adapters applied (in place).

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: not a LoRA adapter, unsupported options, or tensors that do not fit.
    """
    from ._deps import require

    load_file = require("safetensors.numpy").load_file

    root = Path(path)
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root}: {name} is missing")
    config = json.loads((root / ADAPTER_CONFIG).read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise InputError(f"{root / ADAPTER_CONFIG}: peft_type {config.get('peft_type')!r} != LORA")
    if config.get("bias", "none") != "none" or config.get("use_rslora"):
        raise InputError(f"{root / ADAPTER_CONFIG}: only bias='none' without rsLoRA is supported")
    targets = config["target_modules"]
    if isinstance(targets, str):
        targets = [targets]
    apply_lora(
        model,
        targets=tuple(targets),
        rank=int(config["r"]),
        alpha=float(config["lora_alpha"]),
        dropout=float(config.get("lora_dropout", 0.0)),
        rngs=rngs,
    )
    tensors = load_file(str(root / ADAPTER_WEIGHTS))
    mods = lora_modules(model)
    expected = set()
    for name, m in mods.items():
        for part, var in (("lora_A", m.lora_a), ("lora_B", m.lora_b)):
            key = f"{_PREFIX}{name}.{part}.weight"
            expected.add(key)
            if key not in tensors:
                raise InputError(f"{root / ADAPTER_WEIGHTS}: tensor {key} is missing")
            value = tensors[key].T
            if value.shape != var[...].shape:
                raise InputError(
                    f"{root / ADAPTER_WEIGHTS}: tensor {key} has shape {tensors[key].shape}, "
                    f"expected {var[...].shape[::-1]}"
                )
            var[...] = jnp.asarray(value, var[...].dtype)
    extra = sorted(set(tensors) - expected)
    if extra:
        raise InputError(f"{root / ADAPTER_WEIGHTS}: unexpected tensors {', '.join(extra[:5])}")
    return model
