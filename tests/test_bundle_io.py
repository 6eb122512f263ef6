"""Loading and saving bundles (CONTRACT §1): round trips, aliases, and every bad input refused."""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import ensembles
from ensembles import (
    Bundle,
    BundleError,
    list_tasks,
    load_bundle,
    load_tasks,
    save_bundle,
    save_tasks,
)

BBH = "bbh_5llm_marl_focal.npz"
MMLU = "mmlu_pro_29llm.npz"
SHA256 = {
    BBH: "1d4e6fcab9aba6692aaa114f03fa117a0ea20b542b804e635523247f0fd5257c",
    MMLU: "979b1229f44c5aad38be0fbd4a552b1cd05b7980ade7a155208929831d8fe790",
}


# ------------------------------------------------------------------------------ helpers
def _probs(m: int = 3, n: int = 6, c: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.random((m, n, c))
    p[0, 0] = 0.0  # one "no answer" row
    return p


def _bundle(**over) -> Bundle:
    kw = dict(
        models=["m0", "m1", "m2"],
        labels=[0, 1, 2, 0, 1, 2],
        probs=_probs(),
        split=["train", "train", "val", "val", "test", "test"],
        sample_ids=np.arange(10, 16),
        groups=["g1", "g1", "g2", "g2", "g3", "g3"],
    )
    kw.update(over)
    return Bundle.create(**kw)


def _write(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _valid_arrays() -> dict[str, np.ndarray]:
    return {
        "models": np.array(["a", "b", "c"]),
        "labels": np.array([0, 1, 2, 1]),
        "probs": np.array(
            [
                [[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]],
                [[0.1, 0.8, 0.1], [0.0, 0.0, 0.0], [0.3, 0.3, 0.4], [0.2, 0.6, 0.2]],
                [[0.5, 0.5, 0.0], [0.1, 0.8, 0.1], [0.0, 0.2, 0.8], [0.9, 0.1, 0.0]],
            ]
        ),
    }


def _assert_same(a: Bundle, b: Bundle) -> None:
    assert a.models == b.models
    assert a.n_classes == b.n_classes
    for name in ("labels", "preds", "probs", "split", "sample_ids", "groups"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            assert x is None and y is None, name
        else:
            assert np.array_equal(x, y), name


def _one_line_error(excinfo: pytest.ExceptionInfo[BundleError], *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


def _checked_shared(shared_data, name: str) -> Path:
    path = shared_data(name)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256[name]:
        pytest.skip(f"{path} is a different version (sha256 {digest[:12]}...)")
    return path


# ------------------------------------------------------------------------------ round trips
def test_round_trip_single_with_probs(tmp_path: Path) -> None:
    b = _bundle()
    path = tmp_path / "b.npz"
    save_bundle(b, path)
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["groups", "labels", "models", "probs", "sample_ids", "split"]
        assert z["models"].dtype.kind == "U" and z["split"].dtype.kind == "U"
    loaded = load_bundle(path, strict=True)
    _assert_same(b, loaded)
    assert loaded.task is None


def test_round_trip_preds_only(tmp_path: Path) -> None:
    b = Bundle.create(models=["x", "y"], labels=[0, 1, 3], preds=[[0, -1, 3], [1, 1, 2]])
    path = tmp_path / "p.npz"
    save_bundle(b, path)
    with np.load(path) as z:
        assert sorted(z.files) == ["labels", "models", "preds"]
    _assert_same(b, load_bundle(path, strict=True))


def test_round_trip_object_ids_become_strings(tmp_path: Path) -> None:
    b = _bundle(sample_ids=np.array([1, "a", 2.5, "b", 3, "c"], dtype=object))
    save_bundle(b, tmp_path / "o.npz")
    with np.load(tmp_path / "o.npz", allow_pickle=False) as z:
        assert z["sample_ids"].dtype.kind == "U"
    loaded = load_bundle(tmp_path / "o.npz")
    assert loaded.sample_ids.tolist() == ["1", "a", "2.5", "b", "3", "c"]


def test_save_is_atomic_and_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "b.npz"
    save_bundle(_bundle(), path)
    b2 = _bundle(labels=[2, 2, 2, 2, 2, 2])
    save_bundle(b2, path)
    assert os.listdir(tmp_path) == ["b.npz"]  # no temporary file left behind
    _assert_same(b2, load_bundle(path))


def test_save_exact_path_without_suffix(tmp_path: Path) -> None:
    save_bundle(_bundle(), tmp_path / "bundle.data")
    assert (tmp_path / "bundle.data").is_file()
    _assert_same(_bundle(), load_bundle(tmp_path / "bundle.data"))


def test_save_to_missing_directory_is_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as ei:
        save_bundle(_bundle(), tmp_path / "nope" / "b.npz")
    _one_line_error(ei, "nope")


def test_save_rejects_non_bundle(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        save_bundle({"models": []}, tmp_path / "x.npz")  # type: ignore[arg-type]


def test_round_trip_multi_task_shared_models(tmp_path: Path) -> None:
    a = _bundle()
    b = Bundle.create(models=["m0", "m1", "m2"], labels=[1, 0], preds=[[1, 0], [0, 0], [-1, 1]])
    path = tmp_path / "multi.npz"
    save_tasks({"first": a, "second": b}, path)
    with np.load(path) as z:
        assert "models" in z.files and "first/models" not in z.files
        assert z["tasks"].tolist() == ["first", "second"]
    assert list_tasks(path) == ["first", "second"]
    tasks = load_tasks(path, strict=True)
    assert list(tasks) == ["first", "second"]
    _assert_same(a, tasks["first"])
    _assert_same(b, tasks["second"])
    assert tasks["second"].task == "second"
    _assert_same(b, load_bundle(path, task="second", strict=True))


def test_round_trip_multi_task_own_models(tmp_path: Path) -> None:
    a = _bundle()
    b = Bundle.create(models=["p", "q"], labels=[1, 0], preds=[[1, 0], [0, 0]])
    path = tmp_path / "multi.npz"
    save_tasks({"t/a": a, "t/b": b}, path)  # '/' inside task names is fine
    with np.load(path) as z:
        assert "models" not in z.files and "t/a/models" in z.files
    tasks = load_tasks(path)
    _assert_same(a, tasks["t/a"])
    _assert_same(b, tasks["t/b"])


def test_save_tasks_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as ei:
        save_tasks({}, tmp_path / "x.npz")
    _one_line_error(ei, "tasks")
    with pytest.raises(BundleError) as ei:
        save_tasks({"": _bundle()}, tmp_path / "x.npz")
    _one_line_error(ei, "tasks")
    with pytest.raises(TypeError):
        save_tasks({"a": 3}, tmp_path / "x.npz")  # type: ignore[dict-item]
    assert not (tmp_path / "x.npz").exists()


def test_single_task_file_in_multi_task_api(tmp_path: Path) -> None:
    path = tmp_path / "solo.npz"
    save_bundle(_bundle(), path)
    assert list_tasks(path) == []
    tasks = load_tasks(path)
    assert list(tasks) == ["solo"] and tasks["solo"].task == "solo"
    _assert_same(_bundle(), load_bundle(path, task="solo"))
    with pytest.raises(BundleError) as ei:
        load_bundle(path, task="other")
    _one_line_error(ei, "other")


def test_public_names() -> None:
    for name in ("load_bundle", "save_bundle", "list_tasks", "load_tasks", "save_tasks"):
        assert callable(getattr(ensembles, name))


# ------------------------------------------------------------------------------ aliases
def test_aliases_non_strict(tmp_path: Path) -> None:
    v = _valid_arrays()
    path = _write(
        tmp_path / "alias.npz",
        models=v["models"],
        labels=v["labels"],
        scores=v["probs"].astype(np.float32),
        is_train=np.array([True, True, False, False]),
        question_id=np.array([7, 8, 9, 10], dtype=np.int32),
        category=np.array(["x", "y", "x", "y"]),
        n_options=np.array([3, 3, 3, 3], dtype=np.int8),
        label_ok=np.array(True),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known aliases and side info give no warning
        b = load_bundle(path)
    assert b.split.tolist() == ["train", "train", "test", "test"]
    assert b.sample_ids.tolist() == [7, 8, 9, 10]
    assert b.groups.tolist() == ["x", "y", "x", "y"]
    assert np.allclose(b.probs, v["probs"].astype(np.float32))
    aliases = {"scores", "is_train", "question_id", "category", "n_options", "label_ok"}
    seen = set()
    for _ in aliases:
        with pytest.raises(BundleError) as ei:
            load_bundle(path, strict=True)
        _one_line_error(ei, "strict")
        # remove the alias that was reported and check the next one is reported too
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        reported = str(ei.value).split(": ")[1]
        assert reported in arrays
        seen.add(reported)
        if reported == "scores":
            arrays["probs"] = arrays.pop("scores")
        elif reported == "is_train":
            arrays["split"] = np.where(arrays.pop("is_train"), "train", "test")
        elif reported == "question_id":
            arrays["sample_ids"] = arrays.pop("question_id")
        elif reported == "category":
            arrays["groups"] = arrays.pop("category")
        else:
            arrays.pop(reported)
        path.unlink()
        _write(path, **arrays)
    assert seen == aliases
    load_bundle(path, strict=True)  # everything renamed: strict now accepts it


def test_missing_pred_minus_two_maps_to_abstain(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "m.npz",
        models=np.array(["a", "b"]),
        labels=np.array([0, 1, 1], dtype=np.int8),
        preds=np.array([[0, -2, 1], [-1, 1, -2]], dtype=np.int8),
    )
    b = load_bundle(path)
    assert b.preds.tolist() == [[0, -1, 1], [-1, 1, -1]]
    assert b.accuracies().tolist() == pytest.approx([2 / 3, 1 / 3])
    with pytest.raises(BundleError) as ei:
        load_bundle(path, strict=True)
    _one_line_error(ei, "preds", "-2")


def test_is_train_must_be_boolean(tmp_path: Path) -> None:
    v = _valid_arrays()
    path = _write(tmp_path / "i.npz", **v, is_train=np.array([1, 0, 1, 0]))
    with pytest.raises(BundleError) as ei:
        load_bundle(path)
    _one_line_error(ei, "is_train", "bool")


def test_alias_and_canonical_both_present(tmp_path: Path) -> None:
    v = _valid_arrays()
    path = _write(tmp_path / "both.npz", **v, scores=v["probs"])
    with pytest.raises(BundleError) as ei:
        load_bundle(path)
    _one_line_error(ei, "scores", "probs")


def test_bad_alias_value_names_the_stored_key(tmp_path: Path) -> None:
    v = _valid_arrays()
    scores = v.pop("probs")
    scores[1, 2, 0] = np.nan
    path = _write(tmp_path / "nan.npz", **v, scores=scores)
    with pytest.raises(BundleError) as ei:
        load_bundle(path)
    _one_line_error(ei, "scores", "NaN")


def test_unknown_key_warns_non_strict_and_fails_strict(tmp_path: Path) -> None:
    path = _write(tmp_path / "u.npz", **_valid_arrays(), extra=np.arange(3))
    with pytest.warns(UserWarning, match="extra"):
        b = load_bundle(path)
    assert b.n_models == 3
    with pytest.raises(BundleError) as ei:
        load_bundle(path, strict=True)
    _one_line_error(ei, "extra", "strict")


def test_no_warning_when_loading_fails(tmp_path: Path) -> None:
    v = _valid_arrays()
    v["labels"] = np.array([0, 1, 9, 1])
    path = _write(tmp_path / "u.npz", **v, extra=np.arange(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(BundleError) as ei:
            load_bundle(path)
    _one_line_error(ei, "labels")


# ------------------------------------------------------------------------------ bad content
def _mutate(change: dict) -> dict[str, np.ndarray]:
    v = _valid_arrays()
    for k, val in change.items():
        if val is None:
            v.pop(k)
        else:
            v[k] = val
    return v


def _nan_probs() -> np.ndarray:
    p = _valid_arrays()["probs"]
    p[0, 1, 1] = np.nan
    return p


def _inf_probs() -> np.ndarray:
    p = _valid_arrays()["probs"]
    p[2, 3, 0] = np.inf
    return p


def _neg_probs() -> np.ndarray:
    p = _valid_arrays()["probs"]
    p[1, 0, 2] = -0.1
    return p


BAD_CONTENT = {
    "labels 2-D": ({"labels": np.array([[0, 1, 2, 1]])}, "labels"),
    "labels out of range": ({"labels": np.array([0, 1, 3, 1])}, "labels"),
    "labels negative": ({"labels": np.array([0, -1, 2, 1])}, "labels"),
    "labels float": ({"labels": np.array([0.5, 1, 2, 1])}, "labels"),
    "labels missing, no outputs": ({"labels": None, "probs": None}, "probs"),
    "probs wrong N": ({"probs": np.ones((3, 5, 3))}, "probs"),
    "probs wrong M": ({"probs": np.ones((2, 4, 3))}, "probs"),
    "probs 2-D": ({"probs": np.ones((3, 4))}, "probs"),
    "probs NaN": ({"probs": _nan_probs()}, "probs"),
    "probs inf": ({"probs": _inf_probs()}, "probs"),
    "probs negative": ({"probs": _neg_probs()}, "probs"),
    "probs strings": ({"probs": np.full((3, 4, 3), "x")}, "probs"),
    "no probs nor preds": ({"probs": None}, "probs"),
    "duplicate models": ({"models": np.array(["a", "b", "a"])}, "models"),
    "one model": (
        {"models": np.array(["a"]), "probs": _valid_arrays()["probs"][:1]},
        "models",
    ),
    "models numeric": ({"models": np.array([1, 2, 3])}, "models"),
    "models missing": ({"models": None}, "models"),
    "models empty name": ({"models": np.array(["a", "", "c"])}, "models"),
    "preds out of range with probs": (
        {"preds": np.array([[0, 1, 2, 3], [1, -1, 2, 1], [1, 1, 2, 0]])},
        "preds",
    ),
    "preds wrong shape": ({"preds": np.zeros((3, 3), dtype=int)}, "preds"),
    "preds out of range": (
        {"probs": None, "preds": np.array([[0, 1, 2, 1], [0, 1, 2, 1], [0, 1, 2, -3]])},
        "preds",
    ),
    "split unknown name": ({"split": np.array(["train", "dev", "test", "test"])}, "split"),
    "split wrong length": ({"split": np.array(["train", "test"])}, "split"),
    "split numeric": ({"split": np.array([0, 1, 0, 1])}, "split"),
    "sample_ids wrong length": ({"sample_ids": np.arange(3)}, "sample_ids"),
    "groups 2-D": ({"groups": np.array([["a"] * 4])}, "groups"),
}


@pytest.mark.parametrize("case", list(BAD_CONTENT), ids=list(BAD_CONTENT))
@pytest.mark.parametrize("strict", [False, True])
def test_bad_content_refused(tmp_path: Path, case: str, strict: bool) -> None:
    change, key = BAD_CONTENT[case]
    path = _write(tmp_path / "bad.npz", **_mutate(change))
    with pytest.raises(BundleError) as ei:
        load_bundle(path, strict=strict)
    msg = _one_line_error(ei, key, str(path))
    assert msg.index(str(path)) == 0


@pytest.mark.parametrize("case", ["probs NaN", "duplicate models", "labels out of range"])
def test_bad_content_in_multi_task_names_task_key(tmp_path: Path, case: str) -> None:
    change, key = BAD_CONTENT[case]
    v = _mutate(change)
    good = _valid_arrays()
    arrays = {"tasks": np.array(["good", "bad"])}
    arrays.update({f"good/{k}": a for k, a in good.items()})
    arrays.update({f"bad/{k}": a for k, a in v.items()})
    path = _write(tmp_path / "multi.npz", **arrays)
    load_bundle(path, task="good")
    with pytest.raises(BundleError) as ei:
        load_bundle(path, task="bad")
    _one_line_error(ei, f"bad/{key}")
    with pytest.raises(BundleError):
        load_tasks(path)


# ------------------------------------------------------------------------------ bad files
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as ei:
        load_bundle(tmp_path / "absent.npz")
    _one_line_error(ei, "absent.npz", "no such file")
    with pytest.raises(BundleError):
        list_tasks(tmp_path / "absent.npz")
    with pytest.raises(BundleError):
        load_tasks(tmp_path / "absent.npz")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as ei:
        load_bundle(tmp_path)
    _one_line_error(ei, "directory")


def test_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "text.npz"
    path.write_text("models,labels\na,0\n")
    with pytest.raises(BundleError) as ei:
        load_bundle(path)
    _one_line_error(ei, "text.npz")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    with pytest.raises(BundleError) as ei:
        load_bundle(path)
    _one_line_error(ei, "empty.npz")


def test_single_npy_array(tmp_path: Path) -> None:
    path = tmp_path / "arr.npy"
    np.save(path, np.arange(3))
    with pytest.raises(BundleError) as ei:
        load_bundle(path)
    _one_line_error(ei, "npz")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9, 0.99])
def test_truncated_npz(tmp_path: Path, keep: float) -> None:
    src = tmp_path / "full.npz"
    save_bundle(_bundle(), src)
    data = src.read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(BundleError) as ei:
        load_bundle(path)
    _one_line_error(ei, "cut.npz")


def test_corrupt_member(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.npz"
    np.savez(path, **_valid_arrays())  # stored uncompressed: flip bytes inside the probs data
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("probs.npy")
    start = info.header_offset + 30 + len(info.filename) + 200
    for i in range(start, start + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError) as ei:
        load_bundle(path)
    _one_line_error(ei, "probs")


def test_bad_npy_header(tmp_path: Path) -> None:
    path = tmp_path / "hdr.npz"
    v = _valid_arrays()
    with zipfile.ZipFile(path, "w") as zf:
        for k, a in v.items():
            if k == "labels":
                zf.writestr("labels.npy", b"\x93NUMPY garbage")
            else:
                np.save(tmp_path / "tmp.npy", a)
                zf.write(tmp_path / "tmp.npy", f"{k}.npy")
    with pytest.raises(BundleError) as ei:
        load_bundle(path)
    _one_line_error(ei, "labels")


def test_non_npy_member(tmp_path: Path) -> None:
    path = tmp_path / "member.npz"
    v = _valid_arrays()
    with zipfile.ZipFile(path, "w") as zf:
        for k, a in v.items():
            np.save(tmp_path / "tmp.npy", a)
            zf.write(tmp_path / "tmp.npy", "probs.bin" if k == "probs" else f"{k}.npy")
    with pytest.raises(BundleError) as ei:
        load_bundle(path, strict=True)
    _one_line_error(ei, "probs.bin")


def test_pickled_object_array(tmp_path: Path) -> None:
    v = _valid_arrays()
    v["models"] = np.array(["a", "b", "c"], dtype=object)
    path = _write(tmp_path / "obj.npz", **v)
    with pytest.raises(BundleError) as ei:
        load_bundle(path)
    _one_line_error(ei, "models", "pickle")


def test_pickled_object_groups(tmp_path: Path) -> None:
    v = _valid_arrays()
    v["groups"] = np.array([{"a": 1}, 2, "x", None], dtype=object)
    path = _write(tmp_path / "obj.npz", **v)
    with pytest.raises(BundleError) as ei:
        load_bundle(path)
    _one_line_error(ei, "groups", "pickle")


def test_bytes_strings_are_decoded(tmp_path: Path) -> None:
    v = _valid_arrays()
    v["models"] = np.array([b"a", b"b", b"c"])
    v["split"] = np.array([b"train", b"val", b"test", b"test"])
    b = load_bundle(_write(tmp_path / "bytes.npz", **v))
    assert b.models == ("a", "b", "c")
    assert b.split.tolist() == ["train", "val", "test", "test"]


def test_path_of_wrong_type() -> None:
    with pytest.raises(BundleError):
        load_bundle(3.5)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ multi-task
def _multi(tmp_path: Path, tasks=("t1", "t2"), shared_models=True, **extra) -> Path:
    arrays: dict[str, np.ndarray] = {"tasks": np.array(list(tasks))}
    v = _valid_arrays()
    if shared_models:
        arrays["models"] = v["models"]
    for t in tasks:
        arrays[f"{t}/labels"] = v["labels"]
        arrays[f"{t}/scores"] = v["probs"]
        arrays[f"{t}/is_train"] = np.array([True, True, True, False])
        arrays[f"{t}/label_ok"] = np.array(True)
        if not shared_models:
            arrays[f"{t}/models"] = v["models"]
    arrays.update(extra)
    return _write(tmp_path / "multi.npz", **arrays)


def test_multi_task_requires_task(tmp_path: Path) -> None:
    path = _multi(tmp_path)
    with pytest.raises(BundleError) as ei:
        load_bundle(path)
    _one_line_error(ei, "tasks", "t1", "t2")
    with pytest.raises(BundleError) as ei:
        load_bundle(path, task="t3")
    _one_line_error(ei, "t3", "t1, t2")
    b = load_bundle(path, task="t2")
    assert b.task == "t2" and b.models == ("a", "b", "c")
    assert b.split.tolist() == ["train", "train", "train", "test"]


def test_multi_task_with_one_task_needs_no_name(tmp_path: Path) -> None:
    b = load_bundle(_multi(tmp_path, tasks=("only",)))
    assert b.task == "only"


def test_multi_task_per_task_models(tmp_path: Path) -> None:
    path = _multi(tmp_path, shared_models=False)
    assert load_bundle(path, task="t1").models == ("a", "b", "c")


def test_multi_task_missing_models(tmp_path: Path) -> None:
    arrays = {"tasks": np.array(["t"]), "t/labels": np.array([0, 1])}
    arrays["t/preds"] = np.array([[0, 1], [1, 1]])
    path = _write(tmp_path / "nm.npz", **arrays)
    with pytest.raises(BundleError) as ei:
        load_bundle(path)
    _one_line_error(ei, "t/models")


def test_multi_task_bad_shared_models(tmp_path: Path) -> None:
    path = _multi(tmp_path, models=np.array(["a", "a", "c"]))
    with pytest.raises(BundleError) as ei:
        load_bundle(path, task="t1")
    _one_line_error(ei, "models", "duplicate")


@pytest.mark.parametrize(
    "tasks, needle",
    [
        (np.array(["a", "a"]), "duplicate"),
        (np.array([], dtype=str), "no tasks"),
        (np.array([1, 2]), "strings"),
        (np.array([["a"]]), "1-D"),
        (np.array(["a", ""]), "empty"),
    ],
)
def test_malformed_tasks_key(tmp_path: Path, tasks: np.ndarray, needle: str) -> None:
    path = _write(tmp_path / "t.npz", tasks=tasks)
    for call in (list_tasks, load_tasks, load_bundle):
        with pytest.raises(BundleError) as ei:
            call(path)
        _one_line_error(ei, "tasks", needle)


def test_multi_task_strict(tmp_path: Path) -> None:
    path = _multi(tmp_path)
    with pytest.raises(BundleError) as ei:
        load_bundle(path, task="t2", strict=True)
    _one_line_error(ei, "t2/", "strict")  # the requested task's keys are reported first


def test_multi_task_orphan_keys(tmp_path: Path) -> None:
    path = _multi(tmp_path, **{"zz/labels": np.arange(3), "stray": np.arange(2)})
    with pytest.warns(UserWarning, match="stray"):
        load_bundle(path, task="t1")
    with pytest.raises(BundleError) as ei:
        load_bundle(path, task="t1", strict=True)
    _one_line_error(ei, "strict")


def test_load_tasks_order(tmp_path: Path) -> None:
    path = _multi(tmp_path, tasks=("zeta", "alpha", "mid"))
    assert list(load_tasks(path)) == ["zeta", "alpha", "mid"]
    assert list_tasks(path) == ["zeta", "alpha", "mid"]


# ------------------------------------------------------------------------------ shared data
BBH_ROWS = {
    "boolean_expressions": (250, 200, 2),
    "causal_judgement": (187, 149, 2),
    "date_understanding": (250, 200, 6),
    "disambiguation_qa": (250, 200, 3),
    "formal_fallacies": (250, 200, 2),
    "geometric_shapes": (250, 200, 11),
    "hyperbaton": (250, 200, 2),
    "logical_deduction_five_objects": (250, 200, 5),
    "logical_deduction_seven_objects": (250, 200, 7),
    "logical_deduction_three_objects": (250, 200, 3),
    "movie_recommendation": (250, 200, 6),
    "navigate": (250, 200, 2),
    "object_counting": (250, 200, 19),
    "penguins_in_a_table": (146, 116, 5),
    "reasoning_about_colored_objects": (250, 200, 18),
    "ruin_names": (250, 200, 6),
    "salient_translation_error_detection": (250, 200, 6),
    "snarks": (178, 142, 2),
    "sports_understanding": (250, 200, 2),
    "temporal_sequences": (250, 200, 4),
    "tracking_shuffled_objects_five_objects": (250, 200, 5),
    "tracking_shuffled_objects_seven_objects": (250, 200, 7),
    "tracking_shuffled_objects_three_objects": (250, 200, 3),
    "web_of_lies": (250, 200, 2),
}


def test_bbh_shared_file(shared_data) -> None:
    path = _checked_shared(shared_data, BBH)
    assert list_tasks(path) == list(BBH_ROWS)
    tasks = load_tasks(path)
    assert list(tasks) == list(BBH_ROWS)
    models = ("Llama-2-70b-chat-hf", "Mixtral-8x7B-Instruct-v0.1", "gemma-7b", "phi-2")
    for name, b in tasks.items():
        n, n_train, c = BBH_ROWS[name]
        assert (b.n_samples, b.n_classes, b.n_models) == (n, c, 5), name
        assert b.models[:4] == models and b.models[4] == "Mistral-7B-v0.1"
        assert int((b.split == "train").sum()) == n_train, name
        assert int((b.split == "test").sum()) == n - n_train, name
        assert b.probs is not None and (b.preds >= 0).all()
    n_rows = sum(b.n_samples for b in tasks.values())
    assert n_rows == 5761
    correct = sum((1 - b.errors).sum(axis=1) for b in tasks.values())
    acc = correct / n_rows
    assert acc == pytest.approx([0.3126, 0.4685, 0.4084, 0.4546, 0.4199], abs=5e-5)
    with pytest.raises(BundleError) as ei:
        load_bundle(path)
    _one_line_error(ei, "task")
    with pytest.raises(BundleError):
        load_bundle(path, task="navigate", strict=True)


def test_mmlu_pro_shared_file(shared_data) -> None:
    path = _checked_shared(shared_data, MMLU)
    assert list_tasks(path) == []
    b = load_bundle(path)
    assert (b.n_models, b.n_samples, b.n_classes) == (29, 12032, 10)
    assert b.probs is None and b.preds.min() == -1
    acc = dict(zip(b.models, b.accuracies(), strict=True))
    assert acc["gemini-1.5-pro-002"] == pytest.approx(0.7004, abs=5e-5)
    assert acc["Llama-2-7b-hf"] == pytest.approx(0.1834, abs=5e-5)
    assert acc["DeepSeek-Coder-V2"] == pytest.approx(0.5474, abs=5e-5)
    assert len(np.unique(b.sample_ids)) == 12032
    assert len(set(b.groups.tolist())) == 14 and int((b.groups == "math").sum()) == 1351
    assert b.oracle_accuracy() == pytest.approx(0.9459, abs=5e-5)
    with pytest.raises(BundleError) as ei:
        load_bundle(path, strict=True)
    _one_line_error(ei, "strict")
