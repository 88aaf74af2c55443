"""The AWS half: network, firewall, load balancer, machines and snapshot store, and the
K3sCluster component that hands the machines to the bootstrap."""

from .cluster import K3sCluster, K3sClusterArgs

__all__ = ["K3sCluster", "K3sClusterArgs"]
