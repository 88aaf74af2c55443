"""The cluster's own VPC: one public subnet per availability zone.

Parented along the logical chain (vpc -> subnet -> route table association), pulumi-awsx style.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class Network:
    """The VPC and the subnets the nodes go in, created or given."""

    vpc_id: pulumi.Output[str]
    subnet_ids: Sequence[pulumi.Input[str]] | pulumi.Output[list[str]]


def subnet_cidrs(vpc_cidr: ipaddress.IPv4Network, count: int) -> list[str]:
    """Equal /+4 slices of the VPC, one per zone, in a stable order."""
    slices = vpc_cidr.subnets(prefixlen_diff=4)
    return [str(next(slices)) for _ in range(count)]


def build_network(
    name: str,
    vpc_cidr: ipaddress.IPv4Network,
    zones: Sequence[pulumi.Input[str]],
    tags: Mapping[str, str],
    parent: pulumi.Resource,
) -> Network:
    vpc = aws.ec2.Vpc(
        f"{name}-vpc",
        cidr_block=str(vpc_cidr),
        enable_dns_hostnames=True,
        enable_dns_support=True,
        tags={**tags, "Name": f"{name}-vpc"},
        opts=pulumi.ResourceOptions(parent=parent),
    )
    in_vpc = pulumi.ResourceOptions(parent=vpc)
    gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={**tags, "Name": f"{name}-igw"}, opts=in_vpc)
    routes = aws.ec2.RouteTable(
        f"{name}-public",
        vpc_id=vpc.id,
        routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
        tags={**tags, "Name": f"{name}-public"},
        opts=in_vpc,
    )
    subnet_ids = []
    for index, (zone, cidr) in enumerate(zip(zones, subnet_cidrs(vpc_cidr, len(zones)))):
        subnet = aws.ec2.Subnet(
            f"{name}-public-{index}",
            vpc_id=vpc.id,
            cidr_block=cidr,
            availability_zone=zone,
            map_public_ip_on_launch=True,
            tags={**tags, "Name": f"{name}-public-{index}"},
            # get_availability_zones(state="available") shifts when a zone is impaired; a
            # subnet keeps the zone it was made in rather than being replaced (its nodes with it).
            opts=pulumi.ResourceOptions(parent=vpc, ignore_changes=["availabilityZone"]),
        )
        aws.ec2.RouteTableAssociation(
            f"{name}-public-{index}",
            subnet_id=subnet.id,
            route_table_id=routes.id,
            opts=pulumi.ResourceOptions(parent=subnet),
        )
        subnet_ids.append(subnet.id)
    return Network(vpc_id=vpc.id, subnet_ids=subnet_ids)
