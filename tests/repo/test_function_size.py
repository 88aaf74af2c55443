"""Repo hygiene (issue 20.8): no function in components/ is longer than 60 lines, so each
reads on one screen; a longer one is split where its steps are."""

from __future__ import annotations

import ast
from pathlib import Path

COMPONENTS = Path(__file__).resolve().parents[2] / "components"
LIMIT = 60


def _long_functions(source: str) -> list[tuple[str, int]]:
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > LIMIT
    ]


def test_a_long_function_is_found() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    assert _long_functions(f"def long():\n{body}\n") == [("long", LIMIT + 1)]
    assert _long_functions("def short():\n    return 1\n") == []


def test_no_function_in_components_is_longer_than_60_lines() -> None:
    found = {
        f"{path.relative_to(COMPONENTS)}:{name}": lines
        for path in sorted(COMPONENTS.rglob("*.py"))
        for name, lines in _long_functions(path.read_text())
    }
    assert found == {}
