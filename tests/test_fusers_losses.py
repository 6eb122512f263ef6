"""The fusers' training losses and probabilities against independent float64 NumPy formulas.

Fixed variant: softmax cross-entropy of the last Dense layer's logits, invalid classes at
``-inf``, weighted mean over rows (weight 0 rows count for nothing). Faithful variant (the
reference network): the head outputs ``softmax(sigmoid(z))`` and the loss applies a softmax
cross-entropy to those outputs as if they were logits; no masking.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import ensembles
import fusers
from fusers._mlp import masked_loss


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _log_softmax(a):
    top = np.max(a, axis=1, keepdims=True)
    return a - top - np.log(np.exp(a - top).sum(axis=1, keepdims=True))


def _forward64(model, x):
    """The MLP in float64 NumPy: Dense, sigmoid, ..., Dense (pre-head logits z)."""
    h = np.asarray(x, np.float64)
    layers = list(model.layers)
    for i, layer in enumerate(layers):
        h = h @ np.asarray(layer.kernel[...], np.float64) + np.asarray(layer.bias[...], np.float64)
        if i < len(layers) - 1:
            h = _sigmoid(h)
    return h


def _fixed_loss(z, y, w, mask):
    logp = _log_softmax(np.where(mask, z, -np.inf))
    nll = -logp[np.arange(len(y)), y]
    nll = np.where(w > 0, nll, 0.0)
    return (w * nll).sum() / max(w.sum(), 1e-12)


def _faithful_loss(z, y, w):
    out = np.exp(_log_softmax(_sigmoid(z)))  # the reference head's "probabilities"
    nll = -_log_softmax(out)[np.arange(len(y)), y]  # ... used again as logits
    return (w * nll).sum() / max(w.sum(), 1e-12)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    n, d, c = 40, 6, 4
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, c, n)
    w = (rng.random(n) > 0.2).astype(np.float32)
    mask = rng.random((n, c)) > 0.3
    mask[np.arange(n), y] = True  # the label is a valid class (the trainer guarantees it)
    return x, y, w, mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fixed_loss_matches_numpy(batch, seed):
    x, y, w, mask = batch
    model = fusers.MLP(x.shape[1], mask.shape[1], hidden=(8, 5), rngs=nnx.Rngs(seed))
    loss, correct = masked_loss(model, jnp.asarray(x), jnp.asarray(y), jnp.asarray(w),
                                jnp.asarray(mask))  # fmt: skip
    z = _forward64(model, x)
    np.testing.assert_allclose(float(loss), _fixed_loss(z, y, w, mask), rtol=1e-5)
    pred = np.where(mask, z, -np.inf).argmax(axis=1)
    assert int(correct) == int(((pred == y) & (w > 0)).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_faithful_loss_matches_numpy(batch, seed):
    x, y, w, mask = batch
    model = fusers.MLP(x.shape[1], mask.shape[1], hidden=(8,), faithful=True,
                       rngs=nnx.Rngs(seed))  # fmt: skip
    loss, _ = masked_loss(model, jnp.asarray(x), jnp.asarray(y), jnp.asarray(w),
                          jnp.asarray(mask))  # fmt: skip
    z = _forward64(model, x)
    np.testing.assert_allclose(float(loss), _faithful_loss(z, y, w), rtol=1e-5)
    # the faithful loss ignores the mask (the reference did not mask padded slots)
    loss_nomask, _ = masked_loss(model, jnp.asarray(x), jnp.asarray(y), jnp.asarray(w),
                                 jnp.ones(mask.shape, bool))  # fmt: skip
    assert float(loss_nomask) == float(loss)
    # outputs in [0, 1] used as logits: each row's loss lies in [log(e+C-1) - 1, log(1+(C-1)e)]
    c = mask.shape[1]
    assert np.log(np.e + c - 1) - 1 - 1e-6 <= float(loss) <= np.log(1 + (c - 1) * np.e) + 1e-6


def test_zero_weight_rows_do_not_count(batch):
    x, y, w, mask = batch
    model = fusers.MLP(x.shape[1], mask.shape[1], hidden=(8,), rngs=nnx.Rngs(0))
    keep = w > 0
    full, _ = masked_loss(model, jnp.asarray(x), jnp.asarray(y), jnp.asarray(w), jnp.asarray(mask))
    kept, _ = masked_loss(model, jnp.asarray(x[keep]), jnp.asarray(y[keep]),
                          jnp.asarray(w[keep]), jnp.asarray(mask[keep]))  # fmt: skip
    np.testing.assert_allclose(float(full), float(kept), rtol=1e-6)


@pytest.mark.parametrize("faithful", [False, True])
def test_fitted_fuser_probabilities_match_numpy(faithful):
    rng = np.random.default_rng(3)
    n, c = 240, 3
    y = rng.integers(0, c, n)
    p = rng.random((2, n, c))
    p[0, np.arange(n), y] += 0.7
    b = ensembles.with_random_split(
        ensembles.Bundle.create(models=["a", "b"], labels=y, probs=p), seed=0
    )
    f = fusers.MLPFuser(epochs=4, hidden=(7,), faithful=faithful, seed=1).fit(b)
    x = np.transpose(p, (1, 0, 2)).reshape(n, 2 * c)  # model-major inputs
    z = _forward64(f.model_, x)
    if faithful:
        expected = np.exp(_log_softmax(_sigmoid(z)))
    else:
        expected = np.exp(_log_softmax(z))
    np.testing.assert_allclose(f.predict_proba(b), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(f.predict(b), expected.argmax(axis=1))
