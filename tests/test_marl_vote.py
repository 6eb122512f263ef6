"""The fixed mode's vote aggregator, the validation slice and the best-single guard."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

import ensembles
from fusers.marl import MarlConfig, MarlFocal, fit_tasks, task_arrays
from fusers.marl._agents import init_aggregator, vote_matrix
from fusers.marl._fit import carve_validation


def plurality_reference(team, preds_t, n_classes):
    """Plurality of the consulted members written plainly: abstentions (-1) do not vote, ties
    go to the smallest class, no vote at all gives no answer (-1)."""
    counts = [0] * n_classes
    for j, member in enumerate(team):
        if member and preds_t[j] >= 0:
            counts[preds_t[j]] += 1
    if max(counts) == 0:
        return -1
    return min(c for c in range(n_classes) if counts[c] == max(counts))


def _greedy(gd, params, team, preds_t, probs_t, n_classes, pad):
    agg = nnx.merge(gd, params)
    teamf = jnp.asarray(team, jnp.float32)
    votes = vote_matrix(teamf, jnp.asarray(preds_t), pad)
    x = (jnp.asarray(probs_t) * teamf[:, None]).reshape(-1)
    logits, _ = agg(x, jnp.arange(pad) < n_classes, votes)
    return int(jnp.where(votes.sum() > 0, jnp.argmax(logits), -1))


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(2, 6),
    c=st.integers(2, 5),
    extra=st.integers(0, 2),
    seed=st.integers(0, 2**31 - 1),
)
def test_untrained_vote_aggregator_is_the_plurality_of_the_consulted(m, c, extra, seed):
    rng = np.random.default_rng(seed)
    pad = c + extra
    gd, params = init_aggregator(jax.random.key(seed % 1000), m, c, pad_classes=pad, kind="vote")
    for _ in range(8):
        team = rng.integers(0, 2, m)
        # few classes used, so that ties are frequent; -1 = abstain
        preds_t = rng.integers(-1, min(c, 3), m)
        probs_t = np.zeros((m, pad), np.float32)
        probs_t[:, :c] = rng.dirichlet(np.ones(c), m)
        got = _greedy(gd, params, team, preds_t, probs_t, c, pad)
        assert got == plurality_reference(team.tolist(), preds_t.tolist(), c)


def test_vote_aggregator_ties_and_abstentions_by_hand():
    gd, params = init_aggregator(jax.random.key(0), 4, 3, kind="vote")
    probs = np.full((4, 3), 1 / 3, np.float32)
    # a 1-1 tie between classes 2 and 1 goes to 1; abstentions do not vote
    assert _greedy(gd, params, [1, 1, 1, 0], [2, 1, -1, 2], probs, 3, 3) == 1
    # every consulted member abstains: no answer
    assert _greedy(gd, params, [1, 0, 1, 0], [-1, 2, -1, 0], probs, 3, 3) == -1
    # an empty team: no answer
    assert _greedy(gd, params, [0, 0, 0, 0], [0, 1, 2, 0], probs, 3, 3) == -1


def _bundle(seed=0, n=160, n_test=40, m=4, c=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    acc = np.linspace(0.75, 0.4, m)
    preds = np.where(rng.random((m, n)) < acc[:, None], y, rng.integers(0, c, (m, n)))
    preds[rng.random((m, n)) < 0.05] = -1
    probs = rng.random((m, n, c)).astype(np.float32)
    split = ["train"] * (n - n_test) + ["test"] * n_test
    return ensembles.Bundle.create(
        models=[f"m{i}" for i in range(m)], labels=y, preds=preds, probs=probs, split=split
    )


def test_untrained_pipeline_frozen_test_is_plurality_of_all():
    b = _bundle(1)
    cfg = MarlConfig.for_mode(
        "fixed", select_passes=0, ensemble_passes=0, val_fraction=0.0, guard=False
    )
    run = fit_tasks([task_arrays(b)], cfg, force_all=True, phases=("frozen",))[0]
    test = b.select_split("test")
    expect = float(ensembles.team_accuracy(test, [tuple(b.models)], combiner="plurality")[0])
    assert run.frozen_accuracy == pytest.approx(expect, abs=1e-12)
    preds = np.asarray(test.preds)
    ref = [plurality_reference([1] * 4, preds[:, k].tolist(), 3) for k in range(preds.shape[1])]
    assert run.frozen_answers.tolist() == ref


TINY = dict(select_passes=2, ensemble_passes=2, update_freq=20)


def test_validation_slice_never_reads_test_rows():
    b = _bundle(2)
    rng = np.random.default_rng(9)
    labels = np.asarray(b.labels).copy()
    test = np.flatnonzero(np.asarray(b.split) == "test")
    labels[test] = rng.integers(0, 3, test.size)  # garbage test labels
    b2 = ensembles.Bundle.create(
        models=list(b.models), labels=labels, preds=b.preds, probs=b.probs, split=b.split
    )
    r1 = MarlFocal(seed=5, **TINY).fit(b).run_
    r2 = MarlFocal(seed=5, **TINY).fit(b2).run_
    leaves1 = jax.tree.leaves(r1.params)
    leaves2 = jax.tree.leaves(r2.params)
    assert len(leaves1) == len(leaves2) > 3
    for a, c in zip(leaves1, leaves2, strict=True):
        assert np.asarray(a).tobytes() == np.asarray(c).tobytes()
    assert (r1.val_accuracy, r1.val_best_single, r1.fallback, r1.fallback_model) == (
        r2.val_accuracy,
        r2.val_best_single,
        r2.fallback,
        r2.fallback_model,
    )
    assert r1.frozen_teams.tolist() == r2.frozen_teams.tolist()


def test_carve_takes_training_rows_only_and_depends_on_the_seed():
    ta = task_arrays(_bundle(3))
    v0, n_fit = carve_validation(ta, 0, 0.25)
    v1, _ = carve_validation(ta, 1, 0.25)
    assert n_fit == ta.n_train - 30
    assert sorted(v0.row_ids[: ta.n_train].tolist()) == sorted(ta.row_ids[: ta.n_train].tolist())
    assert v0.row_ids[ta.n_train :].tolist() == ta.row_ids[ta.n_train :].tolist()
    assert set(v0.row_ids[n_fit : ta.n_train]) != set(v1.row_ids[n_fit : ta.n_train])
    # each part keeps document order
    assert np.all(np.diff(v0.row_ids[:n_fit]) > 0)
    assert np.all(np.diff(v0.row_ids[n_fit : ta.n_train]) > 0)


def test_guard_routes_to_the_best_single_model_when_the_router_is_not_better():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 150)
    preds = np.stack([y, rng.integers(0, 3, 150), rng.integers(0, 3, 150)])
    b = ensembles.Bundle.create(
        models=["right", "noise1", "noise2"],
        labels=y,
        preds=preds,
        split=["train"] * 120 + ["test"] * 30,
    )
    run = MarlFocal(seed=0, **TINY).fit(b).run_
    # nothing beats a model that is always right: the guard fires
    assert run.val_best_single == 1.0 and run.fallback and run.fallback_model == 0
    assert run.frozen_accuracy == 1.0
    assert run.frozen_teams.tolist() == [[1, 0, 0]] * 30


def test_guard_off_keeps_the_router():
    b = _bundle(4)
    run = MarlFocal(seed=0, guard=False, **TINY).fit(b).run_
    assert not run.fallback and run.frozen_accuracy == run.router_frozen_accuracy
    assert 0.0 <= run.val_accuracy <= 1.0


def test_config_refuses_a_guard_without_a_slice():
    with pytest.raises(ensembles.util.InputError, match="guard"):
        MarlConfig.for_mode("fixed", val_fraction=0.0)
    assert MarlConfig.for_mode("faithful").aggregator == "mlp"
    assert MarlConfig.for_mode("fixed").aggregator == "vote"
