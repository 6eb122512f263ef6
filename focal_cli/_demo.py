"""The built-in ``focal demo``: a pool of scikit-learn classifiers on digits, end to end.

:func:`digits_pool` fits 14 classifiers of different families on part of scikit-learn's digits
dataset and caches their outputs on the remaining samples as a bundle with a seeded
``train``/``val``/``test`` split. :func:`run_demo` recommends the most focal-diverse teams on
``val`` and reports how they do on ``test`` next to the best single model, the whole pool and
the team with the best ``val`` accuracy; :func:`format_demo` renders that report as text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import ensembles
from ensembles import Bundle, BundleError

from ._common import UsageError, add_format, emit, log, subcommand, table

__all__ = ["cache_root", "digits_pool", "format_demo", "register", "run_demo"]

LogFn = Callable[[str], None]

#: Fraction of the digits samples used to fit the classifiers; the rest form the bundle.
FIT_FRACTION = 0.4
#: ``train``/``val``/``test`` fractions of the bundle's samples.
SPLIT_FRACTIONS = (1 / 3, 1 / 3, 1 / 3)
TASK = "digits"


def _quiet(msg: str) -> None:
    return None


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder where the demo keeps its files: ``<cache>/focal-fusion``.

    ``<cache>`` is ``cache_dir`` when given, else ``$XDG_CACHE_HOME`` when set, else
    ``~/.cache``. The folder is not created here.

    Args:
        cache_dir: base cache folder overriding the environment, or ``None``.

    Returns:
        The ``focal-fusion`` folder inside the cache folder.

    Example:
        >>> cache_root("/tmp/c").as_posix()
        '/tmp/c/focal-fusion'
    """
    if cache_dir is not None:
        base = Path(cache_dir)
    elif os.environ.get("XDG_CACHE_HOME"):
        base = Path(os.environ["XDG_CACHE_HOME"])
    else:
        base = Path.home() / ".cache"
    return base.expanduser() / "focal-fusion"


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise UsageError(f"seed: expected a non-negative integer, got {seed!r}")
    return int(seed)


def _classifiers(seed: int) -> dict[str, Any]:
    """The pool: 14 unfitted classifiers of different families, seeded where random."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.discriminant_analysis import (
        LinearDiscriminantAnalysis,
        QuadraticDiscriminantAnalysis,
    )
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import BernoulliNB, GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC, LinearSVC
    from sklearn.tree import DecisionTreeClassifier

    rs = seed
    return {
        "logistic_regression": LogisticRegression(C=1.0, max_iter=300),
        "linear_svc": LinearSVC(C=0.1, random_state=rs),  # no predict_proba: one-hot votes
        # Platt-scaled RBF SVM (SVC(probability=True) is deprecated in scikit-learn 1.9).
        "svc_rbf": CalibratedClassifierCV(SVC(C=5.0, gamma="scale"), cv=3, ensemble=False),
        "knn_1": KNeighborsClassifier(n_neighbors=1),
        "knn_15": KNeighborsClassifier(n_neighbors=15),
        "gaussian_nb": GaussianNB(),
        "bernoulli_nb": BernoulliNB(binarize=0.5),
        "decision_tree": DecisionTreeClassifier(max_depth=6, random_state=rs),
        "random_forest": RandomForestClassifier(n_estimators=30, max_depth=8, random_state=rs),
        "extra_trees": ExtraTreesClassifier(n_estimators=30, random_state=rs),
        "hist_gradient_boosting": HistGradientBoostingClassifier(
            max_iter=30, learning_rate=0.3, max_depth=3, random_state=rs
        ),
        "mlp": MLPClassifier(hidden_layer_sizes=(32,), max_iter=150, random_state=rs),
        "lda": LinearDiscriminantAnalysis(),
        "qda": QuadraticDiscriminantAnalysis(reg_param=0.5),
    }


def _digits_split(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X, y, fit_idx, rest_idx)``: scaled digits and the seeded stratified fit/rest split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # pixel intensities 0..16 -> [0, 1]; a fixed, data-independent scaling
    fit_idx, rest_idx = train_test_split(
        np.arange(len(y)), train_size=FIT_FRACTION, stratify=y, random_state=seed
    )
    return X, y.astype(np.int64), np.sort(fit_idx), np.sort(rest_idx)


def _fit_pool(
    models: dict[str, Any], X: np.ndarray, y: np.ndarray
) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit every model (single-threaded BLAS/OpenMP: faster on this tiny data), timing each."""
    from sklearn.exceptions import ConvergenceWarning

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a scikit-learn dependency
        limits: Any = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=1)
    seconds: dict[str, float] = {}
    with limits, warnings.catch_warnings():
        # A modest max_iter keeps the demo fast; the models are good enough for it.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(X, y)
            seconds[name] = time.perf_counter() - start
    return models, seconds


def _cached_pool_ok(bundle: Bundle, names: tuple[str, ...], rest_idx: np.ndarray) -> bool:
    return (
        bundle.models == names
        and bundle.split is not None
        and bundle.sample_ids is not None
        and np.array_equal(np.asarray(bundle.sample_ids), rest_idx)
    )


def _digits_pool(
    seed: int, cache_dir: str | os.PathLike[str] | None, refresh: bool, log: LogFn
) -> tuple[Bundle, dict[str, Any]]:
    """:func:`digits_pool` plus facts for the report (path, cached, timings, sample counts)."""
    seed = _check_seed(seed)
    path = cache_root(cache_dir) / f"digits_pool_seed{seed}.npz"
    X, y, fit_idx, rest_idx = _digits_split(seed)
    models = _classifiers(seed)
    names = tuple(models)
    info: dict[str, Any] = {
        "path": path,
        "cached": False,
        "fit_seconds": None,
        "model_fit_seconds": None,
        "n_fit": int(fit_idx.size),
    }
    if path.is_file() and not refresh:
        try:
            bundle = ensembles.load_bundle(path)
        except BundleError as exc:
            log(f"focal demo: cannot read cached pool ({exc}); refitting")
        else:
            if _cached_pool_ok(bundle, names, rest_idx):
                bundle = dataclasses.replace(bundle, task=TASK)  # single-task files omit it
                log(
                    f"focal demo: using cached pool {path} ({bundle.n_models} models, "
                    f"{bundle.n_samples:,} samples; --refresh to refit)"
                )
                info["cached"] = True
                return bundle, info
            log(f"focal demo: cached pool {path} is stale (other models or samples); refitting")

    log(
        f"focal demo: fitting {len(models)} scikit-learn classifiers on {fit_idx.size:,} of "
        f"{y.size:,} digits samples (seed {seed}) ..."
    )
    start = time.perf_counter()
    fitted, seconds = _fit_pool(models, X[fit_idx], y[fit_idx])
    fit_seconds = time.perf_counter() - start
    slowest = max(seconds, key=seconds.__getitem__)
    log(
        f"focal demo: fitted {len(fitted)} classifiers in {fit_seconds:.2f} s "
        f"(slowest: {slowest} {seconds[slowest]:.2f} s)"
    )
    raw = ensembles.from_sklearn(fitted, X[rest_idx], y[rest_idx], n_classes=10, task=TASK)
    bundle = Bundle.create(
        models=raw.models,
        labels=raw.labels,
        probs=raw.probs,
        n_classes=raw.n_classes,
        sample_ids=rest_idx,  # row indices into sklearn.datasets.load_digits()
        task=TASK,
    )
    bundle = ensembles.with_random_split(bundle, fractions=SPLIT_FRACTIONS, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    ensembles.save_bundle(bundle, path)
    log(f"focal demo: cached the pool's outputs at {path}")
    info.update(fit_seconds=fit_seconds, model_fit_seconds=seconds)
    return bundle, info


def digits_pool(
    *,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    refresh: bool = False,
    log: LogFn | None = None,
) -> Bundle:
    """Outputs of 14 fitted scikit-learn classifiers on the digits dataset, cached.

    The 1,797 digits (8x8 images, 10 classes; shipped with scikit-learn) are split with
    ``seed``, stratified by class: 40% fit the classifiers, and their outputs on the other 60%
    form the bundle, whose samples are split again (stratified, seeded) into thirds
    ``train``/``val``/``test``. The pool spans many families: logistic regression, linear SVM,
    RBF SVM (Platt-scaled), 1- and 15-nearest neighbours, Gaussian and Bernoulli naive Bayes, a
    depth-6 decision tree, a random forest, extra trees, histogram gradient boosting, an MLP,
    LDA and QDA. Fitting takes a few seconds on one core.

    The bundle is saved (atomically) to ``<cache>/focal-fusion/digits_pool_seed{seed}.npz``,
    ``<cache>`` being ``cache_dir``, else ``$XDG_CACHE_HOME``, else ``~/.cache``, and reused
    by later calls unless ``refresh`` is set (or the cached file does not match the pool).

    Args:
        seed: non-negative seed of both splits and of the randomised classifiers.
        cache_dir: base cache folder (default: see above).
        refresh: refit and overwrite the cached bundle even when one exists.
        log: callable receiving one-line progress messages (the CLI sends them to stderr);
            ``None`` is silent.

    Returns:
        A :class:`ensembles.Bundle` with task ``"digits"``, ``probs``, a ``split`` and
        ``sample_ids`` (row indices into :func:`sklearn.datasets.load_digits`).

    Raises:
        ValueError: a negative or non-integer ``seed``.
        BundleError: the cache folder cannot be written.

    Example:
        >>> import tempfile
        >>> b = digits_pool(seed=0, cache_dir=tempfile.mkdtemp())  # doctest: +SKIP
        >>> b.n_models, sorted(set(b.split.tolist()))  # doctest: +SKIP
        (14, ['test', 'train', 'val'])
    """
    bundle, _ = _digits_pool(seed, cache_dir, refresh, log or _quiet)
    return bundle


def _find_rows(all_masks: np.ndarray, masks: np.ndarray) -> list[int]:
    """Row index in ``all_masks`` of each row of ``masks``."""
    weights = np.int64(1) << np.arange(all_masks.shape[1], dtype=np.int64)
    codes = all_masks.astype(np.int64) @ weights
    where = {int(c): i for i, c in enumerate(codes)}
    return [where[int(c)] for c in masks.astype(np.int64) @ weights]


def _acc(bundle: Bundle, masks: np.ndarray, combiner: str) -> np.ndarray:
    if masks.shape[0] == 0:
        return np.zeros(0)
    return ensembles.team_accuracy(bundle, masks, combiner=combiner)


def _members(models: tuple[str, ...], mask: np.ndarray) -> list[str]:
    return [m for m, keep in zip(models, mask, strict=True) if keep]


def run_demo(
    *,
    seed: int = 0,
    top_k: int = 5,
    sizes: Any = "3-6",
    plot: str | os.PathLike[str] | None = "default",
    refresh: bool = False,
    log: LogFn | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The built-in demo: recommend focal-diverse teams on ``val``, compare them on ``test``.

    Builds (or reuses) the pool of :func:`digits_pool`, ranks every team with a size in
    ``sizes`` by focal diversity on the ``val`` split (:func:`focal.prune`, exhaustive), and
    reports for the top ``top_k`` their focal diversity and plurality accuracy on ``val`` and
    their plurality and soft-vote accuracy on ``test``. For contrast it reports on ``test``:
    the best single model chosen on ``val``, the whole pool, and the *accuracy-only pick*, the
    team with the best ``val`` plurality accuracy among the same teams (ties go to the smaller
    team, then to canonical order). It also writes a scatter plot of focal diversity against
    plurality accuracy on ``val`` for every team, the recommendations marked
    (:class:`focal._plot.DiversityAccuracyDisplay`).

    Args:
        seed: seed of the pool's splits (see :func:`digits_pool`).
        top_k: number of teams to recommend.
        sizes: team sizes: ``"3-6"``, an int, an inclusive ``(lo, hi)`` pair or an iterable.
        plot: ``"default"`` writes ``focal_demo_teams_seed{seed}.png`` in the current folder
            (the cache folder when that is read-only), a path writes there, ``None`` writes no
            plot. The default is skipped (with a log message)
            when matplotlib is missing.
        refresh: refit the pool even if a cached one exists.
        log: callable receiving one-line progress messages; ``None`` is silent.
        cache_dir: base cache folder (default ``$XDG_CACHE_HOME``, else ``~/.cache``).

    Returns:
        A JSON-ready dict (str, int, float, list, dict, ``None`` for undefined values) with
        keys ``seed``, ``dataset``, ``metric``, ``sizes``, ``top_k``, ``n_teams``, ``cache``
        (``bundle`` path, ``cached``, ``fit_seconds``), ``plot`` (path or ``None``),
        ``samples``, ``models``, ``recommended``, ``best_single``, ``pool``,
        ``accuracy_pick`` and ``all_teams``. Render it with :func:`format_demo`.

    Raises:
        ValueError: bad ``seed``, ``sizes`` or ``top_k``, or an explicit ``plot`` path without
            matplotlib installed.

    Example:
        >>> import tempfile
        >>> doc = run_demo(sizes="3-4", top_k=3, cache_dir=tempfile.mkdtemp())  # doctest: +SKIP
        >>> [t["rank"] for t in doc["recommended"]]  # doctest: +SKIP
        [1, 2, 3]
    """
    import focal

    log = log or _quiet
    seed = _check_seed(seed)
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise UsageError(f"top-k: must be a positive integer, got {top_k!r}")
    plot_path = _plot_path(plot, seed, cache_dir, log)

    bundle, info = _digits_pool(seed, cache_dir, refresh, log)
    val, test = bundle.select_split("val"), bundle.select_split("test")
    from focal.search import parse_sizes

    size_tuple = parse_sizes(sizes, bundle.n_models)
    n_teams = focal.count_teams(bundle.n_models, size_tuple)

    log(f"focal demo: scoring {n_teams:,} teams of sizes {_sizes_text(size_tuple)} on val ...")
    result = focal.prune(val, metric="focal", sizes=size_tuple, top_k=int(top_k))
    all_masks, all_focal = focal.score_all(val, metric="focal", sizes=size_tuple)
    all_val = _acc(val, all_masks, "plurality")
    all_test = _acc(test, all_masks, "plurality")

    rec_masks = np.array([t.mask for t in result.teams], dtype=bool).reshape(-1, bundle.n_models)
    rec_rows = _find_rows(all_masks, rec_masks)
    rec_test = _acc(test, rec_masks, "plurality")
    rec_soft = _acc(test, rec_masks, "soft")
    recommended = [
        {
            "rank": rank,
            "members": list(t.members),
            "size": t.size,
            "focal_val": _num(t.score),
            "plurality_val": _num(t.accuracy),
            "plurality_test": _num(pt),
            "soft_test": _num(st),
            "test_percentile": _num((all_test <= pt).mean()),
        }
        for rank, (t, pt, st) in enumerate(
            zip(result.teams, rec_test, rec_soft, strict=True), start=1
        )
    ]

    eye = np.eye(bundle.n_models, dtype=bool)
    single_val = val.accuracies()
    single_test = _acc(test, eye, "plurality")
    single_soft = _acc(test, eye, "soft")
    best = int(np.argmax(single_val))  # first on ties
    models = [
        {
            "name": name,
            "val_accuracy": _num(va),
            "test_accuracy": _num(ta),
            "fit_seconds": None
            if info["model_fit_seconds"] is None
            else _num(info["model_fit_seconds"][name]),
        }
        for name, va, ta in zip(bundle.models, single_val, single_test, strict=True)
    ]

    full = np.ones((1, bundle.n_models), dtype=bool)
    pool = {
        "size": bundle.n_models,
        "plurality_val": _num(_acc(val, full, "plurality")[0]),
        "plurality_test": _num(_acc(test, full, "plurality")[0]),
        "soft_test": _num(_acc(test, full, "soft")[0]),
    }

    pick = int(np.argmax(all_val))  # first maximum: smallest size, then canonical order
    pick_mask = all_masks[pick : pick + 1]
    accuracy_pick = {
        "members": _members(bundle.models, all_masks[pick]),
        "size": int(all_masks[pick].sum()),
        "focal_val": _num(all_focal[pick]),
        "plurality_val": _num(all_val[pick]),
        "plurality_test": _num(all_test[pick]),
        "soft_test": _num(_acc(test, pick_mask, "soft")[0]),
        "n_tied_val": int((all_val == all_val[pick]).sum()),
    }

    if plot_path is not None:
        from focal.plot import DiversityAccuracyDisplay

        references = {
            f"best single model ({bundle.models[best]})": float(single_val[best]),
            f"whole pool ({bundle.n_models} models)": pool["plurality_val"],
        }
        disp = DiversityAccuracyDisplay.from_scores(
            all_masks,
            all_focal,
            all_val,
            highlight=rec_rows,
            metric="focal",
            split="val",
            references=references,
        ).plot(
            title=(
                f"digits, {bundle.n_models} classifiers: {n_teams:,} teams of sizes "
                f"{_sizes_text(size_tuple)} (seed {seed})"
            )
        )
        disp.savefig(plot_path)
        log(f"focal demo: wrote {plot_path}")

    from focal import recommend

    log("focal demo: recommending a team and combiner by cross-validation on train+val ...")
    rec_report = recommend(bundle, report_on="test", sizes=size_tuple, seed=seed).to_dict()
    default_recommendation = {
        **rec_report["recommendation"],
        "candidates": rec_report["candidates"][:5],
        "report": rec_report["report"],
    }

    counts = {s: int((bundle.split == s).sum()) for s in ensembles.SPLIT_NAMES}
    return {
        "seed": seed,
        "dataset": "digits (scikit-learn)",
        "task": bundle.task,
        "metric": "focal",
        "sizes": list(size_tuple),
        "top_k": int(top_k),
        "n_models": bundle.n_models,
        "n_teams": int(n_teams),
        "cache": {
            "bundle": str(info["path"]),
            "cached": bool(info["cached"]),
            "fit_seconds": None if info["fit_seconds"] is None else _num(info["fit_seconds"]),
        },
        "plot": None if plot_path is None else str(plot_path),
        "samples": {"fit": info["n_fit"], **counts},
        "models": models,
        "recommended": recommended,
        "best_single": {
            "name": bundle.models[best],
            "val_accuracy": _num(single_val[best]),
            "test_accuracy": _num(single_test[best]),
            "soft_test": _num(single_soft[best]),
        },
        "pool": pool,
        "accuracy_pick": accuracy_pick,
        "default_recommendation": default_recommendation,
        "all_teams": {
            "plurality_val_mean": _num(np.nanmean(all_val)),
            "plurality_test_mean": _num(np.nanmean(all_test)),
            "plurality_test_median": _num(np.nanmedian(all_test)),
            "plurality_test_max": _num(np.nanmax(all_test)),
        },
    }


def _plot_path(
    plot: str | os.PathLike[str] | None,
    seed: int,
    cache_dir: str | os.PathLike[str] | None,
    log: LogFn,
) -> Path | None:
    if plot is None or plot is False:
        return None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if plot == "default":
            log("focal demo: matplotlib is not installed; skipping the plot")
            return None
        raise UsageError(
            "plot: matplotlib is not installed; `pip install matplotlib` or use --no-plot"
        ) from None
    from ensembles.util import check_writable

    if plot == "default":
        # The current folder, where a user will see it; the cache folder if it is read-only.
        name = f"focal_demo_teams_seed{seed}.png"
        here = Path.cwd() / name
        if os.access(Path.cwd(), os.W_OK):
            return here
        log("focal demo: the current folder is not writable; the plot goes to the cache")
        return cache_root(cache_dir) / name
    return check_writable(Path(plot).expanduser(), name="--plot")


def _num(x: Any) -> float | None:
    """A finite Python float, or ``None`` for NaN / inf."""
    x = float(x)
    return x if math.isfinite(x) else None


def _sizes_text(sizes: tuple[int, ...] | list[int]) -> str:
    sizes = list(sizes)
    if len(sizes) > 1 and sizes == list(range(sizes[0], sizes[-1] + 1)):
        return f"{sizes[0]}-{sizes[-1]}"
    return ",".join(map(str, sizes))


def format_demo(doc: dict[str, Any]) -> str:
    """Render the document of :func:`run_demo` as a plain-text report.

    Args:
        doc: the dict returned by :func:`run_demo` (or parsed from ``focal demo --format
            json``).

    Returns:
        Multi-line text: the pool's models and accuracies, the recommended teams, and a
        comparison on ``test`` with the best single model, the whole pool and the
        accuracy-only pick.

    Example:
        >>> import tempfile
        >>> doc = run_demo(sizes=3, top_k=2, plot=None,
        ...                cache_dir=tempfile.mkdtemp())  # doctest: +SKIP
        >>> print(format_demo(doc))  # doctest: +SKIP
    """

    s = doc["samples"]
    cache = doc["cache"]
    how = "reused" if cache["cached"] else f"fitted in {cache['fit_seconds']:.1f} s"
    out = [
        f"focal demo: {doc['n_models']} scikit-learn classifiers on {doc['dataset']}, "
        f"seed {doc['seed']}",
        f"samples: {s['fit']:,} to fit the models; outputs on {s['train']:,} train / "
        f"{s['val']:,} val / {s['test']:,} test",
        f"pool: {cache['bundle']} ({how})",
        "",
        table(
            ("model", "val acc", "test acc"),
            [(m["name"], m["val_accuracy"], m["test_accuracy"]) for m in doc["models"]],
        ),
        "",
        f"Recommended: top {len(doc['recommended'])} of {doc['n_teams']:,} teams of sizes "
        f"{_sizes_text(doc['sizes'])} by focal diversity on val (higher = more diverse)",
        table(
            ("rank", "focal val", "plur val", "plur test", "soft test", "size", "members"),
            [
                (
                    t["rank"],
                    t["focal_val"],
                    t["plurality_val"],
                    t["plurality_test"],
                    t["soft_test"],
                    t["size"],
                    ", ".join(t["members"]),
                )
                for t in doc["recommended"]
            ],
        ),
        "",
        "Comparison on test (models and teams chosen on val):",
    ]
    best, pool, pick = doc["best_single"], doc["pool"], doc["accuracy_pick"]
    rows: list[tuple[Any, ...]] = [
        (
            "best single model",
            1,
            best["val_accuracy"],
            best["test_accuracy"],
            best["soft_test"],
            best["name"],
        ),
        ("whole pool", pool["size"], pool["plurality_val"], pool["plurality_test"],
         pool["soft_test"], "all models"),
        (
            "accuracy-only pick",
            pick["size"],
            pick["plurality_val"],
            pick["plurality_test"],
            pick["soft_test"],
            ", ".join(pick["members"]),
        ),
    ]  # fmt: skip
    dr = doc.get("default_recommendation")
    rows += [
        (
            f"focal #{t['rank']}",
            t["size"],
            t["plurality_val"],
            t["plurality_test"],
            t["soft_test"],
            ", ".join(t["members"]),
        )
        for t in doc["recommended"]
    ]
    out.append(table(("", "size", "plur val", "plur test", "soft test", "members"), rows))
    teams = doc["all_teams"]
    rec = [t["plurality_test"] for t in doc["recommended"] if t["plurality_test"] is not None]
    out.append("")
    out.append(
        f"all {doc['n_teams']:,} teams on test (plurality): mean {_f(teams['plurality_test_mean'])}"
        f", median {_f(teams['plurality_test_median'])}, best {_f(teams['plurality_test_max'])}"
        + (f"; focal top-{len(rec)} mean {_f(sum(rec) / len(rec))}" if rec else "")
    )
    if pick.get("n_tied_val", 1) > 1:
        out.append(
            f"({pick['n_tied_val']} teams tie at the best val accuracy; the pick is the first, "
            "smallest team)"
        )
    if dr:
        how = f" combined by {dr['combiner']}" if dr["kind"] == "team" else ""
        out.insert(
            0,
            f"RECOMMENDATION (focal recommend): {dr['kind'].replace('_', ' ')} "
            f"{', '.join(dr['members'])}{how} — test accuracy {_f(dr['report_accuracy'])} vs "
            f"{_f(dr['report']['best_single']['report_accuracy'])} for the best single model on "
            f"the same train+val rows ({dr['report']['best_single']['name']})\n  "
            f"({dr['reason']}; cross-validated {_f(dr['cv_accuracy'])}, p = {dr['p_value']:.3g})\n",
        )
    out.append(
        f"\nplot of every team (focal diversity vs accuracy on val, recommended teams starred, "
        f"best single model and whole pool as lines): {doc['plot']}"
        if doc["plot"]
        else "plot: not written"
    )
    return "\n".join(out)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def register(sub: Any) -> None:
    """Add ``demo``."""
    p = subcommand(
        sub,
        "demo",
        help="train 14 scikit-learn classifiers on digits and recommend teams (no files needed)",
        description="""\
        The built-in default job: train a pool of scikit-learn classifiers of different
        families on the digits dataset shipped with scikit-learn (seeded split), cache
        their outputs as a bundle in the user cache directory, recommend the top teams on the
        validation split, and compare them on the test split with the best single model and
        the whole pool. Writes a scatter plot of focal diversity vs plurality accuracy for
        every team.

        examples:
          focal demo
          focal demo --seed 1 --plot teams.png --format json
        """,
        run=run_demo_command,
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the data split (default 0)")
    p.add_argument("--top-k", type=int, default=5, help="number of teams to recommend")
    p.add_argument("--sizes", default="3-6", help="team sizes to consider (default 3-6)")
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="scatter plot path (default: focal_demo_teams_seed<S>.png in the current folder)",
    )
    p.add_argument("--no-plot", action="store_true", help="do not write the scatter plot")
    p.add_argument("--refresh", action="store_true", help="retrain even if a cached pool exists")
    add_format(p)


def run_demo_command(args: Any) -> int:
    """Run ``focal demo``."""
    doc = run_demo(
        seed=args.seed,
        top_k=args.top_k,
        sizes=args.sizes,
        plot=None if args.no_plot else (args.plot or "default"),
        refresh=args.refresh,
        log=log,
    )
    return emit(args, doc, lambda: format_demo(doc))
