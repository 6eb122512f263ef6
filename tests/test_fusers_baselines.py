"""Baselines beside the fusers, and the one-call LLM-TOPLA / FusionShot pipelines."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ensembles
import focal
import fusers
from ensembles import Bundle
from fusers._baselines import remap_splits


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    rng = np.random.default_rng(4)
    n = 500
    y = rng.integers(0, 4, n)
    p = rng.random((4, n, 4))
    for m, boost in enumerate((0.9, 0.6, 0.5, 0.1)):
        p[m, np.arange(n), y] += boost
    b = Bundle.create(models=["a", "b", "c", "d"], labels=y, probs=p)
    return ensembles.with_random_split(b, seed=0)


def test_stacking_matches_sklearn(bundle):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    team = ["a", "c", "d"]
    f = fusers.StackingFuser(C=0.5).fit(bundle, team=team)
    tb = bundle.select_models(team)
    x = fusers.flatten_members(fusers.choice_scores(tb)).astype(np.float64)
    train = bundle.split == "train"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = LogisticRegression(C=0.5, max_iter=1000).fit(x[train], bundle.labels[train])
    np.testing.assert_array_equal(f.predict(bundle), ref.predict(x))
    np.testing.assert_allclose(f.predict_proba(bundle), ref.predict_proba(x), atol=1e-10)
    test = bundle.split == "test"
    assert f.score(bundle, split="test") == ref.score(x[test], bundle.labels[test])


def test_stacking_binary_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = rng.random((2, 200, 2))
    p[0, np.arange(200), y] += 0.3
    b = ensembles.with_random_split(Bundle.create(models=["a", "b"], labels=y, probs=p), seed=0)
    f = fusers.StackingFuser().fit(b)
    x = fusers.flatten_members(fusers.choice_scores(b)).astype(np.float64)
    tr = b.split == "train"
    ref = LogisticRegression(max_iter=1000).fit(x[tr], y[tr])
    np.testing.assert_array_equal(f.predict(b), ref.predict(x))
    np.testing.assert_allclose(f.predict_proba(b), ref.predict_proba(x), atol=1e-10)


def test_baselines_are_those_of_the_definitions(bundle):
    team = ("b", "c", "d")
    r = fusers.baselines(bundle, team)
    val, test = bundle.select_split("val"), bundle.select_split("test")
    best = int(np.argmax(val.accuracies()))
    assert r["best_single"]["name"] == bundle.models[best]
    assert r["best_single"]["accuracy"] == test.accuracies()[best]
    assert r["plurality"] == ensembles.team_accuracy(test, [team])[0]
    assert r["majority"] == ensembles.team_accuracy(test, [team], combiner="majority")[0]
    assert r["soft"] == ensembles.team_accuracy(test, [team], combiner="soft")[0]
    everyone = [tuple(bundle.models)]
    assert r["pool_plurality"] == ensembles.team_accuracy(test, everyone)[0]
    assert r["best_member"]["name"] in team
    assert r["stacking"] == fusers.StackingFuser().fit(bundle, team=team).score(
        bundle, split="test"
    )


def test_remap_splits_and_batch_mean():
    b = Bundle.create(models=["a", "b"], labels=[0, 1, 0], preds=[[0, 1, 0], [1, 1, 0]],
                      split=["train", "val", "test"])  # fmt: skip
    assert remap_splits(b, train_on="val", report_on="train").split.tolist() == [
        "test", "train", "val"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="both 'test'"):
        remap_splits(b, train_on="test", report_on="test")
    assert fusers.batch_mean_accuracy([1, 0, 1, 1, 1], batch_size=2) == pytest.approx(
        (0.5 + 1.0 + 1.0) / 3
    )


def test_topla_pipeline(bundle):
    r = fusers.topla(bundle, sizes=(2, 3), fuser_params={"epochs": 15})
    assert isinstance(r.fuser, fusers.ToplaFuser) and 2 <= len(r.team) <= 3
    assert r.selection.strategy == "exhaustive"
    assert r.accuracy == r.fuser.score(bundle, split="test")
    doc = r.to_dict()
    assert doc["settings"]["select_on"] == "val" and doc["splits"]["source"] == "bundle"
    assert set(doc["baselines"]) >= {"best_single", "plurality", "majority", "soft",
                                      "stacking", "pool_plurality"}  # fmt: skip
    # choosing the team looks at the selection split only
    split_bundle, _ = ensembles.ensure_splits(bundle, seed=0)
    sel = focal.select(split_bundle.select_split("val"), sizes=(2, 3), top_k=1)
    assert sel.best.members == r.team and sel.best.fitness == r.selection.best.fitness
    given = fusers.topla(bundle, team=["a", "b"], fuser_params={"epochs": 2})
    assert given.team == ("a", "b") and given.selection is None
    with pytest.raises(ValueError, match="both 'test'"):
        fusers.topla(bundle, select_on="test", report_on="test")


def test_fusionshot_pipeline_uses_the_ga(bundle):
    r = fusers.fusionshot(bundle, fuser_params={"epochs": 5}, seed=1)
    assert r.selection.strategy == "ga" and isinstance(r.fuser, fusers.FusionShotFuser)
    assert "size/M" in r.selection.objective
