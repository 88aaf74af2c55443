"""The package's shape and style: the bootstrap half never imports the AWS half (the README's
claim that K3sBootstrap runs anywhere), and ruff (lint and format) is clean."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "components" / "k3s_ha"


def _parse(text: str) -> ast.Module:
    """CPython 3.11's ast.parse can fail spuriously ("AST constructor recursion depth mismatch")
    while another thread of the test process builds an AST (python/cpython#106905); the same
    text parses on the next try."""
    for _ in range(4):
        try:
            return ast.parse(text)
        except SystemError:
            continue
    return ast.parse(text)


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports, relative imports resolved against its package."""
    package = path.relative_to(ROOT / "components").with_suffix("").parts[:-1]
    found: set[str] = set()
    for node in ast.walk(_parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def _aws_imports_in_bootstrap() -> dict[str, list[str]]:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(m for m in _imports(path) if m.startswith(("k3s_ha.aws", "pulumi_aws")))
        for path in (PACKAGE / "bootstrap").rglob("*.py")
    }
    return {k: v for k, v in offenders.items() if v}


def test_bootstrap_never_imports_the_aws_half() -> None:
    # In a fresh interpreter: CPython 3.11.7's ast.parse can fail with "AST constructor
    # recursion depth mismatch" after an earlier RecursionError in the same process
    # (python/cpython#106905, fixed in 3.11.8).
    code = "import json, test_code_layout as t; print(json.dumps(t._aws_imports_in_bootstrap()))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {}


def test_the_import_check_sees_relative_imports() -> None:
    """The check above resolves `from ..aws import x` as k3s_ha.aws (else it could never fail)."""
    assert "k3s_ha.aws.cluster" in _imports(PACKAGE / "__init__.py") or "k3s_ha.aws" in _imports(
        PACKAGE / "__init__.py"
    )
    assert "k3s_ha.bootstrap.remote" in _imports(PACKAGE / "aws" / "cluster.py")


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_ruff_check_is_clean() -> None:
    result = _ruff("check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = _ruff("format", "--check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr
