"""Repo hygiene (issue 20.8): the k3s_ha package has no import cycle, counting the imports
made only for type checking, so every module can be read (and imported) before the ones that
use it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "components" / "k3s_ha"


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports (`from . import x` names module x when it is one)."""
    here = _module(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                if f"{target}.{alias.name}" in modules:
                    found.add(f"{target}.{alias.name}")
                elif target in modules:
                    found.add(target)
    return found - {here}


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module(p) for p in paths}
    return {_module(p): _imports(p, modules) for p in paths}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_the_graph_sees_the_packages_imports() -> None:
    graph = _graph()
    assert "k3s_ha.bootstrap.args" in graph["k3s_ha.bootstrap.settings"]
    assert "k3s_ha.validation" in graph["k3s_ha.passthrough"]


def test_a_cycle_is_found_when_there_is_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle() -> None:
    assert _cycle(_graph()) is None


def test_the_cloud_neutral_half_and_the_shared_checks_import_nothing_from_aws() -> None:
    """bootstrap/ runs on any hosts (issue 20.8: validation.py once mixed AWS rules into the
    checks the bootstrap imports)."""
    graph = _graph()
    neutral = [m for m in graph if m.startswith("k3s_ha.bootstrap") or m == "k3s_ha.validation"]
    assert {m: sorted(t for t in graph[m] if t.startswith("k3s_ha.aws")) for m in neutral} == {m: [] for m in neutral}
