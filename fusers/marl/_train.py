"""Rollouts and learning: one jitted ``lax.scan`` per phase, vmapped over tasks and seeds.

A phase is a fixed schedule of scored rows cut into buffers of ``update_freq`` steps. The outer
scan runs over buffers; the inner scan rolls the environment for one buffer with the current
policies; the agents are then updated from that buffer (REINFORCE with normalised returns, or
PPO with a clipped surrogate and a value baseline) with optax Adam. Padding steps (tasks of
different lengths share one compiled program) are masked out of everything.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import rlax

from ._agents import aggregator_dist, decider_dist, vote_matrix
from ._env import EnvData, EnvSpec, observe, step, team_plurality

__all__ = [
    "PhaseSpec",
    "Schedule",
    "TrainState",
    "make_schedule",
    "run_phase",
    "start_phase",
]


class PhaseSpec(NamedTuple):
    """Static description of one phase (hashable)."""

    env: EnvSpec
    use_aggregator: bool
    learn_decider: bool
    learn_aggregator: bool
    decider_greedy: bool
    aggregator_greedy: bool
    force_all: bool
    algorithm: str
    agg_prob_gradient: bool
    gamma_decider: float
    gamma_aggregator: float
    lr_decider: float
    lr_aggregator: float
    clip: float
    ppo_epochs: int
    value_coef: float
    aggregator_kind: str = "mlp"


class Schedule(NamedTuple):
    """Scored rows of a phase, ``(K, U)``: row index, real step (not padding), pass start;
    ``pass_end`` ``(K,)``: the buffer closes a pass; ``floor``/``horizon``: window limits."""

    t: Any
    valid: Any
    first: Any
    pass_end: Any
    floor: Any
    horizon: Any


class TrainState(NamedTuple):
    """Everything a phase carries: both agents' parameters, optimiser states, best copies."""

    dparams: Any
    dopt: Any
    aparams: Any
    aopt: Any
    dbest: Any
    abest: Any
    best_acc: Any
    key: Any


def make_schedule(
    first_row: int,
    steps: int,
    passes: int,
    update_freq: int,
    *,
    carry_buffers: bool,
    n_buffers: int | None = None,
    floor: int = 0,
    horizon: int | None = None,
) -> Schedule:
    """The buffers of ``passes`` passes over rows ``first_row … first_row+steps-1``.

    ``carry_buffers``: one stream across passes (a buffer may span two passes); otherwise each
    pass starts a new buffer and its last buffer is padded. ``n_buffers`` pads with empty
    buffers (to share one program across tasks).

    Example:
        >>> s = make_schedule(2, 5, 2, 4, carry_buffers=True)
        >>> s.t.tolist(), s.first.astype(int).tolist()
        ([[2, 3, 4, 5], [6, 2, 3, 4], [5, 6, 0, 0]], [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
        >>> make_schedule(2, 5, 2, 4, carry_buffers=False).pass_end.tolist()
        [False, True, False, True]
    """
    rows = np.arange(first_row, first_row + steps, dtype=np.int32)
    if carry_buffers:
        t = np.tile(rows, passes)
        first = np.tile(np.arange(steps) == 0, passes)
        k = -(-t.size // update_freq)
        valid = np.zeros(k * update_freq, bool)
        valid[: t.size] = True
        tt = np.zeros(k * update_freq, np.int32)
        tt[: t.size] = t
        ff = np.zeros(k * update_freq, bool)
        ff[: t.size] = first
        pass_end = np.zeros(k, bool)
        t, first = tt, ff
    else:
        per = -(-steps // update_freq)
        block = np.zeros(per * update_freq, np.int32)
        block[:steps] = rows
        v = np.zeros(per * update_freq, bool)
        v[:steps] = True
        f = np.zeros(per * update_freq, bool)
        f[0] = True
        t, valid, first = np.tile(block, passes), np.tile(v, passes), np.tile(f, passes)
        k = per * passes
        pass_end = np.zeros(k, bool)
        pass_end[per - 1 :: per] = True
    if n_buffers is not None and n_buffers > k:
        extra = (n_buffers - k) * update_freq
        t = np.concatenate([t, np.zeros(extra, np.int32)])
        valid = np.concatenate([valid, np.zeros(extra, bool)])
        first = np.concatenate([first, np.zeros(extra, bool)])
        pass_end = np.concatenate([pass_end, np.zeros(n_buffers - k, bool)])
        k = n_buffers
    hz = np.iinfo(np.int32).max if horizon is None else horizon
    return Schedule(
        t=t.reshape(k, update_freq),
        valid=valid.reshape(k, update_freq),
        first=first.reshape(k, update_freq),
        pass_end=pass_end,
        floor=np.int32(floor),
        horizon=np.int32(hz),
    )


def _returns(r, valid, gamma):
    r = r * valid
    return rlax.discounted_returns(r, jnp.full_like(r, gamma), jnp.zeros(()))


def _normalise(x, valid):
    nv = valid.sum()
    mean = (x * valid).sum() / jnp.maximum(nv, 1.0)
    var = (((x - mean) * valid) ** 2).sum() / jnp.maximum(nv - 1.0, 1.0)
    std = jnp.where(nv > 1, jnp.sqrt(var), 0.0)
    return (x - mean) / (std + 1e-9) * valid


def _select(pred, a, b):
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def run_phase(spec: PhaseSpec, dgd, agd, carry, data: EnvData, sched: Schedule):
    """Run some buffers of a phase; returns ``(carry, per-step outputs)`` (``(K, U, ...)``).

    ``carry`` comes from :func:`start_phase` (or the previous call, to run a phase in
    segments). Pure and deterministic given the key in ``carry``; jit it with ``spec``, ``dgd``
    and ``agd`` static, and vmap it over the leading axis of ``carry``, ``data`` and ``sched``.
    """
    from flax import nnx

    m = data.preds.shape[0]
    n_classes = data.inputs.shape[2]
    dopt_tx = optax.adam(spec.lr_decider)
    aopt_tx = optax.adam(spec.lr_aggregator)

    def dapply(p, s):
        return nnx.merge(dgd, p)(s)

    vote_agg = spec.aggregator_kind == "vote"

    def aapply(p, x, votes):
        if vote_agg:
            return nnx.merge(agd, p)(x, data.class_mask, votes)
        return nnx.merge(agd, p)(x, data.class_mask)

    def body(params, carry, x):
        dp, ap = params
        pool, key = carry
        t, valid, first = x
        pool = jnp.where(first, jnp.ones_like(pool), pool)
        obs = observe(data, spec.env, pool, t, sched.floor, sched.horizon)
        key, kd, ka = jax.random.split(key, 3)
        dlogits, dval = dapply(dp, obs)
        ddist = decider_dist(dlogits)
        if spec.force_all:
            team = jnp.ones(m, jnp.int32)
        elif spec.decider_greedy:
            team = jnp.argmax(dlogits, axis=-1)
        else:
            team = ddist.sample(seed=kd)
        d_lp = ddist.log_prob(team).sum()
        teamf = team.astype(jnp.float32)
        if spec.use_aggregator:
            xin = (data.inputs[:, t, :] * teamf[:, None]).reshape(-1)
            votes = vote_matrix(teamf, data.preds[:, t], n_classes)
            alogits, aval = aapply(ap, xin, votes)
            adist = aggregator_dist(alogits)
            if spec.aggregator_greedy or spec.agg_prob_gradient:
                yhat = jnp.argmax(alogits)
            else:
                yhat = adist.sample(seed=ka)
            a_lp = adist.log_prob(yhat)
            answer = yhat
            if vote_agg:  # no consulted member answered: no answer (as the plurality vote)
                answer = jnp.where(votes.sum() > 0, yhat, -1)
            ok = answer == data.labels[t]
            r_agg = jnp.where(ok, 1.0, -1.0)
            r_dec = r_agg
        else:
            _, r_dec, ok = step(data, spec.env, pool, t, teamf)
            answer = team_plurality(teamf, data.preds[:, t], n_classes)
            xin = jnp.zeros(m * n_classes, jnp.float32)
            votes = jnp.zeros((m, n_classes), jnp.float32)
            yhat, a_lp, aval = jnp.int32(0), jnp.float32(0), jnp.float32(0)
            r_agg = jnp.float32(0)
        pool = jnp.where(valid, teamf, pool)
        buf = dict(
            obs=obs,
            team=team,
            d_lp=d_lp,
            dval=dval,
            xin=xin,
            votes=votes,
            yhat=yhat,
            a_lp=a_lp,
            aval=aval,
            r_dec=r_dec,
            r_agg=r_agg,
        )
        out = dict(
            team=team.astype(jnp.int8),
            answer=answer.astype(jnp.int32),
            ok=ok & valid,
            r=jnp.where(valid, r_dec, 0.0),
            valid=valid,
        )
        return (pool, key), (buf, out)

    def d_update(dp, dopt, buf, valid):
        nv = valid.sum()
        g = _returns(buf["r_dec"], valid, spec.gamma_decider)
        if spec.algorithm == "reinforce":
            adv = _normalise(g, valid)

            def loss(p):
                logits, _ = dapply(p, buf["obs"])
                lp = decider_dist(logits).log_prob(buf["team"])  # (U, M)
                return -(adv[:, None] * lp * valid[:, None]).sum() / (jnp.maximum(nv, 1.0) * m)

            grads = jax.grad(loss)(dp)
            upd, dopt2 = dopt_tx.update(grads, dopt, dp)
            return optax.apply_updates(dp, upd), dopt2
        adv = _normalise(g - buf["dval"], valid)

        def loss(p):
            logits, v = dapply(p, buf["obs"])
            lp = decider_dist(logits).log_prob(buf["team"]).sum(-1)
            ratio = jnp.exp(lp - buf["d_lp"])
            pg = rlax.clipped_surrogate_pg_loss(ratio, adv, spec.clip) * valid.size
            vl = (((v - g) ** 2) * valid).sum()
            return (pg + spec.value_coef * vl) / jnp.maximum(nv, 1.0)

        def epoch(c, _):
            p, o = c
            upd, o = dopt_tx.update(jax.grad(loss)(p), o, p)
            return (optax.apply_updates(p, upd), o), None

        (dp, dopt), _ = jax.lax.scan(epoch, (dp, dopt), None, length=spec.ppo_epochs)
        return dp, dopt

    def a_update(ap, aopt, buf, valid):
        nv = valid.sum()
        g = _returns(buf["r_agg"], valid, spec.gamma_aggregator)
        if spec.algorithm == "reinforce":
            adv = _normalise(g, valid)

            def loss(p):
                logits, _ = aapply(p, buf["xin"], buf["votes"])
                if spec.agg_prob_gradient:  # the reference: probability, not log-probability
                    q = jnp.take_along_axis(jax.nn.softmax(logits), buf["yhat"][:, None], axis=1)[
                        :, 0
                    ]
                    return -(adv * q * valid).sum()
                lp = aggregator_dist(logits).log_prob(buf["yhat"])
                return -(adv * lp * valid).sum() / jnp.maximum(nv, 1.0)

            upd, aopt2 = aopt_tx.update(jax.grad(loss)(ap), aopt, ap)
            return optax.apply_updates(ap, upd), aopt2
        adv = _normalise(g - buf["aval"], valid)

        def loss(p):
            logits, v = aapply(p, buf["xin"], buf["votes"])
            ratio = jnp.exp(aggregator_dist(logits).log_prob(buf["yhat"]) - buf["a_lp"])
            pg = rlax.clipped_surrogate_pg_loss(ratio, adv, spec.clip) * valid.size
            vl = (((v - g) ** 2) * valid).sum()
            return (pg + spec.value_coef * vl) / jnp.maximum(nv, 1.0)

        def epoch(c, _):
            p, o = c
            upd, o = aopt_tx.update(jax.grad(loss)(p), o, p)
            return (optax.apply_updates(p, upd), o), None

        (ap, aopt), _ = jax.lax.scan(epoch, (ap, aopt), None, length=spec.ppo_epochs)
        return ap, aopt

    def chunk(carry, xs):
        st, pool, hits, steps = carry
        t, valid, first, pass_end = xs
        (pool, key), (buf, out) = jax.lax.scan(
            lambda c, x: body((st.dparams, st.aparams), c, x), (pool, st.key), (t, valid, first)
        )
        vf = valid.astype(jnp.float32)
        any_valid = vf.sum() > 0
        dp, dopt, ap, aopt = st.dparams, st.dopt, st.aparams, st.aopt
        if spec.learn_decider:
            dp2, dopt2 = d_update(dp, dopt, buf, vf)
            dp, dopt = _select(any_valid, (dp2, dopt2), (dp, dopt))
        if spec.learn_aggregator:
            ap2, aopt2 = a_update(ap, aopt, buf, vf)
            ap, aopt = _select(any_valid, (ap2, aopt2), (ap, aopt))
        hits = hits + out["ok"].sum()
        steps = steps + valid.sum()
        acc = hits / jnp.maximum(steps, 1)
        better = pass_end & (steps > 0) & (acc > st.best_acc)
        st = TrainState(
            dparams=dp,
            dopt=dopt,
            aparams=ap,
            aopt=aopt,
            dbest=_select(better, dp, st.dbest),
            abest=_select(better, ap, st.abest),
            best_acc=jnp.where(better, acc, st.best_acc),
            key=key,
        )
        hits = jnp.where(pass_end, 0, hits)
        steps = jnp.where(pass_end, 0, steps)
        return (st, pool, hits, steps), out

    (carry_out, outs) = jax.lax.scan(
        chunk, carry, (sched.t, sched.valid, sched.first, sched.pass_end)
    )
    return carry_out, outs


def start_phase(state: TrainState, n_models: int):
    """The carry of a phase: the best copies start as the incoming policies, no pass seen."""
    state = state._replace(dbest=state.dparams, abest=state.aparams, best_acc=jnp.float32(-1.0))
    return state, jnp.ones(n_models, jnp.float32), jnp.int32(0), jnp.int32(0)
