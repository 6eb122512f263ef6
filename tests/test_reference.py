"""Checks of the NumPy reference itself (tests/reference.py) against ALGORITHMS.md §9."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reference import (
    BASE_METRICS,
    DIRECTION,
    METRIC_NAMES,
    PAIRWISE_METRICS,
    ref_accuracy,
    ref_errors,
    ref_focal_per_member,
    ref_majority,
    ref_metric,
    ref_pair_matrix,
    ref_pair_value,
    ref_plurality,
)

# ---------------------------------------------------------------------------------- §9.1
PREDS = np.array([[1, -1, 2, 0, 1, 0], [2, 1, 0, 0, 1, 2], [0, 0, 0, 0, 2, 2]])
LABELS = np.array([0, 1, 2, 0, 1, 2])

GOLDEN_FULL = {  # team {0, 1, 2}: (baseline, focal_ variant)
    "q_statistic": (-0.2, -0.333333),
    "correlation": (-0.111111, -0.222222),
    "binary_disagreement": (0.555556, 0.666667),
    "kw_variance": (0.185185, 0.222222),
    "generalized_diversity": (0.625, 0.566667),
    "entropy": (0.833333, 1.0),
    "cohen_kappa": (0.057692, -0.048942),
    "fleiss_kappa": (0.009174, -0.230408),
}
GOLDEN_TEAMS = {  # team: (focal, per-focal GD, plurality acc, majority acc)
    (0, 1, 2): (0.566667, [0.6, 0.5, 0.6], 4 / 6, 3 / 6),
    (0, 1): (0.416667, [0.5, 0.333333], 3 / 6, 2 / 6),
    (0, 2): (0.5, [0.5, 0.5], 3 / 6, 1 / 6),
    (1, 2): (0.416667, [0.333333, 0.5], 4 / 6, 2 / 6),
}
GOLDEN_01 = {
    "q_statistic": 0.0,
    "correlation": 0.0,
    "binary_disagreement": 0.5,
    "kw_variance": 0.125,
    "generalized_diversity": 0.6,
    "entropy": 0.5,
    "cohen_kappa": 0.076923,
    "fleiss_kappa": 0.058824,
    "focal_cohen_kappa": -0.229167,
    "focal_fleiss_kappa": -0.492308,
}


def test_metric_names_and_directions():
    assert len(METRIC_NAMES) == len(set(METRIC_NAMES)) == 17
    assert set(DIRECTION) == set(METRIC_NAMES)
    for name in ("q_statistic", "correlation", "cohen_kappa", "fleiss_kappa"):
        assert DIRECTION[name] == DIRECTION[f"focal_{name}"] == "lower"
    for name in ("binary_disagreement", "kw_variance", "generalized_diversity", "entropy"):
        assert DIRECTION[name] == DIRECTION[f"focal_{name}"] == "higher"
    assert DIRECTION["focal"] == "higher"


def test_worked_example_errors():
    expected = [[1, 1, 0, 0, 0, 1], [1, 0, 1, 0, 0, 0], [0, 1, 1, 0, 1, 0]]
    assert ref_errors(PREDS, LABELS).tolist() == expected


@pytest.mark.parametrize("name", BASE_METRICS)
def test_worked_example_full_team(name):
    base, focal = GOLDEN_FULL[name]
    assert ref_metric(name, PREDS, LABELS, [0, 1, 2]) == pytest.approx(base, abs=1e-6)
    assert ref_metric(f"focal_{name}", PREDS, LABELS, [0, 1, 2]) == pytest.approx(focal, abs=1e-6)


@pytest.mark.parametrize("team", list(GOLDEN_TEAMS))
def test_worked_example_teams(team):
    focal, per_focal, plurality, majority = GOLDEN_TEAMS[team]
    assert ref_metric("focal", PREDS, LABELS, team) == pytest.approx(focal, abs=1e-6)
    per = ref_focal_per_member("generalized_diversity", PREDS, LABELS, team)
    assert list(per) == list(team)
    np.testing.assert_allclose(list(per.values()), per_focal, atol=1e-6)
    assert ref_accuracy(ref_plurality(PREDS, team, 3), LABELS) == pytest.approx(plurality)
    assert ref_accuracy(ref_majority(PREDS, team, 3), LABELS) == pytest.approx(majority)


def test_worked_example_hand_computation_for_m0():
    # N_0 = {0, 1, 5}, k = (2, 2, 1), A1 = 5, A2 = 9, GD = 1 - 4/(2*5) = 0.6
    assert ref_metric("generalized_diversity", PREDS, LABELS, [0, 1, 2], [0, 1, 5]) == (
        pytest.approx(0.6, abs=1e-12)
    )


def test_worked_example_three_way_tie_goes_to_class_zero():
    assert ref_plurality(PREDS, [0, 1, 2], 3)[0] == 0


@pytest.mark.parametrize("name", list(GOLDEN_01))
def test_worked_example_team_01(name):
    assert ref_metric(name, PREDS, LABELS, [0, 1]) == pytest.approx(GOLDEN_01[name], abs=1e-6)


def test_focal_is_focal_generalized_diversity():
    for team in GOLDEN_TEAMS:
        assert ref_metric("focal", PREDS, LABELS, team) == ref_metric(
            "focal_generalized_diversity", PREDS, LABELS, team
        )


# ---------------------------------------------------------------------------------- §1.4
def test_degenerate_cases():
    labels = np.array([0, 0, 0])
    both_right = np.array([[0, 0, 0], [0, 0, 0]])
    # Nobody ever wrong: Q, rho are 0/0 -> 0; GD -> NaN; focal -> NaN (no member has N_f).
    assert ref_metric("q_statistic", both_right, labels, [0, 1]) == 0.0
    assert ref_metric("correlation", both_right, labels, [0, 1]) == 0.0
    assert math.isnan(ref_metric("generalized_diversity", both_right, labels, [0, 1]))
    assert math.isnan(ref_metric("focal", both_right, labels, [0, 1]))
    assert math.isnan(ref_metric("focal_q_statistic", both_right, labels, [0, 1]))
    # Constant identical voters: kappa p_e = 1 -> 1, Fleiss P_e = 1 -> 1.
    assert ref_metric("cohen_kappa", both_right, labels, [0, 1]) == 1.0
    assert ref_metric("fleiss_kappa", both_right, labels, [0, 1]) == 1.0
    # Empty sample set -> NaN for every metric.
    for name in METRIC_NAMES:
        assert math.isnan(ref_metric(name, PREDS, LABELS, [0, 1], samples=[])), name
    # On N_f the focal member is always wrong: pairs containing f have N11 = N10 = 0 -> Q = 0.
    assert ref_pair_value("q_statistic", PREDS, LABELS, 0, 1, [0, 1, 5]) == 0.0
    assert ref_pair_value("correlation", PREDS, LABELS, 0, 1, [0, 1, 5]) == 0.0


def test_team_validation():
    with pytest.raises(ValueError):
        ref_metric("focal", PREDS, LABELS, [0])
    with pytest.raises(ValueError):
        ref_metric("focal", PREDS, LABELS, [0, 0])
    with pytest.raises(ValueError):
        ref_metric("nope", PREDS, LABELS, [0, 1])


# ---------------------------------------------------------------------------------- §9.2
@st.composite
def pools(draw, min_models=2, max_models=6, max_samples=14):
    """Random (preds, labels) with abstentions; C = 1..4."""
    n_models = draw(st.integers(min_models, max_models))
    n_samples = draw(st.integers(1, max_samples))
    n_classes = draw(st.integers(1, 4))
    labels = np.array(
        draw(st.lists(st.integers(0, n_classes - 1), min_size=n_samples, max_size=n_samples))
    )
    flat = draw(
        st.lists(
            st.integers(-1, n_classes - 1),
            min_size=n_models * n_samples,
            max_size=n_models * n_samples,
        )
    )
    preds = np.array(flat).reshape(n_models, n_samples)
    return preds, labels


@st.composite
def pool_team_samples(draw):
    preds, labels = draw(pools())
    n_models, n_samples = preds.shape
    size = draw(st.integers(2, n_models))
    team = draw(st.permutations(range(n_models)))[:size]
    samples = sorted(draw(st.sets(st.integers(0, n_samples - 1), min_size=1)))
    return preds, labels, list(team), samples


@settings(max_examples=80, deadline=None)
@given(pool_team_samples())
def test_kw_equals_scaled_mean_disagreement(case):
    """§9.2 item 2: KW = D̄·(L−1)/(2L) on every sample set (all, a subset, each N_f)."""
    preds, labels, team, samples = case
    size = len(team)
    e = ref_errors(preds, labels)
    sets = [None, samples] + [[n for n in range(preds.shape[1]) if e[f, n]] for f in team]
    for d in sets:
        if d is not None and not d:
            continue
        kw = ref_metric("kw_variance", preds, labels, team, d)
        dis = ref_metric("binary_disagreement", preds, labels, team, d)
        assert kw == pytest.approx(dis * (size - 1) / (2 * size), abs=1e-12)
    fkw = ref_metric("focal_kw_variance", preds, labels, team)
    fdis = ref_metric("focal_binary_disagreement", preds, labels, team)
    if math.isnan(fkw):
        assert math.isnan(fdis)
    else:
        assert fkw == pytest.approx(fdis * (size - 1) / (2 * size), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(pools(max_models=4), st.integers(2, 4))
def test_focal_of_identical_members_is_zero(pool, copies):
    """§9.2 item 4 (and §7): identical members: focal = 0 (NaN if never wrong), pair Q = 1."""
    preds, labels = pool
    row = preds[:1]
    dup = np.repeat(row, copies, axis=0)
    team = list(range(copies))
    value = ref_metric("focal", dup, labels, team)
    if (row[0] == labels).all():
        assert math.isnan(value)
    else:
        assert value == pytest.approx(0.0, abs=1e-12)
    e = ref_errors(dup, labels)
    n_wrong, n = int(e[0].sum()), e.shape[1]
    q = ref_metric("q_statistic", dup, labels, team)
    assert q == (1.0 if 0 < n_wrong < n else 0.0)
    assert ref_metric("cohen_kappa", dup, labels, team) == pytest.approx(1.0)
    assert ref_metric("fleiss_kappa", dup, labels, team) == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_focal_of_disjoint_error_sets_is_one(data):
    """§9.2 item 4: members whose error sets are disjoint have focal = 1."""
    n_models = data.draw(st.integers(2, 6))
    n_samples = data.draw(st.integers(1, 14))
    n_classes = data.draw(st.integers(2, 4))
    labels = np.array(
        data.draw(st.lists(st.integers(0, n_classes - 1), min_size=n_samples, max_size=n_samples))
    )
    # Each sample: at most one member is wrong (wrong answer or abstention).
    who = data.draw(st.lists(st.integers(-1, n_models - 1), min_size=n_samples, max_size=n_samples))
    preds = np.repeat(labels[None, :], n_models, axis=0)
    for n, m in enumerate(who):
        if m >= 0:
            wrong = data.draw(
                st.sampled_from([-1] + [c for c in range(n_classes) if c != labels[n]])
            )
            preds[m, n] = wrong
    value = ref_metric("focal", preds, labels, list(range(n_models)))
    if all(m < 0 for m in who):
        assert math.isnan(value)
    else:
        assert value == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(pools(max_models=5, max_samples=10))
def test_pair_matrices_symmetric(pool):
    """§9.2 item 5: Q, ρ, κ (and D) pair matrices are symmetric."""
    preds, labels = pool
    for name in PAIRWISE_METRICS:
        x = ref_pair_matrix(name, preds, labels)
        off = ~np.eye(x.shape[0], dtype=bool)
        np.testing.assert_allclose(x[off], x.T[off], atol=1e-12, err_msg=name)


@settings(max_examples=40, deadline=None)
@given(pool_team_samples(), st.randoms(use_true_random=False))
def test_invariant_to_member_and_sample_order(case, rnd):
    """§9.2 item 5: every metric is invariant to member order and to sample order."""
    preds, labels, team, _ = case
    n_models, n_samples = preds.shape
    perm_m = list(range(n_models))
    rnd.shuffle(perm_m)  # new row r holds old model perm_m[r]
    inverse = {old: new for new, old in enumerate(perm_m)}
    perm_n = list(range(n_samples))
    rnd.shuffle(perm_n)
    preds2 = preds[perm_m][:, perm_n]
    labels2 = labels[perm_n]
    team2 = [inverse[m] for m in team]
    rnd.shuffle(team2)
    for name in METRIC_NAMES:
        a = ref_metric(name, preds, labels, team)
        b = ref_metric(name, preds2, labels2, team2)
        if math.isnan(a):
            assert math.isnan(b), name
        else:
            assert b == pytest.approx(a, abs=1e-12), name


@settings(max_examples=80, deadline=None)
@given(pools(max_models=2, max_samples=16))
def test_cohen_kappa_matches_sklearn(pool):
    """§9.2 item 8: label-level κ equals scikit-learn's (abstention -1 is its own label)."""
    metrics = pytest.importorskip("sklearn.metrics")
    preds, labels = pool
    a, b = preds[0], preds[1]
    # Skip the κ 0/0 case (p_e = 1: both raters constant on the same category).
    assume(not (len(set(a.tolist()) | set(b.tolist())) == 1))
    expected = metrics.cohen_kappa_score(a, b)
    assert ref_pair_value("cohen_kappa", preds, labels, 0, 1) == pytest.approx(expected, abs=1e-12)


def test_cohen_kappa_team_mean_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    expected = np.mean(
        [
            metrics.cohen_kappa_score(PREDS[i], PREDS[j])
            for i, j in itertools.combinations(range(3), 2)
        ]
    )
    assert ref_metric("cohen_kappa", PREDS, LABELS, [0, 1, 2]) == pytest.approx(expected, abs=1e-12)
