"""The package layering, read from the source with ``ast``: no import cycles, no upward imports.

Layers, bottom to top: ``ensembles`` → ``focal`` → ``fusers`` → ``focal_cli``. A module may
import its own package and the layers below it, never a layer above; no package reaches into
another package's private modules; the modules form no import cycle (counting imports inside
functions too, so a cycle cannot hide behind a local import).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("ensembles", "focal", "fusers", "focal_cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    out = {}
    for top in LAYERS:
        for path in sorted((ROOT / top).rglob("*.py")):
            out[_module_name(path)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules imported by one module (resolved to the longest known module name)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                full = f"{mod}.{alias.name}"
                add(full if full in known else mod)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def test_no_module_imports_a_higher_layer(graph):
    upward = [(a, b) for a, deps in graph.items() for b in deps if _layer(b) > _layer(a)]
    assert upward == []


def test_no_package_reaches_into_another_packages_private_modules(graph):
    def private(mod: str) -> bool:
        return any(part.startswith("_") and part != "__init__" for part in mod.split("."))

    reach = [
        (a, b)
        for a, deps in graph.items()
        for b in deps
        if a.split(".")[0] != b.split(".")[0] and private(b)
    ]
    assert reach == []


def test_no_import_cycles(graph):
    # Tarjan's strongly connected components; any component of size > 1 is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    # A package __init__ re-exporting its own private modules is not a cycle of logic.
    real = [c for c in cycles if not _only_init_reexports(c, graph)]
    assert real == []


def _only_init_reexports(comp: list[str], graph: dict[str, set[str]]) -> bool:
    """A component whose every edge into a package ``__init__`` comes from that package's own
    submodules importing the package itself; such cycles are resolved by Python's partial
    modules and are how ``from . import x`` works."""
    inits = [m for m in comp if any(o.startswith(m + ".") for o in comp)]
    if not inits:
        return False
    rest = set(comp) - set(inits)
    sub = {m: graph[m] & rest for m in rest}
    # With the package __init__ files removed, no cycle may remain.
    seen: set[str] = set()

    def has_cycle(v: str, path: set[str]) -> bool:
        if v in path:
            return True
        if v in seen:
            return False
        seen.add(v)
        return any(has_cycle(w, path | {v}) for w in sub.get(v, ()))

    return not any(has_cycle(v, set()) for v in sorted(rest))


def test_focal_does_not_load_fusers_or_flax():
    import subprocess
    import sys

    code = (
        "import focal, focal.search, focal.compat, focal.graph, ensembles, sys\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fusers', 'flax', 'optax', 'focal_cli', 'transformers', 'torch')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("package", ["ensembles", "focal", "fusers", "focal_cli"])
def test_public_names_have_docstrings_and_exist(package):
    mod = importlib.import_module(package)
    for name in getattr(mod, "__all__", []):
        obj = getattr(mod, name)
        if callable(obj) and not isinstance(obj, type(ast)):
            assert (obj.__doc__ or "").strip(), f"{package}.{name} has no docstring"


def test_focal_public_api_is_short_and_every_name_has_an_example():
    import focal

    assert len(focal.__all__) <= 24
    for name in focal.__all__:
        obj = getattr(focal, name)
        if callable(obj):
            doc = obj.__doc__ or ""
            assert ">>>" in doc, f"focal.{name} has no doctest example"
