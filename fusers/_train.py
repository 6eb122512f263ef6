"""The fusers' training toolkit: seeded, jitted, early-stopped, checkpointed and resumable.

Every learned fuser trains through :func:`fit_classifier`, a plain loop over two jitted steps:

* **seeded**: the weights come from ``nnx.Rngs(seed)`` (the caller's), the shuffle of epoch
  ``e`` from ``jax.random.fold_in(jax.random.key(seed), e)``; nothing global is touched, so a
  run is reproducible and a resumed run is identical to an uninterrupted one;
* **jitted**: the training step of an epoch is one jitted call that scans the optimiser step
  over the shuffled mini-batches (:func:`train_step` is the same step as a standalone
  ``nnx.jit`` function); the last, short batch is padded with zero-weight rows, which is
  exactly a short batch. The evaluation step (validation accuracy) is jitted too;
* **any optax optimiser**: ``optimizer=None`` is Adam at the configured learning rate; any
  ``optax.GradientTransformation`` may be passed instead;
* **early stopping** on the validation rows only: the validation accuracy is computed after
  every epoch; the best epoch's parameters are kept as a real copy and restored at the end
  (``restore="best"``; the reference's no-op restore is ``restore="last"``); training stops
  after ``patience`` epochs without a strict improvement (``None``: never);
* **checkpointed**: with a ``checkpoint_dir``, the model, optimiser and best state and the
  loop's bookkeeping go to a :class:`fusers._checkpoint.CheckpointStore` (numbered orbax
  steps, the last two kept) every ``checkpoint_every`` epochs and when training ends;
  calling again with the same folder, model, data and settings resumes from the latest step.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ensembles.util import InputError

from ._checkpoint import CheckpointStore, arrays_digest, tree_to_arrays
from ._mlp import fuser_logits, masked_loss
from ._util import check_int

__all__ = [
    "RESTORE_MODES",
    "ClassifierData",
    "History",
    "TrainConfig",
    "fit_classifier",
    "make_optimizer",
    "predict_scores",
    "train_step",
]

RESTORE_MODES = ("best", "last")
#: Training checkpoints kept in a checkpoint folder (the most recent ones).
KEEP_CHECKPOINTS = 2

ProgressFn = Callable[[dict[str, Any]], None]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of :func:`fit_classifier` (the reference fusers' defaults).

    Attributes:
        epochs: maximum number of passes over the training rows (reference 300).
        batch_size: rows per optimiser step (reference 64).
        learning_rate: learning rate of the default Adam optimiser (reference 1e-3; unused
            when :func:`fit_classifier` gets its own ``optimizer``).
        patience: stop after this many epochs without a strict improvement of the validation
            accuracy; ``None`` never stops early (FusionShot), LLM-TOPLA used 200.
        restore: ``"best"`` restores a copy of the best epoch's parameters; ``"last"`` keeps
            the last epoch's (the reference behaviour, whose restore was a no-op).
        seed: seed of the per-epoch shuffles.
        checkpoint_every: epochs between training checkpoints (when a folder is given).

    Example:
        >>> TrainConfig(epochs=5).validated().batch_size
        64
    """

    epochs: int = 300
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int | None = None
    restore: str = "best"
    seed: int = 0
    checkpoint_every: int = 10

    def validated(self) -> TrainConfig:
        """Return ``self`` after checking every field (one-line ``ValueError`` otherwise)."""
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_int("patience", self.patience, minimum=1, allow_none=True)
        check_int("seed", self.seed, minimum=0)
        check_int("checkpoint_every", self.checkpoint_every, minimum=1)
        lr = self.learning_rate
        if (
            isinstance(lr, bool)
            or not isinstance(lr, int | float)
            or not (math.isfinite(lr) and lr > 0)
        ):
            raise InputError(f"learning_rate: expected a positive number, got {lr!r}")
        if self.restore not in RESTORE_MODES:
            raise InputError(f"restore: expected 'best' or 'last', got {self.restore!r}")
        return self


@dataclasses.dataclass(frozen=True)
class ClassifierData:
    """Training and validation arrays of a fuser.

    Attributes:
        x_train, x_val: inputs, ``(n, d)`` float32.
        y_train, y_val: labels, ``(n,)`` int; a label that is not a valid slot of its row
            (e.g. "gold answer not in the space") is kept for the accuracy (always wrong) but
            gets weight 0 in the loss.
        mask_train, mask_val: valid classes per row, ``(n, C)`` bool.

    Example:
        >>> d = ClassifierData.create(np.zeros((2, 3)), [0, 2], np.array([[1, 1], [1, 1]], bool),
        ...                           np.zeros((1, 3)), [1], np.ones((1, 2), bool))
        >>> d.train_weights().tolist(), d.n_classes
        ([1.0, 0.0], 2)
    """

    x_train: np.ndarray
    y_train: np.ndarray
    mask_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    mask_val: np.ndarray

    @classmethod
    def create(cls, x_train, y_train, mask_train, x_val, y_val, mask_val) -> ClassifierData:
        """Validate shapes and cast (float32 inputs, int32 labels, bool masks)."""
        out = cls(
            np.ascontiguousarray(x_train, dtype=np.float32),
            np.asarray(y_train, dtype=np.int32),
            np.asarray(mask_train, dtype=bool),
            np.ascontiguousarray(x_val, dtype=np.float32),
            np.asarray(y_val, dtype=np.int32),
            np.asarray(mask_val, dtype=bool),
        )
        for split in ("train", "val"):
            x, y, m = (getattr(out, f"{k}_{split}") for k in ("x", "y", "mask"))
            if x.ndim != 2 or y.shape != (x.shape[0],) or m.shape[0] != x.shape[0] or m.ndim != 2:
                raise InputError(
                    f"{split}: inconsistent shapes x {x.shape}, y {y.shape}, mask {m.shape}"
                )
            if x.shape[0] == 0:
                raise InputError(f"{split}: no rows")
            if not np.isfinite(x).all():
                raise InputError(f"{split}: inputs contain NaN or inf")
        if out.x_train.shape[1] != out.x_val.shape[1] or out.mask_train.shape[1] != out.n_classes:
            raise InputError("train and val differ in input width or number of classes")
        return out

    @property
    def n_classes(self) -> int:
        """Number of output classes / slots."""
        return int(self.mask_val.shape[1])

    def train_weights(self) -> np.ndarray:
        """1 for a training row whose label is a valid slot, else 0 (float32)."""
        y, m = self.y_train, self.mask_train
        inside = (y >= 0) & (y < m.shape[1])
        ok = inside & m[np.arange(len(y)), np.clip(y, 0, m.shape[1] - 1)]
        return ok.astype(np.float32)

    def digest(self) -> str:
        """SHA-256 of the arrays (used to refuse resuming on other data)."""
        return arrays_digest({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


@dataclasses.dataclass(frozen=True)
class History:
    """What happened during :func:`fit_classifier`.

    Attributes:
        loss: mean training loss of each epoch.
        val_accuracy: validation accuracy after each epoch (sample-level).
        best_epoch: 1-based epoch with the best validation accuracy (first on ties).
        best_val_accuracy: that accuracy.
        epochs_run: epochs trained in total (resumed ones included).
        stopped_early: training stopped by ``patience``.
        resumed_from: the epoch a checkpoint resumed from, or ``None``.
        seconds: wall-clock time of this call.

    Example:
        >>> History([0.7], [0.5], 1, 0.5, 1, False, None, 0.1).to_dict()["best_epoch"]
        1
    """

    loss: list[float]
    val_accuracy: list[float]
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    stopped_early: bool
    resumed_from: int | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


@functools.lru_cache(maxsize=64)
def _adam(learning_rate: float) -> optax.GradientTransformation:
    # One transformation object per rate: the optimiser's graph definition (a static argument
    # of the jitted epoch) then compares equal across fits, so an epoch compiles once per
    # shape instead of once per fit (which also leaked compiled executables).
    return optax.adam(learning_rate)


def make_optimizer(
    model: nnx.Module,
    *,
    learning_rate: float = 1e-3,
    optimizer: optax.GradientTransformation | None = None,
) -> nnx.Optimizer:
    """An ``nnx.Optimizer`` over the model's ``nnx.Param`` variables.

    Args:
        model: the network.
        learning_rate: rate of the default Adam.
        optimizer: any optax transformation to use instead of Adam (``learning_rate`` is
            then ignored).

    Example:
        >>> from fusers._mlp import MLP
        >>> opt = make_optimizer(MLP(2, 2, rngs=nnx.Rngs(0)))
        >>> int(opt.step[...])
        0
    """
    tx = _adam(float(learning_rate)) if optimizer is None else optimizer
    if not isinstance(tx, optax.GradientTransformation):
        raise InputError(
            f"optimizer: expected an optax.GradientTransformation, got {type(tx).__name__}"
        )
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


@nnx.jit
def train_step(
    model: nnx.Module,
    optimizer: nnx.Optimizer,
    x: jax.Array,
    y: jax.Array,
    w: jax.Array,
    mask: jax.Array,
) -> jax.Array:
    """One optimiser step on a batch; returns the batch loss. Updates ``model`` and ``optimizer``.

    Example:
        >>> from fusers._mlp import MLP
        >>> m = MLP(2, 2, rngs=nnx.Rngs(0)); opt = make_optimizer(m)
        >>> loss = train_step(m, opt, jnp.ones((4, 2)), jnp.zeros(4, jnp.int32),
        ...                   jnp.ones(4), jnp.ones((4, 2), bool))
        >>> int(opt.step[...]), bool(jnp.isfinite(loss))
        (1, True)
    """
    (loss, _), grads = nnx.value_and_grad(masked_loss, has_aux=True)(model, x, y, w, mask)
    optimizer.update(model, grads)
    return loss


@functools.partial(jax.jit, static_argnames=("gd_model", "gd_opt", "batch_size"))
def _train_epoch(gd_model, gd_opt, st_model, st_opt, key, x, y, w, mask, *, batch_size):
    """One epoch: shuffle with ``key``, pad to whole batches, scan the optimiser step."""
    n = x.shape[0]
    n_batches = -(-n // batch_size)
    xp = jnp.concatenate([x, jnp.zeros((1, x.shape[1]), x.dtype)])
    yp = jnp.concatenate([y, jnp.zeros((1,), y.dtype)])
    wp = jnp.concatenate([w, jnp.zeros((1,), w.dtype)])
    mp = jnp.concatenate([mask, jnp.ones((1, mask.shape[1]), bool)])
    perm = jax.random.permutation(key, n)
    idx = jnp.concatenate([perm, jnp.full((n_batches * batch_size - n,), n, perm.dtype)])
    idx = idx.reshape(n_batches, batch_size)

    def body(carry, ib):
        s_model, s_opt = carry
        model = nnx.merge(gd_model, s_model)
        opt = nnx.merge(gd_opt, s_opt)
        (loss, _), grads = nnx.value_and_grad(masked_loss, has_aux=True)(
            model, xp[ib], yp[ib], wp[ib], mp[ib]
        )
        opt.update(model, grads)
        return (nnx.state(model), nnx.state(opt)), (loss, wp[ib].sum())

    (st_model, st_opt), (losses, weights) = jax.lax.scan(body, (st_model, st_opt), idx)
    mean_loss = (losses * weights).sum() / jnp.maximum(weights.sum(), 1e-12)
    return st_model, st_opt, mean_loss


@functools.partial(jax.jit, static_argnames=("gd_model",))
def _scores(gd_model, st_model, x, mask):
    return fuser_logits(nnx.merge(gd_model, st_model), x, mask)


@functools.partial(jax.jit, static_argnames=("gd_model",))
def _eval_correct(gd_model, st_model, x, y, mask):
    """Number of rows whose argmax is the label (a row without a valid class predicts -1)."""
    pred = jnp.argmax(fuser_logits(nnx.merge(gd_model, st_model), x, mask), axis=1)
    pred = jnp.where(mask.any(axis=1), pred, -1)
    return (pred == y).sum()


def predict_scores(model: nnx.Module, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The fuser's masked scores (logits, ``-inf`` on invalid slots), shape ``(n, C)``.

    Example:
        >>> from fusers._mlp import MLP
        >>> s = predict_scores(MLP(2, 3, rngs=nnx.Rngs(0)), np.ones((1, 2)),
        ...                    np.array([[True, True, False]]))
        >>> s.shape, bool(np.isneginf(s[0, 2]))
        ((1, 3), True)
    """
    gd, st = nnx.split(model)
    return np.asarray(
        _scores(gd, st, jnp.asarray(x, jnp.float32), jnp.asarray(mask, bool)), dtype=np.float64
    )


def _copy(tree: Any) -> Any:
    return jax.tree.map(lambda a: jnp.array(a, copy=True), tree)


@dataclasses.dataclass(frozen=True)
class _Arrays:
    """The data of a fit on the device, sanitised for the loss (see :func:`_device_arrays`)."""

    x: jax.Array
    y: jax.Array
    w: jax.Array
    mask: jax.Array
    x_val: jax.Array
    y_val: jax.Array
    mask_val: jax.Array
    n_val: int


def _device_arrays(data: ClassifierData) -> _Arrays:
    """Training rows whose label is not a valid slot get weight 0 and a harmless label; rows
    without any valid slot are unmasked for the loss (their weight is 0 anyway)."""
    w = data.train_weights()
    y_safe = np.where(w > 0, data.y_train, data.mask_train.argmax(axis=1)).astype(np.int32)
    mask_loss = np.where(data.mask_train.any(axis=1, keepdims=True), data.mask_train, True)
    return _Arrays(
        x=jnp.asarray(data.x_train),
        y=jnp.asarray(y_safe),
        w=jnp.asarray(w),
        mask=jnp.asarray(mask_loss),
        x_val=jnp.asarray(data.x_val),
        y_val=jnp.asarray(data.y_val),
        mask_val=jnp.asarray(data.mask_val),
        n_val=int(data.y_val.shape[0]),
    )


@dataclasses.dataclass
class _Loop:
    """The training loop's state: live and best parameters, optimiser state, bookkeeping."""

    model: Any
    opt: Any
    best: Any
    losses: list[float] = dataclasses.field(default_factory=list)
    val_accuracy: list[float] = dataclasses.field(default_factory=list)
    best_val: float = -1.0
    best_epoch: int = 0
    bad: int = 0
    epoch: int = 0
    stopped: bool = False

    def arrays(self) -> dict[str, Any]:
        return {"model": self.model, "opt": self.opt, "best": self.best}

    def bookkeeping(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "stopped": self.stopped,
            "best_epoch": self.best_epoch,
            "best_val_accuracy": self.best_val,
            "bad_epochs": self.bad,
            "loss": self.losses,
            "val_accuracy": self.val_accuracy,
        }

    def done(self, config: TrainConfig) -> bool:
        return self.stopped or self.epoch >= config.epochs


def _optimizer_id(optimizer: optax.GradientTransformation | None, config: TrainConfig) -> Any:
    if optimizer is None:
        return {"name": "adam", "learning_rate": config.learning_rate}
    return "custom"  # a user's transformation: its state's shapes are still checked on resume


def _fingerprint(config: TrainConfig, data: ClassifierData, st_model, extra: Mapping) -> str:
    settings = dataclasses.asdict(config)
    for key in ("epochs", "checkpoint_every"):
        settings.pop(key)
    shapes = {k: [list(v.shape), v.dtype.str] for k, v in tree_to_arrays(st_model).items()}
    doc = {"config": settings, "data": data.digest(), "model": shapes, "extra": dict(extra)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _resume(store: CheckpointStore, loop: _Loop) -> _Loop:
    """The loop state of the latest checkpoint (its arrays checked against ``loop``'s)."""
    restored, doc = store.restore(loop.arrays())
    try:
        out = _Loop(
            model=jax.tree.map(jnp.asarray, restored["model"]),
            opt=jax.tree.map(jnp.asarray, restored["opt"]),
            best=jax.tree.map(jnp.asarray, restored["best"]),
            losses=[float(v) for v in doc["loss"]],
            val_accuracy=[float(v) for v in doc["val_accuracy"]],
            best_val=float(doc["best_val_accuracy"]),
            best_epoch=int(doc["best_epoch"]),
            bad=int(doc["bad_epochs"]),
            epoch=int(doc["epoch"]),
            stopped=bool(doc["stopped"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{store.directory}: training checkpoint is corrupted ({exc})") from None
    if len(out.losses) != out.epoch:
        raise InputError(f"{store.directory}: training checkpoint is corrupted (history length)")
    return out


def _epoch(loop: _Loop, gd_m, gd_o, arrays: _Arrays, key, config: TrainConfig) -> None:
    """Train one epoch, evaluate on the validation rows, update the early-stopping state."""
    loop.model, loop.opt, loss = _train_epoch(
        gd_m, gd_o, loop.model, loop.opt, key, arrays.x, arrays.y, arrays.w, arrays.mask,
        batch_size=config.batch_size,
    )  # fmt: skip
    correct = _eval_correct(gd_m, loop.model, arrays.x_val, arrays.y_val, arrays.mask_val)
    acc = int(correct) / arrays.n_val
    loop.epoch += 1
    loop.losses.append(float(loss))
    loop.val_accuracy.append(acc)
    if acc > loop.best_val:
        loop.best_val, loop.best_epoch, loop.bad = acc, loop.epoch, 0
        loop.best = _copy(loop.model)  # a real copy, not a reference to the live state
    else:
        loop.bad += 1
    loop.stopped = config.patience is not None and loop.bad >= config.patience


def _report(loop: _Loop, config: TrainConfig) -> dict[str, Any]:
    return {
        "epoch": loop.epoch,
        "epochs": config.epochs,
        "loss": loop.losses[-1],
        "val_accuracy": loop.val_accuracy[-1],
        "best_epoch": loop.best_epoch,
        "best_val_accuracy": loop.best_val,
    }


def fit_classifier(
    model: nnx.Module,
    data: ClassifierData,
    config: TrainConfig,
    *,
    optimizer: optax.GradientTransformation | None = None,
    checkpoint_dir: str | Path | None = None,
    callback: ProgressFn | None = None,
    fingerprint_extra: Mapping[str, Any] | None = None,
) -> History:
    """Train ``model`` in place on ``data`` (see the module docstring for the protocol).

    Args:
        model: an NNX module mapping ``(n, d)`` inputs to ``(n, C)`` scores, e.g.
            :class:`fusers.MLP`; its initial weights are the caller's (seeded ``nnx.Rngs``).
        data: training and validation arrays; validation rows are never trained on.
        config: optimisation settings.
        optimizer: an optax transformation; ``None`` is Adam at ``config.learning_rate``.
        checkpoint_dir: folder of resumable training checkpoints. A checkpoint of another run
            (other data, model, optimiser or settings other than ``epochs``) is refused with
            an :class:`ensembles.util.InputError`; a finished run is not retrained.
        callback: called after every epoch with a dict (``epoch``, ``epochs``, ``loss``,
            ``val_accuracy``, ``best_epoch``, ``best_val_accuracy``); may raise to stop.
        fingerprint_extra: extra JSON-able settings that must match for a resume.

    Returns:
        The :class:`History`; ``model`` holds the restored parameters.

    Raises:
        InputError: bad settings, or an incompatible or corrupted checkpoint.

    Example:
        >>> from fusers._mlp import MLP
        >>> rng = np.random.default_rng(0)
        >>> x = rng.random((64, 4)).astype(np.float32); y = (x[:, 0] > 0.5).astype(int)
        >>> m = np.ones((64, 2), bool)
        >>> data = ClassifierData.create(x[:48], y[:48], m[:48], x[48:], y[48:], m[48:])
        >>> h = fit_classifier(MLP(4, 2, rngs=nnx.Rngs(0)), data, TrainConfig(epochs=3))
        >>> h.epochs_run, len(h.val_accuracy)
        (3, 3)
    """
    config = config.validated()
    start_time = time.perf_counter()
    gd_m, st_m = nnx.split(model)
    gd_o, st_o = nnx.split(make_optimizer(model, learning_rate=config.learning_rate,
                                          optimizer=optimizer))  # fmt: skip
    arrays = _device_arrays(data)
    loop = _Loop(model=st_m, opt=st_o, best=_copy(st_m))
    store, resumed_from = None, None
    if checkpoint_dir is not None:
        extra = {**(fingerprint_extra or {}), "optimizer": _optimizer_id(optimizer, config)}
        fingerprint = _fingerprint(config, data, st_m, extra)
        store = CheckpointStore(checkpoint_dir, keep=KEEP_CHECKPOINTS, fingerprint=fingerprint)
        if store.latest() is not None:
            loop = _resume(store, loop)
            resumed_from = loop.epoch
    base_key = jax.random.key(config.seed)
    try:
        while not loop.done(config):
            _epoch(loop, gd_m, gd_o, arrays, jax.random.fold_in(base_key, loop.epoch + 1), config)
            due = loop.epoch % config.checkpoint_every == 0 or loop.done(config)
            if store is not None and due:
                store.save(loop.epoch, loop.arrays(), loop.bookkeeping())
            if callback is not None:
                callback(_report(loop, config))
    finally:
        if store is not None:
            store.close()
    nnx.update(model, loop.best if config.restore == "best" else loop.model)
    return History(
        loss=loop.losses, val_accuracy=loop.val_accuracy, best_epoch=loop.best_epoch,
        best_val_accuracy=loop.best_val, epochs_run=len(loop.losses),
        stopped_early=loop.stopped, resumed_from=resumed_from,
        seconds=time.perf_counter() - start_time,
    )  # fmt: skip
