"""Security groups with the K3s port matrix (docs/installation/requirements.md).

- 2379-2380/tcp (etcd): servers <-> servers only.
- 8472/udp (flannel VXLAN) and 10250/tcp (kubelet): cluster nodes only.
- 6443/tcp (API, supervisor): cluster nodes, the load balancer, and the allowed CIDRs.
- 22/tcp: the allowed SSH CIDRs, and the servers (the first server logs in to a leaving node
  to stop it before removing it, and to a new machine to evict its stale Node: membership.py).
  With private nodes the allowed SSH CIDRs reach only the bastion k3s-ha creates (its own
  group), and the nodes take 22 from the bastion's group instead.
Nothing is open to the world unless a CIDR list says 0.0.0.0/0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from ..ports import API_PORT, ETCD_PORTS, FLANNEL_VXLAN_PORT, KUBELET_PORT, SSH_PORT


@dataclass(frozen=True)
class Firewall:
    """The cluster's security groups."""

    node_group: aws.ec2.SecurityGroup
    server_group: aws.ec2.SecurityGroup
    load_balancer_group: aws.ec2.SecurityGroup | None
    bastion_group: aws.ec2.SecurityGroup | None = None
    """The bastion's group (private nodes only): 22 from the allowed SSH CIDRs, and egress."""


def _group(
    name: str,
    description: str,
    vpc_id: pulumi.Input[str],
    tags: Mapping[str, str],
    parent: pulumi.Resource,
    egress: str = "outbound: K3s download, images, AWS APIs",
) -> aws.ec2.SecurityGroup:
    group = aws.ec2.SecurityGroup(
        name,
        description=description,
        vpc_id=vpc_id,
        tags={**tags, "Name": name},
        opts=pulumi.ResourceOptions(parent=parent),
    )
    aws.vpc.SecurityGroupEgressRule(
        f"{name}-egress",
        security_group_id=group.id,
        ip_protocol="-1",
        cidr_ipv4="0.0.0.0/0",
        description=egress,
        opts=pulumi.ResourceOptions(parent=group),
    )
    return group


def allow(
    name: str,
    group: aws.ec2.SecurityGroup,
    protocol: str,
    ports: tuple[int, int],
    description: str,
    *,
    source_group: aws.ec2.SecurityGroup | None = None,
    cidr: pulumi.Input[str] | None = None,
) -> aws.vpc.SecurityGroupIngressRule:
    return aws.vpc.SecurityGroupIngressRule(
        name,
        security_group_id=group.id,
        ip_protocol=protocol,
        from_port=ports[0],
        to_port=ports[1],
        referenced_security_group_id=source_group.id if source_group is not None else None,
        cidr_ipv4=cidr,
        description=description,
        opts=pulumi.ResourceOptions(parent=group),
    )


def build_firewall(
    name: str,
    vpc_id: pulumi.Input[str],
    *,
    ssh_cidrs: Sequence[str],
    api_cidrs: Sequence[str],
    load_balancer: bool,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
    extra_node_ports: Sequence[tuple[str, tuple[int, int], str]] = (),
    bastion: bool = False,
    node_group_tags: Mapping[str, str] | None = None,
) -> Firewall:
    """`extra_node_ports`: further (protocol, ports, what) between nodes (ports.node_ports).
    `bastion`: private nodes behind the bastion k3s-ha creates, which alone takes SSH from
    `ssh_cidrs`; the nodes take it from the bastion's group."""
    # Only the nodes' group, which every instance has, gets the cluster tag: cloud_integration.py.
    nodes = _group(
        f"{name}-nodes", "K3s cluster nodes (servers and agents)", vpc_id, {**tags, **(node_group_tags or {})}, parent
    )
    servers = _group(f"{name}-servers", "K3s servers (API and embedded etcd)", vpc_id, tags, parent)
    lb = _group(f"{name}-api-lb", "K3s API load balancer", vpc_id, tags, parent) if load_balancer else None

    allow(
        f"{name}-vxlan",
        nodes,
        "udp",
        (FLANNEL_VXLAN_PORT, FLANNEL_VXLAN_PORT),
        "flannel VXLAN between nodes",
        source_group=nodes,
    )
    allow(f"{name}-kubelet", nodes, "tcp", (KUBELET_PORT, KUBELET_PORT), "kubelet between nodes", source_group=nodes)
    for protocol, ports, what in extra_node_ports:
        allow(f"{name}-{protocol}-{ports[0]}", nodes, protocol, ports, what, source_group=nodes)
    allow(f"{name}-etcd", servers, "tcp", ETCD_PORTS, "embedded etcd between servers", source_group=servers)
    allow(f"{name}-api-nodes", servers, "tcp", (API_PORT, API_PORT), "API/supervisor from nodes", source_group=nodes)
    allow(f"{name}-ssh-from-servers", nodes, "tcp", (22, 22), "SSH from servers: node removal", source_group=servers)
    bastion_group = _bastion_group(name, vpc_id, ssh_cidrs, tags, parent) if bastion else None
    if bastion_group is not None:
        allow(
            f"{name}-ssh-from-bastion",
            nodes,
            "tcp",
            (SSH_PORT, SSH_PORT),
            "SSH via the bastion",
            source_group=bastion_group,
        )
    for index, cidr in enumerate(ssh_cidrs if bastion_group is None else ()):
        allow(f"{name}-ssh-{index}", nodes, "tcp", (SSH_PORT, SSH_PORT), f"SSH from {cidr}", cidr=cidr)
    # With a load balancer, admins come through it (its group holds their CIDRs);
    # without one they reach the servers directly.
    api_front = lb if lb is not None else servers
    for index, cidr in enumerate(api_cidrs):
        allow(f"{name}-api-{index}", api_front, "tcp", (API_PORT, API_PORT), f"API from {cidr}", cidr=cidr)
    if lb is not None:
        allow(f"{name}-api-from-lb", servers, "tcp", (API_PORT, API_PORT), "API via the load balancer", source_group=lb)
        allow(
            f"{name}-lb-from-nodes", lb, "tcp", (API_PORT, API_PORT), "joins via the load balancer", source_group=nodes
        )
    return Firewall(node_group=nodes, server_group=servers, load_balancer_group=lb, bastion_group=bastion_group)


def _bastion_group(
    name: str, vpc_id: pulumi.Input[str], ssh_cidrs: Sequence[str], tags: Mapping[str, str], parent: pulumi.Resource
) -> aws.ec2.SecurityGroup:
    """The bastion's group: SSH from the allowed CIDRs only. Its egress is open: it reaches the
    nodes on 22 and its own package updates (Ubuntu's unattended security upgrades)."""
    group = _group(
        f"{name}-bastion", "SSH bastion of the K3s nodes", vpc_id, tags, parent, "outbound: SSH to the nodes, updates"
    )
    for index, cidr in enumerate(ssh_cidrs):
        allow(f"{name}-bastion-ssh-{index}", group, "tcp", (SSH_PORT, SSH_PORT), f"SSH from {cidr}", cidr=cidr)
    return group
