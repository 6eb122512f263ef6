"""Sequence layout of the generative fuser: markers, per-part token budgets, loss mask."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ensembles.util import InputError

__all__ = ["ByteTokenizer", "Layout", "TokenizerAdapter", "as_codec"]


class ByteTokenizer:
    """A byte-level tokenizer: ids 0-255 are bytes, then ``<pad>``, ``<s>``, ``</s>``.

    Used with tiny randomly initialised decoders (tests, synthetic checks): every string is
    encodable and decoding inverts encoding.

    Example:
        >>> tok = ByteTokenizer()
        >>> tok.encode("hi"), tok.decode(tok.encode("hé")), tok.vocab_size
        ([104, 105], 'hé', 259)
    """

    pad_id = 256
    bos_id = 257
    eos_id = 258
    vocab_size = 259

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (UTF-8 bytes)."""
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; ids that are not bytes (specials, markers) are dropped."""
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")


class TokenizerAdapter:
    """Wrap a transformers tokenizer as the small codec the fuser needs.

    Args:
        tokenizer: a transformers tokenizer (e.g. the one of :func:`fusers.lm.from_gguf`).

    Example:
        >>> class Toy:  # anything with encode/decode and the special ids
        ...     bos_token_id, eos_token_id, pad_token_id = 1, 2, None
        ...     def __len__(self): return 10
        ...     def encode(self, text, add_special_tokens=False): return [3, 4]
        ...     def decode(self, ids, skip_special_tokens=True): return "ab"
        >>> codec = TokenizerAdapter(Toy())
        >>> codec.encode("x"), codec.pad_id, codec.vocab_size
        ([3, 4], 2, 10)
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.bos_id = tokenizer.bos_token_id
        self.eos_id = tokenizer.eos_token_id
        if self.eos_id is None:
            raise InputError("tokenizer: has no end-of-sequence token")
        pad = tokenizer.pad_token_id
        self.pad_id = self.eos_id if pad is None else pad
        self.vocab_size = len(tokenizer)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without special tokens."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; ids outside the tokenizer (added markers) are dropped."""
        keep = [int(i) for i in ids if 0 <= int(i) < self.vocab_size]
        return self.tokenizer.decode(keep, skip_special_tokens=True)


def as_codec(tokenizer) -> ByteTokenizer | TokenizerAdapter:
    """A :class:`ByteTokenizer` or :class:`TokenizerAdapter` as is; wrap anything else.

    Example:
        >>> as_codec(ByteTokenizer()).eos_id
        258
    """
    if isinstance(tokenizer, ByteTokenizer | TokenizerAdapter):
        return tokenizer
    return TokenizerAdapter(tokenizer)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each part of a fusion example goes in one decoder sequence.

    The sequence is ``[BOS] [BOQ] question [EOQ] [BOC0] cand0 [EOC0] ... [BOC{M-1}]
    cand{M-1} [EOC{M-1}] [ANS] target [EOS]``. The ``2 + 2M + 1`` markers are added tokens
    with ids ``first_marker, first_marker + 1, ...`` (``BOQ, EOQ, BOC0, EOC0, ..., ANS``).
    Budgets: the whole sequence has at most ``context`` tokens, of which ``target_tokens``
    are reserved for the target and its ``EOS``; the question takes its tokens first (at
    most ``question_tokens``, keeping its beginning), then the rest is shared equally among
    the candidates, each cut from the **left** (its end, where the answer is, is kept).
    Markers are never cut. The loss mask is 1 on the target tokens and ``EOS`` only.
    ``n_candidates=0`` is the question-only ablation.

    Attributes:
        n_candidates: candidates per example (``M``).
        first_marker: id of the first added marker (the base vocabulary size).
        eos_id: end-of-sequence id.
        bos_id: beginning-of-sequence id (``None``: no BOS token).
        context: maximum sequence length.
        target_tokens: tokens reserved for the target, ``EOS`` included.
        question_tokens: cap of the question's tokens (``None``: half of what is left after
            markers and target).

    Example:
        >>> lay = Layout(n_candidates=2, first_marker=100, eos_id=2, bos_id=1, context=24,
        ...              target_tokens=3)
        >>> ids, mask = lay.encode([10, 11], [[20, 21, 22, 23], [30]], [40])
        >>> ids
        [1, 100, 10, 11, 101, 102, 20, 21, 22, 23, 103, 104, 30, 105, 106, 40, 2]
        >>> mask[-3:]
        [0, 1, 1]
    """

    n_candidates: int
    first_marker: int
    eos_id: int
    bos_id: int | None = None
    context: int = 512
    target_tokens: int = 16
    question_tokens: int | None = None

    def __post_init__(self) -> None:
        for name, low in (("n_candidates", 0), ("first_marker", 1), ("context", 2),
                          ("target_tokens", 1)):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{name}: expected an integer >= {low}, got {value!r}")
        if self.question_tokens is not None and (
            isinstance(self.question_tokens, bool)
            or not isinstance(self.question_tokens, int)
            or self.question_tokens < 0
        ):
            raise InputError(
                f"question_tokens: expected a non-negative integer, got {self.question_tokens!r}"
            )
        if self.free_tokens < max(self.n_candidates, 1):
            raise InputError(
                f"context: {self.context} tokens leave no room for {self.n_candidates} "
                f"candidates after {self.n_markers + (self.bos_id is not None)} markers and "
                f"{self.target_tokens} target tokens"
            )

    @property
    def n_markers(self) -> int:
        """Number of added marker tokens, ``2 + 2M + 1``."""
        return 2 + 2 * self.n_candidates + 1

    @property
    def vocab_size(self) -> int:
        """Vocabulary size with the markers added."""
        return self.first_marker + self.n_markers

    @property
    def boq(self) -> int:
        """Id of ``[BOQ]``."""
        return self.first_marker

    @property
    def eoq(self) -> int:
        """Id of ``[EOQ]``."""
        return self.first_marker + 1

    def boc(self, j: int) -> int:
        """Id of ``[BOC{j}]``."""
        return self.first_marker + 2 + 2 * j

    def eoc(self, j: int) -> int:
        """Id of ``[EOC{j}]``."""
        return self.first_marker + 3 + 2 * j

    @property
    def ans(self) -> int:
        """Id of ``[ANS]``."""
        return self.first_marker + 2 + 2 * self.n_candidates

    @property
    def prompt_length(self) -> int:
        """Maximum prompt length (everything before the target)."""
        return self.context - self.target_tokens

    @property
    def free_tokens(self) -> int:
        """Prompt tokens left for the question and the candidates."""
        return self.prompt_length - self.n_markers - (self.bos_id is not None)

    def budgets(self, question_length: int) -> tuple[int, int]:
        """``(question tokens kept, tokens per candidate)`` for a question of that length."""
        m = self.n_candidates
        if m == 0:  # question-only ablation: the question takes everything
            return min(question_length, self.free_tokens), 0
        cap = self.free_tokens // 2 if self.question_tokens is None else self.question_tokens
        cap = min(cap, self.free_tokens - m)
        q = min(question_length, cap)
        return q, (self.free_tokens - q) // m

    def prompt(self, question: Sequence[int], candidates: Sequence[Sequence[int]]) -> list[int]:
        """Token ids of the prompt (ends with ``[ANS]``), budgets applied."""
        if len(candidates) != self.n_candidates:
            raise InputError(
                f"candidates: the layout has {self.n_candidates}, got {len(candidates)}"
            )
        q_len, share = self.budgets(len(question))
        ids = [] if self.bos_id is None else [self.bos_id]
        ids += [self.boq, *list(question)[:q_len], self.eoq]
        for j, cand in enumerate(candidates):
            cand = list(cand)
            kept = cand[len(cand) - share :] if len(cand) > share else cand
            ids += [self.boc(j), *kept, self.eoc(j)]
        ids.append(self.ans)
        return [int(i) for i in ids]

    def target(self, target: Sequence[int]) -> list[int]:
        """Target ids (cut to the budget, keeping the beginning) followed by ``EOS``."""
        return [int(i) for i in list(target)[: self.target_tokens - 1]] + [int(self.eos_id)]

    def encode(
        self,
        question: Sequence[int],
        candidates: Sequence[Sequence[int]],
        target: Sequence[int],
    ) -> tuple[list[int], list[int]]:
        """``(ids, loss_mask)`` of one training sequence; the mask is 1 on target and EOS."""
        prompt, tail = self.prompt(question, candidates), self.target(target)
        return prompt + tail, [0] * len(prompt) + [1] * len(tail)
