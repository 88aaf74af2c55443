"""What every role step needs to know about the cluster, fixed once before the steps run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi


@dataclass(frozen=True)
class BootstrapPlan:
    name: str
    """The bootstrap's resource name: prefixes every step's name."""
    k3s_version: str
    token: pulumi.Output[str]
    agent_token: pulumi.Output[str]
    registration_address: pulumi.Input[str]
    api_address: pulumi.Input[str]
    tls_sans: Sequence[pulumi.Input[str]]
    ready_timeout_seconds: int
    install_url: str
    ssh_user: pulumi.Input[str]
    """Login user on every node; the reconcile and evict steps log in from a server with it."""
    ssh_private_key: pulumi.Output[str]
    """The SSH key (secret); it reaches a server only on a step's stdin."""
    balancer_grace_seconds: int = 0
    """How long a leaving server waits, refusing new API connections from outside the cluster,
    for a load balancer's health check to take it out (0: no balancer in front)."""
    server_extra: Mapping[str, Any] = field(default_factory=dict)
    agent_extra: Mapping[str, Any] = field(default_factory=dict)

    def start_params(self) -> dict[str, str]:
        # The version is here too so a version change re-runs the start steps: the scripts
        # refuse a binary of another version and restart onto a replaced one, in the same
        # one-server-at-a-time order as the first start.
        return {"K3S_READY_TIMEOUT": str(self.ready_timeout_seconds), "K3S_VERSION": self.k3s_version}
