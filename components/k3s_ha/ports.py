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
WIREGUARD_PORTS = (51820, 51821)
"""Flannel's wireguard-native backend (UDP): IPv4, IPv6, between all nodes."""
EMBEDDED_REGISTRY_PORT = 5001
"""Spegel, the embedded registry mirror (`embedded-registry: true`), between all nodes."""
SSH_PORT = 22
"""Where Pulumi logs in to install K3s."""


def api_url(address: str) -> str:
    """https://<address>:6443, the form K3s' `server:` setting and a kubeconfig take; an IPv6
    address in brackets (RFC 3986), or its colons would read as the port."""
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"
    return f"https://{address}:{API_PORT}"


def node_ports(server_config: dict) -> list[tuple[str, tuple[int, int], str]]:
    """(protocol, port range, what) that nodes must reach on each other beyond the fixed matrix,
    for the settings that need them (docs.k3s.io installation/requirements, "Inbound Rules")."""
    extra = []
    if server_config.get("flannel-backend") == "wireguard-native":
        extra.append(("udp", WIREGUARD_PORTS, "flannel wireguard-native between nodes"))
    if server_config.get("embedded-registry") in (True, "true", "True"):
        extra.append(
            ("tcp", (EMBEDDED_REGISTRY_PORT, EMBEDDED_REGISTRY_PORT), "embedded registry (spegel) between nodes")
        )
    return extra
