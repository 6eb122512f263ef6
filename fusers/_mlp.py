"""The shared fuser network of LLM-TOPLA-Weighted and FusionShot, in Flax NNX (docs/fusers.md)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

__all__ = ["MLP", "fuser_logits", "masked_loss"]


class MLP(nnx.Module):
    """Dense → sigmoid → … → Dense, Xavier-uniform weights and bias 0.01.

    The fixed default returns the logits of the last Dense layer. The *faithful* variant
    (``faithful=True``) reproduces the reference head: ``softmax(sigmoid(z))``; its training
    loss then applies a softmax cross-entropy to those outputs as if they were logits (the
    reference's double softmax), and padded slots are not masked.

    Args:
        in_features: input width (members × slots, model-major).
        out_features: number of classes / slots.
        hidden: widths of the hidden layers (reference: ``(100, 100)``).
        faithful: reproduce the reference head (see above).
        rngs: the :class:`flax.nnx.Rngs` used to initialise the weights.

    Example:
        >>> m = MLP(6, 3, rngs=nnx.Rngs(0))
        >>> m(jnp.ones((2, 6))).shape
        (2, 3)
        >>> round(float(m.layers[0].bias[0]), 6)
        0.01
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hidden: Sequence[int] = (100, 100),
        faithful: bool = False,
        rngs: nnx.Rngs,
    ) -> None:
        dims = (int(in_features), *(int(h) for h in hidden), int(out_features))
        kernel_init = nnx.initializers.xavier_uniform()
        bias_init = nnx.initializers.constant(0.01)
        self.layers = nnx.List(
            [
                nnx.Linear(a, b, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)
                for a, b in zip(dims[:-1], dims[1:], strict=True)
            ]
        )
        self.faithful = bool(faithful)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits (fixed) or ``softmax(sigmoid(z))`` (faithful), shape ``(batch, out)``."""
        for layer in self.layers[:-1]:
            x = nnx.sigmoid(layer(x))
        z = self.layers[-1](x)
        if self.faithful:
            return nnx.softmax(nnx.sigmoid(z), axis=-1)
        return z


def fuser_logits(model: MLP, x: jax.Array, mask: jax.Array) -> jax.Array:
    """Scores used for the loss and the argmax: invalid slots at ``-inf`` (fixed variant).

    The faithful variant is not masked (the reference did not mask padded slots).

    Example:
        >>> m = MLP(2, 3, rngs=nnx.Rngs(0))
        >>> out = fuser_logits(m, jnp.ones((1, 2)), jnp.array([[True, False, True]]))
        >>> bool(jnp.isneginf(out[0, 1]))
        True
    """
    out = model(x)
    if model.faithful:
        return out
    return jnp.where(mask, out, -jnp.inf)


def masked_loss(
    model: MLP, x: jax.Array, y: jax.Array, w: jax.Array, mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Weighted mean softmax cross-entropy with integer labels, and the batch's correct count.

    Rows of weight 0 (batch padding, unanswerable rows) contribute nothing; their label must
    still index a valid slot (the trainer sanitises it), so no ``inf`` or NaN arises.

    Example:
        >>> m = MLP(2, 2, rngs=nnx.Rngs(0))
        >>> loss, _ = masked_loss(m, jnp.ones((3, 2)), jnp.array([0, 1, 0]),
        ...                       jnp.array([1.0, 1.0, 0.0]), jnp.ones((3, 2), bool))
        >>> bool(jnp.isfinite(loss))
        True
    """
    logits = fuser_logits(model, x, mask)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    ce = jnp.where(w > 0, ce, 0.0)
    total = jnp.maximum(w.sum(), 1e-12)
    correct = ((jnp.argmax(logits, axis=-1) == y) * (w > 0)).sum()
    return (w * ce).sum() / total, correct
