"""Step 3: agents join once every server has, all at the same time.

Agents do not touch etcd membership, so they need no ordering among themselves. Each start
step waits, on the agent itself, until its own Node is Ready (the kubelet's credentials may
read its own Node: Kubernetes Node authorizer), so no server step confirms it per agent. Before
any agent starts, one step on the first server removes the stale Nodes of rebuilt agents
(evict_rebuilt_agents): the work servers do for agents is one step per `up`, whatever their
number.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_command as command

from .. import node_config
from ..contracts import EvictAgents, StartAgent
from ..plan import BootstrapPlan
from ..remote import Node, present, run_script


def start_agents(
    plan: BootstrapPlan,
    nodes: Sequence[Node],
    installs: Sequence[command.remote.Command],
    last_server: command.remote.Command,
    parent: pulumi.Resource,
    evict: command.remote.Command | None,
) -> list[command.remote.Command]:
    """`evict`: the agents' one evict step (None when there are no agents to evict for)."""
    config = pulumi.Output.secret(
        pulumi.Output.all(plan.agent_token, plan.registration_address, pulumi.Output.from_input(plan.registries)).apply(
            lambda values: node_config.with_registries(
                node_config.render_agent_config_yaml(
                    agent_token=values[0], join_address=values[1], extra=plan.agent_extra
                ),
                values[2],
            )
        )
    )
    return [
        run_script(
            f"{plan.name}-{node.name}-start",
            node,
            StartAgent(**plan.start_fields()),
            parent=parent,
            depends_on=present(installed, last_server, evict),
            stdin=config,
        )
        for node, installed in zip(nodes, installs)
    ]


def evict_rebuilt_agents(
    plan: BootstrapPlan,
    nodes: Sequence[Node],
    installs: Sequence[command.remote.Command],
    holder: Node,
    after: Sequence[pulumi.Resource],
    parent: pulumi.Resource,
) -> command.remote.Command | None:
    """One step on `holder` (the first server) for every agent host with a `replace_on`: each
    install step printed the machine's node name and whether K3s ran there before
    (install-k3s.sh). A fresh machine's name or address may still be held by the Node its
    old machine left, which would refuse its join ("Node password rejected"); the step deletes
    such Nodes (evict-agents.sh). Nothing here SSHes anywhere, and its inputs change only
    when an agent's machine, name or address does."""
    evicted = [(node, install) for node, install in zip(nodes, installs) if node.replace_on is not None]
    if not evicted:
        return None

    def lines(values: list) -> str:
        half = len(values) // 2
        rows = [f"{(out or '').strip()} {address}" for out, address in zip(values[:half], values[half:])]
        return "".join(f"{row}\n" for row in sorted(rows))

    listing = pulumi.Output.all(
        *[install.stdout for _, install in evicted], *[node.private_address for node, _ in evicted]
    ).apply(lines)
    return run_script(
        f"{plan.name}-evict-agents",
        holder,
        EvictAgents(agents=len(evicted)),
        parent=parent,
        depends_on=[*installs, *after],
        stdin=listing,
        replace_with_machine=False,
    )
