"""The command text sent to nodes: only the lib.sh functions a script uses, no comments."""

import re

import pytest
from k3s_ha.bootstrap.commands import SCRIPT_DIR, remote_command, script_body

SCRIPTS = sorted(p.stem for p in SCRIPT_DIR.glob("*.sh") if p.stem != "lib")


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_function_a_script_calls_is_sent_with_it(name):
    body = script_body(name)
    defined = set(re.findall(r"^([a-z_][a-z0-9_]*)\(\) \{$", body, re.MULTILINE))
    called = set(re.findall(r"\b(k3s_ha_[a-z0-9_]+)\b", body))
    assert called <= defined, sorted(called - defined)


@pytest.mark.parametrize("name", SCRIPTS)
def test_bodies_carry_no_comments_and_stay_small(name):
    body = script_body(name)
    assert not any(line.lstrip().startswith("#") for line in body.splitlines())
    assert body.startswith("set -euo pipefail\n")
    # Stored in the state for every node step: a few KB, not the whole library each time.
    assert len(remote_command(name, {})) < 0.6 * len((SCRIPT_DIR / "lib.sh").read_text())


def test_unused_functions_are_left_out():
    assert "k3s_ha_check_upgrade" not in script_body("print-kubeconfig")
    assert "k3s_ha_check_upgrade()" in script_body("install-k3s")
