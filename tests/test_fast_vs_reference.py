"""The jitted closed forms of focal/ against the float64 reference written from the definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ensembles
import focal

from reference import DIRECTION, METRIC_NAMES, ref_metric, ref_plurality

ALL_METRICS = sorted(set(METRIC_NAMES) | set(focal.METRICS))


def _close(fast: float, ref: float, tol: float) -> bool:
    if math.isnan(ref) or math.isnan(fast):
        return math.isnan(ref) and math.isnan(fast)
    return abs(fast - ref) <= tol


@st.composite
def bundles(draw, n_models: int):
    """Random bundles with abstentions, never-wrong members and duplicate members."""
    n_samples = draw(st.sampled_from([1, 6, 23]))
    n_classes = draw(st.sampled_from([1, 2, 4]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n_samples)
    p_right = rng.uniform(0.0, 1.0, n_models)
    p_abstain = draw(st.sampled_from([0.0, 0.15]))
    preds = rng.integers(0, n_classes, (n_models, n_samples))
    right = rng.random((n_models, n_samples)) < p_right[:, None]
    preds = np.where(right, labels, preds)
    preds = np.where(rng.random((n_models, n_samples)) < p_abstain, -1, preds)
    if draw(st.booleans()):  # a member that is never wrong
        preds[0] = labels
    if n_models > 2 and draw(st.booleans()):  # duplicate members
        preds[-1] = preds[-2]
    return ensembles.Bundle.create(
        models=[f"m{i}" for i in range(n_models)],
        labels=labels,
        preds=preds,
        n_classes=n_classes,
    )


@pytest.mark.parametrize("n_models", [2, 3, 5])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_metric_of_every_team_matches_reference(n_models, data):
    bundle = data.draw(bundles(n_models))
    teams = [
        team
        for size in range(2, n_models + 1)
        for team in itertools.combinations(range(n_models), size)
    ]
    for metric in ALL_METRICS:
        fast = focal.score_teams(bundle, teams, metric=metric)
        for team, value in zip(teams, fast, strict=True):
            ref = ref_metric(metric, bundle.preds, bundle.labels, team)
            assert _close(value, ref, 1e-9), (metric, team, value, ref)


@pytest.mark.parametrize("n_models", [3, 5])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_member_order_does_not_change_scores(n_models, data):
    bundle = data.draw(bundles(n_models))
    perm = data.draw(st.permutations(range(n_models)))
    shuffled = bundle.select_models(list(perm))
    team = list(range(n_models))
    for metric in ("focal", "q_statistic", "focal_fleiss_kappa", "entropy"):
        a = focal.score_teams(bundle, [team], metric=metric)[0]
        b = focal.score_teams(shuffled, [team], metric=metric)[0]
        assert _close(a, b, 1e-12)


@pytest.mark.parametrize("metric", ["focal", "q_statistic", "cohen_kappa", "focal_entropy"])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_prune_equals_naive_loop(metric, data):
    bundle = data.draw(bundles(5))
    top_k = data.draw(st.integers(1, 30))
    result = focal.prune(bundle, metric=metric, sizes=(2, 5), top_k=top_k)
    sign = 1.0 if DIRECTION[metric] == "higher" else -1.0
    naive = []
    for pos, team in enumerate(
        t for size in range(2, 6) for t in itertools.combinations(range(5), size)
    ):
        value = ref_metric(metric, bundle.preds, bundle.labels, team)
        key = -math.inf if math.isnan(value) else round(sign * value, 10)
        naive.append((-key, pos, team, value))
    naive.sort()
    expected = naive[:top_k]
    assert result.n_evaluated == 26
    assert [t.members for t in result.teams] == [
        tuple(f"m{i}" for i in team) for _, _, team, _ in expected
    ]
    for got, (_, _, team, value) in zip(result.teams, expected, strict=True):
        assert _close(got.score, value, 1e-9)
        fused = ref_plurality(bundle.preds, team, bundle.n_classes)
        assert got.accuracy == pytest.approx(float((fused == bundle.labels).mean()))


def test_identical_members_have_zero_and_disjoint_errors_one():
    labels = np.zeros(8, dtype=int)
    a = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    b = np.array([0, 0, 1, 1, 0, 0, 0, 0])
    bundle = ensembles.Bundle.create(
        models=["a", "a2", "b"], labels=labels, preds=[a, a, b], n_classes=2
    )
    assert focal.score_teams(bundle, [("a", "a2")])[0] == 0.0
    assert focal.score_teams(bundle, [("a", "b")])[0] == 1.0


def test_never_wrong_team_is_nan_and_ranks_last():
    labels = np.array([0, 1, 0, 1])
    preds = [labels, labels, [1, 1, 0, 1]]
    bundle = ensembles.Bundle.create(models=["x", "y", "z"], labels=labels, preds=preds)
    assert math.isnan(focal.score_teams(bundle, [("x", "y")])[0])
    result = focal.prune(bundle, sizes=2, top_k=3)
    assert result.teams[-1].members == ("x", "y")
    assert result.to_dict()["teams"][-1]["score"] is None
