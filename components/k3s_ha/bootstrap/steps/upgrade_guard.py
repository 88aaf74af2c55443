"""Step -1, on every server: refuse a K3s version the running cluster cannot move to.

Every server's download, and through the servers every start, waits for these steps, so a
downgrade, a skipped minor version or a crossing from the Dqlite era to etcd (which loses data)
is refused before any node runs anything new. Agents' downloads need not wait: on a node that
runs K3s a download only stages the release beside it (install-k3s.sh), and an agent's start
comes after every server's.
They run again whenever `k3s_version` changes. One per server, not only on the first: a new
machine has nothing to compare with and passes, so when the first server is being rebuilt in
the same `up` a surviving server still asks the running cluster (issue 10).
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_command as command

from ..contracts import CheckUpgrade
from ..plan import BootstrapPlan
from ..remote import Node, run_script


def guard_upgrade(
    plan: BootstrapPlan, servers: Sequence[Node], parent: pulumi.Resource
) -> list[command.remote.Command]:
    """The first server's guard keeps its old name, `<name>-version-guard`."""
    return [
        run_script(
            f"{plan.name}-version-guard" if index == 0 else f"{plan.name}-{server.name}-version-guard",
            server,
            CheckUpgrade(version=plan.k3s_version, upgrade_from=plan.upgrade_from),
            parent=parent,
            installs_bundle=True,  # a server's first step: its install and the rest wait for it
        )
        for index, server in enumerate(servers)
    ]
