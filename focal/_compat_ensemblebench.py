"""EnsembleBench FQ selection (CVPR'21) as an explicit, seeded compatibility mode.

This module reproduces the *focal-diversity (FQ) team selection pipeline* of EnsembleBench
(docs/compat.md) and its baselines, EQ consensus and team statistics. It is an
opt-in corner: the library's default selection path is :func:`focal.select`; this
code exists so that the published CVPR'21 / HQ-Ensemble numbers can be approached, and every
reference-code quirk that those numbers depend on is a keyword switch (docs/compat.md):

============================  ==========================  ==================================
switch                        faithful (``faithful=True``)  fixed (default)
============================  ==========================  ==================================
``estimator``                 ``"subsample"`` (3 × 100)   ``"exact"`` (all negatives)
``kmeans_features``           ``"raw"`` ([acc %, metric])  ``"standardized"`` (z-scores)
``constant_group``            ``"raw"`` (left unscaled)    ``"zero"``
``member_weights``            ``"argsort"``               ``"rank"`` (or ``"uniform"``)
``sample_set`` (baselines)    ``"pool_disagreement"``     ``"all"``
``round_targets`` (stats)     ``True`` (2 decimals, in %)  ``False`` (exact)
============================  ==========================  ==================================

Switches shared by both presets: ``sign_convention`` (``"main"``: lower = more diverse, or
``"dev"``), ``acc_source`` (``"selection"`` or DP-Ensemble's ``"negatives"``), ``combiner``
(``"auto"`` = soft voting when the bundle has ``probs``, else plurality), ``n_draws`` and
``draw_size`` of the subsampled estimator. Any switch passed explicitly overrides the preset; the
result records every resolved switch and a ``mode`` of ``"faithful"``, ``"fixed"`` or
``"custom"`` (a mix).

Randomness: the subsampled estimator draws, for each focal member ``f``, ``n_draws`` samples of
``draw_size`` indices from ``N_f`` with replacement, from one NumPy generator per focal
(``np.random.default_rng([seed, 0, f])``), shared by every team of that focal and by every
metric. The reference reseeds a global RNG inside its metric calls, or consumes one global stream
in hash-seed-dependent order, so its exact draws cannot be reproduced bit for bit; only the
estimator's distribution is. A draw is a multiplicity vector over the samples, and metrics on a
draw are the weighted closed forms of docs/metrics.md with those weights.

Leakage: EnsembleBench computes diversity, thresholds, KMeans features, weights and tie-breaks on
the *test* set. Here every choice uses ``bundle_select`` only; statistics are reported on
``bundle_eval``. Reproducing the leaky numbers means passing the test split as ``bundle_select``,
which a caller must label as such.

References:
    Yanzhao Wu, Ling Liu, Zhongwei Xie, Ka-Ho Chow, Wenqi Wei. "Boosting Ensemble Accuracy by
    Revisiting Ensemble Diversity Metrics." CVPR 2021. Code: git-disl/EnsembleBench
    (``teamSelection.py`` and the demo notebooks); DP-Ensemble (git-disl) runs the same pipeline.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

import ensembles
from ensembles import Bundle
from ensembles.util import InputError

from ._metrics import _pair_matrix, finish, metric_spec
from ._metrics import team_statistics as _sufficient_statistics
from ._moments import Moments
from ._teams import parse_sizes

__all__ = [
    "EB_METRICS",
    "FQOptions",
    "FQResult",
    "TeamSelection",
    "TeamStatistics",
    "baseline_select",
    "focal_values",
    "fq_scores",
    "fq_select",
    "kmeans_center_threshold",
    "kmeans_threshold",
    "kmeans_two_clusters",
    "mean_std_threshold",
    "member_weights",
    "one_third_threshold",
    "pool_disagreement",
    "random_selection",
    "subsample_multiplicities",
    "team_statistics",
    "weighted_moments",
]

SignConvention = Literal["main", "dev"]

#: EnsembleBench metric codes → (our metric name, transform in "main", transform in "dev").
#: ``"raw"`` keeps the value, ``"one_minus"`` gives ``1 − value``. In "main" lower is more
#: diverse for every code, in "dev" higher is.
EB_METRICS: Mapping[str, tuple[str, str, str]] = {
    "CK": ("cohen_kappa", "raw", "one_minus"),
    "QS": ("q_statistic", "raw", "one_minus"),
    "BD": ("binary_disagreement", "one_minus", "raw"),
    "FK": ("fleiss_kappa", "raw", "one_minus"),
    "KW": ("kw_variance", "one_minus", "raw"),
    "GD": ("generalized_diversity", "one_minus", "raw"),
}

_LABEL_LEVEL = {"cohen_kappa", "fleiss_kappa"}

#: Teams the FQ compatibility pipeline scores at most (it enumerates all teams of sizes 2..M-1
#: and keeps per-team statistics for every metric, so its limit is lower than the core scans'),
#: about M = 16.
FQ_MAX_TEAMS = 1 << 16


# ============================================================================ options
_SWITCHES: dict[str, tuple[str, ...]] = {
    "estimator": ("exact", "subsample"),
    "kmeans_features": ("raw", "standardized"),
    "constant_group": ("raw", "zero"),
    "member_weights": ("argsort", "rank", "uniform"),
    "sample_set": ("all", "pool_disagreement"),
    "sign_convention": ("main", "dev"),
    "acc_source": ("selection", "negatives"),
    "combiner": ("auto", "soft", "plurality", "majority"),
}
_ALIASES = {"standardised": "standardized", "0": "zero"}
_FAITHFUL = {
    "estimator": "subsample",
    "kmeans_features": "raw",
    "constant_group": "raw",
    "member_weights": "argsort",
    "sample_set": "pool_disagreement",
    "round_targets": True,
}
_FIXED = {
    "estimator": "exact",
    "kmeans_features": "standardized",
    "constant_group": "zero",
    "member_weights": "rank",
    "sample_set": "all",
    "round_targets": False,
}


@dataclasses.dataclass(frozen=True)
class FQOptions:
    """Every switch of the FQ compatibility pipeline (docs/compat.md), resolved.

    Build with :meth:`resolve`; see the module docstring for what each switch does.

    Attributes:
        faithful: the preset the switches started from.
        estimator: ``"exact"`` (all of ``N_f``) or ``"subsample"`` (``n_draws`` draws of
            ``draw_size`` with replacement, values averaged).
        kmeans_features: ``"raw"`` ``[accuracy %, metric]`` or ``"standardized"`` columns.
        constant_group: min-max scaling of a constant group: ``"raw"`` (unscaled) or ``"zero"``.
        member_weights: ``"argsort"`` (faithful quirk), ``"rank"`` or ``"uniform"``.
        sample_set: baseline metrics on ``"all"`` samples or on ``"pool_disagreement"``.
        sign_convention: ``"main"`` (lower = more diverse) or ``"dev"`` (higher = more diverse).
        acc_source: team accuracy used by the thresholds: ``"selection"`` (the combiner's
            accuracy on the selection bundle) or ``"negatives"`` (mean over members f of the
            team's accuracy on ``N_f``, DP-Ensemble).
        combiner: ``"auto"`` (soft when the bundle has ``probs``, else plurality), ``"soft"``,
            ``"plurality"`` or ``"majority"``.
        round_targets: statistics compare accuracies in % with targets rounded to 2 decimals.
        n_draws, draw_size: the subsampled estimator's draws per focal and draw length.
    """

    faithful: bool = False
    estimator: str = "exact"
    kmeans_features: str = "standardized"
    constant_group: str = "zero"
    member_weights: str = "rank"
    sample_set: str = "all"
    sign_convention: str = "main"
    acc_source: str = "selection"
    combiner: str = "auto"
    round_targets: bool = False
    n_draws: int = 3
    draw_size: int = 100

    @classmethod
    def resolve(cls, *, faithful: bool = False, **overrides: Any) -> FQOptions:
        """The preset of ``faithful`` with explicit ``overrides`` applied and validated.

        Raises:
            ValueError: an unknown option name or value (one line listing the valid ones).

        Example:
            >>> opts = FQOptions.resolve(faithful=True, member_weights="rank")
            >>> opts.estimator, opts.member_weights, opts.mode
            ('subsample', 'rank', 'custom')
        """
        values: dict[str, Any] = dict(_FAITHFUL if faithful else _FIXED)
        known = {f.name for f in dataclasses.fields(cls)} - {"faithful"}
        for name, value in overrides.items():
            if name not in known:
                raise InputError(
                    f"option: unknown option {name!r}; valid options are {', '.join(sorted(known))}"
                )
            if value is None:
                continue
            if name in _SWITCHES:
                value = _ALIASES.get(str(value), value)
                if value not in _SWITCHES[name]:
                    raise InputError(
                        f"{name}: unknown value {value!r}; choose from {', '.join(_SWITCHES[name])}"
                    )
            elif name in ("n_draws", "draw_size"):
                if isinstance(value, bool) or int(value) != value or int(value) < 1:
                    raise InputError(f"{name}: must be a positive integer, got {value!r}")
                value = int(value)
            elif name == "round_targets":
                value = bool(value)
            values[name] = value
        return cls(faithful=bool(faithful), **values)

    @property
    def mode(self) -> str:
        """``"faithful"`` or ``"fixed"`` when every quirk switch matches that preset, else
        ``"custom"``."""
        current = {name: getattr(self, name) for name in _FAITHFUL}
        if current == _FAITHFUL:
            return "faithful"
        if current == _FIXED:
            return "fixed"
        return "custom"

    def to_dict(self) -> dict[str, Any]:
        """Every switch, plus ``mode``."""
        out = dataclasses.asdict(self)
        out["mode"] = self.mode
        return out


# ============================================================================ moments
def weighted_moments(
    moments: Moments | Bundle, weights: Any, *, label_level: bool = False
) -> dict[str, np.ndarray]:
    """Moments of the error matrix under arbitrary integer sample weights (docs/metrics.md).

    Generalises :meth:`focal.Moments.weighted` from its two fixed weightings (all ones, and
    ``E[f, :]`` per member) to any stack of weight vectors, e.g. the multiplicities of
    with-replacement draws.

    Args:
        moments: a :class:`focal.search.Moments` (or a bundle, whose moments are built).
        weights: non-negative sample weights, shape ``(n_weights, n_samples)`` or
            ``(n_samples,)``; integer-valued for the κ degenerate rules to be exact.
        label_level: also return ``AG`` and ``U`` (for Cohen's and Fleiss' κ).

    Returns:
        ``{"n": (W,), "g": (W, M), "G": (W, M, M)}`` and, with ``label_level``,
        ``"AG"``, ``"U"`` of shape ``(W, M, M)``; float64 counts.

    Example:
        >>> m = Moments(np.array([[0, 1, 1], [1, 1, 0]]), np.array([0, 0, 0]), 2)
        >>> w = weighted_moments(m, [[2, 1, 0]])
        >>> w["n"].tolist(), w["g"].tolist(), w["G"][0].tolist()
        ([3.0], [[1.0, 3.0]], [[1.0, 1.0], [1.0, 3.0]])
    """
    if isinstance(moments, Bundle):
        moments = Moments.from_bundle(moments)
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = w[None, :]
    if w.ndim != 2 or w.shape[1] != moments.n_samples:
        raise InputError(
            f"weights: expected shape (n_weights, n_samples={moments.n_samples}), got {w.shape}"
        )
    if not np.isfinite(w).all() or (w < 0).any():
        raise InputError("weights: must be finite and non-negative")
    e = moments.errors  # (M, N) float64
    out = {
        "n": w.sum(axis=1),
        "g": w @ e.T,
        "G": np.einsum("wn,jn,ln->wjl", w, e, e, optimize=True),
    }
    if label_level:
        preds = moments.preds
        c = moments.n_classes
        agree = (preds[:, None, :] == preds[None, :, :]).astype(np.float64)  # abstain = own cat
        cats = np.where(preds < 0, c, preds)
        onehot = (cats[:, :, None] == np.arange(c + 1)[None, None, :]).astype(np.float64)
        mg = np.einsum("wn,inc->wic", w, onehot, optimize=True)
        out["AG"] = np.einsum("wn,ijn->wij", w, agree, optimize=True)
        out["U"] = np.einsum("wic,wjc->wij", mg, mg, optimize=True)
    return out


def _kernel_arrays(base: str, wm: dict[str, np.ndarray]) -> tuple[str, dict[str, np.ndarray]]:
    """The kernel kind and float64 arrays of a base metric, like ``prepare_metric``."""
    spec = metric_spec(base)
    out = {"n": wm["n"]}
    if spec.kind in ("gd", "kw", "disagreement"):
        out.update(g=wm["g"], G=wm["G"])
    elif spec.kind == "pair":
        out["X"] = _pair_matrix(spec, wm)
    elif spec.kind == "fleiss":
        ag0 = wm["AG"].copy()
        idx = np.arange(ag0.shape[1])
        ag0[:, idx, idx] = 0.0
        out.update(AG0=ag0, U=wm["U"])
    else:  # pragma: no cover - entropy is not an EnsembleBench metric
        raise InputError(f"metric: {base!r} has no weighted closed form here")
    return spec.kind, out


@functools.partial(jax.jit, static_argnames=("kind",))
def _values_kernel(S: jax.Array, arrays: dict, *, kind: str) -> jax.Array:
    L = S.sum(axis=1)
    a1, quads = _sufficient_statistics(kind, S, arrays)
    return finish(kind, L, a1, quads, arrays)


def _weighted_values(base: str, masks: np.ndarray, wm: dict[str, np.ndarray]) -> np.ndarray:
    """Raw metric value of every team under every weight vector, shape ``(B, W)``."""
    kind, arrays = _kernel_arrays(base, wm)
    if len(masks) == 0:
        return np.zeros((0, len(wm["n"])))
    with jax.enable_x64(True):
        dev = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in arrays.items()}
        S = jnp.asarray(np.asarray(masks, dtype=np.float64))
        return np.asarray(_values_kernel(S, dev, kind=kind))


def _code(metric: str) -> str:
    code = str(metric).upper()
    if code not in EB_METRICS:
        valid = ", ".join(EB_METRICS)
        raise InputError(f"metric: unknown EnsembleBench metric {metric!r}; choose from {valid}")
    return code


def _transform(code: str, values: np.ndarray, sign_convention: str) -> np.ndarray:
    _, main, dev = EB_METRICS[code]
    rule = main if sign_convention == "main" else dev
    return 1.0 - values if rule == "one_minus" else values


def subsample_multiplicities(
    bundle: Bundle | Moments, *, seed: int = 0, n_draws: int = 3, draw_size: int = 100
) -> np.ndarray:
    """Multiplicity weights of the subsampled estimator, shape ``(M, n_draws, n_samples)``.

    For each focal member ``f``: ``n_draws`` draws of ``draw_size`` indices from ``N_f`` with
    replacement (also when ``|N_f| < draw_size``), from its own generator
    ``np.random.default_rng([seed, 0, f])``; entry ``[f, d, n]`` counts how often sample ``n``
    occurs in draw ``d``. All zero for a member that is never wrong.

    Example:
        >>> b = ensembles.Bundle.create(models=["a", "b"], labels=[0, 0, 0],
        ...                             preds=[[1, 1, 0], [0, 1, 1]])
        >>> w = subsample_multiplicities(b, seed=0, n_draws=2, draw_size=5)
        >>> w.shape, w.sum(axis=2).tolist(), bool((w[0][:, 2] == 0).all())
        ((2, 2, 3), [[5, 5], [5, 5]], True)
    """
    mom = bundle if isinstance(bundle, Moments) else Moments.from_bundle(bundle)
    e = mom.errors
    out = np.zeros((mom.n_models, n_draws, mom.n_samples), dtype=np.int64)
    for f in range(mom.n_models):
        neg = np.flatnonzero(e[f] > 0)
        if neg.size == 0:
            continue
        rng = np.random.default_rng([int(seed), 0, f])
        idx = rng.integers(0, neg.size, size=(n_draws, draw_size))
        for d in range(n_draws):
            out[f, d] = np.bincount(neg[idx[d]], minlength=mom.n_samples)
    return out


def focal_values(
    bundle: Bundle | Moments,
    masks: Any,
    *,
    metric: str = "GD",
    estimator: str = "exact",
    sign_convention: str = "main",
    seed: int = 0,
    n_draws: int = 3,
    draw_size: int = 100,
    multiplicities: Any = None,
) -> np.ndarray:
    """Per-focal values of an EnsembleBench metric for every (team, member) pair.

    Entry ``[b, f]`` is the metric of team ``b`` on the negative samples ``N_f`` of member
    ``f`` (exact), or the mean of its values on ``n_draws`` with-replacement draws from ``N_f``
    (subsample), transformed to the ``sign_convention``. NaN where ``f`` is not in the team or
    ``N_f`` is empty.

    Args:
        bundle: the selection bundle (or its :class:`focal.search.Moments`).
        masks: ``(B, M)`` boolean team masks (each team ≥ 2 members).
        metric: an EnsembleBench code of :data:`EB_METRICS`.
        estimator: ``"exact"`` or ``"subsample"``.
        sign_convention: ``"main"`` or ``"dev"``.
        seed, n_draws, draw_size: the subsampled estimator (see
            :func:`subsample_multiplicities`).
        multiplicities: explicit ``(M, D, N)`` draw multiplicities, overriding ``seed`` (for
            tests and replays); implies the subsampled estimator.

    Returns:
        float64 array of shape ``(B, M)``.

    Example:
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
        ...                             preds=[[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 0]])
        >>> focal_values(b, [[True, True, False]], metric="GD").round(3).tolist()  # 1 - GD
        [[0.667, 0.667, nan]]
    """
    code = _code(metric)
    base = EB_METRICS[code][0]
    mom = bundle if isinstance(bundle, Moments) else Moments.from_bundle(bundle)
    masks = _as_masks(masks, mom.n_models)
    wm, n_draws_used = _focal_weighted_moments(
        mom, base in _LABEL_LEVEL, estimator, seed, n_draws, draw_size, multiplicities
    )
    return _focal_from_moments(code, base, masks, wm, n_draws_used, mom, sign_convention)


def _focal_weighted_moments(mom, label_level, estimator, seed, n_draws, draw_size, mult):
    if mult is not None:
        mult = np.asarray(mult)
        if mult.ndim != 3 or mult.shape[0] != mom.n_models or mult.shape[2] != mom.n_samples:
            raise InputError(
                f"multiplicities: expected shape (n_models={mom.n_models}, n_draws, "
                f"n_samples={mom.n_samples}), got {mult.shape}"
            )
        d = mult.shape[1]
        return weighted_moments(mom, mult.reshape(-1, mom.n_samples), label_level=label_level), d
    if estimator == "exact":
        return weighted_moments(mom, mom.errors, label_level=label_level), 1
    if estimator == "subsample":
        mult = subsample_multiplicities(mom, seed=seed, n_draws=n_draws, draw_size=draw_size)
        w = mult.reshape(-1, mom.n_samples)
        return weighted_moments(mom, w, label_level=label_level), n_draws
    raise InputError(f"estimator: unknown estimator {estimator!r}; choose from exact, subsample")


def _focal_from_moments(code, base, masks, wm, n_draws, mom, sign_convention) -> np.ndarray:
    if sign_convention not in ("main", "dev"):
        raise InputError(f"sign_convention: unknown value {sign_convention!r}; use main or dev")
    m = mom.n_models
    raw = _weighted_values(base, masks, wm).reshape(len(masks), m, n_draws).mean(axis=2)
    defined = masks & (np.diag(mom.G) > 0)[None, :]
    return np.where(defined, _transform(code, raw, sign_convention), np.nan)


def pool_disagreement(bundle: Bundle) -> np.ndarray:
    """``d[n] = 1`` where not all pool members predict the same label (abstain is a label).

    Example:
        >>> b = ensembles.Bundle.create(models=["a", "b"], labels=[0, 0, 0],
        ...                             preds=[[1, 0, -1], [1, 1, 0]])
        >>> pool_disagreement(b).tolist()
        [0, 1, 1]
    """
    p = bundle.preds
    return (p != p[:1]).any(axis=0).astype(np.int64)


# ============================================================================ thresholds
def kmeans_two_clusters(
    points: Any, init: Any, *, max_iter: int = 300
) -> tuple[np.ndarray, np.ndarray, int]:
    """Lloyd's algorithm with two clusters from an explicit initialisation.

    Assign each point to the nearest centre (squared Euclidean; ties to cluster 0), move every
    non-empty cluster's centre to its mean (an empty cluster keeps its centre), and stop when
    the assignments no longer change or after ``max_iter`` centre updates. No random restarts.

    Returns:
        ``(labels, centres, n_iter)``: ``(n,)`` int labels, ``(2, 2)`` centres, updates done.

    Example:
        >>> labels, centres, _ = kmeans_two_clusters([[0, 0], [0, 1], [9, 9]], [[0, 0], [9, 9]])
        >>> labels.tolist(), centres.tolist()
        ([0, 0, 1], [[0.0, 0.5], [9.0, 9.0]])
    """
    x = np.asarray(points, dtype=np.float64)
    centres = np.array(init, dtype=np.float64, copy=True)
    labels = np.full(len(x), -1, dtype=np.int64)
    n_iter = 0
    while True:
        dist = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        new = np.argmin(dist, axis=1)
        if np.array_equal(new, labels) or n_iter >= max_iter:
            labels = new
            break
        labels = new
        for k in range(len(centres)):
            if (labels == k).any():
                centres[k] = x[labels == k].mean(axis=0)
        n_iter += 1
    return labels, centres, n_iter


def _kmeans_fit(accuracy, metric, branch, standardize, max_iter):
    acc = np.asarray(accuracy, dtype=np.float64).reshape(-1)
    met = np.asarray(metric, dtype=np.float64).reshape(-1)
    if acc.shape != met.shape:
        raise InputError(f"kmeans: accuracy {acc.shape} and metric {met.shape} differ in length")
    if branch not in ("main", "dev"):
        raise InputError(f"branch: unknown branch {branch!r}; use main or dev")
    pts = np.column_stack([acc, met])
    if len(pts) == 0 or len(np.unique(pts, axis=0)) < 2:
        return None
    mean = np.zeros(2)
    scale = np.ones(2)
    if standardize:
        mean = pts.mean(axis=0)
        std = pts.std(axis=0)
        scale = np.where(std > 0, std, 1.0)
    z = (pts - mean) / scale
    za, zm = z[:, 0], z[:, 1]
    if branch == "main":
        init = [[za.max(), zm.min()], [za.min(), zm.max()]]
    else:
        init = [[za.min(), zm.min()], [za.max(), zm.max()]]
    labels, centres, _ = kmeans_two_clusters(z, init, max_iter=max_iter)
    low = 1 if centres[0, 0] > centres[1, 0] else 0
    return met, labels, centres * scale + mean, low


def kmeans_threshold(
    accuracy: Any,
    metric: Any,
    *,
    branch: SignConvention = "main",
    standardize: bool = False,
    max_iter: int = 300,
) -> float | None:
    """EnsembleBench's per-focal KMeans threshold (``getThresholdClusteringKMeans``, fixed).

    Two clusters on the points ``[accuracy, metric]`` (pass accuracy in % for the faithful
    features), Lloyd from the "strategic" initialisation ``[[max acc, min metric], [min acc,
    max metric]]`` (main branch) or ``[[min acc, min metric], [max acc, max metric]]`` (dev
    branch). The lower-accuracy cluster is the one whose centre has the smaller accuracy (ties:
    cluster 0, as the reference).

    Args:
        accuracy, metric: one value per team.
        branch: ``"main"`` returns the **minimum** metric value of the lower-accuracy cluster,
            ``"dev"`` the **maximum**.
        standardize: cluster on z-scored columns (fixed mode) instead of raw values.
        max_iter: cap on Lloyd updates.

    Returns:
        The threshold, or ``None`` when there are fewer than 2 distinct points or the
        lower-accuracy cluster ends empty (the reference crashes; callers keep every team and
        flag the group).

    Example:
        >>> acc = [90, 91, 80, 81]
        >>> met = [0.2, 0.3, 0.6, 0.7]
        >>> kmeans_threshold(acc, met), kmeans_threshold(acc, met, branch="dev")
        (0.6, 0.7)
        >>> kmeans_threshold([90, 90], [0.5, 0.5]) is None
        True
    """
    fit = _kmeans_fit(accuracy, metric, branch, standardize, max_iter)
    if fit is None:
        return None
    met, labels, _, low = fit
    members = met[labels == low]
    if members.size == 0:
        return None
    return float(members.min() if branch == "main" else members.max())


def kmeans_center_threshold(
    accuracy: Any,
    metric: Any,
    *,
    branch: SignConvention = "main",
    standardize: bool = False,
    max_iter: int = 300,
) -> float | None:
    """EnsembleBench's team-level threshold (``getThresholdClusteringKMeansCenter``).

    Same clustering as :func:`kmeans_threshold`; returns the metric coordinate of the
    lower-accuracy cluster's centre, in the metric's own units (de-standardised). ``None`` when
    there are fewer than 2 distinct points.

    Example:
        >>> round(kmeans_center_threshold([90, 91, 80, 81], [0.2, 0.3, 0.6, 0.7]), 6)
        0.65
    """
    fit = _kmeans_fit(accuracy, metric, branch, standardize, max_iter)
    if fit is None:
        return None
    _, _, centres, low = fit
    return float(centres[low, 1])


def mean_std_threshold(accuracy: Any, metric: Any, *, k: float = 1.0) -> float:
    """EnsembleBench's ``getThreshold``: scan teams by metric ascending (ties by accuracy) and
    return the first metric value whose accuracy is below ``mean(acc) − k·std(acc)``, else the
    largest metric value. Not used by the FQ pipeline; provided for completeness.

    Example:
        >>> mean_std_threshold([90, 91, 70, 92], [0.1, 0.2, 0.3, 0.4])
        0.3
    """
    acc = np.asarray(accuracy, dtype=np.float64)
    met = np.asarray(metric, dtype=np.float64)
    bar = acc.mean() - k * acc.std()
    for m, a in sorted(zip(met.tolist(), acc.tolist(), strict=True)):
        if a < bar:
            return float(m)
    return float(met.max())


def one_third_threshold(metric: Any) -> float:
    """The "one third" threshold, fixed: the value at position ``⌈n/3⌉`` of the **sorted**
    metric (clipped to the last position). The reference returns an element of the unsorted
    array (docs/compat.md). Not used by the FQ pipeline.

    Example:
        >>> one_third_threshold([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
        0.3
    """
    met = np.sort(np.asarray(metric, dtype=np.float64).reshape(-1))
    if met.size == 0:
        raise InputError("metric: empty")
    return float(met[min(math.ceil(met.size / 3), met.size - 1)])


def member_weights(accuracies: Any, *, mode: str = "rank") -> np.ndarray:
    """Weights of a team's members (in index order) from their individual accuracies.

    ``"argsort"`` (faithful): the member at position p gets ``argsort(a)[p]`` — the inverse
    permutation of the rank, not the rank (docs/compat.md; stable sort). ``"rank"``:
    0-based ascending accuracy rank (ties by position). ``"uniform"``: all ones.

    Example:
        >>> member_weights([95, 90, 93], mode="argsort").tolist()
        [1, 2, 0]
        >>> member_weights([95, 90, 93], mode="rank").tolist()
        [2, 0, 1]
    """
    a = np.asarray(accuracies, dtype=np.float64).reshape(-1)
    order = np.argsort(a, kind="stable")
    if mode == "argsort":
        return order.astype(np.int64)
    if mode == "rank":
        rank = np.empty_like(order)
        rank[order] = np.arange(a.size)
        return rank.astype(np.int64)
    if mode == "uniform":
        return np.ones(a.size, dtype=np.int64)
    raise InputError(f"member_weights: unknown mode {mode!r}; choose from argsort, rank, uniform")


# ============================================================================ statistics
@dataclasses.dataclass(frozen=True)
class TeamStatistics:
    """Statistics of a set of teams on one bundle (docs/compat.md; ``getNTeamStatistics``).

    Attributes:
        n_teams: number of teams.
        accuracy_min, accuracy_max, accuracy_mean, accuracy_std: team accuracy (fractions;
            population std); NaN for an empty set.
        n_above_members: teams at least as accurate as every one of their members.
        n_ge_max_single, n_ge_mean_single, n_ge_min_single: teams with accuracy ≥ the max /
            mean / min individual accuracy of the pool.
        n_ge_pool: teams with accuracy ≥ the full-pool ensemble's accuracy.
        rounded_targets: targets were compared in % rounded to 2 decimals (faithful).
    """

    n_teams: int
    accuracy_min: float
    accuracy_max: float
    accuracy_mean: float
    accuracy_std: float
    n_above_members: int
    n_ge_max_single: int
    n_ge_mean_single: int
    n_ge_min_single: int
    n_ge_pool: int
    rounded_targets: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN → ``None``)."""
        return {k: _finite_or_none(v) for k, v in dataclasses.asdict(self).items()}


def _finite_or_none(x: Any) -> Any:
    if isinstance(x, (bool, int, np.integer, str)) or x is None:
        return x.item() if isinstance(x, np.integer) else x
    x = float(x)
    return x if math.isfinite(x) else None


def _resolve_combiner(bundle: Bundle, combiner: str) -> str:
    if combiner == "auto":
        return "soft" if bundle.probs is not None else "plurality"
    return combiner


def _individual_accuracy(bundle: Bundle) -> np.ndarray:
    # Same division as ensembles.team_accuracy (count / N), so equal counts compare equal.
    correct = (bundle.n_samples - bundle.errors.sum(axis=1)).astype(np.float64)
    return correct / float(bundle.n_samples)


def _stats_from(
    acc: np.ndarray,
    masks: np.ndarray,
    single: np.ndarray,
    pool_acc: float,
    round_targets: bool,
) -> TeamStatistics:
    n = len(acc)
    if n == 0:
        nan = math.nan
        return TeamStatistics(0, nan, nan, nan, nan, 0, 0, 0, 0, 0, round_targets)
    member_best = np.where(masks, single[None, :], -np.inf).max(axis=1)
    targets = np.array([single.max(), single.mean(), single.min(), pool_acc])
    if round_targets:
        left = acc * 100.0
        targets = np.round(targets * 100.0, 2)
    else:
        left = acc
    ge = left[:, None] >= targets[None, :]
    return TeamStatistics(
        n_teams=n,
        accuracy_min=float(acc.min()),
        accuracy_max=float(acc.max()),
        accuracy_mean=float(acc.mean()),
        accuracy_std=float(acc.std()),
        n_above_members=int((acc >= member_best).sum()),
        n_ge_max_single=int(ge[:, 0].sum()),
        n_ge_mean_single=int(ge[:, 1].sum()),
        n_ge_min_single=int(ge[:, 2].sum()),
        n_ge_pool=int(ge[:, 3].sum()),
        rounded_targets=round_targets,
    )


def team_statistics(
    bundle_eval: Bundle,
    masks: Any,
    *,
    combiner: str = "auto",
    round_targets: bool = False,
) -> TeamStatistics:
    """Statistics of a set of teams on an evaluation bundle (docs/compat.md).

    Args:
        bundle_eval: the bundle to report on (normally a split not used for selection).
        masks: ``(K, M)`` boolean team masks.
        combiner: ``"auto"`` (soft if the bundle has ``probs``, else plurality) or a name of
            :data:`ensembles.COMBINERS` without weights.
        round_targets: faithful comparison: accuracies in %, targets rounded to 2 decimals (the
            reference). Default: exact comparison of fractions.

    Returns:
        A :class:`TeamStatistics`.

    Example:
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 1, 1, 0],
        ...                             preds=[[0, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 0]])
        >>> s = team_statistics(b, [[True, False, True], [True, True, False]])
        >>> s.n_teams, s.accuracy_max, s.n_above_members, s.n_ge_pool
        (2, 0.75, 1, 0)
    """
    masks = _as_masks(masks, bundle_eval.n_models)
    comb = _resolve_combiner(bundle_eval, combiner)
    acc = ensembles.team_accuracy(bundle_eval, masks, combiner=comb) if len(masks) else np.zeros(0)
    full = np.ones((1, bundle_eval.n_models), dtype=bool)
    pool_acc = float(ensembles.team_accuracy(bundle_eval, full, combiner=comb)[0])
    return _stats_from(acc, masks, _individual_accuracy(bundle_eval), pool_acc, round_targets)


def random_selection(
    candidates: Any, n_teams: int, *, seed: int | np.random.Generator = 0
) -> np.ndarray:
    """A uniformly random set of ``n_teams`` distinct teams among ``candidates`` (the
    random-selection baseline), in the candidates' order.

    The reference draws with replacement (``np.random.choice``) from the global RNG; this draws
    without replacement (a *set* of teams) from an explicit generator.

    Args:
        candidates: ``(B, M)`` boolean masks to draw from.
        n_teams: how many (clipped to ``B``).
        seed: an int seed or a ``np.random.Generator``.

    Example:
        >>> c = np.eye(4, dtype=bool) | np.roll(np.eye(4, dtype=bool), 1, axis=1)
        >>> random_selection(c, 2, seed=0).shape
        (2, 4)
    """
    cand = np.asarray(candidates, dtype=bool)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    k = max(0, min(int(n_teams), len(cand)))
    pick = np.sort(rng.choice(len(cand), size=k, replace=False)) if k else np.zeros(0, int)
    return cand[pick]


# ============================================================================ results
@dataclasses.dataclass(frozen=True, eq=False)
class TeamSelection:
    """A selected set of teams and how it fares.

    Attributes:
        method: ``"fq"``, ``"baseline"``, ``"eq"``, ``"hq_rate"`` or ``"hq_mean"``.
        metric: EnsembleBench code (``"EQ"`` for the consensus).
        masks: ``(K, M)`` boolean masks, canonical order (EQ: by accuracy, best first).
        members: model names of each team.
        scores: FQ score (FQ/HQ), baseline metric value (baseline) or NaN (EQ), shape (K,).
        accuracy: each team's accuracy on the selection bundle (the pipeline's combiner).
        statistics: :class:`TeamStatistics` on the evaluation bundle.
        random_statistics: the same for a seeded random set of equal size, or ``None``.
    """

    method: str
    metric: str
    masks: np.ndarray
    members: tuple[tuple[str, ...], ...]
    scores: np.ndarray
    accuracy: np.ndarray
    statistics: TeamStatistics
    random_statistics: TeamStatistics | None = None

    @property
    def n_teams(self) -> int:
        """Number of selected teams."""
        return len(self.masks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "method": self.method,
            "metric": self.metric,
            "teams": [
                {
                    "members": list(m),
                    "size": len(m),
                    "score": _finite_or_none(s),
                    "accuracy": _finite_or_none(a),
                }
                for m, s, a in zip(self.members, self.scores, self.accuracy, strict=True)
            ],
            "statistics": self.statistics.to_dict(),
            "random_statistics": None
            if self.random_statistics is None
            else self.random_statistics.to_dict(),
        }


@dataclasses.dataclass(frozen=True, eq=False)
class FQResult:
    """Result of :func:`fq_select`.

    Attributes:
        mode: ``"faithful"``, ``"fixed"`` or ``"custom"`` (see :class:`FQOptions`).
        options: the resolved :class:`FQOptions`.
        seed: the seed of the subsampled estimator and of the random baselines.
        models: model names.
        sizes: team sizes of the FQ selection (default 2..M-1, the full team excluded).
        n_teams_scored: teams scored per metric.
        combiner: the combiner actually used (``"auto"`` resolved).
        selected: ``{code: TeamSelection}``, FQ selection per metric (union over sizes).
        baselines: ``{code: TeamSelection}``, mean-threshold baseline per metric.
        eq_metrics: the metrics whose selections the EQ consensus intersects.
        eq: the EQ consensus teams (top by selection accuracy), or ``None``.
        eval_split: ``"selection"`` when statistics were computed on the selection bundle
            itself (no ``bundle_eval``), else ``"eval"``.
        flags: notes on degenerate groups (fewer than 2 distinct KMeans points, zero weights).
    """

    mode: str
    options: FQOptions
    seed: int
    models: tuple[str, ...]
    sizes: tuple[int, ...]
    n_teams_scored: int
    combiner: str
    selected: Mapping[str, TeamSelection]
    baselines: Mapping[str, TeamSelection]
    eq_metrics: tuple[str, ...]
    eq: TeamSelection | None
    eval_split: str
    flags: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict recording the mode and every option."""
        return {
            "method": "fq_compat",
            "mode": self.mode,
            "options": self.options.to_dict(),
            "seed": self.seed,
            "models": list(self.models),
            "sizes": list(self.sizes),
            "n_teams_scored": self.n_teams_scored,
            "combiner": self.combiner,
            "eval_split": self.eval_split,
            "selected": {k: v.to_dict() for k, v in self.selected.items()},
            "baselines": {k: v.to_dict() for k, v in self.baselines.items()},
            "eq_metrics": list(self.eq_metrics),
            "eq": None if self.eq is None else self.eq.to_dict(),
            "flags": list(self.flags),
        }


# ============================================================================ the pool
def _as_masks(masks: Any, n_models: int) -> np.ndarray:
    arr = np.asarray(masks)
    if arr.size == 0:
        return np.zeros((0, n_models), dtype=bool)
    if arr.ndim != 2 or arr.shape[1] != n_models:
        raise InputError(f"teams: expected (n_teams, n_models={n_models}) masks, got {arr.shape}")
    return arr.astype(bool)


def _enumerate(n_models: int, sizes: Sequence[int]) -> np.ndarray:
    rows = []
    for size in sizes:
        for comb in itertools.combinations(range(n_models), size):
            row = np.zeros(n_models, dtype=bool)
            row[list(comb)] = True
            rows.append(row)
    return np.array(rows, dtype=bool).reshape(-1, n_models)


def _bitmasks(masks: np.ndarray) -> np.ndarray:
    """Team masks as int64 bitmasks (bit m = model m)."""
    weights = np.left_shift(np.int64(1), np.arange(masks.shape[1], dtype=np.int64))
    return (np.asarray(masks, dtype=np.int64) * weights[None, :]).sum(axis=1)


def _selection_sizes(sizes: Any, n_models: int) -> tuple[int, ...]:
    if sizes is None:
        if n_models < 3:
            raise InputError("sizes: the FQ pipeline needs at least 3 models (sizes 2..M-1)")
        return tuple(range(2, n_models))
    return parse_sizes(sizes, n_models)


class _Pool:
    """Teams of the selection bundle with their accuracies and cached per-focal values."""

    def __init__(
        self,
        bundle: Bundle,
        sizes: tuple[int, ...],
        options: FQOptions,
        seed: int,
        max_teams: int | None,
    ):
        self.bundle = bundle
        self.options = options
        self.seed = int(seed)
        self.mom = Moments.from_bundle(bundle)
        self.sizes = sizes
        m = bundle.n_models
        n_teams = sum(math.comb(m, s) for s in sizes)
        if max_teams is not None and n_teams > max_teams:
            raise InputError(
                f"sizes: {n_teams:,} teams exceed the budget of {max_teams:,} for the compat "
                "pipelines (they score every team); pass fewer sizes or raise max_teams"
            )
        self.masks = _enumerate(m, sizes)
        self.team_size = self.masks.sum(axis=1)
        self.combiner = _resolve_combiner(bundle, options.combiner)
        self.acc = ensembles.team_accuracy(bundle, self.masks, combiner=self.combiner)
        self.single = _individual_accuracy(bundle)
        self._values: dict[str, np.ndarray] = {}
        self._focal_moments: dict[bool, tuple[dict, int]] = {}
        self._acc_used: np.ndarray | None = None
        self.flags: list[str] = []

    # ------------------------------------------------------------------ accuracies
    @property
    def acc_used(self) -> np.ndarray:
        """Team accuracy (fraction) used by the thresholds, per ``acc_source``."""
        if self._acc_used is None:
            if self.options.acc_source == "selection":
                self._acc_used = self.acc
            else:
                self._acc_used = self._negative_accuracy()
        return self._acc_used

    def _negative_accuracy(self) -> np.ndarray:
        b = self.bundle
        e = self.mom.errors  # (M, N)
        n_neg = e.sum(axis=1)
        correct = np.stack(
            [ensembles.combine(b, mask, combiner=self.combiner) == b.labels for mask in self.masks]
        ).astype(np.float64)  # (B, N)
        per_focal = np.divide(
            correct @ e.T,
            n_neg[None, :],
            out=np.zeros((len(self.masks), b.n_models)),
            where=n_neg[None, :] > 0,
        )
        use = self.masks & (n_neg > 0)[None, :]
        count = use.sum(axis=1)
        mean = np.where(use, per_focal, 0.0).sum(axis=1) / np.maximum(count, 1)
        # A team none of whose members is ever wrong has no negatives: use its accuracy.
        return np.where(count > 0, mean, self.acc)

    # ------------------------------------------------------------------ per-focal values
    def values(self, code: str) -> np.ndarray:
        """(B, M) per-focal metric values in the chosen sign convention (NaN if undefined)."""
        if code not in self._values:
            base = EB_METRICS[code][0]
            label = base in _LABEL_LEVEL
            if label not in self._focal_moments:
                o = self.options
                self._focal_moments[label] = _focal_weighted_moments(
                    self.mom, label, o.estimator, self.seed, o.n_draws, o.draw_size, None
                )
            wm, d = self._focal_moments[label]
            self._values[code] = _focal_from_moments(
                code, base, self.masks, wm, d, self.mom, self.options.sign_convention
            )
        return self._values[code]

    def groups(self):
        """Yield ``(size, f, rows)``: the teams of one size containing focal ``f``."""
        for size in self.sizes:
            in_size = self.team_size == size
            for f in range(self.bundle.n_models):
                rows = np.flatnonzero(in_size & self.masks[:, f])
                if rows.size:
                    yield size, f, rows

    def scaled(self, code: str) -> np.ndarray:
        """(B, M) values min-max scaled within each (focal, size) group."""
        vals = self.values(code)
        out = np.full_like(vals, np.nan)
        for _, f, rows in self.groups():
            x = vals[rows, f]
            ok = ~np.isnan(x)
            if not ok.any():
                continue
            lo, hi = x[ok].min(), x[ok].max()
            if hi == lo:
                y = x if self.options.constant_group == "raw" else np.where(ok, 0.0, np.nan)
            else:
                y = (x - lo) / (hi - lo)
            out[rows, f] = y
        return out

    def fq(self, code: str, rows: np.ndarray | None = None) -> np.ndarray:
        """FQ score (weighted mean of the scaled per-focal values) of the given teams."""
        scaled = self.scaled(code)
        rows = np.arange(len(self.masks)) if rows is None else rows
        out = np.full(len(rows), np.nan)
        for i, r in enumerate(rows):
            members = np.flatnonzero(self.masks[r])
            w = member_weights(self.single[members], mode=self.options.member_weights)
            s = scaled[r, members]
            ok = ~np.isnan(s)
            if not ok.any():
                continue
            wt = w[ok].astype(np.float64)
            if wt.sum() > 0:
                out[i] = float((wt * s[ok]).sum() / wt.sum())
            else:
                # Only zero-weight members have values (the reference divides by zero).
                out[i] = float(s[ok].mean())
                self.flags.append(
                    f"{code}: team {self._name(r)}: member weights sum to 0, plain mean used"
                )
        return out

    def _name(self, row: int) -> str:
        return "+".join(m for m, k in zip(self.bundle.models, self.masks[row], strict=True) if k)


def _better(x: np.ndarray, thr: float, sign_convention: str) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return x < thr if sign_convention == "main" else x > thr


def _focal_filter(pool: _Pool, code: str) -> np.ndarray:
    """(B, M) survivors of the per-focal KMeans/mean filter."""
    o = pool.options
    vals = pool.values(code)
    keep = np.zeros(vals.shape, dtype=bool)
    acc_pct = pool.acc_used * 100.0
    for size, f, rows in pool.groups():
        x = vals[rows, f]
        ok = ~np.isnan(x)
        if not ok.any():
            continue
        r, x = rows[ok], x[ok]
        thr_k = kmeans_threshold(
            acc_pct[r], x, branch=o.sign_convention, standardize=o.kmeans_features != "raw"
        )
        if thr_k is None:
            keep[r, f] = True
            pool.flags.append(
                f"{code}: focal {pool.bundle.models[f]} size {size}: KMeans undefined "
                f"({len(r)} team(s)), all kept"
            )
            continue
        mean = float(x.mean())
        thr = min(mean, thr_k) if o.sign_convention == "main" else max(mean, thr_k)
        keep[r, f] = _better(x, float(np.round(thr, 3)), o.sign_convention)
    return keep


def _fq_select_metric(pool: _Pool, code: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows selected by the FQ pipeline for one metric, and their FQ scores."""
    o = pool.options
    survivors = _focal_filter(pool, code).any(axis=1)
    acc_pct = pool.acc_used * 100.0
    chosen, scores = [], []
    for size in pool.sizes:
        rows = np.flatnonzero(survivors & (pool.team_size == size))
        if rows.size == 0:
            continue
        fq = pool.fq(code, rows)
        ok = ~np.isnan(fq)
        thr = kmeans_center_threshold(
            acc_pct[rows[ok]],
            fq[ok],
            branch=o.sign_convention,
            standardize=o.kmeans_features != "raw",
        )
        if thr is None:
            keep = ok
            pool.flags.append(
                f"{code}: size {size}: team-level KMeans undefined ({int(ok.sum())} "
                "candidate(s)), all kept"
            )
        else:
            keep = _better(fq, thr, o.sign_convention)
        chosen.append(rows[keep])
        scores.append(fq[keep])
    if not chosen:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(chosen), np.concatenate(scores)


# ============================================================================ public API
def fq_scores(
    bundle_select: Bundle,
    *,
    metric: str = "GD",
    sizes: Any = None,
    faithful: bool = False,
    seed: int = 0,
    max_teams: int | None = FQ_MAX_TEAMS,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """FQ scores of every team, without any filter.

    Per-focal values on each member's negatives, min-max scaled within each (focal, size)
    group, then the member-weighted mean over the team's members. In the main convention lower
    is more diverse. HQ-Ensemble (:func:`focal.compat.hq_select`) prunes on these scores.

    Args:
        bundle_select: the selection bundle.
        metric: an EnsembleBench code of :data:`EB_METRICS`.
        sizes: team sizes (default 2..M-1; the scaling groups are per size, so sizes do not
            influence each other).
        faithful, seed, max_teams, options: as in :func:`fq_select`.

    Returns:
        ``(masks, scores)``: ``(B, M)`` boolean masks in canonical order and ``(B,)`` FQ scores
        (NaN when no member has negatives).

    Example:
        >>> b = ensembles.Bundle.create(models=["a", "b", "c", "d"], labels=[0] * 6,
        ...     preds=[[1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0], [0, 0, 1, 1, 0, 1],
        ...            [1, 0, 0, 0, 1, 1]])
        >>> masks, fq = fq_scores(b, metric="GD", sizes=2)
        >>> masks.shape, bool(np.nanmin(fq) >= 0)
        ((6, 4), True)
    """
    code = _code(metric)
    opts = FQOptions.resolve(faithful=faithful, **options)
    pool = _Pool(
        bundle_select, _selection_sizes(sizes, bundle_select.n_models), opts, seed, max_teams
    )
    return pool.masks.copy(), pool.fq(code)


def _selection(method, code, pool, rows, scores, ctx) -> TeamSelection:
    masks = pool.masks[rows] if rows.size else np.zeros((0, pool.bundle.n_models), dtype=bool)
    return TeamSelection(
        method=method,
        metric=code,
        masks=masks,
        members=tuple(
            tuple(m for m, k in zip(pool.bundle.models, row, strict=True) if k) for row in masks
        ),
        scores=np.asarray(scores, dtype=np.float64),
        accuracy=pool.acc[rows] if rows.size else np.zeros(0),
        statistics=ctx.stats(masks),
        random_statistics=ctx.random_stats(method, code, len(masks)),
    )


class _EvalContext:
    """Evaluation-side accuracies, cached by bitmask, and the seeded random baselines."""

    def __init__(
        self,
        bundle_eval: Bundle,
        combiner: str,
        options: FQOptions,
        seed: int,
        candidates: np.ndarray,
        random_baseline: bool,
    ):
        self.bundle = bundle_eval
        self.combiner = _resolve_combiner(bundle_eval, combiner)
        self.round_targets = options.round_targets
        self.seed = int(seed)
        self.candidates = candidates
        self.random_baseline = random_baseline
        full = np.ones((1, bundle_eval.n_models), dtype=bool)
        self.pool_acc = float(ensembles.team_accuracy(bundle_eval, full, combiner=self.combiner)[0])
        self.single = _individual_accuracy(bundle_eval)
        self._acc: dict[int, float] = {}

    def accuracy(self, masks: np.ndarray) -> np.ndarray:
        keys = _bitmasks(masks).tolist() if len(masks) else []
        missing = [i for i, k in enumerate(keys) if k not in self._acc]
        if missing:
            acc = ensembles.team_accuracy(self.bundle, masks[missing], combiner=self.combiner)
            for i, a in zip(missing, acc, strict=True):
                self._acc[keys[i]] = float(a)
        return np.array([self._acc[k] for k in keys], dtype=np.float64)

    def stats(self, masks: np.ndarray) -> TeamStatistics:
        return _stats_from(
            self.accuracy(masks), masks, self.single, self.pool_acc, self.round_targets
        )

    def random_stats(self, method: str, code: str, n: int) -> TeamStatistics | None:
        if not self.random_baseline:
            return None
        key = [self.seed, 1, _METHOD_IDS.get(method, 99), _CODE_IDS.get(code, 99)]
        return self.stats(random_selection(self.candidates, n, seed=np.random.default_rng(key)))


_METHOD_IDS = {"fq": 0, "baseline": 1, "eq": 2, "hq_rate": 3, "hq_mean": 4}
_CODE_IDS = {code: i for i, code in enumerate((*EB_METRICS, "EQ"))}


def _baseline_rows(bundle, masks, code, options) -> tuple[np.ndarray, np.ndarray, str | None]:
    base = EB_METRICS[code][0]
    mom = Moments.from_bundle(bundle)
    if options.sample_set == "pool_disagreement":
        w = pool_disagreement(bundle)
    else:
        w = np.ones(bundle.n_samples, dtype=np.int64)
    wm = weighted_moments(mom, w, label_level=base in _LABEL_LEVEL)
    raw = _weighted_values(base, masks, wm)[:, 0]
    if wm["n"][0] == 0:
        raw = np.full(len(masks), np.nan)
    vals = _transform(code, raw, options.sign_convention)
    if np.isnan(vals).all():
        return np.zeros(0, dtype=np.int64), vals, f"{code}: baseline undefined on every team"
    thr = float(np.round(np.nanmean(vals), 3))
    keep = _better(vals, thr, options.sign_convention)
    return np.flatnonzero(keep), vals, None


def baseline_select(
    bundle_select: Bundle,
    *,
    metrics: Sequence[str] = tuple(EB_METRICS),
    sizes: Any = None,
    faithful: bool = False,
    **options: Any,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Mean-threshold selection on the baseline metrics (docs/compat.md).

    For each metric over all teams of ``sizes`` (default 2..M, the full team included as in
    the reference): ``thr = mean(score)``; select ``score < round(thr, 3)`` in the main
    convention (``>`` in dev). Scores are computed on all samples, or (``sample_set=
    "pool_disagreement"``, faithful) on the samples where the pool does not predict unanimously.

    Returns:
        ``{code: (masks, scores)}``: the selected teams in canonical order and their scores.

    Example:
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0] * 4,
        ...     preds=[[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]])
        >>> sel = baseline_select(b, metrics=["BD"])
        >>> [m.astype(int).tolist() for m in sel["BD"][0]]
        [[1, 0, 1]]
    """
    opts = FQOptions.resolve(faithful=faithful, **options)
    m = bundle_select.n_models
    size_tuple = tuple(range(2, m + 1)) if sizes is None else parse_sizes(sizes, m)
    masks = _enumerate(m, size_tuple)
    out = {}
    for metric in metrics:
        code = _code(metric)
        rows, vals, _ = _baseline_rows(bundle_select, masks, code, opts)
        out[code] = (masks[rows], vals[rows])
    return out


def fq_select(
    bundle_select: Bundle,
    *,
    metrics: Sequence[str] = ("CK", "QS", "BD", "FK", "KW", "GD"),
    sizes: Any = None,
    faithful: bool = False,
    seed: int = 0,
    bundle_eval: Bundle | None = None,
    baselines: bool = True,
    n_eq_metrics: int = 3,
    eq_top: int = 3,
    random_baseline: bool = True,
    max_teams: int | None = FQ_MAX_TEAMS,
    **options: Any,
) -> FQResult:
    """EnsembleBench's FQ team selection (CVPR'21) as an explicit compatibility mode.

    Pipeline (docs/compat.md), for each metric code:

    1. Team accuracy on ``bundle_select`` with soft voting (``combiner="auto"``); option
       ``acc_source="negatives"`` (DP-Ensemble) uses the mean over members f of the team's
       accuracy on ``N_f``.
    2. Per-focal values of every team on each member's negatives (``estimator``).
    3. Per (focal, size) group: keep teams with ``metric < round(min(mean, kmeans_threshold),
       3)`` (dev: ``max`` and ``>``), and min-max scale the group (``constant_group``).
    4. Per size: candidates = union of the survivors; FQ = member-weighted mean of the scaled
       values (``member_weights``); keep ``FQ < kmeans_center_threshold`` (dev: ``>``).
    5. The selection of a metric is the union over sizes.

    Also: the mean-threshold baselines (``baselines``), the EQ consensus (the
    ``n_eq_metrics`` metrics whose selections hold the most accurate team, intersected, best
    ``eq_top`` teams by selection accuracy; the reference ranks with test accuracy), and the
    statistics of every selection on ``bundle_eval`` with a seeded random-selection baseline.

    Args:
        bundle_select: outputs on the selection split: everything that chooses uses only this.
        metrics: EnsembleBench codes (:data:`EB_METRICS`).
        sizes: team sizes selected from (default 2..M-1, the full team excluded).
        faithful: start from the faithful preset (see :class:`FQOptions`); default fixed.
        seed: seed of the subsampled estimator (one generator per focal) and of the random
            baselines. Results are deterministic for a given seed.
        bundle_eval: bundle the statistics are reported on (default: ``bundle_select``, which
            the result records as ``eval_split="selection"``).
        baselines: also run the mean-threshold baseline selection (on sizes 2..M, or ``sizes``).
        n_eq_metrics, eq_top: EQ consensus parameters (3 and 3 in the reference).
        random_baseline: add statistics of a random set of equal size to every selection.
        max_teams: refuse pools with more teams than this (every team is scored).
        **options: any switch of :class:`FQOptions` (``estimator``, ``kmeans_features``,
            ``constant_group``, ``member_weights``, ``sample_set``, ``sign_convention``,
            ``acc_source``, ``combiner``, ``round_targets``, ``n_draws``, ``draw_size``).

    Returns:
        An :class:`FQResult` recording the mode and every option.

    Raises:
        ValueError: unknown metric or option, bad sizes, too many teams.

    References:
        Wu, Liu, Xie, Chow, Wei. "Boosting Ensemble Accuracy by Revisiting Ensemble Diversity
        Metrics." CVPR 2021, §3-4 (focal diversity, FQ/EQ selection).

    Example:
        >>> b = ensembles.Bundle.create(models=["a", "b", "c", "d"], labels=[0] * 8,
        ...     preds=[[1, 1, 0, 0, 0, 0, 1, 0], [0, 1, 1, 0, 0, 0, 0, 1],
        ...            [0, 0, 1, 1, 0, 1, 0, 0], [1, 0, 0, 0, 1, 1, 0, 0]])
        >>> res = fq_select(b, metrics=("GD", "KW"), seed=0)
        >>> res.mode, sorted(res.selected), res.selected["GD"].masks.shape[1]
        ('fixed', ['GD', 'KW'], 4)
        >>> fq_select(b, metrics=("GD",), faithful=True).options.estimator
        'subsample'
    """
    opts = FQOptions.resolve(faithful=faithful, **options)
    codes = tuple(dict.fromkeys(_code(m) for m in metrics))
    if not codes:
        raise InputError("metrics: give at least one EnsembleBench metric")
    m = bundle_select.n_models
    size_tuple = _selection_sizes(sizes, m)
    pool = _Pool(bundle_select, size_tuple, opts, seed, max_teams)
    evaluation = bundle_eval if bundle_eval is not None else bundle_select
    if evaluation.models != bundle_select.models:
        raise InputError("bundle_eval: its models differ from bundle_select's")
    ctx = _EvalContext(evaluation, opts.combiner, opts, seed, pool.masks, random_baseline)

    selected: dict[str, TeamSelection] = {}
    for code in codes:
        rows, scores = _fq_select_metric(pool, code)
        order = np.argsort(rows, kind="stable")  # canonical order
        selected[code] = _selection("fq", code, pool, rows[order], scores[order], ctx)

    base_sel: dict[str, TeamSelection] = {}
    if baselines:
        base_sizes = tuple(range(2, m + 1)) if sizes is None else size_tuple
        base_pool = pool
        if base_sizes != size_tuple:
            base_pool = _Pool(bundle_select, base_sizes, opts, seed, max_teams)
        for code in codes:
            rows, vals, flag = _baseline_rows(bundle_select, base_pool.masks, code, opts)
            if flag:
                pool.flags.append(flag)
            base_sel[code] = _selection("baseline", code, base_pool, rows, vals[rows], ctx)

    eq_codes, eq = _eq_consensus(pool, selected, ctx, n_eq_metrics, eq_top)
    return FQResult(
        mode=opts.mode,
        options=opts,
        seed=int(seed),
        models=bundle_select.models,
        sizes=size_tuple,
        n_teams_scored=len(pool.masks),
        combiner=pool.combiner,
        selected=selected,
        baselines=base_sel,
        eq_metrics=eq_codes,
        eq=eq,
        eval_split="selection" if bundle_eval is None else "eval",
        flags=tuple(pool.flags),
    )


def _eq_consensus(pool, selected, ctx, n_metrics, n_top):
    if n_metrics < 1 or not selected:
        return (), None
    best = {
        code: (float(sel.accuracy.max()) if sel.n_teams else -math.inf)
        for code, sel in selected.items()
    }
    ranked = sorted(best, key=lambda c: -best[c])[:n_metrics]  # stable: metric order on ties
    rows = None
    index = {k: i for i, k in enumerate(_bitmasks(pool.masks).tolist())}
    for code in ranked:
        found = {index[k] for k in _bitmasks(selected[code].masks).tolist()}
        rows = found if rows is None else rows & found
    rows_arr = np.array(sorted(rows or ()), dtype=np.int64)
    if rows_arr.size:
        order = np.lexsort((rows_arr, -pool.acc[rows_arr]))[: max(0, n_top)]
        rows_arr = rows_arr[order]
    return tuple(ranked), _selection(
        "eq", "EQ", pool, rows_arr, np.full(len(rows_arr), np.nan), ctx
    )
