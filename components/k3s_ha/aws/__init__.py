"""The AWS half: network, firewall, load balancer, machines and snapshot store, and the
K3sCluster component that hands the machines to the bootstrap."""

from .args import K3sClusterArgs
from .cluster import K3sCluster

__all__ = ["K3sCluster", "K3sClusterArgs"]
