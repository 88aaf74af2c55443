"""The cluster's own VPC: one public subnet per availability zone, and with private nodes one
private subnet per zone behind NAT gateways.

Parented along the logical chain (vpc -> subnet -> route table association), pulumi-awsx style
(its Vpc parents each subnet to the VPC, and a subnet's route table, NAT gateway and Elastic IP
to the subnet).
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
    public_subnet_ids: Sequence[pulumi.Input[str]] | pulumi.Output[list[str]] | None = None
    """The public subnets, when the nodes are not in them (private nodes): for the bastion and
    an internet-facing load balancer. None: the nodes' subnets are the public ones."""
    nat_public_ips: Sequence[pulumi.Output[str]] = ()
    """The NAT gateways' Elastic IPs: the addresses private nodes reach the internet from."""
    egress_ready: Sequence[pulumi.Output[str]] = ()
    """Ids of the private subnets' route table associations: once they exist, so do the routes
    and the NAT gateways they name (a NAT gateway is created only once available), and a node's
    steps, which download K3s, may run."""

    @property
    def public_subnets(self) -> Sequence[pulumi.Input[str]] | pulumi.Output[list[str]]:
        return self.subnet_ids if self.public_subnet_ids is None else self.public_subnet_ids


def subnet_cidrs(vpc_cidr: ipaddress.IPv4Network, count: int) -> list[str]:
    """Equal /+4 slices of the VPC, one per zone, in a stable order."""
    slices = vpc_cidr.subnets(prefixlen_diff=4)
    return [str(next(slices)) for _ in range(count)]


def private_subnet_cidrs(vpc_cidr: ipaddress.IPv4Network, count: int) -> list[str]:
    """The private subnets: slices of the VPC's upper half as large as the public ones, which
    take the first slices of the lower half (at most 8 zones: settings.MAX_PRIVATE_ZONES), so
    the two never collide and the public ones keep their CIDRs."""
    upper = list(vpc_cidr.subnets(prefixlen_diff=1))[1]
    slices = upper.subnets(prefixlen_diff=3)
    return [str(next(slices)) for _ in range(count)]


def build_network(
    name: str,
    vpc_cidr: ipaddress.IPv4Network,
    zones: Sequence[pulumi.Input[str]],
    tags: Mapping[str, str],
    parent: pulumi.Resource,
    *,
    private_nodes: bool = False,
    nat_gateways: str = "perZone",
    cluster_tags: Mapping[str, str] | None = None,
) -> Network:
    """`cluster_tags`: the AWS integration's, on every subnet with its role tag (_role_tags)."""
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
    subnets = []
    for index, (zone, cidr) in enumerate(zip(zones, subnet_cidrs(vpc_cidr, len(zones)))):
        subnet = _subnet(
            f"{name}-public-{index}", vpc, zone, cidr, public=True, tags={**tags, **_role_tags(cluster_tags, "elb")}
        )
        aws.ec2.RouteTableAssociation(
            f"{name}-public-{index}",
            subnet_id=subnet.id,
            route_table_id=routes.id,
            opts=pulumi.ResourceOptions(parent=subnet),
        )
        subnets.append(subnet)
    public_ids = [subnet.id for subnet in subnets]
    if not private_nodes:
        return Network(vpc_id=vpc.id, subnet_ids=public_ids)
    nats = _nat_gateways(name, subnets if nat_gateways == "perZone" else subnets[:1], gateway, tags)
    private_tags = {**tags, **_role_tags(cluster_tags, "internal-elb")}
    private_ids, ready = _private_subnets(name, vpc, vpc_cidr, zones, [nat for nat, _ in nats], private_tags)
    nat_ips = [ip for _, ip in nats]
    return Network(vpc.id, private_ids, public_subnet_ids=public_ids, nat_public_ips=nat_ips, egress_ready=ready)


def _subnet(
    name: str, vpc: aws.ec2.Vpc, zone: pulumi.Input[str], cidr: str, *, public: bool, tags: Mapping[str, str]
) -> aws.ec2.Subnet:
    """A zone's subnet, named and tagged `name`; `public`: instances get a public address."""
    return aws.ec2.Subnet(
        name,
        vpc_id=vpc.id,
        cidr_block=cidr,
        availability_zone=zone,
        map_public_ip_on_launch=public,
        tags={**tags, "Name": name},
        # get_availability_zones(state="available") shifts when a zone is impaired; a subnet
        # keeps the zone it was made in rather than being replaced (its nodes with it).
        opts=pulumi.ResourceOptions(parent=vpc, ignore_changes=["availabilityZone"]),
    )


def _role_tags(cluster_tags: Mapping[str, str] | None, role: str) -> dict[str, str]:
    """The cluster tag and the role tag that tells the AWS CCM where a load balancer may go:
    `kubernetes.io/role/elb` on public subnets (internet-facing), `.../internal-elb` on
    private ones (cloud-provider-aws pkg/providers/v1/aws.go findSubnets)."""
    return {**cluster_tags, f"kubernetes.io/role/{role}": "1"} if cluster_tags else {}


def _nat_gateways(
    name: str, public: Sequence[aws.ec2.Subnet], gateway: aws.ec2.InternetGateway, tags: Mapping[str, str]
) -> list[tuple[aws.ec2.NatGateway, pulumi.Output[str]]]:
    """A public NAT gateway, with an Elastic IP of its own, in each given public subnet.

    A NAT gateway is zonal: it lives in one zone's subnet, and the private subnets whose route
    tables point at it lose internet egress when that zone fails, hence one per zone by default
    (AWS VPC User Guide, "NAT gateways", "If you have resources in multiple Availability Zones
    and they share one NAT gateway, and if the NAT gateway's Availability Zone is down,
    resources in the other Availability Zones lose internet access"). pulumi-aws 7
    ec2.NatGateway: `allocation_id` (the EIP) and `subnet_id` are required for a public zonal
    gateway, the default `availability_mode`; both it and ec2.Eip (`domain="vpc"`) document an
    explicit dependency on the internet gateway (pulumi_aws/ec2/nat_gateway.py, eip.py)."""
    nats = []
    for index, subnet in enumerate(public):
        opts = pulumi.ResourceOptions(parent=subnet, depends_on=[gateway])
        eip = aws.ec2.Eip(f"{name}-nat-{index}", domain="vpc", tags={**tags, "Name": f"{name}-nat-{index}"}, opts=opts)
        nat = aws.ec2.NatGateway(
            f"{name}-nat-{index}",
            allocation_id=eip.allocation_id,
            subnet_id=subnet.id,
            connectivity_type="public",
            tags={**tags, "Name": f"{name}-nat-{index}"},
            opts=opts,
        )
        nats.append((nat, eip.public_ip))
    return nats


def _private_subnets(
    name: str,
    vpc: aws.ec2.Vpc,
    vpc_cidr: ipaddress.IPv4Network,
    zones: Sequence[pulumi.Input[str]],
    nats: Sequence[aws.ec2.NatGateway],
    tags: Mapping[str, str],
) -> tuple[list[pulumi.Output[str]], list[pulumi.Output[str]]]:
    """One private subnet per zone, each with its own route table whose default route goes to
    its zone's NAT gateway (the only one, with a single gateway); their ids, and their route
    table associations' (Network.egress_ready)."""
    ids, ready = [], []
    for index, (zone, cidr) in enumerate(zip(zones, private_subnet_cidrs(vpc_cidr, len(zones)))):
        subnet = _subnet(f"{name}-private-{index}", vpc, zone, cidr, public=False, tags=tags)
        routes = aws.ec2.RouteTable(
            f"{name}-private-{index}",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nats[index % len(nats)].id)],
            tags={**tags, "Name": f"{name}-private-{index}"},
            opts=pulumi.ResourceOptions(parent=subnet),
        )
        association = aws.ec2.RouteTableAssociation(
            f"{name}-private-{index}",
            subnet_id=subnet.id,
            route_table_id=routes.id,
            opts=pulumi.ResourceOptions(parent=routes),
        )
        ids.append(subnet.id)
        ready.append(association.id)
    return ids, ready
