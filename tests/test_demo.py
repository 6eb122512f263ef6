"""The built-in demo (``focal_cli._demo`` and ``focal demo``): pool, cache, report, plot, CLI.

One module-scoped run fits the pool once into a temporary cache folder; the other tests reuse
that cache (a second ``run_demo`` must not refit), so the file stays fast. Small team sizes
(3-4) and ``top_k=3`` keep the scoring cheap.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

import ensembles  # noqa: E402
from focal_cli import main  # noqa: E402
from focal_cli._demo import cache_root, digits_pool, format_demo, run_demo  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SIZES = "3-4"
TOP_K = 3


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two runs with the same seed and cache folder: the first fits, the second reuses."""
    cache = tmp_path_factory.mktemp("cache")
    logs1: list[str] = []
    here = os.getcwd()
    os.chdir(cache)  # the default plot goes to the current folder
    try:
        doc1 = run_demo(seed=0, top_k=TOP_K, sizes=SIZES, cache_dir=cache, log=logs1.append)
        bundle_path = Path(doc1["cache"]["bundle"])
        mtime = bundle_path.stat().st_mtime_ns
        logs2: list[str] = []
        doc2 = run_demo(seed=0, top_k=TOP_K, sizes=SIZES, cache_dir=cache, log=logs2.append)
    finally:
        os.chdir(here)
    return {
        "cache": cache,
        "doc1": doc1,
        "doc2": doc2,
        "logs1": logs1,
        "logs2": logs2,
        "mtime1": mtime,
        "mtime2": bundle_path.stat().st_mtime_ns,
    }


def _rec_members(doc: dict[str, Any]) -> list[list[str]]:
    return [t["members"] for t in doc["recommended"]]


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "focal-fusion"
    assert cache_root(tmp_path / "explicit") == tmp_path / "explicit" / "focal-fusion"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "focal-fusion"


def test_pool_bundle(demo: dict[str, Any]) -> None:
    path = cache_root(demo["cache"]) / "digits_pool_seed0.npz"
    assert Path(demo["doc1"]["cache"]["bundle"]) == path and path.is_file()
    bundle = digits_pool(seed=0, cache_dir=demo["cache"])
    assert bundle.n_models >= 12
    assert len(set(bundle.models)) == bundle.n_models
    assert bundle.n_classes == 10
    assert bundle.task == "digits"
    assert bundle.probs is not None and bundle.probs.shape[:2] == (bundle.n_models, 1079)
    assert bundle.split is not None
    counts = {s: int((bundle.split == s).sum()) for s in ensembles.SPLIT_NAMES}
    assert all(abs(c - bundle.n_samples / 3) <= 2 for c in counts.values()), counts
    # Stratified: every class appears in every split.
    for s in ensembles.SPLIT_NAMES:
        assert set(bundle.labels[bundle.split == s].tolist()) == set(range(10))
    # The bundle's samples are the 60% of digits not used to fit the models.
    ids = np.asarray(bundle.sample_ids)
    assert len(np.unique(ids)) == bundle.n_samples and ids.min() >= 0 and ids.max() < 1797
    doc = demo["doc1"]
    assert doc["samples"]["fit"] + bundle.n_samples == 1797
    assert doc["samples"] == {"fit": 1797 - bundle.n_samples, **counts}
    # Every model beats chance by far on test; they differ (distinct error patterns).
    test_acc = [m["test_accuracy"] for m in doc["models"]]
    assert min(test_acc) > 0.5
    errors = bundle.errors
    assert len({e.tobytes() for e in errors}) == bundle.n_models


def test_second_call_reuses_cache(demo: dict[str, Any]) -> None:
    assert any("fitting" in m for m in demo["logs1"])
    assert any("fitted" in m and " s" in m for m in demo["logs1"])  # reports the fit time
    assert not any("fitting" in m for m in demo["logs2"])
    assert any("using cached pool" in m for m in demo["logs2"])
    assert demo["mtime1"] == demo["mtime2"]
    assert demo["doc1"]["cache"]["cached"] is False
    assert demo["doc1"]["cache"]["fit_seconds"] > 0
    assert demo["doc2"]["cache"]["cached"] is True
    assert demo["doc2"]["cache"]["fit_seconds"] is None


def test_same_seed_same_result(demo: dict[str, Any]) -> None:
    doc1, doc2 = demo["doc1"], demo["doc2"]
    assert _rec_members(doc1) == _rec_members(doc2)
    keys = ("recommended", "best_single", "pool", "accuracy_pick", "all_teams", "sizes", "task")
    for key in keys:
        assert doc1[key] == doc2[key]


def test_refit_is_deterministic_and_corrupt_cache_is_replaced(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    """A fresh fit with the same seed (no global RNG) gives the same outputs and teams."""
    bad = cache_root(tmp_path) / "digits_pool_seed0.npz"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not an npz file")
    logs: list[str] = []
    doc = run_demo(seed=0, top_k=TOP_K, sizes=SIZES, cache_dir=tmp_path, plot=None, log=logs.append)
    assert any("cannot read cached pool" in m for m in logs)
    assert any("fitting" in m for m in logs)
    assert doc["plot"] is None
    assert _rec_members(doc) == _rec_members(demo["doc1"])
    assert doc["models"][0]["val_accuracy"] == demo["doc1"]["models"][0]["val_accuracy"]
    fresh = ensembles.load_bundle(bad)
    cached = digits_pool(seed=0, cache_dir=demo["cache"])
    np.testing.assert_array_equal(fresh.preds, cached.preds)
    np.testing.assert_allclose(fresh.probs, cached.probs)


def test_recommendations(demo: dict[str, Any]) -> None:
    doc = demo["doc1"]
    rec = doc["recommended"]
    assert [t["rank"] for t in rec] == list(range(1, TOP_K + 1))
    focal_scores = [t["focal_val"] for t in rec]
    assert focal_scores == sorted(focal_scores, reverse=True)
    assert doc["sizes"] == [3, 4]
    assert doc["n_teams"] == 364 + 1001  # C(14, 3) + C(14, 4)
    assert doc["metric"] == "focal" and doc["seed"] == 0 and doc["top_k"] == TOP_K
    names = {m["name"] for m in doc["models"]}
    for t in rec:
        assert t["size"] == len(t["members"]) and t["size"] in (3, 4)
        assert set(t["members"]) <= names
        for key in ("focal_val", "plurality_val", "plurality_test", "soft_test", "test_percentile"):
            assert 0.0 <= t[key] <= 1.0, (key, t[key])
    # The accuracy-only pick has the best val accuracy of all the teams considered.
    pick = doc["accuracy_pick"]
    assert all(pick["plurality_val"] >= t["plurality_val"] for t in rec)
    assert pick["size"] in (3, 4) and 0.0 <= pick["focal_val"] <= 1.0
    # Best single model: chosen on val.
    best = doc["best_single"]
    assert best["val_accuracy"] == max(m["val_accuracy"] for m in doc["models"])
    by_name = {m["name"]: m for m in doc["models"]}
    assert best["test_accuracy"] == by_name[best["name"]]["test_accuracy"]
    pool = doc["pool"]
    assert pool["size"] == len(doc["models"])
    for value in (pool["plurality_val"], pool["plurality_test"], pool["soft_test"]):
        assert 0.0 <= value <= 1.0
    teams = doc["all_teams"]
    assert teams["plurality_test_median"] <= teams["plurality_test_max"] <= 1.0


def test_report_numbers_match_library(demo: dict[str, Any]) -> None:
    """The reported test accuracies agree with ensembles.team_accuracy on the test split."""
    import focal

    bundle = digits_pool(seed=0, cache_dir=demo["cache"])
    test = bundle.select_split("test")
    val = bundle.select_split("val")
    doc = demo["doc1"]
    teams = [tuple(t["members"]) for t in doc["recommended"]]
    np.testing.assert_allclose(
        ensembles.team_accuracy(test, teams), [t["plurality_test"] for t in doc["recommended"]]
    )
    np.testing.assert_allclose(
        ensembles.team_accuracy(test, teams, combiner="soft"),
        [t["soft_test"] for t in doc["recommended"]],
    )
    np.testing.assert_allclose(
        focal.score_teams(val, teams), [t["focal_val"] for t in doc["recommended"]]
    )


def test_json_ready_and_plot(demo: dict[str, Any]) -> None:
    doc = demo["doc1"]
    text = json.dumps(doc, allow_nan=False)
    assert json.loads(text) == doc
    plot = Path(doc["plot"])
    assert plot == Path(demo["cache"]) / "focal_demo_teams_seed0.png"  # the current folder
    assert plot.read_bytes()[:8] == PNG_MAGIC
    assert not [p for p in plot.parent.iterdir() if p.name.endswith(".tmp")]


def test_format_demo(demo: dict[str, Any]) -> None:
    doc = demo["doc1"]
    text = format_demo(doc)
    assert "Recommended: top 3 of 1,365 teams of sizes 3-4" in text
    assert "best single model" in text and "whole pool" in text
    assert "accuracy-only pick" in text
    for m in doc["models"]:
        assert m["name"] in text
    assert doc["plot"] in text
    assert "fitted in" in text and "reused" in format_demo(demo["doc2"])
    assert "plot: not written" in format_demo({**doc, "plot": None})


def test_explicit_plot_path(demo: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "sub" / "teams.png"
    doc = run_demo(seed=0, top_k=2, sizes=3, cache_dir=demo["cache"], plot=out)
    assert doc["plot"] == str(out) and out.read_bytes()[:8] == PNG_MAGIC
    assert doc["sizes"] == [3] and len(doc["recommended"]) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"top_k": 0}, "top-k"),
        ({"sizes": "1-2"}, "sizes"),
        ({"sizes": "3-20"}, "sizes"),
    ],
)
def test_bad_arguments(demo: dict[str, Any], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        run_demo(cache_dir=demo["cache"], plot=None, **kwargs)


def test_cli_json(
    demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", os.fspath(demo["cache"]))
    monkeypatch.chdir(demo["cache"])
    rc = main(["demo", "--format", "json", "--sizes", SIZES, "--top-k", str(TOP_K)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    doc = json.loads(captured.out)
    assert doc["cache"]["cached"] is True  # found through $XDG_CACHE_HOME: no refit
    assert "using cached pool" in captured.err and "fitting" not in captured.err
    assert _rec_members(doc) == _rec_members(demo["doc1"])
    assert Path(doc["plot"]).read_bytes()[:8] == PNG_MAGIC
    assert Path(doc["plot"]).parent == Path(demo["cache"])


def test_cli_table_and_no_plot(
    demo: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", os.fspath(demo["cache"]))
    rc = main(["demo", "--sizes", "3", "--top-k", "2", "--no-plot"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Recommended: top 2 of 364 teams of sizes 3" in captured.out
    assert "plot: not written" in captured.out
    out = tmp_path / "p.png"
    rc = main(["demo", "--sizes", "3", "--top-k", "1", "--plot", str(out), "--format", "json"])
    captured = capsys.readouterr()
    assert rc == 0 and json.loads(captured.out)["plot"] == str(out)
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_cli_bad_sizes(
    demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", os.fspath(demo["cache"]))
    rc = main(["demo", "--sizes", "1-2", "--no-plot"])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    assert captured.err.strip().splitlines()[-1].startswith("focal: error: sizes")
