"""MARL-Focal environment: windows, step counts, window statistics against the library."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ensembles
import focal
from ensembles.util import InputError
from fusers.marl import (
    EnvSpec,
    MarlConfig,
    env_data,
    fit_tasks,
    scored_rows,
    task_arrays,
    window_metrics,
)
from fusers.marl._env import _window_rows
from fusers.marl._train import make_schedule


@pytest.mark.parametrize("n,w", [(20, 0), (20, 1), (20, 5), (50, 23), (9, 3)])
def test_step_counts(n, w):
    first, steps = scored_rows(n, w)
    assert (first, steps) == (max(w, 1), n - max(w, 1))
    first, steps = scored_rows(n, w, double_subtract=True)
    assert (first, steps) == (w + 2, n - 2 * w - 2)
    # a schedule of P passes has P * steps real steps, each scored row once per pass
    s = make_schedule(first, steps, 3, 7, carry_buffers=False)
    rows = s.t[s.valid]
    assert rows.size == 3 * steps
    assert sorted(rows[:steps].tolist()) == list(range(first, first + steps))


def test_window_larger_than_split_refused():
    with pytest.raises(InputError, match="window"):
        scored_rows(10, 10)
    with pytest.raises(InputError, match="window"):
        scored_rows(10, 4, double_subtract=True)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 30)
    b = ensembles.Bundle.create(
        models=["a", "b"],
        labels=y,
        preds=np.stack([y, 1 - y]),
        split=["train"] * 20 + ["test"] * 10,
    )
    with pytest.raises(InputError, match="window: 25"):
        fit_tasks([task_arrays(b)], MarlConfig.for_mode("fixed", window=25))


def test_one_model_refused():
    with pytest.raises(InputError, match="at least 2 models"):
        env_data([[0, 1]], [0, 1], np.ones((1, 2, 2)))


@pytest.mark.parametrize("w", [0, 1, 4, 30])
def test_window_never_contains_scored_row(w):
    d = env_data(np.zeros((2, 25), int), np.zeros(25, int), np.ones((2, 25, 2)))
    for t, floor, horizon in itertools.product(range(25), (0, 3), (25, 10)):
        idx, wt = _window_rows(d, t, w, floor, horizon)
        rows = set(np.asarray(idx)[np.asarray(wt) > 0].tolist())
        end = min(t, horizon)
        expect = set(range(max(floor, end - w) if w else floor, end))
        assert rows == expect
        assert t not in rows


def _random_case(rng, m, n, c):
    y = rng.integers(0, c, n)
    noise = rng.integers(-1, c, (m, n))
    keep = rng.random((m, n)) < rng.uniform(0.3, 0.8, (m, 1))
    preds = np.where(keep, y, noise)
    return y, preds


def _entropy_ref(correct):
    p = correct.mean()
    return 0.0 if p in (0.0, 1.0) else float(-p * np.log2(p) - (1 - p) * np.log2(1 - p))


def _oracle_kappa_ref(ci, cj):
    n11 = np.sum((ci == 0) & (cj == 0))
    n00 = np.sum((ci == 1) & (cj == 1))
    n10 = np.sum((ci == 0) & (cj == 1))
    n01 = np.sum((ci == 1) & (cj == 0))
    den = (n11 + n10) * (n01 + n00) + (n11 + n01) * (n10 + n00)
    return 0.0 if den == 0 else 2.0 * (n11 * n00 - n01 * n10) / den


_METRICS_3 = jax.jit(lambda *a: window_metrics(*a, n_classes=3))


@pytest.mark.parametrize("seed", range(4))
def test_window_metrics_match_library(seed):
    rng = np.random.default_rng(seed)
    m, n, c = 5, 60, 3
    y, preds = _random_case(rng, m, n, c)
    correct = ((preds == y) & (preds >= 0)).astype(np.float32)
    fn = _METRICS_3
    for _ in range(6):
        w = (rng.random(n) < 0.6).astype(np.float32)
        team = np.zeros(m, np.float32)
        team[rng.choice(m, rng.integers(2, m + 1), replace=False)] = 1
        got = np.asarray(fn(team, correct, preds, y, w), np.float64)
        rows = np.flatnonzero(w)
        b = ensembles.Bundle.create(
            models=list("abcde"), labels=y[rows], preds=preds[:, rows], n_classes=c
        )
        members = [b.models[i] for i in np.flatnonzero(team)]
        lib = {
            k: float(focal.score_teams(b, [members], metric=k)[0])
            for k in ("focal", "fleiss_kappa", "q_statistic", "correlation", "binary_disagreement")
        }
        plural = float(ensembles.team_accuracy(b, [tuple(members)], combiner="plurality")[0])
        sub = correct[np.flatnonzero(team)][:, rows]
        pairs = list(itertools.combinations(range(sub.shape[0]), 2))
        okappa = np.mean([_oracle_kappa_ref(sub[i], sub[j]) for i, j in pairs])
        expect = [
            lib["focal"],
            plural,
            lib["fleiss_kappa"],
            lib["q_statistic"],
            lib["correlation"],
            lib["binary_disagreement"],
            okappa,
            _entropy_ref(sub),
        ]
        np.testing.assert_allclose(got, expect, rtol=2e-5, atol=2e-6)


def test_faithful_focal_counts_members_never_wrong_as_one():
    correct = jnp.array([[1.0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 1, 1]])
    preds = jnp.where(correct > 0, 0, 1).astype(int)
    args = (jnp.ones(3), correct, preds, jnp.zeros(4, int), jnp.ones(4))
    fixed = window_metrics(*args, n_classes=2)
    faithful = window_metrics(*args, n_classes=2, faithful=True)
    # member 0 is never wrong: left out (fixed), GD = 1 (faithful)
    assert float(faithful[0]) == pytest.approx((1.0 + 2 * float(fixed[0])) / 3, rel=1e-6)


def test_sentinel_for_small_teams():
    from fusers.marl import window_score

    d = env_data([[0, 1, 1], [1, 1, 0]], [0, 1, 1], np.eye(2)[[[0, 1, 1], [1, 1, 0]]])
    assert float(window_score(d, EnvSpec(), jnp.array([1.0, 0.0]), 2)) == -99.0


def test_quality_bad_input_one_line():
    from fusers.marl import check_quality

    with pytest.raises(InputError, match="every cell is NaN"):
        check_quality(np.full((3, 5), np.nan))
    with pytest.raises(InputError, match="at least 2 models"):
        check_quality(np.ones((1, 5)))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        check_quality([[0.5, 2.0], [0.1, 0.2]])


def test_router_learns_the_best_model_and_reads_no_test_judgment_frozen():
    from fusers.marl import fit_router

    rng = np.random.default_rng(0)
    q = (rng.random((3, 200)) < [[0.95], [0.4], [0.1]]).astype(float)
    q[1, 5] = np.nan
    runs = fit_router(q, np.arange(160), np.arange(160, 200), passes=25, seeds=[0, 1])
    for r in runs:
        assert r.curve[-1] > r.curve[0]
        assert np.bincount(r.choices, minlength=3)[0] == 40
        assert r.frozen == pytest.approx(q[0, 160:].mean())
    # the frozen test does not depend on the test judgments (except through the reward)
    q2 = q.copy()
    q2[1:, 160:] = 1.0 - q2[1:, 160:]
    runs2 = fit_router(q2, np.arange(160), np.arange(160, 200), passes=25, seeds=[0, 1])
    assert [r.choices.tolist() for r in runs] == [r.choices.tolist() for r in runs2]


def test_bbh_fusion_free_paths_reproduce_the_published_baselines(shared_data):
    """task_arrays (both label modes) + plurality of the environment give RESULTS' level-A
    BBH baselines: best single chosen on train, plurality of all 5, oracle (task means, %)."""
    from fusers.marl._env import team_plurality

    path = shared_data("bbh_5llm_marl_focal.npz")
    tasks = ensembles.load_tasks(path)
    plural_fn = jax.jit(jax.vmap(team_plurality, in_axes=(None, 1, None)), static_argnums=2)
    expected = {False: (53.57, 48.63, 78.89), True: (48.58, 42.21, 76.12)}
    for as_stored, (best_e, plural_e, oracle_e) in expected.items():
        best, plural, oracle = [], [], []
        for b in tasks.values():
            ta = task_arrays(b, as_stored=as_stored)
            n = ta.n_train
            ok = (ta.preds == ta.labels) & (ta.preds >= 0)
            best.append(ok[int(np.argmax(ok[:, :n].mean(axis=1))), n:].mean())
            oracle.append(ok[:, n:].any(axis=0).mean())
            ans = np.asarray(plural_fn(jnp.ones(5), jnp.asarray(ta.preds[:, n:]), 19))
            plural.append((ans == ta.labels[n:]).mean())
        got = [round(100 * float(np.mean(x)), 2) for x in (best, plural, oracle)]
        assert got == [best_e, plural_e, oracle_e]
