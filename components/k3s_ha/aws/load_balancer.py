"""The fixed registration address: a network load balancer on 6443 in front of the servers.

Joins and the kubeconfig go through it, so neither depends on the first server staying
alive, and its DNS name is in every server's certificate (tls-san).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from ..ports import API_PORT

# In service only once the kube-apiserver itself answers, not the K3s supervisor: `/ping`
# answers "pong" before etcd and the apiserver are up (real-behaviour.md). An unauthenticated
# /readyz gets 401 from the apiserver because K3s runs it with anonymous-auth=false
# (k3s-io/k3s pkg/daemons/control/server.go); a balancer cannot authenticate, so 401 is the
# strongest answer it can get, and a stopped or still-starting server gives none. Three
# answers 10 s apart before a new server is in service; a server taken out (stopped before it
# leaves the cluster, docs/day2.md "Removing nodes") is out after two misses, about 10 s.
HEALTH_CHECK = aws.lb.TargetGroupHealthCheckArgs(
    protocol="HTTPS",
    path="/readyz",
    port="traffic-port",
    matcher="401",
    healthy_threshold=3,
    unhealthy_threshold=2,
    interval=5,
    timeout=4,
)


@dataclass(frozen=True)
class ApiLoadBalancer:
    """The API load balancer: its address, and the target group each server is attached to."""

    dns_name: pulumi.Output[str]
    target_group: aws.lb.TargetGroup


def build_load_balancer(
    name: str,
    *,
    vpc_id: pulumi.Input[str],
    subnet_ids: Sequence[pulumi.Input[str]] | pulumi.Output[list[str]],
    security_group: aws.ec2.SecurityGroup,
    internal: bool,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
) -> ApiLoadBalancer:
    balancer = aws.lb.LoadBalancer(
        f"{name}-api",
        load_balancer_type="network",
        internal=internal,
        subnets=subnet_ids if isinstance(subnet_ids, pulumi.Output) else list(subnet_ids),
        security_groups=[security_group.id],
        enable_cross_zone_load_balancing=True,
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    target_group = aws.lb.TargetGroup(
        f"{name}-api",
        port=API_PORT,
        protocol="TCP",
        target_type="instance",
        # Servers join and talk through the balancer themselves: with the client IP kept, a
        # target that lands on itself drops the connection (AWS NLB troubleshooting,
        # "loopback"/"hairpin"; real-behaviour.md).
        preserve_client_ip="false",
        health_check=HEALTH_CHECK,
        deregistration_delay=30,
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=balancer),
    )
    aws.lb.Listener(
        f"{name}-api",
        load_balancer_arn=balancer.arn,
        port=API_PORT,
        protocol="TCP",
        default_actions=[aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)],
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=balancer),
    )
    return ApiLoadBalancer(dns_name=balancer.dns_name, target_group=target_group)


def attach_server(name: str, lb: ApiLoadBalancer, instance: aws.ec2.Instance) -> None:
    aws.lb.TargetGroupAttachment(
        f"{name}-api",
        target_group_arn=lb.target_group.arn,
        target_id=instance.id,
        port=API_PORT,
        opts=pulumi.ResourceOptions(parent=instance),
    )
