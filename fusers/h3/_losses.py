"""H3Fusion's alignment-stage losses: routing supervision, drift regulariser, task labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ensembles.util import InputError

from ._moe import PROJECTIONS, moe_blocks

__all__ = ["drift_regularizer", "gate_loss", "mean_routing", "task_labels"]


def mean_routing(logits: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
    """Per-sequence mean router probabilities ``p̄`` ``(batch, E)``.

    ``softmax`` of each layer's router logits ``(layers, batch, length, E)``, averaged over the
    positions (only those with ``attention_mask`` 1, or all when it is ``None``), then over the
    layers.

    Examples:
        >>> p = mean_routing(jnp.zeros((2, 1, 3, 3)))
        >>> [round(float(v), 4) for v in p[0]]
        [0.3333, 0.3333, 0.3333]
    """
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    if attention_mask is None:
        per_layer = jnp.mean(probs, axis=2)
    else:
        m = attention_mask.astype(jnp.float32)[None, :, :, None]
        per_layer = jnp.sum(probs * m, axis=2) / jnp.maximum(jnp.sum(m, axis=2), 1.0)
    return jnp.mean(per_layer, axis=0)


def gate_loss(
    logits: jax.Array,
    labels: jax.Array,
    *,
    attention_mask: jax.Array | None = None,
    kind: str = "nll",
) -> jax.Array:
    """The routing-supervision loss of a batch.

    - ``"nll"``: ``-mean_b log p̄_b[y_b]`` with ``p̄`` averaged over real tokens
      (``attention_mask``) and layers.
    - ``"ce_on_probs"``: softmax cross-entropy that treats ``p̄`` (averaged over **all**
      positions, pads included) as logits, i.e. ``-mean_b log softmax(p̄_b)[y_b]``; its value
      stays within ``[log(1 + (E-1)/e), log(E - 1 + e)]`` (the reference's loss).

    Args:
        logits: router logits ``(layers, batch, length, E)``.
        labels: ``(batch,)`` task labels.
        attention_mask: ``(batch, length)`` 1 on real tokens (``"nll"`` only).
        kind: ``"nll"`` or ``"ce_on_probs"``.

    Returns:
        A scalar.

    Examples:
        >>> round(float(gate_loss(jnp.zeros((1, 2, 4, 3)), jnp.array([0, 2]))), 4)  # log 3
        1.0986
    """
    labels = jnp.asarray(labels, jnp.int32)
    if kind == "nll":
        p = mean_routing(logits, attention_mask)
        picked = jnp.take_along_axis(p, labels[:, None], axis=1)[:, 0]
        return -jnp.mean(jnp.log(jnp.maximum(picked, 1e-30)))
    if kind == "ce_on_probs":
        p = mean_routing(logits, None)
        logp = jax.nn.log_softmax(p, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1)[:, 0])
    raise InputError(f"gate_loss: 'nll' or 'ce_on_probs', got {kind!r}")


def drift_regularizer(model: Any, gammas: Sequence[float], *, kind: str = "delta") -> jax.Array:
    """The drift regulariser ``R`` of the mixture.

    - ``"delta"``: ``Σ_k γ_k / L · Σ_layers Σ_P ‖(α/r) A'_Pk B'_Pk‖_F²``, the squared size of
      the alignment-stage change of expert ``k`` (0 before training: ``B' = 0``).
    - ``"param_norm"``: ``Σ_k γ_k / L · Σ_layers Σ_{tensors θ of expert k} ‖θ‖_F`` (un-squared)
      over the expert's merged kernels and its alignment-stage ``A'`` and ``B'`` (the
      reference); the merged kernels are frozen, so they add a constant without gradient.

    Args:
        model: a mixture from :func:`build_moe` (with :meth:`MoEFFN.add_lora` for training).
        gammas: one weight per expert.
        kind: ``"delta"`` or ``"param_norm"``.

    Returns:
        A scalar (0 when every ``γ`` is 0).

    Examples:
        >>> from flax import nnx
        >>> from fusers import lm
        >>> cfg = lm.DecoderConfig(vocab_size=16, hidden_size=8, intermediate_size=16,
        ...                        num_hidden_layers=1, num_attention_heads=2)
        >>> float(drift_regularizer(lm.CausalLM(cfg, rngs=nnx.Rngs(0)), [0.0, 0.0, 0.0]))
        0.0
    """
    if kind not in ("delta", "param_norm"):
        raise InputError(f"regularizer: 'delta' or 'param_norm', got {kind!r}")
    g = np.asarray(gammas, np.float64)
    if not np.any(g):
        return jnp.zeros((), jnp.float32)
    blocks = moe_blocks(model)
    if not blocks:
        raise InputError("model: not a mixture (build_moe first)")
    num = blocks[0].num_experts
    if g.shape != (num,):
        raise InputError(f"gammas: one per expert ({num}), got {len(g)}")
    per_expert = jnp.zeros((num,), jnp.float32)
    for block in blocks:
        if kind == "delta":
            for d in block.lora_deltas().values():
                per_expert = per_expert + jnp.sum(d * d, axis=(1, 2))
        else:
            for w in block.expert_kernels(lora=False).values():
                norm = jnp.sqrt(jnp.sum(w * w, axis=(1, 2)))
                per_expert = per_expert + jax.lax.stop_gradient(norm)
            if block.lora_rank:
                for proj in PROJECTIONS:
                    for part in ("a", "b"):
                        t = getattr(block, f"{proj}_lora_{part}")[...].astype(jnp.float32)
                        per_expert = per_expert + _norm(t)
    return jnp.sum(jnp.asarray(g, jnp.float32) * per_expert) / len(blocks)


def _norm(t: jax.Array) -> jax.Array:
    """Frobenius norm over the last two axes with gradient 0 (not NaN) at 0, as PyTorch's
    ``torch.norm`` (a fresh LoRA ``B`` is exactly 0)."""
    sq = jnp.sum(t * t, axis=(-2, -1))
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def task_labels(sizes: Sequence[int], *, kind: str = "per_dataset") -> np.ndarray:
    """Task label of every row of the concatenated training sets.

    ``"per_dataset"``: ``sizes[k]`` rows of label ``k``, in order. ``"cumulative"``: the
    reference's construction, which appends, for set ``k``, ``k`` repeated as many times as
    the **running total** of rows, and then reads the first ``Σ sizes`` labels; with three sets
    of sizes ``(n0, n1, n2)`` the third set's first ``min(n0, n2)`` rows get label 1, so it is
    never supervised when ``n0 >= n2``.

    Args:
        sizes: rows of each set, in order.
        kind: ``"per_dataset"`` or ``"cumulative"``.

    Returns:
        ``(Σ sizes,)`` int labels.

    Examples:
        >>> np.bincount(task_labels([3, 2, 2]), minlength=3).tolist()
        [3, 2, 2]
        >>> np.bincount(task_labels([3, 2, 2], kind="cumulative"), minlength=3).tolist()
        [3, 4, 0]
    """
    sizes = [int(s) for s in sizes]
    if any(s < 0 for s in sizes):
        raise InputError(f"sizes: must be non-negative, got {sizes}")
    if kind == "per_dataset":
        return np.concatenate([np.full(s, k, np.int64) for k, s in enumerate(sizes)])
    if kind == "cumulative":
        running = np.cumsum(sizes)
        parts = [np.full(int(r), k, np.int64) for k, r in enumerate(running)]
        return np.concatenate(parts)[: int(running[-1])]
    raise InputError(f"labels: 'per_dataset' or 'cumulative', got {kind!r}")
