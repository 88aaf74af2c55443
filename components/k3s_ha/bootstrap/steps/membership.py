"""Step 4: each node's membership, held by a server.

Creating it confirms from the server side that the node is Ready. Deleting it, when the node
leaves or its machine is replaced, drains the node and deletes its Node object, which also
removes a server's etcd member (k3s member controller); without that a new machine under
the same name or address fails with "Peer URLs already exists" or "Node password rejected".
Server memberships are chained, so servers leave one at a time and quorum holds throughout.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_command as command

from ..plan import BootstrapPlan
from ..remote import Node, run_script

DRAIN_TIMEOUT_SECONDS = 120


def node_name(start: command.remote.Command) -> pulumi.Output[str]:
    """The start scripts print the Node's name as their only stdout line."""
    return start.stdout.apply(lambda out: (out or "").strip())


def hold_membership(
    plan: BootstrapPlan,
    node: Node,
    start: command.remote.Command,
    holder: Node,
    holder_start: command.remote.Command,
    after: Sequence[pulumi.Resource],
    parent: pulumi.Resource,
) -> command.remote.Command:
    name = node_name(start)
    return run_script(
        f"{plan.name}-{node.name}-member",
        holder,
        "confirm-node",
        {"K3S_HA_NODE": name, "K3S_READY_TIMEOUT": str(plan.ready_timeout_seconds)},
        parent=parent,
        depends_on=[start, holder_start, *after],
        timeout=plan.command_timeout,
        on_delete=("remove-node", {"K3S_HA_NODE": name, "K3S_DRAIN_TIMEOUT": str(DRAIN_TIMEOUT_SECONDS)}),
        # Only the member's own machine decides replacement: a new holder must never
        # delete (drain) a healthy node.
        identity=node.replace_on,
    )


def hold_memberships(
    plan: BootstrapPlan,
    servers: Sequence[Node],
    server_starts: Sequence[command.remote.Command],
    agents: Sequence[Node],
    agent_starts: Sequence[command.remote.Command],
    parent: pulumi.Resource,
) -> list[command.remote.Command]:
    """The first server holds everyone's membership but its own, which the second holds."""
    members: list[command.remote.Command] = []
    previous: list[pulumi.Resource] = []
    for index, (node, start) in enumerate(zip(servers, server_starts)):
        if len(servers) == 1:
            break  # a single server has nobody to hand its membership to
        holder = 1 if index == 0 else 0
        member = hold_membership(plan, node, start, servers[holder], server_starts[holder], previous, parent)
        members.append(member)
        previous = [member]
    for node, start in zip(agents, agent_starts):
        members.append(hold_membership(plan, node, start, servers[0], server_starts[0], [], parent))
    return members
