"""Step 3: agents join once every server has, all at the same time.

Agents do not touch etcd membership, so they need no ordering among themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_command as command

from .. import node_config
from ..plan import BootstrapPlan
from ..remote import Node, present, run_script


def start_agents(
    plan: BootstrapPlan,
    nodes: Sequence[Node],
    installs: Sequence[command.remote.Command],
    last_server: command.remote.Command,
    parent: pulumi.Resource,
    evicts: Sequence[command.remote.Command | None],
) -> list[command.remote.Command]:
    """`evicts`: each agent's evict step (None for a host without `replace_on`)."""
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
            "start-agent",
            plan.start_params(),
            parent=parent,
            depends_on=present(installed, last_server, evict),
            stdin=config,
        )
        for node, installed, evict in zip(nodes, installs, evicts)
    ]
