"""Answer parsers applied to the fuser's generated text."""

from __future__ import annotations

import re

__all__ = ["LETTERS", "parse_choice"]

LETTERS = "ABCDEFGHIJKLMNOP"
_ANSWER = re.compile(r"answer is:?\s*\(?([A-P])\)?")


def parse_choice(text: str) -> int:
    """The option index of the last "The answer is (X)" in ``text`` (``-1``: none).

    Example:
        >>> parse_choice("The answer is (C)."), parse_choice("so the answer is B")
        (2, 1)
        >>> parse_choice("no answer here")
        -1
    """
    found = _ANSWER.findall(text or "")
    return LETTERS.index(found[-1]) if found else -1
