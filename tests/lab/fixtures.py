"""Fixtures every lab test file shares (loaded by tests/conftest.py as a pytest plugin)."""

from __future__ import annotations

import time

import pytest

from lab.cluster import record
from lab.harness import Lab, unavailable_reason


@pytest.fixture
def scenario_clock(request):
    """Each lab test's whole wall time: lab setup, bring-up, the scenario and teardown."""
    started = time.time()
    yield
    record(f"test {request.node.name}", wall_seconds=round(time.time() - started, 1))


@pytest.fixture(scope="session")
def lab_possible() -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def make_lab(lab_possible, scenario_clock):
    """make_lab(names) -> a Lab with those hosts, closed after the test (also on failure)."""
    labs: list[Lab] = []

    def make(names: list[str]) -> Lab:
        lab = Lab(names)
        labs.append(lab)
        return lab.__enter__()

    yield make
    for lab in labs:
        lab.close()


def processes(lab: Lab, host) -> dict[int, str]:
    """pid -> command line of every process in the host's namespaces."""
    found = {}
    for pid in lab.pids(host.netns):
        try:
            found[pid] = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            pass
    return found


def k3s_processes(lab: Lab, host) -> list[str]:
    """Command lines of the host's k3s (the staged copy under the data dir) and etcd processes."""
    return [c for c in processes(lab, host).values() if c.startswith("etcd ") or "/rancher/k3s/data/" in c]
