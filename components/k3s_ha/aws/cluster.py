"""K3sCluster: EC2 machines, their network and firewall, plus the K3sBootstrap that turns them
into an HA K3s cluster with embedded etcd."""

from typing import TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_command as command
from typing_extensions import NotRequired

from .. import validation
from ..bootstrap.component import (
    DEFAULT_READY_TIMEOUT_SECONDS,
    HostArgs,
    K3sBootstrap,
    K3sBootstrapArgs,
    SshArgs,
    validate_bootstrap_args,
)
from ..bootstrap.remote import DEFAULT_DIAL_ERROR_LIMIT
from ..versions import DEFAULT_K3S_VERSION
from .firewall import API_PORT, allow, build_firewall
from .load_balancer import attach_server, build_load_balancer
from .machines import build_instance, ubuntu_image
from .network import Network, build_network
from .snapshots import build_snapshot_store

DEFAULTS = {
    "servers": 3,
    "agents": 0,
    "k3s_version": DEFAULT_K3S_VERSION,
    "allow_dqlite": False,
    "server_instance_type": "t3.medium",
    "agent_instance_type": "t3.medium",
    "root_volume_gb": 30,
    "ssh_user": "ubuntu",
    "vpc_cidr": "10.0.0.0/16",
    "zone_count": 3,
    "load_balancer": False,
    "load_balancer_internal": False,
    "etcd_snapshot_schedule": "0 */12 * * *",
    "etcd_snapshot_retention": 5,
    "ready_timeout_seconds": DEFAULT_READY_TIMEOUT_SECONDS,
    "etcd_s3": False,
}


# Whole-number inputs; other languages send every number as a float (and pulumi 3.272's
# component host hands them on unconverted), so 3.0 is taken as 3.
_INT_FIELDS = ("servers", "agents", "root_volume_gb", "zone_count", "etcd_snapshot_retention", "ready_timeout_seconds")


def _whole_numbers(args: "K3sClusterArgs") -> "K3sClusterArgs":
    fixed = {k: int(v) for k, v in args.items() if k in _INT_FIELDS and isinstance(v, float) and v.is_integer()}
    return {**args, **fixed}  # type: ignore[return-value]


class K3sClusterArgs(TypedDict):
    """Inputs of a K3sCluster on AWS. Counts, types and CIDRs are plain values: they shape the
    resource graph and are checked before anything is created."""

    ssh_private_key: pulumi.Input[str]
    """SSH private key (secret) Pulumi logs in with to install K3s."""
    ssh_public_key: NotRequired[str]
    """Its public half, registered as an EC2 key pair. Give this or `key_name`."""
    key_name: NotRequired[str]
    """An existing EC2 key pair name, instead of `ssh_public_key`."""
    ssh_allowed_cidrs: NotRequired[list[str]]
    """Who may reach port 22 (Pulumi itself must be among them), e.g. ["203.0.113.7/32"]."""
    api_allowed_cidrs: NotRequired[list[str]]
    """Who may reach the Kubernetes API on 6443 from outside the cluster."""
    servers: NotRequired[int]
    """Number of servers, odd (default 3)."""
    agents: NotRequired[int]
    """Number of agents (default 0)."""
    k3s_version: NotRequired[str]
    """K3s release tag (default v1.36.4+k3s1)."""
    allow_dqlite: NotRequired[bool]
    """Accept a release before v1.19.1 (deprecated Dqlite)."""
    server_instance_type: NotRequired[str]
    """EC2 type for servers (default t3.medium)."""
    agent_instance_type: NotRequired[str]
    """EC2 type for agents (default t3.medium)."""
    root_volume_gb: NotRequired[int]
    """Encrypted gp3 root volume size in GiB (default 30)."""
    ami_id: NotRequired[str]
    """Pinned image; default: the newest Ubuntu 24.04 LTS when each node is created."""
    ssh_user: NotRequired[str]
    """Login user of the image (default ubuntu)."""
    vpc_id: NotRequired[pulumi.Input[str]]
    """An existing VPC to use instead of creating one (give `subnet_ids` with it)."""
    subnet_ids: NotRequired[list[pulumi.Input[str]]]
    """Existing subnets of `vpc_id`, in different zones; nodes are spread over them in order."""
    extra_security_group_ids: NotRequired[list[pulumi.Input[str]]]
    """Further security groups for every node (e.g. your monitoring's)."""
    bastion_host: NotRequired[pulumi.Input[str]]
    """A bastion Pulumi's SSH hops through; nodes are then reached on their private addresses."""
    bastion_user: NotRequired[str]
    """Login user on the bastion (default: `ssh_user`); it uses the same private key."""
    vpc_cidr: NotRequired[str]
    """CIDR of the VPC created for the cluster (default 10.0.0.0/16)."""
    availability_zones: NotRequired[list[str]]
    """Zones to spread nodes over; default: the region's first `zone_count` available zones."""
    zone_count: NotRequired[int]
    """How many zones to use when `availability_zones` is unset (default 3)."""
    load_balancer: NotRequired[bool]
    """Create a network load balancer on 6443 as the fixed registration address."""
    load_balancer_internal: NotRequired[bool]
    """Make that load balancer internal (reachable only inside the VPC)."""
    token: NotRequired[pulumi.Input[str]]
    """Cluster token (secret); generated when unset."""
    agent_token: NotRequired[pulumi.Input[str]]
    """Agent join token (secret); generated when unset."""
    etcd_snapshot_schedule: NotRequired[str]
    """Cron schedule of etcd snapshots (default every 12 hours)."""
    etcd_snapshot_retention: NotRequired[int]
    """Snapshots kept per server (default 5)."""
    etcd_s3: NotRequired[bool]
    """Also send snapshots to a new encrypted, versioned S3 bucket (kept on destroy)."""
    etcd_s3_bucket: NotRequired[str]
    """Send snapshots to this existing bucket instead (servers get access to one folder)."""
    ready_timeout_seconds: NotRequired[int]
    """How long one node may take to become ready (default 600)."""
    tags: NotRequired[dict[str, str]]
    """Tags for every AWS resource."""


def _setting(args: K3sClusterArgs, key: str):
    value = args.get(key)  # type: ignore[misc]
    return DEFAULTS[key] if value is None else value


def validate_cluster_args(args: K3sClusterArgs) -> list[str]:
    """Check every argument; returns warnings to log. Raises ConfigError on bad input."""
    warnings: list[str] = []
    validation.server_count(_setting(args, "servers"))
    validation.agent_count(_setting(args, "agents"))
    validation.instance_type(_setting(args, "server_instance_type"), "server_instance_type")
    validation.instance_type(_setting(args, "agent_instance_type"), "agent_instance_type")
    validation.positive_int(_setting(args, "root_volume_gb"), "root_volume_gb", "use at least 20 (GiB)")
    validation.positive_int(_setting(args, "zone_count"), "zone_count", "use 3 to spread servers over three zones")
    validation.positive_int(_setting(args, "etcd_snapshot_retention"), "etcd_snapshot_retention", "keep at least 1")
    validation.snapshot_schedule(_setting(args, "etcd_snapshot_schedule"))
    zones = args.get("availability_zones")
    if zones is not None and (
        not isinstance(zones, list) or not zones or not all(isinstance(z, str) and z for z in zones)
    ):
        raise validation.ConfigError(
            validation.field("availability_zones"),
            f"{zones!r} is not a list of zone names",
            'use e.g. ["eu-west-1a", "eu-west-1b", "eu-west-1c"]',
        )
    if args.get("vpc_id") or args.get("subnet_ids") is not None:
        subnets = args.get("subnet_ids")
        if not args.get("vpc_id") or not isinstance(subnets, list) or not subnets:
            raise validation.ConfigError(
                "vpcId / vpc_id and subnetIds / subnet_ids",
                "an existing network needs both the VPC id and at least one of its subnet ids",
                "give both (subnets in three zones for a zone-tolerant cluster), or neither to have a VPC created",
            )
        if len(subnets) < 3 and _setting(args, "servers") >= 3:
            warnings.append(
                f"subnetIds has {len(subnets)} subnet(s): servers share a zone, so losing one zone can lose etcd quorum"
            )
    else:
        validation.vpc_cidr(_setting(args, "vpc_cidr"), len(zones) if zones else _setting(args, "zone_count"))
    if args.get("bastion_host") and _setting(args, "load_balancer") and not _setting(args, "load_balancer_internal"):
        warnings.append(
            "bastionHost with an internet-facing load balancer: nodes in private subnets reach it through "
            "your NAT gateway's address, which apiAllowedCidrs must then include (or set loadBalancerInternal)"
        )
    ssh_cidrs = validation.cidrs(args.get("ssh_allowed_cidrs"), "ssh_allowed_cidrs")
    api_cidrs = validation.cidrs(args.get("api_allowed_cidrs"), "api_allowed_cidrs")
    if not ssh_cidrs:
        raise validation.ConfigError(
            validation.field("ssh_allowed_cidrs"),
            "is empty, so Pulumi could not reach the nodes over SSH to install K3s",
            'set it to the address you run Pulumi from, e.g. ["203.0.113.7/32"]',
        )
    if validation.world_open(ssh_cidrs):
        warnings.append("sshAllowedCidrs opens SSH (22) to the whole internet; narrow it to your own address")
    if validation.world_open(api_cidrs):
        warnings.append("apiAllowedCidrs opens the Kubernetes API (6443) to the whole internet; narrow it")
    if not args.get("ssh_public_key") and not args.get("key_name"):
        raise validation.ConfigError(
            "sshPublicKey / ssh_public_key",
            "neither an SSH public key nor an existing key pair name (keyName / key_name) was given",
            "set sshPublicKey to the public half of sshPrivateKey",
        )
    if args.get("ssh_public_key") and args.get("key_name"):
        raise validation.ConfigError(
            "sshPublicKey / ssh_public_key", "both sshPublicKey and keyName are set", "set only one of them"
        )
    # Bootstrap-level checks, on the values the bootstrap will receive.
    warnings += validate_bootstrap_args(
        K3sBootstrapArgs(
            servers=[HostArgs(name=f"server-{i}", address="") for i in range(_setting(args, "servers"))],
            agents=[HostArgs(name=f"agent-{i}", address="") for i in range(_setting(args, "agents"))],
            ssh=SshArgs(user=_setting(args, "ssh_user"), private_key=args.get("ssh_private_key")),  # type: ignore[typeddict-item]
            k3s_version=_setting(args, "k3s_version"),
            allow_dqlite=bool(_setting(args, "allow_dqlite")),
            token=args.get("token"),  # type: ignore[typeddict-item]
            agent_token=args.get("agent_token"),  # type: ignore[typeddict-item]
            ready_timeout_seconds=_setting(args, "ready_timeout_seconds"),
        )
    )
    return warnings


class K3sCluster(pulumi.ComponentResource):
    """A highly available K3s cluster (embedded etcd) on EC2."""

    kubeconfig: pulumi.Output[str]
    """Admin kubeconfig (secret), pointing at the load balancer or the first server."""
    api_endpoint: pulumi.Output[str]
    """https://<address>:6443 of the Kubernetes API."""
    server_public_ips: pulumi.Output[list[str]]
    """Public addresses of the servers, first (init) server first."""
    server_private_ips: pulumi.Output[list[str]]
    """Private addresses of the servers."""
    agent_public_ips: pulumi.Output[list[str]]
    """Public addresses of the agents."""
    agent_private_ips: pulumi.Output[list[str]]
    """Private addresses of the agents."""
    token: pulumi.Output[str]
    """Cluster token (secret): needed to restore etcd snapshots."""

    def __init__(self, name: str, args: K3sClusterArgs, opts: pulumi.ResourceOptions | None = None):
        args = _whole_numbers(args)
        warnings = validate_cluster_args(args)
        super().__init__("k3s-ha:index:K3sCluster", name, {}, opts)
        for warning in warnings:
            pulumi.log.warn(warning, resource=self)

        tags = {**(args.get("tags") or {}), "k3s-cluster": name}
        if args.get("vpc_id"):
            network = Network(vpc_id=pulumi.Output.from_input(args["vpc_id"]), subnet_ids=list(args["subnet_ids"]))
        else:
            vpc_cidr = validation.vpc_cidr(_setting(args, "vpc_cidr"), 1)
            network = build_network(name, vpc_cidr, self._zones(args), tags, self)
        extra_groups = list(args.get("extra_security_group_ids") or [])
        bastion = args.get("bastion_host")
        use_lb = bool(_setting(args, "load_balancer"))
        lb_internal = bool(_setting(args, "load_balancer_internal"))
        firewall = build_firewall(
            name,
            network.vpc_id,
            ssh_cidrs=validation.cidrs(args.get("ssh_allowed_cidrs"), "ssh_allowed_cidrs"),
            api_cidrs=validation.cidrs(args.get("api_allowed_cidrs"), "api_allowed_cidrs"),
            load_balancer=use_lb,
            tags=tags,
            parent=self,
        )
        key_name = (
            args.get("key_name")
            or aws.ec2.KeyPair(
                f"{name}-ssh", public_key=args["ssh_public_key"], tags=tags, opts=pulumi.ResourceOptions(parent=self)
            ).key_name
        )

        snapshots = None
        if _setting(args, "etcd_s3") or args.get("etcd_s3_bucket"):
            snapshots = build_snapshot_store(name, existing_bucket=args.get("etcd_s3_bucket"), tags=tags, parent=self)

        def machines(role: str, count: int, instance_type: str, groups, profile=None) -> list[aws.ec2.Instance]:
            image = args.get("ami_id") or ubuntu_image(instance_type, self)
            return [
                build_instance(
                    f"{name}-{role}-{index}",
                    role=role,
                    cluster=name,
                    ami=image,
                    instance_type=instance_type,
                    # Round-robin over zones: 3 servers in 3 zones survive the loss of one zone.
                    subnet_id=network.subnet_ids[index % len(network.subnet_ids)],
                    security_group_ids=[*(g.id for g in groups), *extra_groups],
                    key_name=key_name,
                    root_volume_gb=_setting(args, "root_volume_gb"),
                    tags=tags,
                    image_is_lookup=not args.get("ami_id"),
                    parent=self,
                    instance_profile=profile,
                )
                for index in range(count)
            ]

        servers = machines(
            "server",
            _setting(args, "servers"),
            _setting(args, "server_instance_type"),
            [firewall.node_group, firewall.server_group],
            snapshots.instance_profile if snapshots else None,
        )
        agents = machines(
            "agent", _setting(args, "agents"), _setting(args, "agent_instance_type"), [firewall.node_group]
        )

        registration = None
        lb_rules: dict[str, aws.vpc.SecurityGroupIngressRule] = {}
        if use_lb:
            lb = build_load_balancer(
                name,
                vpc_id=network.vpc_id,
                subnet_ids=network.subnet_ids,
                security_group=firewall.load_balancer_group,
                internal=lb_internal,
                tags=tags,
                parent=self,
            )
            for index, instance in enumerate(servers):
                attach_server(f"{name}-server-{index}", lb, instance)
            if not lb_internal and not bastion:
                # Nodes reach an internet-facing balancer from their public address, not
                # from inside the security group.
                for role, group in (("server", servers), ("agent", agents)):
                    for index, instance in enumerate(group):
                        lb_rules[f"{role}-{index}"] = allow(
                            f"{name}-{role}-{index}-to-lb",
                            firewall.load_balancer_group,
                            "tcp",
                            (API_PORT, API_PORT),
                            "joins via the public load balancer",
                            cidr=instance.public_ip.apply(lambda ip: f"{ip}/32"),
                        )
            registration = lb.dns_name

        def host(instance: aws.ec2.Instance, role: str, index: int) -> HostArgs:
            address = instance.private_ip if bastion else instance.public_ip
            if f"{role}-{index}" in lb_rules:
                # Carry the rule as a dependency: the node's steps wait until it may reach
                # the load balancer it joins through.
                address = pulumi.Output.all(address, lb_rules[f"{role}-{index}"].id).apply(lambda v: v[0])
            return HostArgs(
                name=f"{role}-{index}",
                address=address,
                private_address=instance.private_ip,
                replace_on=instance.id,
            )

        bootstrap_args = K3sBootstrapArgs(
            servers=[host(m, "server", i) for i, m in enumerate(servers)],
            agents=[host(m, "agent", i) for i, m in enumerate(agents)],
            ssh=self._ssh(args),
            k3s_version=_setting(args, "k3s_version"),
            allow_dqlite=bool(_setting(args, "allow_dqlite")),
            server_config={
                "etcd-snapshot-schedule-cron": _setting(args, "etcd_snapshot_schedule"),
                "etcd-snapshot-retention": _setting(args, "etcd_snapshot_retention"),
                **(snapshots.server_config() if snapshots else {}),
            },
            ready_timeout_seconds=_setting(args, "ready_timeout_seconds"),
        )
        for key in ("token", "agent_token"):
            if args.get(key) is not None:
                bootstrap_args[key] = args[key]  # type: ignore[literal-required]
        if registration is not None:
            bootstrap_args["registration_address"] = registration
        bootstrap = K3sBootstrap(name, bootstrap_args, pulumi.ResourceOptions(parent=self))

        self.kubeconfig = bootstrap.kubeconfig
        self.api_endpoint = bootstrap.api_endpoint
        self.token = bootstrap.token
        self.server_public_ips = pulumi.Output.all(*[m.public_ip for m in servers])
        self.server_private_ips = pulumi.Output.all(*[m.private_ip for m in servers])
        self.agent_public_ips = pulumi.Output.all(*[m.public_ip for m in agents])
        self.agent_private_ips = pulumi.Output.all(*[m.private_ip for m in agents])
        self.register_outputs(
            {
                "kubeconfig": self.kubeconfig,
                "api_endpoint": self.api_endpoint,
                "token": self.token,
                "server_public_ips": self.server_public_ips,
                "server_private_ips": self.server_private_ips,
                "agent_public_ips": self.agent_public_ips,
                "agent_private_ips": self.agent_private_ips,
            }
        )

    @staticmethod
    def _ssh(args: K3sClusterArgs) -> SshArgs:
        key = pulumi.Output.secret(args["ssh_private_key"])
        ssh = SshArgs(user=_setting(args, "ssh_user"), private_key=key)
        if args.get("bastion_host"):
            ssh["proxy"] = command.remote.ProxyConnectionArgs(
                host=args["bastion_host"],
                user=args.get("bastion_user") or _setting(args, "ssh_user"),
                private_key=key,
                dial_error_limit=DEFAULT_DIAL_ERROR_LIMIT,
            )
        return ssh

    def _zones(self, args: K3sClusterArgs) -> list[pulumi.Input[str]]:
        if args.get("availability_zones"):
            return list(args["availability_zones"])
        count = _setting(args, "zone_count")
        names = aws.get_availability_zones_output(
            state="available", opts=pulumi.InvokeOptions(parent=self)
        ).names.apply(sorted)

        def zone(index: int) -> pulumi.Output[str]:
            def pick(all_names: list[str]) -> str:
                if len(all_names) <= index:
                    raise validation.ConfigError(
                        validation.field("zone_count"),
                        f"the region has only {len(all_names)} available zones",
                        f"set zoneCount to at most {len(all_names)}",
                    )
                return all_names[index]

            return names.apply(pick)

        return [zone(i) for i in range(count)]
