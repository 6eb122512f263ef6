"""``focal.select`` and its strategies (one conformance suite), default sizes, ``recommend``."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

import ensembles
import focal
import focal.search

# Every strategy of the registry, with settings small enough for a quick exact comparison.
STRATEGIES = {
    "exhaustive": focal.Exhaustive(),
    "greedy": focal.Greedy(),
    "beam": focal.Beam(width=64),
    "ga": focal.Genetic(seed=0, population=40, generations=60),
    "hq": focal.HQ(),
}


def _bundle(m: int = 6, n: int = 120, seed: int = 0, split: bool = False) -> ensembles.Bundle:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    acc = rng.uniform(0.45, 0.8, m)
    right = rng.random((m, n)) < acc[:, None]
    preds = np.where(right, labels, (labels + rng.integers(1, 3, (m, n))) % 3)
    preds[rng.random((m, n)) < 0.03] = -1
    b = ensembles.Bundle.create(
        models=[f"m{i}" for i in range(m)], labels=labels, preds=preds, n_classes=3
    )
    return ensembles.with_random_split(b, seed=seed) if split else b


def _brute_force(bundle, objective, sizes):
    """Every team's fitness from the definitions (plain loops, float64)."""
    rows = []
    for size in sizes:
        for team in itertools.combinations(range(bundle.n_models), size):
            mask = np.zeros(bundle.n_models, dtype=bool)
            mask[list(team)] = True
            rows.append((mask, float(objective(bundle, mask[None])[0])))
    return rows


def test_registry_matches_public_strategies():
    assert set(focal.search.STRATEGIES) == set(STRATEGIES)
    for name, cls in focal.search.STRATEGIES.items():
        assert cls().name == name and isinstance(STRATEGIES[name], cls)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_conformance(name):
    """Every strategy: a Selection of distinct Teams of the requested sizes, best first, each
    team's figures equal to a recomputation, deterministic, JSON-ready, never better than the
    exhaustive optimum."""
    bundle = _bundle()
    obj = focal.Objective()
    sizes = (2, 4)
    sel = focal.select(bundle, objective=obj, sizes=sizes, top_k=5, search=STRATEGIES[name])
    assert isinstance(sel, focal.Selection) and sel.strategy == name
    assert sel.objective == obj.name and sel.metric == "focal" and sel.direction == "higher"
    assert 1 <= len(sel.teams) <= 5 and sel.n_evaluated >= len(sel.teams)
    keys = [t.bitmask for t in sel.teams]
    assert len(set(keys)) == len(keys)
    fitness = [t.fitness for t in sel.teams]
    assert fitness == sorted(fitness, reverse=True)
    for team in sel.teams:
        assert isinstance(team, focal.Team) and 2 <= team.size <= 4
        assert team.members == tuple(np.asarray(bundle.models)[team.mask])
        again = obj.components(bundle, team.mask[None])
        assert team.fitness == pytest.approx(again["fitness"][0], abs=1e-12)
        assert team.accuracy == pytest.approx(again["accuracy"][0], abs=1e-12)
        assert team.score == pytest.approx(focal.score_teams(bundle, team.mask[None])[0])
    best = max(f for _, f in _brute_force(bundle, obj, range(2, 5)))
    assert sel.best.fitness <= best + 1e-12
    if name in ("exhaustive", "beam"):
        assert sel.best.fitness == pytest.approx(best, abs=1e-12)
    again = focal.select(bundle, objective=obj, sizes=sizes, top_k=5, search=STRATEGIES[name])
    assert [t.members for t in again.teams] == [t.members for t in sel.teams]
    doc = json.loads(sel.to_json())
    assert {"metric", "n_models", "n_samples", "n_teams_scored", "teams"} <= set(doc)


def test_exhaustive_equals_brute_force_ranking():
    bundle = _bundle(m=5, seed=3)
    obj = focal.Objective(w_div=0.5, w_acc=0.5)
    rows = _brute_force(bundle, obj, range(2, 6))
    # Ties: fitness to 10 decimals, then the smaller team, then canonical (enumeration) order.
    order = sorted(range(len(rows)), key=lambda i: (-round(rows[i][1], 10), rows[i][0].sum(), i))
    sel = focal.select(bundle, objective=obj, sizes=(2, 5), top_k=len(rows))
    assert [t.bitmask for t in sel.teams] == [
        sum(1 << int(j) for j in np.flatnonzero(rows[i][0])) for i in order
    ]


def test_metric_objective_and_prune_agree():
    bundle = _bundle(seed=4)
    by_name = focal.select(bundle, objective="q_statistic", sizes=(2, 3), top_k=7)
    pruned = focal.prune(bundle, metric="q_statistic", sizes=(2, 3), top_k=7)
    assert [t.members for t in by_name.teams] == [t.members for t in pruned.teams]
    scores = [t.score for t in pruned.teams]
    assert scores == sorted(scores)  # lower Q is more diverse
    assert pruned.objective == "q_statistic" and all(t.fitness is None for t in pruned.teams)


def test_auto_rule():
    small = _bundle(m=6)
    assert focal.select(small, top_k=1).strategy == "exhaustive"
    big = _bundle(m=24, n=60, seed=2)  # C(24, 2..5) = 55,454 teams: exhaustive
    assert focal.select(big, sizes=(2, 5), top_k=1).strategy == "exhaustive"
    assert focal.select(big, sizes=(2, 8), top_k=1).strategy == "beam"  # > 2^18 teams
    # A ranking by the metric alone streams, so it stays exhaustive up to 2^22 teams.
    assert focal.select(big, objective="focal", sizes=(2, 8), top_k=1).strategy == "exhaustive"


@pytest.mark.parametrize(("m", "expected"), [(2, (2,)), (4, (2, 3, 4)), (29, (2, 3, 4, 5))])
def test_default_sizes_adapt_to_the_pool(m, expected):
    assert focal.search.resolve_sizes(None, m) == expected
    bundle = _bundle(m=m, n=40)
    assert focal.select(bundle, objective="focal", top_k=1).sizes == expected


def test_size_error_names_the_default_and_a_range():
    bundle = _bundle(m=4)
    with pytest.raises(ValueError, match=r"within 2-4 \(the default is 2-4\)"):
        focal.select(bundle, sizes="2-6")


def test_bad_arguments_are_one_line():
    bundle = _bundle()
    for kwargs, needle in [
        ({"top_k": 0}, "top-k"),
        ({"search": "annealing"}, "unknown strategy"),
        ({"objective": "magic"}, "unknown name"),
        ({"objective": "pareto", "search": "beam"}, "exhaustive"),
    ]:
        with pytest.raises(ValueError, match=needle) as info:
            focal.select(bundle, **kwargs)
        assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------ recommend
def _recommend_bundle(team_wins: bool, seed: int = 0) -> ensembles.Bundle:
    """Three members. With ``team_wins`` their errors are independent (the vote beats each),
    else one strong model and two weak copies of each other."""
    rng = np.random.default_rng(seed)
    n = 3000
    labels = rng.integers(0, 4, n)

    def member(p, noise=None):
        right = rng.random(n) < p if noise is None else noise
        return np.where(right, labels, (labels + 1 + rng.integers(0, 3, n)) % 4)

    if team_wins:
        preds = np.stack([member(0.7), member(0.7), member(0.7)])
    else:
        shared = rng.random(n) < 0.5
        preds = np.stack([member(0.9), member(0.5, shared), member(0.5, shared)])
    b = ensembles.Bundle.create(models=["a", "b", "c"], labels=labels, preds=preds)
    return ensembles.with_random_split(b, seed=seed)


def test_recommend_team_branch():
    rec = focal.recommend(_recommend_bundle(team_wins=True), combiners=("plurality", "weighted"))
    assert rec.kind == "team" and rec.team.size >= 2 and rec.p_value <= rec.alpha
    assert rec.combiner in ("plurality", "weighted") and rec.rule != "best_single"
    doc = rec.to_dict()
    assert doc["recommendation"]["kind"] == "team"
    assert doc["rows"]["select_on"] == "train+val" and doc["rows"]["report_on"] == "test"
    assert doc["rows"]["folds"] == 5
    # The candidates are sorted by cross-validated accuracy; the winner is the first team one.
    cv = [c["cv_accuracy"] for c in doc["candidates"]]
    assert cv == sorted(cv, reverse=True)
    assert doc["recommendation"]["cv_accuracy"] == pytest.approx(cv[0])
    assert doc["report"]["recommendation"] > doc["report"]["best_single"]["report_accuracy"]


def test_recommend_single_model_branch():
    rec = focal.recommend(_recommend_bundle(team_wins=False), combiners=("plurality", "weighted"))
    assert rec.kind == "single_model" and rec.team.members == ("a",)
    assert rec.combiner == "single"
    doc = rec.to_dict()
    assert doc["report"]["recommendation"] == doc["report"]["best_single"]["report_accuracy"]


def test_recommend_cross_validation_matches_a_direct_computation():
    """The plurality-of-the-pool procedure needs no fitting: its CV accuracy is its accuracy on
    the selection rows, computed here from the definition."""
    bundle = _recommend_bundle(team_wins=True, seed=2)
    rec = focal.recommend(bundle, combiners=("plurality",))
    pool = next(c for c in rec.candidates if c["rule"] == "pool")
    sel = bundle.select_samples(bundle.split != "test")
    votes = np.zeros((sel.n_samples, 4), dtype=int)
    for m in range(3):
        votes[np.arange(sel.n_samples), sel.preds[m]] += 1
    expected = float((votes.argmax(axis=1) == sel.labels).mean())
    assert pool["cv_accuracy"] == pytest.approx(expected, abs=1e-12)


def test_recommend_cv_gain_and_its_standard_error_match_a_direct_computation():
    """One clearly best member and a pool whose plurality beats it: neither procedure is fitted,
    so their held-out correctness is their correctness on the selection rows."""
    rng = np.random.default_rng(0)
    n = 3000
    labels = rng.integers(0, 4, n)
    preds = np.stack(
        [np.where(rng.random(n) < p, labels, (labels + 1 + rng.integers(0, 3, n)) % 4)
         for p in (0.75, 0.68, 0.68)]
    )  # fmt: skip
    b = ensembles.Bundle.create(models=["a", "b", "c"], labels=labels, preds=preds)
    bundle = ensembles.with_random_split(b, seed=0)
    rec = focal.recommend(bundle, combiners=("plurality",))
    assert (rec.kind, rec.rule) == ("team", "pool")
    sel = bundle.select_samples(bundle.split != "test")
    votes = np.zeros((sel.n_samples, 4), dtype=int)
    for m in range(3):
        votes[np.arange(sel.n_samples), sel.preds[m]] += 1
    diff = (votes.argmax(axis=1) == sel.labels).astype(float) - (sel.preds[0] == sel.labels)
    assert rec.cv_gain == pytest.approx(diff.mean(), abs=1e-12)
    assert rec.cv_gain_se == pytest.approx(diff.std(ddof=1) / np.sqrt(diff.size), abs=1e-12)
    doc = rec.to_dict()["recommendation"]
    assert doc["cv_gain"] == rec.cv_gain and doc["cv_gain_se"] == rec.cv_gain_se
    single = focal.recommend(_recommend_bundle(team_wins=False), combiners=("plurality",))
    assert single.kind == "single_model" and single.cv_gain <= 0.0


def test_recommend_never_reads_test_labels():
    """Permuting the test rows' labels changes no choice: the procedure, the team, the guard."""
    bundle = _recommend_bundle(team_wins=True, seed=5)
    test = np.flatnonzero(bundle.split == "test")
    labels = bundle.labels.copy()
    labels[test] = np.random.default_rng(1).permutation(labels[test])
    shuffled = ensembles.Bundle.create(
        models=list(bundle.models), labels=labels, preds=bundle.preds, split=bundle.split
    )
    kw = {"combiners": ("plurality", "weighted", "stacking")}
    a, b = focal.recommend(bundle, **kw), focal.recommend(shuffled, **kw)
    assert (a.kind, a.rule, a.combiner, a.team.members) == (
        b.kind,
        b.rule,
        b.combiner,
        b.team.members,
    )
    assert a.p_value == b.p_value and a.candidates == b.candidates
    assert a.report["best_single"]["name"] == b.report["best_single"]["name"]


def test_recommend_records_the_rows_of_a_seeded_split():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    preds = np.where(rng.random((3, 200)) < 0.7, labels, 1 - labels)
    b = ensembles.Bundle.create(models=list("xyz"), labels=labels, preds=preds)
    rows = focal.recommend(b, seed=7, combiners=("plurality",)).rows
    assert rows["source"] == "seeded" and rows["seed"] == 7
    assert rows["sizes"] == {"train": 120, "val": 40, "test": 40}


def test_recommend_bad_input_is_one_line():
    b = _recommend_bundle(team_wins=True)
    for kwargs, needle in [
        ({"folds": 1}, "folds"),
        ({"alpha": 2.0}, "alpha"),
        ({"combiners": ("magic",)}, "unknown combiner"),
    ]:
        with pytest.raises(ValueError, match=needle) as info:
            focal.recommend(b, **kwargs)
        assert "\n" not in str(info.value)
