"""k3s-ha: highly available K3s clusters (embedded etcd) with Pulumi."""

__version__ = "0.1.0"  # the one version: pyproject.toml, the provider schema, tags (docs/releasing.md)

from .aws import K3sCluster, K3sClusterArgs
from .bootstrap import HostArgs, K3sBootstrap, K3sBootstrapArgs, SshArgs
from .errors import ConfigError
from .kubernetes import kubernetes_provider
from .versions import DEFAULT_K3S_VERSION

__all__ = [
    "ConfigError",
    "DEFAULT_K3S_VERSION",
    "HostArgs",
    "K3sBootstrap",
    "K3sBootstrapArgs",
    "K3sCluster",
    "K3sClusterArgs",
    "SshArgs",
    "kubernetes_provider",
]
