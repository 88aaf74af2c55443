"""Step 3: agents join once every server has, all at the same time.

Agents do not touch etcd membership, so they need no ordering among themselves. Each start
step waits, on the agent itself, until its own Node is Ready (the kubelet's credentials may
read its own Node: Kubernetes Node authorizer), so no server step confirms it per agent. Before
any agent starts, the first server's record step (membership.record_members) removes the
stale Nodes of rebuilt agents: the work servers do for agents is one step per `up`, whatever
their number, and two when a node left (the removals step).
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_command as command

from .. import node_config
from ..contracts import StartAgent
from ..plan import BootstrapPlan
from ..remote import Node, run_script


def start_agents(
    plan: BootstrapPlan,
    nodes: Sequence[Node],
    installs: Sequence[command.remote.Command],
    last_server: command.remote.Command,
    parent: pulumi.Resource,
    members: command.remote.Command,
    ca_hash: pulumi.Input[str],
) -> list[command.remote.Command]:
    """`members`: the record step (membership.record_members), which evicts the stale Nodes of
    rebuilt agents before any agent starts. `ca_hash`: the cluster CA's (the init step's), which
    every agent's token carries: K10<hash>::node:<agent token>."""
    config = pulumi.Output.secret(
        pulumi.Output.all(
            plan.agent_token, plan.registration_address, pulumi.Output.from_input(plan.registries), ca_hash
        ).apply(
            lambda values: node_config.with_registries(
                node_config.render_agent_config_yaml(
                    agent_token=values[0], join_address=values[1], extra=plan.agent_extra, ca_hash=values[3]
                ),
                values[2],
            )
        )
    )
    return [
        run_script(
            f"{plan.name}-{node.name}-start",
            node,
            StartAgent(**plan.start_fields("agent")),
            parent=parent,
            depends_on=[installed, last_server, members],
            stdin=config,
        )
        for node, installed in zip(nodes, installs)
    ]
