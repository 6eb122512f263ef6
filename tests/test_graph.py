"""``focal._graph``: the networkx view of a pool and the ``focal graph`` subcommand.

Edge weights are checked against :func:`focal.score_teams` on each pair (one call per pair)
and against a direct NumPy computation of the focal negative correlation of a pair; exports are
round-tripped through networkx's own readers; drawings are checked by their magic bytes and
for reproducibility. One pool is made of real scikit-learn classifiers trained on iris.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

nx = pytest.importorskip("networkx")
pytest.importorskip("matplotlib")

import ensembles  # noqa: E402
import focal  # noqa: E402
import focal_cli  # noqa: E402
from focal.graph import (  # noqa: E402
    draw_graph,
    graph_layout,
    partners,
    pool_graph,
    read_graph,
    to_json,
    write_graph,
)

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def bundle() -> ensembles.Bundle:
    """6 models, 3 classes, 60 samples, some abstentions."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=60)
    preds = np.where(rng.random((6, 60)) < 0.7, labels[None, :], rng.integers(0, 3, (6, 60)))
    preds[2, :5] = -1
    return ensembles.Bundle.create(
        models=[f"m{i}" for i in range(6)], labels=labels, preds=preds, n_classes=3, task="toy"
    )


@pytest.fixture(scope="module")
def iris_bundle() -> ensembles.Bundle:
    """5 scikit-learn classifiers of different families, trained on half of iris (2 features)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X[:, :2], y, test_size=0.5, random_state=0)
    models = {
        "logreg": LogisticRegression(max_iter=500),
        "tree": DecisionTreeClassifier(max_depth=2, random_state=0),
        "knn": KNeighborsClassifier(n_neighbors=3),
        "nb": GaussianNB(),
        "deep_tree": DecisionTreeClassifier(random_state=1),
    }
    fitted = {name: est.fit(X_tr, y_tr) for name, est in models.items()}
    return ensembles.from_sklearn(fitted, X_te, y_te)


@pytest.fixture(scope="module")
def perfect_bundle() -> ensembles.Bundle:
    """Two models that are never wrong (their pair has an undefined focal score)."""
    return ensembles.Bundle.create(
        models=["p", "q", "r"],
        labels=[0, 1, 0, 1],
        preds=[[0, 1, 0, 1], [0, 1, 0, 1], [1, 1, 0, 0]],
    )


@pytest.fixture(scope="module")
def bundle_file(tmp_path_factory: pytest.TempPathFactory, bundle: ensembles.Bundle) -> Path:
    path = tmp_path_factory.mktemp("graph") / "pool.npz"
    ensembles.save_bundle(bundle, path)
    return path


def _pairs(m: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(m) for j in range(i + 1, m)]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def _assert_same_graph(g: nx.Graph, h: nx.Graph) -> None:
    assert list(h.nodes) == list(g.nodes)
    assert {frozenset(e) for e in h.edges} == {frozenset(e) for e in g.edges}
    for n, data in g.nodes(data=True):
        assert set(h.nodes[n]) == set(data)
        for k, v in data.items():
            assert _same(float(h.nodes[n][k]), float(v)), (n, k)
    for u, v, data in g.edges(data=True):
        assert set(h.edges[u, v]) == set(data)
        for k, x in data.items():
            assert _same(float(h.edges[u, v][k]), float(x)), (u, v, k)
    for k, v in g.graph.items():
        assert h.graph[k] == v


# ------------------------------------------------------------------------------ structure


def test_structure_and_attributes(bundle: ensembles.Bundle) -> None:
    g = pool_graph(bundle)
    m = bundle.n_models
    assert isinstance(g, nx.Graph) and not g.is_directed()
    assert list(g.nodes) == list(bundle.models)
    assert g.number_of_nodes() == m
    assert g.number_of_edges() == m * (m - 1) // 2
    assert nx.number_of_selfloops(g) == 0
    assert g.graph == {
        "metric": "focal",
        "direction": "higher",
        "n_models": 6,
        "n_samples": 60,
        "n_classes": 3,
        "task": "toy",
    }
    acc = bundle.accuracies()
    for i, name in enumerate(bundle.models):
        node = g.nodes[name]
        assert node["index"] == i
        assert node["accuracy"] == pytest.approx(acc[i])
        assert node["error_rate"] == pytest.approx(1 - acc[i])
        assert node["abstain_rate"] == pytest.approx((bundle.preds[i] < 0).mean())
    assert g.nodes["m2"]["abstain_rate"] == pytest.approx(5 / 60)
    for _, _, data in g.edges(data=True):
        assert set(data) == {"weight", "correlation", "accuracy"}
        assert 0.0 <= data["weight"] <= 1.0


@pytest.mark.parametrize("metric", ["focal", "q_statistic", "focal_cohen_kappa", "entropy"])
def test_weights_equal_score_teams_per_pair(bundle: ensembles.Bundle, metric: str) -> None:
    g = pool_graph(bundle, metric=metric)
    assert g.graph["metric"] == metric
    assert g.graph["direction"] == focal.metric_spec(metric).direction
    for i, j in _pairs(bundle.n_models):
        a, b = bundle.models[i], bundle.models[j]
        expected = float(focal.score_teams(bundle, [(a, b)], metric=metric)[0])
        assert _same(g.edges[a, b]["weight"], expected), (a, b)
        rho = float(focal.score_teams(bundle, [(a, b)], metric="correlation")[0])
        assert g.edges[a, b]["correlation"] == pytest.approx(rho, abs=1e-12)
        acc = float(ensembles.team_accuracy(bundle, [(a, b)])[0])
        assert g.edges[a, b]["accuracy"] == pytest.approx(acc, abs=1e-12)


def test_focal_negative_correlation_of_a_pair(iris_bundle: ensembles.Bundle) -> None:
    """Direct definition: GD_f on N_f for L=2 is (1-x)/(1+x), x = shared fraction of f's errors."""
    g = pool_graph(iris_bundle)
    E = iris_bundle.errors.astype(bool)
    assert g.number_of_nodes() == 5 and g.number_of_edges() == 10
    for i, j in _pairs(iris_bundle.n_models):
        values = []
        for f, o in ((i, j), (j, i)):
            if E[f].sum():
                x = (E[f] & E[o]).sum() / E[f].sum()
                values.append((1 - x) / (1 + x))
        expected = float(np.mean(values)) if values else math.nan
        a, b = iris_bundle.models[i], iris_bundle.models[j]
        assert _same(g.edges[a, b]["weight"], expected), (a, b)
    for name, acc in zip(iris_bundle.models, iris_bundle.accuracies(), strict=True):
        assert g.nodes[name]["accuracy"] == pytest.approx(acc)


def test_correlation_metric_reuses_rho(bundle: ensembles.Bundle) -> None:
    g = pool_graph(bundle, metric="correlation")
    for _, _, data in g.edges(data=True):
        assert data["weight"] == data["correlation"]


def test_undefined_pair_is_nan(perfect_bundle: ensembles.Bundle) -> None:
    g = pool_graph(perfect_bundle)
    assert math.isnan(g.edges["p", "q"]["weight"])
    assert g.edges["p", "r"]["weight"] == 1.0 and g.edges["q", "r"]["weight"] == 1.0
    assert g.edges["p", "q"]["accuracy"] == 1.0
    best = partners(g)
    assert best["p"] == {"most_diverse": ("r", 1.0), "least_diverse": ("r", 1.0)}
    assert best["r"]["most_diverse"] == ("p", 1.0)  # tie: first in node order


def test_partners_follow_direction(bundle: ensembles.Bundle) -> None:
    for metric in ("focal", "q_statistic"):
        g = pool_graph(bundle, metric=metric)
        sign = 1.0 if g.graph["direction"] == "higher" else -1.0
        for node, best in partners(g).items():
            keys = {o: sign * g.edges[node, o]["weight"] for o in g.adj[node]}
            assert best["most_diverse"][0] == max(keys, key=keys.get)
            assert best["least_diverse"][0] == min(keys, key=keys.get)


def test_bad_input(bundle: ensembles.Bundle) -> None:
    with pytest.raises(ValueError, match="metric"):
        pool_graph(bundle, metric="nope")
    with pytest.raises(ValueError, match="bundle"):
        pool_graph({"models": []})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ exports


def test_to_json_is_strict_node_link(perfect_bundle: ensembles.Bundle) -> None:
    g = pool_graph(perfect_bundle)
    doc = to_json(g)
    text = json.dumps(doc, allow_nan=False)  # strict: raises on NaN
    doc = json.loads(text)
    assert doc["directed"] is False and doc["multigraph"] is False
    assert [n["id"] for n in doc["nodes"]] == ["p", "q", "r"]
    edge = next(e for e in doc["edges"] if {e["source"], e["target"]} == {"p", "q"})
    assert edge["weight"] is None
    h = nx.node_link_graph(doc, edges="edges")
    assert h.edges["p", "r"]["weight"] == 1.0 and h.edges["p", "q"]["weight"] is None


@pytest.mark.parametrize("suffix", [".json", ".graphml", ".GraphML"])
def test_round_trip(tmp_path: Path, bundle: ensembles.Bundle, suffix: str) -> None:
    g = pool_graph(bundle)
    out = write_graph(g, tmp_path / "sub" / f"pool{suffix}")
    assert out.is_file() and out.parent.name == "sub"
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary files left
    _assert_same_graph(g, read_graph(out))


def test_graphml_read_by_networkx(tmp_path: Path, perfect_bundle: ensembles.Bundle) -> None:
    g = pool_graph(perfect_bundle)
    out = write_graph(g, tmp_path / "pool.graphml")
    assert "nan" not in out.read_text().lower()  # undefined weights are left out
    h = nx.read_graphml(out)
    assert sorted(h.nodes) == ["p", "q", "r"]
    assert h.nodes["q"]["index"] == 1 and h.nodes["q"]["accuracy"] == 1.0
    assert "weight" not in h.edges["p", "q"] and h.edges["p", "q"]["accuracy"] == 1.0
    assert h.edges["p", "r"]["weight"] == 1.0
    assert h.graph["metric"] == "focal" and h.graph["n_samples"] == 4
    restored = read_graph(out)
    assert math.isnan(restored.edges["p", "q"]["weight"])
    _assert_same_graph(g, restored)


def test_json_file_round_trip_restores_nan(
    tmp_path: Path, perfect_bundle: ensembles.Bundle
) -> None:
    g = pool_graph(perfect_bundle)
    out = write_graph(g, tmp_path / "pool.json")
    doc = json.loads(out.read_text())
    assert doc == json.loads(json.dumps(to_json(g), allow_nan=False))
    _assert_same_graph(g, read_graph(out))


@pytest.mark.parametrize("name", ["pool.gml", "pool", "pool.json.gz", "pool.png"])
def test_bad_suffix_refused(tmp_path: Path, bundle: ensembles.Bundle, name: str) -> None:
    g = pool_graph(bundle)
    with pytest.raises(ValueError, match=r"\.graphml or \.json") as info:
        write_graph(g, tmp_path / name)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"\.graphml or \.json"):
        read_graph(tmp_path / name)


def test_read_graph_refuses_other_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"a": 1}')
    with pytest.raises(ValueError, match="node-link"):
        read_graph(path)


# ------------------------------------------------------------------------------ drawing


def test_png_written(tmp_path: Path, iris_bundle: ensembles.Bundle) -> None:
    out = draw_graph(pool_graph(iris_bundle), tmp_path / "figs" / "pool.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in out.parent.iterdir()] == ["pool.png"]


def test_draw_other_formats_and_options(tmp_path: Path, perfect_bundle: ensembles.Bundle) -> None:
    g = pool_graph(perfect_bundle)  # has a NaN edge: drawn dashed
    svg = draw_graph(g, tmp_path / "pool.svg", layout="circular", edge_labels=True, title="t")
    assert b"<svg" in svg.read_bytes()[:400]
    kk = draw_graph(g, tmp_path / "kk.png", layout="kamada_kawai", edge_labels=False)
    assert kk.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="suffix"):
        draw_graph(g, tmp_path / "pool.gif")
    with pytest.raises(ValueError, match="layout"):
        draw_graph(g, tmp_path / "pool.png", layout="random")
    assert not (tmp_path / "pool.gif").exists() and not (tmp_path / "pool.png").exists()


def test_seeded_layout_is_reproducible(tmp_path: Path, bundle: ensembles.Bundle) -> None:
    g = pool_graph(bundle)
    state = np.random.get_state()[1].copy()
    a = graph_layout(g, seed=7)
    assert a == graph_layout(g, seed=7)
    assert a != graph_layout(g, seed=8)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global RNG untouched
    assert set(a) == set(g.nodes) and all(len(p) == 2 for p in a.values())
    assert graph_layout(g, layout="circular") == graph_layout(g, layout="circular", seed=1)
    first = draw_graph(g, tmp_path / "a.png", seed=7).read_bytes()
    assert draw_graph(g, tmp_path / "b.png", seed=7).read_bytes() == first


def test_layout_puts_least_diverse_pair_closer(iris_bundle: ensembles.Bundle) -> None:
    g = pool_graph(iris_bundle)
    pos = graph_layout(g, layout="kamada_kawai")
    edges = sorted(g.edges(data=True), key=lambda e: e[2]["weight"])

    def dist(u: str, v: str) -> float:
        return math.dist(pos[u], pos[v])

    assert dist(*edges[0][:2]) < dist(*edges[-1][:2])


def test_module_import_is_light() -> None:
    code = (
        "import sys, focal._graph; "
        "assert 'networkx' not in sys.modules and 'matplotlib' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ------------------------------------------------------------------------------ command line


def _run(argv: list[str]) -> tuple[int, str, str]:
    """Run ``focal graph`` through ``focal_cli.main``."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = focal_cli.main(argv)
    return status, out.getvalue(), err.getvalue()


def test_cli_help_has_example() -> None:
    parser = focal_cli.build_parser()
    text = parser._subparsers._group_actions[0].choices["graph"].format_help()  # type: ignore[union-attr]
    assert "focal graph outputs.npz --png pool.png --out pool.graphml" in text
    for flag in ("--task", "--split", "--metric", "--png", "--out", "--format", "--layout"):
        assert flag in text


def test_cli_table(tmp_path: Path, bundle_file: Path) -> None:
    bundle = ensembles.load_bundle(bundle_file)  # a one-task file: no task name
    png, out = tmp_path / "pool.png", tmp_path / "pool.graphml"
    status, stdout, stderr = _run(["graph", str(bundle_file), "--png", str(png), "--out", str(out)])
    assert status == 0, stderr
    assert png.read_bytes()[:8] == PNG_MAGIC
    _assert_same_graph(pool_graph(bundle), read_graph(out))
    lines = stdout.splitlines()
    assert lines[0].startswith("6 models, 15 pairs, 60 samples; edge weight focal")
    assert "most diverse partner" in lines[1]
    best = partners(pool_graph(bundle))
    for name in bundle.models:
        row = next(line for line in lines if line.startswith(name + " "))
        assert best[name]["most_diverse"][0] in row and best[name]["least_diverse"][0] in row
    assert f"wrote drawing: {png}" in stdout and f"wrote graph: {out}" in stdout


def test_cli_json(tmp_path: Path, bundle_file: Path, bundle: ensembles.Bundle) -> None:
    out = tmp_path / "pool.json"
    status, stdout, stderr = _run(
        ["graph", str(bundle_file), "--metric", "q_statistic", "--out", str(out), "--split",
         "train", "--format", "json"]
    )  # fmt: skip
    # The bundle has no split column: refused with one line.
    assert status == 2 and stdout == "" and len(stderr.strip().splitlines()) == 1
    assert not out.exists()

    status, stdout, stderr = _run(
        ["graph", str(bundle_file), "--metric", "q_statistic", "--out", str(out), "--format",
         "json"]
    )  # fmt: skip
    assert status == 0, stderr
    doc = json.loads(stdout)
    assert doc["metric"] == "q_statistic" and doc["direction"] == "lower"
    assert doc["n_models"] == 6 and doc["n_samples"] == 60 and doc["task"] is None
    assert doc["files"] == {"png": None, "out": str(out)}
    assert doc["graph"] == json.loads(out.read_text())
    assert len(doc["graph"]["edges"]) == 15 and len(doc["partners"]) == 6
    g = pool_graph(bundle, metric="q_statistic")
    best = partners(g)
    for row in doc["partners"]:
        assert row["most_diverse"]["model"] == best[row["model"]]["most_diverse"][0]


def test_cli_split_and_task(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=40)
    preds = np.where(rng.random((4, 40)) < 0.75, labels, 1 - labels)
    split = np.array(["train", "val", "test", "val"] * 10)
    b = ensembles.Bundle.create(models=list("abcd"), labels=labels, preds=preds, split=split)
    path = tmp_path / "multi.npz"
    ensembles.save_tasks({"t1": b, "t2": b.select_models(["a", "b", "c"])}, path)
    status, stdout, stderr = _run(
        ["graph", str(path), "--task", "t1", "--split", "val", "--format", "json"]
    )
    assert status == 0, stderr
    doc = json.loads(stdout)
    assert doc["n_samples"] == 20 and doc["task"] == "t1" and len(doc["graph"]["edges"]) == 6
    status, stdout, _ = _run(["graph", str(path), "--task", "t2", "--format", "json"])
    assert status == 0 and len(json.loads(stdout)["graph"]["edges"]) == 3
    status, stdout, stderr = _run(["graph", str(path), "--task", "t2"])
    assert status == 0, stderr
    assert stdout.startswith("task t2: 3 models, 3 pairs, 40 samples; edge weight focal")


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--out", "pool.gml"], "--out"),
        (["--png", "pool.gif"], "--png"),
        (["--metric", "nope"], "--metric"),
        (["--format", "xml"], "--format"),
        (["--task", "missing"], "task"),
    ],
)
def test_cli_bad_input_one_line(
    tmp_path: Path, bundle_file: Path, extra: list[str], needle: str
) -> None:
    extra = [str(tmp_path / e) if e.startswith("pool.") else e for e in extra]
    status, stdout, stderr = _run(["graph", str(bundle_file), *extra])
    assert status == 2 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("focal: error:")
    assert needle in stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_missing_bundle(tmp_path: Path) -> None:
    status, stdout, stderr = _run(["graph", str(tmp_path / "nope.npz")])
    assert status == 2 and stdout == "" and len(stderr.strip().splitlines()) == 1
