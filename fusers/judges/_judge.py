"""Judges: logistic-regression heads on frozen decoder features, with their validation figures."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.util import InputError, jsonable, write_atomic

from ._data import KINDS, JudgeData, pair_text, qa_text
from ._features import hidden_features

__all__ = ["Judge", "fit_judge", "judge_texts", "score_rows", "validation_summary"]

_PAIRWISE = ("helpfulness",)


@dataclasses.dataclass(frozen=True)
class Judge:
    """A trained judge: a linear head on mean-pooled hidden states of one decoder layer.

    Pointwise judges (truthfulness, informativeness, harmlessness) give
    ``P(label = 1 | text) = sigmoid(w · z + b)`` with ``z`` the standardised features.
    The pairwise helpfulness judge gives ``P(output beats reference) = sigmoid(w · (z_out -
    z_ref))`` (no intercept, so swapping the two gives one minus the probability);
    ``w · z_out`` alone is a helpfulness reward.

    Attributes:
        kind: one of ``truthfulness``, ``informativeness``, ``helpfulness``, ``harmlessness``.
        model_id: the decoder the features come from (e.g. the GGUF file name).
        layer: blocks run before pooling.
        max_tokens: texts are cut to this many tokens.
        mean, scale: feature standardisation (``(hidden,)``).
        coef: head weights (``(hidden,)``).
        intercept: head bias (``0`` for pairwise).
        validation: figures on the held-apart rows (accuracy, AUC, sizes) and the split.

    Examples:
        >>> j = Judge("truthfulness", "m", 1, 8, np.zeros(2), np.ones(2), np.ones(2), 0.0, {})
        >>> j.pairwise
        False
    """

    kind: str
    model_id: str
    layer: int
    max_tokens: int
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    validation: dict[str, Any]

    @property
    def pairwise(self) -> bool:
        """True for the helpfulness preference judge (output against a reference)."""
        return self.kind in _PAIRWISE

    def logits(self, features: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
        """Head logits for raw features (and reference features for the pairwise judge)."""
        z = (np.asarray(features, np.float64) - self.mean) / self.scale
        if self.pairwise:
            if reference is None:
                return z @ self.coef
            z = z - (np.asarray(reference, np.float64) - self.mean) / self.scale
        return z @ self.coef + self.intercept

    def probabilities(
        self, features: np.ndarray, reference: np.ndarray | None = None
    ) -> np.ndarray:
        """``sigmoid(logits)``."""
        return 1.0 / (1.0 + np.exp(-self.logits(features, reference)))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the judge as one JSON file (atomically)."""
        doc = {
            "format": "focal-fusion judge v1",
            "kind": self.kind,
            "model_id": self.model_id,
            "layer": self.layer,
            "max_tokens": self.max_tokens,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": float(self.intercept),
            "validation": self.validation,
        }
        text = json.dumps(jsonable(doc), indent=1, allow_nan=False) + "\n"
        return write_atomic(path, lambda fh: fh.write(text.encode()))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Judge:
        """Read a judge written by :meth:`save`.

        Raises:
            InputError: missing file, not JSON, or not a judge file.
        """
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: no such judge file")
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{p}: not a JSON judge file ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != "focal-fusion judge v1":
            raise InputError(f"{p}: not a focal-fusion judge file")
        return cls(
            kind=doc["kind"],
            model_id=doc["model_id"],
            layer=int(doc["layer"]),
            max_tokens=int(doc["max_tokens"]),
            mean=np.asarray(doc["mean"], np.float64),
            scale=np.asarray(doc["scale"], np.float64),
            coef=np.asarray(doc["coef"], np.float64),
            intercept=float(doc["intercept"]),
            validation=doc["validation"],
        )


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y) > 0.5
    if y.all() or not y.any():
        return None
    return float(roc_auc_score(y, s))


def _unique_features(texts: Sequence[str], extract: Callable[[list[str]], np.ndarray]):
    uniq = sorted(set(texts))
    feats = extract(uniq)
    pos = {t: i for i, t in enumerate(uniq)}
    return feats[[pos[t] for t in texts]]


def fit_judge(
    data: JudgeData,
    model: Any,
    tokenizer: Any,
    *,
    model_id: str,
    layer: int = 12,
    max_tokens: int = 128,
    C: float = 0.05,
    cache_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Judge:
    """Train a judge on ``data``'s training rows and measure it once on its held-apart rows.

    Features: :func:`~fusers.judges.hidden_features` of the frozen decoder (layer ``layer``,
    texts cut to ``max_tokens`` tokens), standardised with training-row statistics. Head:
    scikit-learn's L2 logistic regression with a fixed ``C`` (not tuned on held-apart rows).
    Pairwise (helpfulness): fitted on feature differences output − reference, each pair used
    in both orders (labels ``y`` and ``1 − y``), ties as two half-weight rows.

    Held-apart figures in ``validation``: ``accuracy`` (threshold 0.5; ties left out) and
    ``auc``; for helpfulness also ``tie_rows``; for harmlessness also ``pair_accuracy`` (chosen
    scored above rejected) and ``refusal_recall``; plus the base rate of the labels.

    Args:
        data: from :func:`~fusers.judges.load_judge_data`.
        model: the frozen decoder.
        tokenizer: its tokenizer.
        model_id: names the decoder in the judge and the feature cache.
        layer: decoder blocks before pooling.
        max_tokens: truncation length.
        C: inverse L2 strength of the logistic regression.
        cache_dir: feature cache folder.
        progress: feature-extraction progress callback.

    Returns:
        The :class:`Judge`.
    """
    from sklearn.linear_model import LogisticRegression

    def extract(texts: list[str]) -> np.ndarray:
        return hidden_features(
            model, tokenizer, texts, layer=layer, max_tokens=max_tokens,
            cache_dir=cache_dir, model_id=model_id, progress=progress,
        )  # fmt: skip

    pairwise = data.kind in _PAIRWISE
    all_texts = list(data.train_a) + list(data.test_a)
    if pairwise:
        all_texts += list(data.train_b) + list(data.test_b)
    feats = _unique_features(all_texts, extract)
    n_tr, n_te = len(data.train_a), len(data.test_a)
    f_tr_a, f_te_a = feats[:n_tr], feats[n_tr : n_tr + n_te]
    mean = f_tr_a.mean(axis=0).astype(np.float64)
    scale = f_tr_a.std(axis=0).astype(np.float64) + 1e-6
    z = lambda f: (f.astype(np.float64) - mean) / scale  # noqa: E731
    y_tr, y_te = data.train_y, data.test_y
    if pairwise:
        f_tr_b = feats[n_tr + n_te : 2 * n_tr + n_te]
        f_te_b = feats[2 * n_tr + n_te :]
        d = z(f_tr_a) - z(f_tr_b)
        x = np.concatenate([d, -d])
        y = np.concatenate([y_tr, 1.0 - y_tr])
        tie = np.concatenate([y_tr == 0.5, y_tr == 0.5])
        xs = np.concatenate([x[~tie], x[tie], x[tie]])
        ys = np.concatenate([(y[~tie] > 0.5), np.ones(tie.sum(), bool), np.zeros(tie.sum(), bool)])
        ws = np.concatenate([np.ones((~tie).sum()), np.full(2 * tie.sum(), 0.5)])
        head = LogisticRegression(C=C, fit_intercept=False, max_iter=2000)
        head.fit(xs, ys.astype(int), sample_weight=ws)
        intercept = 0.0
    else:
        head = LogisticRegression(C=C, max_iter=2000)
        head.fit(z(f_tr_a), (y_tr > 0.5).astype(int))
        intercept = float(head.intercept_[0])
    judge = Judge(
        kind=data.kind,
        model_id=model_id,
        layer=layer,
        max_tokens=max_tokens,
        mean=mean,
        scale=scale,
        coef=head.coef_[0].astype(np.float64),
        intercept=intercept,
        validation={},
    )
    p_te = judge.probabilities(f_te_a, f_te_b if pairwise else None)
    decided = y_te != 0.5
    val: dict[str, Any] = {
        "accuracy": float(np.mean((p_te[decided] > 0.5) == (y_te[decided] > 0.5))),
        "auc": _auc(y_te[decided], p_te[decided]),
        "positive_rate": float(np.mean(y_te[decided] > 0.5)),
        "majority_accuracy": float(max(np.mean(y_te[decided] > 0.5), np.mean(y_te[decided] < 0.5))),
        "test_rows": int(n_te),
        "train_rows": int(n_tr),
        "head": f"logistic regression, C={C}",
        "features": f"mean-pooled layer {layer} of {model_id}, {max_tokens} tokens",
        "split": data.split,
    }
    if pairwise:
        val["tie_rows"] = int((~decided).sum())
        val["tie_mean_probability"] = float(p_te[~decided].mean()) if (~decided).any() else None
    if data.kind == "harmlessness" and data.test_groups is not None:
        g = data.test_groups
        wins = []
        for k in np.unique(g[g >= 0]):
            (i, j) = np.flatnonzero(g == k)[:2]
            wins.append(p_te[i] > p_te[j])  # rows are (chosen, rejected)
        val["pair_accuracy"] = float(np.mean(wins)) if wins else None
        val["pair_auc_rows"] = _auc(y_te[g >= 0], p_te[g >= 0])
        val["refusal_recall"] = float(np.mean(p_te[g < 0] > 0.5)) if (g < 0).any() else None
    return dataclasses.replace(judge, validation=val)


def judge_texts(kind: str, row: dict[str, Any]) -> tuple[str, str | None]:
    """The text(s) a judge reads from an input row.

    ``prompt`` (or ``question`` / ``instruction``) and ``output`` (or ``answer``); the
    helpfulness judge also needs ``reference``.

    Examples:
        >>> judge_texts("truthfulness", {"question": "Why?", "answer": "Because."})
        ('Q: Why?\\nA: Because.', None)
    """
    if kind not in KINDS:
        raise InputError(f"kind: unknown judge {kind!r}")
    prompt = next((row[k] for k in ("prompt", "question", "instruction") if k in row), None)
    output = next((row[k] for k in ("output", "answer") if k in row), None)
    if not isinstance(prompt, str) or not isinstance(output, str):
        raise InputError("row: needs 'prompt' (or 'question'/'instruction') and 'output' text")
    if kind in ("truthfulness", "informativeness"):
        return qa_text(prompt, output), None
    ref = row.get("reference")
    if kind in _PAIRWISE:
        return pair_text(prompt, output), (pair_text(prompt, ref) if isinstance(ref, str) else None)
    return pair_text(prompt, output), None


def validation_summary(judge: Judge) -> dict[str, Any]:
    """The held-apart figures every score carries (accuracy, AUC, rows, how they were held apart).

    Examples:
        >>> j = Judge("truthfulness", "m", 1, 8, np.zeros(2), np.ones(2), np.ones(2), 0.0,
        ...           {"accuracy": 0.8, "test_rows": 10, "split": {"disjoint": "question"}})
        >>> validation_summary(j)["held_apart"]
        'question'
    """
    v = judge.validation
    out = {k: v.get(k) for k in ("accuracy", "auc", "majority_accuracy", "test_rows")}
    out["held_apart"] = (v.get("split") or {}).get("disjoint")
    for k in ("pair_accuracy", "refusal_recall"):
        if k in v:
            out[k] = v[k]
    return out


def score_rows(
    judge: Judge,
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Score answers with ``judge``; each result carries the judge's held-apart figures.

    Args:
        judge: a trained judge.
        model: the decoder its features come from (the same ``model_id``).
        tokenizer: the decoder's tokenizer.
        rows: dicts with ``prompt`` (or ``question``/``instruction``) and ``output`` (or
            ``answer``); helpfulness rows may add ``reference`` (without it the score is the
            reward ``w · z`` instead of a probability).
        cache_dir: feature cache folder.
        progress: feature-extraction progress callback.

    Returns:
        One dict per row: ``judge`` (kind), ``score`` (probability of the good label, or the
        helpfulness reward), ``score_type`` and ``judge_validation``
        (:func:`validation_summary`).
    """
    pairs = [judge_texts(judge.kind, r) for r in rows]
    texts = [a for a, _ in pairs]
    refs = [b for _, b in pairs]
    if judge.pairwise and any(r is None for r in refs) and not all(r is None for r in refs):
        raise InputError("rows: give 'reference' on every row or on none (helpfulness judge)")
    all_texts = texts + [r for r in refs if r is not None]
    feats = hidden_features(
        model, tokenizer, all_texts, layer=judge.layer, max_tokens=judge.max_tokens,
        cache_dir=cache_dir, model_id=judge.model_id, progress=progress,
    )  # fmt: skip
    f_a = feats[: len(texts)]
    if judge.pairwise and refs and refs[0] is not None:
        scores, kind = judge.probabilities(f_a, feats[len(texts) :]), "p_output_beats_reference"
    elif judge.pairwise:
        scores, kind = judge.logits(f_a), "reward"
    else:
        scores, kind = judge.probabilities(f_a), f"p_{judge.kind}"
    summary = validation_summary(judge)
    return [
        {"judge": judge.kind, "score": float(s), "score_type": kind, "judge_validation": summary}
        for s in scores
    ]
