"""A Kubernetes provider for a k3s-ha cluster, for the rest of a larger program (issue 19.3).

pulumi-kubernetes stays an optional extra (`pip install 'k3s-ha[kubernetes]'`): it is imported
only when this is called, so a program that never talks to the cluster does not need it.
"""

from __future__ import annotations

import importlib
from typing import Any

import pulumi

INSTALL_HINT = "pip install 'k3s-ha[kubernetes]' (or pulumi-kubernetes>=4.18,<5)"


def kubernetes_provider(resource_name: str, cluster: Any, opts: pulumi.ResourceOptions | None = None) -> Any:
    """A `pulumi_kubernetes.Provider` for `cluster` (a K3sCluster or K3sBootstrap): its secret
    kubeconfig, and a dependency on the whole component, so that nothing goes to the API
    before every node has joined and the removals are done. Its API address must be reachable
    from where Pulumi runs (K3sCluster: `api_allowed_cidrs`)."""
    try:
        k8s = importlib.import_module("pulumi_kubernetes")
    except ImportError as error:
        raise ImportError(f"k3s_ha.kubernetes_provider needs pulumi-kubernetes: {INSTALL_HINT}") from error
    options = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(depends_on=[cluster]), opts)
    return k8s.Provider(resource_name, kubeconfig=cluster.kubeconfig, opts=options)
