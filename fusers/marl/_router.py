"""Open-ended MARL-Focal: a router that picks one model per prompt from judged quality.

For generation tasks there is no class label, only a judged quality ``q[m, n]`` in ``[0, 1]``
of model ``m``'s output on prompt ``n`` (NaN = not judged). The router is the open-ended
variant of MARL-Focal: state = one-hot previous choice + the previous row's qualities of every
model (``2M``); action = one model (categorical); policy ``2M → 100 → 100 → M`` with sigmoid
hidden layers; reward = the chosen model's quality (a NaN cell counts 0); REINFORCE with
normalised discounted returns, Adam 1e-4, γ 0.99, an update every 10 steps, 25 passes.

Beyond the paper (optional): ``context`` adds a feature vector of the prompt (e.g.
:func:`~fusers.marl.text_features` of its text, fitted on the training rows) to the state, so
the choice can depend on the query; ``val_fraction`` holds out a seeded validation slice of the
training rows and ``guard`` then routes every test prompt to the best single model when the
trained router is not better than that model on the slice.

Test: ``online`` (the reference protocol: the previous test row's qualities enter the state and
the policy keeps learning from test rewards) and ``frozen`` (no update, greedy choice, and the
quality part of the state is the mean training quality of each model: no test judgment read).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from ensembles.util import InputError

__all__ = ["RouterRun", "check_quality", "fit_router"]


def check_quality(quality: Any) -> np.ndarray:
    """Validate a ``(M, N)`` quality matrix (values in [0, 1], NaN = not judged).

    Raises:
        InputError: fewer than 2 models, no rows, values outside [0, 1], or nothing judged.

    Example:
        >>> check_quality([[1, 0.5], [0, np.nan]]).shape
        (2, 2)
        >>> check_quality([[np.nan], [np.nan]])  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ensembles.util.InputError: quality: every cell is NaN (nothing judged)
    """
    q = np.asarray(quality, dtype=np.float64)
    if q.ndim != 2:
        raise InputError(f"quality: must be 2-D (models, samples), got shape {q.shape}")
    if q.shape[0] < 2:
        raise InputError(f"quality: need at least 2 models, got {q.shape[0]}")
    if q.shape[1] < 1:
        raise InputError("quality: no samples")
    if np.isnan(q).all():
        raise InputError("quality: every cell is NaN (nothing judged)")
    finite = q[~np.isnan(q)]
    if np.isinf(finite).any() or finite.min() < 0 or finite.max() > 1:
        raise InputError("quality: values must lie in [0, 1] (NaN = not judged)")
    return q


@dataclasses.dataclass(frozen=True)
class RouterRun:
    """One router run: per-pass training reward, test win rates, choices.

    Attributes:
        seed: the seed.
        curve: mean reward of each training pass.
        frozen: mean quality of the frozen greedy router on the test rows.
        online: mean quality with online learning (reference protocol).
        best_single: the model with the best mean training quality, and its test quality.
        oracle: mean over test rows of the best quality any model reaches.
        choices: ``(n_test,)`` model chosen per test row (frozen, after the guard).
        val: the trained router's mean quality on the validation slice (NaN: no slice).
        val_best_single: on the slice, the best single model chosen on the other train rows.
        fallback: the guard replaced the router by the best single model.
        router_frozen: the trained router's frozen test quality without the guard.

    Example:
        >>> RouterRun(0, [0.5], 0.9, 0.8, (1, 0.9), 1.0, np.array([1, 1])).best_single
        (1, 0.9)
    """

    seed: int
    curve: list[float]
    frozen: float
    online: float
    best_single: tuple[int, float]
    oracle: float
    choices: np.ndarray
    val: float = float("nan")
    val_best_single: float = float("nan")
    fallback: bool = False
    router_frozen: float = float("nan")


def fit_router(
    quality: Any,
    train_rows: Any,
    test_rows: Any,
    *,
    seeds: Sequence[int] = (0,),
    passes: int = 25,
    update_freq: int = 10,
    lr: float = 1e-4,
    gamma: float = 0.99,
    hidden: int = 100,
    context: Any = None,
    val_fraction: float = 0.0,
    guard: bool = False,
) -> list[RouterRun]:
    """Train the open-ended router per seed (vmapped) and test it frozen and online.

    Args:
        quality: ``(M, N)`` judged quality in [0, 1], NaN = not judged.
        train_rows, test_rows: row indices, one pair per seed (``(S, n_train)``, ``(S, n_test)``)
            or a single pair shared by every seed.
        seeds, passes, update_freq, lr, gamma, hidden: as in the module docstring.
        context: optional query features, ``(N, d)`` or one ``(S, N, d)`` per seed (features
            fitted on that seed's training rows); appended to the state.
        val_fraction: share of each seed's training rows held out (seeded) as a validation
            slice; the router trains on the rest.
        guard: with a slice, route to the best single model (chosen on all training rows) when
            the router's mean quality on the slice is not above the best single model's
            (chosen on the other training rows).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> q = (rng.random((3, 60)) < [[0.9], [0.5], [0.2]]).astype(float)
        >>> r = fit_router(q, np.arange(40), np.arange(40, 60), passes=3)[0]  # doctest: +SKIP
        >>> len(r.curve), r.choices.shape  # doctest: +SKIP
        (3, (20,))
    """
    import jax
    import jax.numpy as jnp
    import optax
    import rlax
    from flax import nnx

    q = check_quality(quality)
    m = q.shape[0]
    seeds = [int(s) for s in seeds]
    tr = np.asarray(train_rows)
    te = np.asarray(test_rows)
    if tr.ndim == 1:
        tr = np.broadcast_to(tr, (len(seeds), tr.size))
        te = np.broadcast_to(te, (len(seeds), te.size))
    if tr.shape[0] != len(seeds) or tr.shape[1] < 2 or te.shape[1] < 1:
        raise InputError("rows: need at least 2 train rows and 1 test row per seed")
    if guard and val_fraction <= 0:
        raise InputError("guard: needs a validation slice (val_fraction > 0)")
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val_fraction: must be in [0, 1), got {val_fraction}")
    n_val = max(1, int(round(val_fraction * tr.shape[1]))) if val_fraction > 0 else 0
    if tr.shape[1] - n_val < 2:
        raise InputError("val_fraction: leaves fewer than 2 training rows")
    fit, val = [], []
    for i, s in enumerate(seeds):  # the slice: a seeded draw from the training rows only
        is_val = np.zeros(tr.shape[1], bool)
        if n_val:
            rng = np.random.default_rng([s, 0x5A1])
            is_val[rng.choice(tr.shape[1], n_val, replace=False)] = True
        fit.append(tr[i][~is_val])
        val.append(tr[i][is_val])
    fit, val = np.stack(fit), np.stack(val)
    d_ctx = 0
    if context is not None:
        ctx = np.asarray(context, np.float32)
        if ctx.ndim == 2:
            ctx = np.broadcast_to(ctx, (len(seeds), *ctx.shape))
        if ctx.ndim != 3 or ctx.shape[:2] != (len(seeds), q.shape[1]):
            raise InputError(
                f"context: need ({q.shape[1]}, d) or ({len(seeds)}, {q.shape[1]}, d) features, "
                f"got shape {np.shape(context)}"
            )
        if not np.isfinite(ctx).all():
            raise InputError("context: features must be finite")
        d_ctx = ctx.shape[2]
    else:
        ctx = np.zeros((len(seeds), q.shape[1], 0), np.float32)
    q0 = np.nan_to_num(q, nan=0.0).astype(np.float32)
    qtr = np.stack([q0[:, r] for r in fit])  # (S, M, n_fit)
    qte = np.stack([q0[:, r] for r in te])
    xtr = np.stack([c[r] for c, r in zip(ctx, fit, strict=True)])  # (S, n_fit, d)
    xte = np.stack([c[r] for c, r in zip(ctx, te, strict=True)])
    mean_fit = qtr.mean(axis=2)  # (S, M)
    mean_tr = np.stack([q0[:, r].mean(axis=1) for r in tr])  # all training rows

    class Policy(nnx.Module):
        def __init__(self, rngs):
            k, b = nnx.initializers.xavier_uniform(), nnx.initializers.constant(0.01)
            self.l1 = nnx.Linear(2 * m + d_ctx, hidden, kernel_init=k, bias_init=b, rngs=rngs)
            self.l2 = nnx.Linear(hidden, hidden, kernel_init=k, bias_init=b, rngs=rngs)
            self.l3 = nnx.Linear(hidden, m, kernel_init=k, bias_init=b, rngs=rngs)

        def __call__(self, s):
            return self.l3(jax.nn.sigmoid(self.l2(jax.nn.sigmoid(self.l1(s)))))

    gd = None
    states, keys = [], []
    for s in seeds:
        k0, k1 = jax.random.split(jax.random.key(s))
        gd, st = nnx.split(Policy(nnx.Rngs(k0)))
        states.append(st)
        keys.append(k1)
    params = jax.tree.map(lambda *x: jnp.stack(x), *states)
    tx = optax.adam(lr)
    opt = jax.vmap(tx.init)(params)

    def apply(p, s):
        return nnx.merge(gd, p)(s)

    def chunks(n: int, n_pass: int):
        t = np.tile(np.arange(n), n_pass)
        k = -(-t.size // update_freq)
        valid = np.zeros(k * update_freq, bool)
        valid[: t.size] = True
        tt = np.zeros(k * update_freq, np.int32)
        tt[: t.size] = t
        return tt.reshape(k, update_freq), valid.reshape(k, update_freq)

    def run(p, o, key, qm, xm, hist, t_idx, valid, learn: bool, greedy: bool):
        """qm (M, n): qualities; xm (n, d): context; hist: None (previous row) or (M,)."""

        def body(p, c, x):
            prev, key = c
            t, v = x
            prev_q = qm[:, jnp.maximum(t - 1, 0)] * (t > 0) if hist is None else hist
            s = jnp.concatenate([jax.nn.one_hot(prev, m), prev_q, xm[t]])
            key, k = jax.random.split(key)
            logits = apply(p, s)
            a = jnp.argmax(logits) if greedy else jax.random.categorical(k, logits)
            r = qm[a, t]
            return (jnp.where(v, a, prev), key), (s, a, r * v, v)

        def chunk(c, x):
            p, o, prev, key = c
            t, v = x
            (prev, key), (s, a, r, vv) = jax.lax.scan(
                lambda c_, x_: body(p, c_, x_), (prev, key), (t, v)
            )
            vf = vv.astype(jnp.float32)
            if learn:
                g = rlax.discounted_returns(r, jnp.full_like(r, gamma), jnp.zeros(()))
                nv = vf.sum()
                mean = (g * vf).sum() / jnp.maximum(nv, 1)
                std = jnp.sqrt((((g - mean) * vf) ** 2).sum() / jnp.maximum(nv - 1, 1))
                adv = (g - mean) / (std + 1e-9) * vf

                def loss(pp):
                    lp = jax.nn.log_softmax(apply(pp, s))[jnp.arange(a.size), a]
                    return -(adv * lp).sum() / jnp.maximum(nv, 1)

                upd, o2 = tx.update(jax.grad(loss)(p), o, p)
                p2 = optax.apply_updates(p, upd)
                keep = nv > 0
                p = jax.tree.map(lambda x, y: jnp.where(keep, x, y), p2, p)
                o = jax.tree.map(lambda x, y: jnp.where(keep, x, y), o2, o)
            return (p, o, prev, key), (a, r, vv)

        (p, o, _, _), (a, r, vv) = jax.lax.scan(chunk, (p, o, jnp.int32(0), key), (t_idx, valid))
        return p, o, a, r, vv

    t_tr, v_tr = chunks(fit.shape[1], passes)
    t_te, v_te = chunks(te.shape[1], 1)
    train_fn = jax.jit(
        jax.vmap(lambda p, o, k, qm, xm: run(p, o, k, qm, xm, None, t_tr, v_tr, True, False))
    )
    online_fn = jax.jit(
        jax.vmap(lambda p, o, k, qm, xm: run(p, o, k, qm, xm, None, t_te, v_te, True, False))
    )
    frozen_fn = jax.jit(
        jax.vmap(lambda p, o, k, qm, xm, h: run(p, o, k, qm, xm, h, t_te, v_te, False, True))
    )
    keys = jnp.stack(keys)
    k_tr = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
    k_on = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    params, opt, _, r_tr, v_tr_out = train_fn(params, opt, k_tr, jnp.asarray(qtr), xtr)
    _, _, _, r_on, v_on = online_fn(params, opt, k_on, jnp.asarray(qte), xte)
    _, _, a_fz, r_fz, v_fz = frozen_fn(
        params, opt, k_on, jnp.asarray(qte), xte, jnp.asarray(mean_tr)
    )
    val_q = np.full(len(seeds), np.nan)
    if n_val:
        qva = np.stack([q0[:, r] for r in val])
        xva = np.stack([c[r] for c, r in zip(ctx, val, strict=True)])
        t_va, v_va = chunks(n_val, 1)
        val_fn = jax.jit(
            jax.vmap(lambda p, o, k, qm, xm, h: run(p, o, k, qm, xm, h, t_va, v_va, False, True))
        )
        _, _, _, r_va, vv_va = val_fn(
            params, opt, k_on, jnp.asarray(qva), xva, jnp.asarray(mean_fit)
        )
        val_q = [
            float(np.asarray(r_va[i]).reshape(-1)[np.asarray(vv_va[i]).reshape(-1)].mean())
            for i in range(len(seeds))
        ]
    out = []
    for i, s in enumerate(seeds):
        rt = np.asarray(r_tr[i]).reshape(-1)[np.asarray(v_tr_out[i]).reshape(-1)]
        curve = rt.reshape(passes, -1).mean(axis=1).tolist()
        best = int(np.argmax(mean_tr[i]))
        vf = np.asarray(v_fz[i]).reshape(-1)
        router = float(np.asarray(r_fz[i]).reshape(-1)[vf].mean())
        choices = np.asarray(a_fz[i]).reshape(-1)[vf]
        vbest = np.nan
        fallback = False
        if n_val:
            vbest = float(q0[int(np.argmax(mean_fit[i])), val[i]].mean())
            fallback = bool(guard and val_q[i] <= vbest)
        if fallback:
            choices = np.full_like(choices, best)
        out.append(
            RouterRun(
                seed=s,
                curve=[float(x) for x in curve],
                frozen=float(qte[i, best].mean()) if fallback else router,
                online=float(
                    np.asarray(r_on[i]).reshape(-1)[np.asarray(v_on[i]).reshape(-1)].mean()
                ),
                best_single=(best, float(qte[i, best].mean())),
                oracle=float(qte[i].max(axis=0).mean()),
                choices=choices,
                val=float(val_q[i]),
                val_best_single=vbest,
                fallback=fallback,
                router_frozen=router,
            )
        )
    return out
