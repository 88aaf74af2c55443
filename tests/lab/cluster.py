"""A K3sBootstrap program pointed at lab hosts, run through the mock engine and then for real
over SSH by the driver; plus the checks the lab tests share."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import yaml
from k3s_ha import DEFAULT_K3S_VERSION, K3sBootstrap
from k3s_ha.aws import cloud_integration
from k3s_ha.bootstrap import node_config
from k3s_ha.versions import parse_version
from support import engine, step_model

from lab import driver
from lab.harness import SUBNET, Host, Lab

READY_TIMEOUT_SECONDS = 120
ETCDCTL = "ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379"
FIGURES: dict[str, dict] = {}


def record(scenario: str, **figures) -> None:
    """Keep a scenario's figures; merged into $K3S_HA_LAB_FIGURES (JSON) when that is set,
    under a lock: scenarios in parallel (pytest-xdist workers) share the file."""
    FIGURES.setdefault(scenario, {}).update(figures)
    path = os.environ.get("K3S_HA_LAB_FIGURES")
    if not path:
        return
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read()
        merged = json.loads(text) if text.strip() else {}
        for name, values in FIGURES.items():
            merged.setdefault(name, {}).update(values)
        f.seek(0)
        f.truncate()
        f.write(json.dumps(merged, indent=2, sort_keys=True) + "\n")


LAB_CLUSTER_ID = "lab-dev-lab"


def cloud_args(version: str) -> dict:
    """K3sBootstrap arguments with the AWS integration's K3s side, as K3sCluster passes them."""
    return {
        "server_config": dict(cloud_integration.SERVER_SETTINGS),
        "agent_config": dict(cloud_integration.AGENT_SETTINGS),
        "manifests": cloud_manifests(version),
    }


def cloud_manifests(version: str) -> list[dict]:
    image = cloud_integration.ccm_image(parse_version(version))
    return list(
        cloud_integration.manifests(LAB_CLUSTER_ID, image, "lab-region-1", "AKIALABSTANDIN", "lab-secret-access-key")
    )


@dataclass
class Cluster:
    lab: Lab
    servers: list[str]
    """The program's server names, in order (the first one initialises the cluster)."""
    agents: list[str]
    version: str = DEFAULT_K3S_VERSION
    machine_ids: bool = False
    """Give every host a `replace_on` (as K3sCluster does with instance ids): the lab host it
    runs on and how often that host was re-imaged."""
    machines: dict[str, str] = field(default_factory=dict)
    """Program name -> the lab host it runs on now (default: the host of the same name)."""
    images: dict[str, int] = field(default_factory=dict)
    """Lab host -> how often it was re-imaged."""
    key: Path | None = None
    """The private key the program logs in with (default: the lab's first key)."""
    ready_timeout: int = READY_TIMEOUT_SECONDS
    registration: str | None = None
    """K3sBootstrap's `registration_address` (None: the first server's address)."""
    cloud: bool = False
    """Run the program with K3sCluster's AWS cloud integration on the K3s side (aws/cloud_integration.py):
    its server and agent settings (cloud-provider=external) and its manifests, with a made-up
    region and access key. The stand-in's cloud controller initialises the Nodes."""
    registered_before_cloud: set[str] = field(default_factory=set)
    """Node names registered before the integration was turned on: they keep K3s's own
    `k3s://` providerID until their machine is replaced (docs/aws.md)."""
    recorded: engine.Run | None = None
    """The program's registrations as of the last `up` (the stack's state)."""
    mocks: driver.LabMocks | None = None

    def machine(self, name: str) -> Host:
        """The lab host a program name runs on now."""
        return self.lab.hosts[self.machines.get(name, name)]

    def replace_on(self, name: str) -> str:
        host = self.machine(name)
        return f"{host.name}#{self.images.get(host.name, 0)}"

    def bootstrap_args(self) -> dict:
        """The K3sBootstrap arguments, plain (the key not yet a secret): JSON for a program of
        another version of the project (test_lab_migration.py)."""

        def host_args(name: str) -> dict:
            args = {"name": name, "address": self.machine(name).address}
            if self.machine_ids:
                args["replace_on"] = self.replace_on(name)
            return args

        return {
            "servers": [host_args(n) for n in self.servers],
            "agents": [host_args(n) for n in self.agents],
            "ssh": {"user": self.lab.user, "private_key": (self.key or self.lab.key).read_text()},
            "k3s_version": self.version,
            "install_url": self.lab.install_url,
            "ready_timeout_seconds": self.ready_timeout,
            # The removal key is let in from the lab's network only (the hosts and the hub,
            # where the driver logs in with the operator's key, as Pulumi would).
            "removal_key_sources": [f"{SUBNET}.0/24"],
            **({"registration_address": self.registration} if self.registration else {}),
            **(cloud_args(self.version) if self.cloud else {}),
        }

    def program(self):
        args = self.bootstrap_args()

        def program():
            # The secret is made inside the program: Outputs belong to the engine's event loop.
            ssh = {**args["ssh"], "private_key": pulumi.Output.secret(args["ssh"]["private_key"])}
            bootstrap = K3sBootstrap("lab", {**args, "ssh": ssh})
            return {"kubeconfig": bootstrap.kubeconfig}

        return program

    def record_program(self, replace: tuple[str, ...] = ()) -> engine.Run:
        """Run the program in the mock engine (its outputs agreeing with the lab)."""
        self.mocks = driver.LabMocks(self.lab, previous=self.recorded, replace=frozenset(replace))
        return engine.run(self.program(), mocks=self.mocks)

    def run(self, waves: list[list[driver.Action]], check=None) -> driver.Report:
        """Run waves; a failure carries the services' logs, which say why a step waited in vain."""
        try:
            return driver.run_waves(self.lab, waves, timeout=self.ready_timeout + 60, check=check)
        except driver.StepFailed as failed:
            failed.args = (f"{failed.args[0]}\n{self.diagnostics()}",)
            raise

    def up(
        self,
        servers: list[str] | None = None,
        agents: list[str] | None = None,
        version: str | None = None,
        key: Path | None = None,
        invariant=None,
        replace: tuple[str, ...] = (),
    ) -> driver.Report:
        """`pulumi up` with the given changes (none: the first up, or a rerun): the step
        model's apply waves, then its delete waves. When a step fails, the state becomes what
        the engine would have recorded (step_model.state_after_failure) and StepFailed is raised.
        `invariant()` (returns what is wrong, or None) is checked after every step. `replace`:
        resource names to replace although unchanged (`pulumi up --replace URN`)."""
        self.servers = self.servers if servers is None else servers
        self.agents = self.agents if agents is None else agents
        self.version = version or self.version
        self.key = key or self.key
        after = self.record_program(replace)
        urns = [r.urn for r in after.registrations if r.name in replace]
        assert len(urns) == len(replace), f"no resource named {replace}"
        plan = step_model.plan_up(self.recorded, after, replace=urns)
        applies, deletes = driver.plan_waves(plan)
        try:

            def check(outcome: driver.Outcome) -> str | None:
                return self.mocks.check(outcome) or (invariant() if invariant else None)

            report = self.run(applies, check=check)
        except driver.StepFailed as failed:
            succeeded = {o.action.urn for o in failed.report.outcomes if o.status == 0}
            self.recorded = step_model.state_after_failure(plan, succeeded)
            raise
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

    def new_machine(self, name: str, host: str | None = None) -> Host:
        """`name` gets a new machine: lab host `host` (a new address and host name, like a new
        EC2 instance), or without `host` its own host re-imaged (same address and host name).
        Returns the old machine (the re-imaged host is the same Host)."""
        old = self.machine(name)
        if host is None:
            self.lab.reimage(old)
            self.images[old.name] = self.images.get(old.name, 0) + 1
        else:
            self.machines[name] = host
        return old

    # --- looking at the cluster -----------------------------------------------------------

    def host(self, name: str):
        return self.lab.hosts[name]

    def root(self, name: str, command: str, timeout: float = 60):
        return self.lab.root_on(self.host(name), command, timeout=timeout)

    def members(self, on: str) -> list[dict]:
        """etcd's member list, asked with the real etcdctl on server `on`."""
        result = self.root(on, f"{ETCDCTL} member list -w json")
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

    def check(self, secure_tokens: bool = True) -> None:
        """What the README says the cluster is after an `up`: one etcd voter per configured
        server and nothing else, every member healthy (full quorum), a Ready Node per
        configured host running the configured version (servers etcd voters), and each
        node's config.yaml (0600) joining through the registration address (the first
        server's) with the right token (with `secure_tokens`, the form that carries the cluster
        CA's hash; a cluster of a release before issue 18.2 has the short form); the first
        server initialised the cluster or, rebuilt, joined one of the others."""
        servers = [self.machine(n) for n in self.servers]
        agents = [self.machine(n) for n in self.agents]
        ask = servers[-1].name
        members = self.members(ask)
        assert sorted(m["name"].rsplit("-", 1)[0] for m in members) == sorted(h.hostname for h in servers), members
        assert not any(m.get("isLearner") for m in members), members
        health = self.root(ask, f"{ETCDCTL} endpoint health --cluster")
        healthy = (health.stdout + health.stderr).count("is healthy")
        assert health.status == 0 and healthy == len(servers), health
        nodes = self.nodes(ask)
        assert sorted(nodes) == sorted(h.hostname for h in [*servers, *agents]), nodes
        for name, node in nodes.items():
            assert node["Ready"] == "True" and node["version"] == self.version, (name, node)
        assert all(nodes[h.hostname]["EtcdIsVoter"] == "True" for h in servers), nodes

        configs = {}
        for host in [*servers, *agents]:
            path = host.path("/etc/rancher/k3s/config.yaml")
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, host.name
            configs[host.name] = yaml.safe_load(path.read_text())
        first = configs[servers[0].name]
        registration = f"https://{servers[0].address}:6443"
        if "server" in first:
            assert first["server"] in {f"https://{h.address}:6443" for h in servers[1:]}, first["server"]
        else:
            assert first.get("cluster-init") is True, first
        for host in [*servers[1:], *agents]:
            assert configs[host.name]["server"] == registration, (host.name, configs[host.name])
        # Every join carries the cluster CA's hash (issue 18.2): the SHA-256 of the server-ca.crt
        # the servers hold, which K3s checks against /cacerts before it sends the password.
        ca = hashlib.sha256(servers[0].path("/var/lib/rancher/k3s/server/tls/server-ca.crt").read_bytes()).hexdigest()
        password = first["token"].rsplit(":", 1)[-1]
        assert first["token"] in (password, f"K10{ca}::server:{password}"), first["token"]
        server_form, agent_form = (f"K10{ca}::server:", f"K10{ca}::node:") if secure_tokens else ("", "")
        assert all(configs[h.name]["token"] == f"{server_form}{password}" for h in servers[1:])
        assert all(configs[h.name]["token"] == f"{agent_form}{first['agent-token']}" for h in agents)
        assert first["agent-token"] != password
        if self.cloud:
            self.check_cloud(ask)

    def check_cloud(self, ask: str) -> None:
        """The AWS integration's K3s side (issue 19.2), as the stand-in received it: every server
        wrote and applied the same k3s-ha.yaml, the manifests Python rendered; every node's
        kubelet ran with cloud-provider=external (K3s's k3s.io/node-args annotation), the servers
        with their own cloud controller off; and the cloud controller initialised every Node
        (providerID aws:///..., no uninitialized taint) before the `up` finished; a Node
        registered before the integration keeps its k3s:// providerID."""
        rendered = node_config.render_manifests(cloud_manifests(self.version))
        checksum = hashlib.sha256(rendered.encode()).hexdigest()
        for name in self.servers:
            host = self.machine(name)
            path = host.path("/var/lib/rancher/k3s/server/manifests/k3s-ha.yaml")
            assert path.exists() and path.read_text() == rendered, f"{name}: k3s-ha.yaml is not what Python rendered"
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
            applied = self.root(ask, f"{ETCDCTL} get /k3s-standin/addons/{host.hostname}/k3s-ha --print-value-only")
            record = json.loads(applied.stdout or "{}")
            assert record.get("checksum") == checksum, (name, applied.stdout, applied.stderr)
            assert "HelmChart/kube-system/aws-cloud-controller-manager" in record["objects"], record
        listed = self.root(ask, "k3s kubectl get nodes -o json")
        assert listed.status == 0, listed.stderr
        servers = {self.machine(n).hostname for n in self.servers}
        for item in json.loads(listed.stdout)["items"]:
            name = item["metadata"]["name"]
            args = json.loads(item["metadata"]["annotations"]["k3s.io/node-args"])
            flags = list(zip(args[1::2], args[2::2]))
            assert ("--kubelet-arg", "cloud-provider=external") in flags, (name, args)
            assert (("--disable-cloud-controller", "true") in flags) == (name in servers), (name, args)
            scheme = "k3s://" if name in self.registered_before_cloud else "aws:///"
            assert item["spec"]["providerID"].startswith(scheme), (name, item["spec"])
            taints = [t["key"] for t in item["spec"].get("taints", [])]
            assert cloud_integration.UNINITIALIZED_TAINT not in taints, (name, taints)

    def wait_for(self, what: str, check, seconds: float = 60):
        deadline = time.time() + seconds
        while True:
            value = check()
            if value:
                return value
            assert time.time() < deadline, f"gave up after {seconds:.0f}s waiting for {what}"
            time.sleep(1)

    def diagnostics(self) -> str:
        """The end of every unit's log; whole logs go to $K3S_HA_LAB_LOGS/<host>.<unit>.log
        when that is set (the lab's own files go with its teardown)."""
        keep = os.environ.get("K3S_HA_LAB_LOGS")
        if keep:
            os.makedirs(keep, exist_ok=True)
            for host in self.lab.hosts.values():
                for unit in ("k3s", "k3s-agent"):
                    text = self.lab.unit_log(host, unit)
                    if text:
                        Path(keep, f"{host.name}.{unit}.log").write_text(text)
        parts = []
        for host in self.lab.hosts.values():
            for unit in ("k3s", "k3s-agent"):
                text = self.lab.unit_log(host, unit)
                if text:
                    parts.append(f"--- {host.name} {unit}\n{text[-1500:]}")
        return "\n".join(parts)
