"""The MARL-Focal estimator on one bundle: fit, save, load, evaluate, per-query records."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ensembles import Bundle
from ensembles.util import InputError, jsonable, write_atomic

from ._config import MarlConfig
from ._context import text_features
from ._fit import TaskRun, fit_tasks, task_arrays

__all__ = ["MarlFocal", "cost_metric", "inference_records", "load_marl", "write_records"]

_META = "marl.json"
_PARAMS = "params.npz"
_CURVE = "curve.png"


def cost_metric(teams: Any, prices: Sequence[float]) -> float:
    """``Σ_j (times model j consulted / #queries) · price_j · 1000``.

    Example:
        >>> cost_metric([[1, 0], [1, 1]], [0.1, 0.5])
        350.0
    """
    t = np.asarray(teams, dtype=np.float64)
    p = np.asarray(prices, dtype=np.float64)
    if p.shape != (t.shape[1],):
        raise InputError(f"prices: need {t.shape[1]} prices (one per model), got {p.size}")
    return float((t.mean(axis=0) * p).sum() * 1000.0)


def inference_records(run: TaskRun, models: Sequence[str], bundle: Bundle) -> list[dict[str, Any]]:
    """One record per test query: row, sample id, models consulted, answer, gold, correct.

    Example:
        >>> inference_records  # doctest: +ELLIPSIS
        <function inference_records at ...>
    """
    ids = bundle.sample_ids
    labels = np.asarray(bundle.labels)
    out = []
    for k, row in enumerate(run.frozen_rows.tolist()):
        team = run.frozen_teams[k]
        out.append(
            {
                "row": int(row),
                "sample_id": None if ids is None else ids[row].item(),
                "consulted": [models[j] for j in np.flatnonzero(team).tolist()],
                "n_consulted": int(team.sum()),
                "answer": int(run.frozen_answers[k]),
                "label": int(labels[row]),
                "correct": bool(run.frozen_correct[k]),
            }
        )
    return out


def write_records(path: str | Path, records: Sequence[dict[str, Any]]) -> Path:
    """Write records as JSON lines (atomically).

    Example:
        >>> import tempfile, os
        >>> p = write_records(os.path.join(tempfile.mkdtemp(), "r.jsonl"), [{"row": 0}])
        >>> p.read_text()
        '{"row": 0}\\n'
    """
    text = "".join(json.dumps(jsonable(r), allow_nan=False) + "\n" for r in records)
    return write_atomic(path, lambda f: f.write(text.encode()))


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = np.asarray(v)
    return out


def _unflatten(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in flat.items():
        node = out
        parts = key.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


class MarlFocal:
    """MARL-Focal on one bundle (sklearn style).

    Args:
        mode: ``"fixed"`` (default) or ``"faithful"`` (see :class:`fusers.marl.MarlConfig`).
        seed: seed of the agents and of every sampled action.
        as_stored: undo the BBH label fix (published-number comparisons only).
        context: ``None`` (the reference decider, blind to the query) or ``"tfidf"``: the
            decider also sees ``context_dim`` TF-IDF + SVD features of the query text, fitted on
            the training rows' texts only (:func:`~fusers.marl.text_features`); ``fit`` and
            ``evaluate`` then need ``texts``, one per bundle row.
        context_dim: length of the query features.
        **settings: any :class:`~fusers.marl.MarlConfig` field.

    Attributes:
        run_: the :class:`~fusers.marl.TaskRun` of :meth:`fit`.
        models_: the pool.
        config_: the :class:`~fusers.marl.MarlConfig` used.

    Example:
        >>> import ensembles
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 2, 150)
        >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=y,
        ...     preds=np.stack([y, rng.integers(0, 2, 150), rng.integers(0, 2, 150)]),
        ...     split=["train"] * 120 + ["test"] * 30)
        >>> m = MarlFocal(select_passes=2, ensemble_passes=2, update_freq=30)
        >>> m = m.fit(b)  # doctest: +SKIP
        >>> 0.0 <= m.run_.frozen_accuracy <= 1.0  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        *,
        mode: str = "fixed",
        seed: int = 0,
        as_stored: bool = False,
        context: str | None = None,
        context_dim: int = 32,
        **settings: Any,
    ) -> None:
        self.mode = mode
        self.seed = seed
        self.as_stored = as_stored
        self.context = context
        self.context_dim = context_dim
        self.settings = settings

    def _features(self, bundle: Bundle, texts: Sequence[str] | None):
        if self.context is None:
            return None
        if self.context != "tfidf":
            raise InputError(f"context: use tfidf (or none), got {self.context!r}")
        if texts is None:
            raise InputError("texts: a contextual decider needs the query texts (--texts)")
        if len(texts) != bundle.n_samples:
            raise InputError(f"texts: need {bundle.n_samples} texts, got {len(texts)}")
        if bundle.split is None:
            raise InputError("split: MARL-Focal needs train and test rows (a bundle 'split')")
        train = np.flatnonzero(np.asarray(bundle.split) != "test")
        return text_features(texts, train, dim=self.context_dim, seed=self.seed)

    def fit(
        self,
        bundle: Bundle,
        *,
        texts: Sequence[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ):
        """Train on the bundle's train (and val) rows; the test rows give ``run_``.

        ``texts``: one query text per bundle row (only with ``context="tfidf"``).
        """
        self.config_ = MarlConfig.for_mode(self.mode, **self.settings)
        ta = task_arrays(bundle, as_stored=self.as_stored, context=self._features(bundle, texts))
        self.models_ = ta.models
        self.task_ = bundle.task
        self.n_classes_ = ta.n_classes
        self.run_ = fit_tasks(
            [ta], self.config_, seeds=[self.seed], progress=progress, segments=10
        )[0]
        return self

    def evaluate(
        self,
        bundle: Bundle,
        *,
        prices: Sequence[float] | None = None,
        texts: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Test accuracy (frozen and online), models consulted, cost, and per-query records.

        ``texts``: the query texts of a contextual model (the same bundle and texts as at
        training give the same features: they are refitted on the training rows).

        Returns:
            ``{"accuracy", "frozen": {...}, "online": {...}, "mean_consulted", "cost",
            "records"}``; ``accuracy`` is the frozen one (no test label read).
        """
        self._check_fitted()
        ta = task_arrays(bundle, as_stored=self.as_stored, context=self._features(bundle, texts))
        if ta.models != self.models_:
            raise InputError("models: the bundle's models differ from the trained pool")
        run = fit_tasks([ta], self.config_, seeds=[self.seed], params=[self.run_.params])[0]
        return {
            "accuracy": run.frozen_accuracy,
            "frozen": {"accuracy": run.frozen_accuracy, "steps": run.frozen_steps},
            "online": {"accuracy": run.online_accuracy, "steps": run.online_steps},
            "mean_consulted": run.mean_consulted,
            "fallback": run.fallback,
            "cost": None if prices is None else cost_metric(run.frozen_teams, prices),
            "records": inference_records(run, self.models_, bundle),
        }

    def _check_fitted(self) -> None:
        if not hasattr(self, "run_"):
            raise InputError("MarlFocal: not fitted; call fit first")

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``marl.json``, ``params.npz`` and ``curve.png`` (each atomically)."""
        self._check_fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        r = self.run_
        meta = {
            "method": "marl-focal",
            "mode": self.mode,
            "seed": self.seed,
            "as_stored": self.as_stored,
            "context": self.context,
            "context_dim": self.context_dim,
            "settings": self.settings,
            "config": self.config_.to_dict(),
            "models": list(self.models_),
            "task": self.task_,
            "n_classes": self.n_classes_,
            "select_curve": r.select_curve,
            "ensemble_curve": r.ensemble_curve,
            "test": {
                "frozen": {"accuracy": r.frozen_accuracy, "steps": r.frozen_steps},
                "online": {"accuracy": r.online_accuracy, "steps": r.online_steps},
                "mean_consulted": r.mean_consulted,
            },
            "validation": {
                "accuracy": r.val_accuracy,
                "best_single": r.val_best_single,
                "fallback": r.fallback,
                "fallback_model": None if r.fallback_model < 0 else self.models_[r.fallback_model],
                "router_frozen_accuracy": r.router_frozen_accuracy,
            },
            "versions": _versions(),
        }
        write_atomic(d / _META, lambda f: f.write(json.dumps(jsonable(meta), indent=2).encode()))
        flat = _flatten(r.params)

        def npz(f):
            buf = io.BytesIO()
            np.savez(buf, **flat)
            f.write(buf.getvalue())

        write_atomic(d / _PARAMS, npz)
        plot_curve(d / _CURVE, r.select_curve, r.ensemble_curve)
        return d


def plot_curve(path: Path, select: Sequence[float], ensemble: Sequence[float]) -> Path | None:
    """Training accuracy per pass of both phases as a PNG (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - optional dependency
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x1 = np.arange(1, len(select) + 1)
    x2 = np.arange(len(select) + 1, len(select) + len(ensemble) + 1)
    ax.plot(x1, select, marker="o", label="phase 1: decider (plurality)")
    ax.plot(x2, ensemble, marker="o", label="phase 2: aggregator")
    ax.set_xlabel("pass over the train rows")
    ax.set_ylabel("train accuracy (online)")
    ax.legend()
    fig.tight_layout()

    def write(f):
        fig.savefig(f, format="png", dpi=100)

    try:
        return write_atomic(path, write)
    finally:
        plt.close(fig)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("jax", "flax", "optax", "rlax", "distrax", "numpy", "scikit-learn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:  # pragma: no cover
            out[name] = "absent"
    return out


def load_marl(directory: str | Path) -> MarlFocal:
    """Load a model saved by :meth:`MarlFocal.save`.

    Raises:
        InputError: the folder is not a saved MARL-Focal model (one line).

    Example:
        >>> load_marl("/nonexistent")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ensembles.util.InputError: ...
    """
    d = Path(directory)
    if not (d / _META).is_file() or not (d / _PARAMS).is_file():
        raise InputError(f"{d}: not a saved MARL-Focal model (no {_META} / {_PARAMS})")
    try:
        meta = json.loads((d / _META).read_text())
        with np.load(d / _PARAMS, allow_pickle=False) as z:
            flat = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{d}: unreadable MARL-Focal model ({exc})") from None
    if meta.get("method") != "marl-focal":
        raise InputError(f"{d / _META}: not a MARL-Focal model")
    m = MarlFocal(
        mode=meta["mode"],
        seed=meta["seed"],
        as_stored=meta["as_stored"],
        context=meta.get("context"),
        context_dim=meta.get("context_dim", 32),
        **meta["settings"],
    )
    settings = dict(meta["settings"])
    saved_cfg = meta.get("config", {})
    if meta["mode"] == "fixed" and "aggregator" not in saved_cfg:
        # saved before the vote aggregator and the guard existed: rebuild that fixed mode
        settings = {
            "aggregator": "mlp",
            "val_fraction": 0.0,
            "guard": False,
            "lr_aggregator": saved_cfg.get("lr_aggregator", 1e-3),
        } | settings
        m.settings = settings
    m.config_ = MarlConfig.for_mode(meta["mode"], **settings)
    m.models_ = tuple(meta["models"])
    m.task_ = meta["task"]
    m.n_classes_ = meta["n_classes"]
    params = _unflatten(flat)
    val = meta.get("validation", {})
    m.run_ = TaskRun(
        task=meta["task"] or "task",
        seed=meta["seed"],
        select_curve=meta["select_curve"],
        ensemble_curve=meta["ensemble_curve"],
        online_accuracy=meta["test"]["online"]["accuracy"],
        online_steps=meta["test"]["online"]["steps"],
        frozen_accuracy=meta["test"]["frozen"]["accuracy"],
        frozen_steps=meta["test"]["frozen"]["steps"],
        frozen_teams=np.zeros((0, len(m.models_)), np.int8),
        frozen_answers=np.zeros(0, np.int32),
        frozen_correct=np.zeros(0, bool),
        frozen_rows=np.zeros(0, np.int64),
        params=params,
        val_accuracy=_nan(val.get("accuracy")),
        val_best_single=_nan(val.get("best_single")),
        fallback=bool(val.get("fallback", False)),
        fallback_model=int(np.asarray(params.get("guard", {}).get("model", -1))),
        router_frozen_accuracy=_nan(val.get("router_frozen_accuracy")),
    )
    return m


def _nan(x: Any) -> float:
    return float("nan") if x is None else float(x)
