"""The MARL-Focal environment as pure JAX functions over arrays (no bundle, no Python state).

One *episode* is a pass over the rows of a split. At scored row ``t`` the decider sees the
state ``[pool, F(pool; window), |pool|]`` built from the team it chose at the previous step and
a window of past labelled rows; it picks a team, the team answers (plurality, or the aggregator
in phase 2), and both agents get a reward. The window of row ``t`` is the rows
``[max(floor, t - W), min(t, horizon))`` (``W = 0``: every row since ``floor``); the scored row
is never part of it. ``horizon`` freezes the window at the end of a labelled history (the
frozen-test protocol, where no test label is ever read); ``floor`` is the first row of history.

The window score ``F`` is a weighted sum of eight statistics of the team on the window rows
(see :data:`WINDOW_METRICS`), or a sentinel for teams of fewer than two members. Everything here
is jit-, vmap- and scan-friendly: static shapes, the window taken as a fixed-size slice.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ensembles.util import InputError

__all__ = [
    "WINDOW_METRICS",
    "EnvData",
    "EnvSpec",
    "env_data",
    "observe",
    "reset",
    "scored_rows",
    "step",
    "team_plurality",
    "window_metrics",
    "window_score",
]

#: The eight window statistics, in the order of the metric-weight vector.
WINDOW_METRICS = (
    "focal",
    "plurality",
    "fleiss_kappa",
    "q_statistic",
    "correlation",
    "disagreement",
    "oracle_kappa",
    "entropy",
)


class EnvData(NamedTuple):
    """The arrays of one environment (one split, or train history + test rows).

    Attributes:
        preds: ``(M, n)`` int32 predicted class, ``-1`` = abstain.
        correct: ``(M, n)`` float32, 1 where the model is right.
        labels: ``(n,)`` int32 gold class (``-1`` on padding rows).
        inputs: ``(M, n, C)`` float32 aggregator inputs per member.
        class_mask: ``(C,)`` bool, the classes the task really has (padding excluded).
        context: ``(n, d)`` float32 query features seen by a contextual decider (``d = 0``:
            none, the reference decider).

    Example:
        >>> env_data([[0, 1], [1, 1]], [0, 1], np.ones((2, 2, 2))).class_mask.tolist()
        [True, True]
    """

    preds: Any
    correct: Any
    labels: Any
    inputs: Any
    class_mask: Any
    context: Any = None


class EnvSpec(NamedTuple):
    """Static settings of the environment (hashable: a jit static argument).

    Attributes:
        window: ``W``, rows in the window (0 = all past rows).
        weights: the eight metric weights (:data:`WINDOW_METRICS` order).
        alpha: size penalty of the decider's reward on errors.
        sentinel: ``F`` for teams of fewer than two members.
        faithful_metrics: the reference's metric code (GD = 1 for members never wrong, pair
            statistics without guards, NaN total → 0) instead of the library definitions.

    Example:
        >>> EnvSpec(window=50).window, EnvSpec().weights[:2]
        (50, (0.5, 0.5))
    """

    window: int = 0
    weights: tuple[float, ...] = (0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    alpha: float = 1.0
    sentinel: float = -99.0
    faithful_metrics: bool = False


def env_data(preds, labels, inputs, *, n_classes: int | None = None, context=None) -> EnvData:
    """Build :class:`EnvData` from NumPy arrays (validated).

    Args:
        preds: ``(M, n)`` int predictions (``-1`` = abstain).
        labels: ``(n,)`` int gold classes.
        inputs: ``(M, n, C)`` aggregator inputs (e.g. per-member probabilities).
        n_classes: ``C`` (default: ``inputs.shape[2]``).
        context: ``(n, d)`` query features for a contextual decider (default: none).

    Example:
        >>> d = env_data([[0, 1], [1, 1]], [0, 1], np.eye(2)[[[0, 1], [1, 1]]])
        >>> d.correct.tolist()
        [[1.0, 1.0], [0.0, 1.0]]
    """
    preds = np.asarray(preds, dtype=np.int32)
    labels = np.asarray(labels, dtype=np.int32)
    inputs = np.asarray(inputs, dtype=np.float32)
    if preds.ndim != 2 or preds.shape[0] < 2:
        raise InputError(f"models: MARL-Focal needs at least 2 models, got {preds.shape[0]}")
    if labels.shape != (preds.shape[1],):
        raise InputError(f"labels: shape {labels.shape} does not match {preds.shape[1]} rows")
    if inputs.shape[:2] != preds.shape:
        raise InputError(f"inputs: shape {inputs.shape} does not match preds {preds.shape}")
    c = inputs.shape[2] if n_classes is None else int(n_classes)
    if context is None:
        context = np.zeros((labels.size, 0), np.float32)
    context = np.asarray(context, dtype=np.float32)
    if context.ndim != 2 or context.shape[0] != labels.size:
        raise InputError(f"context: need ({labels.size}, d) features, got {context.shape}")
    correct = (preds == labels[None, :]) & (preds >= 0)
    return EnvData(
        preds=preds,
        correct=correct.astype(np.float32),
        labels=labels,
        inputs=inputs,
        class_mask=np.arange(inputs.shape[2]) < c,
        context=context,
    )


def scored_rows(n: int, window: int, *, double_subtract: bool = False) -> tuple[int, int]:
    """First scored row and number of steps of one pass over ``n`` rows.

    The reference subtracts the window twice (rows ``W+2 … n-W-1``, ``n - 2W - 2`` steps); the
    fixed rule scores every row that has a full window, ``t = max(W, 1) … n-1``.

    Raises:
        InputError: when no row can be scored (the window is as long as the split or longer).

    Example:
        >>> scored_rows(200, 0), scored_rows(200, 50), scored_rows(200, 50, double_subtract=True)
        ((1, 199), (50, 150), (52, 98))
    """
    if window < 0:
        raise InputError(f"window: must be >= 0, got {window}")
    if double_subtract:
        first, steps = window + 2, n - 2 * window - 2
    else:
        first, steps = max(window, 1), n - max(window, 1)
    if steps < 1:
        raise InputError(
            f"window: {window} leaves no row to score in a split of {n} rows; "
            f"use a window of at most {(n - 3) // 2 if double_subtract else n - 1}"
        )
    return first, steps


# ------------------------------------------------------------------ window statistics
def _window_rows(data: EnvData, t, window: int, floor, horizon):
    """Row indices and 0/1 weights of the window of scored row ``t`` (static length)."""
    n = data.labels.shape[0]
    end = jnp.minimum(t, horizon)
    if window == 0:
        idx = jnp.arange(n)
        w = (idx >= floor) & (idx < end)
    else:
        idx = end - window + jnp.arange(window)
        w = (idx >= jnp.maximum(floor, 0)) & (idx < end)
        idx = jnp.clip(idx, 0, n - 1)
    return idx, w.astype(jnp.float32)


def _safe(num, den, value):
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), value)


def window_metrics(team, correct, preds, labels, w, *, n_classes: int, faithful: bool = False):
    """The eight statistics of ``team`` on weighted rows (:data:`WINDOW_METRICS` order).

    Args:
        team: ``(M,)`` 0/1 member indicator.
        correct: ``(M, K)`` 0/1 correctness on the ``K`` candidate rows.
        preds: ``(M, K)`` predicted classes (``-1`` = abstain).
        labels: ``(K,)`` gold classes.
        w: ``(K,)`` 0/1 row weights (1 = the row is in the window).
        n_classes: ``C``.
        faithful: the reference's conventions (see :class:`EnvSpec`).

    Returns:
        ``(8,)`` float32; NaN where a statistic is undefined.

    Example:
        >>> import jax.numpy as jnp
        >>> c = jnp.array([[1., 0, 1, 0], [0, 1, 1, 0]])
        >>> p = jnp.array([[0, 1, 0, 1], [1, 0, 0, 1]])
        >>> m = window_metrics(jnp.ones(2), c, p, jnp.zeros(4, int), jnp.ones(4), n_classes=2)
        >>> [round(float(v), 3) for v in m[:2]]
        [0.333, 0.75]
    """
    team = jnp.asarray(team, jnp.float32)
    e = (1.0 - correct) * w[None, :]  # wrong and in the window
    r = correct * w[None, :]
    n_w = w.sum()
    size = team.sum()
    # focal diversity: GD of each member f on its wrong rows
    c = team @ (1.0 - correct)  # wrong members of the team per row
    a1 = e @ c
    a2 = e @ (c * c)
    gd = 1.0 - _safe(a2 - a1, (size - 1.0) * a1, jnp.nan)
    if faithful:
        gd = jnp.where(a1 > 0, gd, 1.0)
        focal = (team * gd).sum() / size
    else:
        has = (team > 0) & (a1 > 0)
        focal = _safe(jnp.where(has, gd, 0.0).sum(), has.sum().astype(jnp.float32), jnp.nan)
    # plurality accuracy (abstentions do not vote; ties -> smallest class; no votes -> wrong)
    onehot = jax.nn.one_hot(preds, n_classes)  # -1 gives a zero row
    votes = jnp.einsum("m,mkc->kc", team, onehot)
    winner = jnp.argmax(votes, axis=1)
    hit = (winner == labels) & (votes.max(axis=1) > 0)
    plural = _safe((hit * w).sum(), n_w, jnp.nan)
    # Fleiss kappa on predicted labels, abstention = its own category
    oh = jax.nn.one_hot(jnp.where(preds < 0, n_classes, preds), n_classes + 1)
    counts = jnp.einsum("m,mkc->kc", team, oh)
    p_row = _safe((counts * counts).sum(axis=1) - size, size * (size - 1.0), jnp.nan)
    p_bar = _safe((p_row * w).sum(), n_w, jnp.nan)
    p_c = _safe((counts * w[:, None]).sum(axis=0), n_w * size, jnp.nan)
    p_e = (p_c * p_c).sum()
    if faithful:
        fleiss = jnp.where(n_w < 2, 1.0, (p_bar - p_e) / (1.0 - p_e))
    else:
        fleiss = _safe(p_bar - p_e, 1.0 - p_e, 1.0)
    # pair statistics from oracle counts (1 = wrong)
    n11 = e @ (1.0 - correct).T
    n00 = r @ correct.T
    n10 = e @ correct.T
    n01 = n10.T
    det = n11 * n00 - n01 * n10
    q_den = n11 * n00 + n01 * n10
    r_den = jnp.sqrt((n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00))
    k_den = (n11 + n10) * (n01 + n00) + (n11 + n01) * (n10 + n00)
    if faithful:
        q, rho, kap = det / q_den, det / r_den, 2.0 * det / k_den
    else:
        q, rho, kap = _safe(det, q_den, 0.0), _safe(det, r_den, 0.0), _safe(2.0 * det, k_den, 0.0)
    dis = _safe(n01 + n10, n_w, jnp.nan)
    m = team.shape[0]
    pair = jnp.outer(team, team) * (1.0 - jnp.eye(m))
    n_pairs = pair.sum()

    def pmean(x):
        return _safe(jnp.where(pair > 0, x, 0.0).sum(), n_pairs, jnp.nan)

    # entropy (bits) of the mean correctness of the team's flattened bits
    p = _safe(team @ r.sum(axis=1), size * n_w, jnp.nan)
    xlogx = lambda x: jnp.where(x > 0, x * jnp.log2(jnp.where(x > 0, x, 1.0)), 0.0)  # noqa: E731
    ent = -(xlogx(p) + xlogx(1.0 - p))
    return jnp.stack([focal, plural, fleiss, pmean(q), pmean(rho), pmean(dis), pmean(kap), ent])


def window_score(data: EnvData, spec: EnvSpec, team, t, floor=0, horizon=None):
    """``F(team; window of row t)``: weighted window statistics, or the sentinel.

    Faithful: the weighted sum is taken as is (an undefined statistic makes it NaN, even with
    weight 0) and a NaN total becomes 0. Fixed: an undefined statistic contributes 0.

    Example:
        >>> d = env_data([[0, 1, 1], [1, 1, 0]], [0, 1, 1], np.eye(2)[[[0, 1, 1], [1, 1, 0]]])
        >>> float(window_score(d, EnvSpec(weights=(0, 1.0) + (0,) * 6), jnp.ones(2), 2))
        1.0
    """
    horizon = data.labels.shape[0] if horizon is None else horizon
    idx, w = _window_rows(data, t, spec.window, floor, horizon)
    m = window_metrics(
        team,
        data.correct[:, idx],
        data.preds[:, idx],
        data.labels[idx],
        w,
        n_classes=data.inputs.shape[2],
        faithful=spec.faithful_metrics,
    )
    wt = jnp.asarray(spec.weights, jnp.float32)
    if spec.faithful_metrics:
        total = (wt * m).sum()
        total = jnp.where(jnp.isnan(total), 0.0, total)
    else:
        total = jnp.where(wt != 0, wt * jnp.nan_to_num(m, nan=0.0), 0.0).sum()
    return jnp.where(jnp.sum(team) < 2, spec.sentinel, total)


# ------------------------------------------------------------------ reset / observe / step
def reset(data: EnvData):
    """The environment state at the start of a pass: the previous team is the whole pool.

    Example:
        >>> reset(env_data([[0], [1]], [0], np.ones((2, 1, 2)))).tolist()
        [1.0, 1.0]
    """
    return jnp.ones(data.preds.shape[0], jnp.float32)


def observe(data: EnvData, spec: EnvSpec, pool, t, floor=0, horizon=None):
    """The decider's state at row ``t``: ``[pool, F(pool; window), |pool|, x_t]``.

    ``x_t`` is row ``t``'s query features (``data.context``; absent for the reference decider,
    whose state has length M + 2).

    Example:
        >>> d = env_data([[0, 1, 1], [1, 1, 0]], [0, 1, 1], np.eye(2)[[[0, 1, 1], [1, 1, 0]]])
        >>> observe(d, EnvSpec(), reset(d), 2).shape
        (4,)
    """
    f = window_score(data, spec, pool, t, floor, horizon)
    parts = [pool, f[None], pool.sum()[None]]
    if data.context is not None and data.context.shape[-1] > 0:
        parts.append(data.context[t])
    return jnp.concatenate(parts).astype(jnp.float32)


def team_plurality(team, preds_t, n_classes: int):
    """Plurality answer of a team on one row; ``-1`` (no answer) for an empty team.

    Abstentions do not vote, ties go to the smallest class, a single member answers alone.

    Example:
        >>> int(team_plurality(jnp.array([1., 1., 1.]), jnp.array([2, 0, 0]), 3))
        0
    """
    votes = jnp.asarray(team, jnp.float32) @ jax.nn.one_hot(preds_t, n_classes)
    return jnp.where(votes.max() > 0, jnp.argmax(votes), -1)


def step(data: EnvData, spec: EnvSpec, pool, t, team):
    """Score row ``t`` with ``team`` (phase 1: plurality of the team).

    Returns:
        ``(new_pool, reward, correct)``: the team becomes the next state's pool; reward ``+1``
        when right, else ``-1 - alpha*|team|/M``.

    Example:
        >>> d = env_data([[0, 1], [1, 1]], [0, 1], np.eye(2)[[[0, 1], [1, 1]]])
        >>> _, r, ok = step(d, EnvSpec(alpha=1.0), reset(d), 0, jnp.array([1., 1.]))
        >>> float(r), bool(ok)
        (1.0, True)
    """
    team = jnp.asarray(team, jnp.float32)
    ans = team_plurality(team, data.preds[:, t], data.inputs.shape[2])
    ok = ans == data.labels[t]
    m = team.shape[0]
    reward = jnp.where(ok, 1.0, -1.0 - spec.alpha * team.sum() / m)
    del pool
    return team, reward, ok
