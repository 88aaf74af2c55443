"""Fixtures every tier shares (components/ and tests/ are on the path through pytest.ini; the
support code is the `support` package). Each tier folder's conftest.py adds its own."""

from __future__ import annotations

import pytest
from k3s_ha import operator_address
from support.helpers import OPERATOR_ADDRESS


@pytest.fixture(autouse=True)
def operator_address_stub(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replaces the checkip lookup for the whole test; the list records each lookup."""
    lookups: list[str] = []

    def stub() -> str:
        lookups.append(OPERATOR_ADDRESS)
        return OPERATOR_ADDRESS

    monkeypatch.setattr(operator_address, "resolver", stub)
    return lookups
