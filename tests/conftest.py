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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The lab's scenarios first, the longest files first: pytest-xdist hands out its first
    batch round robin, so each worker starts on a scenario (which mostly waits on K3s's
    timers) and the quick tiers fill the gaps; last, they would pile up on one worker."""
    weight = {"test_lab_day2.py": 0, "test_lab_migration.py": 1, "test_lab_cluster.py": 2}
    lab = [i for i in items if i.get_closest_marker("lab")]
    rest = [i for i in items if not i.get_closest_marker("lab")]
    lab.sort(key=lambda i: weight.get(i.path.name, 3))
    items[:] = lab + rest
