"""H3Fusion training: stage-one experts and stage-three alignment of the mixture."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ensembles.util import InputError, write_atomic

from .. import lm
from ._losses import drift_regularizer, gate_loss
from ._moe import PROJECTIONS, H3Flags, RouterParam, moe_blocks, router_logits, set_recording

__all__ = [
    "SFTBatch",
    "add_alignment_lora",
    "align_moe",
    "align_step",
    "batches",
    "train_expert",
    "trainable_filter",
]

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SFTBatch:
    """A batch of supervised sequences with task labels (a pytree).

    Attributes:
        input_ids: ``(batch, length)`` right-padded token ids.
        attention_mask: ``(batch, length)`` 1 on real tokens.
        loss_mask: ``(batch, length)`` 1 on response tokens (the targets).
        task: ``(batch,)`` task label of each row.
    """

    input_ids: jax.Array
    attention_mask: jax.Array
    loss_mask: jax.Array
    task: jax.Array


def batches(
    encoded: Sequence[tuple[list[int], list[int]]],
    *,
    batch_size: int,
    seed: int,
    labels: Sequence[int] | None = None,
    pad_token_id: int = 0,
    length_bucket: int = 64,
) -> Iterator[Any]:
    """Endless shuffled epochs of padded batches (seeded; no global random state).

    Each epoch is a permutation of the rows from ``numpy.random.default_rng(seed)``; a batch is
    padded on the right to a multiple of ``length_bucket`` tokens (few distinct shapes, so few
    compilations). Without ``labels`` it yields :class:`fusers.lm.LMBatch`, with them
    :class:`SFTBatch`.

    Examples:
        >>> it = batches([([1, 2, 3], [0, 1, 1]), ([4, 5], [0, 1])], batch_size=2, seed=0,
        ...              length_bucket=4)
        >>> next(it).input_ids.shape
        (2, 4)
    """
    n = len(encoded)
    if n == 0:
        raise InputError("no training examples")
    if batch_size < 1:
        raise InputError(f"batch_size: at least 1, got {batch_size}")
    rng = np.random.default_rng(seed)
    lab = None if labels is None else np.asarray(labels, np.int32)
    if lab is not None and len(lab) != n:
        raise InputError(f"labels: {len(lab)} for {n} examples")
    order = np.empty(0, np.int64)
    while True:
        while order.size < batch_size:
            order = np.concatenate([order, rng.permutation(n)])
        idx, order = order[:batch_size], order[batch_size:]
        seqs = [encoded[i][0] for i in idx]
        masks = [encoded[i][1] for i in idx]
        longest = max(len(s) for s in seqs)
        length = -(-longest // length_bucket) * length_bucket
        b = lm.make_batch(seqs, loss_masks=masks, pad_token_id=pad_token_id, length=length)
        if lab is None:
            yield b
        else:
            yield SFTBatch(b.input_ids, b.attention_mask, b.loss_mask, jnp.asarray(lab[idx]))


def train_expert(
    model: Any,
    encoded: Sequence[tuple[list[int], list[int]]],
    *,
    steps: int,
    batch_size: int = 8,
    learning_rate: float = 5e-4,
    rank: int = 8,
    alpha: float = 4.0,
    dropout: float = 0.1,
    seed: int = 42,
    pad_token_id: int = 0,
    length_bucket: int = 64,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    callback: Callable[[int, float], Any] | None = None,
) -> list[float]:
    """Stage one: fit a LoRA adapter on the FFN projections of ``model`` (in place).

    LoRA (``rank``, ``alpha``, ``dropout``) on every layer's ``gate_proj``, ``up_proj`` and
    ``down_proj``; only the adapters train, with AdamW (no weight decay, β 0.9/0.999, gradient
    norm clipped at 1), ``learning_rate`` decaying linearly to 0 over ``steps`` without
    warm-up; the loss is the mean token cross-entropy on response tokens only.

    Args:
        model: a :class:`fusers.lm.CausalLM` without adapters (gets them, in place).
        encoded: from :func:`encode_examples`.
        steps: optimiser steps.
        batch_size: rows per step.
        learning_rate: peak learning rate.
        rank: LoRA rank.
        alpha: LoRA alpha (scale ``alpha / rank``).
        dropout: dropout on the adapter input.
        seed: seed of the adapter initialisation, dropout and batch order.
        pad_token_id: filler id.
        length_bucket: padding granularity.
        checkpoint_dir: resumable training checkpoints (see :func:`fusers.lm.fit`).
        checkpoint_every: steps between checkpoints.
        callback: ``callback(step, loss)`` after each step.

    Returns:
        The per-step losses.

    Examples:
        >>> cfg = lm.DecoderConfig(vocab_size=16, hidden_size=8, intermediate_size=16,
        ...                        num_hidden_layers=1, num_attention_heads=2)
        >>> model = lm.CausalLM(cfg, rngs=nnx.Rngs(0))
        >>> losses = train_expert(model, [([1, 2, 3, 4], [0, 0, 1, 1])] * 4, steps=3,
        ...                       batch_size=2, length_bucket=4)
        >>> len(losses), len(lm.lora_modules(model))
        (3, 3)
    """
    if steps < 1:
        raise InputError(f"steps: at least 1, got {steps}")
    lm.apply_lora(
        model, targets=PROJECTIONS, rank=rank, alpha=alpha, dropout=dropout,
        rngs=nnx.Rngs(params=seed, dropout=seed + 1),
    )  # fmt: skip
    opt = lm.make_optimizer(model, learning_rate=learning_rate, total_steps=steps, wrt=lm.LoRAParam)
    it = batches(
        encoded, batch_size=batch_size, seed=seed, pad_token_id=pad_token_id,
        length_bucket=length_bucket,
    )  # fmt: skip
    history = lm.fit(
        model, opt, it, steps=steps, callback=callback, checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
    )  # fmt: skip
    model.eval()
    return history


def add_alignment_lora(
    model: Any, *, rank: int = 8, alpha: float = 4.0, dropout: float = 0.1, seed: int = 0
) -> Any:
    """Add the alignment-stage LoRA: on ``q/k/v/o`` of every layer and on every expert's three
    FFN projections (``B`` starts at 0, so the model is unchanged). Returns ``model``.

    Examples:
        >>> from fusers.h3 import Adapter, build_moe
        >>> cfg = lm.DecoderConfig(vocab_size=16, hidden_size=8, intermediate_size=16,
        ...                        num_hidden_layers=1, num_attention_heads=2)
        >>> ex = lm.apply_lora(lm.CausalLM(cfg, rngs=nnx.Rngs(0)), targets=PROJECTIONS,
        ...                    rank=2, rngs=nnx.Rngs(1))
        >>> moe = build_moe(lm.CausalLM(cfg, rngs=nnx.Rngs(0)), [Adapter.from_model(ex)] * 3)
        >>> len(lm.lora_modules(add_alignment_lora(moe)))
        4
    """
    blocks = moe_blocks(model)
    if not blocks:
        raise InputError("model: not a mixture (build_moe first)")
    rngs = nnx.Rngs(params=seed, dropout=seed + 1)
    lm.apply_lora(model, targets=ATTENTION, rank=rank, alpha=alpha, dropout=dropout, rngs=rngs)
    for block in blocks:
        block.add_lora(rank=rank, alpha=alpha, dropout=dropout, rngs=rngs)
    return model


def trainable_filter(flags: H3Flags) -> Any:
    """Which variables train in stage three: the LoRA factors, plus the routers when
    ``flags.train_router``.

    Examples:
        >>> trainable_filter(H3Flags.faithful()) is lm.LoRAParam
        True
    """
    return nnx.Any(lm.LoRAParam, RouterParam) if flags.train_router else lm.LoRAParam


def _losses(model, batch: SFTBatch, lam, gammas, gate_kind, reg_kind):
    ids = batch.input_ids
    logits = model(ids[:, :-1], attention_mask=batch.attention_mask[:, :-1])
    routes = router_logits(model)
    weights = (batch.loss_mask[:, 1:] * batch.attention_mask[:, 1:]).astype(jnp.float32)
    lm_loss = lm.causal_lm_loss(logits, ids[:, 1:], mask=weights)
    g = gate_loss(routes, batch.task, attention_mask=batch.attention_mask[:, :-1], kind=gate_kind)
    r = drift_regularizer(model, gammas, kind=reg_kind)
    return lm_loss + lam * g + r, (lm_loss, g, r)


@nnx.jit(static_argnames=("lam", "gammas", "gate_kind", "reg_kind"))
def align_step(
    model: Any,
    optimizer: nnx.Optimizer,
    batch: SFTBatch,
    *,
    lam: float,
    gammas: tuple[float, ...],
    gate_kind: str,
    reg_kind: str,
) -> dict[str, jax.Array]:
    """One stage-three optimiser step on ``L = L_LM + lam · L_gate + R``.

    ``L_LM`` is the mean token cross-entropy on response tokens, ``L_gate`` the
    :func:`gate_loss` of the router logits of every layer, ``R`` the
    :func:`drift_regularizer`. Gradients reach only the variables selected by the optimiser's
    ``wrt`` (:func:`trainable_filter`). The model must be recording
    (:func:`set_recording`).

    Returns:
        ``{"loss", "lm", "gate", "reg"}`` before the update.
    """
    wrt = optimizer.wrt
    graphdef, params, rest = nnx.split(model, wrt, ...)

    def loss_fn(p, rest):
        rest = jax.tree.map(lambda x: x, rest)
        m = nnx.merge(graphdef, p, rest)
        total, parts = _losses(m, batch, lam, gammas, gate_kind, reg_kind)
        _, _, new_rest = nnx.split(m, wrt, ...)
        return total, (parts, new_rest)

    (total, (parts, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest)
    nnx.update(model, rest)
    optimizer.update(model, grads)
    return {"loss": total, "lm": parts[0], "gate": parts[1], "reg": parts[2]}


def align_moe(
    model: Any,
    encoded: Sequence[tuple[list[int], list[int]]],
    labels: Sequence[int],
    *,
    steps: int,
    flags: H3Flags | None = None,
    gate_weight: float = 0.01,
    gammas: Sequence[float] = (0.0, 0.0, 0.0),
    batch_size: int = 8,
    learning_rate: float = 5e-4,
    rank: int = 8,
    alpha: float = 4.0,
    dropout: float = 0.1,
    seed: int = 42,
    pad_token_id: int = 0,
    length_bucket: int = 64,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    callback: Callable[[int, dict[str, float]], Any] | None = None,
) -> list[dict[str, float]]:
    """Stage three: align the mixture on the union of the goal sets (in place).

    Adds the alignment-stage LoRA (:func:`add_alignment_lora`), then runs ``steps`` of
    :func:`align_step` with AdamW (as in stage one) over shuffled batches of ``encoded`` with
    their task ``labels`` (:func:`task_labels`). With ``checkpoint_dir``, model and optimiser
    are saved every ``checkpoint_every`` steps and at the end; rerunning with the same folder
    resumes (the batches of the steps done are skipped, so the run equals the uninterrupted
    one).

    Args:
        model: a mixture from :func:`build_moe`.
        encoded: from :func:`encode_examples` (all goals, concatenated).
        labels: task label per example.
        steps: optimiser steps.
        flags: gate loss, regulariser and router switches.
        gate_weight: ``λ``.
        gammas: ``γ_k`` per expert.
        batch_size, learning_rate, rank, alpha, dropout: as in :func:`train_expert`.
        seed: seed of the LoRA initialisation, dropout and batch order.
        pad_token_id: filler id.
        length_bucket: padding granularity.
        checkpoint_dir: checkpoint folder.
        checkpoint_every: steps between checkpoints.
        callback: ``callback(step, parts)`` after each step.

    Returns:
        Per step ``{"loss", "lm", "gate", "reg"}``.

    Examples:
        >>> from fusers.h3 import Adapter, build_moe
        >>> cfg = lm.DecoderConfig(vocab_size=16, hidden_size=8, intermediate_size=16,
        ...                        num_hidden_layers=1, num_attention_heads=2)
        >>> ex = lm.apply_lora(lm.CausalLM(cfg, rngs=nnx.Rngs(0)), targets=PROJECTIONS,
        ...                    rank=2, rngs=nnx.Rngs(1))
        >>> moe = build_moe(lm.CausalLM(cfg, rngs=nnx.Rngs(0)), [Adapter.from_model(ex)] * 3)
        >>> hist = align_moe(moe, [([1, 2, 3, 4], [0, 0, 1, 1])] * 3, [0, 1, 2], steps=2,
        ...                  batch_size=3, length_bucket=4)
        >>> sorted(hist[0])
        ['gate', 'lm', 'loss', 'reg']
    """
    flags = H3Flags() if flags is None else flags
    if steps < 1:
        raise InputError(f"steps: at least 1, got {steps}")
    blocks = moe_blocks(model)
    if not blocks:
        raise InputError("model: not a mixture (build_moe first)")
    gammas = tuple(float(g) for g in gammas)
    if len(gammas) != blocks[0].num_experts:
        raise InputError(f"gammas: one per expert ({blocks[0].num_experts}), got {len(gammas)}")
    if not blocks[0].lora_rank:
        add_alignment_lora(model, rank=rank, alpha=alpha, dropout=dropout, seed=seed)
    opt = lm.make_optimizer(
        model, learning_rate=learning_rate, total_steps=steps, wrt=trainable_filter(flags)
    )
    it = batches(
        encoded, batch_size=batch_size, seed=seed, labels=labels, pad_token_id=pad_token_id,
        length_bucket=length_bucket,
    )  # fmt: skip
    history: list[dict[str, float]] = []
    hist_file = None if checkpoint_dir is None else Path(checkpoint_dir) / "history.json"
    if checkpoint_dir is not None and Path(checkpoint_dir).is_dir():
        try:
            done = lm.restore_checkpoint(checkpoint_dir, model, opt)
        except FileNotFoundError:
            done = 0
        if done:
            saved = json.loads(hist_file.read_text()) if hist_file.is_file() else []
            if len(saved) < done:
                raise InputError(f"{checkpoint_dir}: history.json is missing or short")
            history = saved[:done]
            for _ in range(done):
                next(it)

    def save() -> None:
        lm.save_checkpoint(checkpoint_dir, model, opt, step=len(history))
        text = json.dumps(history) + "\n"
        write_atomic(hist_file, lambda fh: fh.write(text.encode()))

    set_recording(model, True)
    model.train()
    try:
        while len(history) < steps:
            out = align_step(
                model, opt, next(it), lam=float(gate_weight), gammas=gammas,
                gate_kind=flags.gate_loss, reg_kind=flags.regularizer,
            )  # fmt: skip
            history.append({k: float(v) for k, v in out.items()})
            if not np.isfinite(history[-1]["loss"]):
                raise FloatingPointError(
                    f"stage 3 step {len(history) - 1}: non-finite loss {history[-1]}"
                )
            saved = checkpoint_dir is not None and (
                len(history) % checkpoint_every == 0 or len(history) == steps
            )
            if saved:
                save()
            if callback is not None and callback(len(history) - 1, history[-1]):
                if checkpoint_dir is not None and not saved:
                    save()
                break
    finally:
        set_recording(model, False)
        model.eval()
    return history
