"""Search methods (greedy, beam, GA) against exhaustive ground truth (ALGORITHMS §4.4, §5.2, §9.2).

Covers: incremental statistics equal direct recomputation (§9.2 item 3); greedy trajectories;
beam = exhaustive when wide enough; the GA reaches the exhaustive optimum for M ≤ 12 (§9.2
item 7) on scikit-learn classifiers and random bundles; determinism; memoisation; and, when
the shared file is present, the 29-model MMLU-Pro pool (§9.3).
"""

from __future__ import annotations

import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ensembles
import focal
import focal.search
from focal import _search
from focal._metrics import metric_spec, team_statistics
from focal._search import (
    GeneticSearch,
    beam,
    bitmasks,
    exhaustive_objective,
    genetic,
    greedy,
)
from focal._types import Selection as SearchResult

# The objective the golden values below were computed with (FusionShot's 0.5 / 0.5).
FS = focal.Objective(w_div=0.5, w_acc=0.5)


def search(bundle, method, *, beam_width=16, seed=0, objective=FS, **kwargs):
    """A strategy by name, through the one entry point :func:`focal.select`."""
    strategy = {
        "exhaustive": focal.Exhaustive(),
        "greedy": focal.Greedy(),
        "beam": focal.Beam(width=beam_width),
        "ga": focal.Genetic(seed=seed),
        "hq": focal.HQ(),
    }.get(method, method)
    return focal.select(bundle, objective=objective, search=strategy, **kwargs)


# One metric per kernel kind and weighting (baseline / focal, oracle / label level).
INCREMENTAL_METRICS = [
    "focal",
    "kw_variance",
    "focal_binary_disagreement",
    "q_statistic",
    "focal_correlation",
    "focal_cohen_kappa",
    "fleiss_kappa",
    "focal_fleiss_kappa",
]


def _bundle(n_models: int, n_samples: int, seed: int, n_classes: int = 3) -> ensembles.Bundle:
    """Random bundle with abstentions and skills spread out (so teams differ)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n_samples)
    skill = rng.uniform(0.35, 0.85, n_models)
    right = rng.random((n_models, n_samples)) < skill[:, None]
    preds = np.where(right, labels, rng.integers(-1, n_classes, (n_models, n_samples)))
    return ensembles.Bundle.create(
        models=[f"m{i}" for i in range(n_models)], labels=labels, preds=preds, n_classes=n_classes
    )


@functools.lru_cache(maxsize=1)
def _digits_bundle() -> ensembles.Bundle:
    """Ten varied scikit-learn classifiers on load_digits (outputs on the held-out half)."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression, Perceptron, RidgeClassifier
    from sklearn.model_selection import train_test_split
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    models = {
        "logreg": LogisticRegression(max_iter=200, C=0.05),
        "gnb": GaussianNB(),
        "knn1": KNeighborsClassifier(n_neighbors=1),
        "knn15": KNeighborsClassifier(n_neighbors=15),
        "tree3": DecisionTreeClassifier(max_depth=3, random_state=0),
        "tree8": DecisionTreeClassifier(max_depth=8, random_state=0),
        "ridge": RidgeClassifier(alpha=10.0),
        "perceptron": Perceptron(max_iter=20, tol=None, random_state=0),
        "tree5": DecisionTreeClassifier(max_depth=5, criterion="entropy", random_state=0),
        "lda": LinearDiscriminantAnalysis(),
    }
    fitted = {name: est.fit(X_tr, y_tr) for name, est in models.items()}
    return ensembles.from_sklearn(fitted, X_te, y_te, n_classes=10)


def _summary(result: SearchResult) -> list[tuple]:
    return [(t.members, round(t.fitness, 12), round(t.score, 12), t.accuracy) for t in result.teams]


# ---------------------------------------------------------------------------------- §9.2 item 3
@pytest.mark.parametrize("metric", INCREMENTAL_METRICS)
def test_incremental_add_remove_equals_direct(metric):
    """A random walk of additions and removals keeps A1 and the quadratic forms exact."""
    bundle = _bundle(8, 60, seed=3)
    ev = _search._Evaluator(bundle, focal.Objective(metric=metric))
    kind = ev.spec.kind
    rng = np.random.default_rng(0)
    B, m = 6, bundle.n_models
    masks = np.zeros((B, m), dtype=bool)
    for b in range(B):
        masks[b, rng.choice(m, size=rng.integers(1, m), replace=False)] = True
    with jax.enable_x64(True):
        S = jnp.asarray(masks, dtype=jnp.float64)
        a1, quads = team_statistics(kind, S, ev.dev64)
        for _ in range(12):
            S_np = np.asarray(S) > 0
            add = rng.random(B) < 0.5
            add = np.where(S_np.all(axis=1), False, np.where(S_np.sum(axis=1) <= 1, True, add))
            pools = [~row if a else row for row, a in zip(S_np, add, strict=True)]
            j = np.array([rng.choice(np.flatnonzero(pool)) for pool in pools])
            # One call per direction, each on the rows that move that way.
            for sign, rows in ((1.0, add), (-1.0, ~add)):
                if not rows.any():
                    continue
                idx = np.flatnonzero(rows)
                S2, a2, q2 = _search._update(
                    S[idx], None if a1 is None else a1[idx], tuple(q[idx] for q in quads),
                    jnp.asarray(j[idx]), ev.dev64, sign, kind=kind,
                )  # fmt: skip
                S = S.at[idx].set(S2)
                if a1 is not None:
                    a1 = a1.at[idx].set(a2)
                quads = tuple(q.at[idx].set(n) for q, n in zip(quads, q2, strict=True))
            a1_ref, quads_ref = team_statistics(kind, S, ev.dev64)
            if a1 is not None:
                np.testing.assert_allclose(np.asarray(a1), np.asarray(a1_ref), rtol=0, atol=1e-12)
            for q, r in zip(quads, quads_ref, strict=True):
                np.testing.assert_allclose(np.asarray(q), np.asarray(r), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("metric", INCREMENTAL_METRICS)
def test_batched_expansion_equals_direct_scores(metric):
    """Scores of every one-member extension of a batch of teams match the closed forms."""
    bundle = _bundle(7, 80, seed=5)
    ev = _search._Evaluator(bundle, focal.Objective(metric=metric))
    spec = metric_spec(metric)
    rng = np.random.default_rng(1)
    masks = np.zeros((5, 7), dtype=bool)
    for b, size in enumerate([1, 2, 3, 4, 5]):
        masks[b, rng.choice(7, size=size, replace=False)] = True
    with jax.enable_x64(True):
        S = jnp.asarray(masks, dtype=jnp.float64)
        a1, quads = team_statistics(spec.kind, S, ev.dev64)
        scores, _, _ = _search._expand(S, a1, quads, ev.dev64, kind=spec.kind, focal=spec.focal)
    scores = np.asarray(scores)
    ii, jj = np.nonzero(~masks)
    children = masks[ii].copy()
    children[np.arange(len(ii)), jj] = True
    direct = focal.score_teams(bundle, children, metric=metric)
    np.testing.assert_allclose(scores[ii, jj], direct, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_entropy_objective_uses_direct_scores():
    bundle = _bundle(6, 50, seed=2)
    obj = focal.Objective(metric="focal_entropy")
    res = beam(bundle, objective=obj, sizes=(2, 4), beam_width=100, top_k=8)
    ref = exhaustive_objective(bundle, objective=obj, sizes=(2, 4), top_k=8)
    assert _summary(res) == _summary(ref)


# ---------------------------------------------------------------------------------- greedy
@pytest.mark.parametrize("seed", [0, 1])
def test_greedy_trajectory(seed):
    bundle = _bundle(9, 120, seed=seed)
    obj = focal.Objective()
    res = greedy(bundle, objective=obj, sizes=(2, 7), top_k=50)
    traj = res.trajectory
    assert [t.size for t in traj] == list(range(2, 8))
    for prev, nxt in zip(traj, traj[1:], strict=False):
        assert set(prev.members) < set(nxt.members)
    # Each step takes the best extension (direct scoring, canonical order on ties).
    all_pairs = [t for t in exhaustive_objective(bundle, sizes=2, top_k=100, objective=FS).teams]
    assert traj[0].members == all_pairs[0].members
    for prev, nxt in zip(traj, traj[1:], strict=False):
        ext = np.repeat(prev.mask[None], bundle.n_models, axis=0)
        ext[np.arange(bundle.n_models), np.arange(bundle.n_models)] = True
        ext = ext[~prev.mask]
        comp = obj.components(bundle, ext)
        best = ext[_search._order(ext, comp["fitness"])[0]]
        assert np.array_equal(best, nxt.mask)
        assert nxt.fitness == pytest.approx(comp["fitness"].max(), abs=1e-12)
    # The best team returned is the best along the trajectory, not the last one.
    assert res.teams[0].fitness == pytest.approx(max(t.fitness for t in traj), abs=1e-12)
    assert res.history == tuple(np.maximum.accumulate([t.fitness for t in traj]))
    # Reported components equal direct scoring.
    masks = np.stack([t.mask for t in res.teams])
    comp = obj.components(bundle, masks)
    np.testing.assert_allclose([t.score for t in res.teams], comp["score"], atol=1e-12)
    np.testing.assert_allclose([t.accuracy for t in res.teams], comp["accuracy"], atol=0)
    np.testing.assert_allclose([t.fitness for t in res.teams], comp["fitness"], atol=1e-12)


def test_greedy_returns_only_requested_sizes():
    bundle = _bundle(8, 100, seed=4)
    res = greedy(bundle, sizes=[3, 5], top_k=20, objective=FS)
    assert {t.size for t in res.teams} <= {3, 5}
    assert [t.size for t in res.trajectory] == [2, 3, 4, 5]


# ---------------------------------------------------------------------------------- beam
@pytest.mark.parametrize(
    ("metric", "sizes"),
    [("focal", (2, 5)), ("focal_q_statistic", (2, 4)), ("fleiss_kappa", (3, 6))],
)
def test_wide_beam_equals_exhaustive(metric, sizes):
    bundle = _bundle(7, 90, seed=11)
    obj = focal.Objective(metric=metric, w_div=0.4, w_acc=0.6, size_penalty=0.05)
    width = max(math.comb(7, s) for s in range(2, sizes[1] + 1))
    res = beam(bundle, objective=obj, sizes=sizes, beam_width=width, top_k=25)
    ref = exhaustive_objective(bundle, objective=obj, sizes=sizes, top_k=25)
    assert _summary(res) == _summary(ref)
    assert res.n_evaluated == focal.count_teams(7, range(2, sizes[1] + 1))


def test_beam_width_one_is_greedy():
    bundle = _bundle(10, 100, seed=6)
    a = greedy(bundle, sizes=(2, 6), top_k=10, objective=FS)
    b = beam(bundle, sizes=(2, 6), beam_width=1, top_k=10, objective=FS)
    assert _summary(a) == _summary(b)
    assert [t.members for t in a.trajectory] == [t.members for t in b.trajectory]


def test_beam_is_at_least_as_good_as_greedy_per_size():
    bundle = _bundle(12, 150, seed=8)
    g = greedy(bundle, sizes=(2, 6), objective=FS)
    b = beam(bundle, sizes=(2, 6), beam_width=8, objective=FS)
    for tg, tb in zip(g.trajectory, b.trajectory, strict=True):
        assert tb.fitness >= tg.fitness - 1e-12


# ---------------------------------------------------------------------------------- GA
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ga_reaches_exhaustive_optimum_sklearn(seed):
    """§9.2 item 7 on real classifiers' outputs (10 scikit-learn models on digits)."""
    bundle = _digits_bundle()
    obj = focal.Objective()
    ref = exhaustive_objective(bundle, objective=obj, sizes=(2, 10), top_k=1)
    res = genetic(bundle, objective=obj, seed=seed, top_k=5)
    assert res.teams[0].fitness == pytest.approx(ref.teams[0].fitness, abs=1e-12)
    assert res.teams[0].members == ref.teams[0].members


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    ("n_models", "objective"),
    [
        (12, focal.Objective()),
        (12, focal.Objective(w_div=0.6, w_acc=0.4, size_penalty=0.1)),
    ],
)
def test_ga_reaches_exhaustive_optimum_random(seed, n_models, objective):
    bundle = _bundle(n_models, 150, seed=20)
    ref = exhaustive_objective(bundle, objective=objective, sizes=(2, n_models), top_k=1)
    res = genetic(bundle, objective=objective, seed=seed)
    assert res.teams[0].fitness == pytest.approx(ref.teams[0].fitness, abs=1e-12)


def test_ga_restricted_sizes_optimum_and_invalid_never_scored(monkeypatch):
    bundle = _bundle(12, 150, seed=31)
    scored: list[np.ndarray] = []
    direct = _search._Evaluator.direct_scores

    def spy(self, masks):
        scored.append(np.array(masks))
        return direct(self, masks)

    monkeypatch.setattr(_search._Evaluator, "direct_scores", spy)
    ref = exhaustive_objective(bundle, sizes=(3, 4), top_k=1, objective=FS)
    res = genetic(bundle, sizes=(3, 4), seed=0, objective=FS)
    assert res.params["init"] == "sizes"
    assert res.teams[0].fitness == pytest.approx(ref.teams[0].fitness, abs=1e-12)
    all_scored = np.concatenate(scored)
    assert set(all_scored.sum(axis=1).tolist()) <= {3, 4}
    assert len(np.unique(bitmasks(all_scored))) == len(all_scored) == res.n_evaluated


def test_ga_deterministic_and_seed_dependent():
    bundle = _bundle(12, 150, seed=40)
    kwargs = dict(generations=40, saturate=None, top_k=10)
    a = genetic(bundle, seed=7, **kwargs, objective=FS)
    b = genetic(bundle, seed=7, **kwargs, objective=FS)
    c = genetic(bundle, seed=8, **kwargs, objective=FS)
    assert _summary(a) == _summary(b)
    assert a.history == b.history and a.n_evaluated == b.n_evaluated
    assert a.params == b.params
    assert (a.history, a.n_evaluated) != (c.history, c.n_evaluated)
    ga = GeneticSearch(n_models=12)
    p0 = np.asarray(ga.init(jax.random.key(0)).population)
    p1 = np.asarray(ga.init(jax.random.key(1)).population)
    assert not np.array_equal(p0, p1)


def test_ga_memoised_and_bounded(monkeypatch):
    """No team is scored twice; n_evaluated ≤ population × generations."""
    bundle = _bundle(12, 150, seed=12)
    seen: list[np.ndarray] = []
    accuracy = _search._Evaluator.accuracy

    def spy(self, masks):
        seen.append(np.array(masks))
        return accuracy(self, masks)

    monkeypatch.setattr(_search._Evaluator, "accuracy", spy)
    pop, gens = 100, 120
    res = genetic(bundle, population=pop, generations=gens, saturate=None, seed=3, objective=FS)
    keys = bitmasks(np.concatenate(seen))
    assert len(np.unique(keys)) == len(keys) == res.n_evaluated
    assert res.params["generations_run"] == gens
    assert res.params["chromosomes_evaluated"] == pop * (gens + 1)
    assert res.n_evaluated <= pop * gens
    assert len(res.history) == gens + 1
    assert all(b >= a for a, b in zip(res.history, res.history[1:], strict=False))


def test_ga_saturation_stops_early():
    bundle = _bundle(12, 150, seed=2)
    res = genetic(bundle, generations=1000, saturate=10, seed=0, objective=FS)
    run = res.params["generations_run"]
    assert run < 1000
    hist = res.history
    assert hist[-1] == hist[-11] and len(hist) == run + 1


def test_ga_faithful_no_mutation_runs():
    bundle = _bundle(12, 150, seed=9)
    res = genetic(bundle, mutation_rate=0.0, init="uniform", generations=50, seed=1, objective=FS)
    assert res.params["mutation_rate"] == 0.0
    assert len(res.teams) == 10


def test_ga_tell_orders_like_canonical_rule():
    """Selection sorts by fitness (10 decimals), then size, then canonical order."""
    rng = np.random.default_rng(0)
    m, p = 7, 64
    ga = GeneticSearch(n_models=m, population=p, parents=10)
    state = ga.init(jax.random.key(0))
    pop = rng.random((p, m)) < 0.5
    fit = rng.choice([0.25, 0.5, 0.5 + 1e-13, -99.0], size=p)
    told = ga.tell(state, pop, fit)
    order = _search._order(pop, fit)
    np.testing.assert_array_equal(np.asarray(told.population), pop[order])
    assert float(told.best_fitness) == 0.5 and int(told.generation) == 1


def test_ga_crossover_and_elitism():
    """No mutation: offspring k = parent k with the slice [a, a + M//2) of parent k + 1."""
    m, p, parents = 9, 12, 4
    ga = GeneticSearch(n_models=m, population=p, parents=parents, elitism=2)
    rng = np.random.default_rng(1)
    pop = rng.random((p, m)) < 0.5
    state = ga.tell(ga.init(jax.random.key(0)), pop, rng.random(p))
    sorted_pop = np.asarray(state.population)
    nxt = np.asarray(ga.ask(state, jax.random.key(5)))
    np.testing.assert_array_equal(nxt[:2], sorted_pop[:2])
    for k, child in enumerate(nxt[2:]):
        first, second = sorted_pop[k % parents], sorted_pop[(k + 1) % parents]
        ok = False
        for a in range(math.ceil(m / 2 + 1)):
            cut = np.zeros(m, dtype=bool)
            cut[a : a + m // 2] = True
            ok |= np.array_equal(child, np.where(cut, second, first))
        assert ok


def test_genetic_search_validates():
    with pytest.raises(ValueError, match="parents"):
        GeneticSearch(n_models=5, population=10, parents=20)
    with pytest.raises(ValueError, match="mutation-rate"):
        GeneticSearch(n_models=5, mutation_rate=1.5)
    with pytest.raises(ValueError, match="elitism"):
        GeneticSearch(n_models=5, population=10, parents=5, elitism=10)


# ---------------------------------------------------------------------------------- common
@pytest.mark.parametrize("method", ["greedy", "beam", "ga", "exhaustive"])
def test_results_distinct_sorted_and_json_ready(method):
    # Two never-wrong members: their pair has NaN focal diversity (fitness -inf, JSON null).
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 40)
    preds = np.where(rng.random((6, 40)) < 0.6, labels, rng.integers(-1, 3, (6, 40)))
    preds[:2] = labels
    bundle = ensembles.Bundle.create(
        models=[f"m{i}" for i in range(6)], labels=labels, preds=preds, n_classes=3
    )
    res = search(bundle, method, sizes=(2, 6), top_k=200)
    keys = [t.bitmask for t in res.teams]
    assert len(set(keys)) == len(keys)
    fit = np.round([t.fitness for t in res.teams], 10)
    assert all(a >= b for a, b in zip(fit, fit[1:], strict=False))
    doc = json.loads(res.to_json())
    assert doc["strategy"] == method and doc["objective"] == FS.name
    nan_team = [t for t in doc["teams"] if t["members"] == ["m0", "m1"]]
    assert nan_team and nan_team[0]["score"] is None and nan_team[0]["fitness"] is None
    assert res.n_evaluated >= len(res.teams)


def test_search_dispatch():
    bundle = _bundle(6, 50, seed=1)
    assert set(focal.search.STRATEGIES) >= {"exhaustive", "greedy", "beam", "ga", "hq"}
    with pytest.raises(ValueError, match="greedy, beam, ga"):
        search(bundle, "annealing")
    assert _summary(search(bundle, "beam", sizes=(2, 4), beam_width=3)) == _summary(
        beam(bundle, sizes=(2, 4), beam_width=3, objective=FS)
    )
    # objective=None means Objective(), the default of focal.select.
    assert search(bundle, "greedy", objective=None, sizes=3).objective == focal.Objective().name


def test_hq_through_search():
    bundle = _bundle(7, 60, seed=2)
    res = search(bundle, "hq", sizes=(2, 3), top_k=3)
    assert res.strategy == "hq" and 1 <= len(res.teams) <= 3
    assert {t.size for t in res.teams} <= {2, 3}


def test_exhaustive_refuses_large_requests():
    bundle = _bundle(10, 30, seed=0)
    with pytest.raises(ValueError, match="budget"):
        exhaustive_objective(bundle, sizes=(2, 10), max_teams=100, objective=FS)
    with pytest.raises(ValueError, match="top-k"):
        greedy(bundle, top_k=0, objective=FS)


# ---------------------------------------------------------------------------------- real data
@functools.lru_cache(maxsize=1)
def _mmlu(path: str) -> tuple[ensembles.Bundle, SearchResult]:
    bundle = ensembles.load_bundle(path)
    return bundle, exhaustive_objective(bundle, sizes=(2, 4), top_k=5, objective=FS)


GOLDEN_SIZE3 = {"Meta-Llama-3_1-70B-Instruct", "gemini-1.5-flash-002", "gemini-1.5-pro-002"}


def test_mmlu_golden_fitness(shared_data):
    bundle, _ = _mmlu(str(shared_data("mmlu_pro_29llm.npz")))
    best3 = exhaustive_objective(bundle, sizes=3, top_k=1, objective=FS).teams[0]
    assert set(best3.members) == GOLDEN_SIZE3
    assert best3.fitness == pytest.approx(0.454457, abs=1e-6)
    assert best3.score == pytest.approx(0.212188, abs=1e-6)
    best2 = exhaustive_objective(bundle, sizes=2, top_k=1, objective=FS).teams[0]
    assert set(best2.members) == {"DeepSeek-Coder-V2", "gemini-1.5-pro-002"}
    assert best2.fitness == pytest.approx(0.438658, abs=1e-6)
    assert set(beam(bundle, sizes=3, beam_width=16, objective=FS).teams[0].members) == GOLDEN_SIZE3


@pytest.mark.parametrize(
    ("method", "kwargs", "gap"),
    [
        ("greedy", {}, 0.01),
        ("beam", {"beam_width": 16}, 1e-9),
        ("ga", {"seed": 0}, 0.005),
        ("ga", {"seed": 1}, 0.005),
    ],
)
def test_mmlu_search_close_to_exhaustive(shared_data, method, kwargs, gap):
    bundle, ref = _mmlu(str(shared_data("mmlu_pro_29llm.npz")))
    res = search(bundle, method, sizes=(2, 4), **kwargs)
    best = ref.teams[0].fitness
    assert res.teams[0].fitness <= best + 1e-12
    assert res.teams[0].fitness >= best - gap
    assert res.n_evaluated < focal.count_teams(29, range(2, 5))
