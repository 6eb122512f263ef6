"""Combiners and batched team accuracy (ensembles._combiners) against the per-sample reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ensembles
from ensembles import Bundle, BundleError

from reference import ref_accuracy, ref_majority, ref_plurality, ref_soft

PREDS = np.array([[1, -1, 2, 0, 1, 0], [2, 1, 0, 0, 1, 2], [0, 0, 0, 0, 2, 2]])
LABELS = np.array([0, 1, 2, 0, 1, 2])
NAMES = ["m0", "m1", "m2"]


def _ref(bundle: Bundle, team: list[int], combiner: str, weights=None) -> np.ndarray:
    if combiner == "plurality":
        return ref_plurality(bundle.preds, team, bundle.n_classes)
    if combiner == "majority":
        return ref_majority(bundle.preds, team, bundle.n_classes)
    if combiner == "soft":
        return ref_soft(bundle.probs, team)
    if combiner == "weighted_plurality":
        return ref_plurality(bundle.preds, team, bundle.n_classes, weights)
    if combiner == "weighted_soft":
        return ref_soft(bundle.probs, team, weights)
    raise AssertionError(combiner)


def _all_masks(n_models: int, min_size: int = 1) -> np.ndarray:
    rows = []
    for size in range(min_size, n_models + 1):
        for team in itertools.combinations(range(n_models), size):
            row = np.zeros(n_models, dtype=bool)
            row[list(team)] = True
            rows.append(row)
    return np.array(rows)


# ---------------------------------------------------------------------------------- strategies
@st.composite
def prob_bundles(draw, max_models=5, max_samples=12):
    """Bundles with probs: small integer scores (many exact ties, zero rows = abstentions)."""
    n_models = draw(st.integers(2, max_models))
    n_samples = draw(st.integers(1, max_samples))
    n_classes = draw(st.integers(1, 4))
    labels = draw(st.lists(st.integers(0, n_classes - 1), min_size=n_samples, max_size=n_samples))
    values = draw(st.sampled_from([(0.0, 1.0, 2.0), (0.0, 0.1, 0.2, 0.3, 0.7), (0.0, 1.0)]))
    flat = draw(
        st.lists(
            st.sampled_from(values),
            min_size=n_models * n_samples * n_classes,
            max_size=n_models * n_samples * n_classes,
        )
    )
    probs = np.array(flat).reshape(n_models, n_samples, n_classes)
    if draw(st.booleans()):  # one sample on which every member abstains
        probs[:, draw(st.integers(0, n_samples - 1)), :] = 0.0
    names = [f"m{i}" for i in range(n_models)]
    return Bundle.create(models=names, labels=labels, probs=probs)


@st.composite
def pred_bundles(draw, max_models=6, max_samples=12):
    """Bundles with hard predictions only, abstentions and all-abstain samples included."""
    n_models = draw(st.integers(2, max_models))
    n_samples = draw(st.integers(1, max_samples))
    n_classes = draw(st.integers(1, 4))
    labels = draw(st.lists(st.integers(0, n_classes - 1), min_size=n_samples, max_size=n_samples))
    flat = draw(
        st.lists(
            st.integers(-1, n_classes - 1),
            min_size=n_models * n_samples,
            max_size=n_models * n_samples,
        )
    )
    preds = np.array(flat).reshape(n_models, n_samples)
    if draw(st.booleans()):
        preds[:, draw(st.integers(0, n_samples - 1))] = -1
    names = [f"m{i}" for i in range(n_models)]
    return Bundle.create(models=names, labels=labels, preds=preds, n_classes=n_classes)


def _masks(draw, n_models: int) -> np.ndarray:
    n_teams = draw(st.integers(1, 9))
    rows = []
    for _ in range(n_teams):
        members = draw(st.sets(st.integers(0, n_models - 1), min_size=1))
        row = np.zeros(n_models, dtype=bool)
        row[sorted(members)] = True
        rows.append(row)
    return np.array(rows)


def _check(bundle, masks, combiner, weights=None, chunk_size=None):
    acc = ensembles.team_accuracy(
        bundle, masks, combiner=combiner, weights=weights, chunk_size=chunk_size
    )
    assert acc.dtype == np.float64 and acc.shape == (masks.shape[0],)
    for b, row in enumerate(masks):
        team = np.flatnonzero(row).tolist()
        expected = _ref(bundle, team, combiner, weights)
        fused = ensembles.combine(bundle, team, combiner=combiner, weights=weights)
        assert fused.dtype == np.int64
        np.testing.assert_array_equal(fused, expected, err_msg=f"{combiner} team {team}")
        assert acc[b] == ref_accuracy(expected, bundle.labels), (combiner, team)


# ---------------------------------------------------------------------------------- properties
@settings(max_examples=40, deadline=None)
@given(prob_bundles(), st.data())
def test_matches_reference_with_probs(bundle, data):
    masks = _masks(data.draw, bundle.n_models)
    for combiner in ("plurality", "majority", "soft"):
        _check(bundle, masks, combiner)


@settings(max_examples=40, deadline=None)
@given(pred_bundles(), st.data())
def test_matches_reference_with_preds(bundle, data):
    masks = _masks(data.draw, bundle.n_models)
    for combiner in ("plurality", "majority"):
        _check(bundle, masks, combiner)


@settings(max_examples=40, deadline=None)
@given(prob_bundles(), st.data())
def test_weighted_matches_reference(bundle, data):
    masks = _masks(data.draw, bundle.n_models)
    choices = st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0])
    weights = np.array(
        data.draw(st.lists(choices, min_size=bundle.n_models, max_size=bundle.n_models))
    )
    alive = (masks & (weights > 0)[None, :]).any(axis=1)
    masks = masks[alive]
    if not masks.shape[0]:
        return
    for combiner in ("weighted_plurality", "weighted_soft"):
        _check(bundle, masks, combiner, weights)


@settings(max_examples=25, deadline=None)
@given(pred_bundles(), st.data())
def test_chunking_does_not_change_results(bundle, data):
    masks = _all_masks(bundle.n_models)
    full = ensembles.team_accuracy(bundle, masks)
    chunk = data.draw(st.integers(1, masks.shape[0] + 2))
    np.testing.assert_array_equal(ensembles.team_accuracy(bundle, masks, chunk_size=chunk), full)


def test_uniform_weights_equal_unweighted():
    rng = np.random.default_rng(0)
    probs = rng.integers(0, 3, size=(4, 30, 3)).astype(float)
    b = Bundle.create(models=list("abcd"), labels=rng.integers(0, 3, 30), probs=probs)
    masks = _all_masks(4)
    w = np.ones(4)
    np.testing.assert_array_equal(
        ensembles.team_accuracy(b, masks, combiner="weighted_plurality", weights=w),
        ensembles.team_accuracy(b, masks, combiner="plurality"),
    )
    np.testing.assert_array_equal(
        ensembles.team_accuracy(b, masks, combiner="weighted_soft", weights=w),
        ensembles.team_accuracy(b, masks, combiner="soft"),
    )


def test_one_class():
    b = Bundle.create(models=["a", "b"], labels=[0, 0, 0], preds=[[0, -1, -1], [0, 0, -1]])
    assert b.n_classes == 1
    np.testing.assert_allclose(
        ensembles.team_accuracy(b, [[1, 1], [1, 0], [0, 1]]), [2 / 3, 1 / 3, 2 / 3]
    )
    np.testing.assert_allclose(ensembles.team_accuracy(b, [[1, 1]], combiner="majority"), [1 / 3])
    assert ensembles.combine(b, ["a", "b"]).tolist() == [0, 0, -1]


# ---------------------------------------------------------------------------------- worked example
def test_worked_example_accuracies():
    b = Bundle.create(models=NAMES, labels=LABELS, preds=PREDS)
    teams = [("m0", "m1", "m2"), ("m0", "m1"), ("m0", "m2"), ("m1", "m2")]
    np.testing.assert_allclose(
        ensembles.team_accuracy(b, teams), [4 / 6, 3 / 6, 3 / 6, 4 / 6], atol=1e-12
    )
    np.testing.assert_allclose(
        ensembles.team_accuracy(b, teams, combiner="majority"),
        [3 / 6, 2 / 6, 1 / 6, 2 / 6],
        atol=1e-12,
    )
    # Sample 0 is a three-way tie: the lowest class (0) wins, which is correct.
    assert ensembles.combine(b, ["m0", "m1", "m2"])[0] == 0


def test_team_forms_are_equivalent():
    b = Bundle.create(models=NAMES, labels=LABELS, preds=PREDS)
    by_name = ensembles.combine(b, ["m2", "m0"])
    np.testing.assert_array_equal(by_name, ensembles.combine(b, ["m0", "m2"]))
    np.testing.assert_array_equal(by_name, ensembles.combine(b, [2, 0]))
    np.testing.assert_array_equal(by_name, ensembles.combine(b, np.array([True, False, True])))
    np.testing.assert_array_equal(by_name, ensembles.combine(b, ("m0", "m2")))
    masks = np.array([[1, 0, 1], [0, 1, 1]])
    np.testing.assert_array_equal(
        ensembles.team_accuracy(b, masks),
        ensembles.team_accuracy(b, [("m2", "m0"), ("m1", "m2")]),
    )
    np.testing.assert_array_equal(
        ensembles.team_accuracy(b, masks), ensembles.team_accuracy(b, masks.astype(bool))
    )
    assert ensembles.team_accuracy(b, np.zeros((0, 3), dtype=bool)).shape == (0,)
    assert ensembles.team_accuracy(b, []).shape == (0,)


def test_single_member_team_is_that_model():
    b = Bundle.create(models=NAMES, labels=LABELS, preds=PREDS)
    np.testing.assert_allclose(ensembles.team_accuracy(b, np.eye(3, dtype=bool)), b.accuracies())
    np.testing.assert_array_equal(ensembles.combine(b, ["m0"]), PREDS[0])


def test_combiner_registry():
    assert set(ensembles.COMBINERS) == {
        "plurality",
        "majority",
        "soft",
        "weighted_plurality",
        "weighted_soft",
    }


# ---------------------------------------------------------------------------------- refusals
def test_refusals():
    b = Bundle.create(models=NAMES, labels=LABELS, preds=PREDS)
    with pytest.raises(ValueError, match="plurality"):  # lists the valid names
        ensembles.team_accuracy(b, [[1, 1, 0]], combiner="vote")
    with pytest.raises(BundleError, match="probs: soft voting needs probs"):
        ensembles.team_accuracy(b, [[1, 1, 0]], combiner="soft")
    with pytest.raises(BundleError, match="probs"):
        ensembles.combine(b, ["m0", "m1"], combiner="weighted_soft", weights=[1, 1, 1])
    with pytest.raises(ValueError, match="no members"):
        ensembles.team_accuracy(b, [[1, 1, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="at least one"):
        ensembles.combine(b, [])
    with pytest.raises(ValueError, match="at least one"):
        ensembles.combine(b, np.zeros(3, dtype=bool))
    with pytest.raises(BundleError, match="unknown model"):
        ensembles.team_accuracy(b, [("m0", "zz")])
    with pytest.raises(ValueError, match="more than once"):
        ensembles.combine(b, ["m0", "m0"])
    with pytest.raises(ValueError, match="out of range"):
        ensembles.combine(b, [0, 3])
    with pytest.raises(ValueError, match="shape"):
        ensembles.team_accuracy(b, [[1, 1]])
    with pytest.raises(ValueError, match="0 and 1"):
        ensembles.team_accuracy(b, [[1, 2, 0]])
    with pytest.raises(ValueError, match="single team"):
        ensembles.team_accuracy(b, ["m0", "m1"])
    with pytest.raises(ValueError, match="chunk_size"):
        ensembles.team_accuracy(b, [[1, 1, 0]], chunk_size=0)
    # Weights.
    with pytest.raises(ValueError, match="takes no weights"):
        ensembles.team_accuracy(b, [[1, 1, 0]], weights=[1, 1, 1])
    with pytest.raises(ValueError, match="needs per-model weights"):
        ensembles.team_accuracy(b, [[1, 1, 0]], combiner="weighted_plurality")
    for bad, msg in [
        ([1, -1, 1], ">= 0"),
        ([0, 0, 0], "all weights are zero"),
        ([1, np.nan, 1], "NaN"),
        ([1, 1], "shape"),
    ]:
        with pytest.raises(ValueError, match=msg):
            ensembles.team_accuracy(b, [[1, 1, 0]], combiner="weighted_plurality", weights=bad)
    with pytest.raises(ValueError, match="weight zero"):
        ensembles.team_accuracy(b, [[1, 1, 0]], combiner="weighted_plurality", weights=[0, 0, 1])


# ---------------------------------------------------------------------------------- scikit-learn
@pytest.fixture(scope="module")
def iris_models():
    datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.tree import DecisionTreeClassifier

    x, y = datasets.load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = model_selection.train_test_split(
        x, y, test_size=0.5, random_state=0, stratify=y
    )
    estimators = [
        ("logreg", LogisticRegression(max_iter=1000)),
        ("nb", GaussianNB()),
        ("knn", KNeighborsClassifier(n_neighbors=4)),
        ("stump", DecisionTreeClassifier(max_depth=1, random_state=0)),
        ("tree", DecisionTreeClassifier(max_depth=2, random_state=0)),
    ]
    for _, est in estimators:
        est.fit(x_train, y_train)
    probs = np.stack([est.predict_proba(x_test) for _, est in estimators])
    bundle = Bundle.create(models=[n for n, _ in estimators], labels=y_test, probs=probs)
    return bundle, estimators, (x_train, y_train, x_test, y_test)


@pytest.mark.parametrize("combiner", ["plurality", "majority", "soft"])
def test_sklearn_models_match_reference(iris_models, combiner):
    bundle, _, _ = iris_models
    masks = _all_masks(bundle.n_models)
    _check(bundle, masks, combiner)


def test_sklearn_models_weighted(iris_models):
    bundle, _, _ = iris_models
    masks = _all_masks(bundle.n_models)
    w = np.array([0.5, 1.0, 2.0, 0.25, 1.0])
    _check(bundle, masks, "weighted_plurality", w)
    _check(bundle, masks, "weighted_soft", w)


def test_sklearn_voting_classifier_agrees(iris_models):
    """Hard/soft votes agree with scikit-learn's VotingClassifier (same tie rule: lowest class)."""
    from sklearn.base import clone
    from sklearn.ensemble import VotingClassifier

    bundle, estimators, (x_train, y_train, x_test, y_test) = iris_models
    model_accuracy = bundle.accuracies()
    assert model_accuracy.min() < model_accuracy.max()  # the models differ
    for size in (2, 3, 5):
        for team in itertools.combinations(range(bundle.n_models), size):
            members = [(estimators[i][0], clone(estimators[i][1])) for i in team]
            for voting, combiner in (("hard", "plurality"), ("soft", "soft")):
                vc = VotingClassifier(members, voting=voting).fit(x_train, y_train)
                expected = vc.predict(x_test)
                fused = ensembles.combine(bundle, list(team), combiner=combiner)
                np.testing.assert_array_equal(fused, expected, err_msg=f"{voting} {team}")
                acc = ensembles.team_accuracy(
                    bundle, [list(np.isin(range(5), team))], combiner=combiner
                )
                assert acc[0] == pytest.approx(np.mean(expected == y_test), abs=1e-12)
