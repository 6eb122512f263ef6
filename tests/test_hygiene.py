"""Test-suite hygiene: no assert whose condition hides in its message (such a check never runs)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _hidden_conditions(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assert) and node.msg is not None:
            if any(isinstance(n, ast.BoolOp | ast.Compare) for n in ast.walk(node.msg)):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_no_condition_in_an_assert_message():
    bad = [line for path in sorted(TESTS.rglob("*.py")) for line in _hidden_conditions(path)]
    assert bad == []


def test_the_check_finds_the_pattern(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text('def test_x():\n    assert status == 0, err and "ok" in text\n')
    assert len(_hidden_conditions(sample)) == 1
    sample.write_text('def test_x():\n    assert status == 0, err\n    assert "ok" in text\n')
    assert _hidden_conditions(sample) == []
