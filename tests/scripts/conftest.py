"""Fixtures of the script tier: a fake machine per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fake_node import Node, make_node


@pytest.fixture
def node(tmp_path: Path) -> Node:
    """A fake machine for the node scripts: stand-in tools first on PATH, per-test dirs."""
    return make_node(tmp_path)
