"""Open-ended (quality) bundles, unlabeled bundles, the short repr and from_sklearn options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ensembles
import focal
from ensembles import Bundle, BundleError, load_bundle, load_tasks, save_bundle, save_tasks

LABEL_LEVEL = {"cohen_kappa", "fleiss_kappa", "focal_cohen_kappa", "focal_fleiss_kappa"}


def _one_line(excinfo, *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


def _quality_from_errors(rng: np.random.Generator, errors: np.ndarray, thr: float) -> np.ndarray:
    """Random quality values on the right side of ``thr``; some wrong ones are NaN."""
    right = rng.uniform(thr, 1.0, errors.shape)
    wrong = rng.uniform(0.0, thr, errors.shape) * (1 - 1e-9)
    q = np.where(errors == 1, wrong, right)
    q[(errors == 1) & (rng.random(errors.shape) < 0.2)] = np.nan
    return q


# ------------------------------------------------------------------------ open-ended bundles
@st.composite
def quality_arrays(draw):
    m = draw(st.integers(2, 5))
    n = draw(st.integers(1, 12))
    values = st.one_of(st.floats(0.0, 1.0), st.just(float("nan")), st.sampled_from([0.0, 0.5, 1.0]))
    q = np.array(draw(st.lists(values, min_size=m * n, max_size=m * n)), dtype=float)
    q = q.reshape(m, n)
    if np.isnan(q).all():
        q[0, 0] = 0.25
    thr = draw(st.sampled_from([0.5, 1.0, 0.25, 1e-3]))
    return q, thr


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(quality_arrays())
def test_quality_bundle_definitions(tmp_path_factory, arrays) -> None:
    q, thr = arrays
    m, n = q.shape
    b = Bundle.create(models=[f"m{i}" for i in range(m)], quality=q, threshold=thr)
    # reference written from the definitions, one element at a time
    ref = np.zeros((m, n), dtype=int)
    for i in range(m):
        for j in range(n):
            ref[i, j] = 0 if (not np.isnan(q[i, j]) and q[i, j] >= thr) else 1
    assert np.array_equal(b.errors, ref)
    assert np.allclose(b.accuracies(), 1 - ref.mean(axis=1))
    best = [max(0.0 if np.isnan(v) else v for v in q[:, j]) for j in range(n)]
    assert b.oracle_accuracy() == pytest.approx(float(np.mean(best)))
    assert b.is_open_ended and not b.has_labels and b.probs is None and b.n_classes == 2
    # save / load round trip, NaN preserved
    path = tmp_path_factory.mktemp("q") / "q.npz"
    save_bundle(b, path)
    back = load_bundle(path, strict=True)
    assert np.array_equal(back.quality, b.quality, equal_nan=True)
    assert back.threshold == thr and np.array_equal(back.errors, b.errors)
    # subsetting keeps quality and errors consistent
    keep = np.arange(n)[::2]
    sub = b.select_samples(keep)
    assert np.array_equal(sub.quality, q[:, keep], equal_nan=True)
    assert np.array_equal(sub.errors, ref[:, keep])
    rev = b.select_models(list(b.models)[::-1])
    assert np.array_equal(rev.quality, q[::-1], equal_nan=True)
    assert np.array_equal(rev.errors, ref[::-1])


@pytest.mark.parametrize("seed", range(4))
def test_focal_scores_of_quality_bundle_equal_labelled(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m, n, c = 6, 40, 4
    labels = rng.integers(0, c, n)
    preds = np.where(rng.random((m, n)) < 0.6, labels, rng.integers(-1, c, (m, n)))
    labelled = Bundle.create(models=list("abcdef"), labels=labels, preds=preds, n_classes=c)
    thr = [0.5, 0.8, 1.0, 0.3][seed]
    quality = Bundle.create(
        models=list("abcdef"),
        quality=_quality_from_errors(rng, labelled.errors, thr),
        threshold=thr,
    )
    binary = Bundle.create(
        models=list("abcdef"), labels=np.zeros(n, int), preds=labelled.errors.astype(int)
    )
    assert np.array_equal(quality.errors, labelled.errors)
    masks = np.array([[int(b) for b in f"{k:06b}"] for k in range(64) if bin(k).count("1") >= 2])
    for metric in focal.METRICS:
        got = focal.score_teams(quality, masks, metric=metric)
        # every metric equals that of the binary correct/wrong task with the same errors
        assert np.allclose(got, focal.score_teams(binary, masks, metric=metric), equal_nan=True)
        if metric not in LABEL_LEVEL:  # error-matrix metrics ignore which wrong class
            want = focal.score_teams(labelled, masks, metric=metric)
            assert np.allclose(got, want, equal_nan=True), metric


BAD_QUALITY = {
    "above one": ({"quality": [[0.2, 1.5], [0.0, 1.0]]}, "quality", "outside [0, 1]"),
    "negative": ({"quality": [[0.2, -0.1], [0.0, 1.0]]}, "quality", "outside [0, 1]"),
    "inf": ({"quality": [[0.2, np.inf], [0.0, 1.0]]}, "quality", "inf"),
    "all NaN": ({"quality": [[np.nan, np.nan], [np.nan, np.nan]]}, "quality", "NaN"),
    "wrong M": ({"quality": [[0.2, 0.3, 0.4]]}, "quality", "shape"),
    "1-D": ({"quality": [0.2, 0.3]}, "quality", "shape"),
    "strings": ({"quality": [["a", "b"], ["c", "d"]]}, "quality", "dtype"),
    "threshold zero": ({"threshold": 0.0}, "threshold", "outside"),
    "threshold big": ({"threshold": 1.5}, "threshold", "outside"),
    "threshold vector": ({"threshold": [0.5, 0.5]}, "threshold", "one number"),
    "with labels": ({"labels": [0, 1]}, "labels", "open-ended"),
    "with preds": ({"preds": [[0, 1], [1, 1]]}, "preds", "open-ended"),
}


@pytest.mark.parametrize("case", list(BAD_QUALITY))
def test_quality_validation_one_line(case: str, tmp_path: Path) -> None:
    change, key, text = BAD_QUALITY[case]
    kw = {"models": ["a", "b"], "quality": [[0.2, 1.0], [0.0, np.nan]]}
    kw.update(change)
    with pytest.raises(BundleError) as ei:
        Bundle.create(**kw)
    _one_line(ei, key, text)
    # the same through a file: the message starts with the path and names the key
    arrays = {k: np.asarray(v) for k, v in kw.items()}
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(BundleError) as ei:
        load_bundle(path)
    assert _one_line(ei, key, text).startswith(str(path))


def test_threshold_without_quality_refused() -> None:
    with pytest.raises(BundleError) as ei:
        Bundle.create(models=["a", "b"], labels=[0], preds=[[0], [1]], threshold=0.5)
    _one_line(ei, "threshold")


def test_quality_multi_task_round_trip(tmp_path: Path) -> None:
    q = Bundle.create(
        models=["a", "b", "c"],
        quality=[[1.0, 0.5, np.nan], [0.0, 0.25, 1.0], [0.5, 0.5, 0.5]],
        threshold=0.75,
        split=["train", "val", "test"],
        sample_ids=["x", "y", "z"],
    )
    lab = Bundle.create(models=["a", "b", "c"], labels=[0, 1], preds=[[0, 1], [1, 1], [0, 0]])
    path = tmp_path / "multi.npz"
    save_tasks({"open": q, "closed": lab}, path)
    back = load_tasks(path, strict=True)
    assert np.array_equal(back["open"].quality, q.quality, equal_nan=True)
    assert back["open"].threshold == 0.75
    assert back["open"].sample_ids.tolist() == ["x", "y", "z"]
    assert back["open"].errors.tolist() == [[0, 1, 1], [1, 1, 0], [1, 1, 1]]
    assert back["closed"].quality is None and back["closed"].labels.tolist() == [0, 1]
    with np.load(path) as z:
        assert "open/labels" not in z.files and "open/preds" not in z.files


def test_voting_refuses_quality_bundle() -> None:
    q = Bundle.create(models=["a", "b", "c"], quality=[[1, 0], [0, 1], [1, 1]])
    for call in (
        lambda: ensembles.combine(q, ["a", "b"]),
        lambda: ensembles.team_accuracy(q, [("a", "b")]),
    ):
        with pytest.raises(ensembles.util.InputError) as ei:
            call()
        _one_line(ei, "needs labels", "router")


def test_quality_bundle_splits_and_search() -> None:
    rng = np.random.default_rng(0)
    q = rng.random((5, 60))
    split = np.array(["train", "val", "test"] * 20)
    b = Bundle.create(models=list("abcde"), quality=q, split=split, sample_ids=np.arange(60))
    val = b.select_split("val")
    assert val.sample_ids.tolist() == list(range(1, 60, 3))
    assert np.array_equal(val.quality, q[:, 1::3])
    scores = focal.score_teams(val, [("a", "b"), ("a", "b", "c")])
    assert np.isfinite(scores).all()


# ------------------------------------------------------------------------ unlabeled bundles
def test_unlabeled_bundle(tmp_path: Path) -> None:
    probs = np.array([[[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], [[0.3, 0.7], [0.0, 0.0], [0.6, 0.4]]])
    b = Bundle.create(models=["a", "b"], probs=probs, sample_ids=["p", "q", "r"])
    assert b.labels is None and not b.has_labels
    assert b.preds.tolist() == [[0, 1, 0], [1, -1, 0]]
    assert ensembles.combine(b, ["a", "b"], combiner="soft").tolist() == [0, 1, 0]
    for call, what in (
        (lambda: b.errors, "error matrix"),
        (b.accuracies, "error matrix"),
        (b.oracle_accuracy, "error matrix"),
        (lambda: ensembles.team_accuracy(b, [("a", "b")]), "team accuracy"),
    ):
        with pytest.raises(BundleError) as ei:
            call()
        _one_line(ei, "labels", what)
    path = tmp_path / "u.npz"
    save_bundle(b, path)
    back = load_bundle(path, strict=True)
    assert back.labels is None and np.array_equal(back.probs, probs)
    assert back.sample_ids.tolist() == ["p", "q", "r"]
    with np.load(path) as z:
        assert "labels" not in z.files


def test_unlabeled_preds_only_and_split_ids() -> None:
    b = Bundle.create(
        models=["a", "b"],
        preds=[[0, 2, 1, 1], [1, 1, -1, 2]],
        split=["train", "test", "test", "val"],
        sample_ids=[10, 11, 12, 13],
    )
    assert b.n_classes == 3 and b.n_samples == 4
    assert b.select_split("test").sample_ids.tolist() == [11, 12]
    assert b.with_split(["test"] * 4).select_split("test").sample_ids.tolist() == [10, 11, 12, 13]


# ------------------------------------------------------------------------ repr
def test_short_repr() -> None:
    rng = np.random.default_rng(0)
    n = 1797
    split = np.array(["train"] * 899 + ["val"] * 449 + ["test"] * 449)
    probs = rng.random((8, n, 10))
    b = Bundle.create(
        models=[f"m{i}" for i in range(8)],
        labels=rng.integers(0, 10, n),
        probs=probs,
        split=split,
        task="x",
    )
    text = repr(b)
    assert text == (
        "Bundle(task='x', models=8, samples=1,797 [train 899 / val 449 / test 449], "
        "classes=10, probs, preds)"
    )
    q = Bundle.create(models=["a", "b"], quality=[[1.0, np.nan], [0.0, 0.5]])
    assert (
        repr(q) == "Bundle(models=2, samples=2, open-ended: quality (threshold 0.5, 1 not judged))"
    )
    u = Bundle.create(models=["a", "b"], preds=[[0], [1]], sample_ids=["s"])
    assert repr(u) == "Bundle(models=2, samples=1, classes=2, preds, unlabeled, sample_ids)"


# ------------------------------------------------------------------------ from_sklearn
@pytest.fixture(scope="module")
def svc_pool():
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    X, y = load_breast_cancer(return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(y))
    tr, te = idx[:300], idx[300:]
    svc = make_pipeline(StandardScaler(), SVC(probability=True, C=0.05, random_state=0))
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    models = {"svc": svc.fit(X[tr], y[tr]), "lr": lr.fit(X[tr], y[tr])}
    return X[te], y[te], models


@pytest.mark.filterwarnings("ignore:The `probability` parameter:FutureWarning")
def test_from_sklearn_prediction_modes(svc_pool, tmp_path: Path) -> None:
    X, y, models = svc_pool
    svc = models["svc"]
    own = svc.predict(X)
    argmax = np.argmax(svc.predict_proba(X), axis=1)
    assert (own != argmax).any(), "fixture should make SVC's predict and argmax(proba) disagree"
    b = ensembles.from_sklearn(models, X, y)
    assert np.array_equal(b.preds[0], own)
    assert b.accuracies()[0] == pytest.approx(svc.score(X, y))
    a = ensembles.from_sklearn(models, X, y, prediction="argmax")
    assert np.array_equal(a.preds[0], argmax)
    assert np.array_equal(a.probs, b.probs)
    path = tmp_path / "svc.npz"
    save_bundle(b, path)
    assert np.array_equal(load_bundle(path).preds, b.preds)  # stored: differs from argmax
    with pytest.raises(BundleError) as ei:
        ensembles.from_sklearn(models, X, y, prediction="vote")
    _one_line(ei, "prediction")


@pytest.mark.filterwarnings("ignore:The `probability` parameter:FutureWarning")
def test_from_sklearn_without_labels_with_ids(svc_pool) -> None:
    X, y, models = svc_pool
    ids = [f"row{i}" for i in range(len(X))]
    b = ensembles.from_sklearn(models, X, sample_ids=ids)
    assert b.labels is None and b.sample_ids.tolist() == ids
    assert b.n_classes == 2 and b.probs.shape == (2, len(X), 2)
    with pytest.raises(BundleError) as ei:
        ensembles.from_sklearn(models, X, sample_ids=ids[:-1])
    _one_line(ei, "sample_ids")
