"""The test split never influences training: permuting its labels leaves the chosen team, the
fuser's training (losses, early-stopping epoch, parameters) and the best single model alone;
only the reported test numbers move."""

from __future__ import annotations

import numpy as np
import pytest

import fusers
from ensembles import Bundle

N, C, M = 360, 4, 5


def _bundle(labels=None) -> Bundle:
    rng = np.random.default_rng(11)
    y = rng.integers(0, C, N)
    p = rng.random((M, N, C))
    for m, boost in enumerate((0.9, 0.6, 0.5, 0.3, 0.0)):
        p[m, np.arange(N), y] += boost * rng.random(N)
    split = np.array(["train"] * 200 + ["val"] * 60 + ["test"] * 100)
    models = [f"m{i}" for i in range(M)]
    return Bundle.create(models=models, labels=y if labels is None else labels, probs=p,
                         split=split)  # fmt: skip


def _permuted_test_labels(b: Bundle) -> np.ndarray:
    y = b.labels.copy()
    test = np.flatnonzero(np.asarray(b.split) == "test")
    y[test] = np.random.default_rng(5).permutation(y[test])
    y[test[:20]] = (y[test[:20]] + 1) % C  # class counts of the test rows change too
    return y


@pytest.fixture(scope="module")
def runs():
    params = {"epochs": 60, "patience": 5, "learning_rate": 1e-2, "hidden": (32,)}
    original = _bundle()
    permuted = _bundle(_permuted_test_labels(original))
    out = []
    for b in (original, permuted):
        out.append(fusers.topla(b, sizes=(2, 3), seed=0, fuser_params=params))
    return out


def test_team_choice_is_unchanged(runs):
    a, b = runs
    assert a.team == b.team
    assert a.selection.teams == b.selection.teams  # members, scores, accuracies, fitness


def test_fuser_training_and_early_stopping_are_unchanged(runs):
    a, b = runs
    ha, hb = a.fuser.history_, b.fuser.history_
    assert ha["stopped_early"]  # early stopping did act: the best epoch was chosen on val
    assert ha["loss"] == hb["loss"]
    assert ha["val_accuracy"] == hb["val_accuracy"]
    assert ha["best_epoch"] == hb["best_epoch"]
    for key in a.fuser.params_:
        np.testing.assert_array_equal(a.fuser.params_[key], b.fuser.params_[key])
    assert a.val_accuracy == b.val_accuracy


def test_best_single_choice_is_unchanged(runs):
    a, b = runs
    assert a.baselines["best_single"]["name"] == b.baselines["best_single"]["name"]
    assert (
        a.baselines["best_single"]["select_accuracy"]
        == b.baselines["best_single"]["select_accuracy"]
    )


def test_only_the_reported_test_numbers_change(runs):
    a, b = runs
    assert a.accuracy != b.accuracy
    assert a.baselines["best_single"]["accuracy"] != b.baselines["best_single"]["accuracy"]
