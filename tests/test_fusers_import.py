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


def test_no_private_jax_imports():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = []
    for package in ("ensembles", "focal", "fusers", "focal_cli"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                if any(n == "jax._src" or n.startswith("jax._src.") for n in names):
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert found == []


def test_fusers_lm_imports_without_the_hugging_face_stack():
    code = "import fusers.lm, sys; print(sorted({m.split('.')[0] for m in sys.modules}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(eval(out.stdout.strip().splitlines()[-1]))
    assert loaded & {"transformers", "tokenizers", "safetensors", "torch"} == set()
