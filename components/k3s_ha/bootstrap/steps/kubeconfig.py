"""Read the admin kubeconfig from the first server and point it at the API address."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

from ... import validation
from ...ports import api_url
from ..contracts import PrintKubeconfig
from ..plan import BootstrapPlan
from ..remote import Node, run_script

LOCAL_SERVER = api_url("127.0.0.1")


def rewrite_server(kubeconfig: str, api_address: str) -> str:
    # Given as an Output (a balancer's name) the address is only known here: it is spliced into
    # the kubeconfig's text, so it must be a bare IP or DNS name (no newline, no YAML).
    validation.host_address(api_address, "apiAddress / api_address")
    if LOCAL_SERVER not in kubeconfig:
        raise ValueError(f"the kubeconfig read from the first server has no {LOCAL_SERVER} server entry")
    return kubeconfig.replace(LOCAL_SERVER, api_url(api_address))


def fetch_kubeconfig(
    plan: BootstrapPlan, node: Node, after: Sequence[pulumi.Resource], parent: pulumi.Resource
) -> pulumi.Output[str]:
    """The one step whose stdout holds a secret: stored encrypted and never logged."""
    reader = run_script(
        f"{plan.name}-kubeconfig",
        node,
        PrintKubeconfig(),
        parent=parent,
        depends_on=after,
        secret_output=True,
    )
    return pulumi.Output.secret(
        pulumi.Output.all(reader.stdout, plan.api_address).apply(lambda v: rewrite_server(v[0], v[1]))
    )
