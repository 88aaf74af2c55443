"""The bastion k3s-ha creates for private nodes: the one machine SSH reaches from outside.

Pulumi's SSH to every node hops through it (pulumi-command's `proxy`), and so can an operator's
(`ssh -J`, docs/security.md "Private nodes"). It is launched like a node (machines.build_instance:
IMDSv2 only, encrypted gp3 root volume, changes that would replace it ignored) with its own
generated and pinned SSH host key (host_keys.py), in the first public subnet, with a group that
takes SSH from `sshAllowedCidrs` only (firewall.py). It runs nothing else: no K3s, no token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .host_keys import HOST_KEY_TAG, generate_host_key, pinned_host_key, user_data
from .machines import architecture, build_instance, ubuntu_image

# The smallest burstable x86 type that runs Ubuntu's sshd comfortably (1 GiB of memory); a hop
# for SSH needs no more. On-demand list price in eu-west-1 about $0.0114/hour (check the EC2
# pricing page for your region).
BASTION_INSTANCE_TYPE = "t3.micro"
# The Ubuntu 24.04 image's root snapshot is 8 GiB; a little room for logs and updates.
BASTION_ROOT_VOLUME_GB = 10


@dataclass(frozen=True)
class Bastion:
    """The bastion instance and the host key Pulumi pins for it."""

    instance: aws.ec2.Instance
    host_key: pulumi.Output[str | None]
    """None only for a bastion launched without its HOST_KEY_TAG (see host_keys.pinned_host_key)."""


def bastion_image(ami_id: str | None, node_instance_type: str, parent: pulumi.Resource) -> pulumi.Input[str]:
    """The nodes' pinned image when it is for the bastion's architecture (x86: the servers' type
    says which the pin is for); otherwise the newest Ubuntu 24.04 LTS at creation."""
    if ami_id and architecture(node_instance_type) == architecture(BASTION_INSTANCE_TYPE):
        return ami_id
    return ubuntu_image(BASTION_INSTANCE_TYPE, parent)


def build_bastion(
    cluster: str,
    *,
    ami: pulumi.Input[str],
    subnet_id: pulumi.Input[str],
    security_group: aws.ec2.SecurityGroup,
    key_name: pulumi.Input[str],
    tags: Mapping[str, str],
    parent: pulumi.Resource,
) -> Bastion:
    """`<cluster>-bastion`, with a public address (its subnet is public; asked for explicitly
    all the same) and the cluster's key pair, so the same private key logs in to it."""
    name = f"{cluster}-bastion"
    key = generate_host_key(name, parent)
    instance = build_instance(
        name,
        role="bastion",
        cluster=cluster,
        ami=ami,
        instance_type=BASTION_INSTANCE_TYPE,
        subnet_id=subnet_id,
        security_group_ids=[security_group.id],
        key_name=key_name,
        root_volume_gb=BASTION_ROOT_VOLUME_GB,
        tags=tags,
        parent=parent,
        public_address=True,
        user_data=user_data(key),
        creation_tags={HOST_KEY_TAG: key.public_openssh},
    )
    return Bastion(instance=instance, host_key=pinned_host_key(instance, key, name))
