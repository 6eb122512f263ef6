"""Tokenizers: load one from a model directory, or train a byte-level BPE (tokenizers library)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ensembles.util import InputError

__all__ = ["load_tokenizer", "train_tokenizer"]

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_tokenizer(path: str | os.PathLike) -> Any:
    """Load the tokenizer of a local model directory with transformers' ``AutoTokenizer``.

    Args:
        path: the model directory (``tokenizer.json`` / ``tokenizer_config.json`` ...).

    Returns:
        A transformers tokenizer.

    Raises:
        FileNotFoundError: the directory holds no tokenizer files.
    """
    root = Path(path)
    if not any((root / name).is_file() for name in _TOKENIZER_FILES):
        raise FileNotFoundError(
            f"{root}: no tokenizer files ({', '.join(_TOKENIZER_FILES)}); pass tokenizer=False "
            "to load the model alone"
        )
    from ._extra import require

    auto = require("transformers", feature="fusers.lm.load_tokenizer").AutoTokenizer
    return auto.from_pretrained(str(root), local_files_only=True)


def train_tokenizer(
    texts: Iterable[str],
    *,
    vocab_size: int = 4096,
    special_tokens: Sequence[str] = ("<pad>", "<s>", "</s>"),
    min_frequency: int = 2,
    bos_token: str | None = "<s>",
    eos_token: str | None = "</s>",
    pad_token: str | None = "<pad>",
) -> Any:
    """Train a byte-level BPE tokenizer (tokenizers library) and wrap it for transformers.

    Byte-level: every string is encodable (256 byte symbols are always in the vocabulary), and
    decoding inverts encoding exactly. The special tokens get the first ids, in order.

    Args:
        texts: training texts.
        vocab_size: target vocabulary size (at least 256 + the special tokens).
        special_tokens: tokens never split, given ids ``0, 1, ...``.
        min_frequency: minimum pair count for a merge.
        bos_token: beginning-of-sequence token (one of ``special_tokens``) or ``None``.
        eos_token: end-of-sequence token or ``None``.
        pad_token: padding token or ``None``.

    Returns:
        A ``transformers.PreTrainedTokenizerFast``; ``tok.save_pretrained(dir)`` writes it next to
        a model so that :func:`fusers.lm.from_pretrained` loads both.

    Examples:
        >>> tok = train_tokenizer(["the cat sat on the mat"] * 20, vocab_size=300)
        >>> ids = tok("the cat")["input_ids"]
        >>> tok.decode(ids)
        'the cat'
    """
    from ._extra import require

    require("tokenizers", feature="fusers.lm.train_tokenizer")
    transformers = require("transformers", feature="fusers.lm.train_tokenizer")
    PreTrainedTokenizerFast = transformers.PreTrainedTokenizerFast  # noqa: N806
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    special = list(special_tokens)
    for tok in (bos_token, eos_token, pad_token):
        if tok is not None and tok not in special:
            raise InputError(f"special token {tok!r} is not in special_tokens {special}")
    if vocab_size < 256 + len(special):
        raise InputError(f"vocab_size: needs at least {256 + len(special)}, got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=bos_token,
        eos_token=eos_token,
        pad_token=pad_token,
        clean_up_tokenization_spaces=False,
    )
