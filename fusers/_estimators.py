"""Fuser estimators: LLM-TOPLA-Weighted, FusionShot's MLP, and stacking (docs/fusers.md).

All follow the scikit-learn conventions: the constructor stores its keyword
arguments only; :meth:`fit` validates, learns and returns ``self``; learned state ends in ``_``;
``predict``, ``predict_proba`` and ``score`` take a bundle holding (at least) the team's models.
Flax, optax and orbax are imported only when a network is built, trained, saved or loaded.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ensembles import DEFAULT_VAL_FRACTION, Bundle, BundleError, SplitInfo, ensure_splits
from ensembles.util import InputError, write_json_atomic

from ._features import VALID_CLASSES, choice_scores, flatten_members, valid_classes
from ._util import check_int, package_versions, read_json

__all__ = [
    "CONFIG_FILE",
    "FUSERS",
    "FusionShotFuser",
    "MLPFuser",
    "StackingFuser",
    "ToplaFuser",
    "load_fuser",
]

#: Metadata file of a saved fuser (written atomically, last).
CONFIG_FILE = "fuser.json"
#: Folder of a saved fuser's parameters (a one-step checkpoint, see ``fusers._checkpoint``).
PARAMS_DIR = "params"
#: Format name and version recorded in ``fuser.json`` (version 2: parameters in a numbered
#: checkpoint step).
FORMAT = "focal-fusion.fuser"
FORMAT_VERSION = 2

ProgressFn = Callable[[dict[str, Any]], None]


def _team_names(bundle: Bundle, team: Any) -> tuple[str, ...]:
    if team is None:
        return tuple(bundle.models)
    if isinstance(team, str):
        raise InputError(f"team: expected a sequence of model names, got the string {team!r}")
    items = list(team)
    if items and all(isinstance(t, int | np.integer) and not isinstance(t, bool) for t in items):
        idx = [int(t) for t in items]
        if min(idx) < 0 or max(idx) >= bundle.n_models:
            raise InputError(f"team: model index out of range [0, {bundle.n_models}): {idx}")
        items = [bundle.models[i] for i in idx]
    names = tuple(str(t) for t in items)
    if len(set(names)) != len(names):
        raise InputError(f"team: a model is listed more than once in {list(names)}")
    if len(names) < 2:
        raise InputError(f"team: a fuser needs at least 2 members, got {len(names)}")
    bundle.model_indices(names)  # BundleError for an unknown name
    return names


class _Fuser:
    """Shared machinery: parameters, team inputs, predictions, save / load."""

    kind: ClassVar[str] = ""

    # ------------------------------------------------------------------ sklearn-style params
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's keyword arguments (scikit-learn semantics)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> _Fuser:
        """Set constructor arguments; returns ``self``."""
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise InputError(f"{key}: unknown parameter of {type(self).__name__}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ inputs
    def _check_common(self) -> None:
        if self.valid_classes not in VALID_CLASSES:  # type: ignore[attr-defined]
            raise InputError(
                f"valid_classes: expected one of {', '.join(VALID_CLASSES)}, "
                f"got {self.valid_classes!r}"  # type: ignore[attr-defined]
            )
        if self.scores not in ("auto", "probs", "onehot"):  # type: ignore[attr-defined]
            raise InputError(
                f"scores: expected 'auto', 'probs' or 'onehot', got {self.scores!r}"  # type: ignore[attr-defined]
            )
        check_int("seed", self.seed)  # type: ignore[attr-defined]
        vf = self.val_fraction  # type: ignore[attr-defined]
        if isinstance(vf, bool) or not isinstance(vf, int | float) or not 0 < vf < 1:
            raise InputError(f"val_fraction: must lie in (0, 1), got {vf!r}")

    def _inputs(self, team_bundle: Bundle, scores_mode: str) -> tuple[np.ndarray, np.ndarray]:
        s = choice_scores(team_bundle, scores=scores_mode)
        return flatten_members(s), valid_classes(s, self.valid_classes)  # type: ignore[attr-defined]

    def _split_bundle(self, bundle: Bundle) -> tuple[Bundle, SplitInfo]:
        return ensure_splits(bundle, seed=self.seed, val_fraction=self.val_fraction)  # type: ignore[attr-defined]

    def _rows(self, bundle: Bundle, split: str | None) -> Bundle:
        if not isinstance(bundle, Bundle):
            raise TypeError(f"bundle: expected an ensembles.Bundle, got {type(bundle).__name__}")
        if split is None:
            return bundle
        return self._split_bundle(bundle)[0].select_split(split)

    def _check_fitted(self) -> None:
        if not hasattr(self, "team_"):
            raise InputError(f"{type(self).__name__} is not fitted yet; call fit() first")

    def _team_inputs(self, bundle: Bundle, split: str | None) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        rows = self._rows(bundle, split)
        if rows.n_classes != self.n_classes_:
            raise BundleError(
                f"n_classes: the bundle has {rows.n_classes} classes, the fuser was trained on "
                f"{self.n_classes_}"
            )
        tb = rows.select_models(list(self.team_))
        x, mask = self._inputs(tb, self.scores_mode_)
        if x.shape[1] != self.n_features_in_:
            raise BundleError(
                f"probs: the team's inputs have width {x.shape[1]}, the fuser expects "
                f"{self.n_features_in_} (scores {self.scores_mode_!r})"
            )
        return x, mask

    def _fit_inputs(self, bundle: Bundle, team: Any) -> dict[str, Any]:
        self._check_common()
        if not isinstance(bundle, Bundle):
            raise TypeError(f"bundle: expected an ensembles.Bundle, got {type(bundle).__name__}")
        b, info = self._split_bundle(bundle)
        names = _team_names(b, team)
        tb = b.select_models(list(names))
        scores_mode = self.scores  # type: ignore[attr-defined]
        if scores_mode == "auto":
            scores_mode = "probs" if tb.probs is not None else "onehot"
        train, val = tb.select_split("train"), tb.select_split("val")
        x_tr, m_tr = self._inputs(train, scores_mode)
        x_va, m_va = self._inputs(val, scores_mode)
        return {
            "team": names,
            "info": info,
            "scores_mode": scores_mode,
            "n_classes": b.n_classes,
            "train": (x_tr, train.labels, m_tr),
            "val": (x_va, val.labels, m_va),
        }

    # ------------------------------------------------------------------ predictions
    def _raw_scores(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def predict_proba(self, bundle: Bundle, *, split: str | None = None) -> np.ndarray:
        """Fused class probabilities, shape ``(n_samples, n_classes)``.

        Invalid classes get probability 0; a row without any valid class is all zero.

        Args:
            bundle: a bundle holding the team's models (same classes as in training).
            split: only the rows of this split (``"train"``, ``"val"``, ``"test"``), made as in
                :meth:`fit` when the bundle has no split of its own.
        """
        x, mask = self._team_inputs(bundle, split)
        s = self._raw_scores(x, mask)
        if getattr(self, "faithful", False):
            p = np.where(np.isfinite(s), s, 0.0)
        else:
            top = np.max(np.where(np.isfinite(s), s, -np.inf), axis=1, keepdims=True)
            top = np.where(np.isfinite(top), top, 0.0)
            p = np.where(np.isfinite(s), np.exp(s - top), 0.0)
        total = p.sum(axis=1, keepdims=True)
        return np.divide(p, total, out=np.zeros_like(p), where=total > 0)

    def predict(self, bundle: Bundle, *, split: str | None = None) -> np.ndarray:
        """Fused class per sample, shape ``(n_samples,)``; ``-1`` where no class is valid.

        Args:
            bundle: a bundle holding the team's models.
            split: only the rows of this split (see :meth:`predict_proba`).
        """
        x, mask = self._team_inputs(bundle, split)
        s = self._raw_scores(x, mask)
        pred = np.argmax(np.where(np.isnan(s), -np.inf, s), axis=1)
        if getattr(self, "faithful", False):
            return pred.astype(np.int64)
        return np.where(mask.any(axis=1), pred, -1).astype(np.int64)

    def score(self, bundle: Bundle, *, split: str | None = None) -> float:
        """Sample-level accuracy of :meth:`predict` (``-1`` counts as wrong).

        Args:
            bundle: a bundle holding the team's models.
            split: only the rows of this split (see :meth:`predict_proba`).
        """
        rows = self._rows(bundle, split)
        return float((self.predict(rows) == rows.labels).mean())

    # ------------------------------------------------------------------ save / load
    def _arrays(self) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def _set_arrays(self, arrays: dict[str, np.ndarray], where: str) -> None:  # pragma: no cover
        raise NotImplementedError

    def _meta(self) -> dict[str, Any]:
        return {}

    def _saved_params(self) -> dict[str, Any]:
        """The constructor arguments as JSON (an optax optimiser is not serialisable: ``None``)."""
        params = self.get_params()
        if "optimizer" in params:
            params["optimizer"] = None
        return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}

    def save(self, path: str | Path, *, metadata: dict[str, Any] | None = None) -> Path:
        """Write the fitted fuser to a folder: orbax ``params/`` then ``fuser.json`` (atomic).

        The JSON records the class, constructor arguments, team, classes, input width, split
        sizes and source, seed, training history, package versions and the SHA-256 of the
        parameters. Loading with :func:`load_fuser` gives identical predictions.

        Args:
            path: the folder (created if needed; an existing fuser there is replaced).
            metadata: extra JSON-able facts to record (e.g. the bundle file and its hash).

        Returns:
            The folder.
        """
        from ._checkpoint import save_arrays

        self._check_fitted()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        digest = save_arrays(folder / PARAMS_DIR, self._arrays())
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "kind": self.kind,
            "params": self._saved_params(),
            "optimizer": "default" if getattr(self, "optimizer", None) is None else "custom",
            "team": list(self.team_),
            "n_classes": self.n_classes_,
            "n_features_in": self.n_features_in_,
            "scores_mode": self.scores_mode_,
            "seed": self.seed,  # type: ignore[attr-defined]
            "splits": self.splits_,
            "params_sha256": digest,
            "fit_seconds": getattr(self, "fit_seconds_", None),
            "versions": package_versions(),
            "metadata": metadata or {},
            **self._meta(),
        }  # fmt: skip
        write_json_atomic(folder / CONFIG_FILE, doc)
        return folder

    @classmethod
    def load(cls, path: str | Path) -> _Fuser:
        """Load a fuser written by :meth:`save` (see :func:`load_fuser`)."""
        fuser = load_fuser(path)
        if not isinstance(fuser, cls):
            raise InputError(f"{path}: holds a {type(fuser).__name__}, not a {cls.__name__}")
        return fuser


class MLPFuser(_Fuser):
    """Learn-to-combine MLP over the members' class scores (see docs/fusers.md).

    Inputs are the team members' per-class scores concatenated model-major (``probs``, or
    one-hot ``preds`` for bundles without ``probs``); the output is one logit per class. The
    network is Dense(→100) → sigmoid → Dense(→100) → sigmoid → Dense(→C), Xavier-uniform
    weights, bias 0.01, trained with Adam on a softmax cross-entropy over the *train* rows, the
    best epoch chosen on the *val* rows (never trained on) and restored as a real copy.
    Classes outside ``valid_classes`` get a logit of ``-inf`` in training and prediction.

    ``faithful=True`` reproduces the reference network instead: a sigmoid and a softmax on the
    output, trained with a cross-entropy that treats that softmax as logits (a double softmax),
    and no masking.

    Args:
        hidden: hidden layer widths.
        epochs: maximum epochs (reference 300).
        batch_size: rows per Adam step (reference 64).
        learning_rate: Adam learning rate (reference 1e-3).
        patience: early-stopping patience in epochs on val accuracy; ``None``: never stop.
        restore: ``"best"`` (fixed) or ``"last"`` (faithful: the reference's restore was a
            no-op).
        faithful: the reference's head and loss (see above).
        scores: ``"auto"``, ``"probs"`` or ``"onehot"`` (see :func:`fusers.choice_scores`).
        valid_classes: ``"all"`` or ``"support"`` (see :func:`fusers.valid_classes`; use
            ``"support"`` for answer-frequency bundles of :func:`fusers.answer_space`).
        val_fraction: fraction of train rows moved to val when the bundle has no val rows
            (:func:`ensembles.ensure_splits`).
        seed: seed of the weights, the shuffles and any split made here.
        checkpoint_every: epochs between training checkpoints when ``fit`` gets a folder.
        optimizer: an ``optax.GradientTransformation`` to train with; ``None`` (default) is
            Adam at ``learning_rate``. A saved fuser records only whether it was the default
            (a loaded fuser is ready to predict; refitting it uses Adam unless given one).

    Attributes:
        team_: member names, in input order.
        n_classes_: number of classes.
        n_features_in_: input width (members × classes).
        scores_mode_: ``"probs"`` or ``"onehot"``, as resolved from ``scores``.
        model_: the trained :class:`fusers.MLP`.
        params_: the trained parameters, ``{name: NumPy array}``.
        history_: the :class:`fusers.History` as a dict.
        best_epoch_: the restored epoch (1-based).
        splits_: how the train / val / test rows were obtained, and their sizes.
        fit_seconds_: wall-clock time of :meth:`fit`.

    Example:
        >>> import numpy as np, ensembles
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 300)
        >>> preds = np.stack([y, rng.integers(0, 3, 300), rng.integers(0, 3, 300)])
        >>> b = ensembles.Bundle.create(models=["oracle", "r1", "r2"], labels=y, preds=preds)
        >>> b = ensembles.with_random_split(b, seed=0)
        >>> f = MLPFuser(epochs=40, seed=0).fit(b)
        >>> f.score(b, split="test")
        1.0
    """

    kind = "mlp"

    def __init__(
        self,
        *,
        hidden: Sequence[int] = (100, 100),
        epochs: int = 300,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        patience: int | None = None,
        restore: str = "best",
        faithful: bool = False,
        scores: str = "auto",
        valid_classes: str = "all",
        val_fraction: float = DEFAULT_VAL_FRACTION,
        seed: int = 0,
        checkpoint_every: int = 10,
        optimizer: Any = None,
    ) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.restore = restore
        self.faithful = faithful
        self.scores = scores
        self.valid_classes = valid_classes
        self.val_fraction = val_fraction
        self.seed = seed
        self.checkpoint_every = checkpoint_every
        self.optimizer = optimizer

    def _config(self):
        from ._train import TrainConfig

        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            patience=self.patience,
            restore=self.restore,
            seed=self.seed,
            checkpoint_every=self.checkpoint_every,
        ).validated()

    def _build(self, n_in: int, n_out: int):
        from flax import nnx

        from ._mlp import MLP

        hidden = tuple(int(h) for h in self.hidden)
        if not hidden or min(hidden) < 1:
            raise InputError(f"hidden: expected positive layer widths, got {self.hidden!r}")
        return MLP(n_in, n_out, hidden=hidden, faithful=bool(self.faithful),
                   rngs=nnx.Rngs(params=self.seed))  # fmt: skip

    def fit(
        self,
        bundle: Bundle,
        *,
        team: Sequence[str] | None = None,
        checkpoint_dir: str | Path | None = None,
        callback: ProgressFn | None = None,
    ) -> MLPFuser:
        """Train on the team's ``train`` rows, choosing the epoch on its ``val`` rows.

        Args:
            bundle: the cached outputs. Its split is used when it has train and val rows;
                otherwise one is made with :func:`ensembles.ensure_splits` (seeded by ``seed``).
            team: member names (or indices); default: every model of the bundle.
            checkpoint_dir: folder for resumable training checkpoints; calling ``fit`` again
                with the same folder and settings resumes where the last call stopped.
            callback: called after each epoch with a dict (epoch, loss, val accuracy, …).

        Returns:
            ``self``.

        Raises:
            ValueError: bad settings, a bad team, or an incompatible checkpoint.
            BundleError: unknown model names, or a bundle without train rows.
        """
        from flax import nnx

        from ._train import ClassifierData, fit_classifier

        start = time.perf_counter()
        config = self._config()
        prep = self._fit_inputs(bundle, team)
        data = ClassifierData.create(*prep["train"], *prep["val"])
        model = self._build(data.x_train.shape[1], prep["n_classes"])
        extra = {
            "class": type(self).__name__,
            "team": list(prep["team"]),
            "hidden": [int(h) for h in self.hidden],
            "faithful": bool(self.faithful),
            "valid_classes": self.valid_classes,
            "scores": prep["scores_mode"],
        }
        history = fit_classifier(
            model, data, config, optimizer=self.optimizer, checkpoint_dir=checkpoint_dir,
            callback=callback, fingerprint_extra=extra,
        )  # fmt: skip
        from ._checkpoint import tree_to_arrays

        self.team_ = prep["team"]
        self.n_classes_ = int(prep["n_classes"])
        self.n_features_in_ = int(data.x_train.shape[1])
        self.scores_mode_ = prep["scores_mode"]
        self.model_ = model
        self.params_ = tree_to_arrays(nnx.state(model, nnx.Param))
        self.history_ = history.to_dict()
        self.best_epoch_ = history.best_epoch
        self.splits_ = prep["info"].to_dict()
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _raw_scores(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        from ._train import predict_scores

        return predict_scores(self.model_, x, mask)

    def _arrays(self) -> dict[str, np.ndarray]:
        from flax import nnx

        from ._checkpoint import tree_to_arrays

        return tree_to_arrays(nnx.state(self.model_, nnx.Param))

    def _set_arrays(self, arrays: dict[str, np.ndarray], where: str) -> None:
        import jax.numpy as jnp
        from flax import nnx

        from ._checkpoint import arrays_to_tree, tree_to_arrays

        model = self._build(self.n_features_in_, self.n_classes_)
        state = nnx.state(model, nnx.Param)
        restored = arrays_to_tree(state, arrays, where=where)
        nnx.update(model, _map(jnp.asarray, restored))
        self.model_ = model
        self.params_ = tree_to_arrays(nnx.state(model, nnx.Param))

    def _meta(self) -> dict[str, Any]:
        return {"history": self.history_, "best_epoch": self.best_epoch_}


def _map(fn: Callable[[Any], Any], tree: Any) -> Any:
    import jax

    return jax.tree.map(fn, tree)


class ToplaFuser(MLPFuser):
    """LLM-TOPLA-Weighted: the :class:`MLPFuser` network over per-answer or per-choice features.

    The features are (a) answer-frequency vectors over a shared, padded
    solution space (build the bundle with :func:`fusers.answer_space` and
    :meth:`fusers.AnswerSpace.to_bundle`, and use ``valid_classes="support"`` so padded slots
    and "not in the space" are never predicted); (b)/(d) per-choice probabilities or scores
    from ``bundle.probs``, or one-hot ``preds`` when the bundle has only predictions. The
    reference stops after 200 epochs without improvement, the default ``patience`` here.
    Every argument is that of :class:`MLPFuser`.

    References:
        Tekin, Ilhan, Huang, Hu, Yahn, Liu. *LLM-TOPLA: Efficient LLM Ensemble by Maximising
        Diversity*. Findings of EMNLP 2024 (arXiv 2410.03953); code: git-disl/llm-topla.

    Example:
        >>> import numpy as np, ensembles
        >>> from fusers import answer_space
        >>> s = answer_space([[[3, 3]] * 40, [[3, 4]] * 40], gold=[4] * 40, space_size=4)
        >>> b = ensembles.with_random_split(s.to_bundle(["a", "b"]), seed=0)
        >>> f = ToplaFuser(epochs=5, valid_classes="support").fit(b)
        >>> set(f.predict(b).tolist()) <= {0, 1}  # padded slots are never predicted
        True
    """

    kind = "topla"

    def __init__(
        self,
        *,
        hidden: Sequence[int] = (100, 100),
        epochs: int = 300,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        patience: int | None = 200,
        restore: str = "best",
        faithful: bool = False,
        scores: str = "auto",
        valid_classes: str = "all",
        val_fraction: float = DEFAULT_VAL_FRACTION,
        seed: int = 0,
        checkpoint_every: int = 10,
        optimizer: Any = None,
    ) -> None:
        super().__init__(
            hidden=hidden, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
            patience=patience, restore=restore, faithful=faithful, scores=scores,
            valid_classes=valid_classes, val_fraction=val_fraction, seed=seed,
            checkpoint_every=checkpoint_every, optimizer=optimizer,
        )  # fmt: skip


class FusionShotFuser(MLPFuser):
    """FusionShot's learn-to-combine MLP over the members' raw class scores.

    The same network as :class:`ToplaFuser`; FusionShot keeps the best val epoch but never
    stops early (``patience=None``). Every argument is that of :class:`MLPFuser`.

    References:
        Tekin, Ilhan, Huang, Hu, Yahn, Liu. *Robust Few-Shot Ensemble Learning with Focal
        Diversity-Based Pruning* (FusionShot), arXiv 2404.04434; code: sftekin/fusionshot.

    Example:
        >>> import numpy as np, ensembles
        >>> rng = np.random.default_rng(1)
        >>> y = rng.integers(0, 5, 200)
        >>> p = rng.random((3, 200, 5)); p[0, np.arange(200), y] += 1.0
        >>> b = ensembles.with_random_split(
        ...     ensembles.Bundle.create(models=["a", "b", "c"], labels=y, probs=p), seed=0)
        >>> FusionShotFuser(epochs=100).fit(b).score(b, split="test") > 0.9
        True
    """

    kind = "fusionshot"

    def __init__(
        self,
        *,
        hidden: Sequence[int] = (100, 100),
        epochs: int = 300,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        patience: int | None = None,
        restore: str = "best",
        faithful: bool = False,
        scores: str = "auto",
        valid_classes: str = "all",
        val_fraction: float = DEFAULT_VAL_FRACTION,
        seed: int = 0,
        checkpoint_every: int = 10,
        optimizer: Any = None,
    ) -> None:
        super().__init__(
            hidden=hidden, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
            patience=patience, restore=restore, faithful=faithful, scores=scores,
            valid_classes=valid_classes, val_fraction=val_fraction, seed=seed,
            checkpoint_every=checkpoint_every, optimizer=optimizer,
        )  # fmt: skip


class StackingFuser(_Fuser):
    """Stacking baseline: scikit-learn logistic regression on the members' class scores.

    ``LogisticRegression(C=C, max_iter=max_iter)`` (multinomial, lbfgs) is fitted on the
    team's concatenated scores (the same inputs as the MLP fusers) of the *train* rows whose
    label is a valid class; predictions are computed from the stored coefficients, so they
    equal scikit-learn's ``predict`` and the fuser saves and loads without pickle.

    Args:
        C: inverse regularisation strength.
        max_iter: lbfgs iterations.
        scores: ``"auto"``, ``"probs"`` or ``"onehot"``.
        valid_classes: ``"all"`` or ``"support"``.
        val_fraction: as in :class:`MLPFuser` (the val rows are not used for fitting).
        seed: seed of any split made here.

    Attributes:
        team_, n_classes_, n_features_in_, scores_mode_, splits_, fit_seconds_: as in
            :class:`MLPFuser`.
        coef_, intercept_, classes_: the fitted logistic regression.
        params_: ``{"coef", "intercept", "classes"}``.

    Example:
        >>> import numpy as np, ensembles
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 200)
        >>> b = ensembles.with_random_split(ensembles.Bundle.create(
        ...     models=["a", "b"], labels=y, preds=np.stack([y, rng.integers(0, 3, 200)])), seed=0)
        >>> StackingFuser().fit(b).score(b, split="test")
        1.0
    """

    kind = "stacking"

    def __init__(
        self,
        *,
        C: float = 1.0,
        max_iter: int = 1000,
        scores: str = "auto",
        valid_classes: str = "all",
        val_fraction: float = DEFAULT_VAL_FRACTION,
        seed: int = 0,
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.scores = scores
        self.valid_classes = valid_classes
        self.val_fraction = val_fraction
        self.seed = seed

    def fit(self, bundle: Bundle, *, team: Sequence[str] | None = None, **_: Any) -> StackingFuser:
        """Fit the logistic regression on the team's ``train`` rows; returns ``self``.

        Args:
            bundle: the cached outputs (split as in :meth:`MLPFuser.fit`).
            team: member names (or indices); default: every model.

        Raises:
            ValueError: bad settings, or fewer than two classes among the train labels.
        """
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        start = time.perf_counter()
        if (
            isinstance(self.C, bool)
            or not isinstance(self.C, int | float)
            or not (math.isfinite(self.C) and self.C > 0)
        ):
            raise InputError(f"C: expected a positive number, got {self.C!r}")
        check_int("max_iter", self.max_iter, minimum=1)
        prep = self._fit_inputs(bundle, team)
        x, y, mask = prep["train"]
        inside = (y >= 0) & (y < mask.shape[1])
        keep = inside & mask[np.arange(len(y)), np.clip(y, 0, mask.shape[1] - 1)]
        if len(np.unique(y[keep])) < 2:
            raise InputError("stacking: the train rows hold fewer than two classes")
        lr = LogisticRegression(C=float(self.C), max_iter=int(self.max_iter))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            lr.fit(np.asarray(x[keep], np.float64), y[keep])
        self.team_ = prep["team"]
        self.n_classes_ = int(prep["n_classes"])
        self.n_features_in_ = int(x.shape[1])
        self.scores_mode_ = prep["scores_mode"]
        self.coef_ = np.asarray(lr.coef_, np.float64)
        self.intercept_ = np.asarray(lr.intercept_, np.float64)
        self.classes_ = np.asarray(lr.classes_, np.int64)
        self.params_ = self._arrays()
        self.splits_ = prep["info"].to_dict()
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _raw_scores(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        z = np.asarray(x, np.float64) @ self.coef_.T + self.intercept_
        full = np.full((x.shape[0], self.n_classes_), -np.inf)
        if len(self.classes_) == 2 and z.shape[1] == 1:
            full[:, self.classes_[0]] = 0.0
            full[:, self.classes_[1]] = z[:, 0]
        else:
            full[:, self.classes_] = z
        return np.where(mask, full, -np.inf)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef_, "intercept": self.intercept_, "classes": self.classes_}

    def _set_arrays(self, arrays: dict[str, np.ndarray], where: str) -> None:
        if sorted(arrays) != ["classes", "coef", "intercept"]:
            raise InputError(f"{where}: checkpoint does not hold a stacking model")
        self.coef_ = np.asarray(arrays["coef"], np.float64)
        self.intercept_ = np.asarray(arrays["intercept"], np.float64)
        self.classes_ = np.asarray(arrays["classes"], np.int64)
        self.params_ = self._arrays()


#: Fuser classes by CLI / registry name.
FUSERS: dict[str, type[_Fuser]] = {
    "topla": ToplaFuser,
    "fusionshot": FusionShotFuser,
    "stacking": StackingFuser,
    "mlp": MLPFuser,
}


def load_fuser(path: str | Path) -> MLPFuser | StackingFuser:
    """Load a fuser saved with ``save(path)``; its predictions equal the saved one's.

    Args:
        path: the folder written by :meth:`MLPFuser.save` / :meth:`StackingFuser.save`.

    Returns:
        The fitted fuser (its class is recorded in ``fuser.json``).

    Raises:
        FileNotFoundError: no folder, or no ``fuser.json`` / ``params`` in it.
        ValueError: a corrupted ``fuser.json`` or parameter checkpoint (one line).

    Example:
        >>> load_fuser("/nonexistent")
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent: no saved fuser here (fuser.json not found)
    """
    from ._checkpoint import load_arrays

    folder = Path(path)
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{folder}: no saved fuser here ({CONFIG_FILE} not found)")
    doc = read_json(folder / CONFIG_FILE, what="fuser config")
    where = str(folder / CONFIG_FILE)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"{where}: not a focal-fusion fuser file (format key missing or wrong)")
    if doc.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{where}: unsupported format_version {doc.get('format_version')!r}")
    classes = {c.__name__: c for c in FUSERS.values()}
    cls = classes.get(doc.get("class"))  # type: ignore[arg-type]
    if cls is None:
        raise InputError(f"{where}: unknown fuser class {doc.get('class')!r}")
    try:
        params = dict(doc["params"])
        if "hidden" in params:
            params["hidden"] = tuple(params["hidden"])
        fuser = cls(**params)
        fuser.team_ = tuple(str(m) for m in doc["team"])
        fuser.n_classes_ = int(doc["n_classes"])
        fuser.n_features_in_ = int(doc["n_features_in"])
        fuser.scores_mode_ = str(doc["scores_mode"])
        fuser.splits_ = doc["splits"]
        fuser.fit_seconds_ = doc.get("fit_seconds")
        fuser.metadata_ = dict(doc.get("metadata") or {})
        digest = str(doc["params_sha256"])
        if isinstance(fuser, MLPFuser):
            fuser.history_ = doc["history"]
            fuser.best_epoch_ = int(doc["best_epoch"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"{where}: fuser config is corrupted ({' '.join(str(exc).split())})"
        ) from None
    arrays = load_arrays(folder / PARAMS_DIR, digest=digest)
    fuser._set_arrays(arrays, str(folder / PARAMS_DIR))
    return fuser  # type: ignore[return-value]
