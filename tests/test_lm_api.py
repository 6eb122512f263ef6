"""fusers.lm public API: exports, docstrings, doctest examples, light core imports."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

MODULES = [
    "_config",
    "_model",
    "_checkpoint",
    "_extra",
    "_generate",
    "_lora",
    "_train",
    "_tokenizer",
]


def test_exports_exist_and_are_documented():
    lm = importlib.import_module("fusers.lm")
    assert lm.__doc__
    assert sorted(lm.__all__) == sorted(set(lm.__all__))
    for name in lm.__all__:
        obj = getattr(lm, name)
        if callable(obj) or isinstance(obj, type):
            assert obj.__doc__ and obj.__doc__.strip(), f"fusers.lm.{name} has no docstring"


@pytest.mark.parametrize("name", ["__init__", *MODULES])
def test_docstring_examples_run(name):
    module = importlib.import_module("fusers.lm" if name == "__init__" else f"fusers.lm.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_core_packages_stay_free_of_flax():
    code = (
        "import sys, focal, ensembles; "
        "print(any(m.split('.')[0] in ('flax', 'optax', 'orbax') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
