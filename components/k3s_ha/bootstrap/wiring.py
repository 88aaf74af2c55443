"""The order of the remote steps, in one place: which step waits for which. Each step's own
file (steps/) says what it runs; this says when.

guard_upgrade (every server) -> install (all nodes, in parallel) -> the cluster's init step (once
in its life) -> the first server's start ->
the other servers' joins, one at a time -> `members` (the member record, on the first server)
-> every agent's start, in parallel -> the server confirmations and the `removals` step; the
kubeconfig after the first server's start. A server host on a new machine has its stale Node
evicted before it starts (membership.evict_stale_node).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from .plan import BootstrapPlan
from .remote import Node, present
from .steps.agents import start_agents
from .steps.install import install
from .steps.kubeconfig import fetch_kubeconfig
from .steps.membership import evict_stale_node, hold_memberships, node_name, record_members, remove_members
from .steps.servers import init_cluster, join_servers_in_turn, start_init_server
from .steps.upgrade_guard import guard_upgrade


@dataclass(frozen=True)
class Steps:
    """The steps a bootstrap registered, by what they do."""

    server_starts: list[command.remote.Command]
    """The first server's start, then each join in order."""
    agent_starts: list[command.remote.Command]
    members: command.remote.Command
    """The member record step (record-members.sh)."""
    removals: command.remote.Command
    kubeconfig: pulumi.Output[str]


def wire_steps(plan: BootstrapPlan, servers: Sequence[Node], agents: Sequence[Node], parent: pulumi.Resource) -> Steps:
    """Registers every remote step of the bootstrap, children of `parent`, in the order above."""
    init = servers[0]
    guards = guard_upgrade(plan, servers, parent)
    server_installs = [install(plan, n, "server", guards, parent) for n in servers]
    # An agent's install only stages a new release beside the running one (install-k3s.sh),
    # so it need not wait for the guards: its start step, after every server, does.
    agent_installs = [install(plan, n, "agent", [], parent) for n in agents]
    # The first server's stale Node is evicted from the second server, which is still a
    # member when the first is rebuilt alone (servers start in order, so it starts after).
    init_evict = (
        evict_stale_node(plan, init, "server", servers[1], [server_installs[0], server_installs[1]], parent)
        if len(servers) > 1
        else None
    )
    init_after = present(server_installs[0], init_evict)
    identity = init_cluster(plan, init, init_after, servers[1:], parent)
    init_start = start_init_server(plan, init, identity, init_after, servers[1:], parent)
    join_evicts = [
        evict_stale_node(plan, n, "server", init, [installed, init_start], parent)
        for n, installed in zip(servers[1:], server_installs[1:])
    ]
    joins = join_servers_in_turn(plan, servers[1:], server_installs[1:], init_start, parent, join_evicts, identity)
    last_server = joins[-1] if joins else init_start
    server_starts = [init_start, *joins]
    # One Output per server's Node name, shared by its membership step and the record.
    server_names = [node_name(start) for start in server_starts]
    memberships = hold_memberships(plan, servers, server_starts, server_names, parent)
    members = record_members(plan, init, servers, server_names, agents, agent_installs, [last_server], parent)
    agent_starts = start_agents(plan, agents, agent_installs, last_server, parent, members, identity.ca_hash)
    removals = remove_members(plan, init, members, [*server_starts, *agent_starts, *memberships], parent)
    return Steps(
        server_starts=server_starts,
        agent_starts=agent_starts,
        members=members,
        removals=removals,
        kubeconfig=fetch_kubeconfig(plan, init, [init_start], parent),
    )
