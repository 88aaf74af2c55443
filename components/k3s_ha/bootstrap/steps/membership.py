"""Step 4: membership. Each server's membership step confirms from another server that it is
Ready (agents confirm themselves: agents.py). Then one reconcile step on the current first
server records the wanted nodes and removes every node that has left the configuration (reconcile-members.sh): drain, stop and disable it over SSH, delete its Node
(K3s removes a server's etcd member with it) and uninstall it, one at a time, servers last.

Why there, and not in the delete of each node's own steps: a delete runs after every create
and update of the `up`, in reverse dependency order, with the OLD state's connection (pulumi
step_generator.go; real-behaviour.md). Which server stays through an `up` is not known when
a step is made, so any holder chosen then may itself be leaving (replacing servers 0 and 1
together, 3 -> 1) and a dead or re-imaged host makes the delete fail or hit the new machine.
The reconcile runs in the create/update phase, from the first server of the new
configuration, after it and every other node have started.

Evict (a new machine for a server host, its `replace_on` changed; agents: agents.py): before
the new machine joins,
a server removes the Node the old machine left under the same name or address, which would
otherwise refuse the join ("Node password rejected", "duplicate node name found"). Before a
server joins, it also removes the dead servers of the cluster (labelled with the plan's name,
not Ready, not answering SSH with their recorded key): real etcd refuses any member add
while a voter is dead (server.go mayAddMember, strict reconfig check; evict-node.sh), so the
reconcile, which runs after every start, would come too late for a replacement's join.

Both SSH from a server to other nodes, so both get the host keys Pulumi's own connections
pin (`Node.host_key`), as plain parameters (public keys; the private key alone is on stdin):
evict the one of the host it reaches, the reconcile those of every wanted node, which it
records on their Nodes, because a node that leaves is no longer among the inputs
(reconcile-members.sh). Hosts without a key are reached unpinned, with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_command as command

from ..contracts import ConfirmNode, EvictNode, ReconcileMembers
from ..plan import BootstrapPlan
from ..remote import Node, run_script

DRAIN_TIMEOUT_SECONDS = 120


def node_name(start: command.remote.Command) -> pulumi.Output[str]:
    """The start scripts print the Node's name as their only stdout line."""
    return start.stdout.apply(lambda out: (out or "").strip())


def _key_fields(host_key: str | None) -> tuple[str, str] | None:
    """TYPE and BASE64 of an authorized_keys line (validated as given: validation.host_key),
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
"""The line after the reconcile's node list on its stdin; the SSH key follows it."""


def wanted_nodes(nodes: Sequence[Node], names: Sequence[pulumi.Output[str]]) -> pulumi.Output[str]:
    """The reconcile's node list: "node NAME" or "node NAME TYPE BASE64" (its pinned host key)
    per wanted node, sorted by name, then NODES_END. On stdin, not in the command: it grows with
    the cluster (Linux caps one argument at 128 KiB, real-behaviour.md)."""

    def entries(values: list) -> str:
        half = len(values) // 2
        rows = sorted(
            " ".join(["node", name, *(_key_fields(key) or ())])
            for name, key in zip(values[:half], values[half:])
            if name
        )
        return "".join(f"{row}\n" for row in rows) + NODES_END + "\n"

    return pulumi.Output.all(*names, *[node.host_key for node in nodes]).apply(entries)


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


def reconcile_members(
    plan: BootstrapPlan,
    first_server: Node,
    nodes: Sequence[Node],
    starts: Sequence[command.remote.Command],
    names: Sequence[pulumi.Output[str]],
    after: Sequence[pulumi.Resource],
    parent: pulumi.Resource,
) -> command.remote.Command:
    """Runs whenever the set of node names or their host keys changes, or the first server
    is a new machine (no triggers: it is then updated, on the new machine). `nodes[i]` is
    the node `starts[i]` started, `names[i]` its node_name. Its stdin (secret: it ends with
    the SSH key) carries the node list, so its command stays the same size at any scale."""
    stdin = pulumi.Output.all(wanted_nodes(nodes, names), plan.ssh_private_key).apply(lambda v: v[0] + v[1])
    return run_script(
        f"{plan.name}-members",
        first_server,
        ReconcileMembers(
            cluster=plan.name,
            ssh_user=plan.ssh_user,
            drain_timeout=DRAIN_TIMEOUT_SECONDS,
            lb_grace_seconds=plan.balancer_grace_seconds,
            nodes=len(nodes),
        ),
        parent=parent,
        depends_on=[*starts, *after],
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
            # The label the reconcile puts on every wanted node: only this cluster's dead
            # servers are removed before a server joins.
            cluster=plan.name,
            host=node.name,
            host_key=pinned_key(node),
            ssh_user=plan.ssh_user,
        ),
        parent=parent,
        depends_on=after,
        stdin=plan.ssh_private_key,
        identity=node.replace_on,
    )
