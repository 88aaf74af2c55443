"""Step 4: membership. Each server's membership step confirms from another server that it is
Ready (agents confirm themselves: agents.py). Then the first server, in two steps:
- record_members (`<name>-members`), after every server started and before any agent starts:
  records the wanted nodes in the member record (a ConfigMap only admins may write), evicts
  the stale Nodes of rebuilt agents, and names the nodes that left (record-members.sh);
- remove_members (`<name>-removals`), after every node started: takes those out one at a
  time, servers last: drain, stop and disable each over SSH, delete its Node (K3s removes a
  server's etcd member with it) and uninstall it (remove-members.sh). Its input is the list
  the first step printed, which stays the same while nothing leaves, so adding a node runs
  the record step and the node's own steps, and nothing else (issue 16).

Why there, and not in the delete of each node's own steps: a delete runs after every create
and update of the `up`, in reverse dependency order, with the OLD state's connection (pulumi
step_generator.go; real-behaviour.md). Which server stays through an `up` is not known when
a step is made, so any holder chosen then may itself be leaving (replacing servers 0 and 1
together, 3 -> 1) and a dead or re-imaged host makes the delete fail or hit the new machine.
Both steps run in the create/update phase, from the first server of the new configuration.

Evict (a new machine for a server host, its `replace_on` changed): before the new machine
joins, a server removes the Node the old machine left under the same name or address, which
would otherwise refuse the join ("Node password rejected", "duplicate node name found").
Before a server joins, it also removes the dead servers of the cluster (servers in the member
record, not Ready, not answering SSH with their recorded key): real etcd refuses any member
add while a voter is dead (server.go mayAddMember, strict reconfig check; evict-node.sh), so
the removals step, which runs after every start, would come too late for a replacement's join.

Both SSH from a server to other nodes with the host keys Pulumi's own connections pin
(`Node.host_key`): evict the one of the host it reaches (a parameter: public), the removals
those the member record kept for the leaving nodes, because a node that leaves is no longer
among the inputs. Hosts without a key are reached unpinned, with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_command as command

from ..contracts import ConfirmNode, EvictNode, RecordMembers, RemoveMembers
from ..plan import BootstrapPlan
from ..remote import Node, run_script

DRAIN_TIMEOUT_SECONDS = 120


def node_name(start: command.remote.Command) -> pulumi.Output[str]:
    """The start scripts print the Node's name as their only stdout line."""
    return start.stdout.apply(lambda out: (out or "").strip())


def _key_fields(host_key: str | None) -> tuple[str, str] | None:
    """TYPE and BASE64 of an authorized_keys line (validated as given: checks.host_key),
    without its comment, which may hold spaces and anything else."""
    fields = (host_key or "").split()
    return (fields[0], fields[1]) if len(fields) >= 2 else None


def pinned_key(node: Node) -> pulumi.Input[str]:
    """`node`'s pinned host key as "TYPE BASE64", or "" when it has none."""

    def type_and_blob(key: str | None) -> str:
        return " ".join(_key_fields(key) or ())

    # Not Output.from_input: on an Output it adds an apply of its own (pulumi/output.py).
    if isinstance(node.host_key, pulumi.Output):
        return node.host_key.apply(type_and_blob)
    return type_and_blob(node.host_key)  # type: ignore[arg-type]


NODES_END = "# k3s-ha: end of nodes"
"""The line after the node lines on the membership steps' stdin (the SSH key follows it on
remove-members')."""


def install_name(install: command.remote.Command) -> pulumi.Output[str]:
    """The node name an install step reported (install-k3s.sh: its stdout's first field)."""
    return install.stdout.apply(lambda out: ((out or "").split() or [""])[0])


def install_stamp(report: str | None) -> str:
    """ "@TIME" when an install step's report (install-k3s.sh: "NAME fresh|running BOOT_ID
    TIME") says K3s was not on the machine before (a fresh machine), else ""."""
    fields = (report or "").split()
    return f"@{fields[3]}" if len(fields) >= 4 and fields[1] == "fresh" else ""


def member_lines(
    roles: Sequence[str],
    nodes: Sequence[Node],
    names: Sequence[pulumi.Output[str]],
    reports: Sequence[command.remote.Command | None],
) -> pulumi.Output[str]:
    """record-members' stdin: "ROLE NAME ADDRESS [TYPE BASE64] [@TIME]" per wanted node,
    sorted by name, then NODES_END; @TIME (install_stamp) from `reports[i]`, the install step
    of a node whose new machines must evict their old Nodes (None: none). Public values only.
    On stdin, not in the command: it grows with the cluster (Linux caps one argument at
    128 KiB, real-behaviour.md), by one line of about 120 bytes per node (issue 16)."""
    n = len(nodes)
    with_report = [i for i, report in enumerate(reports) if report is not None]

    def text(values: list) -> str:
        names_, addresses, keys = values[:n], values[n : 2 * n], values[2 * n : 3 * n]
        stamps = dict(zip(with_report, map(install_stamp, values[3 * n :])))
        rows = sorted(
            (name, " ".join([role, name, address, *(_key_fields(key) or ()), stamps.get(i, "")]).rstrip())
            for i, (name, role, address, key) in enumerate(zip(names_, roles, addresses, keys))
            if name
        )
        return "".join(f"{row}\n" for _, row in rows) + NODES_END + "\n"

    return pulumi.Output.all(
        *names,
        *[node.private_address for node in nodes],
        *[node.host_key for node in nodes],
        *[reports[i].stdout for i in with_report],  # type: ignore[union-attr]
    ).apply(text)


def hold_membership(
    plan: BootstrapPlan,
    node: Node,
    start: command.remote.Command,
    name: pulumi.Output[str],
    holder: Node,
    holder_start: command.remote.Command,
    after: Sequence[pulumi.Resource],
    parent: pulumi.Resource,
) -> command.remote.Command:
    """`name`: node_name(start)."""
    return run_script(
        f"{plan.name}-{node.name}-member",
        holder,
        ConfirmNode(node=name, ready_timeout=plan.ready_timeout_seconds),
        parent=parent,
        depends_on=[start, holder_start, *after],
        # Only the member's own machine decides replacement.
        identity=node.replace_on,
    )


def hold_memberships(
    plan: BootstrapPlan,
    servers: Sequence[Node],
    server_starts: Sequence[command.remote.Command],
    server_names: Sequence[pulumi.Output[str]],
    parent: pulumi.Resource,
) -> list[command.remote.Command]:
    """The first server confirms every other server, the second confirms the first: a number
    of steps that grows with the servers only. (The names keep the older "holder" wording:
    these steps once carried the node's removal.) `server_names[i]`: node_name of
    `server_starts[i]`."""
    members: list[command.remote.Command] = []
    previous: list[pulumi.Resource] = []
    for index, (node, start, name) in enumerate(zip(servers, server_starts, server_names)):
        if len(servers) == 1:
            break  # a single server has nobody to hand its membership to
        holder = 1 if index == 0 else 0
        member = hold_membership(plan, node, start, name, servers[holder], server_starts[holder], previous, parent)
        members.append(member)
        previous = [member]
    return members


def record_members(
    plan: BootstrapPlan,
    first_server: Node,
    servers: Sequence[Node],
    server_names: Sequence[pulumi.Output[str]],
    agents: Sequence[Node],
    agent_installs: Sequence[command.remote.Command],
    after: Sequence[pulumi.Resource],
    parent: pulumi.Resource,
) -> command.remote.Command:
    """`<name>-members`: after every server started (`after`) and every agent's install, before
    any agent starts (record-members.sh): records the wanted nodes, evicts the stale Nodes of
    rebuilt agents, and prints the nodes that left. Runs whenever a node, its name, address or
    host key changes, or the first server is a new machine (no triggers: it is then updated,
    on the new machine)."""
    stdin = member_lines(
        ["server"] * len(servers) + ["agent"] * len(agents),
        [*servers, *agents],
        [*server_names, *[install_name(install) for install in agent_installs]],
        [None] * len(servers)
        + [install if agent.replace_on is not None else None for agent, install in zip(agents, agent_installs)],
    )
    return run_script(
        f"{plan.name}-members",
        first_server,
        RecordMembers(cluster=plan.name, nodes=len(servers) + len(agents)),
        parent=parent,
        depends_on=[*agent_installs, *after],
        stdin=stdin,
        replace_with_machine=False,
    )


def remove_members(
    plan: BootstrapPlan,
    first_server: Node,
    members: command.remote.Command,
    after: Sequence[pulumi.Resource],
    parent: pulumi.Resource,
) -> command.remote.Command:
    """`<name>-removals`: after every node started (`after`), takes out the nodes `members`
    named as leaving (remove-members.sh). Its stdin (secret: it ends with the cluster's removal
    key) is that list, which stays the same while nothing leaves: adding a node does not run it."""
    stdin = pulumi.Output.all(members.stdout, plan.removal.private_key).apply(
        lambda v: (v[0] or "") + NODES_END + "\n" + v[1]
    )
    return run_script(
        f"{plan.name}-removals",
        first_server,
        RemoveMembers(
            cluster=plan.name,
            ssh_user=plan.ssh_user,
            drain_timeout=DRAIN_TIMEOUT_SECONDS,
            lb_grace_seconds=plan.balancer_grace_seconds,
        ),
        parent=parent,
        depends_on=[members, *after],
        stdin=pulumi.Output.secret(stdin),
        replace_with_machine=False,
    )


def evict_stale_node(
    plan: BootstrapPlan,
    node: Node,
    role: str,
    holder: Node,
    after: Sequence[pulumi.Resource],
    parent: pulumi.Resource,
) -> command.remote.Command | None:
    """Runs once per machine of `node` (its `replace_on`), on `holder`, before `node` starts."""
    if node.replace_on is None:
        return None
    return run_script(
        f"{plan.name}-{node.name}-evict",
        holder,
        EvictNode(
            address=node.private_address,
            role=role,
            # The label an older release put on this cluster's nodes, which the evict reads
            # while the cluster has no member record yet (lib.sh k3s_ha_load_record).
            cluster=plan.name,
            host=node.name,
            host_key=pinned_key(node),
            ssh_user=plan.ssh_user,
        ),
        parent=parent,
        depends_on=after,
        stdin=plan.removal.private_key,
        identity=node.replace_on,
    )
