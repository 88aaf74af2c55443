"""Step 0, on every node at once: download and verify K3s, start nothing.

The download is the slow part and needs no ordering, so it runs as soon as each machine
boots; only starting and joining wait for each other. Deleting this step runs nothing:
a delete runs with the old state's connection at the very end of the `up`, when that
address may be a dead machine (the `up` would fail) or a new machine at the same address
(it would be wiped). A leaving node is drained, removed and uninstalled by the removals
step instead (membership.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_command as command

from ..contracts import InstallK3s
from ..plan import BootstrapPlan
from ..remote import Node, run_script


def install(
    plan: BootstrapPlan,
    node: Node,
    role: str,
    guards: Sequence[command.remote.Command],
    parent: pulumi.Resource,
) -> command.remote.Command:
    return run_script(
        f"{plan.name}-{node.name}-install",
        node,
        InstallK3s(
            version=plan.k3s_version,
            role=role,
            install_url=plan.install_url,
            upgrade_from=plan.upgrade_from,
            ssh_user=plan.ssh_user,
            removal_key=plan.removal.authorized_line,
        ),
        parent=parent,
        depends_on=guards,
        # An agent's first step (a server's is its version guard, which this waits for).
        installs_bundle=role == "agent",
    )
