"""The two MARL-Focal agents as Flax NNX policies, and their distributions (distrax)."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

with warnings.catch_warnings():  # distrax's TFP backend warns about a deprecated JAX name
    warnings.simplefilter("ignore", DeprecationWarning)
    import distrax

__all__ = [
    "Aggregator",
    "Decider",
    "VoteAggregator",
    "init_aggregator",
    "init_decider",
    "vote_matrix",
]

_NEG = -1e9


class Decider(nnx.Module):
    """Selection agent: ``h = relu(Dense(M+2+d → 128)(s))``, one 2-way softmax head per model.

    ``d`` is the length of the query features of a contextual decider (0: the reference's).

    The ``M`` heads are stored as one ``Dense(128 → 2M)`` (the same function as ``M`` separate
    ``Dense(128 → 2)`` layers); a value head ``Dense(128 → 1)`` serves PPO's baseline and is
    unused by REINFORCE.

    Example:
        >>> d = Decider(3, rngs=nnx.Rngs(0))
        >>> logits, value = d(jnp.ones(5))
        >>> logits.shape, value.shape
        ((3, 2), ())
    """

    def __init__(
        self, n_models: int, *, n_context: int = 0, hidden: int = 128, rngs: nnx.Rngs
    ) -> None:
        self.n_models = int(n_models)
        self.trunk = nnx.Linear(self.n_models + 2 + int(n_context), hidden, rngs=rngs)
        self.heads = nnx.Linear(hidden, 2 * self.n_models, rngs=rngs)
        self.value = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, s: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Per-model logits ``(..., M, 2)`` (index 1 = consult) and the value ``(...)``."""
        h = jax.nn.relu(self.trunk(s))
        logits = self.heads(h).reshape(*s.shape[:-1], self.n_models, 2)
        return logits, self.value(h)[..., 0]


def decider_dist(logits: jax.Array) -> distrax.Categorical:
    """The decider's policy: independent 2-way categoricals, one per model."""
    return distrax.Categorical(logits=logits)


class Aggregator(nnx.Module):
    """Fusion agent: Dense(M·C → 100) → sigmoid → Dense(100 → 100) → sigmoid → Dense(100 → C).

    Xavier-uniform weights, bias 0.01; classes outside ``class_mask`` get a logit of ``-1e9``
    (padding of tasks with fewer classes). A value head ``Dense(100 → 1)`` serves PPO.

    Example:
        >>> a = Aggregator(2, 3, rngs=nnx.Rngs(0))
        >>> logits, value = a(jnp.ones(6), jnp.array([True, True, False]))
        >>> bool(logits[2] < -1e8), value.shape
        (True, ())
    """

    def __init__(self, n_models: int, n_classes: int, *, hidden: int = 100, rngs: nnx.Rngs):
        k = nnx.initializers.xavier_uniform()
        b = nnx.initializers.constant(0.01)
        self.l1 = nnx.Linear(n_models * n_classes, hidden, kernel_init=k, bias_init=b, rngs=rngs)
        self.l2 = nnx.Linear(hidden, hidden, kernel_init=k, bias_init=b, rngs=rngs)
        self.l3 = nnx.Linear(hidden, n_classes, kernel_init=k, bias_init=b, rngs=rngs)
        self.value = nnx.Linear(hidden, 1, kernel_init=k, bias_init=b, rngs=rngs)

    def __call__(self, x: jax.Array, class_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Masked class logits ``(..., C)`` and the value ``(...)``."""
        h = jax.nn.sigmoid(self.l2(jax.nn.sigmoid(self.l1(x))))
        logits = jnp.where(class_mask, self.l3(h), _NEG)
        return logits, self.value(h)[..., 0]


class VoteAggregator(nnx.Module):
    """Fusion agent of the fixed mode: a learnable weighted vote of the consulted models.

    The class logits of a query are

    ``z_c = exp(τ) · (Σ_j exp(θ_j)·v_jc + Σ_j σ_j·p_jc) + r_c(x)``

    where ``v_j`` is consulted member ``j``'s one-hot vote (zero if not consulted or abstaining),
    ``p_j`` its per-class probabilities (zero if not consulted), ``θ_j`` a per-model trust logit
    (init 0), ``σ_j`` a per-model weight of its soft vote (init 0), ``τ`` a sharpness (init 0)
    and ``r`` a residual ``Dense(M·C → H) → sigmoid → Dense(H → C)`` whose output layer is
    zero-initialised. Untrained, the logits are the plain vote counts, so the greedy answer is
    exactly the plurality vote of the consulted models (ties to the smallest class) and the
    sampled answer follows the vote shares. Learning can only move it from there: trust and
    soft weights are per model, not per class, so what is learned on one class transfers to
    every class; only the residual can learn class-specific corrections. A value head
    ``Dense(H → 1)`` on the residual's hidden layer serves PPO's baseline.

    Example:
        >>> a = VoteAggregator(3, 2, rngs=nnx.Rngs(0))
        >>> votes = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        >>> logits, _ = a(jnp.zeros(6), jnp.array([True, True]), votes)
        >>> logits.tolist()
        [2.0, 1.0]
    """

    def __init__(self, n_models: int, n_classes: int, *, hidden: int = 32, rngs: nnx.Rngs):
        zeros = nnx.initializers.zeros_init()
        self.trust = nnx.Param(jnp.zeros(n_models, jnp.float32))
        self.soft = nnx.Param(jnp.zeros(n_models, jnp.float32))
        self.sharpness = nnx.Param(jnp.zeros((), jnp.float32))
        self.l1 = nnx.Linear(n_models * n_classes, hidden, rngs=rngs)
        self.res = nnx.Linear(hidden, n_classes, kernel_init=zeros, bias_init=zeros, rngs=rngs)
        self.value = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(
        self, x: jax.Array, class_mask: jax.Array, votes: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Masked class logits ``(..., C)`` and the value ``(...)``.

        Args:
            x: ``(..., M·C)`` consulted members' probabilities, flattened (others zero).
            class_mask: ``(C,)`` the task's real classes.
            votes: ``(..., M, C)`` consulted members' one-hot votes.
        """
        probs = x.reshape(votes.shape)
        tally = jnp.einsum("m,...mc->...c", jnp.exp(self.trust[...]), votes)
        tally = tally + jnp.einsum("m,...mc->...c", self.soft[...], probs)
        h = jax.nn.sigmoid(self.l1(x))
        logits = jnp.exp(self.sharpness[...]) * tally + self.res(h)
        return jnp.where(class_mask, logits, _NEG), self.value(h)[..., 0]


def vote_matrix(team: jax.Array, preds_t: jax.Array, n_classes: int) -> jax.Array:
    """``(M, C)`` one-hot votes of the consulted members (abstentions and others zero).

    Example:
        >>> vote_matrix(jnp.array([1, 0, 1]), jnp.array([1, 0, -1]), 2).tolist()
        [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]
    """
    return jax.nn.one_hot(preds_t, n_classes) * jnp.asarray(team, jnp.float32)[:, None]


def aggregator_dist(logits: jax.Array) -> distrax.Categorical:
    """The aggregator's policy over classes."""
    return distrax.Categorical(logits=logits)


def init_decider(key, n_models: int, n_context: int = 0):
    """``(graphdef, params)`` of a fresh decider seeded by ``key`` (``n_context`` features).

    Example:
        >>> gd, p = init_decider(jax.random.key(0), 3)
        >>> p["heads"]["kernel"].shape
        (128, 6)
    """
    return nnx.split(Decider(n_models, n_context=n_context, rngs=nnx.Rngs(key)))


def init_aggregator(
    key, n_models: int, n_classes: int, pad_classes: int | None = None, *, kind: str = "mlp"
):
    """``(graphdef, params)`` of a fresh aggregator, zero-padded to ``pad_classes`` classes.

    ``kind``: ``"mlp"`` (:class:`Aggregator`, the reference's) or ``"vote"``
    (:class:`VoteAggregator`).

    Weights are drawn at the true size ``n_classes`` (so Xavier scales are those of the task)
    and then embedded in a ``pad_classes`` network whose extra inputs and outputs are zero and
    masked: the padded network computes the same function.

    Example:
        >>> gd, p = init_aggregator(jax.random.key(0), 2, 3, pad_classes=5)
        >>> p["l1"]["kernel"].shape, p["l3"]["kernel"].shape
        ((10, 100), (100, 5))
    """
    pad = n_classes if pad_classes is None else int(pad_classes)
    cls = VoteAggregator if kind == "vote" else Aggregator
    # Draw at the true size, then embed in a ``pad``-class network of the same kind.
    _, small = nnx.split(cls(n_models, n_classes, rngs=nnx.Rngs(key)))
    gd, big = nnx.split(cls(n_models, pad, rngs=nnx.Rngs(0)))
    if pad == n_classes:
        return gd, small
    s = nnx.to_pure_dict(small)
    b = nnx.to_pure_dict(big)
    b["l1"] = _padded_first_layer(s["l1"], n_models, n_classes, pad)
    if kind == "vote":
        for name in ("trust", "soft", "sharpness", "value"):
            b[name] = s[name]
    else:
        k3 = np.zeros((b["l3"]["kernel"].shape[0], pad), np.float32)
        k3[:, :n_classes] = np.asarray(s["l3"]["kernel"])
        b3 = np.zeros(pad, np.float32)
        b3[:n_classes] = np.asarray(s["l3"]["bias"])
        b["l2"] = s["l2"]
        b["l3"] = {"kernel": jnp.asarray(k3), "bias": jnp.asarray(b3)}
        b["value"] = s["value"]
    nnx.replace_by_pure_dict(big, b)
    return gd, big


def _padded_first_layer(layer: dict, n_models: int, n_classes: int, pad: int) -> dict:
    """A first layer over ``n_models × n_classes`` inputs, with zero rows for padded classes."""
    width = np.asarray(layer["kernel"]).shape[1]
    k1 = np.zeros((n_models, pad, width), np.float32)
    k1[:, :n_classes] = np.asarray(layer["kernel"]).reshape(n_models, n_classes, width)
    return {"kernel": jnp.asarray(k1.reshape(n_models * pad, width)), "bias": layer["bias"]}
