"""The fast path on the real LLM outputs of ../shared/data (skipped when the files are absent).

Golden values: ALGORITHMS.md §9.3 and data/README.md §1.4 (aggregates only, no copied arrays).
"""

from __future__ import annotations

import numpy as np
import pytest

import ensembles
import focal

from reference import METRIC_NAMES, ref_metric


@pytest.fixture(scope="module")
def mmlu(request):
    from conftest import shared_data_dir

    path = shared_data_dir() / "mmlu_pro_29llm.npz"
    if not path.is_file():
        pytest.skip(f"shared data file {path} is absent (set FOCAL_DATA_DIR)")
    return ensembles.load_bundle(path)


@pytest.fixture(scope="module")
def bbh():
    from conftest import shared_data_dir

    path = shared_data_dir() / "bbh_5llm_marl_focal.npz"
    if not path.is_file():
        pytest.skip(f"shared data file {path} is absent (set FOCAL_DATA_DIR)")
    return ensembles.load_tasks(path)


def test_mmlu_golden_focal_values(mmlu):
    full = focal.score_teams(mmlu, [list(mmlu.models)])[0]
    assert full == pytest.approx(0.198731, abs=1e-6)

    best2 = focal.prune(mmlu, sizes=2, top_k=1).teams[0]
    assert set(best2.members) == {"Llama-2-7b-hf", "gemini-1.5-pro-002"}
    assert best2.score == pytest.approx(0.280422, abs=1e-6)
    assert best2.accuracy == pytest.approx(0.4640, abs=1e-4)

    best3 = focal.prune(mmlu, sizes=3, top_k=1).teams[0]
    assert set(best3.members) == {
        "Llama-2-7b-hf",
        "Meta-Llama-3_1-70B-Instruct",
        "gemini-1.5-pro-002",
    }
    assert best3.score == pytest.approx(0.257646, abs=1e-6)
    assert best3.accuracy == pytest.approx(0.6251, abs=1e-4)


def test_mmlu_fitness_optimum_by_exhaustive_scoring(mmlu):
    """ALGORITHMS §9.3: best size-3 team by 0.5·focal + 0.5·plurality accuracy."""
    masks, scores = focal.score_all(mmlu, sizes=3)
    fitness = 0.5 * scores + 0.5 * ensembles.team_accuracy(mmlu, masks)
    best = int(np.argmax(fitness))
    members = {m for m, keep in zip(mmlu.models, masks[best], strict=True) if keep}
    assert members == {
        "Meta-Llama-3_1-70B-Instruct",
        "gemini-1.5-flash-002",
        "gemini-1.5-pro-002",
    }
    assert fitness[best] == pytest.approx(0.454457, abs=1e-6)
    assert scores[best] == pytest.approx(0.212188, abs=1e-6)


def test_mmlu_every_metric_matches_reference(mmlu):
    team = [0, 5, 9, 20]
    for name in METRIC_NAMES:
        fast = focal.score_teams(mmlu, [team], metric=name)[0]
        assert fast == pytest.approx(ref_metric(name, mmlu.preds, mmlu.labels, team), abs=1e-6)


def test_bbh_every_metric_matches_reference_on_every_task(bbh):
    rng = np.random.default_rng(0)
    for task, bundle in bbh.items():
        team = sorted(rng.choice(bundle.n_models, size=3, replace=False).tolist())
        for name in METRIC_NAMES:
            fast = focal.score_teams(bundle, [team], metric=name)[0]
            ref = ref_metric(name, bundle.preds, bundle.labels, team)
            assert fast == pytest.approx(ref, abs=1e-6, nan_ok=True), (task, name)


def test_bbh_headline_accuracies(bbh):
    """data/README.md §1.4, 24 tasks, all rows, fixed labels."""
    correct_single = np.zeros(5)
    correct_plurality = correct_soft = oracle = rows = 0
    everyone = np.ones((1, 5), dtype=bool)
    for bundle in bbh.values():
        rows += bundle.n_samples
        correct_single += bundle.accuracies() * bundle.n_samples
        correct_plurality += ensembles.team_accuracy(bundle, everyone)[0] * bundle.n_samples
        correct_soft += (
            ensembles.team_accuracy(bundle, everyone, combiner="soft")[0] * bundle.n_samples
        )
        oracle += bundle.oracle_accuracy() * bundle.n_samples
    assert rows == 5761
    assert correct_single / rows == pytest.approx(
        [0.3126, 0.4685, 0.4084, 0.4546, 0.4199], abs=1e-4
    )
    assert correct_plurality / rows == pytest.approx(0.4794, abs=1e-4)
    assert correct_soft / rows == pytest.approx(0.4598, abs=1e-4)
    assert oracle / rows == pytest.approx(0.7820, abs=1e-4)
