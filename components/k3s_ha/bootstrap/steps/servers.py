"""Servers, in run order: the first server starts the cluster, the others join one at a time.

Step 1: the first server starts the cluster with `cluster-init` (embedded etcd), exactly
once in the cluster's life: only the step's `create` may do it, and it runs once, on the
first `up` (the step has no triggers, so a new machine is an update, not a replacement).
Every later run is the `update` text, with K3S_HA_CLUSTER_INIT=never: a rebuilt first server
joins through a peer that answers (the registration address, or the next servers, which start
after it and so are the running ones) and fails with a clear message when none does.
Step 2: the other servers join one at a time. etcd admits one learner at a time and parallel
joins fail (k3s-io/k3s#4335, #7000), so each join depends on the previous server's start, and
that start only finishes once the node is Ready, an etcd voter and /readyz answers ok.
Every server start waits until the node is a ready etcd voter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pulumi
import pulumi_command as command

from ... import ports
from .. import node_config
from ..contracts import StartServer
from ..plan import BootstrapPlan
from ..remote import Node, present, run_script


def secret_server_config_yaml(plan: BootstrapPlan, join_address: pulumi.Input[str] | None) -> pulumi.Output[str]:
    """A server's stdin (secret): its config.yaml, then registries.yaml when one is given. The
    same text for every server that joins, so build it once and pass it to each (`config=`)."""
    # Output.all unwraps each argument deeply itself (Output.from_input): wrapping one in
    # from_input first only adds an apply.
    config = pulumi.Output.all(
        plan.token,
        plan.agent_token,
        pulumi.Output.all(*plan.tls_sans),
        join_address,
        plan.server_extra,
        plan.registries,
    ).apply(
        lambda values: node_config.with_registries(
            node_config.render_server_config_yaml(
                token=values[0],
                agent_token=values[1],
                tls_sans=values[2],
                join_address=values[3],
                extra=values[4],
            ),
            values[5],
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
    first: bool = False,
) -> command.remote.Command:
    """`config`: the node's `secret_server_config_yaml`. `peers` (first server only): space-separated
    addresses to probe before `cluster-init`. If one answers, a cluster already exists (this is
    a rebuilt first server) and the script joins it instead of splitting it in two
    (k3s-ansible#269)."""
    call = StartServer(
        **plan.start_fields("server"),
        peers=peers,
        machine=node.replace_on if first else None,
        join_url=None if first else pulumi.Output.from_input(plan.registration_address).apply(ports.api_url),
    )
    on_update = dataclasses.replace(call, cluster_init="never") if first else None
    return run_script(
        f"{plan.name}-{node.name}-start",
        node,
        call,
        parent=parent,
        depends_on=after,
        stdin=config,
        on_update=on_update,
        replace_with_machine=not first,
    )


# Peers probed before cluster-init: the registration address and the next two servers. Not
# all servers, so scaling 3 -> 5 leaves this step's inputs untouched.
PEERS_PROBED = 2


def start_init_server(
    plan: BootstrapPlan,
    node: Node,
    after: Sequence[pulumi.Resource],
    others: Sequence[Node],
    parent: pulumi.Resource,
) -> command.remote.Command:
    """`after`: its install (and its evict step, if any)."""
    candidates = [plan.registration_address, *(n.private_address for n in others[:PEERS_PROBED])]
    # Without a load balancer the registration address is this server itself: drop it.
    peers = pulumi.Output.all(node.private_address, *candidates).apply(
        lambda v: " ".join(a for a in dict.fromkeys(v[1:]) if a and a != v[0])
    )
    return start_server(
        plan, node, config=secret_server_config_yaml(plan, None), after=after, parent=parent, peers=peers, first=True
    )


def join_servers_in_turn(
    plan: BootstrapPlan,
    nodes: Sequence[Node],
    installs: Sequence[command.remote.Command],
    init_server: command.remote.Command,
    parent: pulumi.Resource,
    evicts: Sequence[command.remote.Command | None],
) -> list[command.remote.Command]:
    """`evicts`: each server's evict step (None for a host without `replace_on`)."""
    joined: list[command.remote.Command] = []
    previous = init_server
    config = secret_server_config_yaml(plan, plan.registration_address)  # the same for every joining server
    for node, installed, evict in zip(nodes, installs, evicts):
        previous = start_server(plan, node, config=config, after=present(installed, previous, evict), parent=parent)
        joined.append(previous)
    return joined
