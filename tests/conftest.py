"""Fixtures every tier shares (components/ and tests/ are on the path through pytest.ini; the
support code is the `support` package). Each tier folder's conftest.py adds its own."""

from __future__ import annotations

import os

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


# How many workers (tests/run.sh) get lab scenarios: the others start on the quick tiers.
LAB_WORKERS = 6


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each worker's share of the tests, laid out for pytest-xdist's worksteal scheduler. It
    hands worker i the i-th contiguous slice of this order, and an idle worker steals the END
    of the longest queue. So the slices of the first LAB_WORKERS workers begin with their lab
    scenarios, the longest files first (a scenario mostly waits on K3s's timers and stays where
    it is), and end with quick tests, which the other workers, starting on quick tests alone,
    steal while the scenarios wait: the quick tiers fill the CPU the lab leaves idle."""
    weight = {"test_lab_day2.py": 0, "test_lab_migration.py": 1, "test_lab_cluster.py": 2}
    lab = [i for i in items if i.get_closest_marker("lab")]
    rest = [i for i in items if not i.get_closest_marker("lab")]
    lab.sort(key=lambda i: weight.get(i.path.name, 3))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1 or not lab:
        items[:] = lab + rest
        return
    lab_workers = min(LAB_WORKERS, workers - 1)
    size = -(-len(items) // workers)  # the slice worksteal's first round gives each worker
    slices: list[list[pytest.Item]] = [lab[w::lab_workers] if w < lab_workers else [] for w in range(workers)]
    quick = iter(rest)
    for share in slices:
        share.extend(item for _, item in zip(range(max(0, size - len(share))), quick))
    slices[-1].extend(quick)
    items[:] = [item for share in slices for item in share]
