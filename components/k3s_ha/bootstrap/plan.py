"""What every role step needs to know about the cluster, fixed once before the steps run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi

from ..versions import upgrade_prerequisite
from .remote import Node
from .removal_key import RemovalKey
from .settings import BootstrapSettings

if TYPE_CHECKING:
    from .args import SshArgs

# A registration address of its own is a balancer (or VIP) in front of the servers: a leaving
# server waits this long for its health check to take it out. 30 s covers two misses 10 s
# apart (K3sCluster's own check needs 10 s: aws/load_balancer.py).
K3S_DATA_DIR = "/var/lib/rancher/k3s"
"""K3s's default --data-dir when it runs as root (docs.k3s.io cli/server and cli/agent: "Folder to
hold state default /var/lib/rancher/k3s or ${HOME}/.rancher/k3s if not root")."""

BALANCER_GRACE_SECONDS = 30


@dataclass(frozen=True)
class BootstrapPlan:
    """What every bootstrap step needs to know, decided once from the checked settings."""

    name: str
    """The bootstrap's resource name: prefixes every step's name."""
    k3s_version: str
    upgrade_from: str | None
    """The release every node must run before moving to k3s_version's minor, or None."""
    token: pulumi.Output[str]
    agent_token: pulumi.Output[str]
    registration_address: pulumi.Input[str]
    api_address: pulumi.Input[str]
    tls_sans: Sequence[pulumi.Input[str]]
    ready_timeout_seconds: int
    install_url: str
    ssh_user: pulumi.Input[str]
    """Login user on every node; the removals and evict steps log in from a server with it."""
    removal: RemovalKey
    """The key the removals and evict steps log in with from a server (removal_key.py); the
    operator's SSH key never reaches a server."""
    balancer_grace_seconds: int = 0
    """How long a leaving server waits, refusing new API connections from outside the cluster,
    for a load balancer's health check to take it out (0: no balancer in front)."""
    server_extra: Mapping[str, Any] = field(default_factory=dict)
    """Further config.yaml settings, the same on every server (K3sBootstrapArgs.server_config)."""
    agent_extra: Mapping[str, Any] = field(default_factory=dict)
    """Further config.yaml settings for every agent (K3sBootstrapArgs.agent_config)."""
    registries: Mapping[str, Any] | None = None
    """registries.yaml for every node (K3sBootstrapArgs.registries); None: none is managed."""
    server_manifests: tuple[Mapping[str, Any], ...] | None = None
    """Objects for every server's auto-deploy directory (K3sBootstrapArgs.manifests); None:
    none are managed."""

    @classmethod
    def decide(
        cls,
        name: str,
        settings: BootstrapSettings,
        token: pulumi.Output[str],
        agent_token: pulumi.Output[str],
        init: Node,
        ssh: SshArgs,
        removal: RemovalKey,
    ) -> BootstrapPlan:
        """Fill in the addresses: without a registration address (a load balancer), nodes join
        through the first server's private address and the kubeconfig points at its `address`."""
        api_address = settings.api_address or settings.registration_address or init.address
        registration = settings.registration_address or init.private_address
        return cls(
            name=name,
            k3s_version=settings.k3s.version.tag,
            upgrade_from=prerequisite.minimum if (prerequisite := upgrade_prerequisite(settings.k3s.version)) else None,
            token=token,
            agent_token=agent_token,
            registration_address=registration,
            api_address=api_address,
            tls_sans=[registration, api_address, *settings.tls_sans],
            ready_timeout_seconds=settings.k3s.ready_timeout_seconds,
            install_url=settings.install_url,
            ssh_user=ssh["user"],
            removal=removal,
            balancer_grace_seconds=BALANCER_GRACE_SECONDS if settings.registration_address is not None else 0,
            server_extra=dict(settings.server_config),
            agent_extra=dict(settings.agent_config),
            registries=settings.registries,
            server_manifests=settings.server_manifests,
        )

    def start_fields(self, role: str) -> dict[str, Any]:
        """What every start step of `role` (server|agent) passes (contracts.StartServer, StartAgent)."""
        # The version is here too so a version change re-runs the start steps: the scripts
        # refuse a binary of another version and restart onto a replaced one, in the same
        # one-server-at-a-time order as the first start. with_registries: stdin cut right
        # after config.yaml's end marker would otherwise read as "no registries" and remove
        # the registries.yaml k3s-ha wrote (lib.sh).
        extra = self.server_extra if role == "server" else self.agent_extra
        fields: dict[str, Any] = {
            "ready_timeout": self.ready_timeout_seconds,
            "version": self.k3s_version,
            "with_registries": True if self.registries is not None else None,
            "wait_cloud_init": True if external_cloud_provider(extra) else None,
            "data_dir": str(extra.get("data-dir") or K3S_DATA_DIR),
        }
        if role == "server":
            fields["with_manifests"] = True if self.server_manifests is not None else None
        return fields


def external_cloud_provider(extra: Mapping[str, Any]) -> bool:
    """The role's kubelet runs with cloud-provider=external (a `kubelet-arg` item): its Nodes
    register tainted until a cloud controller manager initialises them."""
    args = extra.get("kubelet-arg") or []
    return "cloud-provider=external" in ([args] if isinstance(args, str) else args)
