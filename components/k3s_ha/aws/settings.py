"""K3sClusterArgs -> ClusterSettings: validate, then decide, once, before anything is built.

`parse_cluster_args` checks every argument (raising ConfigError naming the field and the
fix), fills in the defaults, and returns typed values (ints, networks, a parsed K3s version)
with the warnings to log. K3sCluster builds only from the settings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from .. import validation
from ..bootstrap.settings import K3sInputs, parse_k3s_inputs
from ..errors import ConfigError
from ..validation import Network, field
from .args import ARG_KINDS, DEFAULTS, K3S_SERVER_SETTINGS, K3sClusterArgs
from .snapshots import snapshot_folder


@dataclass(frozen=True)
class NewVpc:
    """A VPC created for the cluster, one public subnet per zone."""

    cidr: ipaddress.IPv4Network
    zones: tuple[str, ...] | None
    """None: the region's first `zone_count` available zones, looked up at deploy time."""
    zone_count: int


@dataclass(frozen=True)
class ExistingVpc:
    vpc_id: pulumi.Input[str]
    subnet_ids: tuple[pulumi.Input[str], ...]


@dataclass(frozen=True)
class SnapshotBucket:
    """Where etcd snapshots go besides the servers' disks."""

    existing: str | None
    """None: a new bucket is created (and kept on destroy). Checked with the S3 naming rules."""
    folder: str
    """`k3s-ha/<project>/<stack>/<cluster>/`: the only prefix the servers may touch."""


@dataclass(frozen=True)
class ClusterSettings:
    servers: int
    agents: int
    k3s: K3sInputs
    server_instance_type: str
    agent_instance_type: str
    root_volume_gb: int
    ami_id: str | None
    """None: the newest Ubuntu LTS image, looked up per node."""
    ssh_user: str
    ssh_private_key: pulumi.Input[str]
    ssh_public_key: str | None
    key_name: str | None
    """Exactly one of `ssh_public_key` and `key_name` is set."""
    ssh_cidrs: tuple[Network, ...]
    api_cidrs: tuple[Network, ...]
    network: NewVpc | ExistingVpc
    extra_security_group_ids: tuple[pulumi.Input[str], ...]
    bastion_host: pulumi.Input[str] | None
    bastion_user: str
    load_balancer: bool
    load_balancer_internal: bool
    token: pulumi.Input[str] | None
    agent_token: pulumi.Input[str] | None
    k3s_server_settings: Mapping[str, Any]
    """config.yaml keys from K3S_SERVER_SETTINGS, identical on every server."""
    snapshot_bucket: SnapshotBucket | None
    tags: Mapping[str, str]

    @property
    def public_load_balancer_joins(self) -> bool:
        """Nodes join through an internet-facing load balancer from their public address."""
        return self.load_balancer and not self.load_balancer_internal and not self.bastion_host


def _whole_numbers(args: Mapping[str, Any]) -> dict[str, Any]:
    """Other languages send every number as a float (and pulumi 3.272's component host hands
    them on unconverted), so 3.0 is taken as 3."""
    return {
        k: int(v) if ARG_KINDS.get(k) == "int" and isinstance(v, float) and v.is_integer() else v
        for k, v in args.items()
    }


def _zones(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(z, str) and z for z in value):
        raise ConfigError(
            field("availability_zones"),
            f"{value!r} is not a list of zone names",
            'use e.g. ["eu-west-1a", "eu-west-1b", "eu-west-1c"]',
        )
    return tuple(value)


def _network(
    args: Mapping[str, Any], setting: Callable[[str], Any], zones: tuple[str, ...] | None, warnings: list[str]
) -> NewVpc | ExistingVpc:
    if not args.get("vpc_id") and args.get("subnet_ids") is None:
        subnet_count = len(zones) if zones else setting("zone_count")
        return NewVpc(validation.vpc_cidr(setting("vpc_cidr"), subnet_count), zones, setting("zone_count"))
    subnets = args.get("subnet_ids")
    if not args.get("vpc_id") or not isinstance(subnets, list) or not subnets:
        raise ConfigError(
            "vpcId / vpc_id and subnetIds / subnet_ids",
            "an existing network needs both the VPC id and at least one of its subnet ids",
            "give both (subnets in three zones for a zone-tolerant cluster), or neither to have a VPC created",
        )
    if len(subnets) < 3 and setting("servers") >= 3:
        warnings.append(
            f"subnetIds has {len(subnets)} subnet(s): servers share a zone, so losing one zone can lose etcd quorum"
        )
    return ExistingVpc(args["vpc_id"], tuple(subnets))


def _key_pair(args: Mapping[str, Any]) -> tuple[str | None, str | None]:
    public_key, key_name = args.get("ssh_public_key"), args.get("key_name")
    if not public_key and not key_name:
        raise ConfigError(
            "sshPublicKey / ssh_public_key",
            "neither an SSH public key nor an existing key pair name (keyName / key_name) was given",
            "set sshPublicKey to the public half of sshPrivateKey",
        )
    if public_key and key_name:
        raise ConfigError(
            "sshPublicKey / ssh_public_key", "both sshPublicKey and keyName are set", "set only one of them"
        )
    return public_key or None, key_name or None


def _firewall_cidrs(args: Mapping[str, Any], warnings: list[str]) -> tuple[tuple[Network, ...], tuple[Network, ...]]:
    ssh_cidrs = validation.cidrs(args.get("ssh_allowed_cidrs"), "ssh_allowed_cidrs")
    api_cidrs = validation.cidrs(args.get("api_allowed_cidrs"), "api_allowed_cidrs")
    if not ssh_cidrs:
        raise ConfigError(
            field("ssh_allowed_cidrs"),
            "is empty, so Pulumi could not reach the nodes over SSH to install K3s",
            'set it to the address you run Pulumi from, e.g. ["203.0.113.7/32"]',
        )
    if validation.world_open(ssh_cidrs):
        warnings.append("sshAllowedCidrs opens SSH (22) to the whole internet; narrow it to your own address")
    if validation.world_open(api_cidrs):
        warnings.append("apiAllowedCidrs opens the Kubernetes API (6443) to the whole internet; narrow it")
    return ssh_cidrs, api_cidrs


def _k3s_server_settings(setting: Callable[[str], Any]) -> dict[str, Any]:
    values = {
        s: validation.of_kind(setting(s.arg), ARG_KINDS[s.arg], s.arg, s.fix, s.minimum) for s in K3S_SERVER_SETTINGS
    }
    for s, value in values.items():
        if s.check:
            s.check(value)
    return {s.k3s_key: value for s, value in values.items()}


def _snapshot_bucket(name: str, existing: object) -> SnapshotBucket:
    return SnapshotBucket(
        existing=validation.s3_bucket_name(existing) if existing is not None else None,
        folder=snapshot_folder(pulumi.get_project(), pulumi.get_stack(), name),
    )


def parse_cluster_args(args: K3sClusterArgs, name: str = "cluster") -> tuple[ClusterSettings, list[str]]:
    """Check every argument; return the settings and the warnings to log. Raises ConfigError
    naming the field and the fix on bad input, before anything is registered."""
    given = _whole_numbers(args)

    def setting(arg: str) -> Any:
        value = given.get(arg)
        return DEFAULTS[arg] if value is None else value

    warnings: list[str] = []
    servers = validation.server_count(setting("servers"))
    agents = validation.agent_count(setting("agents"))
    server_type = validation.instance_type(setting("server_instance_type"), "server_instance_type")
    agent_type = validation.instance_type(setting("agent_instance_type"), "agent_instance_type")
    root_volume_gb = validation.positive_int(setting("root_volume_gb"), "root_volume_gb", "use at least 20 (GiB)")
    validation.positive_int(setting("zone_count"), "zone_count", "use 3 to spread servers over three zones")
    k3s_server_settings = _k3s_server_settings(setting)
    network = _network(given, setting, _zones(given.get("availability_zones")), warnings)
    bastion_host = given.get("bastion_host")
    validation.host_address(bastion_host, field("bastion_host"))
    if bastion_host and setting("load_balancer") and not setting("load_balancer_internal"):
        warnings.append(
            "bastionHost with an internet-facing load balancer: nodes in private subnets reach it through "
            "your NAT gateway's address, which apiAllowedCidrs must then include (or set loadBalancerInternal)"
        )
    ssh_cidrs, api_cidrs = _firewall_cidrs(given, warnings)
    public_key, key_name = _key_pair(given)
    k3s, k3s_warnings = parse_k3s_inputs(
        k3s_version=setting("k3s_version"),
        allow_dqlite=bool(setting("allow_dqlite")),
        token=given.get("token"),
        agent_token=given.get("agent_token"),
        ready_timeout_seconds=setting("ready_timeout_seconds"),
        ssh_user=setting("ssh_user"),
        ssh_private_key=given.get("ssh_private_key"),
    )
    etcd_s3_bucket = given.get("etcd_s3_bucket")
    settings = ClusterSettings(
        servers=servers,
        agents=agents,
        k3s=k3s,
        server_instance_type=server_type,
        agent_instance_type=agent_type,
        root_volume_gb=root_volume_gb,
        ami_id=given.get("ami_id") or None,
        ssh_user=setting("ssh_user"),
        ssh_private_key=given["ssh_private_key"],
        ssh_public_key=public_key,
        key_name=key_name,
        ssh_cidrs=ssh_cidrs,
        api_cidrs=api_cidrs,
        network=network,
        extra_security_group_ids=tuple(given.get("extra_security_group_ids") or ()),
        bastion_host=bastion_host or None,
        bastion_user=given.get("bastion_user") or setting("ssh_user"),
        load_balancer=bool(setting("load_balancer")),
        load_balancer_internal=bool(setting("load_balancer_internal")),
        token=given.get("token"),
        agent_token=given.get("agent_token"),
        k3s_server_settings=k3s_server_settings,
        snapshot_bucket=_snapshot_bucket(name, etcd_s3_bucket) if setting("etcd_s3") or etcd_s3_bucket else None,
        tags=validation.tags(given.get("tags")),
    )
    return settings, warnings + k3s_warnings
