"""The MARL-Focal protocol over one or many tasks: prepare, pad, train, test (online and frozen)."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ensembles import Bundle
from ensembles.util import InputError

from ._config import DEFAULT_WEIGHTS, MarlConfig
from ._env import EnvData, EnvSpec, scored_rows

__all__ = ["TaskArrays", "TaskRun", "carve_validation", "fit_tasks", "task_arrays"]

#: BBH tasks whose labels the data file fixed by ``y = 1 - y`` (undo it for "as stored").
BBH_FLIPPED = (
    "causal_judgement",
    "formal_fallacies",
    "navigate",
    "sports_understanding",
    "web_of_lies",
)


@dataclasses.dataclass(frozen=True)
class TaskArrays:
    """One task as arrays: history (train) rows first, then test rows, in document order.

    Attributes:
        name: task name (seeds the task's keys).
        preds: ``(M, n)`` int predictions (``-1`` = abstain).
        labels: ``(n,)`` gold classes.
        scores: ``(M, n, C)`` non-negative per-class scores (one-hot predictions if none).
        n_train: rows ``[0, n_train)`` are training rows, the rest are test rows.
        models: model names.
        row_ids: the bundle row index of each row (for inference records).
        context: ``(n, d)`` query features per row for a contextual decider, or None.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b"], labels=[0, 1, 1],
        ...     preds=[[0, 1, 0], [1, 1, 1]], split=["test", "train", "train"])
        >>> task_arrays(b).row_ids.tolist()
        [1, 2, 0]
    """

    name: str
    preds: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    n_train: int
    models: tuple[str, ...]
    row_ids: np.ndarray
    context: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        """``C``."""
        return int(self.scores.shape[2])


def task_arrays(
    bundle: Bundle, *, name: str | None = None, as_stored: bool = False, context: Any = None
) -> TaskArrays:
    """The arrays of a bundle with a split: train and val rows train, test rows test.

    Args:
        bundle: cached outputs with a ``split`` (rows in document order are kept in order).
        name: task name (default: the bundle's task, else ``"task"``).
        as_stored: undo the BBH label fix (``y = 1 - y`` on the five flipped binary tasks) to
            compare with published numbers.
        context: optional ``(n_samples, d)`` query features, one row per bundle row (see
            :func:`~fusers.marl.text_features`), for a contextual decider.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b"], labels=[0, 1, 1, 0],
        ...     preds=[[0, 1, 0, 0], [1, 1, 1, 0]], split=["train", "train", "train", "test"])
        >>> ta = task_arrays(b)
        >>> ta.n_train, ta.scores.shape
        (3, (2, 4, 2))
    """
    if bundle.n_models < 2:
        raise InputError(f"models: MARL-Focal needs at least 2 models, got {bundle.n_models}")
    if bundle.split is None:
        raise InputError("split: MARL-Focal needs train and test rows (a bundle 'split')")
    split = np.asarray(bundle.split)
    train = np.flatnonzero(split != "test")
    test = np.flatnonzero(split == "test")
    if train.size < 2 or test.size < 1:
        raise InputError(
            f"split: need at least 2 train rows and 1 test row, got {train.size} and {test.size}"
        )
    order = np.concatenate([train, test])
    name = name or bundle.task or "task"
    labels = np.asarray(bundle.labels)[order].astype(np.int32)
    if as_stored and name in BBH_FLIPPED:
        labels = 1 - labels
    if bundle.probs is not None:
        scores = np.asarray(bundle.probs, np.float32)[:, order]
    else:
        p = np.asarray(bundle.preds)[:, order]
        scores = (p[..., None] == np.arange(bundle.n_classes)).astype(np.float32)
    if context is not None:
        context = np.asarray(context, np.float32)
        if context.ndim != 2 or context.shape[0] != bundle.n_samples:
            raise InputError(
                f"context: need ({bundle.n_samples}, d) features (one row per sample), "
                f"got shape {context.shape}"
            )
        if not np.isfinite(context).all():
            raise InputError("context: features must be finite")
        context = context[order]
    return TaskArrays(
        name=name,
        preds=np.asarray(bundle.preds)[:, order].astype(np.int32),
        labels=labels,
        scores=scores,
        n_train=int(train.size),
        models=tuple(bundle.models),
        row_ids=order,
        context=context,
    )


def carve_validation(ta: TaskArrays, seed: int, fraction: float) -> tuple[TaskArrays, int]:
    """Hold out a seeded share of the training rows as a validation slice.

    Returns the task with its rows reordered as ``fit rows, validation rows, test rows`` (each
    in document order) and the number of fit rows. Only training rows are drawn from; the test
    rows keep their place at the end. The draw depends on the seed and the task name only.

    Example:
        >>> ta = TaskArrays("t", np.zeros((2, 12), np.int32), np.zeros(12, np.int32),
        ...     np.ones((2, 12, 2), np.float32), 10, ("a", "b"), np.arange(12))
        >>> v, n_fit = carve_validation(ta, 0, 0.2)
        >>> n_fit, v.n_train, v.row_ids[10:].tolist()
        (8, 10, [10, 11])
        >>> sorted(v.row_ids[:10].tolist()) == list(range(10))
        True
    """
    if fraction <= 0:
        return ta, ta.n_train
    n_tr = ta.n_train
    n_val = max(1, int(round(fraction * n_tr)))
    if n_tr - n_val < 2:
        raise InputError(
            f"{ta.name}: {n_tr} training rows are too few to hold out a validation slice"
        )
    rng = np.random.default_rng([int(seed), zlib.crc32(ta.name.encode()) & 0x7FFFFFFF])
    is_val = np.zeros(n_tr, bool)
    is_val[rng.choice(n_tr, n_val, replace=False)] = True
    order = np.concatenate(
        [np.flatnonzero(~is_val), np.flatnonzero(is_val), np.arange(n_tr, ta.labels.size)]
    )
    view = dataclasses.replace(
        ta,
        preds=ta.preds[:, order],
        labels=ta.labels[order],
        scores=ta.scores[:, order],
        row_ids=ta.row_ids[order],
        context=None if ta.context is None else ta.context[order],
    )
    return view, n_tr - n_val


def _inputs(scores: np.ndarray, exp_inputs: bool) -> np.ndarray:
    if exp_inputs:  # the reference: exp on top of whatever the cache holds
        return np.exp(scores.astype(np.float64)).astype(np.float32)
    s = scores.sum(axis=2, keepdims=True)
    return np.where(s > 0, scores / np.where(s > 0, s, 1.0), 0.0).astype(np.float32)


def _pad_env(parts: list[tuple[Any, ...]], n: int, c: int):
    """Stack (preds, labels, inputs, C, context) parts, padded to n rows and c classes."""
    out = []
    for preds, labels, inputs, n_classes, ctx in parts:
        m, k = preds.shape
        p = np.full((m, n), -1, np.int32)
        p[:, :k] = preds
        y = np.full(n, -1, np.int32)
        y[:k] = labels
        x = np.zeros((m, n, c), np.float32)
        x[:, :k, : inputs.shape[2]] = inputs
        correct = ((p == y[None]) & (p >= 0)).astype(np.float32)
        z = np.zeros((n, ctx.shape[1]), np.float32)
        z[:k] = ctx
        out.append(EnvData(p, correct, y, x, np.arange(c) < n_classes, z))
    return EnvData(*(np.stack(a) for a in zip(*out, strict=True)))


@dataclasses.dataclass(frozen=True)
class TaskRun:
    """The outcome of the protocol for one task and one seed.

    Attributes:
        task, seed: which run.
        select_curve, ensemble_curve: training accuracy of each pass of phase 1 / phase 2.
        online_accuracy, online_steps: test accuracy with both agents learning online from test
            rewards (the reference protocol), and its number of scored steps.
        frozen_accuracy, frozen_steps: test accuracy of the trained policies, no update, window
            on the training rows only (no test label read).
        frozen_teams: ``(steps, M)`` 0/1 members consulted per test row (frozen).
        frozen_answers: ``(steps,)`` the fused answer per test row (frozen).
        frozen_correct: ``(steps,)`` whether it was right.
        frozen_rows: ``(steps,)`` bundle row index of each test row.
        params: ``{"decider": ..., "aggregator": ..., "guard": ...}`` pure dicts of the trained
            parameters and of the guard's choice (``{"fallback": 0/1, "model": index}``).
        val_accuracy: the trained router's frozen accuracy on the validation slice (NaN when
            there is no slice).
        val_best_single: on the same slice, the accuracy of the best single model chosen on
            the other training rows.
        fallback: the guard routes every test query to ``fallback_model`` alone (the router was
            not better than the best single model on the validation slice).
        fallback_model: index of the best single model on all training rows (``-1``: none).
        router_frozen_accuracy: the trained router's frozen test accuracy without the guard
            (equal to ``frozen_accuracy`` when the guard did not fire).

    Example:
        >>> run = TaskRun("t", 0, [], [], 0.5, 2, 0.5, 2, np.array([[1, 0], [1, 1]]),
        ...               np.zeros(2), np.zeros(2), np.zeros(2), {})
        >>> run.mean_consulted
        1.5
    """

    task: str
    seed: int
    select_curve: list[float]
    ensemble_curve: list[float]
    online_accuracy: float
    online_steps: int
    frozen_accuracy: float
    frozen_steps: int
    frozen_teams: np.ndarray
    frozen_answers: np.ndarray
    frozen_correct: np.ndarray
    frozen_rows: np.ndarray
    params: dict[str, Any]
    val_accuracy: float = float("nan")
    val_best_single: float = float("nan")
    fallback: bool = False
    fallback_model: int = -1
    router_frozen_accuracy: float = float("nan")

    @property
    def mean_consulted(self) -> float:
        """Mean number of models consulted per test query (frozen)."""
        return float(self.frozen_teams.sum(axis=1).mean())


def task_key(seed: int, name: str):
    """The key of one (seed, task): independent of which other tasks run beside it."""
    import jax

    return jax.random.fold_in(jax.random.key(int(seed)), zlib.crc32(name.encode()) & 0x7FFFFFFF)


def _phase_spec(cfg: MarlConfig, env: EnvSpec, **kw):
    from ._train import PhaseSpec

    base = dict(
        env=env,
        algorithm=cfg.algorithm,
        agg_prob_gradient=cfg.agg_prob_gradient,
        gamma_decider=cfg.gamma_decider,
        gamma_aggregator=cfg.gamma_aggregator,
        lr_decider=cfg.lr_decider,
        lr_aggregator=cfg.lr_aggregator,
        clip=cfg.clip,
        ppo_epochs=cfg.ppo_epochs,
        value_coef=cfg.value_coef,
        force_all=False,
        aggregator_kind=cfg.aggregator,
    )
    base.update(kw)
    return PhaseSpec(**base)


_COMPILED: dict[Any, Callable] = {}


def _runner(spec, dgd, agd):
    import jax

    from ._train import run_phase

    key = (spec, dgd, agd)
    if key not in _COMPILED:
        fn = jax.vmap(lambda c, d, s: run_phase(spec, dgd, agd, c, d, s))
        _COMPILED[key] = jax.jit(fn)
    return _COMPILED[key]


def _stack(trees):
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _segments(sched, n_seg: int):
    """Cut a stacked schedule ``(B, K, U)`` into ``n_seg`` equal pieces along K (padded)."""
    from ._train import Schedule

    k = sched.t.shape[1]
    per = -(-k // n_seg)
    pad = per * n_seg - k

    def padk(a, fill):
        if pad == 0:
            return a
        shape = list(a.shape)
        shape[1] = pad
        return np.concatenate([a, np.full(shape, fill, a.dtype)], axis=1)

    t, v, f, e = padk(sched.t, 0), padk(sched.valid, False), padk(sched.first, False), None
    e = padk(sched.pass_end, False)
    return [
        Schedule(
            t[:, i * per : (i + 1) * per],
            v[:, i * per : (i + 1) * per],
            f[:, i * per : (i + 1) * per],
            e[:, i * per : (i + 1) * per],
            sched.floor,
            sched.horizon,
        )
        for i in range(n_seg)
    ]


def fit_tasks(
    tasks: Sequence[TaskArrays],
    config: MarlConfig,
    *,
    seeds: Sequence[int] = (0,),
    progress: Callable[[int, int], None] | None = None,
    force_all: bool = False,
    segments: int = 1,
    params: Sequence[dict[str, Any]] | None = None,
    phases: Sequence[str] = ("select", "ensemble", "online", "frozen"),
) -> list[TaskRun]:
    """Run the whole protocol on every task for every seed, as one vmapped program per phase.

    Per task and seed: fresh agents; phase 1 (``select_passes`` passes over the train rows: the
    decider samples teams, plurality answers, the decider learns); phase 2 (``ensemble_passes``
    passes: the decider frozen but sampling, the aggregator fuses the selected members' inputs
    and learns); then two test runs from the same trained agents: online (the reference: a
    fresh test environment, both agents keep learning from test rewards) and frozen (no update;
    the window is the training rows, so no test label is read).

    Args:
        tasks: the tasks (see :func:`task_arrays`); all must share the same models.
        config: the settings (:class:`MarlConfig`).
        seeds: one run per seed; results are the same whatever other tasks or seeds run along.
        progress: called with ``(done, total)`` segments.
        force_all: the decider always consults every model (a check of the environment).
        segments: split each phase into this many jitted calls (for progress reporting).
        params: trained parameters, one ``TaskRun.params`` per (task, seed): skip training and
            only run the two tests (curves are then empty).
        phases: the phases to run, a subset of the default in that order (a phase left out
            leaves empty curves / NaN accuracies).

    Returns:
        One :class:`TaskRun` per (task, seed), tasks outer.

    Example:
        >>> import ensembles
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 2, 120)
        >>> b = ensembles.Bundle.create(models=["a", "b"], labels=y,
        ...     preds=np.stack([y, rng.integers(0, 2, 120)]), split=["train"] * 100 + ["test"] * 20)
        >>> cfg = MarlConfig.for_mode("fixed", select_passes=2, ensemble_passes=2, update_freq=20)
        >>> run = fit_tasks([task_arrays(b)], cfg)[0]  # doctest: +SKIP
        >>> run.frozen_steps, len(run.select_curve)  # doctest: +SKIP
        (20, 2)
    """
    import jax
    import optax

    from ._agents import init_aggregator, init_decider
    from ._train import TrainState, make_schedule, start_phase

    if not tasks:
        raise InputError("tasks: nothing to train on")
    models = tasks[0].models
    for ta in tasks:
        if ta.models != models:
            raise InputError(f"{ta.name}: models differ from the first task's")
        if ta.preds.shape[0] < 2:
            raise InputError(f"models: MARL-Focal needs at least 2 models, got {len(models)}")
    m = len(models)
    d_ctx = {0 if ta.context is None else ta.context.shape[1] for ta in tasks}
    if len(d_ctx) != 1:
        raise InputError("context: every task needs features of the same length (or none)")
    d_ctx = d_ctx.pop()
    cfg = config.validated()
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise InputError("seeds: give at least one seed")

    train_env = EnvSpec(cfg.window, cfg.weights, cfg.alpha, cfg.sentinel, cfg.faithful_metrics)
    tw, ta_ = (DEFAULT_WEIGHTS, 1.0) if cfg.test_default_weights else (cfg.weights, cfg.alpha)
    test_env = EnvSpec(cfg.test_window, tw, ta_, cfg.sentinel, cfg.faithful_metrics)

    # ---- per (task, seed): rows (with the seeded validation slice) checked before any work
    c_max = max(ta.n_classes for ta in tasks)
    combos = [(i, s) for i in range(len(tasks)) for s in seeds]
    views, rows = [], []
    for i, s in combos:
        view, n_fit = carve_validation(tasks[i], s, cfg.val_fraction)
        n = view.labels.size
        try:
            tr = scored_rows(n_fit, cfg.window, double_subtract=cfg.window_double_subtract)
            on = scored_rows(
                n - view.n_train, cfg.test_window, double_subtract=cfg.window_double_subtract
            )
        except InputError as exc:
            raise InputError(f"{view.name}: {exc}") from None
        views.append(view)
        rows.append((tr, on, n_fit))

    def build(kind: str):
        parts = []
        for ta, (_, _, n_fit) in zip(views, rows, strict=True):
            x = _inputs(ta.scores, cfg.agg_exp_inputs)
            z = np.zeros((ta.labels.size, 0), np.float32) if ta.context is None else ta.context
            n_tr, c = ta.n_train, ta.n_classes
            if kind == "train":
                parts.append((ta.preds[:, :n_fit], ta.labels[:n_fit], x[:, :n_fit], c, z[:n_fit]))
            elif kind == "online":
                parts.append((ta.preds[:, n_tr:], ta.labels[n_tr:], x[:, n_tr:], c, z[n_tr:]))
            else:
                parts.append((ta.preds, ta.labels, x, c, z))
        n_max = max(p[0].shape[1] for p in parts)
        return _pad_env(parts, n_max, c_max)

    def scheds(kind: str):
        out = []
        for ta, (tr, on, n_fit) in zip(views, rows, strict=True):
            n_tr, n_te = ta.n_train, ta.labels.size - ta.n_train
            if kind == "select":
                out.append((tr[0], tr[1], cfg.select_passes, cfg.carry_buffers, 0, None))
            elif kind == "ensemble":
                out.append((tr[0], tr[1], cfg.ensemble_passes, cfg.carry_buffers, 0, None))
            elif kind == "online":
                out.append((on[0], on[1], 1, False, 0, None))
            elif kind == "val":
                fl = 0 if cfg.test_window == 0 else max(0, n_fit - cfg.test_window)
                out.append((n_fit, max(n_tr - n_fit, 1), 1, False, fl, n_fit))
            else:
                fl = 0 if cfg.test_window == 0 else max(0, n_tr - cfg.test_window)
                out.append((n_tr, n_te, 1, False, fl, n_tr))
        ks = [
            make_schedule(a, b, p, cfg.update_freq, carry_buffers=cb).t.shape[0]
            for a, b, p, cb, _, _ in out
        ]
        k = max(ks)
        return [
            make_schedule(
                a, b, p, cfg.update_freq, carry_buffers=cb, n_buffers=k, floor=fl, horizon=hz
            )
            for a, b, p, cb, fl, hz in out
        ]

    # ---- agents, one per (task, seed), stacked; tasks outer
    d_list, a_list, keys = [], [], []
    dgd = agd = None
    for i, s in combos:
        k = task_key(s, tasks[i].name)
        kd, ka, kr = jax.random.split(k, 3)
        dgd, dp = init_decider(kd, m, d_ctx)
        agd, ap = init_aggregator(ka, m, tasks[i].n_classes, pad_classes=c_max, kind=cfg.aggregator)
        if params is not None:
            dp, ap = _load_params(dp, ap, params[len(keys)], tasks[i].n_classes, c_max)
        d_list.append(dp)
        a_list.append(ap)
        keys.append(kr)
    dparams, aparams = _stack(d_list), _stack(a_list)
    dopt = jax.vmap(optax.adam(cfg.lr_decider).init)(dparams)
    aopt = jax.vmap(optax.adam(cfg.lr_aggregator).init)(aparams)
    keys = jax.numpy.stack(keys)

    def stack_sched(lst):
        from ._train import Schedule

        return Schedule(*(np.stack(a) for a in zip(*lst, strict=True)))

    common = dict(force_all=force_all, aggregator_greedy=False)
    frozen_kw = dict(
        use_aggregator=True,
        learn_decider=False,
        learn_aggregator=False,
        decider_greedy=cfg.greedy_eval,
        force_all=force_all,
        aggregator_greedy=cfg.greedy_eval,
    )
    specs = {
        "select": _phase_spec(
            cfg,
            train_env,
            use_aggregator=False,
            learn_decider=True,
            learn_aggregator=False,
            decider_greedy=False,
            **common,
        ),
        "ensemble": _phase_spec(
            cfg,
            train_env,
            use_aggregator=True,
            learn_decider=False,
            learn_aggregator=True,
            decider_greedy=False,
            **common,
        ),
        "val": _phase_spec(cfg, test_env, **frozen_kw),
        "online": _phase_spec(
            cfg,
            test_env,
            use_aggregator=True,
            learn_decider=True,
            learn_aggregator=True,
            decider_greedy=False,
            **common,
        ),
        "frozen": _phase_spec(cfg, test_env, **frozen_kw),
    }
    data_train, data_online, data_frozen = build("train"), build("online"), build("frozen")
    datas = {
        "select": data_train,
        "ensemble": data_train,
        "val": data_frozen,
        "online": data_online,
        "frozen": data_frozen,
    }
    order = ("select", "ensemble", "val", "online", "frozen")
    wanted = set(phases)
    if cfg.val_fraction > 0 and params is None and "ensemble" in wanted:
        wanted.add("val")  # the guard's evidence, part of training
    done = 0
    state = TrainState(dparams, dopt, aparams, aopt, dparams, aparams, None, keys)
    trained = None
    outs: dict[str, Any] = {}
    if params is not None:
        trained = state
        wanted &= {"online", "frozen"}
    plan = [(pid, kind) for pid, kind in enumerate(order) if kind in wanted]
    # phase ids (key streams) of the phases before the validation one are those of before
    pid_of = {"select": 0, "ensemble": 1, "online": 2, "frozen": 3, "val": 4}
    total = sum(segments if k in ("select", "ensemble") else 1 for _, k in plan)
    for _, kind in plan:
        spec, data = specs[kind], datas[kind]
        start = state
        if kind in ("val", "online", "frozen") and trained is not None:
            start = trained
        pid = pid_of[kind]
        start = start._replace(key=jax.vmap(lambda k, p=pid: jax.random.fold_in(k, p))(keys))
        carry = jax.vmap(lambda st: start_phase(st, m))(start)
        sched = stack_sched(scheds(kind))
        pieces = []
        for seg in _segments(sched, segments if kind in ("select", "ensemble") else 1):
            carry, out = _runner(spec, dgd, agd)(carry, data, seg)
            pieces.append(jax.device_get(out))
            done += 1
            if progress is not None:
                progress(min(done, total), total)
        outs[kind] = {k: np.concatenate([p[k] for p in pieces], axis=1) for k in pieces[0]}
        st = carry[0]
        if kind in ("select", "ensemble") and cfg.restore_best:
            if kind == "select":
                st = st._replace(dparams=st.dbest)
            else:
                st = st._replace(aparams=st.abest)
        if kind == "select":
            state = trained = st
        elif kind == "ensemble":
            trained = st
    return _collect(views, combos, cfg, rows, outs, state if trained is None else trained, params)


def _load_params(dp, ap, saved: dict[str, Any], n_classes: int, c_max: int):
    """Put saved pure-dict parameters into the (padded) states ``dp``, ``ap``."""
    from flax import nnx

    nnx.replace_by_pure_dict(dp, jax_tree(saved["decider"]))
    a = jax_tree(saved["aggregator"])
    c_saved = np.asarray(a["l3" if "l3" in a else "res"]["bias"]).shape[0]
    if c_saved != c_max:
        raise InputError(f"aggregator: saved for {c_saved} classes, the bundle has {c_max}")
    nnx.replace_by_pure_dict(ap, a)
    return dp, ap


def jax_tree(tree):
    """Nested dict of arrays with jnp leaves."""
    import jax
    import jax.numpy as jnp

    return jax.tree.map(jnp.asarray, tree)


def _pass_curve(
    out: dict[str, np.ndarray], b: int, first_row: int, steps: int, passes: int, carry: bool
) -> list[float]:
    ok = out["ok"][b].reshape(-1)
    valid = out["valid"][b].reshape(-1)
    ok = ok[valid]
    ok = ok[: steps * passes].reshape(passes, steps) if passes else ok[:0].reshape(0, steps)
    return [float(x) for x in ok.mean(axis=1)]


def _pure(tree, b: int) -> dict[str, Any]:
    import jax
    from flax import nnx

    return nnx.to_pure_dict(jax.tree.map(lambda a: np.asarray(a[b]), tree))


def _valid(out: dict[str, np.ndarray], key: str, b: int) -> np.ndarray:
    return out[key][b].reshape(-1, *out[key].shape[3:])[out["valid"][b].reshape(-1)]


def _collect(views, combos, cfg, rows, outs, trained, saved) -> list[TaskRun]:
    runs = []
    m = len(views[0].models)
    empty = {
        "ok": np.zeros((len(combos), 0, 1), bool),
        "valid": np.zeros((len(combos), 0, 1), bool),
        "team": np.zeros((len(combos), 0, 1, m), np.int8),
        "answer": np.zeros((len(combos), 0, 1), np.int32),
    }
    ran = set(outs)
    outs = {k: outs.get(k, empty) for k in ("select", "ensemble", "val", "online", "frozen")}

    def denom(k):
        return (max(k - 1, 1) if cfg.accuracy_minus_one else k) if k else np.nan

    for b, (_, s) in enumerate(combos):
        ta = views[b]
        tr, _, n_fit = rows[b]
        on_ok = _valid(outs["online"], "ok", b)
        fz_ok = _valid(outs["frozen"], "ok", b)
        teams = _valid(outs["frozen"], "team", b)
        answers = _valid(outs["frozen"], "answer", b)
        router_acc = float(fz_ok.sum() / denom(fz_ok.size))
        correct = (ta.preds == ta.labels[None]) & (ta.preds >= 0)
        val_acc = val_best = np.nan
        fallback, model = False, -1
        if saved is not None:
            guard = saved[b].get("guard", {})
            fallback = bool(np.asarray(guard.get("fallback", 0)))
            model = int(np.asarray(guard.get("model", -1)))
        elif "val" in ran:
            val_acc = float(_valid(outs["val"], "ok", b).mean())
            best_fit = int(np.argmax(correct[:, :n_fit].mean(axis=1)))
            val_best = float(correct[best_fit, n_fit : ta.n_train].mean())
            model = int(np.argmax(correct[:, : ta.n_train].mean(axis=1)))
            fallback = bool(cfg.guard and val_acc <= val_best)
        if fallback and "frozen" in ran:
            teams = np.zeros_like(teams)
            teams[:, model] = 1
            answers = ta.preds[model, ta.n_train :].astype(np.int32)
            fz_ok = correct[model, ta.n_train :]
        params = {
            "decider": _pure(trained.dparams, b),
            "aggregator": _pure(trained.aparams, b),
            "guard": {"fallback": np.int8(fallback), "model": np.int32(model)},
        }
        curves = [
            _pass_curve(outs[k], b, *tr, p, False) if k in ran else []
            for k, p in (("select", cfg.select_passes), ("ensemble", cfg.ensemble_passes))
        ]
        runs.append(
            TaskRun(
                task=ta.name,
                seed=s,
                select_curve=curves[0],
                ensemble_curve=curves[1],
                online_accuracy=float(on_ok.sum() / denom(on_ok.size)),
                online_steps=int(on_ok.size),
                frozen_accuracy=float(fz_ok.sum() / denom(fz_ok.size)),
                frozen_steps=int(fz_ok.size),
                frozen_teams=teams.astype(np.int8),
                frozen_answers=answers.astype(np.int32),
                frozen_correct=fz_ok.astype(bool),
                frozen_rows=ta.row_ids[ta.n_train :],
                params=params,
                val_accuracy=val_acc,
                val_best_single=val_best,
                fallback=fallback,
                fallback_model=model,
                router_frozen_accuracy=router_acc,
            )
        )
    return runs
