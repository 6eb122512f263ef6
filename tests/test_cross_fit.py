"""``ensembles.cross_fit_sklearn``: out-of-fold outputs on the fitting rows, exact."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier

import focal
from ensembles import BundleError, cross_fit_sklearn, from_sklearn


@pytest.fixture(scope="module")
def data():
    x, y = make_classification(n_samples=240, n_features=8, n_informative=4, n_classes=3,
                               flip_y=0.15, random_state=0)  # fmt: skip
    split = np.array(["train"] * 120 + ["val"] * 60 + ["test"] * 60)
    return x, y, split


def _pool():
    return {"lr": LogisticRegression(max_iter=500), "nb": GaussianNB(),
            "knn1": KNeighborsClassifier(n_neighbors=1)}  # fmt: skip


def _two():
    return {"nb": GaussianNB(), "lr": LogisticRegression(max_iter=500)}


def test_matches_a_fold_by_fold_reference(data) -> None:
    x, y, split = data
    bundle, fitted = cross_fit_sklearn(_pool(), x, y, split=split, folds=4, seed=3)
    fit_rows = np.flatnonzero(split == "train")
    rest = np.flatnonzero(split != "train")
    # Rows outside the fitting split: the models fitted on every training row.
    ref = from_sklearn({k: clone(v).fit(x[fit_rows], y[fit_rows]) for k, v in _pool().items()},
                       x[rest], y[rest], n_classes=3)  # fmt: skip
    np.testing.assert_array_equal(bundle.preds[:, rest], ref.preds)
    np.testing.assert_allclose(bundle.probs[:, rest], ref.probs, rtol=0, atol=0)
    # Fitting rows: each fold scored by models fitted on the other folds.
    folds = StratifiedKFold(4, shuffle=True, random_state=3).split(fit_rows, y[fit_rows])
    for inner_fit, inner_out in folds:
        rows_fit, rows_out = fit_rows[inner_fit], fit_rows[inner_out]
        models = {k: clone(v).fit(x[rows_fit], y[rows_fit]) for k, v in _pool().items()}
        ref = from_sklearn(models, x[rows_out], y[rows_out], n_classes=3)
        np.testing.assert_array_equal(bundle.preds[:, rows_out], ref.preds)
        np.testing.assert_allclose(bundle.probs[:, rows_out], ref.probs, rtol=0, atol=0)
    assert sorted(fitted) == ["knn1", "lr", "nb"]
    np.testing.assert_array_equal(fitted["knn1"].predict(x[fit_rows]), y[fit_rows])
    assert bundle.split.tolist() == split.tolist()


def test_no_row_is_scored_by_a_model_that_saw_it(data) -> None:
    """A 1-nearest-neighbour model memorises its training rows; out of fold it cannot."""
    x, y, split = data
    bundle, fitted = cross_fit_sklearn(_pool(), x, y, split=split, folds=5, seed=0)
    knn = bundle.models.index("knn1")
    train = split == "train"
    in_sample = (fitted["knn1"].predict(x[train]) == y[train]).mean()
    out_of_fold = (bundle.preds[knn, train] == y[train]).mean()
    assert in_sample == 1.0
    assert out_of_fold < 0.9


def test_without_split_every_row_is_out_of_fold() -> None:
    x, y = load_iris(return_X_y=True)
    bundle, _ = cross_fit_sklearn(_two(), x, y, folds=3, seed=1)
    for inner_fit, inner_out in StratifiedKFold(3, shuffle=True, random_state=1).split(x, y):
        ref = GaussianNB().fit(x[inner_fit], y[inner_fit]).predict_proba(x[inner_out])
        np.testing.assert_allclose(bundle.probs[0, inner_out], ref, rtol=0, atol=0)
    assert bundle.split is None


def test_rare_class_falls_back_to_plain_folds() -> None:
    x, y = load_iris(return_X_y=True)
    y = y.copy()
    keep = np.r_[0:50, 50:52, 100:150]  # class 1 has 2 rows: too few to stratify 3 folds
    x, y = x[keep], y[keep]
    bundle, _ = cross_fit_sklearn(_two(), x, y, folds=3, seed=0)
    for inner_fit, inner_out in KFold(3, shuffle=True, random_state=0).split(x):
        models = {k: v.fit(x[inner_fit], y[inner_fit]) for k, v in _two().items()}
        ref = from_sklearn(models, x[inner_out], y[inner_out], n_classes=3)
        np.testing.assert_array_equal(bundle.preds[0, inner_out], ref.preds[0])


def test_sparse_input_and_seed_reproducible(data) -> None:
    from scipy import sparse

    x, y, split = data
    pool = {"lr": LogisticRegression(max_iter=500), "knn1": KNeighborsClassifier(n_neighbors=1)}
    a, _ = cross_fit_sklearn(pool, sparse.csr_matrix(x), y, split=split, seed=2)
    b, _ = cross_fit_sklearn(pool, x, y, split=split, seed=2)
    np.testing.assert_array_equal(a.preds, b.preds)
    c, _ = cross_fit_sklearn(pool, x, y, split=split, seed=5)
    assert not np.array_equal(c.preds, b.preds)


def test_recommend_selects_on_the_cross_fitted_rows(data) -> None:
    x, y, split = data
    bundle, _ = cross_fit_sklearn(_pool(), x, y, split=split, seed=0)
    rec = focal.recommend(bundle, report_on="test", combiners=("plurality",), folds=3, seed=0)
    assert rec.rows["select_on"] == "train+val"
    assert rec.rows["sizes"] == {"train": 120, "val": 60, "test": 60}


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"folds": 1}, "folds: expected an integer >= 2"),
        ({"folds": True}, "folds: expected an integer >= 2"),
        ({"fit_on": "val", "split": np.array(["train"] * 10)}, "fit_on: 0 'val' rows"),
        ({"split": np.array(["train"] * 3)}, "split: expected 10 entries"),
    ],
)
def test_bad_arguments_one_line(kwargs, needle) -> None:
    x, y = load_iris(return_X_y=True)
    x, y = x[::15], y[::15]
    with pytest.raises(BundleError, match=needle) as ei:
        cross_fit_sklearn(_two(), x, y, **kwargs)
    assert "\n" not in str(ei.value)


def test_failing_estimator_and_missing_labels_one_line() -> None:
    x, y = load_iris(return_X_y=True)
    with pytest.raises(BundleError, match="y: cross-fitting needs labels"):
        cross_fit_sklearn(_two(), x, None)
    bad = LogisticRegression(C=-1.0)
    with pytest.raises(BundleError, match=r"estimators\['bad'\]: fit failed") as ei:
        cross_fit_sklearn({"nb": GaussianNB(), "bad": bad}, x, y)
    assert "\n" not in str(ei.value)
