"""MARL-Focal learning: plurality check, REINFORCE toy, determinism, save/load, CLI."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import ensembles
import focal_cli
from fusers.marl import MarlConfig, MarlFocal, fit_tasks, load_marl, task_arrays
from fusers.marl._agents import init_decider

PLURALITY_ONLY = (0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _bundle(seed=0, n=150, n_test=30, m=4, c=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    acc = np.linspace(0.8, 0.35, m)
    preds = np.where(rng.random((m, n)) < acc[:, None], y, rng.integers(0, c, (m, n)))
    probs = rng.random((m, n, c)) * 0.3
    probs[np.arange(m)[:, None], np.arange(n)[None], preds] += 1.0
    split = ["train"] * (n - n_test) + ["test"] * n_test
    return ensembles.Bundle.create(
        models=[f"m{i}" for i in range(m)], labels=y, probs=probs, split=split
    )


@pytest.mark.parametrize("window", [0, 7])
def test_forced_all_ones_equals_plurality_of_all(window):
    b = _bundle(1)
    ta = task_arrays(b)
    cfg = MarlConfig.for_mode(
        "fixed",
        weights=PLURALITY_ONLY,
        window=window,
        select_passes=1,
        update_freq=25,
        val_fraction=0.0,
        guard=False,
    )
    run = fit_tasks([ta], cfg, force_all=True, phases=("select",))[0]
    first = max(window, 1)
    train = b.select_samples(np.arange(ta.n_train))
    rows = train.select_samples(np.arange(first, ta.n_train))
    expect = float(ensembles.team_accuracy(rows, [tuple(b.models)], combiner="plurality")[0])
    assert run.select_curve == [pytest.approx(expect, abs=1e-12)]


def test_reinforce_learns_to_consult_the_always_right_model_alone():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    b = ensembles.Bundle.create(
        models=["right", "wrong"],
        labels=y,
        preds=np.stack([y, 1 - y]),
        split=["train"] * 100 + ["test"] * 20,
    )
    cfg = MarlConfig.for_mode("faithful", select_passes=30, update_freq=33, window=0)
    run = fit_tasks([task_arrays(b)], cfg, phases=("select",))[0]
    assert run.select_curve[-1] >= 0.95
    gd, state = init_decider(nnx.Rngs(0)(), 2)
    nnx.replace_by_pure_dict(state, run.params["decider"])
    model = nnx.merge(gd, state)
    # the state after consulting "right" alone (the sentinel -99 for a one-member team)
    logits, _ = model(jnp.array([1.0, 0.0, -99.0, 1.0]))
    p = np.asarray(nnx.softmax(logits, axis=-1))
    assert p[0, 1] > 0.9 and p[1, 0] > 0.9  # consult "right", skip "wrong"


TINY = dict(select_passes=2, ensemble_passes=2, update_freq=20)


def test_same_seed_same_policy_bit_for_bit_and_save_load(tmp_path):
    b = _bundle(2)
    m1 = MarlFocal(seed=3, **TINY).fit(b)
    m2 = MarlFocal(seed=3, **TINY).fit(b)
    m3 = MarlFocal(seed=4, **TINY).fit(b)
    leaves = lambda m: [np.asarray(x) for x in _leaves(m.run_.params)]  # noqa: E731
    for a, c in zip(leaves(m1), leaves(m2), strict=True):
        assert a.tobytes() == c.tobytes()
    assert any(a.tobytes() != c.tobytes() for a, c in zip(leaves(m1), leaves(m3), strict=True))
    assert m1.run_.select_curve == m2.run_.select_curve
    # save / load / evaluate gives the frozen result of training again
    m1.save(tmp_path / "m")
    res = load_marl(tmp_path / "m").evaluate(b, prices=[1.0, 1.0, 1.0, 1.0])
    assert res["frozen"]["accuracy"] == m1.run_.frozen_accuracy
    assert len(res["records"]) == 30
    assert res["mean_consulted"] == pytest.approx(
        np.mean([r["n_consulted"] for r in res["records"]])
    )
    assert res["cost"] == pytest.approx(res["mean_consulted"] * 1000)
    assert (tmp_path / "m" / "curve.png").stat().st_size > 0


def test_cli_json_output(tmp_path, capsys):
    b = _bundle(2)
    path = tmp_path / "b.npz"
    ensembles.save_bundle(b, path)
    out = tmp_path / "cli"
    args = [
        "marl",
        "train",
        str(path),
        "--out",
        str(out),
        "--seed",
        "3",
        "--passes",
        "2",
        "--update-freq",
        "20",
        "--format",
        "json",
    ]
    assert focal_cli.main(args) == 0
    train_doc = json.loads(capsys.readouterr().out)
    rec = tmp_path / "q.jsonl"
    argv = ["marl", "evaluate", str(out), str(path), "--format", "json", "--records", str(rec)]
    assert focal_cli.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["accuracy"] == train_doc["frozen_accuracy"]
    assert set(doc["baselines"]) >= {"best_single", "plurality", "soft", "stacking", "oracle"}
    lines = rec.read_text().splitlines()
    assert len(lines) == 30 and json.loads(lines[0])["consulted"]


def test_cli_bad_input_one_line(tmp_path, capsys):
    b = _bundle(2)
    path = tmp_path / "b.npz"
    ensembles.save_bundle(b, path)
    code = focal_cli.main(
        ["marl", "train", str(path), "--out", str(tmp_path / "o"), "--window", "500"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "window" in err[0]
    code = focal_cli.main(["marl", "evaluate", str(tmp_path), str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not a saved MARL-Focal model" in err[0]


def _leaves(tree):
    if isinstance(tree, dict):
        for k in sorted(tree):
            yield from _leaves(tree[k])
    else:
        yield tree
