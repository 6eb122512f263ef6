"""Exhaustive scans in Gray-code order with O(M²) incremental updates (docs/selection.md).

All ``2^M`` subsets are visited as ``2^h`` independent *blocks* (the high ``h`` members fixed
per block) that walk the same reflected Gray code over the low ``M - h`` members in lockstep:
at every step the same member ``j`` joins or leaves every block's team, so the update of the
sufficient statistics of all blocks is one small matrix product,

    A1 ← A1 ± G[:, j]          Q ← Q ± 2·(X[:, j, :]·s) + X[:, j, j]

for each quadratic statistic ``Q = sᵀ X_w s``. Statistics are integer counts, so the walk is
exact and gives the same scores as direct evaluation. The blocks shard over devices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ensembles.util import InputError

from ._metrics import (
    MetricSpec,
    finish,
    quadratic_tensors,
    reduce_members,
    team_statistics,
)
from ._teams import rank_teams
from ._topk import ranking_key

__all__ = ["GRAY_KINDS", "GrayPlan", "gray_groups"]

#: Metric kinds whose statistics are integer counts (exact under incremental updates).
GRAY_KINDS = frozenset({"gd", "kw", "disagreement", "fleiss"})


class GrayPlan:
    """How the ``2^M`` subsets are cut into blocks, groups and device shards.

    Args:
        n_models: M.
        n_devices: devices per process the blocks are sharded over (a power of two).
        n_processes: processes (hosts) sharing the blocks (a power of two); each takes a
            contiguous range of blocks.
        block_bits: h, so there are ``2^h`` blocks (default: about 2^10, at least one per
            device, at most ``2^(M-1)``).
        group_steps: Gray steps per jitted call (default: about 2^18 teams per call).
    """

    def __init__(
        self,
        n_models: int,
        *,
        n_devices: int = 1,
        n_processes: int = 1,
        block_bits: int | None = None,
        group_steps: int | None = None,
    ):
        for name, value in (("devices", n_devices), ("processes", n_processes)):
            if value < 1 or value & (value - 1):
                raise InputError(f"{name}: the Gray scan needs a power of two, got {value}")
        dev_bits = (n_devices * n_processes).bit_length() - 1
        if block_bits is None:
            block_bits = min(max(10, dev_bits), n_models - 1)
        if not dev_bits <= block_bits <= n_models - 1:
            raise InputError(
                f"block_bits: must lie in [{dev_bits}, {n_models - 1}], got {block_bits}"
            )
        self.n_models = n_models
        self.n_devices = n_devices
        self.n_processes = n_processes
        self.block_bits = block_bits
        self.low_bits = n_models - block_bits
        self.n_blocks = 1 << block_bits
        n_steps = 1 << self.low_bits
        if group_steps is None:
            group_steps = max(1, min(n_steps, (1 << 18) >> block_bits))
        if group_steps & (group_steps - 1) or group_steps > n_steps:
            raise InputError(f"group_steps: a power of two ≤ {n_steps}, got {group_steps}")
        self.group_steps = group_steps
        self.n_groups = n_steps // group_steps

    def low_masks(self, steps: np.ndarray) -> np.ndarray:
        """Low-member masks (steps, low_bits) of the Gray codes of the given steps."""
        code = steps ^ (steps >> 1)
        return ((code[:, None] >> np.arange(self.low_bits)) & 1).astype(bool)

    def high_masks(self, blocks: np.ndarray) -> np.ndarray:
        """High-member masks (blocks, block_bits) of the given blocks."""
        return ((blocks[:, None] >> np.arange(self.block_bits)) & 1).astype(bool)

    def team_masks(self, steps: np.ndarray, blocks: np.ndarray) -> np.ndarray:
        """Masks (B, M) of the teams visited at the given (step, block) pairs."""
        return np.concatenate([self.low_masks(steps), self.high_masks(blocks)], axis=1)

    def flips(self, group: int) -> np.ndarray:
        """Member flipped before each step of a group (-1 for step 0: nothing flips)."""
        steps = np.arange(group * self.group_steps, (group + 1) * self.group_steps)
        flips = np.zeros(len(steps), dtype=np.int32) - 1
        nz = steps > 0
        flips[nz] = np.log2(steps[nz] & -steps[nz]).astype(np.int32)  # trailing zeros
        return flips


def _step_fn(kind, focal, sign, names, arrays, size_ok):
    tensors = [arrays[name] for name in names]
    g = arrays.get("g")

    def step(state, j):
        S, L, a1, quads = state
        flip = j >= 0
        jj = jnp.maximum(j, 0)
        s_j = S[:, jj]
        d = jnp.where(flip, 1.0 - 2.0 * s_j, 0.0)  # +1 joins, -1 leaves, 0 no change
        if a1 is not None:
            a1 = a1 + d[:, None] * g[:, jj].astype(a1.dtype)[None, :]
        new_quads = []
        for X, q in zip(tensors, quads, strict=True):
            xs = (S.astype(X.dtype) @ X[:, jj, :].T).astype(q.dtype)  # (B, W)
            diag = X[:, jj, jj].astype(q.dtype)
            new_quads.append(q + 2.0 * d[:, None] * xs + jnp.abs(d)[:, None] * diag[None, :])
        S = S.at[:, jj].set(jnp.where(flip, 1.0 - s_j, s_j))
        L = L + d
        quads = tuple(new_quads)
        values = finish(kind, L, a1, quads, arrays)
        scores = reduce_members(focal, S, values, arrays["n"])
        key = ranking_key(scores, sign, xp=jnp)
        key = jnp.where(size_ok[L.astype(jnp.int32)], key, -jnp.inf)
        return (S, L, a1, quads), (key, scores)

    return step


def _group_kernel(state, flips, arrays, size_ok, *, kind, focal, sign, k):
    """One group of Gray steps on one shard of blocks; returns the new state and the best."""
    names = quadratic_tensors(kind)
    step = _step_fn(kind, focal, sign, names, arrays, size_ok)
    state, (keys, scores) = jax.lax.scan(step, state, flips)  # (steps, blocks)
    flat_keys, flat_scores = keys.reshape(-1), scores.reshape(-1)
    if k is None:
        return state, flat_keys, flat_scores, jnp.arange(flat_keys.shape[0]), jnp.zeros(1)
    top_keys, top = jax.lax.top_k(flat_keys, k)
    n_at_least = jnp.sum(flat_keys >= top_keys[-1])[None]
    return state, top_keys, flat_scores[top], top, n_at_least


@functools.lru_cache(maxsize=32)
def _compiled_group(mesh: Mesh, kind: str, focal: bool, sign: float, k: int | None):
    kernel = functools.partial(_group_kernel, kind=kind, focal=focal, sign=sign, k=k)
    blocks = P("blocks")
    sharded = jax.shard_map(
        kernel,
        mesh=mesh,
        in_specs=(blocks, P(), P(), P()),
        out_specs=(blocks, blocks, blocks, blocks, blocks),
        check_vma=False,
    )
    return jax.jit(sharded)


def _initial_state(plan: GrayPlan, kind: str, arrays: dict, group: int, blocks, sharding):
    """State of the given blocks just before the first step of ``group`` (direct evaluation)."""
    last = np.array([group * plan.group_steps - 1]) if group else None
    low = plan.low_masks(last)[0] if last is not None else np.zeros(plan.low_bits, bool)
    high = plan.high_masks(blocks)
    masks = np.concatenate([np.broadcast_to(low, (len(blocks), plan.low_bits)), high], axis=1)
    S = jnp.asarray(masks, dtype=jnp.float64)
    a1, quads = team_statistics(kind, S, arrays)
    state = (S, S.sum(axis=1), a1, quads)
    return jax.device_put(state, sharding)


def gray_groups(
    spec: MetricSpec,
    arrays: dict,
    plan: GrayPlan,
    sizes: tuple[int, ...],
    k: int,
    *,
    devices: list | None = None,
    process_index: int = 0,
    start_group: int = 0,
    threshold: Callable[[], float] | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Scan groups ``start_group, ...``; yield ``(group, scores, sizes, ranks)`` candidates.

    This process scans its range of blocks (``process_index`` of ``plan.n_processes``) on
    ``devices`` (its local devices, ``plan.n_devices`` of them).

    Each group yields at least every team that can enter a top-k (per device shard: its k
    best, plus all teams tied with the k-th when ties straddle the cut, found by re-running
    the group in full). Call under ``jax.enable_x64(True)``. ``threshold()`` (optional) gives
    the current k-th best key; ties below it are not worth a re-run.
    """
    if spec.kind not in GRAY_KINDS:
        raise InputError(f"metric: {spec.name} has no exact incremental form")
    devices = devices or jax.local_devices()[: plan.n_devices]
    per_process = plan.n_blocks // plan.n_processes
    first_block = process_index * per_process
    mesh = Mesh(np.array(devices), ("blocks",))
    replicated = NamedSharding(mesh, P())
    dev_arrays = jax.device_put({name: jnp.asarray(v) for name, v in arrays.items()}, replicated)
    size_ok = np.zeros(plan.n_models + 1, dtype=bool)
    size_ok[list(sizes)] = True
    size_ok = jax.device_put(jnp.asarray(size_ok), replicated)
    local_blocks = per_process // plan.n_devices
    k_local = min(k, plan.group_steps * local_blocks)
    run_top = _compiled_group(mesh, spec.kind, spec.focal, spec.sign, k_local)
    my_blocks = np.arange(first_block, first_block + per_process)
    shards = NamedSharding(mesh, P("blocks"))
    state = _initial_state(plan, spec.kind, dev_arrays, start_group, my_blocks, shards)
    for group in range(start_group, plan.n_groups):
        flips = jax.device_put(jnp.asarray(plan.flips(group)), replicated)
        new_state, keys, scores, idx, n_ge = run_top(state, flips, dev_arrays, size_ok)
        keys, scores, idx = (np.asarray(x).reshape(plan.n_devices, -1) for x in (keys, scores, idx))
        n_ge = np.asarray(n_ge)
        bar = -np.inf if threshold is None else threshold()
        if any(n_ge[d] > k_local and keys[d, -1] > -np.inf and keys[d, -1] >= bar
               for d in range(plan.n_devices)):  # fmt: skip
            run_all = _compiled_group(mesh, spec.kind, spec.focal, spec.sign, None)
            _, keys, scores, idx, _ = run_all(state, flips, dev_arrays, size_ok)
            keys, scores, idx = (
                np.asarray(x).reshape(plan.n_devices, -1) for x in (keys, scores, idx)
            )
        state = new_state
        keep = keys > -np.inf
        dev = np.nonzero(keep)[0]
        local = idx[keep]
        steps = group * plan.group_steps + local // local_blocks
        blocks = first_block + dev * local_blocks + local % local_blocks
        masks = plan.team_masks(steps, blocks)
        yield group, scores[keep], masks.sum(axis=1), rank_teams(masks)
