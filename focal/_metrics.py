"""Diversity metrics of many teams at once, through the closed forms of docs/metrics.md.

Every metric is evaluated per *weight vector* ``w`` (docs/metrics.md): one weight (all ones)
for the baseline metrics, one per member ``f`` (``w = E[f, :]``, its negative samples) for the
focal variants. The moments under each weight are precomputed once; a batch of B teams given as
a ``(B, M)`` 0/1 matrix ``S`` is then scored with a few matrix products, independent of the
number of samples (entropy excepted, which needs the per-sample error counts).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from ensembles.util import InputError

from ._moments import Moments

__all__ = ["METRICS", "MetricSpec", "metric_spec", "prepare_metric", "team_values"]

Direction = Literal["higher", "lower"]

# base name -> (direction, kernel kind, needs label-level moments)
_BASE: dict[str, tuple[Direction, str, bool]] = {
    "q_statistic": ("lower", "pair", False),
    "correlation": ("lower", "pair", False),
    "binary_disagreement": ("higher", "disagreement", False),
    "cohen_kappa": ("lower", "pair", True),
    "fleiss_kappa": ("lower", "fleiss", True),
    "kw_variance": ("higher", "kw", False),
    "generalized_diversity": ("higher", "gd", False),
    "entropy": ("higher", "entropy", False),
}


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """What a metric name means.

    Attributes:
        name: the name as requested (e.g. ``"focal"``, ``"focal_q_statistic"``).
        base: the underlying baseline metric (e.g. ``"generalized_diversity"``).
        focal: computed on each member's negative samples and averaged (docs/metrics.md).
        direction: ``"higher"`` or ``"lower"``: which way is more diverse.
        kind: kernel used to evaluate it.

    Example:
        >>> spec = metric_spec("focal_q_statistic")
        >>> spec.base, spec.focal, spec.direction
        ('q_statistic', True, 'lower')
    """

    name: str
    base: str
    focal: bool
    direction: Direction
    kind: str

    @property
    def sign(self) -> float:
        """+1 when higher is more diverse, -1 otherwise (ranking key = sign * score)."""
        return 1.0 if self.direction == "higher" else -1.0


def _all_specs() -> dict[str, MetricSpec]:
    specs = {"focal": MetricSpec("focal", "generalized_diversity", True, "higher", "gd")}
    for base, (direction, kind, _) in _BASE.items():
        specs[base] = MetricSpec(base, base, False, direction, kind)
        specs[f"focal_{base}"] = MetricSpec(f"focal_{base}", base, True, direction, kind)
    return specs


_SPECS = _all_specs()

#: All metric names, ``"focal"`` first, then the baselines, then their focal variants.
METRICS: tuple[str, ...] = (
    "focal",
    *_BASE,
    *(f"focal_{b}" for b in _BASE),
)


def metric_spec(name: str) -> MetricSpec:
    """The :class:`MetricSpec` of a metric name; ``ValueError`` listing valid names otherwise.

    Example:
        >>> metric_spec("focal_q_statistic").direction
        'lower'
    """
    try:
        return _SPECS[name]
    except KeyError:
        raise InputError(
            f"metric: unknown metric {name!r}; choose from {', '.join(METRICS)}"
        ) from None


# ---------------------------------------------------------------------------- preparation


def _safe_div(num: np.ndarray, den: np.ndarray, zero_value: float) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, zero_value, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _pair_matrix(spec: MetricSpec, w: dict[str, np.ndarray]) -> np.ndarray:
    """(W, M, M) matrix of a pairwise metric for every pair, zero diagonal (docs/metrics.md)."""
    n = w["n"][:, None, None]
    if spec.base == "cohen_kappa":
        with np.errstate(divide="ignore", invalid="ignore"):
            p_o = _safe_div(w["AG"], np.broadcast_to(n, w["AG"].shape), 0.0)
            p_e = _safe_div(w["U"], np.broadcast_to(n * n, w["U"].shape), 0.0)
        # p_e = 1 exactly when U = n^2 (integers): kappa := 1 (identical constant voters).
        x = np.where(w["U"] == n * n, 1.0, _safe_div(p_o - p_e, 1.0 - p_e, 1.0))
    else:
        g = w["g"]
        n00 = w["G"]
        n01 = g[:, :, None] - n00
        n10 = g[:, None, :] - n00
        n11 = n - g[:, :, None] - g[:, None, :] + n00
        num = n11 * n00 - n01 * n10
        if spec.base == "q_statistic":
            x = _safe_div(num, n11 * n00 + n01 * n10, 0.0)
        else:  # correlation
            den = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
            x = _safe_div(num, np.sqrt(den), 0.0)
    x = x.copy()
    idx = np.arange(x.shape[1])
    x[:, idx, idx] = 0.0
    return x


def prepare_metric(spec: MetricSpec, moments: Moments) -> dict[str, np.ndarray]:
    """Arrays the kernel of ``spec`` needs, computed once per bundle (float64)."""
    label_level = _BASE[spec.base][2]
    w = moments.weighted(spec.focal, label_level=label_level)
    out: dict[str, np.ndarray] = {"n": w["n"]}
    if spec.kind in ("gd", "kw", "disagreement"):
        # Integer counts: float32 products are exact while every A2 = Σ w k² ≤ N·M² < 2^24
        # (docs/metrics.md), and run about twice as fast as float64 on CPU.
        exact32 = moments.n_samples * moments.n_models**2 < (1 << 24)
        count_dtype = np.float32 if exact32 else np.float64
        out.update(g=w["g"].astype(count_dtype), G=w["G"].astype(count_dtype))
    elif spec.kind == "pair":
        out["X"] = _pair_matrix(spec, w)
    elif spec.kind == "fleiss":
        ag0 = w["AG"].copy()
        idx = np.arange(ag0.shape[1])
        ag0[:, idx, idx] = 0.0
        out.update(AG0=ag0, U=w["U"])
    elif spec.kind == "entropy":
        out["E"] = moments.errors
    else:  # pragma: no cover - registry and kernels are defined together
        raise AssertionError(spec.kind)
    return out


# ---------------------------------------------------------------------------- kernels


def _quad(S: jax.Array, X: jax.Array) -> jax.Array:
    """``v[b, w] = S[b] · X[w] · S[b]`` for S (B, M) and X (W, M, M), as one matrix product."""
    n_w, m, _ = X.shape
    Z = S @ jnp.transpose(X, (1, 0, 2)).reshape(m, n_w * m)  # (B, W*M), Z[b,(w,l)]
    return jnp.einsum("bwl,bl->bw", Z.reshape(S.shape[0], n_w, m), S)


def quadratic_tensors(kind: str) -> tuple[str, ...]:
    """Names of the (W, M, M) tensors whose quadratic forms ``sᵀ X_w s`` a kind needs."""
    return {"gd": ("G",), "kw": ("G",), "disagreement": ("G",), "pair": ("X",),
            "fleiss": ("AG0", "U")}[kind]  # fmt: skip


def team_statistics(kind: str, S: jax.Array, arrays: dict) -> tuple[jax.Array | None, tuple]:
    """Sufficient statistics of a batch of teams: ``(A1, quads)``, each (B, W), float64.

    ``A1 = S gᵀ`` (only for the oracle kinds) and one quadratic form per tensor of
    :func:`quadratic_tensors`. Every kind but entropy is a function of these and the size.
    Integer statistics are formed in the tensors' dtype (float32 where exact) and returned
    as float64.
    """
    names = quadratic_tensors(kind)
    dtype = arrays[names[0]].dtype
    Sc = S.astype(dtype)
    a1 = (Sc @ arrays["g"].T).astype(S.dtype) if "g" in arrays else None
    quads = tuple(_quad(Sc, arrays[name]).astype(S.dtype) for name in names)
    return a1, quads


def finish(kind: str, L: jax.Array, a1: jax.Array | None, quads: tuple, arrays: dict) -> jax.Array:
    """Metric value per team and weight, (B, W), from the statistics; NaN where undefined."""
    n = arrays["n"][None, :]
    Lc = L[:, None]
    safe_n = jnp.where(n > 0, n, 1.0)
    if kind in ("gd", "kw", "disagreement"):
        (a2,) = quads
        if kind == "gd":
            den = (Lc - 1.0) * a1
            return jnp.where(a1 > 0, 1.0 - (a2 - a1) / jnp.where(den > 0, den, 1.0), jnp.nan)
        if kind == "kw":
            return jnp.where(n > 0, (Lc * a1 - a2) / (safe_n * Lc * Lc), jnp.nan)
        return jnp.where(n > 0, 2.0 * (Lc * a1 - a2) / (safe_n * Lc * (Lc - 1.0)), jnp.nan)
    if kind == "pair":
        return quads[0] / (Lc * (Lc - 1.0))
    if kind == "fleiss":
        agree, u = quads
        p_bar = agree / (safe_n * Lc * (Lc - 1.0))
        full = (n * Lc) ** 2
        p_e = u / jnp.where(full > 0, full, 1.0)
        kappa = jnp.where(u == full, 1.0, (p_bar - p_e) / jnp.where(u == full, 1.0, 1.0 - p_e))
        return jnp.where(n > 0, kappa, jnp.nan)
    raise AssertionError(kind)  # pragma: no cover


def _entropy(focal: bool, S: jax.Array, L: jax.Array, arrays: dict) -> jax.Array:
    n = arrays["n"][None, :]
    E = arrays["E"]
    Lc = L[:, None]
    K = S @ E  # (B, N): members wrong per sample
    phi = jnp.minimum(K, Lc - K)
    num = phi @ E.T if focal else phi.sum(axis=1, keepdims=True)
    safe_n = jnp.where(n > 0, n, 1.0)
    return jnp.where(n > 0, num / (safe_n * jnp.floor(Lc / 2.0)), jnp.nan)


def reduce_members(focal: bool, S: jax.Array, values: jax.Array, n: jax.Array) -> jax.Array:
    """Team score from per-weight values: the value itself, or the focal mean over members.

    Focal variants average over members f of the team with non-empty negative samples
    (``n[f] > 0``); NaN when there is none.
    """
    if not focal:
        return values[:, 0]
    use = (S > 0) & (n[None, :] > 0)
    total = jnp.where(use, values, 0.0).sum(axis=1)
    count = use.sum(axis=1)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


def team_values(kind: str, focal: bool, S: jax.Array, arrays: dict) -> jax.Array:
    """Scores of a batch of teams, shape (B,), for a (B, M) float 0/1 matrix ``S``."""
    L = S.sum(axis=1)
    if kind == "entropy":
        values = _entropy(focal, S, L, arrays)
    else:
        a1, quads = team_statistics(kind, S, arrays)
        values = finish(kind, L, a1, quads, arrays)
    return reduce_members(focal, S, values, arrays["n"])


@functools.partial(jax.jit, static_argnames=("kind", "focal"))
def team_values_jit(S: jax.Array, arrays: dict, *, kind: str, focal: bool) -> jax.Array:
    """Jitted :func:`team_values` (call under ``jax.enable_x64(True)``)."""
    return team_values(kind, focal, S, arrays)
