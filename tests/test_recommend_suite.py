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
