"""Training toolkit and MLP fusers: learning, determinism, resume, masking, early stopping."""

from __future__ import annotations

import numpy as np
import pytest

import ensembles
import fusers
from ensembles import Bundle, BundleError

N = 400


def _oracle_bundle(*, probs: bool = False, seed: int = 0) -> Bundle:
    """Member 'right' is always right; the two others are random."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, N)
    preds = np.stack([rng.integers(0, 4, N), y, rng.integers(0, 4, N)])
    models = ["noise_a", "right", "noise_b"]
    if probs:
        p = rng.random((3, N, 4))
        p[1, np.arange(N), y] += 1.0  # the right member's argmax is the label
        b = Bundle.create(models=models, labels=y, probs=p)
    else:
        b = Bundle.create(models=models, labels=y, preds=preds)
    return ensembles.with_random_split(b, seed=0)


@pytest.fixture(scope="module")
def oracle() -> Bundle:
    return _oracle_bundle()


@pytest.fixture(scope="module")
def trained(oracle):
    return fusers.ToplaFuser(epochs=60, seed=0).fit(oracle)


def test_follows_the_always_right_member(trained, oracle):
    test = oracle.select_split("test")
    assert trained.score(oracle, split="test") == 1.0
    np.testing.assert_array_equal(trained.predict(test), test.preds[1])
    assert trained.team_ == ("noise_a", "right", "noise_b")
    assert trained.history_["best_val_accuracy"] == 1.0
    proba = trained.predict_proba(test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert (proba.argmax(axis=1) == test.labels).all()


def test_follows_the_right_member_with_scores():
    b = _oracle_bundle(probs=True, seed=1)
    f = fusers.FusionShotFuser(epochs=120, seed=0).fit(b)
    assert f.score(b, split="test") >= 0.95
    assert f.history_["epochs_run"] == 120  # FusionShot never stops early


def test_deterministic_under_a_seed(trained, oracle):
    again = fusers.ToplaFuser(epochs=60, seed=0).fit(oracle)
    assert trained.params_.keys() == again.params_.keys()
    for k in trained.params_:
        np.testing.assert_array_equal(trained.params_[k], again.params_[k])
    assert trained.history_["loss"] == again.history_["loss"]
    other = fusers.ToplaFuser(epochs=2, seed=1).fit(oracle)
    k = next(iter(other.params_))
    assert not np.array_equal(other.params_[k], trained.params_[k])


class _Stop(Exception):
    pass


def test_resume_gives_the_uninterrupted_run(oracle, tmp_path):
    kw = {"epochs": 8, "seed": 3, "checkpoint_every": 2}
    full = fusers.ToplaFuser(**kw).fit(oracle)

    def interrupt(info):
        if info["epoch"] == 5:
            raise _Stop

    with pytest.raises(_Stop):
        fusers.ToplaFuser(**kw).fit(oracle, checkpoint_dir=tmp_path, callback=interrupt)
    from fusers._checkpoint import CheckpointStore

    assert CheckpointStore(tmp_path).steps() == [2, 4]  # every 2 epochs, the last 2 kept
    resumed = fusers.ToplaFuser(**kw).fit(oracle, checkpoint_dir=tmp_path)
    assert resumed.history_["resumed_from"] == 4
    assert resumed.history_["loss"] == full.history_["loss"]
    assert resumed.history_["val_accuracy"] == full.history_["val_accuracy"]
    for k in full.params_:
        np.testing.assert_array_equal(resumed.params_[k], full.params_[k])
    # a finished run is not retrained; other settings are refused
    done = fusers.ToplaFuser(**kw).fit(oracle, checkpoint_dir=tmp_path)
    assert done.history_["resumed_from"] == 8
    with pytest.raises(ValueError, match="belongs to another run"):
        fusers.ToplaFuser(**{**kw, "seed": 4}).fit(oracle, checkpoint_dir=tmp_path)


def test_padded_slots_are_never_predicted():
    rng = np.random.default_rng(0)
    n = 300
    gold = rng.integers(0, 3, n)
    # member 0 answers gold or gold+1; member 1 answers gold+1; a few golds are never sampled
    s0 = [[int(g), int(g), int(g + 1)] for g in gold]
    s1 = [[int(g + 1)] * 2 for g in gold]
    gold_list = [int(g) if i % 10 else 99 for i, g in enumerate(gold)]  # 10 % unanswerable
    space = fusers.answer_space([s0, s1], gold_list, space_size=6)
    b = ensembles.with_random_split(space.to_bundle(["m0", "m1"]), seed=0, stratify=False)
    f = fusers.ToplaFuser(epochs=40, valid_classes="support").fit(b)
    assert np.isfinite(f.history_["loss"]).all()
    pred = f.predict(b)
    assert set(np.unique(pred).tolist()) <= {0, 1}  # only real slots (2 answers per row)
    proba = f.predict_proba(b)
    assert (proba[:, 2:] == 0).all()
    unans = space.unanswerable
    assert unans.sum() > 0 and (pred[unans] != b.labels[unans]).all()  # counted wrong
    assert f.score(b) <= 1 - unans.mean() + 1e-12


def test_early_stopping_and_restore(oracle):
    f = fusers.ToplaFuser(epochs=200, patience=3, seed=0).fit(oracle)
    h = f.history_
    assert h["stopped_early"] and h["epochs_run"] < 200
    assert h["epochs_run"] == h["best_epoch"] + 3
    assert f.score(oracle, split="val") == h["best_val_accuracy"]
    last = fusers.ToplaFuser(epochs=6, patience=None, restore="last", seed=0).fit(oracle)
    best = fusers.ToplaFuser(epochs=6, patience=None, restore="best", seed=0).fit(oracle)
    if best.history_["best_epoch"] != 6:
        k = next(iter(best.params_))
        assert not np.array_equal(best.params_[k], last.params_[k])
    assert best.score(oracle, split="val") == best.history_["best_val_accuracy"]
    assert last.score(oracle, split="val") == last.history_["val_accuracy"][-1]


def test_faithful_network(oracle):
    f = fusers.ToplaFuser(epochs=3, faithful=True).fit(oracle)
    assert np.isfinite(f.history_["loss"]).all()
    p = f.predict_proba(oracle)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert f.model_.faithful


def test_train_step_is_jitted_and_learns():
    import jax.numpy as jnp
    from flax import nnx

    model = fusers.MLP(4, 2, rngs=nnx.Rngs(0))
    opt = fusers.make_optimizer(model, learning_rate=1e-2)
    x = jnp.asarray(np.eye(4)[[0, 1, 2, 3] * 8], jnp.float32)
    y = jnp.asarray([0, 1, 0, 1] * 8, jnp.int32)
    w, m = jnp.ones(32), jnp.ones((32, 2), bool)
    first = float(fusers.train_step(model, opt, x, y, w, m))
    for _ in range(200):
        loss = float(fusers.train_step(model, opt, x, y, w, m))
    assert loss < first / 2


def test_bad_input(oracle, trained):
    with pytest.raises(ValueError, match="not fitted"):
        fusers.ToplaFuser().predict(oracle)
    with pytest.raises(BundleError, match="unknown model"):
        fusers.ToplaFuser(epochs=1).fit(oracle, team=["right", "nobody"])
    with pytest.raises(ValueError, match="at least 2 members"):
        fusers.ToplaFuser(epochs=1).fit(oracle, team=["right"])
    with pytest.raises(ValueError, match="epochs"):
        fusers.ToplaFuser(epochs=0).fit(oracle)
    with pytest.raises(ValueError, match="valid_classes"):
        fusers.ToplaFuser(valid_classes="x").fit(oracle)
    other = Bundle.create(models=list(oracle.models), labels=[0], preds=[[0], [0], [0]],
                          n_classes=5)  # fmt: skip
    with pytest.raises(BundleError, match="n_classes"):
        trained.predict(other)
    assert fusers.ToplaFuser(epochs=7).get_params()["epochs"] == 7
    assert "patience=200" in repr(fusers.ToplaFuser())


def test_one_compilation_per_shape(oracle):
    from fusers import _train

    fusers.ToplaFuser(epochs=1, seed=5).fit(oracle)
    before = _train._train_epoch._cache_size()
    for seed in (6, 7):
        fusers.ToplaFuser(epochs=1, seed=seed).fit(oracle)
    assert _train._train_epoch._cache_size() == before


def test_optimizer_is_any_optax_transformation(oracle, tmp_path):
    import json

    import optax

    default = fusers.ToplaFuser(epochs=3, seed=0).fit(oracle)
    adam = fusers.ToplaFuser(epochs=3, seed=0, optimizer=optax.adam(1e-3)).fit(oracle)
    for k in default.params_:  # None is Adam at learning_rate
        np.testing.assert_array_equal(adam.params_[k], default.params_[k])
    sgd = fusers.ToplaFuser(epochs=3, seed=0, optimizer=optax.sgd(0.5)).fit(oracle)
    assert sgd.history_["loss"] != default.history_["loss"]
    sgd.save(tmp_path / "f")
    doc = json.loads((tmp_path / "f" / "fuser.json").read_text())
    assert doc["optimizer"] == "custom" and doc["params"]["optimizer"] is None
    np.testing.assert_array_equal(fusers.load_fuser(tmp_path / "f").predict(oracle),
                                  sgd.predict(oracle))  # fmt: skip
    with pytest.raises(ValueError, match="optax.GradientTransformation"):
        fusers.ToplaFuser(epochs=1, optimizer="adam").fit(oracle)


def test_best_state_is_a_copy_not_the_live_parameters(oracle):
    # Stopping early keeps training past the best epoch (patience): the restored parameters
    # must be those of the best epoch, which score exactly the recorded best val accuracy.
    f = fusers.ToplaFuser(epochs=40, patience=5, learning_rate=0.3, seed=0).fit(oracle)
    h = f.history_
    assert h["best_epoch"] < h["epochs_run"]
    assert h["val_accuracy"][-1] != h["best_val_accuracy"]  # the live state moved on
    assert f.score(oracle, split="val") == h["best_val_accuracy"]


def test_raising_epochs_continues_a_finished_run(oracle, tmp_path):
    kw = {"seed": 1, "checkpoint_every": 3}
    fusers.ToplaFuser(epochs=4, **kw).fit(oracle, checkpoint_dir=tmp_path)
    more = fusers.ToplaFuser(epochs=7, **kw).fit(oracle, checkpoint_dir=tmp_path)
    straight = fusers.ToplaFuser(epochs=7, **kw).fit(oracle)
    assert more.history_["resumed_from"] == 4
    assert more.history_["loss"] == straight.history_["loss"]
    for k in straight.params_:
        np.testing.assert_array_equal(more.params_[k], straight.params_[k])
