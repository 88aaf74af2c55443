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

from .. import operator_address, passthrough, validation
from ..bootstrap.settings import K3sInputs, parse_k3s_inputs
from ..errors import ConfigError
from ..operator_address import AUTO, OperatorAddressError
from ..validation import field
from . import checks, cloud_integration
from .args import ARG_KINDS, DEFAULTS, K3S_SERVER_SETTINGS, K3sClusterArgs
from .checks import Network
from .snapshots import snapshot_folder


@dataclass(frozen=True)
class NewVpc:
    """A VPC created for the cluster, one public subnet per zone."""

    cidr: ipaddress.IPv4Network
    zones: tuple[str, ...] | None
    """None: the region's first `zone_count` available zones, looked up at deploy time."""
    zone_count: int
    private_nodes: bool = False
    """Nodes in a private subnet per zone (the public ones stay, for the NAT gateways, the
    bastion and an internet-facing load balancer)."""
    nat_gateways: str = "perZone"
    """With private_nodes: "perZone" (one NAT gateway per zone) or "single" (one, in zone 0)."""


@dataclass(frozen=True)
class ExistingVpc:
    """A VPC and subnets the user already has."""

    vpc_id: pulumi.Input[str]
    subnet_ids: tuple[pulumi.Input[str], ...] | pulumi.Output[list[str]]
    """A plain list is checked at once; an Output (another resource's) when it is known."""


@dataclass(frozen=True)
class SnapshotBucket:
    """Where etcd snapshots go besides the servers' disks."""

    existing: str | None
    """None: a new bucket is created (and kept on destroy). Checked with the S3 naming rules."""
    folder: str
    """`k3s-ha/<project>/<stack>/<cluster>/`: the only prefix the servers may touch."""


@dataclass(frozen=True)
class CloudSettings:
    """The AWS cloud integration, decided (aws/cloud_integration.py builds it)."""

    cluster_id: str
    """The id in the cluster's `kubernetes.io/cluster/<id>` tags."""
    ccm_image: str
    """The AWS cloud controller manager release for the cluster's Kubernetes minor."""


def _snapshots_and_cloud(
    name: str, given: Mapping[str, Any], setting: Callable[[str], Any], k3s: K3sInputs
) -> tuple[SnapshotBucket | None, CloudSettings | None]:
    """The snapshot bucket (etcdS3, etcdS3Bucket) and the AWS integration (awsIntegration)."""
    bucket = _snapshot_bucket(name, given.get("etcd_s3_bucket"), bool(setting("etcd_s3")))
    if not checks.of_kind(setting("aws_integration"), "bool", "aws_integration", "use true or false"):
        return bucket, None
    cluster = cloud_integration.cluster_id(pulumi.get_project(), pulumi.get_stack(), name)
    return bucket, CloudSettings(cluster, cloud_integration.ccm_image(k3s.version))


@dataclass(frozen=True)
class ClusterSettings:
    """A K3sCluster's inputs, checked: what the component builds from."""

    servers: int
    agents: int
    k3s: K3sInputs
    server_instance_type: str
    agent_instance_type: str
    root_volume_gb: int
    ami_id: str | None
    """None: the newest Ubuntu LTS image, looked up per node."""
    ssh_user: str
    ssh_key: SshKey
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
    server_config: Mapping[str, Any]
    """Further config.yaml settings for every server (`server_config`), checked."""
    agent_config: Mapping[str, Any]
    registries: Mapping[str, Any] | None
    snapshot_bucket: SnapshotBucket | None
    tags: Mapping[str, str]
    cloud: CloudSettings | None = None
    """The AWS cloud integration (`aws_integration`); None when it is off."""

    @property
    def private_nodes(self) -> bool:
        """Nodes in private subnets of the VPC k3s-ha creates, behind NAT gateways and a bastion
        k3s-ha creates (never with an existing VPC or bastion_host: parse_cluster_args refuses)."""
        return isinstance(self.network, NewVpc) and self.network.private_nodes

    @property
    def public_load_balancer_joins(self) -> bool:
        """Nodes join through an internet-facing load balancer from their public address."""
        return (
            self.load_balancer and not self.load_balancer_internal and not self.bastion_host and not self.private_nodes
        )

    @property
    def nat_load_balancer_joins(self) -> bool:
        """Private nodes join through an internet-facing load balancer from the NAT gateways'
        Elastic IPs."""
        return self.load_balancer and not self.load_balancer_internal and self.private_nodes


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


def checked_subnet_ids(ids: object, servers: int) -> list[str]:
    """subnetIds given as an Output, once known: a non-empty list of subnet ids (checked as the
    plain list is in _network; a warning, logged then, for servers sharing a zone)."""
    if not isinstance(ids, (list, tuple)) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise ConfigError(
            field("subnet_ids"),
            f"the output given resolved to {ids!r}, not a list of subnet ids",
            "pass an output that resolves to at least one subnet id of vpcId (three, in three zones)",
        )
    warning = _shared_zone_warning(len(ids), servers)
    if warning:
        pulumi.log.warn(warning)
    return list(ids)


def _shared_zone_warning(subnets: int, servers: int) -> str | None:
    """The warning for existing subnets too few to give 3 servers a zone each."""
    if subnets < 3 and servers >= 3:
        return f"subnetIds has {subnets} subnet(s): servers share a zone, so losing one zone can lose etcd quorum"
    return None


def _network(
    args: Mapping[str, Any], setting: Callable[[str], Any], zones: tuple[str, ...] | None, warnings: list[str]
) -> NewVpc | ExistingVpc:
    subnet_count = len(zones) if zones else setting("zone_count")
    private = _private_nodes(args, setting, subnet_count, warnings)
    if not args.get("vpc_id") and args.get("subnet_ids") is None:
        return NewVpc(checks.vpc_cidr(setting("vpc_cidr"), subnet_count), zones, setting("zone_count"), **private)
    subnets = args.get("subnet_ids")
    if args.get("vpc_id") and isinstance(subnets, pulumi.Output):
        return ExistingVpc(args["vpc_id"], subnets.apply(lambda ids: checked_subnet_ids(ids, setting("servers"))))
    if not args.get("vpc_id") or not isinstance(subnets, list) or not subnets:
        raise ConfigError(
            "vpcId / vpc_id and subnetIds / subnet_ids",
            "an existing network needs both the VPC id and at least one of its subnet ids",
            "give both (subnets in three zones for a zone-tolerant cluster), or neither to have a VPC created",
        )
    warning = _shared_zone_warning(len(subnets), setting("servers"))
    if warning:
        warnings.append(warning)
    return ExistingVpc(args["vpc_id"], tuple(subnets))


@dataclass(frozen=True)
class SshKey:
    """How Pulumi logs in: a key the user gave (with its public half or an existing key pair's
    name), or, with none of the three set, a key generated once and kept in the state."""

    private_key: pulumi.Input[str] | None
    """None: generated."""
    public_key: pulumi.Input[str] | None
    key_name: str | None

    @property
    def generated(self) -> bool:
        return self.private_key is None


def _given(value: object) -> bool:
    """Set: an Output counts (its value is known only at deploy time), an empty string not."""
    return isinstance(value, pulumi.Output) or bool(value)


def _ssh_key(args: Mapping[str, Any]) -> SshKey:
    private_key, public_key, key_name = (args.get(k) for k in ("ssh_private_key", "ssh_public_key", "key_name"))
    if _given(public_key) and key_name:
        raise ConfigError(
            "sshPublicKey / ssh_public_key", "both sshPublicKey and keyName are set", "set only one of them"
        )
    if not _given(public_key) and not key_name:
        if _given(private_key):
            raise ConfigError(
                "sshPublicKey / ssh_public_key",
                "sshPrivateKey is set, but neither its public half nor an existing key pair name (keyName / key_name)",
                "set sshPublicKey to the public half of sshPrivateKey, or unset sshPrivateKey to have a key generated",
            )
        return SshKey(private_key=None, public_key=None, key_name=None)
    if not _given(private_key):
        given = "sshPublicKey" if _given(public_key) else "keyName"
        raise ConfigError(
            field("ssh_private_key"),
            f"{given} is set, so Pulumi needs the matching private key to log in to the nodes",
            'set it with `pulumi config set --secret sshPrivateKey -- "$(cat ~/.ssh/<key>)"`, '
            f"or unset {given} to have a key generated",
        )
    if public_key is not None and not isinstance(public_key, pulumi.Output) and not isinstance(public_key, str):
        raise ConfigError(
            field("ssh_public_key"),
            f"{public_key!r} is not a string",
            "give the OpenSSH public key text (ssh-ed25519 ...)",
        )
    return SshKey(
        private_key=private_key, public_key=public_key if _given(public_key) else None, key_name=key_name or None
    )


def _with_operator_address(values: object, arg: str, operator_address: Callable[[], str]) -> object:
    """`auto` items -> the operator's public address as a /32 (operator_address.py)."""
    if not isinstance(values, list) or AUTO not in values:
        return values
    try:
        own = f"{operator_address()}/32"
    except OperatorAddressError as error:
        raise ConfigError(
            field(arg),
            f"`{AUTO}` stands for the public address of the machine running Pulumi, which could not be learned: {error}",
            'list the address instead, e.g. ["203.0.113.7/32"], or check that this machine reaches '
            "https://checkip.amazonaws.com",
        ) from None
    return [own if value == AUTO else value for value in values]


def _firewall_cidrs(
    args: Mapping[str, Any], warnings: list[str], operator_address: Callable[[], str]
) -> tuple[tuple[Network, ...], tuple[Network, ...]]:
    learned: list[str] = []

    def once() -> str:  # one lookup even when both lists say auto
        if not learned:
            learned.append(operator_address())
        return learned[0]

    ssh_cidrs = checks.cidrs(
        _with_operator_address(args.get("ssh_allowed_cidrs"), "ssh_allowed_cidrs", once), "ssh_allowed_cidrs"
    )
    api_cidrs = checks.cidrs(
        _with_operator_address(args.get("api_allowed_cidrs"), "api_allowed_cidrs", once), "api_allowed_cidrs"
    )
    if not ssh_cidrs:
        raise ConfigError(
            field("ssh_allowed_cidrs"),
            "is empty, so Pulumi could not reach the nodes over SSH to install K3s",
            f'set it to the address you run Pulumi from, e.g. ["203.0.113.7/32"], or to ["{AUTO}"] to have it looked up',
        )
    if checks.world_open(ssh_cidrs):
        warnings.append("sshAllowedCidrs opens SSH (22) to the whole internet; narrow it to your own address")
    if checks.world_open(api_cidrs):
        warnings.append("apiAllowedCidrs opens the Kubernetes API (6443) to the whole internet; narrow it")
    return ssh_cidrs, api_cidrs


def _k3s_server_settings(setting: Callable[[str], Any]) -> dict[str, Any]:
    values = {s: checks.of_kind(setting(s.arg), ARG_KINDS[s.arg], s.arg, s.fix, s.minimum) for s in K3S_SERVER_SETTINGS}
    for s, value in values.items():
        if s.check:
            s.check(value)
    return {s.k3s_key: value for s, value in values.items()}


def _snapshot_bucket(name: str, existing: object, etcd_s3: bool) -> SnapshotBucket | None:
    """Where etcd snapshots go: None when neither etcdS3 nor etcdS3Bucket is set."""
    if not etcd_s3 and not existing:
        return None
    return SnapshotBucket(
        existing=checks.s3_bucket_name(existing) if existing is not None else None,
        folder=snapshot_folder(pulumi.get_project(), pulumi.get_stack(), name),
    )


# config.yaml keys K3sCluster writes when the snapshot bucket is on (snapshots.py), by the input
# that sets them.
_ETCD_S3_KEYS = {k: "etcd_s3" for k in ("etcd-s3", "etcd-s3-bucket", "etcd-s3-region", "etcd-s3-folder")}


def _passthrough(
    args: Mapping[str, Any], snapshots_to_s3: bool, cloud: bool
) -> tuple[dict[str, Any], dict[str, Any], Mapping[str, Any] | None]:
    """serverConfig / agentConfig / registries, checked. A K3s setting that has its own input
    (etcdSnapshotRetention, etcdS3 while it is on) is refused here, so the two never disagree.
    With the AWS integration (`cloud`) its K3s settings are added, and any that contradicts it
    is refused (cloud_integration.merge_settings)."""
    own_inputs = {s.k3s_key: s.arg for s in K3S_SERVER_SETTINGS}
    if snapshots_to_s3:
        own_inputs |= _ETCD_S3_KEYS
    server = passthrough.k3s_settings(args.get("server_config"), "server_config", "server", own_inputs)
    agent = passthrough.k3s_settings(args.get("agent_config"), "agent_config", "agent")
    if cloud:
        server = cloud_integration.merge_settings(server, cloud_integration.SERVER_SETTINGS, "server_config")
        agent = cloud_integration.merge_settings(agent, cloud_integration.AGENT_SETTINGS, "agent_config")
    return server, agent, passthrough.registries(args.get("registries"))


def _bastion_host(given: dict[str, Any], setting: Callable[[str], Any], warnings: list[str]) -> str | None:
    bastion_host = given.get("bastion_host")
    validation.host_address(bastion_host, field("bastion_host"))
    if bastion_host and setting("load_balancer") and not setting("load_balancer_internal"):
        warnings.append(
            "bastionHost with an internet-facing load balancer: nodes in private subnets reach it through "
            "your NAT gateway's address, which apiAllowedCidrs must then include (or set loadBalancerInternal)"
        )
    return bastion_host


NAT_GATEWAY_MODES = ("perZone", "single")
# Private subnets take the upper half of the VPC (network.private_subnet_cidrs): 8 of its /+4 slices.
MAX_PRIVATE_ZONES = 8


def _private_nodes(
    given: Mapping[str, Any], setting: Callable[[str], Any], zones: int, warnings: list[str]
) -> dict[str, Any]:
    """privateNodes and natGateways (NewVpc's private_nodes, nat_gateways), checked: private
    subnets, NAT gateways and the bastion are built only in the VPC k3s-ha creates."""
    private = checks.of_kind(setting("private_nodes"), "bool", "private_nodes", "use true or false")
    nat = setting("nat_gateways")
    if nat not in NAT_GATEWAY_MODES:
        raise ConfigError(
            field("nat_gateways"), f"{nat!r} is not a NAT gateway layout", 'use "perZone" (the default) or "single"'
        )
    if not private:
        return {"private_nodes": False, "nat_gateways": nat}
    if given.get("vpc_id") or given.get("subnet_ids") is not None:
        raise ConfigError(
            field("private_nodes"),
            "k3s-ha makes private subnets, NAT gateways and a bastion only in the VPC it creates, "
            "and vpcId / subnetIds name an existing one",
            "put nodes in your private subnets with subnetIds and give bastionHost (and unset privateNodes)",
        )
    if given.get("bastion_host"):
        raise ConfigError(
            field("bastion_host"),
            "privateNodes is set, and with it k3s-ha creates the bastion Pulumi's SSH goes through",
            "unset bastionHost (or unset privateNodes to reach the nodes through your own bastion)",
        )
    if zones > MAX_PRIVATE_ZONES:
        raise ConfigError(
            field("availability_zones" if given.get("availability_zones") else "zone_count"),
            f"{zones} zones: private subnets take the upper half of vpcCidr, room for {MAX_PRIVATE_ZONES}",
            f"use at most {MAX_PRIVATE_ZONES} zones (3 are enough for a zone-tolerant cluster)",
        )
    if not setting("load_balancer") or setting("load_balancer_internal"):
        warnings.append(
            "privateNodes without an internet-facing load balancer: the Kubernetes API (and the kubeconfig's "
            "address) is reachable only inside the VPC; set loadBalancer to reach it from apiAllowedCidrs"
        )
    return {"private_nodes": True, "nat_gateways": nat}


def _k3s_inputs(given: dict[str, Any], setting: Callable[[str], Any]) -> tuple[K3sInputs, list[str]]:
    """The inputs K3sBootstrap shares, checked as it checks them (bootstrap/settings.py)."""
    return parse_k3s_inputs(
        k3s_version=setting("k3s_version"),
        allow_dqlite=bool(setting("allow_dqlite")),
        token=given.get("token"),
        agent_token=given.get("agent_token"),
        ready_timeout_seconds=setting("ready_timeout_seconds"),
        ssh_user=setting("ssh_user"),
    )


def parse_cluster_args(
    args: K3sClusterArgs, resolve_operator_address: Callable[[], str] | None = None, *, name: str = "cluster"
) -> tuple[ClusterSettings, list[str]]:
    """Check every argument; return the settings and the warnings to log. Raises ConfigError
    naming the field and the fix on bad input, before anything is registered.
    `resolve_operator_address` answers `auto` in the CIDR lists (default:
    operator_address.resolver, which asks checkip.amazonaws.com); it is called at most once."""
    validation.cluster_name(name, "the cluster's name (the stack name, or the K3sCluster's name)")
    given = _whole_numbers(args)

    def setting(arg: str) -> Any:
        value = given.get(arg)
        return DEFAULTS[arg] if value is None else value

    warnings: list[str] = []
    servers = validation.server_count(setting("servers"))
    agents = validation.agent_count(setting("agents"))
    server_type = checks.instance_type(setting("server_instance_type"), "server_instance_type")
    agent_type = checks.instance_type(setting("agent_instance_type"), "agent_instance_type")
    root_volume_gb = validation.positive_int(setting("root_volume_gb"), "root_volume_gb", "use at least 20 (GiB)")
    validation.positive_int(setting("zone_count"), "zone_count", "use 3 to spread servers over three zones")
    k3s_server_settings = _k3s_server_settings(setting)
    network = _network(given, setting, _zones(given.get("availability_zones")), warnings)
    bastion_host = _bastion_host(given, setting, warnings)
    ssh_cidrs, api_cidrs = _firewall_cidrs(given, warnings, resolve_operator_address or operator_address.resolver)
    ssh_key = _ssh_key(given)
    k3s, k3s_warnings = _k3s_inputs(given, setting)
    snapshot_bucket, cloud = _snapshots_and_cloud(name, given, setting, k3s)
    server_config, agent_config, registries = _passthrough(given, snapshot_bucket is not None, cloud is not None)
    if isinstance(network, NewVpc):
        checks.k3s_networks_outside(server_config, network.cidr)
    settings = ClusterSettings(
        servers=servers,
        agents=agents,
        k3s=k3s,
        server_instance_type=server_type,
        agent_instance_type=agent_type,
        root_volume_gb=root_volume_gb,
        ami_id=given.get("ami_id") or None,
        ssh_user=setting("ssh_user"),
        ssh_key=ssh_key,
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
        server_config=server_config,
        agent_config=agent_config,
        registries=registries,
        snapshot_bucket=snapshot_bucket,
        tags=checks.tags(given.get("tags")),
        cloud=cloud,
    )
    return settings, warnings + k3s_warnings
