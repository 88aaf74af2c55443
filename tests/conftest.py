"""Fixtures shared by the test modules (components/ is on the path through pytest.ini)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_node import Node, make_node


@pytest.fixture
def node(tmp_path: Path) -> Node:
    """A fake machine for the node scripts: stand-in tools first on PATH, per-test dirs."""
    return make_node(tmp_path)
