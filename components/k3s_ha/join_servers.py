"""Step 2: the other servers join one at a time.

etcd admits one learner at a time and parallel joins fail (k3s-io/k3s#4335, #7000), so each
join depends on the previous server's start, and that start only finishes once the node is
Ready, an etcd voter and /readyz answers ok.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_command as command

from .plan import BootstrapPlan
from .remote import Node
from .server_start import server_config, start_server


def join_servers_in_turn(
    plan: BootstrapPlan,
    nodes: Sequence[Node],
    installs: Sequence[command.remote.Command],
    init_server: command.remote.Command,
    parent: pulumi.Resource,
) -> list[command.remote.Command]:
    joined: list[command.remote.Command] = []
    previous = init_server
    config = server_config(plan, plan.registration_address)  # the same for every joining server
    for node, installed in zip(nodes, installs):
        previous = start_server(plan, node, config=config, after=[installed, previous], parent=parent)
        joined.append(previous)
    return joined
