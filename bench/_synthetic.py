"""Seeded synthetic bundles with realistically correlated errors, for benchmarks."""

from __future__ import annotations

import numpy as np

import ensembles


def synthetic_bundle(
    n_models: int, n_samples: int, *, n_classes: int = 10, seed: int = 0
) -> ensembles.Bundle:
    """A bundle whose members share per-sample difficulty, so errors are correlated.

    Each sample has a latent difficulty, each model a skill; a model is wrong with probability
    ``sigmoid(difficulty - skill)``, and then answers a random wrong class (or abstains 5% of
    the time).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n_samples)
    difficulty = rng.normal(0.0, 1.5, n_samples)
    skill = rng.uniform(-0.5, 2.0, n_models)
    p_wrong = 1.0 / (1.0 + np.exp(-(difficulty[None, :] - skill[:, None])))
    wrong = rng.random((n_models, n_samples)) < p_wrong
    offset = rng.integers(1, n_classes, (n_models, n_samples))
    preds = np.where(wrong, (labels[None, :] + offset) % n_classes, labels[None, :])
    preds = np.where(wrong & (rng.random((n_models, n_samples)) < 0.05), -1, preds)
    return ensembles.Bundle.create(
        models=[f"model_{i:02d}" for i in range(n_models)],
        labels=labels,
        preds=preds,
        n_classes=n_classes,
    )
