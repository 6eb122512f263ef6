"""The ``focal`` command line (CONTRACT §6), driven through ``focal_cli.main``.

Bundles are built in temporary directories with ``np.savez``: the worked example of
ALGORITHMS.md §9.1, a small random bundle with scores, abstentions and a split, and a multi-task
file. Expected rankings of the random bundle come from the plain-Python reference in
``tests/reference.py``, not from the library. Bad input must exit with status 2, one line on
stderr starting with ``focal: error:``, nothing on stdout and never a traceback. A few tests run
``python -m focal`` in a subprocess to check the real exit status and stderr.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import focal
from focal_cli import main

from reference import (
    DIRECTION,
    ref_majority,
    ref_metric,
    ref_plurality,
    ref_soft,
)

ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------ fixtures

# ALGORITHMS.md §9.1
EX_LABELS = [0, 1, 2, 0, 1, 2]
EX_PREDS = [[1, -1, 2, 0, 1, 0], [2, 1, 0, 0, 1, 2], [0, 0, 0, 0, 2, 2]]
EX_MODELS = ["m0", "m1", "m2"]

EX_GOLDEN = {
    "focal": 0.566667,
    "q_statistic": -0.2,
    "focal_q_statistic": -0.333333,
    "correlation": -0.111111,
    "focal_correlation": -0.222222,
    "binary_disagreement": 0.555556,
    "focal_binary_disagreement": 0.666667,
    "kw_variance": 0.185185,
    "focal_kw_variance": 0.222222,
    "generalized_diversity": 0.625,
    "focal_generalized_diversity": 0.566667,
    "entropy": 0.833333,
    "focal_entropy": 1.0,
    "cohen_kappa": 0.057692,
    "focal_cohen_kappa": -0.048942,
    "fleiss_kappa": 0.009174,
    "focal_fleiss_kappa": -0.230408,
}
EX_GOLDEN_PAIR01 = {
    "focal": 0.416667,
    "q_statistic": 0.0,
    "correlation": 0.0,
    "binary_disagreement": 0.5,
    "kw_variance": 0.125,
    "generalized_diversity": 0.6,
    "entropy": 0.5,
    "cohen_kappa": 0.076923,
    "fleiss_kappa": 0.058824,
    "focal_cohen_kappa": -0.229167,
    "focal_fleiss_kappa": -0.492308,
}

# Random bundle: M models, N samples, C classes, with all-zero rows (abstentions) and a split.
R_M, R_N, R_C = 5, 40, 4
R_MODELS = [f"model_{i}" for i in range(R_M)]


def _ex_arrays() -> dict[str, np.ndarray]:
    return {
        "models": np.array(EX_MODELS),
        "labels": np.array(EX_LABELS),
        "preds": np.array(EX_PREDS),
    }


def _one_hot(preds: np.ndarray, n_classes: int) -> np.ndarray:
    preds = np.asarray(preds)
    probs = np.zeros((*preds.shape, n_classes))
    for idx in np.ndindex(preds.shape):
        if preds[idx] >= 0:
            probs[(*idx, preds[idx])] = 1.0
    return probs


def _argmax_preds(probs: np.ndarray) -> np.ndarray:
    preds = np.argmax(probs, axis=-1)
    preds[~(probs > 0).any(axis=-1)] = -1
    return preds


def _random_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, R_C, size=R_N)
    probs = rng.random((R_M, R_N, R_C))
    # Make models better than chance, with different strengths.
    for m in range(R_M):
        boost = rng.random(R_N) < 0.3 + 0.1 * m
        probs[m, boost, labels[boost]] += 1.0
    probs[rng.random((R_M, R_N)) < 0.08] = 0.0  # abstentions
    split = np.array(["train"] * 24 + ["val"] * 8 + ["test"] * 8)
    rng.shuffle(split)
    return {"models": np.array(R_MODELS), "labels": labels, "probs": probs, "split": split}


def _save(path: Path, **arrays: np.ndarray) -> Path:
    with open(path, "wb") as fh:  # exactly this name (np.savez would add .npz to a str)
        np.savez(fh, **arrays)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli_bundles")
    ex = _ex_arrays()
    rnd = _random_arrays()
    never_wrong = _ex_arrays()
    never_wrong["preds"] = np.array([EX_LABELS, EX_LABELS, EX_PREDS[2]])
    multi = {
        "tasks": np.array(["alpha", "beta"]),
        "models": np.array(EX_MODELS),
        "alpha/labels": ex["labels"],
        "alpha/probs": _one_hot(ex["preds"], 3),
        "beta/labels": rnd["labels"][:10],
        "beta/preds": _argmax_preds(rnd["probs"])[:3, :10],
    }
    return {
        "ex": _save(d / "example.npz", **ex),
        "ex_probs": _save(
            d / "example_probs.npz",
            models=ex["models"],
            labels=ex["labels"],
            probs=_one_hot(ex["preds"], 3),
        ),
        "rnd": _save(d / "random.npz", **rnd),
        "never_wrong": _save(d / "never_wrong.npz", **never_wrong),
        "multi": _save(d / "multi.npz", **multi),
    }


def run_ok(capsys, argv: list[str]) -> str:
    """Run the CLI, expect exit status 0, return stdout."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, f"exit {code}; stderr: {err}"
    assert "Traceback" not in err
    return out


def run_json(capsys, argv: list[str]) -> dict:
    out = run_ok(capsys, [*argv, "--format", "json"])
    return json.loads(out)  # exactly one JSON document, strict (NaN would be rejected below)


def _strict_loads(text: str):
    def bad_constant(name: str):
        raise AssertionError(f"non-strict JSON constant {name} in output")

    return json.loads(text, parse_constant=bad_constant)


# ------------------------------------------------------------------------------ prune

PRUNE_KEYS = {"metric", "n_models", "n_samples", "n_teams_scored", "teams"}
TEAM_KEYS = {"members", "size", "score", "accuracy"}


def _check_prune_doc(doc: dict) -> None:
    assert PRUNE_KEYS <= set(doc)  # the contract's keys, then the rows used and the ranking
    assert {"rows", "objective", "strategy", "best_single"} <= set(doc)
    assert isinstance(doc["metric"], str)
    for key in ("n_models", "n_samples", "n_teams_scored"):
        assert type(doc[key]) is int, key
    assert isinstance(doc["teams"], list)
    for team in doc["teams"]:
        assert TEAM_KEYS <= set(team)
        assert isinstance(team["members"], list)
        assert all(isinstance(m, str) for m in team["members"])
        assert type(team["size"]) is int and team["size"] == len(team["members"])
        assert team["score"] is None or type(team["score"]) is float
        assert type(team["accuracy"]) is float
        assert 0.0 <= team["accuracy"] <= 1.0


def test_prune_worked_example_json(capsys, files):
    out = run_ok(capsys, ["prune", files["ex"], "--sizes", "2-3", "--format", "json"])
    doc = _strict_loads(out)
    _check_prune_doc(doc)
    assert doc["metric"] == "focal"
    assert (doc["n_models"], doc["n_samples"], doc["n_teams_scored"]) == (3, 6, 4)
    got = [(t["members"], t["size"]) for t in doc["teams"]]
    assert got == [
        (["m0", "m1", "m2"], 3),
        (["m0", "m2"], 2),
        (["m0", "m1"], 2),  # tie with {1,2} at 0.416667: canonical order
        (["m1", "m2"], 2),
    ]
    scores = [t["score"] for t in doc["teams"]]
    assert scores == pytest.approx([0.566667, 0.5, 0.416667, 0.416667], abs=1e-6)
    accs = [t["accuracy"] for t in doc["teams"]]
    assert accs == pytest.approx([4 / 6, 3 / 6, 3 / 6, 4 / 6], abs=1e-12)


def test_prune_tie_prefers_smaller_team(capsys, tmp_path):
    # Two models with disjoint errors and a third never wrong: every team scores exactly 1, so
    # the order is by size (smaller first), then canonical.
    path = _save(
        tmp_path / "tie.npz",
        models=np.array(["a", "b", "c"]),
        labels=np.array([0, 0, 0, 0, 0, 0]),
        preds=np.array([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0]]),
    )
    doc = run_json(capsys, ["prune", path, "--sizes", "2-3"])
    assert [t["members"] for t in doc["teams"]] == [
        ["a", "b"],
        ["a", "c"],
        ["b", "c"],
        ["a", "b", "c"],
    ]
    assert [t["score"] for t in doc["teams"]] == pytest.approx([1.0] * 4)


def test_prune_table_is_readable(capsys, files):
    out = run_ok(capsys, ["prune", files["ex"], "--sizes", "2-3"])
    assert "rank" in out and "score" in out and "members" in out
    assert "m0, m1, m2" in out
    assert "0.5667" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)
    lines = out.strip().splitlines()
    assert len(lines) >= 2 + 4  # summary + header + rule + 4 teams
    assert "4 teams" in lines[0]


def test_prune_top_k_and_size(capsys, files):
    doc = run_json(capsys, ["prune", files["ex"], "--sizes", "2-3", "--top-k", "2"])
    assert [t["members"] for t in doc["teams"]] == [["m0", "m1", "m2"], ["m0", "m2"]]
    assert doc["n_teams_scored"] == 4

    doc = run_json(capsys, ["prune", files["ex"], "--size", "2"])
    assert doc["n_teams_scored"] == 3
    assert [t["members"] for t in doc["teams"]] == [["m0", "m2"], ["m0", "m1"], ["m1", "m2"]]
    assert all(t["size"] == 2 for t in doc["teams"])

    doc = run_json(capsys, ["prune", files["ex"], "--sizes", "3"])
    assert doc["n_teams_scored"] == 1
    assert [t["members"] for t in doc["teams"]] == [["m0", "m1", "m2"]]


def test_prune_default_sizes_clamped_or_refused(capsys, files):
    # Default --sizes is 2-5; with 3 models that range does not fit. Either behaviour is fine as
    # long as it is a clean one (teams of sizes 2-3, or a one-line error).
    code = main(["prune", str(files["ex"]), "--format", "json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if code == 0:
        doc = json.loads(out)
        assert doc["n_teams_scored"] == 4
    else:
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and err.startswith("focal: error:")


def _ref_ranking(arrays: dict, metric: str, sizes, samples=None):
    """Every team ranked by the reference: key (-sign*round(score, 10), size, canonical)."""
    preds = _argmax_preds(arrays["probs"])
    labels = arrays["labels"]
    if samples is not None:
        preds, labels = preds[:, samples], labels[samples]
    sign = 1.0 if DIRECTION[metric] == "higher" else -1.0
    rows = []
    for size in sizes:
        for team in itertools.combinations(range(preds.shape[0]), size):
            score = ref_metric(metric, preds, labels, team)
            acc = float(np.mean(ref_plurality(preds, team, R_C) == labels))
            key = -np.inf if math.isnan(score) else round(sign * score, 10)
            rows.append((key, size, team, score, acc))
    order = sorted(range(len(rows)), key=lambda i: (-rows[i][0], i))  # stable = size, canonical
    return [rows[i] for i in order]


@pytest.mark.parametrize("metric", ["focal", "q_statistic", "focal_binary_disagreement"])
def test_prune_random_matches_reference(capsys, files, metric):
    arrays = _random_arrays()
    doc = run_json(
        capsys,
        [
            "prune",
            files["rnd"],
            "--split",
            "all",
            "--sizes",
            "2-5",
            "--top-k",
            "100",
            "--metric",
            metric,
        ],
    )
    _check_prune_doc(doc)
    assert doc["metric"] == metric
    assert (doc["n_models"], doc["n_samples"], doc["n_teams_scored"]) == (R_M, R_N, 26)
    expected = _ref_ranking(arrays, metric, range(2, 6))
    assert len(doc["teams"]) == 26
    for got, (_, size, team, score, acc) in zip(doc["teams"], expected, strict=True):
        assert got["members"] == [R_MODELS[i] for i in team]
        assert got["size"] == size
        assert got["score"] == pytest.approx(score, abs=1e-9)
        assert got["accuracy"] == pytest.approx(acc, abs=1e-12)
    scores = [t["score"] for t in doc["teams"]]
    if DIRECTION[metric] == "lower":  # the lowest value is the most diverse: first
        assert scores == sorted(scores)
    else:
        assert scores == sorted(scores, reverse=True)


def test_prune_split_val(capsys, files):
    arrays = _random_arrays()
    val = np.flatnonzero(arrays["split"] == "val")
    doc = run_json(capsys, ["prune", files["rnd"], "--split", "val", "--size", "2", "--top-k", "3"])
    assert doc["n_samples"] == len(val) == 8
    assert doc["n_teams_scored"] == 10
    expected = _ref_ranking(arrays, "focal", [2], samples=val)[:3]
    assert [t["members"] for t in doc["teams"]] == [
        [R_MODELS[i] for i in team] for _, _, team, _, _ in expected
    ]
    for got, (_, _, _, score, acc) in zip(doc["teams"], expected, strict=True):
        assert got["score"] == pytest.approx(score, abs=1e-9)
        assert got["accuracy"] == pytest.approx(acc, abs=1e-12)


def test_prune_never_wrong_team_ranks_last_with_null(capsys, files):
    out = run_ok(capsys, ["prune", files["never_wrong"], "--size", "2", "--format", "json"])
    assert "NaN" not in out
    doc = _strict_loads(out)
    assert doc["teams"][-1]["members"] == ["m0", "m1"]
    assert doc["teams"][-1]["score"] is None
    assert all(t["score"] is not None for t in doc["teams"][:-1])


def test_prune_multitask(capsys, files):
    doc = run_json(capsys, ["prune", files["multi"], "--task", "alpha", "--sizes", "2-3"])
    assert (doc["n_models"], doc["n_samples"], doc["n_teams_scored"]) == (3, 6, 4)
    assert [t["members"] for t in doc["teams"]][0] == ["m0", "m1", "m2"]
    assert doc["teams"][0]["score"] == pytest.approx(0.566667, abs=1e-6)

    doc = run_json(capsys, ["prune", files["multi"], "--task", "beta", "--size", "2"])
    assert (doc["n_models"], doc["n_samples"]) == (3, 10)

    out = run_ok(capsys, ["prune", files["multi"], "--task", "alpha", "--size", "2"])
    assert "alpha" in out


# ------------------------------------------------------------------------------ score

SCORE_KEYS = {"members", "metrics", "accuracy"}


def _check_score_doc(doc: dict, members: list[str]) -> None:
    assert SCORE_KEYS <= set(doc) and "rows" in set(doc)
    assert doc["members"] == members
    assert set(doc["metrics"]) == set(focal.METRICS)
    for value in doc["metrics"].values():
        assert value is None or type(value) is float
    assert set(doc["accuracy"]) == {"plurality", "majority", "soft"}
    assert type(doc["accuracy"]["plurality"]) is float
    assert type(doc["accuracy"]["majority"]) is float


def test_score_worked_example_golden(capsys, files):
    out = run_ok(capsys, ["score", files["ex"], "--team", "m0,m1,m2", "--format", "json"])
    doc = _strict_loads(out)
    _check_score_doc(doc, ["m0", "m1", "m2"])
    assert set(EX_GOLDEN) == set(focal.METRICS)
    for name, value in EX_GOLDEN.items():
        assert doc["metrics"][name] == pytest.approx(value, abs=1e-6), name
    assert doc["accuracy"]["plurality"] == pytest.approx(4 / 6, abs=1e-12)
    assert doc["accuracy"]["majority"] == pytest.approx(3 / 6, abs=1e-12)
    assert doc["accuracy"]["soft"] is None


def test_score_worked_example_pair(capsys, files):
    # Members are reported in bundle order whatever order --team gives; spaces are tolerated.
    doc = run_json(capsys, ["score", files["ex"], "--team", "m1, m0"])
    _check_score_doc(doc, ["m0", "m1"])
    for name, value in EX_GOLDEN_PAIR01.items():
        assert doc["metrics"][name] == pytest.approx(value, abs=1e-6), name
    assert doc["accuracy"]["plurality"] == pytest.approx(3 / 6, abs=1e-12)
    assert doc["accuracy"]["majority"] == pytest.approx(2 / 6, abs=1e-12)


def test_score_with_probs_has_soft(capsys, files):
    doc = run_json(capsys, ["score", files["ex_probs"], "--team", "m0,m1,m2"])
    _check_score_doc(doc, ["m0", "m1", "m2"])
    assert type(doc["accuracy"]["soft"]) is float
    assert doc["accuracy"]["soft"] == pytest.approx(4 / 6, abs=1e-12)
    assert doc["metrics"]["focal"] == pytest.approx(0.566667, abs=1e-6)


def test_score_random_matches_reference(capsys, files):
    arrays = _random_arrays()
    preds, labels = _argmax_preds(arrays["probs"]), arrays["labels"]
    team = [0, 2, 4]
    doc = run_json(
        capsys, ["score", files["rnd"], "--split", "all", "--team", "model_0,model_2,model_4"]
    )
    _check_score_doc(doc, [R_MODELS[i] for i in team])
    for name in focal.METRICS:
        ref = ref_metric(name, preds, labels, team)
        if math.isnan(ref):
            assert doc["metrics"][name] is None, name
        else:
            assert doc["metrics"][name] == pytest.approx(ref, abs=1e-9), name
    acc = doc["accuracy"]
    assert acc["plurality"] == pytest.approx(np.mean(ref_plurality(preds, team, R_C) == labels))
    assert acc["majority"] == pytest.approx(np.mean(ref_majority(preds, team, R_C) == labels))
    assert acc["soft"] == pytest.approx(np.mean(ref_soft(arrays["probs"], team) == labels))


def test_score_nan_metric_is_null(capsys, files):
    out = run_ok(capsys, ["score", files["never_wrong"], "--team", "m0,m1", "--format", "json"])
    assert "NaN" not in out and "Infinity" not in out
    doc = _strict_loads(out)
    _check_score_doc(doc, ["m0", "m1"])
    assert doc["metrics"]["focal"] is None
    assert doc["metrics"]["focal_generalized_diversity"] is None
    assert doc["accuracy"]["plurality"] == 1.0


def test_score_table(capsys, files):
    out = run_ok(capsys, ["score", files["ex"], "--team", "m0,m1,m2"])
    for name in focal.METRICS:
        assert name in out
    assert "plurality" in out and "majority" in out and "soft" in out
    assert "0.5667" in out
    out = run_ok(capsys, ["score", files["never_wrong"], "--team", "m0,m1"])
    assert "nan" not in out.lower()


def test_score_multitask_and_split(capsys, files):
    doc = run_json(capsys, ["score", files["multi"], "--task", "alpha", "--team", "m0,m1,m2"])
    assert doc["metrics"]["focal"] == pytest.approx(0.566667, abs=1e-6)
    assert type(doc["accuracy"]["soft"]) is float
    arrays = _random_arrays()
    test = np.flatnonzero(arrays["split"] == "test")
    preds, labels = _argmax_preds(arrays["probs"])[:, test], arrays["labels"][test]
    doc = run_json(capsys, ["score", files["rnd"], "--split", "test", "--team", "model_1,model_3"])
    ref = ref_metric("focal", preds, labels, [1, 3])
    if math.isnan(ref):
        assert doc["metrics"]["focal"] is None
    else:
        assert doc["metrics"]["focal"] == pytest.approx(ref, abs=1e-9)


# ------------------------------------------------------------------------------ info


def test_info_json(capsys, files):
    doc = run_json(capsys, ["info", files["ex"]])
    assert doc["n_models"] == 3 and doc["n_samples"] == 6 and doc["n_classes"] == 3
    assert [m["name"] for m in doc["models"]] == EX_MODELS
    accs = [m["accuracy"] for m in doc["models"]]
    assert accs == pytest.approx([3 / 6, 4 / 6, 3 / 6])
    assert [m["abstain_rate"] for m in doc["models"]] == pytest.approx([1 / 6, 0, 0])
    assert doc["oracle_accuracy"] == pytest.approx(1.0)
    assert doc["pool_accuracy"]["plurality"] == pytest.approx(4 / 6)
    assert doc["pool_accuracy"]["soft"] is None
    corr = np.array(doc["error_correlation"])
    assert corr.shape == (3, 3)
    np.testing.assert_allclose(corr, corr.T)
    np.testing.assert_allclose(np.diag(corr), 1.0)


def test_info_json_with_probs_and_split(capsys, files):
    doc = run_json(capsys, ["info", files["rnd"]])
    assert doc["n_models"] == R_M and doc["n_samples"] == R_N
    assert doc["splits"] == {"train": 24, "val": 8, "test": 8}
    assert type(doc["pool_accuracy"]["soft"]) is float
    doc = run_json(capsys, ["info", files["rnd"], "--split", "val"])
    assert doc["n_samples"] == 8


def test_info_table(capsys, files):
    out = run_ok(capsys, ["info", files["ex"]])
    assert "3 models" in out and "6 samples" in out
    for name in EX_MODELS:
        assert name in out
    assert "oracle" in out.lower()


def test_info_multitask(capsys, files):
    doc = run_json(capsys, ["info", files["multi"]])
    assert [r["task"] for r in doc["tasks"]] == ["alpha", "beta"]
    assert [r["n_samples"] for r in doc["tasks"]] == [6, 10]
    out = run_ok(capsys, ["info", files["multi"]])
    assert "2 tasks" in out and "alpha" in out and "beta" in out
    doc = run_json(capsys, ["info", files["multi"], "--task", "beta"])
    assert doc["task"] == "beta" and doc["n_samples"] == 10


def test_prune_many_models(capsys, tmp_path):
    # 70 models, teams of 2: 2,415 teams, well inside the default budget; must just work.
    rng = np.random.default_rng(1)
    n_models, n_samples = 70, 30
    path = _save(
        tmp_path / "many.npz",
        models=np.array([f"m{i:02d}" for i in range(n_models)]),
        labels=rng.integers(0, 3, n_samples),
        preds=rng.integers(-1, 3, (n_models, n_samples)),
    )
    code = main(["prune", str(path), "--size", "2", "--top-k", "2", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["n_models"] == n_models and doc["n_teams_scored"] == n_models * (n_models - 1) // 2
    assert len(doc["teams"]) == 2


def test_huge_label_value_no_traceback(capsys, tmp_path):
    # A preds-only bundle infers C from the largest label/prediction; a corrupt label of 10^12
    # must give a clean answer or a one-line error, never a MemoryError traceback.
    labels = np.array(EX_LABELS)
    labels[-1] = 10**12
    path = _bad_bundle(tmp_path, labels=labels)
    commands = (["info", path], ["prune", path, "--size", "2"], ["score", path, "--team", "m0,m1"])
    for argv in commands:
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        if code != 0:
            assert code == 2 and out == ""
            assert err.count("\n") == 1 and err.startswith("focal: error:")


# ------------------------------------------------------------------------------ help


@pytest.mark.parametrize("command", [[], ["prune"], ["score"], ["info"], ["demo"]])
def test_help(capsys, command):
    try:
        code = main([*command, "--help"])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert code in (0, None)
    assert "example" in out.lower()
    assert "focal" in out
    assert "Traceback" not in err


def test_no_command_is_not_success(capsys):
    code = main([])
    out, err = capsys.readouterr()
    assert code != 0
    assert out == ""
    assert "Traceback" not in err


# ------------------------------------------------------------------------------ bad input


def _bad_bundle(tmp_path: Path, **changes) -> Path:
    arrays = _ex_arrays()
    for key, value in changes.items():
        if value is None:
            arrays.pop(key, None)
        else:
            arrays[key] = value
    return _save(tmp_path / "bad.npz", **arrays)


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.npz"
    path.write_text("these are not the arrays you are looking for\n")
    return path


def _truncated(tmp_path: Path) -> Path:
    path = _save(tmp_path / "full.npz", **_random_arrays())
    data = path.read_bytes()
    out = tmp_path / "truncated.npz"
    out.write_bytes(data[: len(data) // 2])
    return out


def _probs_bundle(tmp_path: Path, probs: np.ndarray, labels=EX_LABELS) -> Path:
    return _save(
        tmp_path / "bad.npz",
        models=np.array(EX_MODELS),
        labels=np.array(labels),
        probs=probs,
    )


def _nan_probs(tmp_path):
    probs = _one_hot(np.array(EX_PREDS), 3)
    probs[1, 2, 0] = np.nan
    return _probs_bundle(tmp_path, probs)


def _neg_probs(tmp_path):
    probs = _one_hot(np.array(EX_PREDS), 3)
    probs[2, 4, 1] = -0.5
    return _probs_bundle(tmp_path, probs)


def _multi(tmp_path):
    return _save(
        tmp_path / "multi.npz",
        tasks=np.array(["alpha", "beta"]),
        models=np.array(EX_MODELS),
        **{"alpha/labels": np.array(EX_LABELS), "alpha/preds": np.array(EX_PREDS)},
        **{"beta/labels": np.array(EX_LABELS), "beta/preds": np.array(EX_PREDS)},
    )


def _empty_file(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    return path


def _npy_file(tmp_path):
    path = tmp_path / "array.npz"
    with open(path, "wb") as fh:
        np.save(fh, np.arange(6))
    return path


def _corrupt_member(tmp_path):
    # Overwrite bytes inside the stored data of 'preds': the zip CRC check fails on read.
    data = bytearray(_save(tmp_path / "good.npz", **_ex_arrays()).read_bytes())
    at = data.find(b"preds.npy")
    assert at > 0
    data[at + 200 : at + 210] = b"\xff" * 10
    path = tmp_path / "corrupt.npz"
    path.write_bytes(bytes(data))
    return path


def _task_without_data(tmp_path):
    return _save(tmp_path / "hollow.npz", tasks=np.array(["alpha"]), models=np.array(EX_MODELS))


def _split_bundle(tmp_path):
    # Only test rows: no val rows, and no train rows to carve them from.
    return _bad_bundle(tmp_path, split=np.array(["test"] * 6))


def _ex(tmp_path):
    return _bad_bundle(tmp_path)


# (id, builder of the bundle path or None, argv with {b} for the bundle path)
BAD_INPUTS = [
    ("missing-file", lambda t: t / "nope.npz", ["prune", "{b}"]),
    ("missing-file-score", lambda t: t / "nope.npz", ["score", "{b}", "--team", "m0,m1"]),
    ("missing-file-info", lambda t: t / "nope.npz", ["info", "{b}"]),
    ("directory", lambda t: t, ["prune", "{b}"]),
    ("directory-info", lambda t: t, ["info", "{b}"]),
    ("text-file", _text_file, ["prune", "{b}"]),
    ("text-file-info", _text_file, ["info", "{b}"]),
    ("truncated-npz", _truncated, ["prune", "{b}", "--size", "2"]),
    ("truncated-npz-info", _truncated, ["info", "{b}"]),
    ("missing-labels", lambda t: _bad_bundle(t, labels=None), ["prune", "{b}"]),
    ("missing-models", lambda t: _bad_bundle(t, models=None), ["prune", "{b}"]),
    ("no-preds-or-probs", lambda t: _bad_bundle(t, preds=None), ["info", "{b}"]),
    (
        "labels-out-of-range",
        lambda t: _probs_bundle(t, _one_hot(np.array(EX_PREDS), 3), [0, 1, 2, 0, 1, 3]),
        ["prune", "{b}", "--size", "2"],
    ),
    (
        "labels-negative",
        lambda t: _bad_bundle(t, labels=np.array([0, 1, -2, 0, 1, 2])),
        ["info", "{b}"],
    ),
    (
        "labels-fractional",
        lambda t: _bad_bundle(t, labels=np.array(EX_LABELS) + 0.5),
        ["info", "{b}"],
    ),
    ("nan-probs", _nan_probs, ["prune", "{b}", "--size", "2"]),
    ("nan-probs-score", _nan_probs, ["score", "{b}", "--team", "m0,m1"]),
    ("negative-probs", _neg_probs, ["prune", "{b}", "--size", "2"]),
    ("negative-probs-info", _neg_probs, ["info", "{b}"]),
    (
        "probs-wrong-ndim",
        lambda t: _probs_bundle(t, np.ones((3, 6))),
        ["prune", "{b}", "--size", "2"],
    ),
    (
        "duplicate-models",
        lambda t: _bad_bundle(t, models=np.array(["m0", "m1", "m0"])),
        ["prune", "{b}", "--size", "2"],
    ),
    (
        "single-model",
        lambda t: _bad_bundle(t, models=np.array(["m0"]), preds=np.array(EX_PREDS[:1])),
        ["info", "{b}"],
    ),
    (
        "pickled-models",
        lambda t: _bad_bundle(t, models=np.array(["m0", "m1", "m2"], dtype=object)),
        ["info", "{b}"],
    ),
    (
        "preds-shape-mismatch",
        lambda t: _bad_bundle(t, preds=np.array(EX_PREDS)[:, :5]),
        ["prune", "{b}", "--size", "2"],
    ),
    (
        "preds-out-of-range",
        lambda t: _bad_bundle(t, preds=np.array(EX_PREDS) - 2),
        ["prune", "{b}", "--size", "2"],
    ),
    ("unknown-model-in-team", _ex, ["score", "{b}", "--team", "m0,zzz"]),
    ("team-of-one", _ex, ["score", "{b}", "--team", "m0"]),
    ("team-repeated-member", _ex, ["score", "{b}", "--team", "m0,m0"]),
    ("team-empty", _ex, ["score", "{b}", "--team", ","]),
    ("size-0", _ex, ["prune", "{b}", "--size", "0"]),
    ("size-1", _ex, ["prune", "{b}", "--size", "1"]),
    ("size-above-m", _ex, ["prune", "{b}", "--size", "4"]),
    ("sizes-reversed", _ex, ["prune", "{b}", "--sizes", "5-3"]),
    ("sizes-abc", _ex, ["prune", "{b}", "--sizes", "abc"]),
    ("sizes-above-m", _ex, ["prune", "{b}", "--sizes", "2-9"]),
    ("size-not-int", _ex, ["prune", "{b}", "--size", "two"]),
    ("size-and-sizes", _ex, ["prune", "{b}", "--size", "2", "--sizes", "2-3"]),
    ("top-k-0", _ex, ["prune", "{b}", "--size", "2", "--top-k", "0"]),
    ("top-k-negative", _ex, ["prune", "{b}", "--size", "2", "--top-k", "-3"]),
    ("top-k-abc", _ex, ["prune", "{b}", "--size", "2", "--top-k", "abc"]),
    ("unknown-metric", _ex, ["prune", "{b}", "--size", "2", "--metric", "bogus"]),
    ("unknown-format", _ex, ["prune", "{b}", "--size", "2", "--format", "xml"]),
    ("unknown-option", _ex, ["prune", "{b}", "--frobnicate"]),
    ("unknown-subcommand", _ex, ["frobnicate", "{b}"]),
    ("missing-bundle", None, ["prune"]),
    ("missing-team", _ex, ["score", "{b}"]),
    ("too-many-teams", _ex, ["prune", "{b}", "--sizes", "2-3", "--max-teams", "3"]),
    ("multitask-without-task", _multi, ["prune", "{b}", "--size", "2"]),
    ("multitask-without-task-score", _multi, ["score", "{b}", "--team", "m0,m1"]),
    ("unknown-task", _multi, ["prune", "{b}", "--task", "gamma", "--size", "2"]),
    ("unknown-task-info", _multi, ["info", "{b}", "--task", "gamma"]),
    ("task-on-single-task-file", _ex, ["prune", "{b}", "--task", "alpha", "--size", "2"]),
    ("split-without-split-key", _ex, ["prune", "{b}", "--split", "val", "--size", "2"]),
    ("split-empty", _split_bundle, ["prune", "{b}", "--split", "val", "--size", "2"]),
    ("split-empty-score", _split_bundle, ["score", "{b}", "--split", "val", "--team", "m0,m1"]),
    ("split-unknown-name", _split_bundle, ["info", "{b}", "--split", "holdout"]),
    (
        "split-bad-values",
        lambda t: _bad_bundle(t, split=np.array(["train"] * 5 + ["dev"])),
        ["info", "{b}"],
    ),
    ("empty-file", _empty_file, ["info", "{b}"]),
    ("npy-not-npz", _npy_file, ["prune", "{b}"]),
    ("corrupt-member", _corrupt_member, ["prune", "{b}", "--size", "2"]),
    ("labels-2d", lambda t: _bad_bundle(t, labels=np.array([EX_LABELS])), ["info", "{b}"]),
    (
        "labels-strings",
        lambda t: _bad_bundle(t, labels=np.array([str(v) for v in EX_LABELS])),
        ["info", "{b}"],
    ),
    (
        "no-samples",
        lambda t: _bad_bundle(t, labels=np.zeros(0, int), preds=np.zeros((3, 0), int)),
        ["info", "{b}"],
    ),
    ("models-not-strings", lambda t: _bad_bundle(t, models=np.arange(3)), ["info", "{b}"]),
    (
        "model-name-empty",
        lambda t: _bad_bundle(t, models=np.array(["m0", "", "m2"])),
        ["info", "{b}"],
    ),
    ("preds-booleans", lambda t: _bad_bundle(t, preds=np.array(EX_PREDS) > 0), ["info", "{b}"]),
    (
        "quality-out-of-range",
        lambda t: _bad_bundle(t, labels=None, preds=None, probs=None, quality=np.full((3, 6), 1.5)),
        ["info", "{b}"],
    ),
    ("split-not-strings", lambda t: _bad_bundle(t, split=np.arange(6)), ["info", "{b}"]),
    ("groups-wrong-length", lambda t: _bad_bundle(t, groups=np.arange(5)), ["info", "{b}"]),
    ("task-without-data", _task_without_data, ["info", "{b}"]),
    ("tasks-empty", lambda t: _save(t / "x.npz", tasks=np.array([], dtype=str)), ["info", "{b}"]),
    ("max-teams-0", _ex, ["prune", "{b}", "--size", "2", "--max-teams", "0"]),
    # With no split in any task, --split cannot be honoured: refuse rather than ignore it.
    ("info-multitask-split-ignored", _multi, ["info", "{b}", "--split", "val"]),
]


@pytest.mark.parametrize(
    ("builder", "argv"), [(b, a) for _, b, a in BAD_INPUTS], ids=[i for i, _, _ in BAD_INPUTS]
)
def test_bad_input_one_line_exit_2(capsys, tmp_path, builder, argv):
    path = builder(tmp_path) if builder is not None else None
    args = [str(path) if a == "{b}" else a for a in argv]
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2, f"exit status {code}; stderr: {err!r}"
    assert out == "", f"stdout not empty: {out!r}"
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.endswith("\n"), f"not exactly one line: {err!r}"
    assert err.startswith("focal: error:"), err


# ------------------------------------------------------------------------------ subprocess


def _run_module(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "focal_cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def _assert_clean_failure(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, f"not exactly one line: {proc.stderr!r}"
    assert proc.stderr.startswith("focal: error:")


def test_subprocess_success_json(files):
    proc = _run_module("prune", files["ex"], "--sizes", "2-3", "--top-k", "1", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    doc = _strict_loads(proc.stdout)
    assert doc["teams"][0]["members"] == ["m0", "m1", "m2"]


def test_subprocess_missing_file(tmp_path):
    _assert_clean_failure(_run_module("prune", tmp_path / "nope.npz"))


def test_subprocess_bad_values(tmp_path):
    _assert_clean_failure(_run_module("score", _nan_probs(tmp_path), "--team", "m0,m1"))


def test_subprocess_bad_bundle_with_extra_key(tmp_path):
    # An unknown key (ignored with a warning outside strict mode) must not add lines to the
    # one-line error of an otherwise malformed bundle.
    path = _bad_bundle(tmp_path, labels=np.array([0, 1, -2, 0, 1, 2]), notes=np.array([1, 2]))
    _assert_clean_failure(_run_module("info", path))


def test_subprocess_usage_error(tmp_path):
    _assert_clean_failure(_run_module("prune", tmp_path / "x.npz", "--top-k", "many"))


# ------------------------------------------------------------------------------ real data


# Paths come from the ``shared_data`` fixture of conftest.py: $FOCAL_DATA_DIR, else
# <repo>/../shared/data; the test is skipped with a reason when the file is absent.


def test_real_mmlu_pro_best_pair(capsys, shared_data):
    path = shared_data("mmlu_pro_29llm.npz")
    doc = run_json(capsys, ["prune", path, "--size", "2", "--top-k", "1"])
    _check_prune_doc(doc)
    assert (doc["n_models"], doc["n_samples"], doc["n_teams_scored"]) == (29, 12032, 406)
    (best,) = doc["teams"]
    assert best["members"] == ["Llama-2-7b-hf", "gemini-1.5-pro-002"]
    assert best["score"] == pytest.approx(0.280422, abs=1e-6)
    assert best["accuracy"] == pytest.approx(0.4640, abs=1e-4)


def test_real_bbh_info_lists_tasks(capsys, shared_data):
    path = shared_data("bbh_5llm_marl_focal.npz")
    doc = run_json(capsys, ["info", path])
    tasks = [r["task"] for r in doc["tasks"]]
    assert len(tasks) == 24
    assert tasks[0] == "boolean_expressions" and tasks[-1] == "web_of_lies"
    assert sum(r["n_samples"] for r in doc["tasks"]) == 5761
    out = run_ok(capsys, ["info", path])
    assert "24 tasks" in out and "navigate" in out


def test_closed_pipe_exits_quietly(tmp_path):
    """``focal prune ... | head`` : the reader goes away; no 'Broken pipe', exit status 0."""
    import subprocess

    import ensembles

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 50)
    preds = rng.integers(0, 3, (12, 50))
    path = tmp_path / "pool.npz"
    ensembles.save_bundle(
        ensembles.Bundle.create(models=[f"m{i}" for i in range(12)], labels=labels, preds=preds),
        path,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "focal_cli", "prune", str(path), "--sizes", "2-4",
         "--top-k", "500", "--split", "all", "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout.readline()  # read one line, then hang up like `head -1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err
