"""K3s' network ports, one home for both halves (k3s-io/docs: docs/installation/requirements.md,
"Inbound Rules for K3s Nodes"). The node scripts (bootstrap/scripts/lib.sh) and policy/ keep
their own copy: they are bash and a separate plugin."""

API_PORT = 6443
"""Kubernetes API and K3s supervisor: servers listen here, agents and joining servers register here."""
ETCD_PORTS = (2379, 2380)
"""Embedded etcd client and peer ports, between servers only."""
FLANNEL_VXLAN_PORT = 8472
"""Flannel VXLAN (UDP) between all nodes."""
KUBELET_PORT = 10250
"""Kubelet metrics and exec/logs, between all nodes."""
SSH_PORT = 22
"""Where Pulumi logs in to install K3s."""


def api_url(address: str) -> str:
    """https://<address>:6443, the form K3s' `server:` setting and a kubeconfig take."""
    return f"https://{address}:{API_PORT}"
