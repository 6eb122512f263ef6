"""Training toolkit for causal language models: masked loss, accumulation, checkpoints."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ensembles.util import InputError

__all__ = [
    "LMBatch",
    "causal_lm_loss",
    "eval_loss",
    "fit",
    "make_batch",
    "make_optimizer",
    "pack_batches",
    "restore_checkpoint",
    "save_checkpoint",
    "set_compute_dtype",
    "train_step",
]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LMBatch:
    """A batch of token sequences for causal-LM training (a pytree).

    Attributes:
        input_ids: ``(batch, length)`` int32 token ids (right-padded).
        attention_mask: ``(batch, length)`` 1 on real tokens, 0 on padding.
        loss_mask: ``(batch, length)`` 1 on tokens that are **targets** (predicted from the
            tokens before them); the first token of a row is never a target.
    """

    input_ids: jax.Array
    attention_mask: jax.Array
    loss_mask: jax.Array


def make_batch(
    sequences: Sequence[Sequence[int]],
    *,
    loss_masks: Sequence[Sequence[int]] | None = None,
    pad_token_id: int = 0,
    length: int | None = None,
) -> LMBatch:
    """Right-pad token lists into an :class:`LMBatch`.

    Args:
        sequences: token id lists (e.g. prompt followed by target and EOS).
        loss_masks: per token, 1 where the token is a target (default: every real token).
        pad_token_id: filler id.
        length: pad to this length (default: the longest).

    Returns:
        The batch; padding is excluded from the loss.

    Examples:
        >>> b = make_batch([[1, 2, 3], [4, 5]], loss_masks=[[0, 1, 1], [0, 1]])
        >>> b.input_ids.tolist(), b.loss_mask.tolist()
        ([[1, 2, 3], [4, 5, 0]], [[0, 1, 1], [0, 1, 0]])
    """
    from ._generate import pad_batch

    ids, mask = pad_batch(sequences, pad_token_id=pad_token_id, side="right", length=length)
    if loss_masks is None:
        loss = mask.copy()
    else:
        loss, _ = pad_batch(loss_masks, pad_token_id=0, side="right", length=ids.shape[1])
        loss = loss * mask
    return LMBatch(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(loss, jnp.int32))


def pack_batches(
    tokens: np.ndarray,
    *,
    batch_size: int,
    seq_len: int,
    seed: int,
) -> Iterator[LMBatch]:
    """Endless batches of random windows of one long token stream (pre-training style).

    Each row is ``seq_len`` consecutive tokens starting at a random offset; every token after the
    first is a target. Offsets come from ``numpy.random.default_rng(seed)`` (no global state).

    Args:
        tokens: 1-D token stream (documents joined with an end-of-text token).
        batch_size: rows per batch.
        seq_len: tokens per row.
        seed: seed of the offsets.

    Yields:
        :class:`LMBatch` of shape ``(batch_size, seq_len)``.
    """
    tokens = np.asarray(tokens, np.int32)
    if tokens.ndim != 1 or tokens.size <= seq_len:
        raise InputError(f"tokens: need a 1-D stream longer than seq_len={seq_len}")
    rng = np.random.default_rng(seed)
    ones = jnp.ones((batch_size, seq_len), jnp.int32)
    while True:
        starts = rng.integers(0, tokens.size - seq_len, size=batch_size)
        ids = np.stack([tokens[s : s + seq_len] for s in starts])
        yield LMBatch(jnp.asarray(ids), ones, ones)


def causal_lm_loss(
    logits: jax.Array,
    targets: jax.Array,
    *,
    mask: jax.Array | None = None,
    reduction: str = "mean",
) -> jax.Array:
    """Token cross-entropy of next-token logits, over the masked positions.

    Args:
        logits: ``(batch, length, vocab)`` logits (any float dtype; computed in float32).
        targets: ``(batch, length)`` target ids (the inputs shifted left by one).
        mask: ``(batch, length)`` weights, 1 on positions that count (default: all).
        reduction: ``"mean"`` over counted positions (0 if none), or ``"sum"``.

    Returns:
        A scalar loss (nats per token for ``"mean"``).

    Examples:
        >>> import jax.numpy as jnp
        >>> logits = jnp.zeros((1, 2, 4))
        >>> float(causal_lm_loss(logits, jnp.array([[1, 2]])))  # uniform over 4 tokens: log 4
        1.3862943649291992
    """
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
    weights = jnp.ones_like(losses) if mask is None else mask.astype(jnp.float32)
    total = jnp.sum(losses * weights)
    if reduction == "sum":
        return total
    if reduction != "mean":
        raise InputError(f"reduction: 'mean' or 'sum', got {reduction!r}")
    return total / jnp.maximum(jnp.sum(weights), 1.0)


def _loss_sum(model, batch: LMBatch) -> tuple[jax.Array, jax.Array]:
    """Summed token loss and number of target tokens of one (micro)batch."""
    ids = batch.input_ids
    logits = model(ids[:, :-1], attention_mask=batch.attention_mask[:, :-1])
    weights = (batch.loss_mask[:, 1:] * batch.attention_mask[:, 1:]).astype(jnp.float32)
    total = causal_lm_loss(logits, ids[:, 1:], mask=weights, reduction="sum")
    return total, jnp.sum(weights)


def make_optimizer(
    model: nnx.Module,
    *,
    learning_rate: float = 1e-3,
    total_steps: int | None = None,
    warmup_steps: int = 0,
    schedule: str = "linear",
    weight_decay: float = 0.0,
    b1: float = 0.9,
    b2: float = 0.999,
    grad_clip: float | None = 1.0,
    wrt: Any = nnx.Param,
) -> nnx.Optimizer:
    """An AdamW ``nnx.Optimizer`` over the parameters selected by ``wrt``.

    Args:
        model: the model.
        learning_rate: peak learning rate.
        total_steps: length of the decay (``None``: constant after warm-up).
        warmup_steps: linear warm-up steps from 0.
        schedule: ``"linear"`` decay to 0 (the default), ``"cosine"`` or ``"constant"``.
        weight_decay: decoupled weight decay.
        b1: Adam first-moment decay.
        b2: Adam second-moment decay.
        grad_clip: global-norm clipping (``None``: off).
        wrt: which variables train: ``nnx.Param`` (full fine-tuning) or
            :data:`fusers.lm.LoRAParam` (adapters only).

    Returns:
        The optimizer (``optimizer.update(model, grads)`` after :func:`train_step`).
    """
    if schedule not in ("linear", "cosine", "constant"):
        raise InputError(f"schedule: 'linear', 'cosine' or 'constant', got {schedule!r}")
    tx = _adamw(
        float(learning_rate), total_steps, int(warmup_steps), schedule, float(weight_decay),
        float(b1), float(b2), None if grad_clip is None else float(grad_clip),
    )  # fmt: skip
    return nnx.Optimizer(model, tx, wrt=wrt)


@functools.lru_cache(maxsize=64)
def _adamw(lr, total_steps, warmup_steps, schedule, weight_decay, b1, b2, grad_clip):
    """The optax transformation, cached: equal settings give the same object, so a fresh
    optimizer with the same settings reuses the compiled :func:`train_step`."""
    learning_rate = lr
    if total_steps is None or schedule == "constant":
        decay = optax.constant_schedule(learning_rate)
    elif schedule == "linear":
        decay = optax.linear_schedule(learning_rate, 0.0, max(total_steps - warmup_steps, 1))
    else:
        decay = optax.cosine_decay_schedule(learning_rate, max(total_steps - warmup_steps, 1))
    lr = decay
    if warmup_steps:
        warm = optax.linear_schedule(0.0, learning_rate, warmup_steps)
        lr = optax.join_schedules([warm, decay], [warmup_steps])
    parts = [] if grad_clip is None else [optax.clip_by_global_norm(grad_clip)]
    parts.append(optax.adamw(lr, b1=b1, b2=b2, weight_decay=weight_decay))
    return optax.chain(*parts)


def _split_micro(batch: LMBatch, accum_steps: int) -> LMBatch:
    b = batch.input_ids.shape[0]
    if b % accum_steps:
        raise InputError(f"accum_steps: {accum_steps} does not divide the batch size {b}")
    return jax.tree.map(lambda x: x.reshape(accum_steps, b // accum_steps, *x.shape[1:]), batch)


@nnx.jit(static_argnames=("accum_steps",))
def train_step(
    model: nnx.Module, optimizer: nnx.Optimizer, batch: LMBatch, *, accum_steps: int = 1
) -> jax.Array:
    """One optimiser step on ``batch``: mean token loss, gradients accumulated over microbatches.

    The batch is split into ``accum_steps`` microbatches run one after the other
    (``jax.lax.scan``), so peak memory is that of one microbatch. Gradients of the **summed**
    token loss are added up and divided by the total number of target tokens, so the update
    equals the one of the whole batch at once (up to rounding), whatever the padding.

    Args:
        model: the model (updated in place).
        optimizer: from :func:`make_optimizer`; its ``wrt`` decides which parameters train.
        batch: an :class:`LMBatch` whose batch size ``accum_steps`` divides.
        accum_steps: number of microbatches.

    Returns:
        The mean token loss of the batch (before the update).

    Examples:
        >>> from flax import nnx
        >>> from fusers.lm import CausalLM, DecoderConfig, make_batch, make_optimizer
        >>> cfg = DecoderConfig(vocab_size=16, hidden_size=16, intermediate_size=32,
        ...                     num_hidden_layers=1, num_attention_heads=2)
        >>> model = CausalLM(cfg, rngs=nnx.Rngs(0))
        >>> optimizer = make_optimizer(model, learning_rate=1e-2)
        >>> batch = make_batch([[1, 2, 3, 4], [5, 6, 7, 8], [1, 2], [3, 4, 5]])
        >>> first = float(train_step(model, optimizer, batch, accum_steps=2))
        >>> for _ in range(20):
        ...     last = float(train_step(model, optimizer, batch, accum_steps=2))
        >>> last < first
        True
    """
    wrt = optimizer.wrt
    graphdef, params, rest = nnx.split(model, wrt, ...)

    def micro_loss(p, rest, mb):
        # Fresh Variables at this trace level (random-stream counters are updated inside).
        rest = jax.tree.map(lambda x: x, rest)
        m = nnx.merge(graphdef, p, rest)
        total, count = _loss_sum(m, mb)
        _, _, new_rest = nnx.split(m, wrt, ...)
        return total, (count, new_rest)

    grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

    def body(carry, mb):
        grads, total, count, rest = carry
        (t, (c, rest)), g = grad_fn(params, rest, mb)
        return (jax.tree.map(jnp.add, grads, g), total + t, count + c, rest), None

    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), params)
    init = (zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), rest)
    (grads, total, count, rest), _ = jax.lax.scan(body, init, _split_micro(batch, accum_steps))
    denom = jnp.maximum(count, 1.0)
    grads = jax.tree.map(lambda g, p: (g / denom).astype(p.dtype), grads, params)
    nnx.update(model, rest)
    optimizer.update(model, grads)
    return total / denom


@nnx.jit
def eval_loss(model: nnx.Module, batch: LMBatch) -> jax.Array:
    """Mean token loss of ``batch`` (no update; use ``model.eval()`` to switch dropout off).

    Args:
        model: the model.
        batch: an :class:`LMBatch`.

    Returns:
        Scalar mean loss over target tokens.
    """
    total, count = _loss_sum(model, batch)
    return total / jnp.maximum(count, 1.0)


def set_compute_dtype(model: nnx.Module, dtype: Any) -> nnx.Module:
    """Set the compute dtype of every layer (parameters keep their dtype), in place.

    ``set_compute_dtype(model, jnp.bfloat16)`` on a float32 model gives mixed precision:
    matrix products in bfloat16, float32 master weights, gradients and optimiser state; norm
    statistics, softmax and the loss stay in float32. bfloat16 is native on TPUs and recent
    GPUs; XLA's CPU backend emulates it (correct, not faster).

    Args:
        model: the model.
        dtype: e.g. ``jnp.bfloat16`` or ``jnp.float32``.

    Returns:
        ``model``.
    """
    for _, module in nnx.iter_modules(model):
        if hasattr(module, "dtype") and not isinstance(module, nnx.Dropout):
            module.dtype = dtype
    return model


# ---------------------------------------------------------------------------- checkpoints
def _savable(model: nnx.Module) -> nnx.State:
    return nnx.state(model, nnx.Not(nnx.RngKey))


def _train_tree(model: nnx.Module, optimizer: nnx.Optimizer | None) -> dict[str, Any]:
    tree = {"model": nnx.to_pure_dict(_savable(model))}
    if optimizer is not None:
        tree["optimizer"] = nnx.to_pure_dict(nnx.state(optimizer))
    return tree


def save_checkpoint(
    path: str | os.PathLike,
    model: nnx.Module,
    optimizer: nnx.Optimizer | None = None,
    *,
    step: int = 0,
    metadata: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Save model (and optimiser) state as step ``step`` of a checkpoint folder.

    The folder holds numbered steps (the fusers' checkpoint scheme: orbax, each step written
    atomically with the SHA-256 of its arrays); the last ``keep`` are kept. Everything but
    random keys is saved (parameters, adapters, optimiser moments and step, random-stream
    counters). For a portable model file use :func:`fusers.lm.save_pretrained`.

    Args:
        path: checkpoint folder (created if needed).
        model: the model.
        optimizer: its optimiser, or ``None``.
        step: training step recorded with the state (the step's number in the folder).
        metadata: JSON-able facts to store with the step (e.g. the loss history).
        keep: how many of the most recent steps to keep.

    Returns:
        The folder.
    """
    from .._checkpoint import CheckpointStore

    with CheckpointStore(path, keep=keep) as store:
        store.save(int(step), _train_tree(model, optimizer), metadata or {})
    return Path(path).absolute()


def restore_checkpoint(
    path: str | os.PathLike,
    model: nnx.Module,
    optimizer: nnx.Optimizer | None = None,
    *,
    step: int | None = None,
) -> int:
    """Restore a step of a :func:`save_checkpoint` folder into ``model`` (and ``optimizer``).

    Args:
        path: the checkpoint folder.
        model: a model of the same structure (updated in place).
        optimizer: an optimiser of the same structure, or ``None``.
        step: the step to restore (default: the latest).

    Returns:
        The restored step.

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        InputError: a corrupted checkpoint, or one of another structure.
    """
    step, _ = _restore(path, model, optimizer, step=step)
    return step


def _restore(path, model, optimizer, *, step=None) -> tuple[int, dict[str, Any]]:
    from .._checkpoint import CheckpointStore

    with CheckpointStore(path) as store:
        step = store.latest() if step is None else int(step)
        if step is None:
            raise FileNotFoundError(f"{Path(path).absolute()}: no checkpoint")
        restored, metadata = store.restore(_train_tree(model, optimizer), step=step)
    model_state = _savable(model)
    nnx.replace_by_pure_dict(model_state, jax.tree.map(jnp.asarray, restored["model"]))
    nnx.update(model, model_state)
    if optimizer is not None:
        opt_state = nnx.state(optimizer)
        nnx.replace_by_pure_dict(opt_state, jax.tree.map(jnp.asarray, restored["optimizer"]))
        nnx.update(optimizer, opt_state)
    return step, metadata


def _as_optimizer(model, optimizer, wrt) -> nnx.Optimizer:
    if optimizer is None:
        return make_optimizer(model, wrt=wrt)
    if isinstance(optimizer, nnx.Optimizer):
        return optimizer
    if isinstance(optimizer, optax.GradientTransformation):
        return nnx.Optimizer(model, optimizer, wrt=wrt)
    raise InputError(
        "optimizer: expected None, an optax.GradientTransformation or an nnx.Optimizer, got "
        f"{type(optimizer).__name__}"
    )


def fit(
    model: nnx.Module,
    optimizer: optax.GradientTransformation | nnx.Optimizer | None,
    batches: Iterator[LMBatch],
    *,
    steps: int,
    accum_steps: int = 1,
    wrt: Any = nnx.Param,
    callback: Callable[[int, float], Any] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
) -> list[float]:
    """Run up to ``steps`` calls of :func:`train_step`; return the loss of each step.

    Args:
        model: the model (trained in place).
        optimizer: an optax transformation (applied to the variables selected by ``wrt``),
            an ``nnx.Optimizer`` (e.g. from :func:`make_optimizer`, kept across calls), or
            ``None`` for :func:`make_optimizer`'s default AdamW.
        batches: an iterator of :class:`LMBatch`. When resuming, the batches of the steps
            already done are drawn and skipped, so a seeded iterator (e.g.
            :func:`pack_batches`) gives the uninterrupted run.
        steps: number of optimiser steps.
        accum_steps: microbatches per step.
        wrt: which variables train when ``optimizer`` is not an ``nnx.Optimizer``.
        callback: called as ``callback(step, loss)`` after each step (e.g. progress or a time
            budget check; returning ``True`` stops early).
        checkpoint_dir: folder of training checkpoints (see :func:`save_checkpoint`): written
            every ``checkpoint_every`` steps and at the end; a folder holding one resumes
            from its latest step.
        checkpoint_every: steps between checkpoints.

    Returns:
        The per-step losses (those of a resumed run's earlier steps included).

    Examples:
        >>> import optax
        >>> from flax import nnx
        >>> from fusers.lm import CausalLM, DecoderConfig, make_batch
        >>> cfg = DecoderConfig(vocab_size=16, hidden_size=16, intermediate_size=32,
        ...                     num_hidden_layers=1, num_attention_heads=2)
        >>> model = CausalLM(cfg, rngs=nnx.Rngs(0))
        >>> batch = make_batch([[1, 2, 3, 4], [5, 6, 7, 8]])
        >>> losses = fit(model, optax.adam(1e-2), iter([batch] * 10), steps=10)
        >>> len(losses), losses[-1] < losses[0]
        (10, True)
    """
    opt = _as_optimizer(model, optimizer, wrt)
    history: list[float] = []
    if checkpoint_dir is not None and Path(checkpoint_dir).is_dir():
        from .._checkpoint import CheckpointStore

        if CheckpointStore(checkpoint_dir).latest() is not None:
            done, meta = _restore(checkpoint_dir, model, opt)
            history = [float(v) for v in meta.get("losses", [])][:done]
            for _ in range(done):
                next(batches)
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int):
        raise InputError(f"checkpoint_every: expected a positive integer, got {checkpoint_every!r}")
    if checkpoint_every < 1:
        raise InputError(f"checkpoint_every: expected a positive integer, got {checkpoint_every}")
    model.train()
    while len(history) < steps:
        history.append(float(train_step(model, opt, next(batches), accum_steps=accum_steps)))
        saved = checkpoint_dir is not None and (
            len(history) % checkpoint_every == 0 or len(history) == steps
        )
        if saved:
            _save_progress(checkpoint_dir, model, opt, history)
        if callback is not None and callback(len(history) - 1, history[-1]):
            if checkpoint_dir is not None and not saved:
                _save_progress(checkpoint_dir, model, opt, history)
            break
    return history


def _save_progress(path, model, opt, history: list[float]) -> None:
    save_checkpoint(path, model, opt, step=len(history), metadata={"losses": history})
