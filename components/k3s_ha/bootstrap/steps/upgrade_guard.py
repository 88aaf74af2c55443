"""Step -1, on the first server: refuse a K3s version the running cluster cannot move to.

Every node's download waits for this step, so a downgrade, a skipped minor version or a
crossing from the Dqlite era to etcd (which loses data) is refused before any node is touched.
It runs again whenever `k3s_version` changes.
"""

from __future__ import annotations

import pulumi
import pulumi_command as command

from ..plan import BootstrapPlan
from ..remote import Node, run_script


def guard_upgrade(plan: BootstrapPlan, first_server: Node, parent: pulumi.Resource) -> command.remote.Command:
    return run_script(
        f"{plan.name}-version-guard",
        first_server,
        "check-upgrade",
        {"K3S_VERSION": plan.k3s_version},
        parent=parent,
        timeout="10m",
    )
