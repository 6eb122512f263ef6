"""Optional dependencies of the language-model stack, imported on first use."""

from __future__ import annotations

import importlib
from types import ModuleType

from ensembles.util import InputError

__all__ = ["LM_EXTRA", "require"]

#: The pip extra that brings transformers, tokenizers, safetensors and gguf.
LM_EXTRA = "focal-fusion[lm]"


def require(module: str) -> ModuleType:
    """Import ``module`` or raise a one-line :class:`InputError` naming the extra to install.

    Args:
        module: dotted module name (``"gguf"``, ``"transformers"``, ``"tokenizers"`` ...).

    Returns:
        The imported module.

    Raises:
        InputError: the package is not installed.

    Examples:
        >>> require("json").__name__
        'json'
        >>> try:
        ...     require("no_such_package_xyz")
        ... except InputError as err:
        ...     print(err)
        no_such_package_xyz is not installed: pip install "focal-fusion[lm]"
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise InputError(f'{top} is not installed: pip install "{LM_EXTRA}"') from None
