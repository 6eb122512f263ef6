"""Input features of the MLP fusers: answer-frequency spaces and choice scores.

Two routes lead to the same ``(n_samples, n_members · n_slots)`` input matrix, concatenated
model-major (``[member 0 block | member 1 block | …]``):

* **(a) open answers** (GSM8k route): :func:`answer_space` builds, per question, the shared
  solution space of the members' sampled answers and each member's frequency vector over it;
  :meth:`AnswerSpace.to_bundle` stores it as a bundle whose last class means "gold answer not
  in the space".
* **(b)/(d) multiple choice**: :func:`choice_scores` takes a bundle's per-choice ``probs``
  (probabilities, ``exp`` of option log-probs, or BBH's min-max scaled log-likelihoods), or the
  one-hot rows of its ``preds`` when it has no ``probs`` (MMLU-Pro; an abstention is an all-zero
  row).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from ensembles import Bundle, BundleError
from ensembles.util import InputError

from ._util import check_int

__all__ = [
    "VALID_CLASSES",
    "AnswerSpace",
    "answer_space",
    "choice_scores",
    "flatten_members",
    "valid_classes",
]

#: Rules deciding which classes a fuser may predict on each row (see :func:`valid_classes`).
VALID_CLASSES = ("all", "support")


# ---------------------------------------------------------------------------------- route (a)
@dataclasses.dataclass(frozen=True)
class AnswerSpace:
    """Per-question solution spaces of sampled open answers (route a).

    Attributes:
        freqs: member frequency vectors, shape ``(n_members, n_questions, space_size)``:
            ``count / K`` of each slot's answer among that member's ``K`` samples (missing
            answers count in ``K`` but occupy no slot).
        mask: validity of each slot, shape ``(n_questions, space_size)``; padded slots are
            ``False``.
        labels: slot of the gold answer, or ``space_size`` ("unanswerable": the gold answer
            is missing from the space or was truncated away), shape ``(n_questions,)``.
        answers: the answer in each slot (``None`` for a padded slot), a list of
            ``n_questions`` lists of ``space_size`` values; the slot → answer table used to
            decode predictions.
        space_size: number of slots.

    Example:
        >>> s = answer_space([[[1, 1, 2]], [[2, None, 2]]], gold=[2], space_size=3)
        >>> s.answers, s.labels.tolist(), s.mask.tolist()
        ([[2.0, 1.0, None]], [0], [[True, True, False]])
        >>> s.freqs.round(3).tolist()
        [[[0.333, 0.667, 0.0]], [[0.667, 0.0, 0.0]]]
    """

    freqs: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    answers: list[list[Any]]
    space_size: int

    @property
    def unanswerable(self) -> np.ndarray:
        """Rows whose gold answer is not in the space, shape ``(n_questions,)``."""
        return self.labels == self.space_size

    def to_bundle(
        self,
        models: Sequence[str],
        *,
        split: Any = None,
        sample_ids: Any = None,
        groups: Any = None,
        task: str | None = None,
    ) -> Bundle:
        """The space as a bundle: ``probs`` of shape ``(M, N, space_size + 1)``.

        The last class means "gold answer not in the space": no member gives it mass, so a
        fuser with ``valid_classes="support"`` never predicts it (nor a padded slot), and the
        unanswerable rows stay in the denominator as wrong.

        Example:
            >>> s = answer_space([[[1]], [[2]]], gold=[3], space_size=2)
            >>> b = s.to_bundle(["a", "b"])
            >>> b.n_classes, b.labels.tolist(), b.preds.tolist()
            (3, [2], [[0], [1]])
        """
        m, n, _ = self.freqs.shape
        probs = np.concatenate([self.freqs, np.zeros((m, n, 1))], axis=2)
        return Bundle.create(
            models=models,
            labels=self.labels,
            probs=probs,
            n_classes=self.space_size + 1,
            split=split,
            sample_ids=sample_ids,
            groups=groups,
            task=task,
        )

    def decode(self, slots: Any) -> list[Any]:
        """Answers of predicted slots (``None`` for ``-1``, the unanswerable class or padding).

        Example:
            >>> answer_space([[[5, 7, 7]], [[7]]], gold=[7], space_size=2).decode([1])
            [5.0]
        """
        out: list[Any] = []
        for row, slot in zip(self.answers, np.asarray(slots).tolist(), strict=True):
            out.append(row[slot] if 0 <= slot < self.space_size else None)
        return out


def _normalise_answer(a: Any) -> Any:
    """A hashable, comparable answer, or ``None`` when missing (``None``, NaN, empty string)."""
    if a is None:
        return None
    if isinstance(a, str):
        a = a.strip()
        return a or None
    if isinstance(a, numbers.Real) and not isinstance(a, bool):
        f = float(a)
        return None if math.isnan(f) else f
    raise BundleError(f"answers: expected numbers, strings or None, got {type(a).__name__}")


def _sort_key(item: tuple[Any, Fraction]) -> tuple[Fraction, int, Any]:
    answer, total = item
    # Summed frequency descending; ties: smaller answer first (numbers before strings).
    return (-total, 0 if isinstance(answer, float) else 1, answer)


def _member_counts(drawn_per_member: Sequence[Sequence[Any]]):
    """Per member: the count of each (normalised, non-missing) answer, and its sample count K."""
    counts: list[dict[Any, int]] = []
    ks: list[int] = []
    for samples in drawn_per_member:
        drawn = list(samples)
        c: dict[Any, int] = {}
        for a in drawn:
            key = _normalise_answer(a)
            if key is not None:
                c[key] = c.get(key, 0) + 1
        counts.append(c)
        ks.append(len(drawn))
    return counts, ks


def _slot_order(counts: list[dict[Any, int]], ks: list[int], space_size: int, q: int) -> list:
    """The answers of one question by summed frequency (exact fractions), truncated."""
    totals: dict[Any, Fraction] = {}
    for c, k in zip(counts, ks, strict=True):
        for key, cnt in c.items():
            totals[key] = totals.get(key, Fraction(0)) + Fraction(cnt, k)
    try:
        return [a for a, _ in sorted(totals.items(), key=_sort_key)][:space_size]
    except TypeError:  # pragma: no cover - _normalise_answer makes keys comparable
        raise BundleError(f"answers: question {q} mixes incomparable answers") from None


def answer_space(
    samples: Sequence[Sequence[Sequence[Any]]],
    gold: Sequence[Any],
    *,
    space_size: int = 30,
) -> AnswerSpace:
    """Build the shared answer-frequency spaces of LLM-TOPLA's open-answer route.

    For each question: the solution space is the set of distinct answers over every member's
    samples; each member's vector holds the frequency of each answer among its own ``K``
    samples; slots are ordered by summed frequency over members, descending, ties broken by
    the smaller answer value (so slot 0 is the pooled self-consistency vote); the space is
    truncated or padded to ``space_size`` slots with a validity mask; the label is the slot of
    the gold answer, or ``space_size`` when it is not in the space ("unanswerable").

    These are the *fixed* rules of the open-answer route. Missing answers (``None``, NaN, empty
    strings) are dropped before the space is built but still count in ``K``; the order is
    stable and exact (frequencies are summed as fractions); padding is marked by the mask, so a
    real answer ``0`` is never confused with padding. Numbers compare by value (``3 == 3.0``);
    strings are allowed too (after whitespace stripping) and sort after numbers.

    Args:
        samples: ``samples[m][n]`` is the list of member ``m``'s sampled answers to question
            ``n`` (any length ``K ≥ 0``; ``K = 10`` in the reference).
        gold: the gold answer of each question (``None`` / NaN: unanswerable).
        space_size: slots per question (LLM-TOPLA 30, MARL-Focal 10).

    Returns:
        An :class:`AnswerSpace`.

    Raises:
        BundleError: ragged input (members with different numbers of questions, or a gold list
            of another length), or answers that are neither numbers nor strings.
        ValueError: ``space_size`` below 1.

    Example:
        >>> # two members, one question, K = 4 samples each; 5 and 7 tie at 1/4 + 1/4
        >>> s = answer_space([[[7, 5, None, None]], [[5, 9, 7, 8]]], gold=[7], space_size=5)
        >>> s.answers[0], s.labels.tolist()
        ([5.0, 7.0, 8.0, 9.0, None], [1])
        >>> s.freqs[:, 0].tolist()
        [[0.25, 0.25, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25, 0.0]]
    """
    space_size = int(check_int("space_size", space_size, minimum=1))  # type: ignore[arg-type]
    n_members = len(samples)
    if n_members == 0:
        raise BundleError("answers: no members")
    n = len(gold)
    for m, per_member in enumerate(samples):
        if len(per_member) != n:
            raise BundleError(f"answers: member {m} has {len(per_member)} questions, gold has {n}")
    freqs = np.zeros((n_members, n, space_size), dtype=np.float64)
    mask = np.zeros((n, space_size), dtype=bool)
    labels = np.full(n, space_size, dtype=np.int64)
    table: list[list[Any]] = []
    for q in range(n):
        counts, ks = _member_counts([samples[m][q] for m in range(n_members)])
        order = _slot_order(counts, ks, space_size, q)
        for slot, answer in enumerate(order):
            mask[q, slot] = True
            for m in range(n_members):
                if answer in counts[m]:
                    freqs[m, q, slot] = counts[m][answer] / ks[m]
        g = _normalise_answer(gold[q])
        if g is not None and g in order:
            labels[q] = order.index(g)
        table.append(order + [None] * (space_size - len(order)))
    return AnswerSpace(freqs=freqs, mask=mask, labels=labels, answers=table, space_size=space_size)


# ---------------------------------------------------------------------------------- route (b)/(d)
def choice_scores(bundle: Bundle, *, scores: str = "auto") -> np.ndarray:
    """Per-member, per-choice scores of a bundle, shape ``(n_members, n_samples, n_classes)``.

    Args:
        bundle: the cached outputs (restricted to the team).
        scores: ``"probs"`` (the raw ``probs``, as the reference concatenates them; refused
            when the bundle has none), ``"onehot"`` (one-hot ``preds``; an abstention is an
            all-zero row), or ``"auto"``: ``probs`` when present, else one-hot.

    Returns:
        float32 array.

    Raises:
        ValueError: unknown ``scores`` value, or ``"probs"`` on a bundle without ``probs``.

    Example:
        >>> b = Bundle.create(models=["a", "b"], labels=[0, 1], preds=[[0, -1], [1, 1]])
        >>> choice_scores(b).tolist()
        [[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]]
    """
    if scores not in ("auto", "probs", "onehot"):
        raise InputError(f"scores: expected 'auto', 'probs' or 'onehot', got {scores!r}")
    if scores == "probs" and bundle.probs is None:
        raise InputError("scores: 'probs' requested but the bundle has no probs")
    if bundle.probs is not None and scores != "onehot":
        return np.asarray(bundle.probs, dtype=np.float32)
    c = np.arange(bundle.n_classes)
    return (bundle.preds[:, :, None] == c[None, None, :]).astype(np.float32)


def flatten_members(scores: np.ndarray) -> np.ndarray:
    """``(M, N, C)`` member scores → ``(N, M·C)`` inputs, model-major.

    Example:
        >>> flatten_members(np.arange(8.0).reshape(2, 2, 2)).tolist()
        [[0.0, 1.0, 4.0, 5.0], [2.0, 3.0, 6.0, 7.0]]
    """
    m, n, c = scores.shape
    return np.ascontiguousarray(np.transpose(scores, (1, 0, 2)).reshape(n, m * c))


def valid_classes(scores: np.ndarray, rule: str = "all") -> np.ndarray:
    """Which classes a fuser may predict on each row, shape ``(n_samples, n_classes)``.

    Args:
        scores: member scores ``(M, N, C)`` (of the team).
        rule: ``"all"`` (every class; multiple choice), or ``"support"``: the classes some
            member gives positive mass (an answer-frequency space: padded slots and the
            "not in the space" class are then never predicted).

    Example:
        >>> s = np.array([[[0.5, 0.0, 0.0]], [[0.0, 0.2, 0.0]]])
        >>> valid_classes(s, "support").tolist(), valid_classes(s).tolist()
        ([[True, True, False]], [[True, True, True]])
    """
    if rule not in VALID_CLASSES:
        raise InputError(f"valid_classes: expected one of {', '.join(VALID_CLASSES)}, got {rule!r}")
    if rule == "all":
        return np.ones(scores.shape[1:], dtype=bool)
    return (np.asarray(scores) > 0).any(axis=0)
