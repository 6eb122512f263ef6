"""Bundles from fitted scikit-learn classifiers and from JSON-lines files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression, RidgeClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from ensembles import BundleError, from_jsonl, from_sklearn, load_bundle, save_bundle


def _one_line(ei: pytest.ExceptionInfo[BundleError], *needles: str) -> str:
    msg = str(ei.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


# ------------------------------------------------------------------------------ sklearn
@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    X, y = X[order], y[order]
    train, test = slice(0, 100), slice(100, None)
    models = [
        LogisticRegression(max_iter=1000).fit(X[train], y[train]),
        KNeighborsClassifier(n_neighbors=5).fit(X[train], y[train]),
        DecisionTreeClassifier(random_state=0, max_depth=3).fit(X[train], y[train]),
        GaussianNB().fit(X[train], y[train]),
        RidgeClassifier().fit(X[train], y[train]),
    ]
    return X[test], y[test], models


def test_from_sklearn_iris(iris) -> None:
    X, y, models = iris
    b = from_sklearn(models, X, y)
    assert b.models == (
        "LogisticRegression",
        "KNeighborsClassifier",
        "DecisionTreeClassifier",
        "GaussianNB",
        "RidgeClassifier",
    )
    assert b.probs.shape == (5, 50, 3) and b.n_classes == 3
    for m, est in enumerate(models):
        if hasattr(est, "predict_proba"):
            assert np.allclose(b.probs[m], est.predict_proba(X))
            assert np.array_equal(b.preds[m], np.argmax(est.predict_proba(X), axis=1))
        else:  # RidgeClassifier: one-hot of predict
            assert np.array_equal(b.probs[m], np.eye(3)[est.predict(X)])
            assert np.array_equal(b.preds[m], est.predict(X))
    assert b.accuracies()[0] == pytest.approx(models[0].score(X, y))
    assert b.accuracies()[4] == pytest.approx(models[4].score(X, y))


def test_from_sklearn_mapping_split_task(iris) -> None:
    X, y, models = iris
    split = np.where(np.arange(len(y)) < 30, "val", "test")
    b = from_sklearn({"lr": models[0], "nb": models[3]}, X, y, split=split, task="iris")
    assert b.models == ("lr", "nb") and b.task == "iris"
    assert b.split.tolist() == split.tolist()


def test_from_sklearn_default_names_deduplicated(iris) -> None:
    X, y, _ = iris
    ests = [DecisionTreeClassifier(random_state=s, max_depth=2).fit(X, y) for s in range(3)]
    b = from_sklearn(ests + [GaussianNB().fit(X, y)], X, y)
    assert b.models == (
        "DecisionTreeClassifier",
        "DecisionTreeClassifier_2",
        "DecisionTreeClassifier_3",
        "GaussianNB",
    )
    b = from_sklearn(ests[:2], X, y, names=["t1", "t2"])
    assert b.models == ("t1", "t2")


def test_from_sklearn_digits_with_subset_classes() -> None:
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_tr, y_tr, X_te, y_te = X[:1200], y[:1200], X[1200:], y[1200:]
    keep = y_tr < 7  # this model never saw classes 7, 8, 9
    partial = GaussianNB().fit(X_tr[keep], y_tr[keep])
    ests = {
        "lr": LogisticRegression(max_iter=500).fit(X_tr, y_tr),
        "partial": partial,
        "svc": SVC().fit(X_tr, y_tr),  # no predict_proba: one-hot of predict
    }
    b = from_sklearn(ests, X_te, y_te)
    assert b.n_classes == 10 and b.probs.shape == (3, len(y_te), 10)
    assert np.allclose(b.probs[1][:, :7], partial.predict_proba(X_te))
    assert (b.probs[1][:, 7:] == 0).all()
    assert set(np.unique(b.preds[1])) <= set(range(7))
    assert np.array_equal(b.preds[2], ests["svc"].predict(X_te))
    assert b.accuracies()[0] > 0.85


def test_from_sklearn_n_classes(iris) -> None:
    X, y, models = iris
    b = from_sklearn(models[:2], X, y, n_classes=5)
    assert b.n_classes == 5 and b.probs.shape[2] == 5
    with pytest.raises(BundleError) as ei:
        from_sklearn(models[:2], X, y, n_classes=2)
    _one_line(ei, "classes_")
    with pytest.raises(BundleError) as ei:
        from_sklearn(models[:2], X, y, n_classes=0)
    _one_line(ei, "n_classes")


def test_from_sklearn_unfitted(iris) -> None:
    X, y, models = iris
    with pytest.raises(BundleError) as ei:
        from_sklearn([models[0], LogisticRegression()], X, y)
    _one_line(ei, "LogisticRegression_2", "not fitted")


def test_from_sklearn_not_a_classifier(iris) -> None:
    X, y, models = iris
    with pytest.raises(BundleError) as ei:
        from_sklearn({"lr": models[0], "reg": LinearRegression().fit(X, y)}, X, y)
    _one_line(ei, "reg")
    with pytest.raises(BundleError) as ei:
        from_sklearn({"lr": models[0], "x": object()}, X, y)
    _one_line(ei, "'x'")


def test_from_sklearn_shape_mismatches(iris) -> None:
    X, y, models = iris
    with pytest.raises(BundleError) as ei:
        from_sklearn(models[:2], X, y[:-1])
    _one_line(ei, "X", "rows")
    with pytest.raises(BundleError) as ei:
        from_sklearn(models[:2], X[:, :3], y)  # wrong number of features
    _one_line(ei, "LogisticRegression", "predict_proba")
    with pytest.raises(BundleError) as ei:
        from_sklearn(models[:2], X, y.reshape(-1, 1))
    _one_line(ei, "y")


def test_from_sklearn_bad_names_and_counts(iris) -> None:
    X, y, models = iris
    with pytest.raises(BundleError) as ei:
        from_sklearn(models[:1], X, y)
    _one_line(ei, "models", "2")
    with pytest.raises(BundleError) as ei:
        from_sklearn(models[:2], X, y, names=["a"])
    _one_line(ei, "names")
    with pytest.raises(BundleError) as ei:
        from_sklearn(models[:2], X, y, names=["a", "a"])
    _one_line(ei, "models", "duplicate")
    with pytest.raises(BundleError) as ei:
        from_sklearn({"a": models[0], "b": models[1]}, X, y, names=["x", "y"])
    _one_line(ei, "names")
    with pytest.raises(BundleError) as ei:
        from_sklearn(models[0], X, y)
    _one_line(ei, "estimators")


def test_from_sklearn_labels_must_be_indices(iris) -> None:
    X, y, models = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    with pytest.raises(BundleError) as ei:
        from_sklearn(models[:2], X, names)
    _one_line(ei, "labels")
    string_model = GaussianNB().fit(X, names)
    with pytest.raises(BundleError) as ei:
        from_sklearn([models[0], string_model], X, y)
    _one_line(ei, "GaussianNB", "classes_")


def test_from_sklearn_round_trip(iris, tmp_path: Path) -> None:
    X, y, models = iris
    b = from_sklearn(models, X, y)
    save_bundle(b, tmp_path / "iris.npz")
    again = load_bundle(tmp_path / "iris.npz", strict=True)
    assert np.array_equal(again.probs, b.probs) and again.models == b.models


# ------------------------------------------------------------------------------ JSON lines
def _jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_from_jsonl_answers_and_abstentions(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "runs.jsonl",
        [
            {"id": 11, "label": 0, "answers": {"a": 0, "b": None}, "split": "train", "group": "x"},
            {"id": 12, "label": 2, "answers": {"a": 1, "c": 2}, "split": "val", "group": "y"},
            {"id": 13, "label": 1, "answers": {"b": 1, "c": 1}, "split": "test", "group": "x"},
        ],
    )
    b = from_jsonl(path, task="demo")
    assert b.models == ("a", "b", "c")  # order of first appearance
    assert b.preds.tolist() == [[0, 1, -1], [-1, -1, 1], [-1, 2, 1]]
    assert b.n_classes == 3 and b.probs is None and b.task == "demo"
    assert b.sample_ids.tolist() == [11, 12, 13] and b.sample_ids.dtype.kind == "i"
    assert b.split.tolist() == ["train", "val", "test"]
    assert b.groups.tolist() == ["x", "y", "x"]
    assert b.accuracies().tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3])


def test_from_jsonl_probs(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "p.jsonl",
        [
            {"id": "q1", "label": 1, "answers": {"a": 1}, "probs": {"a": [0.2, 0.8], "b": [1, 0]}},
            {"id": "q2", "label": 0, "answers": {"a": None, "b": None}, "probs": {"a": [0, 0]}},
            {"id": "q3", "label": 0, "probs": {"a": [0.5, 0.5], "b": [0.1, 0.2]}},
        ],
    )
    b = from_jsonl(path)
    assert b.probs.shape == (2, 3, 2)
    assert b.preds.tolist() == [[1, -1, 0], [0, -1, 1]]
    assert b.sample_ids.tolist() == ["q1", "q2", "q3"]
    assert b.probs[1, 1].tolist() == [0.0, 0.0]  # neither answer nor scores: all-zero row
    assert b.probs[0, 2].tolist() == [0.5, 0.5]  # tie: lowest index


def test_from_jsonl_answer_without_probs_when_probs_elsewhere(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "p.jsonl",
        [
            {"label": 1, "answers": {"a": 1, "b": 0}, "probs": {"a": [0.2, 0.8], "b": [1, 0]}},
            {"label": 0, "answers": {"a": 0, "b": 0}, "probs": {"a": [1, 0]}},
        ],
    )
    with pytest.raises(BundleError) as ei:
        from_jsonl(path)
    _one_line(ei, "line 2", "probs['b']")


def test_from_jsonl_answer_disagrees_with_probs(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "p.jsonl",
        [
            {"label": 1, "answers": {"a": 1, "b": 0}, "probs": {"a": [0.2, 0.8], "b": [1, 0]}},
            {"label": 1, "answers": {"a": 0, "b": 0}, "probs": {"a": [0.5, 0.5], "b": [0, 1]}},
        ],
    )
    with pytest.raises(BundleError) as ei:
        from_jsonl(path)
    _one_line(ei, "line 2", "'b'", "disagrees")


def test_from_jsonl_gzip_and_blank_lines(tmp_path: Path) -> None:
    text = (
        '{"label": 0, "answers": {"a": 0, "b": 1}}\n\n'
        '  \n{"label": 1, "answers": {"a": 1, "b": 1}}\n'
    )
    path = tmp_path / "r.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(text)
    b = from_jsonl(path)
    assert b.preds.tolist() == [[0, 1], [1, 1]] and b.sample_ids is None


def test_from_jsonl_mixed_ids_become_strings(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "ids.jsonl",
        [
            {"id": 1, "label": 0, "answers": {"a": 0, "b": 0}},
            {"id": "x", "label": 0, "answers": {"a": 0, "b": 0}},
            {"id": [1, 2], "label": 0, "answers": {"a": 0, "b": 0}},
        ],
    )
    assert from_jsonl(path).sample_ids.tolist() == ["1", "x", "[1, 2]"]


def test_from_jsonl_round_trip(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "r.jsonl",
        [
            {"id": "a", "label": 0, "answers": {"m": 0, "n": None}, "group": "g"},
            {"id": "b", "label": 1, "answers": {"m": 0, "n": 1}, "group": "h"},
        ],
    )
    b = from_jsonl(path)
    save_bundle(b, tmp_path / "r.npz")
    again = load_bundle(tmp_path / "r.npz", strict=True)
    assert np.array_equal(again.preds, b.preds)
    assert again.sample_ids.tolist() == ["a", "b"] and again.groups.tolist() == ["g", "h"]


BAD_JSONL = {
    "bad json": (
        ['{"label": 0, "answers": {"a": 0, "b": 0}}', '{"label": 1, "answers": {'],
        ["line 2", "bad JSON"],
    ),
    "not an object": (['{"label": 0, "answers": {"a": 0, "b": 0}}', "[1, 2]"], ["line 2"]),
    "missing label": (['{"answers": {"a": 0, "b": 0}}'], ["line 1", "label"]),
    "label not int": (['{"label": "x", "answers": {"a": 0, "b": 0}}'], ["line 1", "label"]),
    "label bool": (['{"label": true, "answers": {"a": 0, "b": 0}}'], ["line 1", "label"]),
    "answer float": (['{"label": 0, "answers": {"a": 0.5, "b": 0}}'], ["line 1", "'a'"]),
    "answers not object": (['{"label": 0, "answers": [0, 1]}'], ["line 1", "answers"]),
    "no answers": (['{"label": 0}'], ["line 1", "answers"]),
    "probs nan": (['{"label": 0, "probs": {"a": [NaN, 1], "b": [0, 1]}}'], ["line 1", "'a'"]),
    "probs negative": (['{"label": 0, "probs": {"a": [-1, 1], "b": [0, 1]}}'], ["line 1"]),
    "probs not list": (['{"label": 0, "probs": {"a": 1, "b": [0, 1]}}'], ["line 1", "'a'"]),
    "probs lengths": (
        [
            '{"label": 0, "probs": {"a": [0, 1], "b": [0, 1]}}',
            '{"label": 0, "probs": {"a": [0, 1, 0], "b": [0, 1]}}',
        ],
        ["line 2", "'a'"],
    ),
    "split on some lines": (
        [
            '{"label": 0, "answers": {"a": 0, "b": 0}, "split": "train"}',
            '{"label": 0, "answers": {"a": 0, "b": 0}}',
        ],
        ["line 2", "split"],
    ),
    "duplicate id": (
        [
            '{"id": 5, "label": 0, "answers": {"a": 0, "b": 0}}',
            '{"id": 5, "label": 0, "answers": {"a": 0, "b": 0}}',
        ],
        ["line 2", "duplicate"],
    ),
    "one model": (['{"label": 0, "answers": {"a": 0}}'], ["models"]),
    "label out of range": (
        ['{"label": 3, "probs": {"a": [0, 1], "b": [0, 1]}}'],
        ["labels", "out of range"],
    ),
    "answer below -1": (['{"label": 0, "answers": {"a": -4, "b": 0}}'], ["preds"]),
    "bad split name": (
        ['{"label": 0, "answers": {"a": 0, "b": 0}, "split": "dev"}'],
        ["split", "dev"],
    ),
    "empty": ([], ["no samples"]),
}


@pytest.mark.parametrize("case", list(BAD_JSONL), ids=list(BAD_JSONL))
def test_from_jsonl_bad_input(tmp_path: Path, case: str) -> None:
    lines, needles = BAD_JSONL[case]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    with pytest.raises(BundleError) as ei:
        from_jsonl(path)
    _one_line(ei, "bad.jsonl", *needles)


def test_from_jsonl_bad_files(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as ei:
        from_jsonl(tmp_path / "absent.jsonl")
    _one_line(ei, "absent.jsonl", "no such file")
    with pytest.raises(BundleError) as ei:
        from_jsonl(tmp_path)
    _one_line(ei, "directory")
    (tmp_path / "latin.jsonl").write_bytes(b'{"label": 0, "answers": {"\xe9": 0}}\n')
    with pytest.raises(BundleError) as ei:
        from_jsonl(tmp_path / "latin.jsonl")
    _one_line(ei, "UTF-8")
    (tmp_path / "fake.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(BundleError) as ei:
        from_jsonl(tmp_path / "fake.jsonl.gz")
    _one_line(ei, "fake.jsonl.gz")
