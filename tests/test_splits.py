"""Seeded random train/val/test splits."""

from __future__ import annotations

import numpy as np
import pytest

from ensembles import SPLIT_NAMES, Bundle, BundleError, with_random_split


def _bundle(labels, n_models: int = 3, split=None) -> Bundle:
    labels = np.asarray(labels)
    rng = np.random.default_rng(42)
    preds = rng.integers(-1, int(labels.max()) + 1, size=(n_models, len(labels)))
    return Bundle.create(
        models=[f"m{i}" for i in range(n_models)],
        labels=labels,
        preds=preds,
        sample_ids=np.arange(len(labels)) * 10,
        groups=np.array(["g"] * len(labels)),
        split=split,
        task="t",
    )


def _counts(b: Bundle) -> list[int]:
    return [int((b.split == name).sum()) for name in SPLIT_NAMES]


def test_deterministic_and_seeded() -> None:
    b = _bundle(np.arange(200) % 4)
    s1 = with_random_split(b, seed=7)
    s2 = with_random_split(b, seed=7)
    s3 = with_random_split(b, seed=8)
    assert np.array_equal(s1.split, s2.split)
    assert not np.array_equal(s1.split, s3.split)
    assert _counts(s1) == _counts(s3) == [120, 40, 40]


def test_global_numpy_state_untouched() -> None:
    b = _bundle(np.arange(50) % 2)
    np.random.seed(123)
    state = np.random.get_state()
    with_random_split(b, seed=1)
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 10, 11, 99, 101, 1000])
@pytest.mark.parametrize("fractions", [(0.6, 0.2, 0.2), (0.7, 0.15, 0.15), (1 / 3, 1 / 3, 1 / 3)])
@pytest.mark.parametrize("stratify", [True, False])
def test_exact_counts(n: int, fractions, stratify: bool) -> None:
    b = _bundle(np.arange(n) % 3 if n >= 3 else np.zeros(n, dtype=int))
    s = with_random_split(b, fractions=fractions, seed=0, stratify=stratify)
    counts = _counts(s)
    assert sum(counts) == n
    for count, f in zip(counts, fractions, strict=True):
        assert abs(count - n * f) < 1 + 1e-9  # each split size is the floor or ceil of N f


def test_stratified_keeps_class_proportions() -> None:
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    s = with_random_split(_bundle(labels), fractions=(0.6, 0.2, 0.2), seed=3)
    assert _counts(s) == [60, 20, 20]
    for c, n_c in zip([0, 1, 2], [50, 30, 20], strict=True):
        per_split = [int(((s.split == name) & (labels == c)).sum()) for name in SPLIT_NAMES]
        assert per_split == [round(0.6 * n_c), round(0.2 * n_c), round(0.2 * n_c)]


def test_stratified_joint_rounding_is_exact() -> None:
    labels = np.repeat([0, 1, 2, 3], [7, 7, 7, 9])  # every class has fractional shares
    s = with_random_split(_bundle(labels), fractions=(0.5, 0.25, 0.25), seed=0)
    assert _counts(s) == [15, 8, 7]
    for c, n_c in zip(range(4), [7, 7, 7, 9], strict=True):
        per_split = np.array([((s.split == nm) & (labels == c)).sum() for nm in SPLIT_NAMES])
        assert per_split.sum() == n_c
        assert (np.abs(per_split - n_c * np.array([0.5, 0.25, 0.25])) < 1 + 1e-9).all()


def test_falls_back_to_unstratified_for_rare_class() -> None:
    labels = np.array([0] * 40 + [1] * 2)  # class 1 too small for three splits
    b = _bundle(labels)
    s = with_random_split(b, seed=0)
    assert _counts(s) == [25, 9, 8]
    plain = with_random_split(b, seed=0, stratify=False)
    assert np.array_equal(s.split, plain.split)


def test_zero_fraction_gives_empty_split() -> None:
    s = with_random_split(_bundle(np.arange(20) % 2), fractions=(0.8, 0.0, 0.2), seed=0)
    assert _counts(s) == [16, 0, 4]
    with pytest.raises(BundleError):
        s.select_split("val")


def test_keeps_everything_else_and_replaces_split() -> None:
    old = np.array(["test"] * 30)
    b = _bundle(np.arange(30) % 3, split=old)
    s = with_random_split(b, seed=5)
    assert s.models == b.models and s.task == "t" and s.n_classes == b.n_classes
    for name in ("labels", "preds", "sample_ids", "groups"):
        assert np.array_equal(getattr(s, name), getattr(b, name))
    assert _counts(s) == [18, 6, 6]
    assert np.array_equal(b.split, old)  # the input is unchanged


def test_with_probs_bundle() -> None:
    rng = np.random.default_rng(0)
    b = Bundle.create(models=["a", "b"], labels=np.arange(12) % 2, probs=rng.random((2, 12, 2)))
    s = with_random_split(b, seed=0)
    assert np.array_equal(s.probs, b.probs) and _counts(s) == [7, 3, 2]


@pytest.mark.parametrize(
    "fractions",
    [
        (0.5, 0.5),
        (0.6, 0.2, 0.1, 0.1),
        (0.6, 0.2, 0.3),
        (1.2, -0.1, -0.1),
        (float("nan"), 0.5, 0.5),
        (float("inf"), 0, 0),
        ("a", "b", "c"),
        0.5,
    ],
)
def test_bad_fractions(fractions) -> None:
    with pytest.raises(BundleError) as ei:
        with_random_split(_bundle(np.arange(10) % 2), fractions=fractions)
    assert str(ei.value).startswith("fractions:") and "\n" not in str(ei.value)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", None, True])
def test_bad_seed(seed) -> None:
    with pytest.raises(BundleError) as ei:
        with_random_split(_bundle(np.arange(10) % 2), seed=seed)
    assert str(ei.value).startswith("seed:")


def test_numpy_integer_seed_and_fraction_rounding() -> None:
    b = _bundle(np.arange(10) % 2)
    a = with_random_split(b, seed=np.int64(4), fractions=(0.7, 0.2, 0.1 + 1e-9))
    assert np.array_equal(a.split, with_random_split(b, seed=4, fractions=(0.7, 0.2, 0.1)).split)


# ------------------------------------------------------------------------ the one split policy
def test_default_fractions_are_the_one_policy() -> None:
    import ensembles

    b = _bundle(np.arange(100) % 4)
    a = ensembles.with_random_split(b, seed=3)
    c = ensembles.with_random_split(b, fractions=ensembles.DEFAULT_FRACTIONS, seed=3)
    assert np.array_equal(a.split, c.split)
    s, info = ensembles.ensure_splits(b, seed=3)
    assert np.array_equal(s.split, a.split)
    assert info.source == "seeded" and info.sizes == {"train": 60, "val": 20, "test": 20}


def test_ensure_splits_rules() -> None:
    import ensembles

    labels = np.arange(20) % 2
    keep = _bundle(labels, split=["train"] * 10 + ["val"] * 5 + ["test"] * 5)
    out, info = ensembles.ensure_splits(keep, seed=0)
    assert out is keep and info.source == "bundle"
    only_val_test = _bundle(labels, split=["val"] * 10 + ["test"] * 10)
    assert ensembles.ensure_splits(only_val_test)[1].source == "bundle"
    carve = _bundle(labels, split=["train"] * 15 + ["test"] * 5)
    out, info = ensembles.ensure_splits(carve, seed=1)
    assert info.source == "bundle+val" and info.sizes == {"train": 12, "val": 3, "test": 5}
    assert (out.split[15:] == "test").all()  # test rows are never touched
    again, _ = ensembles.ensure_splits(carve, seed=1)
    assert np.array_equal(again.split, out.split)
    with pytest.raises(BundleError, match="neither val rows nor train rows"):
        ensembles.ensure_splits(_bundle(labels, split=["test"] * 20))
