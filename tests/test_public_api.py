"""Public API smoke tests: every exported name exists and is documented; light imports."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ["focal", "ensembles", "fusers"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_exists_and_has_a_docstring(package):
    module = importlib.import_module(package)
    assert module.__doc__
    for name in module.__all__:
        obj = getattr(module, name)
        if callable(obj) or isinstance(obj, type):
            assert obj.__doc__ and obj.__doc__.strip(), f"{package}.{name} has no docstring"


def test_core_packages_do_not_import_flax():
    code = "import sys, focal, ensembles; print(any(m.split('.')[0] in ('flax', 'optax') " \
        "for m in sys.modules))"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
