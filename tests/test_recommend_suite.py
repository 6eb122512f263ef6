"""bench.recommend_suite: its copy of the shipped selection rule agrees with focal.recommend."""

from __future__ import annotations

import numpy as np
import pytest


def test_suite_datasets_are_seeded_and_labelled():
    from bench import recommend_suite as rs

    for name in rs.DATASETS:
        x, y = rs.make_dataset(name, 0)
        assert x.ndim == 2 and len(x) == len(y) and len(np.unique(y)) >= 2
    a, _ = rs.make_dataset("moons", 1)
    b, _ = rs.make_dataset("moons", 1)
    c, _ = rs.make_dataset("moons", 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bits_round_trip():
    from bench import recommend_suite as rs

    v = np.array([True, False, False, True, True])
    np.testing.assert_array_equal(rs._unbits(rs._bits(v)), v)


@pytest.mark.parametrize("name", ["iris", "moons"])
def test_shipped_rule_matches_focal_recommend(name):
    from bench import recommend_suite as rs

    run = rs.run_fresh(name, 0)
    ev = run["evidence"]
    pick = rs.keep_single()(ev)
    assert rs._unbits(ev["report"][pick]).mean() == pytest.approx(
        run["recommendation"]["accuracy"], abs=1e-12
    )
    assert rs._unbits(ev["report"][rs.SINGLE]).mean() == pytest.approx(
        run["recommendation"]["best_single"], abs=1e-12
    )
    # every candidate was cross-validated on every selection row and scored on every test row
    assert {len(v) for v in ev["cv"].values()} == {run["n_select"]}
    assert {len(v) for v in ev["report"].values()} == {run["n_test"]}
    assert set(ev["order"]) == set(ev["cv"])
    # alpha 0: nothing displaces the kept procedure
    assert rs.keep_pool_stacking(0.0)(ev) == rs.POOL_STACKING
    assert rs.keep_single(0.0)(ev) == rs.SINGLE


def test_ceiling_counts_runs_where_some_candidate_beats_the_single_model():
    from bench import recommend_suite as rs

    def run(single, others, cv_best):
        report = {rs.SINGLE: single, **others}
        cv = {k: "1" * 8 for k in report}  # equal CV: the shipped rule keeps the single model
        return {"evidence": {"order": [cv_best, rs.SINGLE], "cv": cv, "report": report}}

    runs = [
        run("1100", {"pool/stacking": "1110", "top2/soft": "1000"}, "pool/stacking"),
        run("1111", {"pool/stacking": "1111", "top2/soft": "0111"}, "pool/stacking"),
        run("0000", {"pool/stacking": "1000", "top2/soft": "1100"}, "top2/soft"),
    ]
    c = rs.ceiling(runs)
    assert c["runs"] == 3
    assert c["hindsight_beats_single"] == 2
    # shares of candidates (single included) above the single model: 1/3, 0, 2/3
    assert c["random_candidate_beats_single"] == pytest.approx(1.0)
    assert c["share_above_per_run"] == pytest.approx([1 / 3, 0.0, 2 / 3])
    assert c["shipped_beats_single"] == 0
