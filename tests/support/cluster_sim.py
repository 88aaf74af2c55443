"""A small K3s cluster simulator (a stand-in for real nodes, not K3s): replays a step_model
Plan on machines and etcd clusters, reading what each step does from its command text, and
checks the invariants a day-2 change must keep.

    result = simulate(plan_up(before, after), dead=("dev-server-1",))
    result.violations   # [Violation(invariant, message, step)], empty when all hold
    result.timeline     # [Event(step, host, what)], in execution order

What a step does is read from the step itself: the script is the last word of the command
text (`sudo -n env K=V ... bash -c '...' k3s-ha-<script>`), its parameters are the env
words, a server's config.yaml is its stdin (`cluster-init: true` or `server: https://...`).
The machine a command runs on is the one behind its connection host: an EC2 instance (the
old or the new one of a replacement, by which side of the plan the step acts with) or, for
K3sBootstrap hosts without instances, whatever machine answers at that address.

The node scripts, as modelled here (components/k3s_ha/bootstrap/scripts/*.sh):
- install-k3s: puts K3S_VERSION on disk and does not start or restart anything
  (INSTALL_K3S_SKIP_START); a running k3s keeps running the version it started with: the
  multicall binary runs a copy extracted under /var/lib/rancher/k3s/data/<hash>
  (k3s-io/k3s cmd/k3s/main.go stageAndRun), so replacing /usr/local/bin/k3s changes nothing
  until a restart. install.sh disables the unit (real-behaviour.md).
- start-server / start-agent: a server with etcd data rejoins its own cluster whatever the
  config says (k3s ignores cluster-init then); a fresh one with `cluster-init` first probes
  K3S_HA_PEERS and joins the first that answers, else starts a new cluster (or, with
  K3S_HA_CLUSTER_INIT=never, fails without starting anything); `server:` joins
  the cluster behind that address. A server that joins is a member add, which real etcd
  refuses while any voting member is dead or down (its strict reconfig check, see
  `_dead_voters`): the join fails and the server is no member. k3s is (re)started when config.yaml changed, when it is
  not running, or when the script can tell that the binary changed: see `detects_upgrade`.
- remove-node and uninstall-k3s, which the program no longer registers (their files are
  gone) but a state written by an older k3s-ha still holds as the `delete` of its membership
  and install steps (a delete runs the text in the state, real-behaviour.md):
  remove-node, on the holder server, `kubectl delete node NAME`, which also removes a
  server's etcd member; it needs a working API on the holder, i.e. a holder that is still a
  member of the cluster (else it warns and removes nothing). uninstall-k3s stops k3s and
  wipes it and its data from the machine.
- evict-node (on a server that is a member, before a node with a new machine starts): a
  dead member at the node's address (the Node its old machine left) is deleted and, for a
  server's evict, every dead server of the holder's cluster too (their Nodes, and so their
  etcd members); a server that is down but alive answers SSH and is left alone. On a holder that is not a running member it does nothing (no
  API there).
- record-members (on the first server, before any agent starts): a rebuilt agent's stale
  Node (its old machine, still a member) is deleted. remove-members (on the first server,
  after every start): the nodes on its stdin (the leaving nodes step_model.model_leaving
  worked out, mapped through the old run's start steps) leave, one at a time: a live one is
  stopped, its Node deleted and K3s uninstalled; a dead one's Node (and so its etcd member)
  is deleted. Both need a holder that is a running member.
- An instance stop/start takes the machine down for the step; k3s comes back at boot only
  if its unit is enabled, running whatever binary is on disk.

Not modelled: failures and timeouts (every step succeeds; a join with nothing behind its
address just does not happen), step durations (only the plan's order), quorum arithmetic
(the invariant is the stricter "one server at a time"), etcd learners (beyond the
strict reconfig check on their add), the ~40 s before a dead node shows NotReady (a machine
marked dead is dead for longer), drains and pods, the
API answering through a load balancer (it resolves to the cluster most running servers are
in), node-name clashes ("duplicate node name", "Node password rejected": a host re-imaged
at the same address keeps its name and simply joins), preview. A K3sBootstrap host whose
`replace_on` changed is taken as re-imaged by the user before the `up`: a new machine at the
same address and with the same name, the old one gone. `dead` names the machines that
died before the `up` (instance resource names, or K3sBootstrap host addresses): they stay
members of the cluster, neither running nor reachable, until something removes them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import yaml
from k3s_ha.bootstrap.bundle import SCRIPT_DIR, library_text
from k3s_ha.bootstrap.commands import parse_command
from k3s_ha.bootstrap.node_config import MANIFESTS_SEPARATOR, REGISTRIES_SEPARATOR
from k3s_ha.bootstrap.steps.membership import NODES_END

from support import step_model as sm
from support.engine import Registration, Run, member_rows

ONE_SERVER_AT_A_TIME = "at most one server down, restarting or leaving at any moment"
NO_CLUSTER_INIT_AFTER_FIRST_UP = "cluster-init never runs after the first up"
REMOVAL_FROM_A_MEMBER = "each removal runs on a host that is still in the cluster"
OLD_DELETES_ON_OLD_MACHINES = "no old step's delete runs against a new machine"
SERVERS_BEFORE_AGENTS = "servers restart before agents"
RUNS_WANTED_VERSION = "after the up every node runs the configured K3s version"
ONE_CLUSTER = "after the up every configured node is in one cluster, with no dead members"

INVARIANTS = (
    ONE_SERVER_AT_A_TIME,
    NO_CLUSTER_INIT_AFTER_FIRST_UP,
    REMOVAL_FROM_A_MEMBER,
    OLD_DELETES_ON_OLD_MACHINES,
    SERVERS_BEFORE_AGENTS,
    RUNS_WANTED_VERSION,
    ONE_CLUSTER,
)

OLD, NEW = "old", "new"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"

# How a start script could know that the running k3s is older than the binary on disk: the
# running version is the Node's status.nodeInfo.kubeletVersion (real-behaviour.md, K3s).
# The current check reads /proc/PID/exe for " (deleted)", which never appears because the
# process runs the extracted copy (cmd/k3s/main.go stageAndRun), so it never fires. When a
# fix compares versions some other way, teach this function that way.
UPGRADE_EVIDENCE = ("kubeletVersion",)


def detects_upgrade(command_text: str) -> bool:
    """Whether the script the command runs (read from the bundle, with lib.sh) compares the
    running version: the command names the script, the bundle holds its text."""
    script, _params = script_of(command_text)
    text = library_text() + (SCRIPT_DIR / f"{script}.sh").read_text()
    return any(marker in text for marker in UPGRADE_EVIDENCE)


@dataclass
class Machine:
    key: tuple
    host: str
    hostname: str
    alive: bool = True
    installed: str | None = None
    running: str | None = None
    enabled: bool = False
    role: str | None = None
    config: str | None = None
    cluster: int | None = None  # whose etcd data it holds (servers) or which it joined (agents)
    member: bool = False


@dataclass
class Disruption:
    step: sm.Step | None
    machine: Machine
    cluster: int
    what: str
    lasting: bool = False  # from this step on, for ever (a member that died without leaving)
    until: sm.Step | None = None  # a lasting one ends when this step removed the dead member


@dataclass
class Event:
    step: sm.Step
    host: str
    what: str


@dataclass
class Violation:
    invariant: str
    message: str
    step: sm.Step | None = None

    def __repr__(self) -> str:
        return f"Violation({self.invariant!r}: {self.message})"


@dataclass
class Result:
    timeline: list[Event]
    violations: list[Violation]
    machines: dict[tuple, Machine]
    clusters: set[int]
    restarts: list[tuple[sm.Step, Machine]] = field(default_factory=list)

    def broken(self) -> set[str]:
        return {v.invariant for v in self.violations}

    def of(self, invariant: str) -> list[Violation]:
        return [v for v in self.violations if v.invariant == invariant]


def script_of(text: str) -> tuple[str, dict[str, str]]:
    """(`install-k3s`, {"K3S_VERSION": ...}) from a command text (commands.parse_command)."""
    parsed = parse_command(text)
    if parsed is None:
        raise ValueError(f"not a k3s-ha command: {text[:80]!r}")
    return parsed


def _address_of(url: str) -> str:
    return re.sub(r"^https://|:\d+$", "", url)


class _Simulation:
    def __init__(self, plan: sm.Plan, dead: tuple[str, ...] = ()):
        self.plan = plan
        self.dead = dead
        self.runs = {OLD: plan.before, NEW: plan.after}
        self.machines: dict[tuple, Machine] = {}
        self.at_address: dict[str, tuple] = {}
        self.clusters: set[int] = set()
        self.timeline: list[Event] = []
        self.violations: list[Violation] = []
        self.disruptions: list[Disruption] = []
        self.restarts: list[tuple[sm.Step, Machine]] = []
        self.first_up = plan.before is None or not any(r.type == sm.COMMAND for r in plan.before.registrations)
        self.cluster_inits = 0
        self.initial_at_address: dict[str, tuple] = {}

    # --- where things run ---------------------------------------------------------------

    def _instance_by_address(self, run: Run | None, address: str) -> Registration | None:
        for reg in run.registrations if run else []:
            if reg.type == sm.INSTANCE and address in (reg.outputs.get("publicIp"), reg.outputs.get("privateIp")):
                return reg
        return None

    def _is_load_balancer(self, run: Run | None, address: str) -> bool:
        return any(
            r.type == LOAD_BALANCER and r.outputs.get("dnsName") == address for r in (run.registrations if run else [])
        )

    def machine_at(self, address: str, side: str, create: bool = False) -> Machine | None:
        run = self.runs[side]
        instance = self._instance_by_address(run, address)
        if instance is not None:
            generation = 1 if side == NEW and instance.urn in self.plan.replaced else 0
            key = ("instance", instance.urn, generation)
            if key not in self.machines and create:
                self._new_machine(key, instance.name)
            return self.machines.get(key)
        key = self.at_address.get(address)
        if side == OLD and address in self.initial_at_address:
            key = self.initial_at_address[address]  # what the old state was made for
        if key is None and create:
            # A K3sBootstrap host: a machine the user brings, found at its address.
            key = ("address", address, 0)
            self._new_machine(key, address, hostname=f"host-{address}")
            self.at_address[address] = key
        return self.machines.get(key) if key else None

    def _new_machine(self, key: tuple, host: str, hostname: str | None = None) -> Machine:
        # An EC2 machine is named after its (new) private address; a re-imaged host keeps its name.
        machine = Machine(key, host, hostname or "ip-" + hashlib.sha256(repr(key).encode()).hexdigest()[:8])
        self.machines[key] = machine
        return machine

    def _start_of_node(self, node: str, side: str) -> Machine | None:
        """The machine whose start step printed `node` in that side's run."""
        for reg in self.runs[side].registrations if self.runs[side] else []:
            if reg.type == sm.COMMAND and str(reg.outputs.get("stdout", "")).strip() == node:
                return self.machine_at(reg.inputs["connection"]["host"], side)
        return None

    def _cluster_behind(self, address: str, side: str, joiner: Machine) -> int | None:
        if self._is_load_balancer(self.runs[side], address):
            counts: dict[int, int] = {}
            for m in self.machines.values():
                if m is not joiner and m.alive and m.member and m.running and m.role == "server":
                    counts[m.cluster] = counts.get(m.cluster, 0) + 1  # type: ignore[index]
            return max(counts, key=lambda c: counts[c]) if counts else None
        target = self.machine_at(address, side)
        if (
            target
            and target is not joiner
            and target.alive
            and target.member
            and target.running
            and target.role == "server"
        ):
            return target.cluster
        return None

    # --- the initial world of a day-2 `up` ----------------------------------------------

    def seed(self) -> None:
        if not self.first_up:
            self._seed_running_cluster()
        self._kill_dead_machines()
        self.initial_at_address = dict(self.at_address)
        self._reimage_bootstrap_hosts()

    def _kill_dead_machines(self) -> None:
        """The machines in `dead` died before the up: nothing runs or answers there, and their
        members stay in the cluster (nobody removed them)."""
        before = self.plan.before
        instances = {r.name: r.urn for r in (before.registrations if before else []) if r.type == sm.INSTANCE}
        for name in self.dead:
            key = ("instance", instances[name], 0) if name in instances else self.at_address.get(name)
            machine = self.machines.get(key) if key else None
            assert machine is not None, f"no machine of the running cluster is {name!r}"
            machine.alive, machine.running = False, None
            if machine.member and machine.cluster is not None:
                self.disruptions.append(Disruption(None, machine, machine.cluster, "died before the up", True))

    def _reimage_bootstrap_hosts(self) -> None:
        """A K3sBootstrap host whose `replace_on` changed is a new machine at the same address
        before the up starts (re-imaged or swapped by the user); the old one is gone."""
        for step in self.plan.steps:
            if step.kind != sm.REPLACE or not step.name.endswith("-install"):
                continue
            address = step.inputs_used["connection"]["host"]
            old_key = self.at_address.get(address)
            if self._instance_by_address(self.plan.after, address) is not None or old_key is None:
                continue
            old = self.machines[old_key]
            old.alive = False
            if old.member and old.cluster is not None:
                self.disruptions.append(Disruption(None, old, old.cluster, "re-imaged before the up", True))
            new = self._new_machine(("address", address, old_key[2] + 1), address, hostname=old.hostname)
            self.at_address[address] = new.key

    def _seed_running_cluster(self) -> None:
        before = self.plan.before
        assert before is not None
        self.clusters.add(0)
        installs = {r.name[: -len("-install")]: r for r in before.registrations if r.name.endswith("-install")}
        for reg in before.registrations:
            if reg.type != sm.COMMAND or not reg.name.endswith("-start"):
                continue
            machine = self.machine_at(reg.inputs["connection"]["host"], OLD, create=True)
            assert machine is not None
            _, params = script_of(installs[reg.name[: -len("-start")]].inputs["create"])
            machine.installed = machine.running = params["K3S_VERSION"]
            machine.role, machine.config = params["K3S_ROLE"], reg.inputs.get("stdin")
            machine.enabled, machine.cluster, machine.member = True, 0, True

    # --- steps ----------------------------------------------------------------------------

    def run(self) -> None:
        self.seed()
        for step in self.plan.steps:
            if step.type == sm.INSTANCE:
                self.instance_step(step)
            elif step.type == sm.COMMAND:
                text = step.command_text()
                if text:
                    self.command_step(step, text)
        self.check_overlaps()
        self.check_order_of_restarts()
        self.check_end_state()

    def event(self, step: sm.Step, machine: Machine | None, what: str) -> None:
        self.timeline.append(Event(step, machine.host if machine else "?", what))

    def violate(self, invariant: str, message: str, step: sm.Step | None) -> None:
        self.violations.append(Violation(invariant, message, step))

    def instance_step(self, step: sm.Step) -> None:
        if step.kind in (sm.CREATE, sm.REPLACE):
            generation = 1 if step.kind == sm.REPLACE else 0
            machine = self._new_machine(("instance", step.urn, generation), step.name)
            self.event(step, machine, "boots a new machine")
        elif step.kind in (sm.DELETE, sm.DELETE_REPLACED):
            machine = self.machines.get(("instance", step.urn, 0))
            if machine is None:
                return
            machine.alive = False
            self.event(step, machine, "terminates the machine")
            if machine.member and machine.cluster is not None:
                self.disruptions.append(Disruption(step, machine, machine.cluster, "terminated while a member", True))
        elif step.stop_start:
            machine = self.machines.get(("instance", step.urn, 0))
            if machine is None:
                return
            self.event(step, machine, "stops and starts the machine")
            if machine.member and machine.cluster is not None:
                self.disruptions.append(Disruption(step, machine, machine.cluster, "stopped and started"))
            machine.running = machine.installed if machine.enabled else None
            if machine.running and machine.role:
                self.restarts.append((step, machine))

    def command_step(self, step: sm.Step, text: str) -> None:
        side = OLD if step.kind in (sm.DELETE, sm.DELETE_REPLACED) else NEW
        script, params = script_of(text)
        address = step.inputs_used["connection"]["host"]
        machine = self.machine_at(address, side, create=side == NEW)
        if side == OLD:
            intended = machine
            if address in self.at_address:
                machine = self.machines[self.at_address[address]]  # whoever answers there now
            if machine is None or not machine.alive:
                self.event(step, machine, f"{script}: no machine answers at {address}")
                return
            if intended is not None and machine is not intended:
                self.violate(
                    OLD_DELETES_ON_OLD_MACHINES,
                    f"{step.name}'s delete ({script}) runs on {machine.hostname}, not on the machine it was made for",
                    step,
                )
        if machine is None:
            return
        handler = getattr(self, "do_" + script.replace("-", "_"), None)
        if handler is None:
            self.event(step, machine, script)
            return
        handler(step, machine, params, text)

    def do_install_k3s(self, step, machine: Machine, params, text) -> None:
        version = params["K3S_VERSION"]
        machine.role = params["K3S_ROLE"]
        if machine.installed == version:
            self.event(step, machine, f"k3s {version} already installed")
            return
        machine.installed, machine.enabled = version, False
        self.event(step, machine, f"puts k3s {version} on disk (running: {machine.running or 'nothing'})")

    def do_start_server(self, step, machine: Machine, params, text) -> None:
        self._start(step, machine, params, text, "server")

    def do_start_agent(self, step, machine: Machine, params, text) -> None:
        self._start(step, machine, params, text, "agent")

    def _start(self, step: sm.Step, machine: Machine, params: dict, text: str, role: str) -> None:
        stdin = step.inputs_used.get("stdin") or ""
        # The start scripts split the manifests and registries.yaml off first (lib.sh).
        config = yaml.safe_load(stdin.split(MANIFESTS_SEPARATOR)[0].split(REGISTRIES_SEPARATOR)[0]) or {}
        machine.role = role
        if machine.cluster is not None and machine.member:
            cluster = machine.cluster  # etcd data (or an agent's registration) wins over the config
        elif role == "server" and config.get("cluster-init") and not config.get("server"):
            cluster = None
            for peer in params.get("K3S_HA_PEERS", "").split():
                cluster = self._cluster_behind(peer, NEW, machine)
                if cluster is not None:
                    break
            if cluster is None and params.get("K3S_HA_CLUSTER_INIT") == "never":
                # start-server.sh refuses cluster-init in this mode and fails the step.
                self.event(step, machine, "refuses cluster-init: no peer answers; the step fails")
                return
            if cluster is None:
                cluster = max(self.clusters, default=-1) + 1
                self.clusters.add(cluster)
                self.cluster_inits += 1
                self.event(step, machine, f"cluster-init: starts cluster {cluster}")
                if not self.first_up or self.cluster_inits > 1:
                    self.violate(
                        NO_CLUSTER_INIT_AFTER_FIRST_UP,
                        f"{step.name} starts a new cluster on {machine.hostname} (cluster-init) instead of joining",
                        step,
                    )
        else:
            cluster = self._cluster_behind(_address_of(str(config.get("server", ""))), NEW, machine)
        # `changed` also names a stdin that carries a dependency's new identity (a new address),
        # which the mock recorded with the same text.
        restart = (
            stdin != machine.config
            or (step.kind == sm.UPDATE and "stdin" in step.changed)
            or not machine.running
            or (machine.running != machine.installed and detects_upgrade(text))
        )
        was_member = machine.member and machine.running
        joins = cluster is not None and not (machine.member and machine.cluster == cluster)
        if role == "server" and joins and (dead := self._dead_voters(cluster, machine)):
            # The start script restarts k3s, which fails to join and exits: no member.
            machine.enabled, machine.running, machine.config = True, None, stdin
            self.event(
                step,
                machine,
                f"server join refused: etcd rejects the member add while voters {dead} of cluster {cluster} "
                "are dead or down (mayAddMember: unhealthy cluster); the step fails",
            )
            return
        machine.enabled = True
        if not restart:
            self.event(step, machine, f"{role} already running k3s {machine.running}: no restart")
            return
        if was_member and machine.cluster is not None:
            self.disruptions.append(Disruption(step, machine, machine.cluster, f"{role} restarting"))
        machine.running, machine.config = machine.installed, stdin
        self.restarts.append((step, machine))
        if cluster is None:
            self.event(step, machine, f"{role} starts but finds no cluster to join")
            return
        machine.cluster, machine.member = cluster, True
        self.event(step, machine, f"{role} (re)starts k3s {machine.running} in cluster {cluster}")

    def _dead_voters(self, cluster: int | None, joiner: Machine) -> list[str]:
        """The voting members of `cluster` that are dead or down. Real etcd refuses any member
        add, a learner's too, unless the member that takes it is connected to every voting
        member (etcd server/etcdserver/server.go mayAddMember with StrictReconfigCheck, on by
        default: embed.NewConfig DefaultStrictReconfigCheck; K3s keeps the default, its etcd
        config has no such field: k3s-io/k3s pkg/daemons/executor/executor.go ETCDConfig).
        K3s then says "ETCD join failed: etcdserver: unhealthy cluster". That is etcd 3.4 and
        3.5 (isConnectedFullySince, as in the lab); later etcd asks only for a connected
        quorum, which this stricter model covers."""
        return sorted(
            m.hostname
            for m in self.machines.values()
            if m is not joiner
            and m.member
            and m.cluster == cluster
            and m.role == "server"
            and not (m.alive and m.running)
        )

    def do_evict_node(self, step, holder: Machine, params, text) -> None:
        """evict-node.sh on a server that is a member, before the node's new machine starts:
        the Node the old machine at the node's address left and, for a server's evict, every
        dead server of the cluster (NotReady and not answering SSH). A server that is down
        but alive answers SSH: it is left alone, and still blocks the join."""
        if not (holder.alive and holder.member and holder.running and holder.role == "server"):
            self.event(step, holder, "evict-node: no cluster API here; nothing evicted")
            return
        address, server = params.get("K3S_HA_ADDRESS", ""), params.get("K3S_ROLE") == "server"
        for machine in list(self.machines.values()):
            if not machine.member or machine.cluster != holder.cluster or machine.alive:
                continue
            if machine.key[:2] == ("address", address) or (server and machine.role == "server"):
                machine.member = False
                self._removed_dead_member(step, machine)
                self.event(
                    step,
                    holder,
                    f"evict-node: deletes the Node of dead {machine.role} {machine.hostname} ({machine.host})",
                )

    def do_remove_node(self, step, holder: Machine, params, text) -> None:
        meant = self._start_of_node(params.get("K3S_HA_NODE", ""), OLD)
        # kubectl deletes by name: whichever member now carries the old node's name.
        named = [
            m for m in [meant, *self.machines.values()] if m and meant and m.member and m.hostname == meant.hostname
        ]
        leaving = next((m for m in named if m.cluster == holder.cluster), meant)
        if leaving is not None and meant is not None and leaving is not meant:
            self.violate(
                OLD_DELETES_ON_OLD_MACHINES,
                f"{step.name} removes the new machine at {leaving.host} (same node name)",
                step,
            )
        if not (holder.alive and holder.member and holder.running and holder.role == "server"):
            self.violate(
                REMOVAL_FROM_A_MEMBER,
                f"{step.name} removes {leaving.hostname if leaving else '?'} from {holder.hostname}, "
                "which is no longer a member of the cluster",
                step,
            )
            self.event(step, holder, "remove-node: the API does not answer here; nothing removed")
            return
        if leaving is None or not leaving.member or leaving.cluster != holder.cluster:
            self.event(step, holder, "remove-node: node already gone")
            return
        if leaving.role == "server":
            self.disruptions.append(Disruption(step, leaving, holder.cluster, "leaving"))  # type: ignore[arg-type]
        leaving.member = False
        self.event(step, holder, f"removes node {leaving.hostname} ({leaving.host}) from cluster {holder.cluster}")

    def _api_here(self, step, holder: Machine, script: str) -> bool:
        if holder.alive and holder.member and holder.running and holder.role == "server":
            return True
        self.violate(
            REMOVAL_FROM_A_MEMBER,
            f"{step.name} runs on {holder.hostname}, which is not a running member of the cluster",
            step,
        )
        self.event(step, holder, f"{script}: the API does not answer here; nothing done")
        return False

    def do_record_members(self, step, holder: Machine, params, text) -> None:
        """record-members.sh on the first server, before any agent starts: the stale Node of a
        rebuilt agent (an "agent NAME ADDRESS ... @TIME" line: its old machine, which the
        old run's start step named NAME, still a member) is deleted; the record itself is the
        step model's business (step_model.model_leaving)."""
        if not self._api_here(step, holder, "record-members"):
            return
        stdin = step.inputs_used.get("stdin") or ""
        for name, row in member_rows(stdin).items():
            if row.stamp is None:
                continue
            old = self._start_of_node(name, OLD)
            new = self.machine_at(row.address, NEW)
            if old is not None and old is not new and old.member and old.cluster == holder.cluster:
                old.member = False
                self.event(step, holder, f"deletes the stale Node {name} of the rebuilt agent at {row.address}")

    def do_remove_members(self, step, holder: Machine, params, text) -> None:
        """remove-members.sh on the first server of the new configuration, after every start:
        the nodes on its stdin ("leaving NAME ..." lines, which the old run's start steps
        named) leave, one at a time, agents first: a live one is disabled over SSH, stopped,
        its Node deleted (K3s removes a server's etcd member with it) and K3s uninstalled; a
        dead one only loses its Node."""
        if not self._api_here(step, holder, "remove-members"):
            return
        stdin = step.inputs_used.get("stdin") or ""
        names = [line.split()[1] for line in stdin.split(NODES_END)[0].splitlines() if line.startswith("leaving ")]
        found = [self._start_of_node(name, OLD) for name in names]
        leaving = [m for m in found if m is not None and m.member and m.cluster == holder.cluster]
        leaving.sort(key=lambda m: m.role == "server")
        for machine in leaving:
            if machine.role == "server":
                self.disruptions.append(Disruption(step, machine, holder.cluster, "leaving"))  # type: ignore[arg-type]
            machine.member = False
            if machine.alive:
                machine.enabled = False
                machine.installed = machine.running = machine.config = None
                machine.cluster = None
                self.event(
                    step, holder, f"removes {machine.role} {machine.hostname} ({machine.host}) and uninstalls it"
                )
            else:
                self._removed_dead_member(step, machine)
                self.event(step, holder, f"deletes the Node of dead {machine.role} {machine.hostname} ({machine.host})")

    def do_uninstall_k3s(self, step, machine: Machine, params, text) -> None:
        if machine.member and machine.cluster is not None:
            self.disruptions.append(Disruption(step, machine, machine.cluster, "uninstalled while a member", True))
        machine.installed = machine.running = machine.config = None
        machine.cluster, machine.enabled = None, False
        self.event(step, machine, "uninstalls k3s and wipes its data")

    # --- invariants over the whole `up` ------------------------------------------------------

    def check_overlaps(self) -> None:
        servers = [d for d in self.disruptions if d.machine.role == "server"]
        seen: set[tuple] = set()
        for i, a in enumerate(servers):
            for b in servers[i + 1 :]:
                if a.machine is b.machine or a.cluster != b.cluster:
                    continue
                if not self._overlap(a, b):
                    continue
                pair = tuple(sorted((a.machine.hostname, b.machine.hostname)))
                if pair in seen:
                    continue
                seen.add(pair)
                self.violate(
                    ONE_SERVER_AT_A_TIME,
                    f"{a.machine.host} ({a.what}, {a.step.name if a.step else 'before the up'}) and "
                    f"{b.machine.host} ({b.what}, {b.step.name if b.step else 'before the up'}) at the same time",
                    b.step,
                )

    def _overlap(self, a: Disruption, b: Disruption) -> bool:
        if self._ended_before(a, b) or self._ended_before(b, a):
            return False
        if a.step is None or b.step is None:
            return True
        if a.lasting and b.lasting:
            return True
        if a.lasting:
            return not self.plan.precedes(b.step, a.step)
        if b.lasting:
            return not self.plan.precedes(a.step, b.step)
        return self.plan.may_overlap(a.step, b.step)

    def _ended_before(self, a: Disruption, b: Disruption) -> bool:
        """`a` is a dead member that a step removed before `b` began."""
        return a.until is not None and b.step is not None and self.plan.precedes(a.until, b.step)

    def _removed_dead_member(self, step: sm.Step, machine: Machine) -> None:
        for disruption in self.disruptions:
            if disruption.machine is machine and disruption.lasting and disruption.until is None:
                disruption.until = step

    def check_order_of_restarts(self) -> None:
        servers = [(s, m) for s, m in self.restarts if m.role == "server"]
        for agent_step, agent in ((s, m) for s, m in self.restarts if m.role == "agent"):
            for server_step, server in servers:
                if server_step is agent_step or self.plan.precedes(server_step, agent_step):
                    continue
                self.violate(
                    SERVERS_BEFORE_AGENTS,
                    f"agent {agent.host} restarts ({agent_step.name}) before server {server.host} ({server_step.name}) has",
                    agent_step,
                )
                break

    def check_end_state(self) -> None:
        after = self.plan.after
        assert after is not None
        wanted: dict[str, str] = {}
        hosts: list[Machine] = []
        for reg in after.registrations:
            if reg.type == sm.COMMAND and reg.name.endswith("-install"):
                _, params = script_of(reg.inputs["create"])
                machine = self.machine_at(reg.inputs["connection"]["host"], NEW)
                if machine is not None:
                    hosts.append(machine)
                    wanted[machine.hostname] = params["K3S_VERSION"]
        for machine in hosts:
            if machine.running != wanted[machine.hostname]:
                self.violate(
                    RUNS_WANTED_VERSION,
                    f"{machine.host} runs k3s {machine.running or 'nothing'}, configured {wanted[machine.hostname]}",
                    None,
                )
        clusters = {m.cluster for m in hosts if m.member}
        missing = [m.host for m in hosts if not (m.alive and m.member and m.running)]
        if len(clusters) != 1 or missing:
            self.violate(
                ONE_CLUSTER,
                f"configured nodes end in clusters {sorted(c for c in clusters if c is not None)}; not running members: {missing}",
                None,
            )
        host_keys = {m.key for m in hosts}
        dead = [
            m.hostname for m in self.machines.values() if m.member and m.key not in host_keys and m.cluster in clusters
        ]
        if dead:
            self.violate(ONE_CLUSTER, f"the cluster still lists members that are gone: {dead}", None)


def simulate(plan: sm.Plan, dead: tuple[str, ...] = ()) -> Result:
    """Replay `plan` (from step_model.plan_up) and check every invariant in INVARIANTS; the
    machines in `dead` died before the up (module docstring)."""
    sim = _Simulation(plan, tuple(dead))
    sim.run()
    return Result(sim.timeline, sim.violations, sim.machines, sim.clusters, sim.restarts)
