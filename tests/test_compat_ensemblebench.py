"""EnsembleBench FQ compatibility mode (ALGORITHMS.md §5.3, §5.4, §5.6, §8)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

import ensembles
import focal._compat_ensemblebench as eb
from focal.search import Moments

from reference import ref_metric

# ----------------------------------------------------------------------------- fixtures


def _random_bundle(seed: int, n_models: int = 5, n_samples: int = 60, n_classes: int = 3):
    """Random probs (soft voting) with models of varied skill; one abstaining row per model."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n_samples)
    probs = rng.random((n_models, n_samples, n_classes))
    skill = np.linspace(0.3, 0.8, n_models)
    right = rng.random((n_models, n_samples)) < skill[:, None]
    probs[right, labels[np.nonzero(right)[1]]] += 2.0
    probs[:, 0, :] = np.where(np.arange(n_models)[:, None] == 1, 0.0, probs[:, 0, :])  # abstain
    return ensembles.Bundle.create(
        models=[f"m{i}" for i in range(n_models)], labels=labels, probs=probs
    )


@pytest.fixture(scope="module")
def small():
    return _random_bundle(0)


@pytest.fixture(scope="module")
def digits_pool():
    """Seven quick scikit-learn classifiers on the digits data, with a seeded split."""
    from sklearn.datasets import load_digits
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    fit_idx, out_idx = order[:600], order[600:1400]
    estimators = {
        "nb": GaussianNB(),
        "lda": LinearDiscriminantAnalysis(),
        "knn3": KNeighborsClassifier(n_neighbors=3),
        "knn25": KNeighborsClassifier(n_neighbors=25),
        "tree4": DecisionTreeClassifier(max_depth=4, random_state=0),
        "tree8": DecisionTreeClassifier(max_depth=8, random_state=1),
        "stump": DecisionTreeClassifier(max_depth=3, random_state=2),
    }
    for est in estimators.values():
        est.fit(X[fit_idx], y[fit_idx])
    bundle = ensembles.from_sklearn(estimators, X[out_idx], y[out_idx])
    bundle = ensembles.with_random_split(bundle, fractions=(0.5, 0.0, 0.5), seed=0)
    return bundle.select_split("train"), bundle.select_split("test")


def _teams(m, sizes):
    return [t for s in sizes for t in itertools.combinations(range(m), s)]


def _masks(m, teams):
    out = np.zeros((len(teams), m), dtype=bool)
    for i, t in enumerate(teams):
        out[i, list(t)] = True
    return out


# ----------------------------------------------------------------------------- KMeans helpers


def test_lloyd_converges_and_empty_cluster_keeps_its_centre():
    labels, centres, n_iter = eb.kmeans_two_clusters([[0, 0], [0, 1], [9, 9]], [[0, 0], [9, 9]])
    assert labels.tolist() == [0, 0, 1]
    np.testing.assert_allclose(centres, [[0, 0.5], [9, 9]])
    assert n_iter == 1
    # Every point is tied between the two centres (ties go to cluster 0): cluster 1 stays empty.
    labels, centres, _ = eb.kmeans_two_clusters([[0, 0], [0, 0], [1, 1]], [[1, 0], [0, 1]])
    assert labels.tolist() == [0, 0, 0]
    np.testing.assert_allclose(centres, [[1 / 3, 1 / 3], [0, 1]])


def test_lloyd_iteration_cap():
    pts = [[0.0, 0], [1, 0], [2, 0], [3, 0], [10, 0]]
    _, _, n_full = eb.kmeans_two_clusters(pts, [[0, 0], [1, 0]])
    assert n_full > 1
    _, _, n_cap = eb.kmeans_two_clusters(pts, [[0, 0], [1, 0]], max_iter=1)
    assert n_cap == 1


@pytest.mark.parametrize(
    ("branch", "expected"),
    [("main", [[91.0, 0.2], [80.0, 0.7]]), ("dev", [[80.0, 0.2], [91.0, 0.7]])],
)
def test_kmeans_inits_of_both_branches(monkeypatch, branch, expected):
    seen = []
    real = eb.kmeans_two_clusters

    def spy(points, init, *, max_iter=300):
        seen.append(np.asarray(init, dtype=float))
        return real(points, init, max_iter=max_iter)

    monkeypatch.setattr(eb, "kmeans_two_clusters", spy)
    eb.kmeans_threshold([90, 91, 80, 81], [0.2, 0.3, 0.6, 0.7], branch=branch)
    np.testing.assert_allclose(seen[0], expected)


def test_kmeans_threshold_returns_min_main_and_max_dev_of_low_accuracy_cluster():
    acc = [95, 94, 96, 70, 71, 72]
    met = [0.10, 0.15, 0.12, 0.40, 0.55, 0.50]
    assert eb.kmeans_threshold(acc, met, branch="main") == 0.40
    assert eb.kmeans_threshold(acc, met, branch="dev") == 0.55
    centre = eb.kmeans_center_threshold(acc, met, branch="main")
    assert centre == pytest.approx((0.40 + 0.55 + 0.50) / 3)
    assert eb.kmeans_center_threshold(acc, met, branch="dev") == pytest.approx(centre)


def test_kmeans_fewer_than_two_distinct_points_is_flagged_with_none():
    assert eb.kmeans_threshold([90.0], [0.1]) is None
    assert eb.kmeans_threshold([90, 90, 90], [0.1, 0.1, 0.1]) is None
    assert eb.kmeans_center_threshold([90, 90], [0.3, 0.3], branch="dev") is None
    assert eb.kmeans_threshold([90, 90], [0.3, 0.4]) is not None


def test_raw_features_cluster_on_accuracy_standardized_on_both():
    # Raw [acc %, metric]: accuracy spans 10 points, the metric 0.1: clusters split on accuracy.
    acc = [90, 90, 80, 80, 85.5, 85.5]
    met = [0.0, 0.1, 0.0, 0.1, 0.0, 0.1]
    raw = eb._kmeans_fit(acc, met, "main", False, 300)
    std = eb._kmeans_fit(acc, met, "main", True, 300)
    assert raw[1].tolist() == [0, 0, 1, 1, 0, 0]
    assert std[1].tolist() != raw[1].tolist()
    # The centre threshold is always in the metric's own units.
    assert 0.0 <= eb.kmeans_center_threshold(acc, met, standardize=True) <= 0.1


def test_other_threshold_helpers():
    assert eb.mean_std_threshold([90, 91, 70, 92], [0.1, 0.2, 0.3, 0.4]) == 0.3
    assert eb.mean_std_threshold([90, 90], [0.1, 0.2]) == 0.2  # nobody below: the max
    assert eb.one_third_threshold([0.9, 0.1, 0.5, 0.3, 0.7, 0.2]) == 0.3
    assert eb.one_third_threshold([0.4]) == 0.4


# ----------------------------------------------------------------------------- weights


def test_argsort_member_weights_example_of_the_spec():
    assert eb.member_weights([95, 90, 93], mode="argsort").tolist() == [1, 2, 0]
    assert eb.member_weights([95, 90, 93], mode="rank").tolist() == [2, 0, 1]
    assert eb.member_weights([95, 90, 93], mode="uniform").tolist() == [1, 1, 1]
    for a in ([80, 90], [90, 80]):  # L = 2: both coincide, one member weighs 0
        assert (
            eb.member_weights(a, mode="argsort").tolist()
            == eb.member_weights(a, mode="rank").tolist()
        )
    with pytest.raises(ValueError, match="member_weights"):
        eb.member_weights([1, 2], mode="bogus")


# ----------------------------------------------------------------------------- moments


def test_weighted_moments_generalise_moments_weighted(small):
    mom = Moments.from_bundle(small)
    for focal_w, w in ((True, mom.errors), (False, np.ones(small.n_samples))):
        ours = eb.weighted_moments(mom, w, label_level=True)
        theirs = mom.weighted(focal_w, label_level=True)
        for key in ("n", "g", "G", "AG", "U"):
            np.testing.assert_allclose(ours[key], theirs[key], err_msg=key)


@pytest.mark.parametrize("code", list(eb.EB_METRICS))
def test_subsample_with_all_ones_multiplicities_equals_exact(small, code):
    m = small.n_models
    masks = _masks(m, _teams(m, range(2, m + 1)))
    exact = eb.focal_values(small, masks, metric=code, estimator="exact")
    errors = Moments.from_bundle(small).errors.astype(np.int64)
    ones = eb.focal_values(small, masks, metric=code, multiplicities=errors[:, None, :])
    np.testing.assert_allclose(ones, exact, rtol=0, atol=1e-12)
    # Three identical draws, each negative twice: every metric is a ratio, so nothing moves.
    twice = eb.focal_values(small, masks, metric=code, multiplicities=2 * np.stack([errors] * 3, 1))
    np.testing.assert_allclose(twice, exact, rtol=0, atol=1e-12)


@pytest.mark.parametrize("code", list(eb.EB_METRICS))
def test_subsample_values_equal_the_definitions_on_the_draws(small, code):
    m = small.n_models
    teams = _teams(m, (2, 3))
    mult = eb.subsample_multiplicities(small, seed=7, n_draws=3, draw_size=20)
    got = eb.focal_values(small, _masks(m, teams), metric=code, multiplicities=mult)
    base, main, _ = eb.EB_METRICS[code]
    for b, team in enumerate(teams[::3]):
        for f in team:
            draws = [np.repeat(np.arange(small.n_samples), mult[f, d]) for d in range(3)]
            vals = [ref_metric(base, small.preds, small.labels, team, samples=s) for s in draws]
            want = float(np.mean(vals))
            want = 1 - want if main == "one_minus" else want
            assert got[3 * b, f] == pytest.approx(want, abs=1e-12)


def test_subsample_draws_are_seeded_per_focal(small):
    a = eb.subsample_multiplicities(small, seed=3)
    b = eb.subsample_multiplicities(small, seed=3)
    c = eb.subsample_multiplicities(small, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    errors = small.errors.astype(bool)
    assert a.shape == (small.n_models, 3, small.n_samples)
    assert (a.sum(axis=2) == 100).all()  # 100 draws with replacement even when |N_f| < 100
    assert not (a[:, :, :] * ~errors[:, None, :]).any()  # only negatives are drawn
    # Focal f's draws do not depend on other focals: a bundle with a member more is the same.
    wider = ensembles.Bundle.create(
        models=[*small.models, "extra"],
        labels=small.labels,
        probs=np.concatenate([small.probs, small.probs[:1]]),
    )
    np.testing.assert_array_equal(eb.subsample_multiplicities(wider, seed=3)[:-1], a)


# ----------------------------------------------------------------------------- FQ scores


def _direct_fq(bundle, code, sizes, weights_mode, constant_group, convention="main"):
    """FQ from the metric definitions, team by team, in the reference notebook's shape."""
    base, main, dev = eb.EB_METRICS[code]
    rule = main if convention == "main" else dev
    m = bundle.n_models
    errors = bundle.errors
    single = (bundle.n_samples - errors.sum(axis=1)) / bundle.n_samples
    per = {}  # (focal, size) -> {team: value}
    for size in sizes:
        for f in range(m):
            neg = np.flatnonzero(errors[f]).tolist()
            if not neg:
                continue
            group = {}
            for team in itertools.combinations(range(m), size):
                if f in team:
                    v = ref_metric(base, bundle.preds, bundle.labels, team, samples=neg)
                    group[team] = 1 - v if rule == "one_minus" else v
            vals = np.array(list(group.values()))
            lo, hi = vals.min(), vals.max()
            for team, v in group.items():
                if hi == lo:
                    group[team] = v if constant_group == "raw" else 0.0
                else:
                    group[team] = (v - lo) / (hi - lo)
            per[f, size] = group
    out = []
    for size in sizes:
        for team in itertools.combinations(range(m), size):
            w = eb.member_weights(single[list(team)], mode=weights_mode)
            vals, ws = [], []
            for k, f in enumerate(team):
                if (f, size) in per:
                    vals.append(per[f, size][team])
                    ws.append(w[k])
            out.append(np.average(vals, weights=ws) if sum(ws) > 0 else np.mean(vals))
    return np.array(out)


@pytest.mark.parametrize("code", list(eb.EB_METRICS))
@pytest.mark.parametrize(
    ("weights_mode", "constant_group"), [("rank", "zero"), ("argsort", "raw"), ("uniform", "zero")]
)
def test_exact_fq_equals_direct_computation(small, code, weights_mode, constant_group):
    sizes = (2, 3, 4)
    masks, fq = eb.fq_scores(
        small, metric=code, sizes=sizes, member_weights=weights_mode, constant_group=constant_group
    )
    expected_masks = _masks(small.n_models, _teams(small.n_models, sizes))
    np.testing.assert_array_equal(masks, expected_masks)
    want = _direct_fq(small, code, sizes, weights_mode, constant_group)
    np.testing.assert_allclose(fq, want, rtol=0, atol=1e-12)


def test_dev_convention_flips_the_per_focal_values(small):
    masks = _masks(small.n_models, _teams(small.n_models, (2, 3)))
    for code in eb.EB_METRICS:
        a = eb.focal_values(small, masks, metric=code, sign_convention="main")
        b = eb.focal_values(small, masks, metric=code, sign_convention="dev")
        np.testing.assert_allclose(a + b, np.where(np.isnan(a), np.nan, 1.0), atol=1e-12)


def test_negative_accuracy_source(small):
    pool = eb._Pool(small, (2, 3), eb.FQOptions.resolve(acc_source="negatives"), 0, None)
    errors = small.errors.astype(bool)
    for b in range(0, len(pool.masks), 4):
        team = np.flatnonzero(pool.masks[b])
        fused = ensembles.combine(small, team, combiner="soft")
        accs = [
            (fused[errors[f]] == small.labels[errors[f]]).mean() for f in team if errors[f].any()
        ]
        assert pool.acc_used[b] == pytest.approx(np.mean(accs), abs=1e-12)


# ----------------------------------------------------------------------------- pipeline


def _direct_select(bundle, code, opts):
    """Steps 3-4 of §5.3 written the reference notebook's way (dicts keyed by team tuples)."""
    m = bundle.n_models
    sizes = range(2, m)
    teams = _teams(m, sizes)
    masks = _masks(m, teams)
    acc = ensembles.team_accuracy(bundle, masks, combiner="soft") * 100
    accd = dict(zip(teams, acc, strict=True))
    values = eb.focal_values(bundle, masks, metric=code, estimator=opts.estimator)
    single = (bundle.n_samples - bundle.errors.sum(axis=1)) / bundle.n_samples
    std = opts.kmeans_features != "raw"
    kept, scaled = {}, {}
    for size in sizes:
        for f in range(m):
            grp = [(t, values[i, f]) for i, t in enumerate(teams) if len(t) == size and f in t]
            grp = [(t, v) for t, v in grp if not math.isnan(v)]
            if not grp:
                continue
            ts = [t for t, _ in grp]
            vs = np.array([v for _, v in grp])
            thr = eb.kmeans_threshold([accd[t] for t in ts], vs, standardize=std)
            thr = None if thr is None else min(vs.mean(), thr)
            for t, v in grp:
                if thr is None or v < np.round(thr, 3):
                    kept.setdefault(size, set()).add(t)
            lo, hi = vs.min(), vs.max()
            for t, v in grp:
                scaled[f, t] = (
                    (v - lo) / (hi - lo)
                    if hi > lo
                    else (v if opts.constant_group == "raw" else 0.0)
                )
    selected = set()
    for cands in kept.values():
        fq = {}
        for t in sorted(cands):
            w = eb.member_weights(single[list(t)], mode=opts.member_weights)
            vals = [(scaled[f, t], w[k]) for k, f in enumerate(t) if (f, t) in scaled]
            fq[t] = np.average([v for v, _ in vals], weights=[x for _, x in vals])
        ts = list(fq)
        thr = eb.kmeans_center_threshold(
            [accd[t] for t in ts], [fq[t] for t in ts], standardize=std
        )
        selected |= {t for t in ts if thr is None or fq[t] < thr}
    return selected


@pytest.mark.parametrize("faithful", [False, True])
def test_fq_select_matches_a_direct_transcription(faithful):
    bundle = _random_bundle(1, n_models=5, n_samples=80)
    opts = eb.FQOptions.resolve(faithful=faithful)
    codes = ("CK", "QS", "BD", "FK", "KW", "GD")
    res = eb.fq_select(bundle, metrics=codes, faithful=faithful, seed=0)
    for code in codes:
        sel = res.selected[code]
        got = {tuple(np.flatnonzero(m).tolist()) for m in sel.masks}
        assert got == _direct_select(bundle, code, opts), code


def test_modes_are_recorded(small):
    fixed = eb.fq_select(small, metrics=("GD",))
    faithful = eb.fq_select(small, metrics=("GD",), faithful=True)
    custom = eb.fq_select(small, metrics=("GD",), faithful=True, member_weights="rank")
    assert (fixed.mode, faithful.mode, custom.mode) == ("fixed", "faithful", "custom")
    assert fixed.options.estimator == "exact" and faithful.options.estimator == "subsample"
    doc = json.loads(json.dumps(custom.to_dict(), allow_nan=False))
    assert doc["method"] == "fq_compat" and doc["mode"] == "custom"
    assert doc["options"]["member_weights"] == "rank"
    assert doc["options"]["kmeans_features"] == "raw"
    assert doc["eval_split"] == "selection"


def test_option_validation(small):
    with pytest.raises(ValueError, match="unknown option"):
        eb.fq_select(small, metrics=("GD",), bogus=1)
    with pytest.raises(ValueError, match="estimator"):
        eb.fq_select(small, metrics=("GD",), estimator="bootstrap")
    with pytest.raises(ValueError, match="metric"):
        eb.fq_select(small, metrics=("XX",))
    with pytest.raises(ValueError, match="budget"):
        eb.fq_select(small, metrics=("GD",), max_teams=3)
    assert eb.FQOptions.resolve(kmeans_features="standardised").kmeans_features == "standardized"


def test_determinism_under_a_fixed_seed(small):
    a = eb.fq_select(small, faithful=True, seed=11)
    b = eb.fq_select(small, faithful=True, seed=11)
    for code in a.selected:
        np.testing.assert_array_equal(a.selected[code].masks, b.selected[code].masks)
        np.testing.assert_array_equal(a.selected[code].scores, b.selected[code].scores)
        assert a.selected[code].random_statistics == b.selected[code].random_statistics
    assert a.to_dict() == b.to_dict()


def test_baselines_mean_threshold_on_the_pool_disagreement_set(small):
    d = eb.pool_disagreement(small)
    disagree = np.flatnonzero(d).tolist()
    sel = eb.baseline_select(small, metrics=("QS", "KW"), sample_set="pool_disagreement")
    m = small.n_models
    teams = _teams(m, range(2, m + 1))
    for code in ("QS", "KW"):
        base, main, _ = eb.EB_METRICS[code]
        vals = np.array(
            [ref_metric(base, small.preds, small.labels, t, samples=disagree) for t in teams]
        )
        vals = 1 - vals if main == "one_minus" else vals
        want = {t for t, v in zip(teams, vals, strict=True) if v < np.round(vals.mean(), 3)}
        got = {tuple(np.flatnonzero(r).tolist()) for r in sel[code][0]}
        assert got == want


def test_eq_consensus_intersects_the_top_metrics(small):
    res = eb.fq_select(small)
    assert len(res.eq_metrics) == 3
    best = {k: (v.accuracy.max() if v.n_teams else -np.inf) for k, v in res.selected.items()}
    assert min(best[k] for k in res.eq_metrics) >= max(
        (best[k] for k in best if k not in res.eq_metrics), default=-np.inf
    )
    eq = res.eq
    assert eq.n_teams <= 3
    for mask in eq.masks:
        for code in res.eq_metrics:
            assert (res.selected[code].masks == mask).all(axis=1).any()
    assert np.all(np.diff(eq.accuracy) <= 0)


def test_team_statistics_by_hand():
    b = ensembles.Bundle.create(
        models=["a", "b", "c"],
        labels=[0, 1, 1, 0],
        preds=[[0, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 0]],
    )  # individual accuracies 0.75, 0.5, 0.75; pool plurality 1.0
    s = eb.team_statistics(b, [[True, False, True], [True, True, False]])
    assert (s.n_teams, s.accuracy_min, s.accuracy_max) == (2, 0.5, 0.75)
    assert s.accuracy_std == pytest.approx(0.125)
    assert (s.n_above_members, s.n_ge_max_single, s.n_ge_mean_single) == (1, 1, 1)
    assert (s.n_ge_min_single, s.n_ge_pool) == (2, 0)
    empty = eb.team_statistics(b, np.zeros((0, 3), dtype=bool))
    assert empty.n_teams == 0 and math.isnan(empty.accuracy_mean)
    assert empty.to_dict()["accuracy_mean"] is None


def test_rounded_targets_compare_in_percent():
    # The mean individual accuracy 2/3 is 66.67 % once rounded: a team at exactly 2/3 passes
    # the exact rule and fails the rounded one.
    b = ensembles.Bundle.create(
        models=["a", "b", "c"],
        labels=[0, 0, 0],
        preds=[[0, 0, 0], [0, 1, 0], [1, 1, 0]],
    )  # 1, 2/3, 1/3; mean 2/3
    team = [[False, True, True]]  # plurality: sample 0: 0 vs 1 → 0, sample 1: 1, 1 → wrong
    exact = eb.team_statistics(b, team)
    rounded = eb.team_statistics(b, team, round_targets=True)
    assert exact.accuracy_mean == pytest.approx(2 / 3)
    assert (exact.n_ge_mean_single, rounded.n_ge_mean_single) == (1, 0)


def test_random_selection_is_seeded_and_distinct():
    cands = _masks(6, _teams(6, (2, 3)))
    a = eb.random_selection(cands, 10, seed=5)
    b = eb.random_selection(cands, 10, seed=5)
    np.testing.assert_array_equal(a, b)
    assert len({r.tobytes() for r in a}) == 10
    assert len(eb.random_selection(cands, 999, seed=0)) == len(cands)


# ----------------------------------------------------------------------------- real pools


@pytest.mark.parametrize("faithful", [False, True])
def test_end_to_end_on_scikit_learn_pool(digits_pool, faithful):
    select, evaluate = digits_pool
    m = select.n_models
    res = eb.fq_select(select, bundle_eval=evaluate, faithful=faithful, seed=0)
    assert res.mode == ("faithful" if faithful else "fixed")
    assert res.combiner == "soft" and res.eval_split == "eval"
    assert res.n_teams_scored == 2**m - m - 2
    for code, sel in res.selected.items():
        assert sel.n_teams > 0, code
        sizes = sel.masks.sum(axis=1)
        assert sizes.min() >= 2 and sizes.max() <= m - 1
        assert sel.statistics.n_teams == sel.n_teams == len(sel.members)
        assert 0.0 <= sel.statistics.accuracy_min <= sel.statistics.accuracy_max <= 1.0
        assert sel.random_statistics.n_teams == sel.n_teams
        np.testing.assert_allclose(
            sel.accuracy, ensembles.team_accuracy(select, sel.masks, combiner="soft")
        )
        assert res.baselines[code].n_teams > 0
    json.dumps(res.to_dict(), allow_nan=False)


def test_end_to_end_on_bbh_task(shared_data):
    tasks = ensembles.load_tasks(shared_data("bbh_5llm_marl_focal.npz"))
    task = tasks["date_understanding"]
    train, test = task.select_split("train"), task.select_split("test")
    res = eb.fq_select(train, bundle_eval=test, faithful=True, seed=0)
    again = eb.fq_select(train, bundle_eval=test, faithful=True, seed=0)
    assert res.to_dict() == again.to_dict()
    assert res.n_teams_scored == 25  # sizes 2..4 of 5 models
    assert res.mode == "faithful" and res.combiner == "soft"
    fixed = eb.fq_select(train, bundle_eval=test, seed=0)
    for code in res.selected:
        for r in (res, fixed):
            sel = r.selected[code]
            assert sel.statistics.n_teams == sel.n_teams
    json.dumps(fixed.to_dict(), allow_nan=False)
