"""Smoke tests of the fusers on the shared bundles (skipped when the files are absent)."""

from __future__ import annotations

import numpy as np

import ensembles
import fusers


def test_bbh_task_topla(shared_data):
    path = shared_data("bbh_5llm_marl_focal.npz")
    b = ensembles.load_bundle(path, task="sports_understanding")
    r = fusers.topla(b, sizes=(2, 3), fuser_params={"epochs": 20, "batch_size": 4})
    assert r.splits["source"] == "bundle+val"
    assert r.splits["sizes"] == {"train": 160, "val": 40, "test": 50}
    assert set(r.team) <= set(b.models) and 2 <= len(r.team) <= 3
    # the level-A baselines of the file are reproduced on its test rows
    test = b.select_split("test")
    assert r.baselines["pool_plurality"] == ensembles.team_accuracy(test, [b.models])[0]
    assert 0.0 <= r.accuracy <= 1.0 and r.baselines["soft"] is not None


def test_mmlu_pro_fuser_beats_the_pool_vote(shared_data):
    path = shared_data("mmlu_pro_29llm.npz")
    b = ensembles.with_random_split(ensembles.load_bundle(path), fractions=(0.7, 0.1, 0.2), seed=0)
    team = ["gemini-1.5-pro-002", "gemini-1.5-flash-002", "Meta-Llama-3_1-70B-Instruct"]
    f = fusers.ToplaFuser(epochs=15, seed=0).fit(b, team=team)
    assert f.scores_mode_ == "onehot" and f.n_features_in_ == 30
    acc = f.score(b, split="test")
    pool = ensembles.team_accuracy(b.select_split("test"), [b.models])[0]
    assert acc > pool + 0.05  # 29-model plurality is ~0.60; this team's fuser ~0.70
    assert np.isfinite(f.history_["loss"]).all()
