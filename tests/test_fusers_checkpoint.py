"""Saving and loading fusers: identical predictions, clear errors for damaged checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ensembles
import fusers
from ensembles import Bundle


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    rng = np.random.default_rng(2)
    n = 300
    y = rng.integers(0, 3, n)
    p = rng.random((3, n, 3))
    p[0, np.arange(n), y] += 0.5
    b = Bundle.create(models=["a", "b", "c"], labels=y, probs=p)
    return ensembles.with_random_split(b, seed=1)


@pytest.fixture(scope="module")
def saved(bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuser")
    f = fusers.ToplaFuser(epochs=5, seed=0).fit(bundle, team=["a", "c"])
    f.save(folder)
    return f, folder


def test_save_load_identical_predictions(saved, bundle):
    f, folder = saved
    g = fusers.load_fuser(folder)
    assert type(g) is fusers.ToplaFuser and g.team_ == ("a", "c")
    np.testing.assert_array_equal(g.predict(bundle), f.predict(bundle))
    np.testing.assert_array_equal(g.predict_proba(bundle), f.predict_proba(bundle))
    assert g.get_params() == f.get_params()
    assert g.best_epoch_ == f.best_epoch_ and g.history_ == f.history_
    doc = json.loads((folder / "fuser.json").read_text())
    assert doc["seed"] == 0 and doc["team"] == ["a", "c"]
    assert doc["splits"]["sizes"] == {"train": 180, "val": 60, "test": 60}
    assert {"jax", "flax", "optax", "orbax-checkpoint"} <= set(doc["versions"])
    assert fusers.ToplaFuser.load(folder).team_ == ("a", "c")
    with pytest.raises(ValueError, match="not a StackingFuser"):
        fusers.StackingFuser.load(folder)


def test_stacking_save_load(bundle, tmp_path):
    f = fusers.StackingFuser().fit(bundle)
    f.save(tmp_path)
    g = fusers.load_fuser(tmp_path)
    np.testing.assert_array_equal(g.predict(bundle), f.predict(bundle))
    np.testing.assert_allclose(g.predict_proba(bundle), f.predict_proba(bundle))


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_corrupted_parameter_files(saved, tmp_path):
    _, folder = saved
    broken = _copy(folder, tmp_path / "broken")
    for path in (broken / "params").rglob("*"):
        if path.is_file():
            path.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="corrupted or unreadable") as info:
        fusers.load_fuser(broken)
    assert "\n" not in str(info.value)


def test_silently_altered_parameters_fail_the_digest(saved, tmp_path):
    from fusers._checkpoint import load_arrays, save_arrays

    _, folder = saved
    altered = _copy(folder, tmp_path / "altered")
    arrays = load_arrays(altered / "params")
    name = sorted(arrays)[0]
    arrays[name] = arrays[name] + 1.0
    save_arrays(altered / "params", arrays)  # a valid orbax checkpoint with other values
    with pytest.raises(ValueError, match="SHA-256"):
        fusers.load_fuser(altered)


def test_corrupted_or_missing_metadata(saved, tmp_path):
    _, folder = saved
    with pytest.raises(FileNotFoundError, match="no saved fuser"):
        fusers.load_fuser(tmp_path / "nowhere")
    bad = _copy(folder, tmp_path / "badjson")
    (bad / "fuser.json").write_text('{"format": "focal-fusion.fuser", "team": [')
    with pytest.raises(ValueError, match="corrupted"):
        fusers.load_fuser(bad)
    wrong = _copy(folder, tmp_path / "wrong")
    doc = json.loads((wrong / "fuser.json").read_text())
    del doc["n_classes"]
    (wrong / "fuser.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="fuser config is corrupted"):
        fusers.load_fuser(wrong)
    (wrong / "fuser.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a focal-fusion fuser"):
        fusers.load_fuser(wrong)
    gone = _copy(folder, tmp_path / "gone")
    import shutil

    shutil.rmtree(gone / "params")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        fusers.load_fuser(gone)


def test_corrupted_training_checkpoint(bundle, tmp_path):
    from fusers._checkpoint import CheckpointStore

    fusers.ToplaFuser(epochs=2, checkpoint_every=1).fit(bundle, checkpoint_dir=tmp_path)
    assert CheckpointStore(tmp_path).steps() == [1, 2]
    for path in (tmp_path / "2").rglob("*"):
        if path.is_file():
            path.write_bytes(b"junk")
    with pytest.raises(ValueError, match="corrupted") as info:
        fusers.ToplaFuser(epochs=2, checkpoint_every=1).fit(bundle, checkpoint_dir=tmp_path)
    assert str(tmp_path / "2") in str(info.value) and "\n" not in str(info.value)


def test_checkpoint_store_keeps_the_last_steps_and_checks_digests(tmp_path):
    from fusers._checkpoint import CheckpointStore

    store = CheckpointStore(tmp_path / "s", keep=3, fingerprint="run-a")
    assert store.latest() is None
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        store.restore()
    for step in range(1, 6):
        store.save(step, {"w": np.full(3, step, np.float32)}, {"epoch": step})
    assert store.steps() == [3, 4, 5]
    with pytest.raises(ValueError, match="later than step 2; use a new folder"):
        store.save(2, {"w": np.zeros(3, np.float32)})
    store.save(5, {"w": np.full(3, 9, np.float32)}, {"epoch": 9})  # same step: replaced
    assert store.restore()[1] == {"epoch": 9}
    state, meta = store.restore({"w": np.zeros(3, np.float32)}, step=4)
    assert state["w"].tolist() == [4.0] * 3
    assert meta == {"epoch": 4}
    with pytest.raises(ValueError, match="does not match the model"):
        store.restore({"v": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="belongs to another run"):
        CheckpointStore(tmp_path / "s", fingerprint="run-b").restore()
    # a valid orbax step whose arrays differ from the recorded digest is refused
    import orbax.checkpoint as ocp

    tampered = {"w": np.zeros(3, np.float32)}
    handler = ocp.StandardCheckpointHandler()
    target = tmp_path / "s" / "5" / "state"
    import shutil

    shutil.rmtree(target)
    with ocp.Checkpointer(handler) as ckptr:
        ckptr.save(target, args=ocp.args.StandardSave(tampered))
    with pytest.raises(ValueError, match="SHA-256"):
        store.restore()
