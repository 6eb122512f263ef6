"""Import hygiene of the fusers package, its public names, and its doctests."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

import fusers

HEAVY = ("flax", "optax", "orbax")


def _loaded_heavy(code: str) -> list[str]:
    probe = (
        f"{code}\nimport sys\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return eval(out.stdout.strip().splitlines()[-1])


def test_focal_and_ensembles_never_import_flax():
    assert _loaded_heavy("import focal, ensembles") == []


def test_fusers_import_and_cli_parsers_are_light():
    assert _loaded_heavy("import fusers") == []
    assert _loaded_heavy("import focal_cli; focal_cli.build_parser().format_help()") == []
    assert "flax" in _loaded_heavy("import fusers; fusers.MLP")  # lazy, on first access


def test_public_names():
    for name in fusers.__all__:
        obj = getattr(fusers, name)
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), name
    with pytest.raises(AttributeError):
        fusers.not_a_name  # noqa: B018
    assert set(fusers.FUSERS) == {"topla", "fusionshot", "stacking", "mlp"}


MODULES = [
    "fusers",
    "fusers._util",
    "fusers._features",
    "fusers._checkpoint",
    "fusers._mlp",
    "fusers._train",
    "fusers._baselines",
    "fusers._estimators",
    "fusers._topla",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
