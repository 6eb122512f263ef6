"""Features of the fusers (FUSERS.md §1.2) and their splits, on hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from ensembles import Bundle, BundleError
from fusers import (
    answer_space,
    choice_scores,
    flatten_members,
    valid_classes,
)


def test_answer_space_frequencies_order_and_label():
    # member 0: 3,3,5 ; member 1: 5,5,7,7 -> totals 3: 2/3, 5: 1/3 + 1/2 = 5/6, 7: 1/2
    s = answer_space([[[3, 3, 5]], [[5, 5, 7, 7]]], gold=[7], space_size=4)
    assert s.answers == [[5.0, 3.0, 7.0, None]]
    assert s.mask.tolist() == [[True, True, True, False]]
    assert s.labels.tolist() == [2]
    np.testing.assert_allclose(s.freqs[0, 0], [1 / 3, 2 / 3, 0, 0])
    np.testing.assert_allclose(s.freqs[1, 0], [1 / 2, 0, 1 / 2, 0])


def test_missing_answers_dropped_but_counted_in_k():
    s = answer_space([[[None, float("nan"), 4, ""]], [[None, None]]], gold=[4], space_size=3)
    assert s.answers == [[4.0, None, None]]
    np.testing.assert_allclose(s.freqs[:, 0, 0], [0.25, 0.0])
    assert s.labels.tolist() == [0]
    # all members missing: empty space, unanswerable, no valid slot
    e = answer_space([[[None]], [[float("nan")]]], gold=[1], space_size=2)
    assert not e.mask.any() and e.labels.tolist() == [2] and e.unanswerable.tolist() == [True]


def test_ties_go_to_the_smaller_answer_exactly():
    # 1/3 + 1/6 (= 0.5) vs 1/2: an exact tie that floats would break (0.1 + 0.2 style)
    s = answer_space([[[9, 1, 1]], [[9, 2, 2, 2, 2, 2]]], gold=[9], space_size=5)
    # totals: 9 = 1/3 + 1/6 = 1/2 ; 1 = 2/3 ; 2 = 5/6
    assert s.answers[0][:3] == [2.0, 1.0, 9.0]
    t = answer_space([[[10, 2]], [[10, 2]]], gold=[2], space_size=2)
    assert t.answers == [[2.0, 10.0]] and t.labels.tolist() == [0]
    # numbers compare by value: 3 and 3.0 are one answer
    u = answer_space([[[3, 3.0]], [[3]]], gold=[3.0], space_size=2)
    assert u.answers == [[3.0, None]] and u.freqs[:, 0, 0].tolist() == [1.0, 1.0]


def test_zero_answer_is_not_padding_and_truncation_makes_unanswerable():
    s = answer_space([[[0, 0, 1]], [[0]]], gold=[0], space_size=3)
    assert s.answers == [[0.0, 1.0, None]] and s.labels.tolist() == [0]
    assert s.mask.tolist() == [[True, True, False]]
    t = answer_space([[[1, 1, 1, 2, 2, 3]], [[1]]], gold=[3], space_size=2)
    assert t.answers == [[1.0, 2.0]] and t.labels.tolist() == [2]  # 3 truncated away


def test_strings_and_decode_and_bundle():
    s = answer_space([[[" b", "a", "a"]], [["b"]]], gold=["b"], space_size=3)
    assert s.answers == [["b", "a", None]]
    assert s.decode([1]) == ["a"] and s.decode([-1]) == [None] and s.decode([3]) == [None]
    b = s.to_bundle(["m0", "m1"])
    assert b.n_classes == 4 and b.labels.tolist() == [0]
    assert b.probs[:, 0, 3].tolist() == [0.0, 0.0]  # nobody gives mass to "not in the space"
    assert valid_classes(b.probs, "support").tolist() == [[True, True, False, False]]


def test_answer_space_bad_input():
    with pytest.raises(BundleError, match="member 1 has 1 questions"):
        answer_space([[[1], [2]], [[1]]], gold=[1, 2])
    with pytest.raises(BundleError, match="expected numbers"):
        answer_space([[[object()]], [[1]]], gold=[1])
    with pytest.raises(ValueError, match="space_size"):
        answer_space([[[1]], [[1]]], gold=[1], space_size=0)


def test_choice_scores_and_flatten():
    p = np.array([[[0.2, 0.8], [0.5, 0.5]], [[1.0, 0.0], [0.0, 0.0]]])
    b = Bundle.create(models=["a", "b"], labels=[1, 0], probs=p)
    np.testing.assert_array_equal(choice_scores(b), p.astype(np.float32))
    one = choice_scores(b, scores="onehot")
    assert one.tolist() == [[[0, 1], [1, 0]], [[1, 0], [0, 0]]]  # all-zero row = abstain
    assert flatten_members(p).tolist() == [[0.2, 0.8, 1.0, 0.0], [0.5, 0.5, 0.0, 0.0]]
    hard = Bundle.create(models=["a", "b"], labels=[0], preds=[[0], [-1]], n_classes=3)
    assert choice_scores(hard).tolist() == [[[1, 0, 0]], [[0, 0, 0]]]
    with pytest.raises(ValueError, match="no probs"):
        choice_scores(hard, scores="probs")
    with pytest.raises(ValueError, match="valid_classes"):
        valid_classes(p, "nope")


def _bundle(n: int = 40, split=None) -> Bundle:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    return Bundle.create(models=["a", "b"], labels=y, preds=np.stack([y, y[::-1]]), split=split)
