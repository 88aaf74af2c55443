"""Issue 20.7: what the program registers, committed and compared on every run, in the manner of
awsx's recorded upgrade tests. Each snapshot lists, per resource, its URN (name, type and
parent chain: a new URN is a new resource, so a rename re-runs a step or replaces a machine),
its parent, the names of what it depends on, for a remote step the script it runs, and the
inputs whose change replaces the resource under the same URN (`replacedBy`). A
difference fails the test with the lines that changed; when the change is meant, review it and
write the new snapshot with

    K3S_HA_UPDATE_SNAPSHOTS=1 .venv-test/bin/python -m pytest tests/engine/test_registration_snapshot.py

Programs: the dev stack at 3+2, the prod stack's shape (balancer, three zones, pinned image),
and the Python example (examples/python-in-vpc). The YAML example is checked against the
schema in test_examples.py; the engine does not run YAML programs.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import pytest
from support import engine
from support.helpers import SECRET_KEYS, config
from support.step_model import EVERY_INPUT, FORCE_NEW
from test_examples import PY_EXAMPLE, PY_NAME, SECRETS, STACK_CONFIG, USER_SET

SNAPSHOTS = Path(__file__).parent / "snapshots"
REMOTE = ("command:remote:Command", "command:remote:CopyToRemote")


def _programs() -> dict[str, engine.Run]:
    prod = config(
        agents=3,
        loadBalancer=True,
        availabilityZones=["eu-west-1a", "eu-west-1b", "eu-west-1c"],
        amiId="ami-0pinned0000000000",
    )
    return {
        "dev-3+2": lambda: engine.run(engine.main_program, config(agents=2), SECRET_KEYS),
        "prod": lambda: engine.run(engine.main_program, prod, SECRET_KEYS, stack="prod"),
        "example-python-in-vpc": lambda: engine.run(
            engine.program_file(PY_EXAMPLE / "__main__.py"),
            {**STACK_CONFIG, **USER_SET, **SECRETS},
            tuple(SECRETS),
            project=PY_NAME,
            stack="dev",
        ),
    }


def _force_new_inputs(reg) -> dict:
    """The inputs whose change replaces the resource (step_model.FORCE_NEW, read from the
    providers), as registered: a security group's new description replaces it, and every rule
    and instance that names it changes with it, though its URN stays the same."""
    keys = FORCE_NEW.get(reg.type, frozenset()) - {EVERY_INPUT}
    found = {}
    for key in sorted(keys):
        value = reg.inputs
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            found[key] = value
    return found


def snapshot(run: engine.Run) -> str:
    """One JSON object per line, sorted by URN: stable, and a diff names the resource."""
    name = {r.urn: r.name for r in run.registrations}
    lines = []
    for reg in sorted(run.registrations, key=lambda r: r.urn):
        entry = {
            "urn": reg.urn,
            "parent": name.get(reg.parent or "", reg.parent or None),
            "dependsOn": sorted(name.get(d, d) for d in reg.dependencies),
        }
        if reg.type == REMOTE[0]:
            entry["script"] = engine.script_name(reg.inputs.get("create") or "")
        forced = _force_new_inputs(reg)
        if forced:
            entry["replacedBy"] = forced
        lines.append(json.dumps(entry, sort_keys=True))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("program", sorted(_programs()))
def test_the_registrations_match_the_committed_snapshot(program: str) -> None:
    got = snapshot(_programs()[program]())
    path = SNAPSHOTS / f"registrations-{program}.jsonl"
    if os.environ.get("K3S_HA_UPDATE_SNAPSHOTS") == "1":
        path.write_text(got)
    assert path.exists(), f"no snapshot {path.name}: write it with K3S_HA_UPDATE_SNAPSHOTS=1"
    want = path.read_text()
    diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), path.name, "this run", n=0))
    assert got == want, (
        "the program registers something else than the committed snapshot: a changed URN is a new "
        "resource (a step re-runs, a machine is replaced). If it is meant, review and update the "
        f"snapshot (K3S_HA_UPDATE_SNAPSHOTS=1):\n{diff}"
    )


def test_a_renamed_step_shows_in_the_snapshot() -> None:
    """The comparison sees what it is for: a step under another name is another URN."""
    run = _programs()["dev-3+2"]()
    before = snapshot(run)
    reg = run.named("dev-members")
    reg.urn = reg.urn.replace("dev-members", "dev-member-record")
    assert snapshot(run) != before and "dev-member-record" in snapshot(run)
