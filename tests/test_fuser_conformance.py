"""Every fuser of the registry ``fusers.FUSERS`` through one suite: shapes and ranges,
determinism under a seed, save/load round trip, one-line refusals of bad input, and no use of
the test rows' labels in training."""

from __future__ import annotations

import numpy as np
import pytest

import ensembles
import fusers
from ensembles import Bundle
from ensembles.util import InputError

N, C = 240, 3
FAST = {"epochs": 20, "hidden": (16,), "patience": 5, "learning_rate": 1e-2}


def _make(name: str, **extra):
    cls = fusers.FUSERS[name]
    names = set(cls._param_names())
    return cls(**{k: v for k, v in {**FAST, **extra}.items() if k in names})


def _bundle(seed: int = 0, *, labels=None) -> Bundle:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, N)
    p = rng.random((3, N, C))
    p[0, np.arange(N), y] += 0.6
    p[1, np.arange(N), (y + 1) % C] += 0.3
    split = np.array(["train"] * 150 + ["val"] * 40 + ["test"] * 50)
    return Bundle.create(models=["a", "b", "c"], labels=y if labels is None else labels, probs=p,
                         split=split, sample_ids=np.arange(N))  # fmt: skip


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return _bundle()


@pytest.fixture(scope="module", params=sorted(fusers.FUSERS))
def fitted(request, bundle):
    return request.param, _make(request.param, seed=0).fit(bundle)


def test_registry_names_the_fusers():
    assert set(fusers.FUSERS) == {"topla", "fusionshot", "stacking", "mlp"}
    for name, cls in fusers.FUSERS.items():
        assert cls.kind == name
        assert cls().get_params() == cls().get_params()  # constructor stores params only


def test_shapes_and_ranges(fitted, bundle):
    name, f = fitted
    assert f.team_ == ("a", "b", "c") and f.n_classes_ == C
    pred = f.predict(bundle)
    proba = f.predict_proba(bundle)
    assert pred.shape == (N,) and pred.dtype == np.int64
    assert ((pred >= -1) & (pred < C)).all()
    assert proba.shape == (N, C)
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(proba.argmax(axis=1), pred)
    test = f.predict(bundle, split="test")
    assert test.shape == (50,)
    np.testing.assert_array_equal(test, pred[-50:])
    assert 0.0 <= f.score(bundle, split="test") <= 1.0
    assert f.score(bundle, split="test") > 0.5  # member "a" alone is right most of the time


def test_deterministic_under_a_seed(fitted, bundle):
    name, f = fitted
    again = _make(name, seed=0).fit(bundle)
    np.testing.assert_array_equal(again.predict_proba(bundle), f.predict_proba(bundle))
    for key in f.params_:
        np.testing.assert_array_equal(again.params_[key], f.params_[key])


def test_save_load_round_trip(fitted, bundle, tmp_path):
    name, f = fitted
    f.save(tmp_path / name)
    g = fusers.load_fuser(tmp_path / name)
    assert type(g) is type(f) and g.get_params() == f.get_params()
    np.testing.assert_array_equal(g.predict(bundle), f.predict(bundle))
    np.testing.assert_array_equal(g.predict_proba(bundle), f.predict_proba(bundle))


def _one_line_error(call, exc_type=InputError) -> str:
    with pytest.raises(exc_type) as info:
        call()
    message = str(info.value)
    assert message and "\n" not in message
    return message


def test_refuses_bad_input_in_one_line(fitted, bundle):
    name, f = fitted
    cls = fusers.FUSERS[name]
    assert "not fitted" in _one_line_error(lambda: cls().predict(bundle))
    assert "unknown model" in _one_line_error(lambda: _make(name).fit(bundle, team=["a", "zz"]))
    assert "at least 2" in _one_line_error(lambda: _make(name).fit(bundle, team=["a"]))
    assert "unknown parameter" in _one_line_error(lambda: cls().set_params(nope=1))
    assert "valid_classes" in _one_line_error(lambda: _make(name, valid_classes="x").fit(bundle))
    assert "seed" in _one_line_error(lambda: _make(name, seed=-1).fit(bundle))
    other = Bundle.create(models=["a", "b", "c"], labels=[0], probs=np.full((3, 1, 5), 0.2))
    assert "n_classes" in _one_line_error(lambda: f.predict(other))
    missing = bundle.select_models(["a", "b"])
    assert "'c'" in _one_line_error(lambda: f.predict(missing))
    assert "Bundle" in _one_line_error(lambda: f.predict(np.zeros(3)), TypeError)


def test_test_labels_are_never_read_in_training(fitted, bundle):
    name, f = fitted
    y = bundle.labels.copy()
    test = np.flatnonzero(np.asarray(bundle.split) == "test")
    y[test] = np.random.default_rng(1).permutation(y[test])
    y[test[:10]] = (y[test[:10]] + 1) % C  # also change the test rows' class counts
    other = _bundle(labels=y)
    g = _make(name, seed=0).fit(other)
    for key in f.params_:
        np.testing.assert_array_equal(g.params_[key], f.params_[key])
    np.testing.assert_array_equal(g.predict_proba(bundle), f.predict_proba(bundle))
    if hasattr(f, "history_"):
        assert g.history_["loss"] == f.history_["loss"]
        assert g.history_["best_epoch"] == f.history_["best_epoch"]
    assert g.score(other, split="test") != f.score(bundle, split="test")  # reports do change


def test_fitted_attributes_follow_sklearn_conventions(fitted):
    name, f = fitted
    cls = fusers.FUSERS[name]
    fresh = cls()
    assert not any(k.endswith("_") and not k.startswith("_") for k in vars(fresh))
    assert {"team_", "n_classes_", "n_features_in_", "params_", "splits_"} <= set(vars(f))
    assert ensembles  # the bundle type comes from ensembles
