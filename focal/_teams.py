"""Team enumeration in canonical order: by size, then lexicographic over member indices.

Within one size the order is that of ``itertools.combinations(range(M), L)``; a team's position
in it is its *rank*. Unranking is vectorised and written once for NumPy and jax.numpy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ensembles.util import InputError

__all__ = [
    "binomial_table",
    "count_teams",
    "parse_sizes",
    "rank_teams",
    "unrank_teams",
    "unrank_teams_jax",
]


#: Binomials are clamped here so the table fits int64; see :func:`binomial_table`.
BINOMIAL_CLAMP = 1 << 62

#: Refuse exhaustive requests above this many teams unless ``max_teams`` is raised (one limit
#: for every scan that materialises or streams all teams).
DEFAULT_MAX_TEAMS = 1 << 22


def binomial_table(n_max: int) -> np.ndarray:
    """Table ``B[n, k] = min(C(n, k), 2^62)`` for ``0 ≤ n, k ≤ n_max`` (0 when ``k > n``), int64.

    Clamping is harmless for ranking: ranks stay below the number of teams scanned (far below
    2^62), so a clamped entry only ever meets comparisons it wins either way.

    Example:
        >>> binomial_table(4)[4].tolist()
        [1, 4, 6, 4, 1]
    """
    table = np.zeros((n_max + 1, n_max + 1), dtype=np.int64)
    for n in range(n_max + 1):
        for k in range(n + 1):
            table[n, k] = min(math.comb(n, k), BINOMIAL_CLAMP)
    return table


def count_teams(n_models: int, sizes: Iterable[int]) -> int:
    """Number of teams of the given sizes drawn from ``n_models`` members.

    Example:
        >>> count_teams(20, range(2, 21))
        1048555
    """
    return sum(math.comb(n_models, size) for size in sizes)


def parse_sizes(sizes: Any, n_models: int) -> tuple[int, ...]:
    """Normalise a size request to a sorted tuple of team sizes within ``[2, n_models]``.

    Accepts an int, a ``(lo, hi)`` inclusive pair, a string (``"2-5"``, ``"3"``, ``"2,4-6"``),
    or any iterable of ints. Raises ``ValueError`` with one line for an empty or out-of-range
    request.

    Example:
        >>> parse_sizes("2-4", 10), parse_sizes(3, 10)
        ((2, 3, 4), (3,))
    """
    if isinstance(sizes, str):
        out = ()
        try:
            for part in sizes.split(","):
                text = part.strip()
                if "-" in text:
                    lo_s, hi_s = text.split("-", 1)
                    lo, hi = int(lo_s), int(hi_s)
                    if lo > hi:
                        raise InputError(f"sizes: empty size range {part.strip()!r}")
                    out += tuple(range(lo, hi + 1))
                else:
                    out += (int(text),)
        except ValueError as exc:
            if str(exc).startswith("sizes:"):
                raise
            raise InputError(
                f"sizes: cannot parse {sizes!r}; use e.g. '2-5', '3' or '2,4-6'"
            ) from None
    elif isinstance(sizes, int | np.integer):
        out = (int(sizes),)
    elif isinstance(sizes, tuple) and len(sizes) == 2 and all(isinstance(s, int) for s in sizes):
        out = tuple(range(sizes[0], sizes[1] + 1))
    else:
        out = tuple(int(s) for s in sizes)
    out = tuple(sorted(set(out)))
    if not out:
        raise InputError(f"sizes: empty size range {sizes!r}")
    if out[0] < 2 or out[-1] > n_models:
        raise InputError(
            f"sizes: team sizes must lie in [2, {n_models}] for {n_models} models, got "
            f"{out[0]}..{out[-1]}"
        )
    return out


def unrank_teams(ranks: Any, size: Any, n_models: int, binom: Any) -> Any:
    """Member masks of the teams with the given ranks among all teams of one size.

    Args:
        ranks: integer ranks in ``[0, C(n_models, size))``, shape ``(B,)``.
        size: team size ``L``.
        n_models: number of models ``M``.
        binom: :func:`binomial_table` of at least ``n_models``.

    Returns:
        Boolean masks of shape ``(B, n_models)``.

    Example:
        >>> unrank_teams(np.arange(3), 2, 3, binomial_table(3)).astype(int).tolist()
        [[1, 1, 0], [1, 0, 1], [0, 1, 1]]
    """
    r = np.asarray(ranks, dtype=np.int64)
    picked = np.zeros_like(r)
    masks = np.zeros((r.shape[0], n_models), dtype=bool)
    for c in range(n_models):
        need = size - picked
        count = binom[n_models - 1 - c, np.maximum(need - 1, 0)]
        take = (need > 0) & (r < count)
        r = np.where(take | (need <= 0), r, r - count)
        picked += take
        masks[:, c] = take
    return masks


def unrank_teams_jax(ranks: Any, size: Any, n_models: int, binom: Any) -> Any:
    """:func:`unrank_teams` in jax.numpy, for use under jit (``size`` may be traced).

    A ``fori_loop`` over members rather than an unrolled loop keeps compilation fast. Call
    under ``jax.enable_x64(True)``: ranks and the binomial table are int64.
    """
    import jax
    import jax.numpy as jnp

    def step(c, state):
        r, picked, masks = state
        need = size - picked
        count = binom[n_models - 1 - c, jnp.maximum(need - 1, 0)]
        take = (need > 0) & (r < count)
        r = jnp.where(take | (need <= 0), r, r - count)
        return r, picked + take, masks.at[:, c].set(take)

    init = (ranks, jnp.zeros_like(ranks), jnp.zeros((ranks.shape[0], n_models), dtype=bool))
    return jax.lax.fori_loop(0, n_models, step, init)[2]


def rank_teams(masks: np.ndarray) -> np.ndarray:
    """Ranks (within their size) of teams given as boolean masks; inverse of :func:`unrank_teams`.

    Example:
        >>> rank_teams(np.array([[1, 0, 1], [0, 1, 1]], dtype=bool)).tolist()
        [1, 2]
    """
    masks = np.asarray(masks, dtype=bool)
    n_models = masks.shape[1]
    binom = binomial_table(n_models)
    remaining = masks.sum(axis=1)
    ranks = np.zeros(masks.shape[0], dtype=np.int64)
    for c in range(n_models):
        skip = ~masks[:, c] & (remaining > 0)
        ranks += np.where(skip, binom[n_models - 1 - c, np.maximum(remaining - 1, 0)], 0)
        remaining -= masks[:, c]
    return ranks


def as_masks(teams: Any, models: Sequence[str]) -> np.ndarray:
    """Teams as a ``(B, M)`` boolean array, from masks, name sequences or index sequences."""
    n_models = len(models)
    if isinstance(teams, np.ndarray) and teams.ndim == 2 and teams.dtype != object:
        if teams.shape[1] != n_models:
            raise InputError(f"team: mask has {teams.shape[1]} columns for {n_models} models")
        return teams.astype(bool)
    index = {m: i for i, m in enumerate(models)}
    rows = []
    for team in teams:
        items = list(team)
        if items and all(isinstance(x, bool | np.bool_) for x in items):
            if len(items) != n_models:
                raise InputError(f"team: mask has {len(items)} entries for {n_models} models")
            rows.append(np.asarray(items, dtype=bool))
            continue
        row = np.zeros(n_models, dtype=bool)
        for x in items:
            if isinstance(x, str):
                if x not in index:
                    raise InputError(f"team: unknown model {x!r}; models are {', '.join(models)}")
                i = index[x]
            else:
                i = int(x)
                if not 0 <= i < n_models:
                    raise InputError(f"team: member index {i} out of range [0, {n_models})")
            if row[i]:
                raise InputError(f"team: member {models[i]!r} listed twice")
            row[i] = True
        rows.append(row)
    if not rows:
        return np.zeros((0, n_models), dtype=bool)
    return np.stack(rows)
