"""Judges: logistic heads on frozen decoder features, chosen by grouped cross-validation."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.util import InputError, jsonable, write_atomic

from ._data import KINDS, JudgeData
from ._features import REPLY_STATS, ChatFeatures, chat_features

__all__ = [
    "FeatureSpec",
    "Judge",
    "fit_judge",
    "judge_texts",
    "score_rows",
    "select_features",
    "validation_summary",
]

_PAIRWISE = ("helpfulness",)
_POOLINGS = ("mean", "last", "mean+last")
_RIDGE = (0.3, 3.0, 30.0)  # stage-1 ridge strengths, relative to the kernel's mean diagonal
_PCA = (None, 64, 16, 4)  # pairwise head: principal components of the hidden-state columns
#: Below this many decided training pairs the helpfulness judge skips selection and uses
#: :data:`SMALL_HEAD` on the deepest block's mean over the longest cut, log length and text
#: statistics (grouped CV at that size is too noisy to choose among dozens of candidates).
SMALL_PAIRS = 400
#: The fixed low-capacity helpfulness head used below :data:`SMALL_PAIRS` pairs: Bradley-Terry
#: on 16 principal components of the hidden states plus log length and text statistics
#: (chosen on training rows only, by ``python -m bench.help_small``).
SMALL_HEAD = {"C": 1.0, "pca": 16, "intercept": False}
_FORMAT = "focal-fusion judge v3"
_READS = ("focal-fusion judge v2", _FORMAT)  # a v2 file is a v3 file without text statistics


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Which decoder features a judge reads.

    Attributes:
        blocks: decoder blocks whose (final-norm) outputs are used, concatenated.
        pooling: ``mean`` over the reply's tokens, the ``last`` token at the cut, or both.
        cut: reply tokens read (end-of-turn token included).
        reply_tokens: the reply truncation of the token layout (the largest cut extracted).
        prompt_tokens: prompt truncation.
        length: append ``log(1 + reply tokens)`` (full reply length) as one more feature.
        text: append the reply's text statistics (:func:`~fusers.judges.reply_stats`: words,
            lines, list items, code fence, finished ending, repeated lines).

    Examples:
        >>> FeatureSpec((12,), "mean", 96, 192, 96, False).describe()
        'block 12, mean of the first 96 reply tokens (prompt cut to 96 tokens)'
    """

    blocks: tuple[int, ...]
    pooling: str
    cut: int
    reply_tokens: int
    prompt_tokens: int
    length: bool = False
    text: bool = False

    def describe(self) -> str:
        """One line: blocks, pooling, truncation."""
        pool = {"mean": "mean of", "last": "token at", "mean+last": "mean and token at"}
        b = "block" if len(self.blocks) == 1 else "blocks"
        text = (
            f"{b} {'+'.join(map(str, self.blocks))}, {pool[self.pooling]} the first {self.cut} "
            f"reply tokens (prompt cut to {self.prompt_tokens} tokens)"
        )
        text += ", + log reply length" if self.length else ""
        return text + (", + reply text statistics" if self.text else "")

    @property
    def n_scalars(self) -> int:
        """Columns after the hidden-state features (length, text statistics)."""
        return int(self.length) + (len(REPLY_STATS) if self.text else 0)

    def matrix(self, feats: ChatFeatures) -> np.ndarray:
        """The ``(n, d)`` feature matrix this spec selects from extracted features."""
        if self.cut not in feats.cuts:
            raise InputError(f"features: cut {self.cut} was not extracted ({feats.cuts})")
        c = feats.cuts.index(self.cut)
        pools = {"mean": [0], "last": [1], "mean+last": [0, 1]}[self.pooling]
        cols = []
        for blk in self.blocks:
            if blk not in feats.blocks:
                raise InputError(f"features: block {blk} was not extracted ({feats.blocks})")
            for q in pools:
                cols.append(feats.values[:, feats.blocks.index(blk), c, q, :])
        if self.length:
            cols.append(np.log1p(feats.reply_length.astype(np.float64))[:, None])
        if self.text:
            if feats.stats is None:
                raise InputError("features: the replies' text statistics were not computed")
            cols.append(np.asarray(feats.stats, np.float64))
        return np.concatenate(cols, axis=1).astype(np.float64)


@dataclasses.dataclass(frozen=True)
class Judge:
    """A trained judge: a linear head on frozen decoder features of a chat exchange.

    Pointwise judges (truthfulness, informativeness, harmlessness) give
    ``P(label = 1 | prompt, reply) = sigmoid(w · z + b)`` with ``z`` the standardised features.
    The pairwise helpfulness judge is a Bradley-Terry model: ``P(output beats reference) =
    sigmoid(w · (z_out - z_ref) + b)``; with ``b = 0`` swapping the two gives one minus the
    probability, a non-zero ``b`` is the head's advantage of being the judged output over the
    reference (davinci-003 in training); ``w · z_out`` alone is a helpfulness reward.

    Attributes:
        kind: one of ``truthfulness``, ``informativeness``, ``helpfulness``, ``harmlessness``.
        model_id: the decoder the features come from (e.g. the GGUF file name).
        features: which features (:class:`FeatureSpec`).
        mean, scale: feature standardisation (``(d,)``).
        coef: head weights (``(d,)``).
        intercept: head bias (pairwise: added only when a reference is given).
        validation: figures on the held-apart rows (accuracy, AUC, sizes), the split, and the
            cross-validated choice of features and head.

    Examples:
        >>> spec = FeatureSpec((1,), "mean", 8, 8, 8)
        >>> j = Judge("truthfulness", "m", spec, np.zeros(2), np.ones(2), np.ones(2), 0.0, {})
        >>> j.pairwise
        False
    """

    kind: str
    model_id: str
    features: FeatureSpec
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
        """Head logits for feature matrices (and the reference's, for the pairwise judge)."""
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
            "format": _FORMAT,
            "kind": self.kind,
            "model_id": self.model_id,
            "features": dataclasses.asdict(self.features),
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
        if isinstance(doc, dict) and doc.get("format") == "focal-fusion judge v1":
            raise InputError(
                f"{p}: an older judge format (v1); retrain it with 'focal judge train'"
            )
        if not isinstance(doc, dict) or doc.get("format") not in _READS:
            raise InputError(f"{p}: not a focal-fusion judge file")
        f = doc["features"]
        spec = FeatureSpec(
            blocks=tuple(int(b) for b in f["blocks"]), pooling=str(f["pooling"]),
            cut=int(f["cut"]), reply_tokens=int(f["reply_tokens"]),
            prompt_tokens=int(f["prompt_tokens"]), length=bool(f["length"]),
            text=bool(f.get("text", False)),
        )  # fmt: skip
        return cls(
            kind=doc["kind"],
            model_id=doc["model_id"],
            features=spec,
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


def extract(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    *,
    blocks: Sequence[int],
    cuts: Sequence[int],
    prompt_tokens: int,
    model_id: str,
    cache_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ChatFeatures:
    """Features of ``pairs``, each distinct exchange computed once."""
    uniq = sorted(set(pairs))
    f = chat_features(
        model, tokenizer, uniq, blocks=blocks, cuts=cuts, prompt_tokens=prompt_tokens,
        cache_dir=cache_dir, model_id=model_id, progress=progress,
    )  # fmt: skip
    pos = {p: i for i, p in enumerate(uniq)}
    return _subset(f, np.asarray([pos[p] for p in pairs], np.int64))


def _subset(f: ChatFeatures, rows: slice | np.ndarray) -> ChatFeatures:
    stats = None if f.stats is None else f.stats[rows]
    return ChatFeatures(f.values[rows], f.reply_length[rows], f.blocks, f.cuts, stats)


def _folds(groups: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped folds: whole groups, assigned at random (seeded), about equal sizes."""
    uniq = np.unique(groups)
    rng = np.random.default_rng(seed)
    assign = dict(zip(uniq.tolist(), (rng.permutation(len(uniq)) % k).tolist(), strict=True))
    fold = np.asarray([assign[g] for g in groups.tolist()])
    return [(np.flatnonzero(fold != i), np.flatnonzero(fold == i)) for i in range(k)]


class _Design:
    """Training rows as standardised design matrices (pointwise rows or pair differences)."""

    def __init__(self, a: np.ndarray, b: np.ndarray | None, fit_rows: np.ndarray) -> None:
        self.mean = a[fit_rows].mean(axis=0)
        self.scale = a[fit_rows].std(axis=0) + 1e-6
        z = (a - self.mean) / self.scale
        self.x = z if b is None else z - (b - self.mean) / self.scale


def _ridge_scores(kernels, y_tr, pairwise, lambdas):
    """Kernel ridge validation scores for each lambda (one linear solve each)."""
    k_tr, k_va = kernels
    t = (2.0 * y_tr - 1.0) if pairwise else (y_tr - y_tr.mean())
    eye = np.eye(len(k_tr))
    return [k_va @ np.linalg.solve(k_tr + lam * eye, t) for lam in lambdas]


def _cross_folds(
    groups: np.ndarray, models: np.ndarray, k: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds disjoint in groups (prompts) and in models: a ``k`` x ``k`` grid.

    Groups and models are each dealt into ``k`` parts (seeded); fold ``(i, j)`` validates on
    the rows of group part ``i`` and model part ``j`` and trains on the rows sharing neither
    part, so no validation prompt or model is seen in training (other rows sit out).
    """
    rng = np.random.default_rng(seed)

    def deal(keys: np.ndarray) -> np.ndarray:
        uniq = np.unique(keys)
        part = dict(zip(uniq.tolist(), (rng.permutation(len(uniq)) % k).tolist(), strict=True))
        return np.asarray([part[g] for g in keys.tolist()])

    gp, mp = deal(np.asarray(groups)), deal(np.asarray(models))
    out = []
    for i in range(k):
        for j in range(k):
            va = np.flatnonzero((gp == i) & (mp == j))
            tr = np.flatnonzero((gp != i) & (mp != j))
            if len(va) and len(tr):
                out.append((tr, va))
    return out


def _logistic(x, y, *, C, pairwise, intercept=False):
    from sklearn.linear_model import LogisticRegression

    if not pairwise:
        head = LogisticRegression(C=C, max_iter=3000)
        head.fit(x, (y > 0.5).astype(int))
        return head.coef_[0].astype(np.float64), float(head.intercept_[0])
    if intercept:
        # output against reference in one order, with a bias; a tie is half a win
        xs, ys = x, y
    else:
        # Bradley-Terry: each pair in both orders; a tie is half a win each way
        xs = np.concatenate([x, -x])
        ys = np.concatenate([y, 1.0 - y])
    tie = ys == 0.5
    xx = np.concatenate([xs[~tie], xs[tie], xs[tie]])
    yy = np.concatenate([ys[~tie] > 0.5, np.ones(tie.sum(), bool), np.zeros(tie.sum(), bool)])
    ww = np.concatenate([np.ones((~tie).sum()), np.full(2 * tie.sum(), 0.5)])
    head = LogisticRegression(C=C, fit_intercept=intercept, max_iter=3000)
    head.fit(xx, yy.astype(int), sample_weight=ww)
    return head.coef_[0].astype(np.float64), float(head.intercept_[0]) if intercept else 0.0


def _principal(x: np.ndarray, n_hidden: int) -> np.ndarray:
    """Principal directions ``(n_hidden, r)`` of the hidden-state columns of ``x``."""
    h = x[:, :n_hidden]
    _, _, vt = np.linalg.svd(h - h.mean(axis=0), full_matrices=False)
    return vt.T


def _fit_head(x, y, *, C, pairwise, n_hidden, pca=None, intercept=False, basis=None):
    """Logistic head on the design ``x``, its weights in ``x``'s columns.

    With ``pca``, the first ``n_hidden`` (hidden-state) columns are replaced by their
    projections on the top ``pca`` principal directions of the training rows (``basis``: those
    directions, when already computed) and the weights mapped back; the remaining (length,
    text) columns stay as they are.
    """
    if pca is None or pca >= n_hidden:
        return _logistic(x, y, C=C, pairwise=pairwise, intercept=intercept)
    v = (_principal(x, n_hidden) if basis is None else basis)[:, :pca]
    xp = np.concatenate([x[:, :n_hidden] @ v, x[:, n_hidden:]], axis=1)
    coef, b = _logistic(xp, y, C=C, pairwise=pairwise, intercept=intercept)
    return np.concatenate([v @ coef[: v.shape[1]], coef[v.shape[1] :]]), b


def _cv_auc(scores_by_fold, y, folds):
    aucs = []
    for (_, va), s in zip(folds, scores_by_fold, strict=True):
        yv = y[va]
        keep = yv != 0.5
        a = _auc(yv[keep], s[keep])
        if a is not None:
            aucs.append(a)
    return float(np.mean(aucs)) if aucs else float("nan")


def select_features(
    kind: str,
    train_a: ChatFeatures,
    train_b: ChatFeatures | None,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    prompt_tokens: int,
    folds: int = 4,
    Cs: Sequence[float] = (0.001, 0.003, 0.01, 0.03, 0.1),
    seed: int = 0,
    models: np.ndarray | None = None,
) -> tuple[FeatureSpec, float, dict[str, Any]]:
    """Choose features and head by grouped cross-validation on training rows only.

    Stage 1 ranks every candidate (each extracted block alone and all blocks together; mean,
    last token, or both; each reply cut) by the mean held-out-fold AUC of a ridge probe (kernel
    form: per-block kernels add up, so the whole grid costs a few linear solves per
    candidate and fold; best of three ridge strengths). Stage 2 fits the logistic head itself on
    the best candidate for each ``C`` in ``Cs``, with and without the log reply length, and
    keeps the best mean fold AUC. Folds hold whole groups (questions, prompts, hh pairs).

    The pairwise (helpfulness) judge's stage 2 also chooses the scalar columns (none, log
    length, or log length and the replies' text statistics), a principal-component projection
    of the hidden-state columns (see ``table["head"]``) and whether the head has a bias. With
    ``models`` its folds are disjoint in models as well as in groups (groups and models each
    dealt into ``folds`` parts; fold ``(i, j)`` validates on group part ``i`` x model part
    ``j`` and trains on the rows sharing neither), and below ``SMALL_PAIRS`` decided training
    pairs the selection is skipped for a fixed low-capacity head (:data:`SMALL_HEAD`), whose
    CV AUC is still reported.

    Returns:
        ``(spec, C, table)``: the chosen features, the chosen ``C`` and every candidate's CV
        score (``table["stage1"]``, ``table["stage2"]``; ``table["head"]``: the pairwise head's
        ``pca`` and ``intercept``).

    Raises:
        InputError: ``folds`` outside ``2 ..`` number of groups, or a non-positive ``C``.
    """
    pairwise = kind in _PAIRWISE
    blocks, cuts = train_a.blocks, train_a.cuts
    n_groups = len(np.unique(groups))
    if not 2 <= folds <= n_groups:
        raise InputError(f"folds: must be in 2..{n_groups} (training groups), got {folds}")
    if not Cs or min(Cs) <= 0:
        raise InputError(f"C: each must be positive, got {list(Cs)}")
    if models is not None and pairwise:
        if not 2 <= folds <= len(np.unique(models)):
            raise InputError(f"folds: must be in 2..{len(np.unique(models))} (training "
                             f"models), got {folds}")  # fmt: skip
        fl = _cross_folds(np.asarray(groups), np.asarray(models), folds, seed)
        grouped_by = "prompt and model (folds x folds grid)"
    else:
        fl = _folds(np.asarray(groups), folds, seed)
        grouped_by = "group of each training row"
    reply_tokens = max(cuts)
    # cuts that change nothing (every reply shorter than a smaller cut) are dropped
    live_cuts = [cuts[0]]
    for c in cuts[1:]:
        longest = train_a.reply_length.max(initial=0)
        if train_b is not None:
            longest = max(longest, train_b.reply_length.max(initial=0))
        if longest + 1 > live_cuts[-1]:
            live_cuts.append(c)
    table: dict[str, Any] = {"folds": folds, "grouped_by": grouped_by, "seed": seed}
    decided = int(np.sum(np.asarray(y) != 0.5))
    if pairwise and decided < SMALL_PAIRS:
        spec = FeatureSpec((blocks[-1],), "mean", live_cuts[-1], reply_tokens, prompt_tokens,
                           length=True, text=train_a.stats is not None)  # fmt: skip
        head = dict(SMALL_HEAD)
        cv = _head_cv(spec, train_a, train_b, y, fl, [head])[0]
        table.update(
            small=f"{decided} decided training pairs < {SMALL_PAIRS}: fixed head, no selection",
            stage1=[], stage2=[dict(head, text=spec.text, length=True, cv_auc=cv)],
            head={"pca": head["pca"], "intercept": head["intercept"]},
        )  # fmt: skip
        return spec, float(head["C"]), table
    # per-component kernels, per fold
    kern: dict[tuple[int, int, int], list[tuple[np.ndarray, np.ndarray]]] = {}
    for bi, _ in enumerate(blocks):
        for c in live_cuts:
            ci = cuts.index(c)
            for q in (0, 1):
                a = train_a.values[:, bi, ci, q, :].astype(np.float64)
                b = None if train_b is None else train_b.values[:, bi, ci, q, :].astype(np.float64)
                per = []
                for tr, va in fl:
                    x = _Design(a, b, tr).x
                    per.append((x[tr] @ x[tr].T, x[va] @ x[tr].T))
                kern[(bi, c, q)] = per
    blocksets = [(blk,) for blk in blocks] + ([tuple(blocks)] if len(blocks) > 1 else [])
    stage1 = []
    for bs in blocksets:
        for pooling in _POOLINGS:
            qs = {"mean": (0,), "last": (1,), "mean+last": (0, 1)}[pooling]
            for c in live_cuts:
                comps = [kern[(blocks.index(blk), c, q)] for blk in bs for q in qs]
                per_lam: dict[float, list[np.ndarray]] = {}
                for f, (tr, _) in enumerate(fl):
                    k_tr = sum(cp[f][0] for cp in comps)
                    k_va = sum(cp[f][1] for cp in comps)
                    scale = float(np.mean(np.diag(k_tr)))
                    lams = [scale * m for m in _RIDGE]
                    for m, s in zip(_RIDGE, _ridge_scores(
                        (k_tr, k_va), y[tr], pairwise, lams
                    ), strict=True):  # fmt: skip
                        per_lam.setdefault(m, []).append(s)
                best = max(
                    ((m, _cv_auc(sc, y, fl)) for m, sc in per_lam.items()), key=lambda t: t[1]
                )
                row = {"blocks": list(bs), "pooling": pooling, "cut": c}
                stage1.append(dict(row, ridge_lambda_per_mean_diag=best[0], cv_auc=best[1]))
    top = max(stage1, key=lambda r: r["cv_auc"])
    stage2 = []
    if pairwise:
        scalars = [(False, False), (True, False)]
        if train_a.stats is not None:
            scalars.append((True, True))
        grid = [(ln, tx, p, ic) for ln, tx in scalars for p in _PCA for ic in (False, True)]
    else:
        grid = [(ln, False, None, False) for ln in (False, True)]
    full = FeatureSpec(tuple(top["blocks"]), top["pooling"], top["cut"], reply_tokens,
                       prompt_tokens, True, any(tx for _, tx, _, _ in grid))  # fmt: skip
    heads = [{"length": ln, "text": tx, "C": C, "pca": p, "intercept": ic}
             for ln, tx, p, ic in grid for C in Cs]  # fmt: skip
    for h, cv in zip(heads, _head_cv(full, train_a, train_b, y, fl, heads), strict=True):
        stage2.append(dict(h, cv_auc=cv))
    best2 = max(stage2, key=lambda r: r["cv_auc"])
    spec = FeatureSpec(tuple(top["blocks"]), top["pooling"], top["cut"], reply_tokens,
                       prompt_tokens, best2["length"], best2["text"])  # fmt: skip
    table.update(stage1=stage1, stage2=stage2,
                 head={"pca": best2["pca"], "intercept": best2["intercept"]})  # fmt: skip
    return spec, float(best2["C"]), table


def _head_cv(spec, train_a, train_b, y, fl, heads) -> list[float]:
    """Mean fold AUC of each head in ``heads`` on ``spec``'s features.

    A head is ``{"C", "pca", "intercept"}`` plus optional ``length`` / ``text`` switches that
    keep a subset of ``spec``'s scalar columns. Each fold's design and principal directions
    are computed once for all heads.
    """
    pairwise = train_b is not None
    a = spec.matrix(train_a)
    b = None if train_b is None else spec.matrix(train_b)
    n_hidden = a.shape[1] - spec.n_scalars
    names = (["length"] if spec.length else []) + (["text"] * len(REPLY_STATS) if spec.text else [])
    scores: list[list[np.ndarray]] = [[] for _ in heads]
    for tr, va in fl:
        x = _Design(a, b, tr).x
        basis = None
        if any(h["pca"] is not None and h["pca"] < n_hidden for h in heads):
            basis = _principal(x[tr], n_hidden)
        for k, h in enumerate(heads):
            keep = [h.get(nm, True) for nm in names]
            cols = np.concatenate([np.arange(n_hidden), n_hidden + np.flatnonzero(keep)])
            xs = x[:, cols.astype(int)]
            coef, icpt = _fit_head(xs[tr], y[tr], C=h["C"], pairwise=pairwise, n_hidden=n_hidden,
                                   pca=h["pca"], intercept=h["intercept"], basis=basis)  # fmt: skip
            scores[k].append(xs[va] @ coef + icpt)
    return [_cv_auc(sc, y, fl) for sc in scores]


def fit_judge(
    data: JudgeData,
    model: Any,
    tokenizer: Any,
    *,
    model_id: str,
    blocks: Sequence[int] = (4, 8, 12, 16, 20),
    cuts: Sequence[int] = (48, 96, 192),
    prompt_tokens: int = 96,
    Cs: Sequence[float] = (0.001, 0.003, 0.01, 0.03, 0.1),
    folds: int = 4,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Judge:
    """Train a judge on ``data``'s training rows and measure it once on its held-apart rows.

    Features: :func:`~fusers.judges.chat_features` of each ``(prompt, reply)`` exchange in the
    decoder's chat template (blocks ``blocks``, reply cuts ``cuts``), from one forward each.
    The feature set (blocks, pooling, cut, reply length) and the head's ``C`` are chosen by
    grouped cross-validation inside the training rows (:func:`select_features`); the
    held-apart rows are scored once, by the chosen judge. Head: scikit-learn's L2 logistic
    regression on standardised features; pairwise (helpfulness) a logistic model of the
    feature difference output − reference, ties as half wins: either Bradley-Terry (each pair
    in both orders, no bias) or one order with a bias, optionally on a few principal
    components of the hidden-state columns, as cross-validation chooses (folds disjoint in
    prompts and models, from ``data.train_models``); below ``SMALL_PAIRS`` decided pairs, a
    fixed low-capacity head (``SMALL_HEAD``).

    Held-apart figures in ``validation``: ``accuracy`` (threshold 0.5; ties left out) and
    ``auc``; for helpfulness also ``tie_rows``; for harmlessness also ``pair_accuracy`` (chosen
    scored above rejected) and ``refusal_recall``; plus the base rate of the labels, the
    chosen features and the cross-validation table (``selection``).

    Args:
        data: from :func:`~fusers.judges.load_judge_data`.
        model: the frozen decoder.
        tokenizer: its tokenizer.
        model_id: names the decoder in the judge and the feature cache.
        blocks: candidate decoder blocks.
        cuts: candidate reply truncations (tokens).
        prompt_tokens: prompt truncation.
        Cs: candidate inverse L2 strengths of the head.
        folds: cross-validation folds (grouped).
        seed: fold assignment seed.
        cache_dir: feature cache folder.
        progress: feature-extraction progress callback.

    Returns:
        The :class:`Judge`.

    Raises:
        InputError: fewer than two folds (or more than training groups), a non-positive C,
            or a block / cut out of range.
    """
    pairwise = data.kind in _PAIRWISE
    if folds < 2:
        raise InputError(f"folds: must be at least 2, got {folds}")
    if not Cs or min(Cs) <= 0:
        raise InputError(f"C: each must be positive, got {list(Cs)}")
    n_tr, n_te = len(data.train_a), len(data.test_a)
    pairs = list(data.train_a) + list(data.test_a)
    if pairwise:
        pairs += list(data.train_b) + list(data.test_b)
    feats = extract(
        model, tokenizer, pairs, blocks=blocks, cuts=cuts, prompt_tokens=prompt_tokens,
        model_id=model_id, cache_dir=cache_dir, progress=progress,
    )  # fmt: skip
    f_tr_a, f_te_a = _subset(feats, slice(0, n_tr)), _subset(feats, slice(n_tr, n_tr + n_te))
    f_tr_b = f_te_b = None
    if pairwise:
        f_tr_b = _subset(feats, slice(n_tr + n_te, 2 * n_tr + n_te))
        f_te_b = _subset(feats, slice(2 * n_tr + n_te, None))
    groups = data.train_groups if data.train_groups is not None else np.arange(n_tr)
    y_tr, y_te = np.asarray(data.train_y, np.float64), np.asarray(data.test_y, np.float64)
    spec, C, table = select_features(
        data.kind, f_tr_a, f_tr_b, y_tr, groups, prompt_tokens=prompt_tokens, folds=folds,
        Cs=Cs, seed=seed, models=data.train_models,
    )  # fmt: skip
    a = spec.matrix(f_tr_a)
    b = None if f_tr_b is None else spec.matrix(f_tr_b)
    design = _Design(a, b, np.arange(n_tr))
    head = table.get("head") or {"pca": None, "intercept": False}
    coef, intercept = _fit_head(
        design.x, y_tr, C=C, pairwise=pairwise, n_hidden=a.shape[1] - spec.n_scalars,
        pca=head["pca"], intercept=head["intercept"],
    )  # fmt: skip
    judge = Judge(
        kind=data.kind, model_id=model_id, features=spec, mean=design.mean, scale=design.scale,
        coef=coef, intercept=intercept, validation={},
    )  # fmt: skip
    p_te = judge.probabilities(spec.matrix(f_te_a), spec.matrix(f_te_b) if pairwise else None)
    decided = y_te != 0.5
    val: dict[str, Any] = {
        "accuracy": float(np.mean((p_te[decided] > 0.5) == (y_te[decided] > 0.5))),
        "auc": _auc(y_te[decided], p_te[decided]),
        "positive_rate": float(np.mean(y_te[decided] > 0.5)),
        "majority_accuracy": float(max(np.mean(y_te[decided] > 0.5), np.mean(y_te[decided] < 0.5))),
        "test_rows": int(n_te),
        "train_rows": int(n_tr),
        "head": _head_name(pairwise, C, head),
        "features": f"{spec.describe()}, {model_id}",
        "cv_auc": max(r["cv_auc"] for r in table["stage2"]),
        "selection": table,
        "split": data.split,
        # which prompts it was trained on, so an evaluation can keep clear of them
        "train_prompt_hashes": sorted({prompt_hash(q) for q, _ in data.train_a}),
    }  # fmt: skip
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


def _head_name(pairwise: bool, C: float, head: dict[str, Any]) -> str:
    if not pairwise:
        return f"logistic regression, C={C}"
    name = ("logistic on feature differences with a bias" if head["intercept"]
            else "Bradley-Terry logistic on feature differences")  # fmt: skip
    if head["pca"] is not None:
        name += f", hidden states on {head['pca']} principal components"
    return name + f", C={C}"


def judge_texts(kind: str, row: dict[str, Any]) -> tuple[tuple[str, str], tuple[str, str] | None]:
    """The ``(prompt, reply)`` exchange(s) a judge reads from an input row.

    ``prompt`` (or ``question`` / ``instruction``) and ``output`` (or ``answer``); the
    helpfulness judge also reads ``reference`` when present.

    Examples:
        >>> judge_texts("truthfulness", {"question": "Why?", "answer": "Because."})
        (('Why?', 'Because.'), None)
    """
    if kind not in KINDS:
        raise InputError(f"kind: unknown judge {kind!r}")
    prompt = next((row[k] for k in ("prompt", "question", "instruction") if k in row), None)
    output = next((row[k] for k in ("output", "answer") if k in row), None)
    if not isinstance(prompt, str) or not isinstance(output, str):
        raise InputError("row: needs 'prompt' (or 'question'/'instruction') and 'output' text")
    ref = row.get("reference")
    if kind in _PAIRWISE and isinstance(ref, str):
        return (prompt.strip(), output.strip()), (prompt.strip(), ref.strip())
    return (prompt.strip(), output.strip()), None


def prompt_hash(prompt: str) -> str:
    r"""A short digest of a prompt, blind to case and whitespace (and to a TruthfulQA-style
    ``"\nA: ..."`` tail), as judges record their training prompts.

    Examples:
        >>> prompt_hash("What is  2+2?") == prompt_hash("what is 2+2?\nA: 4")
        True
    """
    text = " ".join(str(prompt).split("\nA:")[0].split()).lower()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def trained_on(judge: Judge, prompts: Sequence[str]) -> np.ndarray | None:
    """Which ``prompts`` the judge saw in training (by :func:`prompt_hash`); ``None`` for a
    judge file that does not record its training prompts (retrain it to know).

    Examples:
        >>> spec = FeatureSpec((1,), "mean", 8, 8, 8)
        >>> j = Judge("truthfulness", "m", spec, np.zeros(2), np.ones(2), np.ones(2), 0.0,
        ...           {"train_prompt_hashes": [prompt_hash("Why?")]})
        >>> trained_on(j, ["why?", "How?"]).tolist()
        [True, False]
    """
    seen = judge.validation.get("train_prompt_hashes")
    if seen is None:
        return None
    seen = set(seen)
    return np.asarray([prompt_hash(p) in seen for p in prompts], dtype=bool)


def validation_summary(judge: Judge) -> dict[str, Any]:
    """The held-apart figures every score carries (accuracy, AUC, rows, how they were held apart).

    Examples:
        >>> spec = FeatureSpec((1,), "mean", 8, 8, 8)
        >>> j = Judge("truthfulness", "m", spec, np.zeros(2), np.ones(2), np.ones(2), 0.0,
        ...           {"accuracy": 0.8, "test_rows": 10, "split": {"disjoint": "question"}})
        >>> validation_summary(j)["held_apart"]
        'question'
    """
    v = judge.validation
    out = {k: v.get(k) for k in ("accuracy", "auc", "majority_accuracy", "test_rows", "cv_auc")}
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
    got = [judge_texts(judge.kind, r) for r in rows]
    outs = [a for a, _ in got]
    refs = [b for _, b in got]
    if judge.pairwise and any(r is None for r in refs) and not all(r is None for r in refs):
        raise InputError("rows: give 'reference' on every row or on none (helpfulness judge)")
    with_ref = judge.pairwise and bool(refs) and refs[0] is not None
    spec = judge.features
    feats = extract(
        model, tokenizer, outs + ([r for r in refs if r is not None] if with_ref else []),
        blocks=spec.blocks, cuts=sorted({spec.cut, spec.reply_tokens}),
        prompt_tokens=spec.prompt_tokens, model_id=judge.model_id, cache_dir=cache_dir,
        progress=progress,
    )  # fmt: skip
    x = spec.matrix(feats)
    f_a = x[: len(outs)]
    if with_ref:
        scores, kind = judge.probabilities(f_a, x[len(outs) :]), "p_output_beats_reference"
    elif judge.pairwise:
        scores, kind = judge.logits(f_a), "reward"
    else:
        scores, kind = judge.probabilities(f_a), f"p_{judge.kind}"
    summary = validation_summary(judge)
    return [
        {"judge": judge.kind, "score": float(s), "score_type": kind, "judge_validation": summary}
        for s in scores
    ]
