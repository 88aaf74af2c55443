"""Step 0, on every node at once: download and verify K3s, start nothing.

The download is the slow part and needs no ordering, so it runs as soon as each machine
boots; only starting and joining wait for each other. When the node leaves the cluster
(or its machine is replaced), deleting this step uninstalls K3s from it, after its Node
has been drained and removed (see membership.py).
"""

from __future__ import annotations

import pulumi
import pulumi_command as command

from ..plan import BootstrapPlan
from ..remote import Node, run_script


def install(
    plan: BootstrapPlan, node: Node, role: str, guard: command.remote.Command, parent: pulumi.Resource
) -> command.remote.Command:
    return run_script(
        f"{plan.name}-{node.name}-install",
        node,
        "install-k3s",
        {"K3S_VERSION": plan.k3s_version, "K3S_ROLE": role, "K3S_INSTALL_URL": plan.install_url},
        parent=parent,
        depends_on=[guard],
        timeout="30m",
        on_delete=("uninstall-k3s", {"K3S_ROLE": role}),
    )
