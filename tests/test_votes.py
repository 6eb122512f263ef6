"""Exactness of the packed vote-accuracy kernel (focal.search.team_vote_accuracies and helpers).

The reference below is written from the combiner definitions, one team at a time, in float64
NumPy: it shares no code with the kernel under test.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ensembles
import focal
import focal.search
from ensembles.util import InputError
from focal._votes import field_bits, iter_vote_accuracies, masks_vote_accuracy

COMBINERS = ("plurality", "majority", "soft", "weighted_plurality", "weighted_soft")


# ------------------------------------------------------------------------------ reference
def reference_predictions(bundle, members, combiner, weights=None):
    """Fused class per sample of one team, from the definitions (-1: no answer)."""
    members = sorted(members)
    if not combiner.startswith("weighted_"):
        weights = None
    n, c = bundle.n_samples, bundle.n_classes
    size = len(members)
    if combiner in ("plurality", "majority", "weighted_plurality"):
        votes = np.zeros((n, c))
        for m in members:
            w = 1.0 if weights is None else weights[m]
            p = bundle.preds[m]
            voted = p >= 0  # abstentions (-1) do not vote
            votes[np.flatnonzero(voted), p[voted]] += w
    else:  # soft / weighted_soft: row-normalised probs, an all-zero row contributes nothing
        votes = np.zeros((n, c))
        for m in members:
            w = 1.0 if weights is None else weights[m]
            p = bundle.probs[m]
            total = p.sum(axis=1, keepdims=True)
            phat = np.where(total > 0, p / np.where(total > 0, total, 1.0), 0.0)
            votes = votes + w * phat
        # soft: the mean's argmax is the sum's (dividing could only merge near-ties by rounding)
    if combiner == "majority":
        winner = 2 * votes > size  # more than half of ALL members' votes
        return np.where(winner.any(axis=1), winner.argmax(axis=1), -1)
    top = votes.max(axis=1)
    # np.argmax returns the first maximum: ties -> lowest class index; no votes -> -1
    return np.where(top > 0, votes.argmax(axis=1), -1)


def reference_accuracy(bundle, masks, combiner, weights=None):
    return np.array(
        [
            np.mean(
                reference_predictions(bundle, np.flatnonzero(mask), combiner, weights)
                == bundle.labels
            )
            for mask in masks
        ]
    )


def all_masks(n_models, sizes):
    rows = []
    for size in sizes:
        for team in itertools.combinations(range(n_models), size):
            mask = np.zeros(n_models, bool)
            mask[list(team)] = True
            rows.append(mask)
    return np.array(rows)


# ------------------------------------------------------------------------------ strategies
@st.composite
def bundles(draw, max_models=8, max_classes=6):
    n_models = draw(st.integers(2, max_models))
    n_samples = draw(st.integers(1, 30))
    n_classes = draw(st.integers(1, max_classes))
    seed = draw(st.integers(0, 2**32 - 1))
    style = draw(st.sampled_from(["random", "abstain", "never_wrong", "duplicates", "ties"]))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n_samples)
    preds = rng.integers(-1, n_classes, (n_models, n_samples))
    if style == "abstain":
        preds[rng.random(preds.shape) < 0.6] = -1
    elif style == "never_wrong":
        preds[: max(1, n_models // 2)] = labels
    elif style == "duplicates":
        preds[1::2] = preds[0]
    elif style == "ties":
        preds = rng.integers(-1, min(n_classes, 2), (n_models, n_samples))
    # probs: coarse values so that sums tie often; some all-zero rows
    probs = rng.integers(0, 3, (n_models, n_samples, n_classes)).astype(float) / 2
    probs[rng.random((n_models, n_samples)) < 0.15] = 0.0
    weights = rng.integers(0, 4, n_models).astype(float) / 2
    weights[rng.integers(n_models)] = 1.5  # at least one positive weight
    hard = ensembles.Bundle.create(
        models=[f"m{i}" for i in range(n_models)], labels=labels, preds=preds, n_classes=n_classes
    )
    soft = ensembles.Bundle.create(
        models=[f"m{i}" for i in range(n_models)], labels=labels, probs=probs
    )
    return hard, soft, weights


def _kwargs(combiner, weights):
    return {"weights": weights} if combiner.startswith("weighted_") else {}


def _bundle_for(combiner, hard, soft):
    return soft if combiner.endswith("soft") else hard


def _live(masks, combiner, weights):
    """Teams that the weighted combiners accept (not every member weight zero)."""
    if not combiner.startswith("weighted_"):
        return masks
    return masks[(masks & (weights > 0)[None, :]).any(axis=1)]


# ------------------------------------------------------------------------------ exactness
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bundles(), st.sampled_from(COMBINERS))
def test_all_teams_match_reference(data, combiner):
    hard, soft, weights = data
    bundle = _bundle_for(combiner, hard, soft)
    m = bundle.n_models
    sizes = tuple(range(2, m + 1))
    masks = all_masks(m, sizes)
    live = _live(masks, combiner, weights)
    if len(live) < len(masks):  # a weighted request with a dead team is refused as a whole
        with pytest.raises(InputError, match="weight zero"):
            focal.search.team_vote_accuracies(bundle, sizes, combiner=combiner, weights=weights)
        got = masks_vote_accuracy(bundle, live, combiner=combiner, weights=weights)
        np.testing.assert_array_equal(got, reference_accuracy(bundle, live, combiner, weights))
        return
    got_masks, got = focal.search.team_vote_accuracies(
        bundle, sizes, combiner=combiner, **_kwargs(combiner, weights)
    )
    np.testing.assert_array_equal(got_masks, masks)  # canonical order
    np.testing.assert_array_equal(got, reference_accuracy(bundle, masks, combiner, weights))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bundles(max_models=10), st.sampled_from(COMBINERS), st.integers(0, 2**32 - 1))
def test_masks_match_team_accuracy(data, combiner, seed):
    hard, soft, weights = data
    bundle = _bundle_for(combiner, hard, soft)
    rng = np.random.default_rng(seed)
    masks = rng.random((40, bundle.n_models)) < rng.random((40, 1))
    masks[np.arange(40), rng.integers(0, bundle.n_models, 40)] = True  # sizes 1..M
    masks = _live(masks, combiner, weights)
    kw = _kwargs(combiner, weights)
    got = masks_vote_accuracy(bundle, masks, combiner=combiner, **kw)
    np.testing.assert_array_equal(
        got, ensembles.team_accuracy(bundle, masks, combiner=combiner, **kw)
    )
    np.testing.assert_array_equal(got, reference_accuracy(bundle, masks, combiner, weights))


@pytest.mark.parametrize(
    ("n_models", "n_classes", "size"),
    [(9, 20, 9), (16, 13, 16), (12, 40, 8), (3, 1, 3), (40, 3, 40)],
)
def test_wide_fields_and_many_words(n_models, n_classes, size):
    """Large teams (5-6 bit fields) and many classes (several packed words)."""
    rng = np.random.default_rng(n_models * 100 + n_classes)
    n = 200
    labels = rng.integers(0, n_classes, n)
    # few distinct votes per sample so that large tallies and ties really occur
    choice = rng.integers(0, n_classes, (n, 2))
    pick = rng.integers(0, 3, (n_models, n))
    preds = np.where(pick == 2, -1, choice[np.arange(n)[None, :], np.minimum(pick, 1)])
    b = ensembles.Bundle.create(
        models=[f"m{i}" for i in range(n_models)], labels=labels, preds=preds, n_classes=n_classes
    )
    masks = all_masks(n_models, [size])
    masks = np.concatenate([masks, rng.random((8, n_models)) < 0.7])
    masks[:, 0] = True
    for combiner in ("plurality", "majority"):
        ref = reference_accuracy(b, masks, combiner)
        np.testing.assert_array_equal(masks_vote_accuracy(b, masks, combiner=combiner), ref)


def test_hand_computed_tie_rules():
    """Values worked out by hand: tie -> lowest class, abstain, majority of ALL members."""
    b = ensembles.Bundle.create(
        models=["a", "b", "c", "d"],
        labels=[0, 2, 0, 1, 1],
        preds=[[0, 0, -1, 1, 1], [2, 2, -1, 1, 1], [2, 2, -1, 1, -1], [0, 0, -1, -1, -1]],
        n_classes=3,
    )
    # all four: samples 0 (2-2 tie, class 0 wins), 3 and 4 right; 1 lost on the tie; 2 no votes
    team = np.ones((1, 4), bool)
    assert masks_vote_accuracy(b, team).tolist() == [0.6]
    # majority needs 3 of 4 votes: only sample 3
    assert masks_vote_accuracy(b, team, combiner="majority").tolist() == [0.2]
    # weights 1, 1, 1, 3: class 0 wins samples 0 and 1 (3 vs 2), sample 3 and 4 class 1
    w = np.array([1.0, 1.0, 1.0, 3.0])
    got = masks_vote_accuracy(b, team, combiner="weighted_plurality", weights=w)
    assert got.tolist() == [0.6]


def test_field_bits_bound():
    for size in range(1, 200):
        bits = field_bits(size)
        assert size <= (1 << (bits - 1)) - 1
        assert bits == 4 or size > (1 << (bits - 2)) - 1


def test_stream_matches_full_and_chunking():
    rng = np.random.default_rng(3)
    b = ensembles.Bundle.create(
        models=[f"m{i}" for i in range(7)],
        labels=rng.integers(0, 4, 50),
        preds=rng.integers(-1, 4, (7, 50)),
    )
    masks, acc = focal.search.team_vote_accuracies(b, "2-4")
    parts = list(iter_vote_accuracies(b, (2, 4), teams_per_yield=5, chunk_size=3))
    assert [(s, r) for s, r, _ in parts][:3] == [(2, 0), (2, 5), (2, 10)]
    np.testing.assert_array_equal(np.concatenate([a for _, _, a in parts]), acc)
    _, acc7 = focal.search.team_vote_accuracies(b, "2-4", chunk_size=7)
    np.testing.assert_array_equal(acc7, acc)
    np.testing.assert_array_equal(acc, reference_accuracy(b, masks, "plurality"))


# ------------------------------------------------------------------------------ real data
@pytest.fixture(scope="module")
def mmlu(request):
    from conftest import shared_data_dir

    path = shared_data_dir() / "mmlu_pro_29llm.npz"
    if not path.is_file():
        pytest.skip(f"shared data file {path} is absent (set FOCAL_DATA_DIR)")
    return ensembles.load_bundle(path)


def test_mmlu_pro_subset_matches_reference(mmlu):
    rng = np.random.default_rng(0)
    m = mmlu.n_models
    parts = []
    for size in (2, 3, 4, 5, 6, 9, 15, 29):
        for _ in range(6 if size <= 6 else 2):
            mask = np.zeros(m, bool)
            mask[rng.choice(m, size, replace=False)] = True
            parts.append(mask)
    masks = np.array(parts)
    for combiner in ("plurality", "majority"):
        got = masks_vote_accuracy(mmlu, masks, combiner=combiner)
        np.testing.assert_array_equal(got, reference_accuracy(mmlu, masks, combiner))
    w = rng.random(m)
    got = masks_vote_accuracy(mmlu, masks, combiner="weighted_plurality", weights=w)
    np.testing.assert_array_equal(got, reference_accuracy(mmlu, masks, "weighted_plurality", w))


def test_mmlu_pro_all_small_teams_match_team_accuracy(mmlu):
    masks, acc = focal.search.team_vote_accuracies(mmlu, (2, 3))
    np.testing.assert_array_equal(acc, ensembles.team_accuracy(mmlu, masks))
    rng = np.random.default_rng(1)
    _, acc5 = focal.search.team_vote_accuracies(mmlu, 5, combiner="majority")
    pick = rng.choice(len(acc5), 500, replace=False)
    masks5 = all_masks(mmlu.n_models, [5])[pick]
    np.testing.assert_array_equal(
        acc5[pick], ensembles.team_accuracy(mmlu, masks5, combiner="majority")
    )
    # headline fact of the data README: plurality of all 29 models
    assert round(float(masks_vote_accuracy(mmlu, np.ones((1, 29), bool))[0]), 4) == round(
        float(ensembles.team_accuracy(mmlu, np.ones((1, 29), bool))[0]), 4
    )


def test_bbh_soft_matches_team_accuracy():
    from conftest import shared_data_dir

    path = shared_data_dir() / "bbh_5llm_marl_focal.npz"
    if not path.is_file():
        pytest.skip(f"shared data file {path} is absent (set FOCAL_DATA_DIR)")
    for task in ("navigate", "date_understanding", "web_of_lies"):
        b = ensembles.load_bundle(path, task=task)
        masks, _ = focal.search.team_vote_accuracies(b, (2, 5))
        w = np.linspace(0.5, 2.0, b.n_models)
        for combiner in COMBINERS:
            kw = _kwargs(combiner, w)
            _, got = focal.search.team_vote_accuracies(b, (2, 5), combiner=combiner, **kw)
            ref = ensembles.team_accuracy(b, masks, combiner=combiner, **kw)
            np.testing.assert_array_equal(got, ref)
            np.testing.assert_array_equal(got, reference_accuracy(b, masks, combiner, w))


# ------------------------------------------------------------------------------ bad input
def _small():
    return ensembles.Bundle.create(
        models=["a", "b", "c"], labels=[0, 1, 1], preds=[[0, 1, 0], [1, 1, -1], [0, 0, 1]]
    )


def test_no_labels_is_input_error():
    b = copy.copy(_small())
    object.__setattr__(b, "labels", None)
    with pytest.raises(InputError, match="labels"):
        focal.search.team_vote_accuracies(b, 2)
    with pytest.raises(InputError, match="labels"):
        masks_vote_accuracy(b, [[1, 1, 0]])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"combiner": "median"}, "combiner"),
        ({"combiner": "soft"}, "probs"),
        ({"combiner": "weighted_plurality"}, "weights"),
        ({"combiner": "plurality", "weights": [1, 1, 1]}, "weights"),
        ({"combiner": "weighted_plurality", "weights": [1, -1, 1]}, "weights"),
        ({"combiner": "weighted_plurality", "weights": [1, 1]}, "weights"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"max_teams": 2}, "budget"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        focal.search.team_vote_accuracies(_small(), (2, 3), **kwargs)


def test_bad_sizes_and_masks():
    with pytest.raises(InputError, match="sizes"):
        focal.search.team_vote_accuracies(_small(), 4)
    with pytest.raises(InputError, match="no members"):
        masks_vote_accuracy(_small(), [[0, 0, 0]])
    with pytest.raises(InputError, match="mask"):
        masks_vote_accuracy(_small(), [[1, 2, 0]])
    with pytest.raises(InputError, match="n_models"):
        masks_vote_accuracy(_small(), [[1, 1]])
