"""``focal recommend`` on the command line, and ``focal fuse train --from`` its output."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ensembles
import focal_cli


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, 3, n)
    preds = np.stack([np.where(rng.random(n) < 0.7, y, (y + 1) % 3) for _ in range(4)])
    b = ensembles.Bundle.create(models=["a", "b", "c", "d"], labels=y, preds=preds)
    path = tmp_path_factory.mktemp("rec") / "pool.npz"
    ensembles.save_bundle(ensembles.with_random_split(b, seed=0), path)
    return path


def _run(capsys, *argv):
    status = focal_cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_recommend_json_and_file(capsys, bundle_path, tmp_path):
    rec_file = tmp_path / "rec.json"
    status, out, err = _run(capsys, "recommend", bundle_path, "--combiners", "plurality,weighted",
                            "--out", rec_file, "--format", "json")  # fmt: skip
    assert status == 0, err
    doc = json.loads(out)
    assert json.loads(rec_file.read_text())["recommendation"] == doc["recommendation"]
    assert doc["recommendation"]["kind"] == "team"  # four independent 70 % members
    assert doc["rows"]["select_on"] == "train+val" and doc["rows"]["folds"] == 5
    status, text, err = _run(capsys, "recommend", bundle_path, "--combiners", "plurality")
    assert status == 0 and "recommendation (team)" in text and "touched once" in text


def test_fuse_train_from_a_recommendation(capsys, bundle_path, tmp_path):
    vote = tmp_path / "vote.json"
    vote.write_text(json.dumps({"recommendation": {"kind": "team", "members": ["a", "b", "c"],
                                                   "combiner": "plurality"}}))  # fmt: skip
    status, _, err = _run(capsys, "fuse", "train", bundle_path, "--from", vote, "--out",
                          tmp_path / "v")  # fmt: skip
    assert status == 2 and "nothing to train" in err and err.count("\n") == 1
    stack = tmp_path / "stack.json"
    stack.write_text(json.dumps({"recommendation": {"kind": "team", "members": ["a", "c"],
                                                    "combiner": "stacking"}}))  # fmt: skip
    status, out, err = _run(capsys, "fuse", "train", bundle_path, "--from", stack, "--out",
                            tmp_path / "s", "--format", "json")  # fmt: skip
    assert status == 0, err
    doc = json.loads(out)
    assert doc["method"] == "stacking" and doc["team"] == ["a", "c"]
    status, _, err = _run(capsys, "fuse", "train", bundle_path, "--from", tmp_path / "none.json",
                          "--out", tmp_path / "x")  # fmt: skip
    assert status == 2 and "no such file" in err


def test_recommend_bad_input(capsys, bundle_path):
    for argv, needle in [
        (["--folds", "1"], "folds"),
        (["--combiners", "magic"], "unknown combiner"),
        (["--w-div", "2"], "--w-div"),
    ]:
        status, out, err = _run(capsys, "recommend", bundle_path, *argv)
        assert status == 2 and needle in err and err.count("\n") == 1 and out == ""
