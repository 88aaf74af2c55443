"""Start K3s on a server (init or joining) and wait until it is a ready etcd voter."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_command as command

from . import node_config
from .plan import BootstrapPlan
from .remote import Node, run_script


def server_config(plan: BootstrapPlan, join_address: pulumi.Input[str] | None) -> pulumi.Output[str]:
    """A server's config.yaml (secret): the same text for every server that joins, so build it
    once and pass it to each (`config=`)."""
    config = pulumi.Output.all(
        plan.token, plan.agent_token, pulumi.Output.all(*plan.tls_sans), join_address,
        pulumi.Output.from_input(plan.server_extra),
    ).apply(
        lambda values: node_config.server_config(
            token=values[0],
            agent_token=values[1],
            tls_sans=values[2],
            join_address=values[3],
            extra=values[4],
        )
    )
    return pulumi.Output.secret(config)


def start_server(
    plan: BootstrapPlan,
    node: Node,
    *,
    config: pulumi.Output[str],
    after: Sequence[pulumi.Resource],
    parent: pulumi.Resource,
    peers: pulumi.Input[str] | None = None,
) -> command.remote.Command:
    """`config`: the node's `server_config`. `peers` (first server only): space-separated
    addresses to probe before `cluster-init`. If one answers, a cluster already exists (this is
    a rebuilt first server) and the script joins it instead of splitting it in two
    (k3s-ansible#269)."""
    params = plan.start_params()
    if peers is not None:
        params["K3S_HA_PEERS"] = peers
    return run_script(
        f"{plan.name}-{node.name}-start",
        node,
        "start-server",
        params,
        parent=parent,
        depends_on=after,
        stdin=config,
        timeout=plan.command_timeout,
    )
