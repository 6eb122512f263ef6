"""Query features (contextual decider / router), their fit on training rows only, and the CLI
flags of the validation slice, the guard and the context."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

import ensembles
import focal_cli
from ensembles.util import InputError
from fusers.marl import (
    MarlConfig,
    MarlFocal,
    fit_router,
    fit_tasks,
    read_texts,
    task_arrays,
    text_features,
)

WORDS = "apple pear plum car bus train red blue green fast slow big small".split()


def _texts(n, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, 5)) for _ in range(n)]


def test_text_features_are_fitted_on_the_fit_rows_only():
    texts = _texts(60)
    fit = np.arange(40)
    f1 = text_features(texts, fit, dim=6)
    other = texts[:40] + ["zebra quantum " * 3] * 20  # unseen rows replaced
    f2 = text_features(other, fit, dim=6)
    assert f1.shape == (60, 6) and f1.dtype == np.float32
    assert np.array_equal(f1[:40], f2[:40])
    np.testing.assert_allclose(f1[:40].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(f1[:40].std(axis=0), 1.0, atol=1e-4)


def test_text_features_bad_input():
    with pytest.raises(InputError, match="no training rows"):
        text_features(["a b"], [])
    with pytest.raises(InputError, match="out of range"):
        text_features(["a b"], [3])


def test_read_texts_matches_ids_and_refuses_missing(tmp_path):
    p = tmp_path / "t.jsonl.gz"
    with gzip.open(p, "wt") as f:
        for i in (5, 3, 9):
            f.write(json.dumps({"question_id": i, "q": f"q{i}", "opts": ["x", "y"]}) + "\n")
    got = read_texts(p, [3, 9], text_field="q,opts", id_field="question_id")
    assert got == ["q3 x y", "q9 x y"]
    with pytest.raises(InputError, match="no text for sample id 4"):
        read_texts(p, [3, 4], text_field="q", id_field="question_id")
    with pytest.raises(InputError, match="no 'id' field"):
        read_texts(p, [3])


def _bundle(seed=0, n=150, n_test=30, m=3, c=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    acc = np.linspace(0.7, 0.4, m)
    preds = np.where(rng.random((m, n)) < acc[:, None], y, rng.integers(0, c, (m, n)))
    split = ["train"] * (n - n_test) + ["test"] * n_test
    return ensembles.Bundle.create(
        models=[f"m{i}" for i in range(m)],
        labels=y,
        preds=preds,
        split=split,
        sample_ids=np.arange(100, 100 + n),
    )


TINY = dict(select_passes=2, ensemble_passes=2, update_freq=25)


def test_contextual_decider_sees_the_features_and_reads_no_test_text():
    b = _bundle(1)
    texts = _texts(b.n_samples, 1)
    m = MarlFocal(seed=2, context="tfidf", context_dim=4, **TINY).fit(b, texts=texts)
    assert np.asarray(m.run_.params["decider"]["trunk"]["kernel"]).shape[0] == 3 + 2 + 4
    garbage = texts[:120] + ["zebra"] * 30  # test texts replaced
    m2 = MarlFocal(seed=2, context="tfidf", context_dim=4, **TINY).fit(b, texts=garbage)
    k1 = np.asarray(m.run_.params["decider"]["trunk"]["kernel"])
    k2 = np.asarray(m2.run_.params["decider"]["trunk"]["kernel"])
    assert k1.tobytes() == k2.tobytes()
    with pytest.raises(InputError, match="texts"):
        MarlFocal(context="tfidf", **TINY).fit(b)


def test_zero_length_context_is_the_reference_decider():
    b = _bundle(2)
    cfg = MarlConfig.for_mode("fixed", **TINY)
    r0 = fit_tasks([task_arrays(b)], cfg)[0]
    r1 = fit_tasks([task_arrays(b, context=np.zeros((b.n_samples, 0)))], cfg)[0]
    assert r0.frozen_teams.tolist() == r1.frozen_teams.tolist()
    assert r0.select_curve == r1.select_curve


def test_router_context_guard_and_no_test_judgment():
    rng = np.random.default_rng(0)
    q = (rng.random((3, 80)) < [[0.8], [0.5], [0.2]]).astype(float)
    ctx = rng.normal(size=(80, 4)).astype(np.float32)
    kw = dict(passes=2, context=ctx, val_fraction=0.25, guard=True)
    r1 = fit_router(q, np.arange(60), np.arange(60, 80), **kw)[0]
    q2 = q.copy()
    q2[:, 60:] = rng.random((3, 20))  # garbage test judgments
    r2 = fit_router(q2, np.arange(60), np.arange(60, 80), **kw)[0]
    assert r1.choices.tolist() == r2.choices.tolist()
    assert (r1.val, r1.val_best_single, r1.fallback) == (r2.val, r2.val_best_single, r2.fallback)
    if r1.fallback:
        assert set(r1.choices.tolist()) == {r1.best_single[0]}
    with pytest.raises(InputError, match="context"):
        fit_router(q, np.arange(60), np.arange(60, 80), passes=1, context=ctx[:5])
    with pytest.raises(InputError, match="guard"):
        fit_router(q, np.arange(60), np.arange(60, 80), passes=1, guard=True)


def _save(tmp_path, b):
    path = tmp_path / "b.npz"
    ensembles.save_bundle(b, path)
    return path


def test_cli_guard_flags(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    b = ensembles.Bundle.create(
        models=["right", "noise"],
        labels=y,
        preds=np.stack([y, rng.integers(0, 3, 120)]),
        split=["train"] * 100 + ["test"] * 20,
    )
    path = _save(tmp_path, b)
    base = ["marl", "train", str(path), "--passes", "2", "--update-freq", "25"]
    assert focal_cli.main([*base, "--out", str(tmp_path / "g"), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["validation"]["fallback"] is True and doc["frozen_accuracy"] == 1.0
    # the saved policy keeps the guard's choice
    rec = tmp_path / "q.jsonl"
    argv = ["marl", "evaluate", str(tmp_path / "g"), str(path), "--format", "json"]
    assert focal_cli.main([*argv, "--records", str(rec)]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["fallback"] is True and ev["accuracy"] == 1.0
    assert {tuple(json.loads(x)["consulted"]) for x in rec.read_text().splitlines()} == {("right",)}
    argv = [*base, "--out", str(tmp_path / "n"), "--no-guard", "--val-fraction", "0.3"]
    assert focal_cli.main([*argv, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["validation"]["fallback"] is False
    assert doc["frozen_accuracy"] == doc["validation"]["router_frozen_accuracy"]
    code = focal_cli.main([*base, "--out", str(tmp_path / "x"), "--val-fraction", "1.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "val_fraction" in err[0]


def test_cli_context(tmp_path, capsys):
    b = _bundle(3)
    path = _save(tmp_path, b)
    tpath = tmp_path / "texts.jsonl"
    tpath.write_text(
        "".join(
            json.dumps({"qid": int(i), "body": t}) + "\n"
            for i, t in zip(b.sample_ids, _texts(b.n_samples, 3), strict=True)
        )
    )
    out = tmp_path / "m"
    base = ["marl", "train", str(path), "--out", str(out), "--passes", "2", "--update-freq", "25"]
    code = focal_cli.main([*base, "--context", "tfidf"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--texts" in err[0]
    ctx = ["--context", "tfidf", "--texts", str(tpath), "--id-field", "qid", "--text-field", "body"]
    assert focal_cli.main([*base, *ctx, "--context-dim", "5", "--format", "json"]) == 0
    train_doc = json.loads(capsys.readouterr().out)
    assert train_doc["context"] == "tfidf"
    # evaluate finds the texts from the training run and reproduces the frozen result
    assert focal_cli.main(["marl", "evaluate", str(out), str(path), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["accuracy"] == train_doc["frozen_accuracy"]
    code = focal_cli.main(
        ["marl", "evaluate", str(out), str(path), "--texts", str(tpath), "--id-field", "nope"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nope" in err[0]
