"""Step 1: the first server starts the cluster with `cluster-init` (embedded etcd)."""

from __future__ import annotations

import pulumi
import pulumi_command as command

from .plan import BootstrapPlan
from .remote import Node
from .server_start import start_server


def start_init_server(
    plan: BootstrapPlan, node: Node, installed: command.remote.Command, parent: pulumi.Resource
) -> command.remote.Command:
    return start_server(plan, node, join_address=None, after=[installed], parent=parent)
