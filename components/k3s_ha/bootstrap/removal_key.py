"""The cluster's removal key (issue 18.3): what the first server's removals and evict steps log
in to other nodes with, so that the operator's own key (often one that opens other machines,
and the bastion) never reaches a server.

One ED25519 key per cluster, made by pulumi-tls (its private half a secret in the state:
pulumi_tls registers `privateKeyOpenssh` as an additional secret output). Each node's install
step puts its public half into the SSH user's authorized_keys (install-k3s.sh, lib.sh
k3s_ha_authorize_removal_key) as
`restrict[,from="<removal_key_sources>"] ssh-ed25519 ... k3s-ha-removal:<cluster>`:
no forwarding of any kind and no pty (sshd(8), AUTHORIZED_KEYS FILE FORMAT), and with sources
only from those. Sources must outlive server replacements: the machine a removal reaches is
often one whose own steps no longer run (a replaced first server), so its line still names the
sources of its last install. Hence ranges the caller knows to be stable (K3sCluster: its VPC's
CIDR), not the servers' current addresses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

COMMENT_PREFIX = "k3s-ha-removal:"


@dataclass(frozen=True)
class RemovalKey:
    private_key: pulumi.Output[str]
    """OpenSSH private key (secret); it reaches a server only on a step's stdin."""
    authorized_line: pulumi.Output[str]
    """Its authorized_keys line, the same on every node."""


def removal_key(name: str, sources: Sequence[pulumi.Input[str]], parent: pulumi.Resource) -> RemovalKey:
    key = tls.PrivateKey(f"{name}-removal-key", algorithm="ED25519", opts=pulumi.ResourceOptions(parent=parent))
    line = pulumi.Output.all(key.public_key_openssh, *sources).apply(
        lambda values: authorized_line(name, values[0], values[1:])
    )
    return RemovalKey(private_key=key.private_key_openssh, authorized_line=line)


def authorized_line(cluster: str, public_key: str, sources: Sequence[str]) -> str:
    """The authorized_keys line of the removal key `public_key` ("ssh-ed25519 BLOB ...")."""
    options = "restrict"
    if sources:
        options += ',from="' + ",".join(dict.fromkeys(sources)) + '"'
    key_type, blob = public_key.split()[:2]
    return f"{options} {key_type} {blob} {COMMENT_PREFIX}{cluster}"
