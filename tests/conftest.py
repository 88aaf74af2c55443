"""Fixtures shared by the test modules (components/ is on the path through pytest.ini)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_node import Node, make_node
from k3s_ha import operator_address

# The lab's fixtures (make_lab, ...), for every lab test file.
pytest_plugins = ["lab.fixtures"]

# What `auto` in sshAllowedCidrs / apiAllowedCidrs resolves to in every test (a documentation
# address): tests never ask checkip.amazonaws.com.
OPERATOR_ADDRESS = "198.51.100.23"


@pytest.fixture
def node(tmp_path: Path) -> Node:
    """A fake machine for the node scripts: stand-in tools first on PATH, per-test dirs."""
    return make_node(tmp_path)


@pytest.fixture(autouse=True)
def operator_address_stub(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replaces the checkip lookup for the whole test; the list records each lookup."""
    lookups: list[str] = []

    def stub() -> str:
        lookups.append(OPERATOR_ADDRESS)
        return OPERATOR_ADDRESS

    monkeypatch.setattr(operator_address, "resolver", stub)
    return lookups
