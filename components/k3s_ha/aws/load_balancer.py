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


@dataclass(frozen=True)
class ApiLoadBalancer:
    dns_name: pulumi.Output[str]
    target_group: aws.lb.TargetGroup


def build_load_balancer(
    name: str,
    *,
    vpc_id: pulumi.Input[str],
    subnet_ids: Sequence[pulumi.Input[str]],
    security_group: aws.ec2.SecurityGroup,
    internal: bool,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
) -> ApiLoadBalancer:
    balancer = aws.lb.LoadBalancer(
        f"{name}-api",
        load_balancer_type="network",
        internal=internal,
        subnets=list(subnet_ids),
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
        vpc_id=vpc_id,
        # Unauthenticated probe K3s answers with "pong" on the supervisor port.
        health_check=aws.lb.TargetGroupHealthCheckArgs(
            protocol="HTTPS",
            path="/ping",
            port="traffic-port",
            matcher="200",
            healthy_threshold=2,
            unhealthy_threshold=2,
            interval=10,
        ),
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
