"""Step 1: the first server starts the cluster with `cluster-init` (embedded etcd), unless
a cluster already answers at one of its peers: then it is a rebuilt first server and joins."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_command as command

from .plan import BootstrapPlan
from .remote import Node
from .server_start import server_config, start_server


# Peers probed before cluster-init: the registration address and the next two servers. Not
# all servers, so scaling 3 -> 5 leaves this step's inputs untouched.
PEERS_PROBED = 2


def start_init_server(
    plan: BootstrapPlan,
    node: Node,
    installed: command.remote.Command,
    others: Sequence[Node],
    parent: pulumi.Resource,
) -> command.remote.Command:
    candidates = [plan.registration_address, *(n.private_address for n in others[:PEERS_PROBED])]
    # Without a load balancer the registration address is this server itself: drop it.
    peers = pulumi.Output.all(node.private_address, *candidates).apply(
        lambda v: " ".join(a for a in dict.fromkeys(v[1:]) if a and a != v[0])
    )
    return start_server(
        plan, node, config=server_config(plan, None), after=[installed], parent=parent, peers=peers
    )
