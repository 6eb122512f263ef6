"""``focal fuse train|predict|evaluate`` and ``focal topla``: round trips and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ensembles
import focal_cli
import fusers
from focal_cli._fuse import EVALUATE_BASELINES


def _main(argv: list[str]) -> int:
    return focal_cli.main(argv)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    status = _main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    rng = np.random.default_rng(7)
    n = 300
    y = rng.integers(0, 3, n)
    p = rng.random((4, n, 3))
    for m, boost in enumerate((0.8, 0.5, 0.4, 0.0)):
        p[m, np.arange(n), y] += boost
    b = ensembles.Bundle.create(models=["w", "x", "y", "z"], labels=y, probs=p,
                                sample_ids=np.arange(1000, 1000 + n))  # fmt: skip
    path = tmp_path_factory.mktemp("data") / "pool.npz"
    ensembles.save_bundle(b, path)  # no split: the seeded 70/10/20 split is made and recorded
    return path


def test_train_predict_evaluate_round_trip(capsys, bundle_path, tmp_path):
    out = tmp_path / "fuser"
    argv = ["fuse", "train", bundle_path, "--method", "topla", "--epochs", "5", "--sizes", "2-3",
            "--out", out, "--format", "json"]  # fmt: skip
    status, text, err = _run(capsys, *argv)
    assert status == 0, err
    doc = json.loads(text)
    assert doc["method"] == "topla" and 2 <= len(doc["team"]) <= 3
    assert doc["splits"]["source"] == "seeded" and doc["selection"]["strategy"] == "exhaustive"
    fuser = fusers.load_fuser(out)
    bundle = ensembles.load_bundle(bundle_path)

    pred_file = tmp_path / "p.json"
    status, text, err = _run(capsys, "fuse", "predict", out, bundle_path, "--split", "test",
                             "--out", pred_file)  # fmt: skip
    assert status == 0, err
    assert "wrote 60 predictions (test)" in text
    written = json.loads(pred_file.read_text())
    expected = fuser.predict(bundle, split="test")
    assert written["predictions"] == expected.tolist()
    assert len(written["sample_ids"]) == len(expected) == 60
    for suffix in (".csv", ".npy"):
        status, _, err = _run(capsys, "fuse", "predict", out, bundle_path, "--out",
                              tmp_path / f"p{suffix}")  # fmt: skip
        assert status == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), fuser.predict(bundle))
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "row,sample_id,prediction"

    status, text, err = _run(capsys, "fuse", "evaluate", out, bundle_path, "--format", "json")
    assert status == 0, err
    doc = json.loads(text)
    assert set(doc) == {"accuracy", "baselines"}
    assert set(doc["baselines"]) == set(EVALUATE_BASELINES)
    assert set(EVALUATE_BASELINES) == {"best_single", "plurality", "soft", "stacking",
                                       "pool_plurality"}  # fmt: skip
    assert doc["accuracy"] == fuser.score(bundle, split="test")
    assert all(isinstance(v, float) for v in doc["baselines"].values())
    ref = fusers.baselines(bundle, fuser.team_)
    assert doc["baselines"]["stacking"] == ref["stacking"]
    status, text, _ = _run(capsys, "fuse", "evaluate", out, bundle_path)
    assert status == 0 and "stacking" in text


def test_train_stacking_and_fusionshot(capsys, bundle_path, tmp_path):
    status, text, err = _run(capsys, "fuse", "train", bundle_path, "--method", "stacking",
                             "--out", tmp_path / "s", "--format", "json")  # fmt: skip
    assert status == 0, err
    assert json.loads(text)["team"] == ["w", "x", "y", "z"]
    status, text, err = _run(capsys, "fuse", "train", bundle_path, "--method", "fusionshot",
                             "--team", "w,z", "--epochs", "3", "--out", tmp_path / "f")  # fmt: skip
    assert status == 0, err
    assert "fusionshot fuser of w, z saved to" in text
    assert isinstance(fusers.load_fuser(tmp_path / "f"), fusers.FusionShotFuser)


def test_overwrite_and_resume(capsys, bundle_path, tmp_path):
    out = tmp_path / "r"
    args = ["fuse", "train", bundle_path, "--method", "topla", "--team", "all", "--epochs",
            "4", "--checkpoint-every", "2", "--out", out, "--format", "json"]  # fmt: skip
    assert _run(capsys, *args)[0] == 0
    status, _, err = _run(capsys, *args)
    assert status == 2 and "already holds a trained fuser; use --overwrite" in err
    assert err.count("\n") == 1
    (out / "fuser.json").unlink()  # as if the run died after training, before saving
    status, text, err = _run(capsys, *args)
    assert status == 0, err
    assert json.loads(text)["training"]["resumed_from"] == 4
    assert _run(capsys, *args, "--overwrite")[0] == 0


def test_topla_command(capsys, bundle_path, tmp_path):
    status, text, err = _run(capsys, "topla", bundle_path, "--select-on", "val", "--train-on",
                             "train", "--report-on", "test", "--sizes", "2", "--epochs", "3",
                             "--format", "json", "--out", tmp_path / "t")  # fmt: skip
    assert status == 0, err
    doc = json.loads(text)
    assert doc["method"] == "topla" and len(doc["team"]) == 2
    assert {"accuracy", "baselines", "selection", "splits", "versions"} <= set(doc)
    assert fusers.load_fuser(tmp_path / "t").team_ == tuple(doc["team"])
    status, text, err = _run(capsys, "topla", bundle_path, "--sizes", "2", "--epochs", "2")
    assert status == 0 and "LLM-TOPLA fuser" in text


def test_one_line_errors(capsys, bundle_path, tmp_path):
    cases = [
        (["fuse"], "missing action"),
        (["fuse", "train", bundle_path, "--method", "topla", "--team", "w,nobody", "--out",
          tmp_path / "e"], "unknown model 'nobody'"),
        (["fuse", "train", bundle_path, "--method", "topla", "--epochs", "0", "--out",
          tmp_path / "e"], "--epochs"),
        (["fuse", "evaluate", tmp_path / "missing", bundle_path], "no saved fuser"),
        (["fuse", "train", tmp_path / "nofile.npz", "--method", "stacking", "--out",
          tmp_path / "e"], "nofile.npz"),
        (["topla", bundle_path, "--select-on", "test", "--report-on", "test"], "both 'test'"),
        (["fuse", "train", bundle_path, "--method", "magic", "--out", tmp_path / "e"],
         "invalid choice"),
    ]  # fmt: skip
    for argv, needle in cases:
        status, out, err = _run(capsys, *argv)
        assert status == 2, (argv, err)
        assert needle in err and err.count("\n") == 1 and "Traceback" not in err, err
        assert out == ""


def test_corrupted_checkpoint_is_one_line(capsys, bundle_path, tmp_path):
    out = tmp_path / "c"
    assert _run(capsys, "fuse", "train", bundle_path, "--method", "stacking", "--out", out)[0] == 0
    for path in (out / "params").rglob("*"):
        if path.is_file():
            path.write_bytes(b"broken")
    status, _, err = _run(capsys, "fuse", "predict", out, bundle_path, "--out", tmp_path / "x.json")
    assert status == 2 and "corrupted or unreadable" in err and err.count("\n") == 1
    status, _, err = _run(capsys, "fuse", "predict", out, bundle_path, "--out", tmp_path / "x.txt")
    assert status == 2


def test_parsers_have_help():
    parser = focal_cli.build_parser()
    for argv in (["fuse", "--help"], ["fuse", "train", "--help"], ["topla", "--help"]):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(argv)
        assert info.value.code == 0


def test_multi_task_file_defaults_to_the_training_task(capsys, bundle_path, tmp_path):
    one = ensembles.load_bundle(bundle_path)
    two = ensembles.with_random_split(one, seed=3)
    path = tmp_path / "tasks.npz"
    ensembles.save_tasks({"first": two, "second": two}, path)
    out = tmp_path / "m"
    argv = ["fuse", "train", path, "--task", "second", "--method", "stacking", "--out", out]
    assert _run(capsys, *argv)[0] == 0
    status, text, err = _run(capsys, "fuse", "evaluate", out, path, "--format", "json")
    assert status == 0, err
    fuser = fusers.load_fuser(out)
    assert fuser.metadata_["bundle"]["task"] == "second"
    assert json.loads(text)["accuracy"] == fuser.score(two, split="test")
