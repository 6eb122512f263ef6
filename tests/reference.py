"""Plain float64 NumPy/Python reference implementations, written from the definitions.

Everything here loops sample by sample and pair by pair (ALGORITHMS.md §1, §2, §6), never through
the closed forms of §3, so the fast paths of the library can be tested against it.

Conventions (ALGORITHMS.md §1.4): Q → 0 when ``N11·N00 + N01·N10 = 0``; ρ → 0 when a marginal is
0; Cohen's κ → 1 when ``p_e = 1``; Fleiss' κ → 1 when ``P̄_e = 1``; GD → NaN when ``P1 = 0``; any
metric on an empty sample set → NaN. Pairwise metrics are the mean over the ``L(L-1)/2`` unordered
pairs. ``focal_<name>`` is the mean of ``<name>`` on each member's negative samples (members with
none are left out; NaN if no member has any); ``focal`` is ``focal_generalized_diversity``.

Example:
    >>> import numpy as np
    >>> preds = np.array([[1, -1, 2, 0, 1, 0], [2, 1, 0, 0, 1, 2], [0, 0, 0, 0, 2, 2]])
    >>> labels = np.array([0, 1, 2, 0, 1, 2])
    >>> round(ref_metric("focal", preds, labels, [0, 1, 2]), 6)
    0.566667
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "BASE_METRICS",
    "DIRECTION",
    "METRIC_NAMES",
    "PAIRWISE_METRICS",
    "ref_accuracy",
    "ref_errors",
    "ref_focal_per_member",
    "ref_majority",
    "ref_metric",
    "ref_pair_matrix",
    "ref_pair_value",
    "ref_plurality",
    "ref_soft",
]

BASE_METRICS = (
    "q_statistic",
    "correlation",
    "binary_disagreement",
    "kw_variance",
    "generalized_diversity",
    "entropy",
    "cohen_kappa",
    "fleiss_kappa",
)
PAIRWISE_METRICS = ("q_statistic", "correlation", "binary_disagreement", "cohen_kappa")
METRIC_NAMES = BASE_METRICS + tuple(f"focal_{n}" for n in BASE_METRICS) + ("focal",)
_LOWER = {"q_statistic", "correlation", "cohen_kappa", "fleiss_kappa"}
DIRECTION = {
    name: ("lower" if name.removeprefix("focal_") in _LOWER else "higher") for name in METRIC_NAMES
}


# ---------------------------------------------------------------------------------- basics
def ref_errors(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """E[m, n] = 1 when model m is wrong on sample n (an abstention ``-1`` is wrong)."""
    preds = np.asarray(preds)
    labels = np.asarray(labels)
    n_models, n_samples = preds.shape
    out = np.zeros((n_models, n_samples), dtype=np.int64)
    for m in range(n_models):
        for n in range(n_samples):
            p = int(preds[m, n])
            out[m, n] = 0 if (p != -1 and p == int(labels[n])) else 1
    return out


def ref_accuracy(fused: np.ndarray, labels: np.ndarray) -> float:
    """Sample-level accuracy of fused predictions (``-1`` is wrong)."""
    fused = np.asarray(fused)
    labels = np.asarray(labels)
    correct = sum(1 for n in range(len(labels)) if fused[n] != -1 and fused[n] == labels[n])
    return correct / len(labels)


def _team(team_indices: Sequence[int], min_size: int = 2) -> list[int]:
    team = [int(i) for i in team_indices]
    if len(set(team)) != len(team):
        raise ValueError(f"duplicate member in team {team}")
    if len(team) < min_size:
        raise ValueError(f"team needs at least {min_size} members, got {team}")
    return team


def _first_argmax(values: Sequence[float]) -> int:
    best = 0
    for c in range(1, len(values)):
        if values[c] > values[best]:
            best = c
    return best


# ---------------------------------------------------------------------------------- combiners
def ref_plurality(
    preds: np.ndarray,
    team_indices: Sequence[int],
    n_classes: int,
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """Plurality (optionally weighted) vote per sample; ties → lowest class; no votes → -1.

    Votes are added member by member in increasing index order (float64 when weighted).
    """
    preds = np.asarray(preds)
    team = sorted(_team(team_indices, 1))
    out = np.full(preds.shape[1], -1, dtype=np.int64)
    for n in range(preds.shape[1]):
        votes = [0.0] * n_classes
        for m in team:
            p = int(preds[m, n])
            if p >= 0:
                votes[p] = votes[p] + (1.0 if weights is None else float(weights[m]))
        best = _first_argmax(votes)
        out[n] = best if votes[best] > 0 else -1
    return out


def ref_majority(preds: np.ndarray, team_indices: Sequence[int], n_classes: int) -> np.ndarray:
    """Majority vote: a class with more than half of all ``L`` members' votes, else -1."""
    preds = np.asarray(preds)
    team = sorted(_team(team_indices, 1))
    size = len(team)
    out = np.full(preds.shape[1], -1, dtype=np.int64)
    for n in range(preds.shape[1]):
        votes = [0] * n_classes
        for m in team:
            p = int(preds[m, n])
            if p >= 0:
                votes[p] += 1
        best = _first_argmax(votes)
        out[n] = best if 2 * votes[best] > size else -1
    return out


def ref_soft(
    probs: np.ndarray,
    team_indices: Sequence[int],
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """Soft vote: rows divided by their sums (zero rows contribute nothing), argmax of their sum
    (the mean's argmax; ties are decided on the float64 sums).

    With ``weights``: argmax of ``Σ_m w_m·p̂_m`` (no division). Members are added in increasing
    index order, in float64; ties → lowest class; every member all-zero → -1.
    """
    probs = np.asarray(probs, dtype=np.float64)
    team = sorted(_team(team_indices, 1))
    n_classes = probs.shape[2]
    out = np.full(probs.shape[1], -1, dtype=np.int64)
    for n in range(probs.shape[1]):
        total = np.zeros(n_classes, dtype=np.float64)
        for m in team:
            row = probs[m, n]
            s = row.sum()
            if s > 0:
                phat = row / s
                total = total + (phat if weights is None else float(weights[m]) * phat)
        # the mean's argmax is the sum's: no division (it could only merge near-ties by rounding)
        best = _first_argmax(total.tolist())
        out[n] = best if total[best] > 0 else -1
    return out


# ---------------------------------------------------------------------------------- metrics
def _pair_counts(e_i: np.ndarray, e_j: np.ndarray, samples: Sequence[int]) -> tuple[int, ...]:
    """(N11, N00, N10, N01) with 1 = correct: N10 = i right and j wrong."""
    n11 = n00 = n10 = n01 = 0
    for n in samples:
        ri, rj = e_i[n] == 0, e_j[n] == 0
        if ri and rj:
            n11 += 1
        elif not ri and not rj:
            n00 += 1
        elif ri:
            n10 += 1
        else:
            n01 += 1
    return n11, n00, n10, n01


def ref_pair_value(
    name: str,
    preds: np.ndarray,
    labels: np.ndarray,
    i: int,
    j: int,
    samples: Sequence[int] | None = None,
) -> float:
    """A pairwise metric (Q, ρ, disagreement, label-level Cohen's κ) of members i and j."""
    preds = np.asarray(preds)
    labels = np.asarray(labels)
    samples = list(range(preds.shape[1])) if samples is None else [int(n) for n in samples]
    n = len(samples)
    if n == 0:
        return math.nan
    e = ref_errors(preds, labels)
    n11, n00, n10, n01 = _pair_counts(e[i], e[j], samples)
    if name == "q_statistic":
        den = n11 * n00 + n01 * n10
        return 0.0 if den == 0 else (n11 * n00 - n01 * n10) / den
    if name == "correlation":
        marg = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
        return 0.0 if marg == 0 else (n11 * n00 - n01 * n10) / math.sqrt(marg)
    if name == "binary_disagreement":
        return (n01 + n10) / n
    if name == "cohen_kappa":
        # Label level; abstention (-1) is its own category.
        agree = sum(1 for s in samples if preds[i, s] == preds[j, s])
        cats = sorted({int(preds[i, s]) for s in samples} | {int(preds[j, s]) for s in samples})
        count_i = {c: sum(1 for s in samples if preds[i, s] == c) for c in cats}
        count_j = {c: sum(1 for s in samples if preds[j, s] == c) for c in cats}
        chance = sum(count_i[c] * count_j[c] for c in cats)  # = p_e · n² (integer)
        if chance == n * n:
            return 1.0
        p_o = agree / n
        p_e = sum((count_i[c] / n) * (count_j[c] / n) for c in cats)
        return (p_o - p_e) / (1.0 - p_e)
    raise ValueError(f"not a pairwise metric: {name!r}")


def ref_pair_matrix(
    name: str, preds: np.ndarray, labels: np.ndarray, samples: Sequence[int] | None = None
) -> np.ndarray:
    """(M, M) matrix of a pairwise metric over all model pairs; NaN on the diagonal."""
    n_models = np.asarray(preds).shape[0]
    out = np.full((n_models, n_models), math.nan)
    for i in range(n_models):
        for j in range(n_models):
            if i != j:
                out[i, j] = ref_pair_value(name, preds, labels, i, j, samples)
    return out


def _base_metric(
    name: str, preds: np.ndarray, labels: np.ndarray, team: list[int], samples: list[int]
) -> float:
    n = len(samples)
    if n == 0:
        return math.nan
    size = len(team)
    if name in PAIRWISE_METRICS:
        values = [
            ref_pair_value(name, preds, labels, team[a], team[b], samples)
            for a in range(size)
            for b in range(a + 1, size)
        ]
        return sum(values) / len(values)
    e = ref_errors(preds, labels)
    wrong = [sum(int(e[m, s]) for m in team) for s in samples]  # k_n
    right = [size - k for k in wrong]  # l_n
    if name == "kw_variance":
        return sum(l * (size - l) for l in right) / (n * size**2)
    if name == "generalized_diversity":
        p = [sum(1 for k in wrong if k == i) / n for i in range(size + 1)]
        p1 = sum((i / size) * p[i] for i in range(size + 1))
        p2 = sum((i * (i - 1) / (size * (size - 1))) * p[i] for i in range(size + 1))
        return math.nan if p1 == 0 else 1.0 - p2 / p1
    if name == "entropy":
        denom = size - math.ceil(size / 2)
        return sum(min(l, size - l) / denom for l in right) / n
    if name == "fleiss_kappa":
        cats = sorted({int(preds[m, s]) for m in team for s in samples})  # -1 = abstain category
        votes = {(s, c): sum(1 for m in team if preds[m, s] == c) for s in samples for c in cats}
        totals = {c: sum(votes[s, c] for s in samples) for c in cats}
        if sum(t * t for t in totals.values()) == (n * size) ** 2:  # P̄_e = 1
            return 1.0
        p_bar = (
            sum((sum(votes[s, c] ** 2 for c in cats) - size) / (size * (size - 1)) for s in samples)
            / n
        )
        p_e = sum((totals[c] / (n * size)) ** 2 for c in cats)
        return (p_bar - p_e) / (1.0 - p_e)
    raise ValueError(f"unknown metric {name!r}")


def ref_focal_per_member(
    name: str,
    preds: np.ndarray,
    labels: np.ndarray,
    team_indices: Sequence[int],
    samples: Sequence[int] | None = None,
) -> dict[int, float]:
    """``{f: <name> on N_f restricted to the team}`` for the members f with non-empty N_f."""
    preds = np.asarray(preds)
    labels = np.asarray(labels)
    team = _team(team_indices)
    samples = list(range(preds.shape[1])) if samples is None else [int(n) for n in samples]
    e = ref_errors(preds, labels)
    out = {}
    for f in team:
        negatives = [s for s in samples if e[f, s] == 1]
        if negatives:
            out[f] = _base_metric(name, preds, labels, team, negatives)
    return out


def ref_metric(
    name: str,
    preds: np.ndarray,
    labels: np.ndarray,
    team_indices: Sequence[int],
    samples: Sequence[int] | None = None,
) -> float:
    """Value of one metric of :data:`METRIC_NAMES` for a team, on the given samples (all).

    Example:
        >>> ref_metric("q_statistic", np.array([[0, 1], [0, 0]]), np.array([0, 1]), [0, 1])
        0.0
    """
    preds = np.asarray(preds)
    labels = np.asarray(labels)
    team = _team(team_indices)
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; valid: {', '.join(METRIC_NAMES)}")
    samples = list(range(preds.shape[1])) if samples is None else [int(n) for n in samples]
    if name == "focal":
        name = "focal_generalized_diversity"
    if name.startswith("focal_"):
        per = ref_focal_per_member(name.removeprefix("focal_"), preds, labels, team, samples)
        return math.nan if not per else sum(per.values()) / len(per)
    return _base_metric(name, preds, labels, team, samples)
