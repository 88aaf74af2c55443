"""Time to a ready cluster, modeled on the dependency graph the engine receives.

The engine starts a resource once everything in its `dependencies` (and a custom-resource
parent) is done, with unbounded parallelism (`pulumi up --parallel` defaults to unbounded).
So the time to a ready cluster is the longest path through the recorded graph, each resource
weighted with the duration below. The durations are assumptions, not measurements.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# Run as a script, this needs tests/ (the recording engine) and benchmarks/ on the path, as
# measure.py sets them: pytest.ini's pythonpath applies to pytest only.
_ROOT = Path(__file__).resolve().parent.parent
for _dir in (_ROOT / "benchmarks", _ROOT / "tests"):
    if str(_dir) not in sys.path:
        sys.path.insert(0, str(_dir))

# Seconds per step. Assumptions, stated with the result in BENCHMARKS.md.
DURATIONS = {
    "boot": 90,  # EC2 instance: create, boot, cloud-init done, sshd answering
    "download": 30,  # install-k3s.sh: fetch installer + K3s binary, verify, start nothing
    "init": 60,  # start-server.sh with cluster-init: Ready, etcd voter, /readyz ok
    "join": 45,  # start-server.sh joining: learner -> voter, Ready, /readyz ok (one server)
    "agent": 30,  # start-agent.sh: agent registered and Ready
    "guard": 5,  # check-upgrade.sh: a server's version guard, before its install
    "evict": 5,  # evict-node.sh / record-members.sh on the first server: stale Nodes, the record
    "confirm": 5,  # confirm-node.sh: a started node is a member (prints its Node name)
    "kubeconfig": 5,  # print-kubeconfig.sh
    "reconcile": 5,  # remove-members.sh (`<name>-removals`): leavers removed, after every node
    "remote": 5,  # any other remote step
    "copy": 3,  # the script bundle (~90 KB) over SFTP, once per host
    "aws": 5,  # any other AWS API resource (VPC, subnet, security group, rule, key pair...)
    "none": 0,  # components, random passwords
}
ASSUMPTIONS = (
    "boot 90 s (EC2 create + boot + cloud-init + sshd), download 30 s (installer + binary), "
    "init 60 s (cluster-init server Ready + etcd voter + /readyz), one server join 45 s, "
    "one agent join 30 s, every other remote step 5 s (version guard, evict, member confirm, kubeconfig, "
    "member record, removals), "
    "any other AWS resource 5 s, random passwords and components 0 s; "
    "unbounded engine parallelism (the `pulumi up` default), no API throttling, no retries"
)
SCRIPT_KIND = {
    "install-k3s": "download",
    "start-agent": "agent",
    "check-upgrade": "guard",
    "evict-node": "evict",
    "record-members": "evict",
    "confirm-node": "confirm",
    "print-kubeconfig": "kubeconfig",
    "remove-members": "reconcile",
}
# Short steps that may sit on the path between the long ones; what they add is counted in
# small_steps and in the expected time.
SMALL = ("aws", "copy", "guard", "evict", "confirm", "kubeconfig", "remote")


def script(reg) -> str:
    """The node script a remote step runs (commands.parse_command)."""
    from k3s_ha.bootstrap.commands import parse_command

    parsed = parse_command(reg.inputs.get("create") or "")
    return parsed[0] if parsed else ""


def kind(reg) -> str:
    if reg.type == "aws:ec2/instance:Instance":
        return "boot"
    if reg.type == "command:remote:Command":
        name = script(reg)
        if name == "start-server":
            return "init" if "cluster-init: true" in (reg.inputs.get("stdin") or "") else "join"
        return SCRIPT_KIND.get(name, "remote")
    if reg.type == "command:remote:CopyToRemote":
        return "copy"
    if reg.type.startswith("aws:"):
        return "aws"
    return "none"


@dataclass
class CriticalPath:
    servers: int
    agents: int
    modeled_seconds: int
    path: list[str]  # resource names, first to last
    path_kinds: list[str]
    remote_steps_on_path: int  # commands on the modeled critical path
    longest_remote_chain: int  # most commands on any dependency chain
    longest_start_chain: int  # most `-start` steps (node installs) on any chain
    expected_seconds: int  # boot + download + init + (S-1) joins + one agent wave + reconcile + small steps
    small_steps: dict  # kind -> count of the short steps also on the path (SMALL)

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def analyse(registrations, servers: int, agents: int) -> CriticalPath:
    by_urn = {r.urn: r for r in registrations}
    deps = {}
    for r in registrations:
        d = {u for u in r.dependencies if u in by_urn}
        parent = by_urn.get(r.parent)
        if parent is not None and parent.custom:
            d.add(parent.urn)
        deps[r.urn] = d
    order = _topological(deps)
    finish: dict[str, float] = {}
    best_prev: dict[str, str | None] = {}
    remote: dict[str, int] = {}
    starts: dict[str, int] = {}
    for urn in order:
        r = by_urn[urn]
        prev = max(deps[urn], key=lambda u: finish[u], default=None)
        finish[urn] = (finish[prev] if prev else 0) + DURATIONS[kind(r)]
        best_prev[urn] = prev
        is_cmd = r.type == "command:remote:Command"
        remote[urn] = max((remote[u] for u in deps[urn]), default=0) + is_cmd
        starts[urn] = max((starts[u] for u in deps[urn]), default=0) + (is_cmd and r.name.endswith("-start"))
    # Of equally long paths (one server: the kubeconfig read and the reconcile both follow the
    # init), report the one the reconcile ends, whatever order the graph came in.
    end = max(finish, key=lambda u: (finish[u], kind(by_urn[u]) == "reconcile"))
    path = []
    node = end
    while node is not None:
        path.append(node)
        node = best_prev[node]
    path.reverse()
    d = DURATIONS
    kinds = [kind(by_urn[u]) for u in path]
    small = {k: kinds.count(k) for k in SMALL if k in kinds}
    expected = (
        d["boot"]
        + d["download"]
        + d["init"]
        + (servers - 1) * d["join"]
        + (d["agent"] if agents else 0)
        + d["reconcile"]
        + sum(d[k] * n for k, n in small.items())
    )
    core = [k for k in kinds if k not in small and k != "none"]
    # The members reconcile waits for every node to be confirmed, so it ends the path.
    shape = ["boot", "download", "init", *["join"] * (servers - 1), *(["agent"] if agents else []), "reconcile"]
    if core != shape:
        expected = -1  # not the expected shape at all
    return CriticalPath(
        servers=servers,
        agents=agents,
        modeled_seconds=int(finish[end]),
        path=[by_urn[u].name for u in path],
        path_kinds=kinds,
        remote_steps_on_path=sum(by_urn[u].type == "command:remote:Command" for u in path),
        longest_remote_chain=max(remote.values()),
        longest_start_chain=max(starts.values()),
        expected_seconds=expected,
        small_steps=small,
    )


def _topological(deps: dict[str, set[str]]) -> list[str]:
    indegree = Counter({u: len(d) for u, d in deps.items()})
    users: dict[str, list[str]] = {u: [] for u in deps}
    for u, d in deps.items():
        for v in d:
            users[v].append(u)
    ready = [u for u, n in indegree.items() if n == 0]
    order = []
    while ready:
        u = ready.pop()
        order.append(u)
        for w in users[u]:
            indegree[w] -= 1
            if indegree[w] == 0:
                ready.append(w)
    if len(order) != len(deps):
        raise ValueError("the recorded graph has a cycle")
    return order


def main() -> None:
    """`python benchmarks/critical_path.py 5:300 3:0 ...`: record the project at each size and
    print one JSON line per size with its critical path."""
    import json

    from measure import (
        BASE_CONFIG,
        SECRET_KEYS,
        measure,  # noqa: F401  (sets up paths and SDK imports)
    )
    from support import engine

    for size in sys.argv[1:]:
        servers, agents = map(int, size.split(":"))
        run = engine.run(engine.main_program, {**BASE_CONFIG, "servers": servers, "agents": agents}, SECRET_KEYS)
        print(json.dumps(analyse(run.registrations, servers, agents).as_dict()), flush=True)


if __name__ == "__main__":
    main()
