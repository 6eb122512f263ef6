"""The optional language-model stack (transformers, tokenizers, safetensors, gguf), imported
on use.

``import fusers.lm`` needs only JAX, Flax and optax; the functions that read or write Hugging
Face files or tokenizers import these packages when called, through :func:`require`, which
names the missing extra in one line.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ensembles.util import InputError

__all__ = ["LM_EXTRA", "require"]

#: How to install the optional language-model stack.
LM_EXTRA = "pip install 'focal-fusion[lm]'"


def require(module: str, *, feature: str = "fusers.lm") -> ModuleType:
    """Import ``module`` for ``feature``; one-line :class:`InputError` when it is not installed.

    Example:
        >>> require("json", feature="x").__name__
        'json'
        >>> try:
        ...     require("no_such_module_here", feature="fusers.lm.from_pretrained")
        ... except InputError as exc:
        ...     print(str(exc).split(" (")[0])
        fusers.lm.from_pretrained needs the 'lm' extra
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        root = module.split(".")[0]
        missing = getattr(exc, "name", None) or root
        if missing.split(".")[0] != root:
            raise  # the package is there but one of its own imports failed: a real bug
        raise InputError(
            f"{feature} needs the 'lm' extra ({root} is not installed): {LM_EXTRA}"
        ) from None
