"""MARL-Focal: speed (jitted/vmapped vs a per-step Python loop) and results on the shared data.

    python -m bench.marl [--only speed,bbh,mmlu,alpaca] [--seeds 3] [--passes 15]

* speed: environment steps per second of phase 1 (decider samples a team from the diversity
  state, plurality answers, reward; REINFORCE updates every 100 steps) on one BBH task, JAX
  (``lax.scan``, vmapped over 72 copies: the BBH batch of 24 tasks x 3 seeds) beside a
  straightforward per-step NumPy loop of the same environment and decider forward pass (all
  eight window statistics, as the environment computes them; no learning, so the loop is
  favoured); compile time reported apart. Also the wall time of the whole BBH protocol (24
  tasks, 15 + 15 passes, one seed, both modes).
* bbh: the 24 tasks (fixed labels, 22 ``label_ok`` tasks, and the "as stored" labels), mean of
  per-task test accuracies over seeds, faithful and fixed, frozen and online test, beside the
  baselines of the same tasks (best single chosen on train, plurality of all, oracle).
* mmlu: MMLU-Pro, a 10-model pool (the 10 best models by accuracy on the train rows), seeded
  80/20 split, window 500.
* alpaca: the open-ended router on AlpacaEval-1 (``fusers.marl.fit_router``).

Writes ``bench/out/marl.json`` atomically and prints Markdown. Missing data files are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

import ensembles
from ensembles.util import jsonable, write_atomic
from fusers.marl import MarlConfig, fit_tasks, task_arrays

DATA = Path(os.environ.get("FOCAL_DATA_DIR", Path(__file__).resolve().parents[2] / "shared/data"))
BBH = DATA / "bbh_5llm_marl_focal.npz"
MMLU = DATA / "mmlu_pro_29llm.npz"
ALPACA = DATA / "alignment" / "alpaca_eval1_wins.npz"
MMLU_TEXTS = DATA / "mmlu_pro_texts.jsonl.gz"
ALPACA_PROMPTS = DATA / "alignment" / "alpaca_eval_prompts.jsonl.gz"
#: Length of the TF-IDF + SVD query features of the contextual rows.
CONTEXT_DIM = 32
#: Extra settings of the fixed mode (``--fixed-agg-lr``: the aggregator learning-rate ablation).
FIXED_EXTRA: dict[str, Any] = {}
BBH_SETTINGS = dict(alpha=0.6, weights=(0.5, 0.5, 0, 0, 0, 0, 0, 0), window=0)


# ------------------------------------------------------------------ the per-step Python loop
def _metrics_np(team, correct, preds, labels, c):
    """The eight window statistics of ``team`` on the rows given, written plainly (float64).

    The order and conventions of ``fusers.marl.WINDOW_METRICS`` (fixed mode): focal, plurality,
    Fleiss kappa, and the pair means of Q, rho, disagreement and oracle kappa, then entropy.
    """
    s = np.flatnonzero(team)
    n = labels.size
    err = 1.0 - correct[s]
    cnt = err.sum(axis=0)
    gds = []
    for f in range(len(s)):
        rows = err[f] > 0
        if rows.any():
            a1, a2 = cnt[rows].sum(), (cnt[rows] ** 2).sum()
            gds.append(1.0 - (a2 - a1) / ((len(s) - 1) * a1))
    focal = float(np.mean(gds)) if gds else 0.0
    hits = 0
    counts = np.zeros((n, c + 1))
    for k in range(n):
        votes = np.zeros(c)
        for j in s:
            if preds[j, k] >= 0:
                votes[preds[j, k]] += 1
            counts[k, preds[j, k] if preds[j, k] >= 0 else c] += 1
        hits += votes.max() > 0 and int(np.argmax(votes)) == labels[k]
    size = len(s)
    p_bar = ((counts**2).sum(axis=1) - size).mean() / (size * (size - 1))
    p_e = ((counts.sum(axis=0) / (n * size)) ** 2).sum()
    fleiss = 1.0 if p_e == 1 else (p_bar - p_e) / (1 - p_e)
    q, rho, dis, kap = [], [], [], []
    for a in range(size):
        for b in range(a + 1, size):
            ea, eb = err[a] > 0, err[b] > 0
            n11, n00 = np.sum(ea & eb), np.sum(~ea & ~eb)
            n10, n01 = np.sum(ea & ~eb), np.sum(~ea & eb)
            det = n11 * n00 - n01 * n10
            qd = n11 * n00 + n01 * n10
            rd = np.sqrt(float((n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)))
            kd = (n11 + n10) * (n01 + n00) + (n11 + n01) * (n10 + n00)
            q.append(det / qd if qd else 0.0)
            rho.append(det / rd if rd else 0.0)
            dis.append((n01 + n10) / n)
            kap.append(2 * det / kd if kd else 0.0)
    p = 1.0 - err.mean()
    ent = 0.0 if p in (0.0, 1.0) else -p * np.log2(p) - (1 - p) * np.log2(1 - p)
    return np.array(
        [focal, hits / n, fleiss, np.mean(q), np.mean(rho), np.mean(dis), np.mean(kap), ent]
    )


def python_loop(ta, params, steps: int, seed: int = 0) -> float:
    """Steps/s of the environment and decider forward pass as a plain per-step loop."""
    rng = np.random.default_rng(seed)
    preds, labels = ta.preds[:, : ta.n_train], ta.labels[: ta.n_train]
    correct = ((preds == labels) & (preds >= 0)).astype(np.float64)
    w1, b1 = np.asarray(params["trunk"]["kernel"]), np.asarray(params["trunk"]["bias"])
    w2, b2 = np.asarray(params["heads"]["kernel"]), np.asarray(params["heads"]["bias"])
    m, c = preds.shape[0], ta.n_classes
    pool = np.ones(m)
    weights = np.asarray(BBH_SETTINGS["weights"], float)
    t0 = time.perf_counter()
    t = 1
    for _ in range(steps):
        if t >= labels.size:
            t, pool = 1, np.ones(m)
        if pool.sum() >= 2:
            f = weights @ _metrics_np(pool, correct[:, :t], preds[:, :t], labels[:t], c)
        else:
            f = -1.0
        s = np.concatenate([pool, [f, pool.sum()]])
        logits = (np.maximum(s @ w1 + b1, 0) @ w2 + b2).reshape(m, 2)
        p1 = 1.0 / (1.0 + np.exp(logits[:, 0] - logits[:, 1]))
        team = (rng.random(m) < p1).astype(float)
        votes = np.zeros(c)
        for j in np.flatnonzero(team):
            votes[preds[j, t]] += preds[j, t] >= 0
        ok = votes.max() > 0 and int(np.argmax(votes)) == labels[t]
        _ = 1.0 if ok else -1.0 - 0.6 * team.sum() / m
        pool = team
        t += 1
    return steps / (time.perf_counter() - t0)


def speed(out: dict[str, Any]) -> None:
    tasks = ensembles.load_tasks(BBH)
    b = tasks["date_understanding"]
    ta = task_arrays(b)
    cfg = MarlConfig.for_mode(
        "fixed",
        algorithm="reinforce",
        select_passes=15,
        val_fraction=0.0,
        guard=False,
        **BBH_SETTINGS,
    )
    copies = [task_arrays(b, name=f"copy{i}") for i in range(72)]
    t0 = time.perf_counter()
    fit_tasks(copies, cfg, phases=("select",))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    runs = fit_tasks(copies, cfg, phases=("select",))
    wall = time.perf_counter() - t0
    n_steps = sum(len(r.select_curve) for r in runs) * (ta.n_train - 1)
    jax_rate = n_steps / wall
    py_rate = python_loop(ta, runs[0].params["decider"], 1500)
    out["speed"] = {
        "task": "date_understanding",
        "copies": len(copies),
        "jax_steps": n_steps,
        "jax_seconds": wall,
        "jax_compile_seconds": first - wall,
        "jax_steps_per_s": jax_rate,
        "python_steps_per_s": py_rate,
        "ratio": jax_rate / py_rate,
    }
    # the whole BBH protocol, both modes, one seed
    full = {}
    for mode in ("faithful", "fixed"):
        t0 = time.perf_counter()
        cfg = MarlConfig.for_mode(mode, **BBH_SETTINGS)
        fit_tasks([task_arrays(tasks[t]) for t in tasks], cfg, seeds=[0])
        full[mode] = time.perf_counter() - t0
    out["speed"]["bbh_protocol_seconds"] = full
    s = out["speed"]
    print("\n## MARL-Focal speed (phase 1, date_understanding, 200 train rows)\n")
    print("| implementation | steps/s | ratio |\n|---|---|---|")
    print(f"| per-step Python/NumPy loop (no learning) | {py_rate:,.0f} | 1 |")
    print(
        f"| JAX scan, vmap x{len(copies)}, with REINFORCE updates | {jax_rate:,.0f} | "
        f"{s['ratio']:.0f}x |"
    )
    print(
        f"\nJAX compile {s['jax_compile_seconds']:.1f} s (once). Whole BBH protocol (24 tasks "
        f"x 30 passes + 2 test runs, 1 seed, compile included): faithful "
        f"{full['faithful']:.0f} s, fixed {full['fixed']:.0f} s."
    )


# ------------------------------------------------------------------ results
def _baselines(tas) -> dict[str, float]:
    best, plural, oracle = [], [], []
    for ta in tas:
        n = ta.n_train
        ok = (ta.preds == ta.labels) & (ta.preds >= 0)
        best.append(ok[int(np.argmax(ok[:, :n].mean(axis=1))), n:].mean())
        oracle.append(ok[:, n:].any(axis=0).mean())
        b = ensembles.Bundle.create(
            models=list(ta.models),
            labels=ta.labels[n:],
            preds=ta.preds[:, n:],
            n_classes=ta.n_classes,
        )
        plural.append(float(ensembles.team_accuracy(b, [ta.models], combiner="plurality")[0]))
    return {
        "best_single_train": float(np.mean(best)),
        "plurality_all": float(np.mean(plural)),
        "oracle": float(np.mean(oracle)),
    }


def _summary(runs, names) -> dict[str, Any]:
    res = {}
    keys = ("frozen_accuracy", "router_frozen_accuracy", "online_accuracy", "mean_consulted")
    res["fallbacks"] = int(sum(r.fallback for r in runs if r.task in names))
    res["runs"] = int(sum(r.task in names for r in runs))
    for key in keys:
        by_seed = {}
        for r in runs:
            if r.task in names:
                by_seed.setdefault(r.seed, []).append(getattr(r, key))
        vals = [float(np.mean(v)) for v in by_seed.values()]
        res[key] = {
            "mean": float(np.mean(vals)),
            "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
            "per_seed": vals,
        }
    return res


def _cell(s: dict[str, Any]) -> str:
    return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"


def bbh(
    out: dict[str, Any],
    seeds: list[int],
    passes: int,
    modes: tuple[str, ...] = ("faithful", "fixed"),
) -> None:
    tasks = ensembles.load_tasks(BBH)
    with np.load(BBH) as z:
        ok_tasks = [t for t in tasks if bool(z[f"{t}/label_ok"])]
    res: dict[str, Any] = {}
    for labels in ("fixed", "as_stored"):
        tas = [task_arrays(tasks[t], as_stored=labels == "as_stored") for t in tasks]
        res[labels] = {
            "baselines_24": _baselines(tas),
            "baselines_22": _baselines([t for t in tas if t.name in ok_tasks]),
        }
        for mode in modes:
            cfg = MarlConfig.for_mode(
                mode,
                select_passes=passes,
                ensemble_passes=passes,
                **BBH_SETTINGS,
                **(FIXED_EXTRA if mode == "fixed" else {}),
            )
            t0 = time.perf_counter()
            runs = fit_tasks(tas, cfg, seeds=seeds)
            res[labels][mode] = {
                "tasks_24": _summary(runs, set(tasks)),
                "tasks_22": _summary(runs, set(ok_tasks)),
                "seconds": time.perf_counter() - t0,
            }
    out["bbh"] = res
    print(
        f"\n## MARL-Focal on BBH (mean of per-task test accuracy, {len(seeds)} seeds, "
        f"{passes}+{passes} passes)\n"
    )
    print(
        "| labels | tasks | method | frozen test | frozen, router only (no guard) | "
        "online test (learns from test) | models/query | guard fired |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    for labels in ("as_stored", "fixed"):
        for scope in ("24", "22"):
            if labels == "as_stored" and scope == "22":
                continue
            for mode in modes:
                s = res[labels][mode][f"tasks_{scope}"]
                fired = f"{s['fallbacks']} / {s['runs']}" if mode == "fixed" else "–"
                print(
                    f"| {labels} | {scope} | MARL-Focal {mode} | {_cell(s['frozen_accuracy'])} | "
                    f"{_cell(s['router_frozen_accuracy'])} | {_cell(s['online_accuracy'])} | "
                    f"{s['mean_consulted']['mean']:.2f} | {fired} |"
                )
            bl = res[labels][f"baselines_{scope}"]
            print(
                f"| {labels} | {scope} | best single (train) / plurality all / oracle | "
                f"{100 * bl['best_single_train']:.2f} / {100 * bl['plurality_all']:.2f} / "
                f"{100 * bl['oracle']:.2f} | | | | |"
            )


def _top_models_split(b: ensembles.Bundle, *, seed: int, pool: int) -> ensembles.Bundle:
    """A seeded 80/20 train/test split, keeping the ``pool`` models most accurate on train."""
    bs = ensembles.with_random_split(b, fractions=(0.8, 0.0, 0.2), seed=seed)
    top = np.argsort(-bs.select_split("train").accuracies(), kind="stable")[:pool]
    return bs.select_models(sorted(top.tolist()))


def mmlu(
    out: dict[str, Any],
    seeds: list[int],
    passes: int,
    pool: int = 10,
    modes: tuple[str, ...] = ("faithful", "fixed"),
) -> None:
    b = ensembles.load_bundle(MMLU)
    res: dict[str, Any] = {}
    runs_all = {}
    for mode in modes:
        runs_all[mode] = []
    base = []
    for seed in seeds:
        bp = _top_models_split(b, seed=seed, pool=pool)
        ta = task_arrays(bp, name="mmlu_pro")
        base.append(_baselines([ta]))
        for mode in modes:
            cfg = MarlConfig.for_mode(
                mode,
                select_passes=passes,
                ensemble_passes=passes,
                window=500,
                gamma_aggregator=0.8,
                **(FIXED_EXTRA if mode == "fixed" else {}),
            )
            runs_all[mode] += fit_tasks([ta], cfg, seeds=[seed])
    for mode in modes:
        res[mode] = _summary(runs_all[mode], {"mmlu_pro"})
    res["baselines"] = {k: float(np.mean([x[k] for x in base])) for k in base[0]}
    out["mmlu_pro"] = res
    print(
        f"\n## MARL-Focal on MMLU-Pro ({pool}-model pool = best {pool} on train, 80/20 split "
        f"per seed, {len(seeds)} seeds, window 500, {passes}+{passes} passes)\n"
    )
    print(
        "| method | frozen test | frozen, router only | online test | models/query | "
        "guard fired |\n|---|---|---|---|---|---|"
    )
    for mode in modes:
        s = res[mode]
        per = " / ".join(f"{100 * v:.1f}" for v in s["frozen_accuracy"]["per_seed"])
        print(
            f"| MARL-Focal {mode} | {_cell(s['frozen_accuracy'])} ({per}) | "
            f"{_cell(s['router_frozen_accuracy'])} | {_cell(s['online_accuracy'])} | "
            f"{s['mean_consulted']['mean']:.2f} | "
            f"{s['fallbacks']} / {s['runs'] if mode == 'fixed' else '–'} |"
        )
    bl = res["baselines"]
    print(
        f"| best single (train) / plurality of pool / oracle | "
        f"{100 * bl['best_single_train']:.2f} / {100 * bl['plurality_all']:.2f} / "
        f"{100 * bl['oracle']:.2f} | | | | |"
    )


def _read_jsonl_gz(path: Path) -> list[dict[str, Any]]:
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def mmlu_context(out: dict[str, Any], seeds: list[int], passes: int, pool: int = 10) -> None:
    """Fixed MARL-Focal with and without the contextual decider on the MMLU-Pro questions that
    have text (3,000 of 12,032; TF-IDF + SVD of question and options, fitted on train rows)."""
    from fusers.marl import text_features

    b = ensembles.load_bundle(MMLU)
    texts = {
        r["question_id"]: r["question"] + " " + " ".join(r["options"])
        for r in _read_jsonl_gz(MMLU_TEXTS)
    }
    ids = np.asarray(b.sample_ids)
    rows = np.flatnonzero(np.isin(ids, list(texts)))
    b = b.select_samples(rows)
    docs = [texts[int(i)] for i in np.asarray(b.sample_ids)]
    runs: dict[str, list] = {"fixed": [], "fixed + context": []}
    base = []
    for seed in seeds:
        bp = _top_models_split(b, seed=seed, pool=pool)
        train_rows = np.flatnonzero(np.asarray(bp.split) != "test")
        ctx = text_features(docs, train_rows, dim=CONTEXT_DIM, seed=seed)
        cfg = MarlConfig.for_mode(
            "fixed",
            select_passes=passes,
            ensemble_passes=passes,
            window=500,
            gamma_aggregator=0.8,
        )
        ta = task_arrays(bp, name="mmlu_pro_text")
        base.append(_baselines([ta]))
        runs["fixed"] += fit_tasks([ta], cfg, seeds=[seed])
        ta_c = task_arrays(bp, name="mmlu_pro_text", context=ctx)
        runs["fixed + context"] += fit_tasks([ta_c], cfg, seeds=[seed])
    res: dict[str, Any] = {k: _summary(v, {"mmlu_pro_text"}) for k, v in runs.items()}
    res["baselines"] = {k: float(np.mean([x[k] for x in base])) for k in base[0]}
    res["n_questions"] = int(b.n_samples)
    out["mmlu_pro_context"] = res
    print(
        f"\n## Contextual decider on MMLU-Pro questions with text ({b.n_samples} questions, "
        f"{pool}-model pool = best on train, 80/20 split per seed, {len(seeds)} seeds, "
        f"window 500, {passes}+{passes} passes, {CONTEXT_DIM} TF-IDF + SVD features)\n"
    )
    print(
        "| method | frozen test | frozen, router only | online test | models/query | "
        "guard fired |\n|---|---|---|---|---|---|"
    )
    for k in runs:
        r = res[k]
        print(
            f"| MARL-Focal {k} | {_cell(r['frozen_accuracy'])} | "
            f"{_cell(r['router_frozen_accuracy'])} | {_cell(r['online_accuracy'])} | "
            f"{r['mean_consulted']['mean']:.2f} | {r['fallbacks']} / {r['runs']} |"
        )
    bl = res["baselines"]
    print(
        f"| best single (train) / plurality of the pool / oracle | "
        f"{100 * bl['best_single_train']:.2f} / {100 * bl['plurality_all']:.2f} / "
        f"{100 * bl['oracle']:.2f} | | | | |"
    )


POOLS = {
    "open 7B (5)": [
        "llama-2-7b-chat-hf",
        "zephyr-7b-beta",
        "tulu-2-dpo-7b",
        "alpaca-7b",
        "falcon-7b-instruct",
    ],
    "mixed (12)": [
        "gpt4",
        "claude-2",
        "gpt-3.5-turbo-0301",
        "llama-2-70b-chat-hf",
        "Yi-34B-Chat",
        "vicuna-13b",
        "wizardlm-13b",
        "guanaco-65b",
        "zephyr-7b-beta",
        "tulu-2-dpo-7b",
        "phi-2-dpo",
        "falcon-40b-instruct",
    ],
}


ROUTERS = {
    "reference": {},
    "reference + guard": dict(val_fraction=0.2, guard=True),
    "contextual": dict(context=True),
    "contextual + guard": dict(context=True, val_fraction=0.2, guard=True),
}


def alpaca(out: dict[str, Any], seeds: list[int]) -> None:
    """The open-ended router on AlpacaEval-1 wins (read from the npz directly: a small adapter,
    the open-ended bundle type lives on another branch), without and with the prompt's
    TF-IDF + SVD features (fitted on each seed's training prompts) and the guard."""
    from fusers.marl import fit_router, text_features

    with np.load(ALPACA, allow_pickle=False) as z:
        names = [str(x) for x in z["models"]]
        win = z["win"].astype(np.float64)
        datasets = [str(x) for x in z["datasets"]]
    n = win.shape[1]
    splits = [np.random.default_rng(s).permutation(n) for s in seeds]
    tr = np.stack([p[: int(0.8 * n)] for p in splits])
    te = np.stack([p[int(0.8 * n) :] for p in splits])
    ctx = None
    if ALPACA_PROMPTS.is_file():
        prompts = _read_jsonl_gz(ALPACA_PROMPTS)
        if [r["idx"] for r in prompts] != list(range(n)) or [
            r["dataset"] for r in prompts
        ] != datasets:
            raise SystemExit("alpaca: prompts file does not line up with the wins file")
        texts = [r["instruction"] for r in prompts]
        ctx = np.stack(
            [text_features(texts, tr[i], dim=CONTEXT_DIM, seed=s) for i, s in enumerate(seeds)]
        )
    res: dict[str, Any] = {}
    for pool, members in POOLS.items():
        q = win[[names.index(x) for x in members]]
        res[pool] = {"members": members}
        for variant, kw in ROUTERS.items():
            if kw.get("context") and ctx is None:
                continue
            kw = dict(kw, context=ctx) if kw.get("context") else kw
            runs = fit_router(q, tr, te, seeds=seeds, **kw)

            def agg(f, runs=runs):
                vals = [f(r) for r in runs]
                return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0

            res[pool][variant] = {
                "frozen": agg(lambda r: r.frozen),
                "router_frozen": agg(lambda r: r.router_frozen),
                "online": agg(lambda r: r.online),
                "best_single": agg(lambda r: r.best_single[1]),
                "oracle": agg(lambda r: r.oracle),
                "distinct_choices": float(np.mean([np.unique(r.choices).size for r in runs])),
                "fallbacks": int(sum(r.fallback for r in runs)),
            }
        if ctx is not None:  # a supervised reference: how much routing signal do the features hold?
            vals = []
            for i in range(len(seeds)):
                x = np.c_[ctx[i], np.ones(n)]
                q0 = np.nan_to_num(q, nan=0.0)
                a = x[tr[i]].T @ x[tr[i]] + 10.0 * np.eye(x.shape[1])
                w = np.linalg.solve(a, x[tr[i]].T @ q0[:, tr[i]].T)
                pick = np.argmax(x[te[i]] @ w, axis=1)
                vals.append(float(q0[pick, te[i]].mean()))
            res[pool]["ridge_on_features"] = (
                float(np.mean(vals)),
                float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
            )
    out["alpaca"] = res
    print(
        f"\n## Open-ended router on AlpacaEval-1 (mean win rate on a seeded 20 % test split, "
        f"{len(seeds)} seeds, 25 passes)\n"
    )
    print(
        "| pool | router | frozen | frozen, router only | online | best single (train) | "
        "per-prompt oracle | distinct models chosen | guard fired |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    for pool, r in res.items():
        for variant in ROUTERS:
            if variant not in r:
                continue
            v = r[variant]

            def f(k, v=v):
                return f"{100 * v[k][0]:.2f} ± {100 * v[k][1]:.2f}"

            fired = f"{v['fallbacks']} / {len(seeds)}" if "guard" in variant else "–"
            print(
                f"| {pool} | {variant} | {f('frozen')} | {f('router_frozen')} | {f('online')} | "
                f"{f('best_single')} | {f('oracle')} | {v['distinct_choices']:.1f} | {fired} |"
            )
        if "ridge_on_features" in r:
            m_, s_ = r["ridge_on_features"]
            print(
                f"| {pool} | supervised reference: ridge regression of every model's win on "
                f"the same features, argmax | {100 * m_:.2f} ± {100 * s_:.2f} | | | | | | |"
            )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="speed,bbh,mmlu,mmlu_context,alpaca")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--passes", type=int, default=15)
    ap.add_argument("--modes", default="faithful,fixed", help="BBH and MMLU-Pro modes to run")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "marl.json"))
    ap.add_argument("--fixed-agg-lr", type=float, help="fixed mode's aggregator Adam rate")
    args = ap.parse_args(argv)
    if args.fixed_agg_lr is not None:
        FIXED_EXTRA["lr_aggregator"] = args.fixed_agg_lr
    only = set(args.only.split(","))
    seeds = list(range(args.seeds))
    out: dict[str, Any] = {"seeds": seeds, "passes": args.passes}
    if "speed" in only and BBH.is_file():
        speed(out)
    if "bbh" in only and BBH.is_file():
        bbh(out, seeds, args.passes, modes=tuple(args.modes.split(",")))
    if "mmlu" in only and MMLU.is_file():
        mmlu(out, seeds, args.passes, modes=tuple(args.modes.split(",")))
    if "mmlu_context" in only and MMLU.is_file() and MMLU_TEXTS.is_file():
        mmlu_context(out, seeds, args.passes)
    if "alpaca" in only and ALPACA.is_file():
        alpaca(out, seeds)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: f.write(json.dumps(jsonable(out), indent=2).encode()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
