"""A K3sBootstrap program pointed at lab hosts, run through the mock engine and then for real
over SSH by the driver; plus the checks the lab tests share."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import engine
import pulumi
from k3s_ha import DEFAULT_K3S_VERSION, K3sBootstrap

from lab import driver
from lab.harness import Lab

READY_TIMEOUT_SECONDS = 120
STEP_TIMEOUT_SECONDS = READY_TIMEOUT_SECONDS + 60
FIGURES: dict[str, dict] = {}


def record(scenario: str, **figures) -> None:
    """Keep a scenario's figures; written to $K3S_HA_LAB_FIGURES (JSON) when that is set."""
    FIGURES.setdefault(scenario, {}).update(figures)
    path = os.environ.get("K3S_HA_LAB_FIGURES")
    if path:
        Path(path).write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")


@dataclass
class Cluster:
    lab: Lab
    servers: list[str]
    agents: list[str]
    version: str = DEFAULT_K3S_VERSION
    recorded: engine.Run | None = None
    """The program's registrations as of the last `up` (the stack's state)."""
    mocks: driver.LabMocks | None = None

    def program(self):
        lab = self.lab

        def program():
            bootstrap = K3sBootstrap(
                "lab",
                {
                    "servers": [{"name": n, "address": lab.hosts[n].address} for n in self.servers],
                    "agents": [{"name": n, "address": lab.hosts[n].address} for n in self.agents],
                    "ssh": {"user": lab.user, "private_key": pulumi.Output.secret(lab.key.read_text())},
                    "k3s_version": self.version,
                    "install_url": lab.install_url,
                    "ready_timeout_seconds": READY_TIMEOUT_SECONDS,
                },
            )
            return {"kubeconfig": bootstrap.kubeconfig}

        return program

    def record_program(self) -> engine.Run:
        """Run the program in the mock engine (its outputs agreeing with the lab)."""
        self.mocks = driver.LabMocks(self.lab)
        return engine.run(self.program(), mocks=self.mocks)

    def run(self, waves: list[list[driver.Action]], check=None) -> driver.Report:
        """Run waves; a failure carries the services' logs, which say why a step waited in vain."""
        try:
            return driver.run_waves(self.lab, waves, timeout=STEP_TIMEOUT_SECONDS, check=check)
        except driver.StepFailed as failed:
            failed.args = (f"{failed.args[0]}\n{self.diagnostics()}",)
            raise

    def up(self, servers: list[str] | None = None, version: str | None = None) -> driver.Report:
        """`pulumi up` with the given changes (none: the first up, or a rerun): the step
        model's apply waves, then its delete waves."""
        self.servers = servers or self.servers
        self.version = version or self.version
        after = self.record_program()
        applies, deletes = driver.up_plan(self.recorded, after)
        report = self.run(applies, check=self.mocks.check)
        self.recorded = after
        deleted = self.run(deletes)
        report.outcomes += deleted.outcomes
        report.seconds += deleted.seconds
        report.max_parallel = max(report.max_parallel, deleted.max_parallel)
        return report

    def destroy(self) -> driver.Report:
        report = self.run(driver.destroy_plan(self.recorded))
        self.recorded = None
        return report

    # --- looking at the cluster -----------------------------------------------------------

    def host(self, name: str):
        return self.lab.hosts[name]

    def root(self, name: str, command: str, timeout: float = 60):
        return self.lab.root_on(self.host(name), command, timeout=timeout)

    def members(self, on: str) -> list[dict]:
        """etcd's member list, asked with the real etcdctl on server `on`."""
        result = self.root(on, "ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 member list -w json")
        assert result.status == 0, result.stderr
        return json.loads(result.stdout).get("members", [])

    def nodes(self, on: str) -> dict[str, dict]:
        """Node name -> {condition type: status, 'version': kubeletVersion}, from server `on`'s API."""
        result = self.root(on, "k3s kubectl get nodes -o json")
        assert result.status == 0, result.stderr
        found = {}
        for item in json.loads(result.stdout)["items"]:
            conditions = {c["type"]: c["status"] for c in item["status"]["conditions"]}
            found[item["metadata"]["name"]] = {**conditions, "version": item["status"]["nodeInfo"]["kubeletVersion"]}
        return found

    def wait_for(self, what: str, check, seconds: float = 60):
        deadline = time.time() + seconds
        while True:
            value = check()
            if value:
                return value
            assert time.time() < deadline, f"gave up after {seconds:.0f}s waiting for {what}"
            time.sleep(1)

    def diagnostics(self) -> str:
        parts = []
        for host in self.lab.hosts.values():
            for unit in ("k3s", "k3s-agent"):
                text = self.lab.unit_log(host, unit)
                if text:
                    parts.append(f"--- {host.name} {unit}\n{text[-1500:]}")
        return "\n".join(parts)
