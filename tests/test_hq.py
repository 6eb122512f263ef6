"""HQ-Ensemble hierarchical pruning (ALGORITHMS.md §5.5), as the paper intends."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

import ensembles
import focal._compat_ensemblebench as eb
from focal._hq import hq_search, hq_select
from focal._objective import Objective


def _random_bundle(seed: int, n_models: int = 6, n_samples: int = 70, n_classes: int = 3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n_samples)
    probs = rng.random((n_models, n_samples, n_classes))
    skill = np.linspace(0.35, 0.8, n_models)
    right = rng.random((n_models, n_samples)) < skill[:, None]
    probs[right, labels[np.nonzero(right)[1]]] += 2.0
    return ensembles.Bundle.create(
        models=[f"m{i}" for i in range(n_models)], labels=labels, probs=probs
    )


@pytest.fixture(scope="module")
def pool6():
    return _random_bundle(2)


@pytest.fixture(scope="module")
def breast_cancer_pool():
    """Six quick scikit-learn classifiers on the breast-cancer data, with a seeded split."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(1).permutation(len(y))
    fit_idx, out_idx = order[:250], order[250:]
    estimators = {
        "nb": GaussianNB(),
        "lda": LinearDiscriminantAnalysis(),
        "knn5": KNeighborsClassifier(n_neighbors=5),
        "knn40": KNeighborsClassifier(n_neighbors=40),
        "tree2": DecisionTreeClassifier(max_depth=2, random_state=0),
        "tree6": DecisionTreeClassifier(max_depth=6, random_state=1),
    }
    for est in estimators.values():
        est.fit(X[fit_idx], y[fit_idx])
    bundle = ensembles.from_sklearn(estimators, X[out_idx], y[out_idx])
    bundle = ensembles.with_random_split(bundle, fractions=(0.5, 0.0, 0.5), seed=3)
    return bundle.select_split("train"), bundle.select_split("test")


def _tuples(masks):
    return [tuple(np.flatnonzero(r).tolist()) for r in masks]


def _direct_hq(bundle, code, rate, target, **options):
    """The intended algorithm with sets and sorted(), team by team."""
    m = bundle.n_models
    masks, fq = eb.fq_scores(bundle, metric=code, sizes=range(2, target + 1), **options)
    acc = ensembles.team_accuracy(bundle, masks, combiner="soft")
    teams = _tuples(masks)
    info = {t: (fq[i], acc[i], i) for i, t in enumerate(teams)}
    pruned, selected = [], set()
    for size in range(2, min(target, m - 1) + 1):
        cands = [
            t
            for t in itertools.combinations(range(m), size)
            if not any(set(p) <= set(t) for p in pruned)
        ]
        cands.sort(key=lambda t: (-round(info[t][0], 10), info[t][1], info[t][2]))
        p = math.floor(rate * len(cands))
        pruned += cands[:p]
        selected |= set(cands[p:])
    return selected, pruned


@pytest.mark.parametrize("code", ["CK", "BD", "KW", "GD"])
@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_matches_direct_transcription(pool6, code, rate):
    res = hq_select(pool6, metrics=(code,), prune_rate=rate, target_size=5)
    got = res.metrics[code]
    selected, pruned = _direct_hq(pool6, code, rate, 5)
    assert set(_tuples(got.selected.masks)) == selected
    assert _tuples(got.pruned_masks) == pruned


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5])
def test_apriori_property_and_level_counts(pool6, rate):
    res = hq_select(pool6, prune_rate=rate, target_size=5)
    assert set(res.metrics) == {"CK", "BD", "KW", "GD"}
    for code, r in res.metrics.items():
        selected = [set(t) for t in _tuples(r.selected.masks)]
        pruned = [set(t) for t in _tuples(r.pruned_masks)]
        assert pruned, code
        # No selected team contains a pruned team; no pruned team contains an earlier one.
        for team in selected:
            assert not any(p <= team for p in pruned), (code, team)
        for i, team in enumerate(pruned):
            assert not any(p < team for p in pruned[:i])
        assert not {frozenset(t) for t in selected} & {frozenset(t) for t in pruned}
        # Levels: sizes 2..target, counts consistent.
        assert [lv.size for lv in r.levels] == [2, 3, 4, 5]
        for lv in r.levels:
            assert lv.n_teams == math.comb(6, lv.size)
            assert lv.n_considered == lv.n_teams - lv.n_skipped
            assert lv.n_pruned == math.floor(rate * lv.n_considered)
            assert lv.n_selected == lv.n_considered - lv.n_pruned
            assert sum(len(t) == lv.size for t in selected) == lv.n_selected
        assert sum(lv.n_pruned for lv in r.levels) == len(pruned)
        sizes = r.selected.masks.sum(axis=1)
        assert sizes.min() >= 2 and sizes.max() <= 5


def test_pruned_are_the_least_diverse_of_their_level(pool6):
    res = hq_select(pool6, metrics=("GD",), prune_rate=0.3, target_size=2)
    r = res.metrics["GD"]
    masks, fq = eb.fq_scores(pool6, metric="GD", sizes=2)
    score = dict(zip(_tuples(masks), fq, strict=True))
    pruned = [score[t] for t in _tuples(r.pruned_masks)]
    kept = [score[t] for t in _tuples(r.selected.masks)]
    assert len(pruned) == math.floor(0.3 * 15)
    assert min(pruned) >= max(kept)  # main convention: higher FQ = less diverse
    np.testing.assert_allclose(r.selected.scores, [score[t] for t in _tuples(r.selected.masks)])


@pytest.mark.parametrize("rate", [0.0, 0.05])
def test_nothing_pruned_keeps_every_candidate(pool6, rate):
    # 0.05 · 15 pairs < 1, 0.05 · 20 triples = 1: the first level prunes nothing, and no team of
    # that level is lost (the reference's stale slice index drops teams here).
    res = hq_select(pool6, metrics=("KW",), prune_rate=rate, target_size=3)
    r = res.metrics["KW"]
    assert r.levels[0].n_pruned == 0 and r.levels[0].n_selected == 15
    expected_pruned = 0 if rate == 0 else 1
    assert r.levels[1].n_pruned == expected_pruned
    assert r.selected.n_teams == 15 + 20 - expected_pruned
    assert len(r.pruned_masks) == expected_pruned


def test_target_size_is_clipped_and_full_team_excluded():
    bundle = _random_bundle(4, n_models=4)
    res = hq_select(bundle, metrics=("BD",), prune_rate=0.1, target_size=9)
    assert res.target_size == 3
    assert res.metrics["BD"].selected.masks.sum(axis=1).max() <= 3


def test_mean_threshold_variant(pool6):
    res = hq_select(pool6, metrics=("CK", "GD"), variant="mean")
    for code in ("CK", "GD"):
        masks, fq = eb.fq_scores(pool6, metric=code)
        want = {t for t, v in zip(_tuples(masks), fq, strict=True) if v < round(np.nanmean(fq), 3)}
        r = res.metrics[code]
        assert set(_tuples(r.selected.masks)) == want
        assert r.levels == ()
        assert r.selected.method == "hq_mean"
        assert r.selected.masks.sum(axis=1).max() <= pool6.n_models - 1


def test_modes_recorded_and_determinism(pool6):
    fixed = hq_select(pool6, metrics=("GD",))
    faithful = hq_select(pool6, metrics=("GD",), faithful=True, seed=5)
    again = hq_select(pool6, metrics=("GD",), faithful=True, seed=5)
    assert fixed.mode == "fixed" and faithful.mode == "faithful"
    assert faithful.options.estimator == "subsample"
    assert faithful.to_dict() == again.to_dict()
    doc = json.loads(json.dumps(faithful.to_dict(), allow_nan=False))
    assert doc["method"] == "hq_rate" and doc["mode"] == "faithful"
    assert doc["options"]["member_weights"] == "argsort"
    assert [lv["size"] for lv in doc["metrics"]["GD"]["levels"]] == [2, 3, 4, 5]


def test_bad_arguments(pool6):
    with pytest.raises(ValueError, match="variant"):
        hq_select(pool6, variant="median")
    with pytest.raises(ValueError, match="prune_rate"):
        hq_select(pool6, prune_rate=1.5)
    with pytest.raises(ValueError, match="target_size"):
        hq_select(pool6, target_size=1)
    with pytest.raises(ValueError, match="top-k"):
        hq_search(pool6, top_k=0)


def test_hq_search_ranks_selected_teams_by_objective(pool6):
    obj = Objective(w_div=0.6, w_acc=0.4)
    res = hq_search(pool6, objective=obj, top_k=5, prune_rate=0.2, target_size=4)
    assert len(res.masks) == 5
    hq = res.params["hq"]
    union = set()
    for r in hq.metrics.values():
        union |= set(_tuples(r.selected.masks))
    assert res.params["n_candidates"] == len(union)
    assert set(_tuples(res.masks)) <= union
    fitness = np.array([t.fitness for t in res.teams])
    fit_all = obj(pool6, np.array([[i in t for i in range(6)] for t in sorted(union)]))
    assert fitness[0] == pytest.approx(fit_all.max())
    assert np.all(np.diff(fitness) <= 1e-12)
    np.testing.assert_allclose(fitness, obj(pool6, res.masks))
    doc = json.loads(res.to_json())
    assert {"metric", "n_models", "n_samples", "n_teams_scored", "teams"} <= set(doc)
    assert doc["strategy"] == "hq" and doc["params"]["hq"]["target_size"] == hq.target_size
    assert [tuple(t["members"]) for t in doc["teams"]] == [t.members for t in res.teams]
    team = res.teams[0]
    assert team.size == len(team.members) and team.mask.shape == (6,)
    assert res.n_evaluated == hq.n_teams_scored and res.seconds >= 0


def test_hq_search_sizes_restrict_and_set_the_target(pool6):
    res = hq_search(pool6, sizes=(2, 3), top_k=50)
    assert res.params["hq"].target_size == 3
    assert set(res.masks.sum(axis=1).tolist()) <= {2, 3}
    only3 = hq_search(pool6, sizes=3, top_k=50)
    assert set(only3.masks.sum(axis=1).tolist()) == {3}


def test_bundle_without_probs_uses_plurality():
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 3, 40)
    preds = np.where(rng.random((5, 40)) < 0.6, labels, rng.integers(0, 3, (5, 40)))
    bundle = ensembles.Bundle.create(models=list("abcde"), labels=labels, preds=preds)
    res = hq_search(bundle, top_k=2)
    assert res.params["hq"].combiner == "plurality" and len(res.teams) == 2


def test_end_to_end_on_scikit_learn_pool(breast_cancer_pool):
    select, evaluate = breast_cancer_pool
    for variant in ("rate", "mean"):
        res = hq_select(select, bundle_eval=evaluate, variant=variant, faithful=True, seed=0)
        assert res.eval_split == "eval" and res.combiner == "soft"
        for code, r in res.metrics.items():
            assert r.selected.n_teams > 0, code
            assert r.selected.statistics.n_teams == r.selected.n_teams
            assert r.selected.random_statistics.n_teams == r.selected.n_teams
        json.dumps(res.to_dict(), allow_nan=False)
    top = hq_search(select, top_k=3)
    assert len(top.teams) == 3


def test_end_to_end_on_bbh_task(shared_data):
    tasks = ensembles.load_tasks(shared_data("bbh_5llm_marl_focal.npz"))
    task = tasks["logical_deduction_five_objects"]
    train, test = task.select_split("train"), task.select_split("test")
    res = hq_select(train, bundle_eval=test, prune_rate=0.1, target_size=5, seed=0)
    assert res.target_size == 4
    for r in res.metrics.values():
        assert [lv.n_teams for lv in r.levels] == [10, 10, 5]
        assert r.levels[0].n_pruned == 1
        assert r.selected.n_teams + len(r.pruned_masks) + sum(lv.n_skipped for lv in r.levels) == 25
    top = hq_search(train, top_k=2)
    assert len(top.teams) == 2
