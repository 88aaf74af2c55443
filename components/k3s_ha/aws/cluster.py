"""K3sCluster: EC2 machines, their network and firewall, plus the K3sBootstrap that turns them
into an HA K3s cluster with embedded etcd.

Validate, then decide, then build: `parse_cluster_args` (settings.py) checks every input once
and returns typed settings; the steps below build only from those.
"""

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_command as command
import pulumi_tls as tls

from ..bootstrap.args import HostArgs, SshArgs
from ..bootstrap.component import K3sBootstrap
from ..bootstrap.remote import DEFAULT_DIAL_ERROR_LIMIT, PER_DIAL_TIMEOUT_SECONDS
from ..bootstrap.settings import BootstrapSettings
from ..bootstrap.token_check import check_tokens
from ..errors import ConfigError
from ..ports import API_PORT, node_ports
from ..validation import field
from . import cloud_integration
from .args import K3sClusterArgs
from .bastion import Bastion, bastion_image, build_bastion
from .cloud_integration import build_cloud_integration
from .firewall import Firewall, allow, build_firewall
from .host_keys import HOST_KEY_TAG, generate_host_key, pinned_host_key, user_data
from .load_balancer import attach_server, build_load_balancer
from .machines import build_instance, ubuntu_image
from .network import Network, build_network
from .server_role import ServerRole, build_server_role
from .settings import ClusterSettings, ExistingVpc, NewVpc, parse_cluster_args
from .snapshots import SnapshotStore, build_snapshot_store

__all__ = ["K3sCluster", "K3sClusterArgs"]


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
    ssh_private_key: pulumi.Output[str | None]
    """The generated SSH private key (secret, OpenSSH format) to log in to the nodes as `ssh_user`; none when you gave `ssh_private_key`."""
    bastion_public_ip: pulumi.Output[str | None]
    """Public address of the bastion k3s-ha creates with `private_nodes` (`ssh -J`); none without it."""
    bastion_host_key: pulumi.Output[str | None]
    """That bastion's SSH host key, pinned by Pulumi (`ssh-ed25519 AAAA...`; a known_hosts line is `<bastion_public_ip> <key>`); none without it."""

    def __init__(self, name: str, args: K3sClusterArgs, opts: pulumi.ResourceOptions | None = None):
        settings, warnings = parse_cluster_args(args, name=name)
        super().__init__("k3s-ha:index:K3sCluster", name, {}, opts)
        for warning in warnings:
            pulumi.log.warn(warning, resource=self)

        tags = {**settings.tags, "k3s-cluster": name}
        network = _network(name, settings, tags, self)
        firewall = _firewall(name, settings, network, tags, self)
        key_name, private_key, generated_key = _ssh_key(name, settings, tags, self)
        role = build_server_role(name, tags, self) if settings.snapshot_bucket or settings.cloud else None
        snapshots = _snapshot_store(name, settings, tags, self, role)
        manifests = _cloud_integration(name, settings, role, tags, self)
        servers, agents = _machines(name, settings, network, firewall, key_name, role, tags, self)
        bastion = _bastion(name, settings, network, firewall, key_name, tags, self)
        registration, lb_rules = _load_balancer(name, settings, network, firewall, servers, agents, tags, self)
        bootstrap = K3sBootstrap(
            name,
            _bootstrap_settings(
                settings, private_key, servers, agents, registration, lb_rules, snapshots, bastion, manifests, network
            ),
            pulumi.ResourceOptions(parent=self),
        )

        self.kubeconfig = bootstrap.kubeconfig
        self.api_endpoint = bootstrap.api_endpoint
        self.token = bootstrap.token
        self.ssh_private_key = generated_key if generated_key is not None else pulumi.Output.from_input(None)
        self.server_public_ips = pulumi.Output.all(*[m.instance.public_ip for m in servers])
        self.server_private_ips = pulumi.Output.all(*[m.instance.private_ip for m in servers])
        self.agent_public_ips = pulumi.Output.all(*[m.instance.public_ip for m in agents])
        self.agent_private_ips = pulumi.Output.all(*[m.instance.private_ip for m in agents])
        self.bastion_public_ip = bastion.instance.public_ip if bastion else pulumi.Output.from_input(None)
        self.bastion_host_key = bastion.host_key if bastion else pulumi.Output.from_input(None)
        self.register_outputs(
            {
                "kubeconfig": self.kubeconfig,
                "api_endpoint": self.api_endpoint,
                "token": self.token,
                "ssh_private_key": self.ssh_private_key,
                "server_public_ips": self.server_public_ips,
                "server_private_ips": self.server_private_ips,
                "agent_public_ips": self.agent_public_ips,
                "agent_private_ips": self.agent_private_ips,
                "bastion_public_ip": self.bastion_public_ip,
                "bastion_host_key": self.bastion_host_key,
            }
        )


def _network(name: str, settings: ClusterSettings, tags: dict[str, str], parent: pulumi.Resource) -> Network:
    if isinstance(settings.network, ExistingVpc):
        subnets = settings.network.subnet_ids
        _tag_existing_subnets(name, subnets, _cluster_tags(settings), parent)
        return Network(
            vpc_id=pulumi.Output.from_input(settings.network.vpc_id),
            subnet_ids=subnets if isinstance(subnets, pulumi.Output) else list(subnets),
        )
    return build_network(
        name,
        settings.network.cidr,
        _zones(settings.network, parent),
        tags,
        parent,
        private_nodes=settings.network.private_nodes,
        nat_gateways=settings.network.nat_gateways,
        cluster_tags=_cluster_tags(settings),
    )


def _cluster_tags(settings: ClusterSettings) -> dict[str, str]:
    """`kubernetes.io/cluster/<id>: owned` with the AWS integration, else nothing."""
    if settings.cloud is None:
        return {}
    return {cloud_integration.cluster_tag(settings.cloud.cluster_id): "owned"}


def _tag_existing_subnets(name: str, subnets: object, cluster_tags: dict[str, str], parent: pulumi.Resource) -> None:
    """Your subnets get the cluster tag as `shared` (cloud-provider-aws tags.go: "should not be
    destroyed if the cluster is destroyed"), one aws.ec2.Tag each, removed with the cluster.
    Subnets given as an Output are not known when resources are declared: tag those yourself
    (docs/aws.md)."""
    if not cluster_tags or isinstance(subnets, pulumi.Output):
        return
    [(key, _)] = cluster_tags.items()
    for index, subnet in enumerate(subnets):  # type: ignore[arg-type]
        aws.ec2.Tag(
            f"{name}-subnet-{index}-cluster-tag",
            resource_id=subnet,
            key=key,
            value="shared",
            opts=pulumi.ResourceOptions(parent=parent),
        )


def _zones(vpc: NewVpc, parent: pulumi.Resource) -> list[pulumi.Input[str]]:
    if vpc.zones:
        return list(vpc.zones)
    names = aws.get_availability_zones_output(state="available", opts=pulumi.InvokeOptions(parent=parent)).names.apply(
        sorted
    )

    def zone(index: int) -> pulumi.Output[str]:
        def pick(all_names: list[str]) -> str:
            if len(all_names) <= index:
                raise ConfigError(
                    field("zone_count"),
                    f"the region has only {len(all_names)} available zones",
                    f"set zoneCount to at most {len(all_names)}",
                )
            return all_names[index]

        return names.apply(pick)

    return [zone(i) for i in range(vpc.zone_count)]


def _firewall(
    name: str, settings: ClusterSettings, network: Network, tags: dict[str, str], parent: pulumi.Resource
) -> Firewall:
    return build_firewall(
        name,
        network.vpc_id,
        ssh_cidrs=[str(cidr) for cidr in settings.ssh_cidrs],
        api_cidrs=[str(cidr) for cidr in settings.api_cidrs],
        load_balancer=settings.load_balancer,
        tags=tags,
        parent=parent,
        extra_node_ports=node_ports(dict(settings.server_config)),
        bastion=settings.private_nodes,
        node_group_tags=_cluster_tags(settings),
    )


def _ssh_key(
    name: str, settings: ClusterSettings, tags: dict[str, str], parent: pulumi.Resource
) -> tuple[pulumi.Input[str], pulumi.Output[str], pulumi.Output[str] | None]:
    """The key pair name the instances launch with, the private key Pulumi logs in with (secret)
    and, when generated, that key again for the stack output.

    A generated key is a tls.PrivateKey: created on the first `up` and then kept in the state (its
    only input never changes), so later runs log in with the same key. Its private half is a
    secret output of the provider (pulumi-tls sdk/python/pulumi_tls/private_key.py sets
    additional_secret_outputs)."""
    key = settings.ssh_key
    if key.generated:
        generated = tls.PrivateKey(f"{name}-ssh-key", algorithm="ED25519", opts=pulumi.ResourceOptions(parent=parent))
        public_key: pulumi.Input[str] = generated.public_key_openssh
        private_key = pulumi.Output.secret(generated.private_key_openssh)
    else:
        public_key = key.public_key  # type: ignore[assignment]
        private_key = pulumi.Output.secret(key.private_key)
    if key.key_name:
        return key.key_name, private_key, None
    key_pair = aws.ec2.KeyPair(
        f"{name}-ssh", public_key=public_key, tags=tags, opts=pulumi.ResourceOptions(parent=parent)
    )
    return key_pair.key_name, private_key, private_key if key.generated else None


def _snapshot_store(
    name: str, settings: ClusterSettings, tags: dict[str, str], parent: pulumi.Resource, role: ServerRole | None
) -> SnapshotStore | None:
    if settings.snapshot_bucket is None or role is None:
        return None
    return build_snapshot_store(
        name,
        folder=settings.snapshot_bucket.folder,
        existing_bucket=settings.snapshot_bucket.existing,
        tags=tags,
        parent=parent,
        server_role=role,
    )


def _cloud_integration(
    name: str, settings: ClusterSettings, role: ServerRole | None, tags: dict[str, str], parent: pulumi.Resource
) -> tuple[pulumi.Input[dict[str, Any]], ...] | None:
    """The integration's IAM, and the manifests every server gets; None when it is off."""
    if settings.cloud is None or role is None:
        return None
    return build_cloud_integration(
        name,
        cluster=settings.cloud.cluster_id,
        image=settings.cloud.ccm_image,
        server_role=role.role,
        tags=tags,
        parent=parent,
    )


@dataclass(frozen=True)
class Machine:
    """One EC2 node, and the host key Pulumi pins for it (None for a node launched before host
    keys were generated; see host_keys.py)."""

    role: str
    index: int
    instance: aws.ec2.Instance
    host_key: pulumi.Output[str | None]

    @property
    def name(self) -> str:
        """The bootstrap's name for it, `server-0`; its resources are `<cluster>-server-0...`."""
        return f"{self.role}-{self.index}"


@dataclass(frozen=True)
class _Launch:
    """What every machine of the cluster launches with."""

    cluster: str
    settings: ClusterSettings
    network: Network
    key_name: pulumi.Input[str]
    gate: pulumi.Output[str] | None
    tags: dict[str, str]
    parent: pulumi.Resource

    def machine(
        self,
        role: str,
        index: int,
        image: pulumi.Input[str],
        instance_type: str,
        groups: list[aws.ec2.SecurityGroup],
        profile: pulumi.Input[str] | None,
    ) -> Machine:
        resource = f"{self.cluster}-{role}-{index}"
        key = generate_host_key(resource, self.parent)
        subnets = self.network.subnet_ids
        # Round-robin over the zones' subnets; a list from an Output is picked from once known
        # (a plain list keeps each instance depending on its own subnet only).
        subnet = (
            subnets.apply(lambda ids: ids[index % len(ids)])
            if isinstance(subnets, pulumi.Output)
            else subnets[index % len(subnets)]
        )
        instance = build_instance(
            resource,
            user_data=user_data(
                key,
                *([self.gate] if self.gate is not None else []),
                extra=cloud_integration.HOST_NAME_CLOUD_CONFIG if self.settings.cloud else None,
            ),
            creation_tags={HOST_KEY_TAG: key.public_openssh},
            role=role,
            cluster=self.cluster,
            ami=image,
            instance_type=instance_type,
            subnet_id=subnet,
            security_group_ids=[*(g.id for g in groups), *self.settings.extra_security_group_ids],
            key_name=self.key_name,
            root_volume_gb=self.settings.root_volume_gb,
            tags=self.tags,
            parent=self.parent,
            instance_profile=profile,
            # Pulumi logs in on the public address when there is no bastion: an existing
            # subnet may not hand one out by itself. Private nodes get none.
            public_address=None if self.settings.bastion_host else not self.settings.private_nodes,
        )
        return Machine(role, index, instance, pinned_host_key(instance, key, resource))

    def machines(
        self,
        role: str,
        count: int,
        instance_type: str,
        groups: list[aws.ec2.SecurityGroup],
        profile: pulumi.Input[str] | None = None,
    ) -> list[Machine]:
        image = self.settings.ami_id or ubuntu_image(instance_type, self.parent)
        return [self.machine(role, index, image, instance_type, groups, profile) for index in range(count)]


def _machines(
    name: str,
    settings: ClusterSettings,
    network: Network,
    firewall: Firewall,
    key_name: pulumi.Input[str],
    role: ServerRole | None,
    tags: dict[str, str],
    parent: pulumi.Resource,
) -> tuple[list[Machine], list[Machine]]:
    """The servers, then the agents, spread round-robin over the subnets' zones: 3 servers in 3
    zones survive the loss of one zone.

    Tokens given as Outputs are checked before any instance is created: every instance's user
    data waits for the check."""
    gate = check_tokens(settings.token, settings.agent_token).gate
    launch = _Launch(name, settings, network, key_name, gate, {**tags, **_cluster_tags(settings)}, parent)
    servers = launch.machines(
        "server",
        settings.servers,
        settings.server_instance_type,
        [firewall.node_group, firewall.server_group],
        role.instance_profile if role else None,
    )
    agents = launch.machines("agent", settings.agents, settings.agent_instance_type, [firewall.node_group])
    return servers, agents


def _bastion(
    name: str,
    settings: ClusterSettings,
    network: Network,
    firewall: Firewall,
    key_name: pulumi.Input[str],
    tags: dict[str, str],
    parent: pulumi.Resource,
) -> Bastion | None:
    """The bastion k3s-ha creates for private nodes, in the first public subnet (None
    without private nodes)."""
    if not settings.private_nodes or firewall.bastion_group is None:
        return None
    public = network.public_subnets
    return build_bastion(
        name,
        ami=bastion_image(settings.ami_id, settings.server_instance_type, parent),
        subnet_id=public.apply(lambda ids: ids[0]) if isinstance(public, pulumi.Output) else public[0],
        security_group=firewall.bastion_group,
        key_name=key_name,
        tags=tags,
        parent=parent,
    )


def _load_balancer(
    name: str,
    settings: ClusterSettings,
    network: Network,
    firewall: Firewall,
    servers: list[Machine],
    agents: list[Machine],
    tags: dict[str, str],
    parent: pulumi.Resource,
) -> tuple[pulumi.Output[str] | None, dict[str, list[aws.vpc.SecurityGroupIngressRule]]]:
    """The registration address (the balancer's DNS name, None without one) and, per node
    (`server-0`), the rules that let it reach an internet-facing balancer.

    Private nodes: an internal balancer goes in their private subnets, an internet-facing one
    in the public subnets, which the nodes reach from the NAT gateways' Elastic IPs."""
    lb_group = firewall.load_balancer_group  # built exactly when settings.load_balancer is set
    if not settings.load_balancer or lb_group is None:
        return None, {}
    lb = build_load_balancer(
        name,
        vpc_id=network.vpc_id,
        subnet_ids=network.subnet_ids if settings.load_balancer_internal else network.public_subnets,
        security_group=lb_group,
        internal=settings.load_balancer_internal,
        tags=tags,
        parent=parent,
    )
    for server in servers:
        attach_server(f"{name}-{server.name}", lb, server.instance)
    rules: dict[str, list[aws.vpc.SecurityGroupIngressRule]] = {}
    if settings.public_load_balancer_joins:
        # Nodes reach an internet-facing balancer from their public address, not from inside
        # the security group.
        for machine in [*servers, *agents]:
            rules[machine.name] = [
                allow(
                    f"{name}-{machine.name}-to-lb",
                    lb_group,
                    "tcp",
                    (API_PORT, API_PORT),
                    "joins via the public load balancer",
                    cidr=machine.instance.public_ip.apply(lambda ip: f"{ip}/32"),
                )
            ]
    if settings.nat_load_balancer_joins:
        # Private nodes reach it from their NAT gateway's Elastic IP: every node waits for all
        # of them (which gateway a node's traffic leaves by is its zone's, or the single one).
        nat_rules = [
            allow(
                f"{name}-nat-{index}-to-lb",
                lb_group,
                "tcp",
                (API_PORT, API_PORT),
                "joins via the public load balancer, from a NAT gateway",
                cidr=ip.apply(lambda ip: f"{ip}/32"),
            )
            for index, ip in enumerate(network.nat_public_ips)
        ]
        rules = {machine.name: nat_rules for machine in [*servers, *agents]}
    return lb.dns_name, rules


def _ssh(settings: ClusterSettings, key: pulumi.Output[str], bastion: Bastion | None) -> SshArgs:
    ssh = SshArgs(user=settings.ssh_user, private_key=key)
    if bastion is not None:
        # The bastion's own generated key, pinned like the nodes' (pulumi-command 1.2.1
        # ProxyConnectionArgs.host_key: "The expected host key to verify the server's
        # identity"; pulumi_command/remote/_inputs.py).
        ssh["proxy"] = command.remote.ProxyConnectionArgs(
            host=bastion.instance.public_ip,
            user=settings.bastion_user,
            private_key=key,
            host_key=bastion.host_key,
            dial_error_limit=DEFAULT_DIAL_ERROR_LIMIT,
            per_dial_timeout=PER_DIAL_TIMEOUT_SECONDS,
        )
    elif settings.bastion_host:
        ssh["proxy"] = command.remote.ProxyConnectionArgs(
            host=settings.bastion_host,
            user=settings.bastion_user,
            private_key=key,
            dial_error_limit=DEFAULT_DIAL_ERROR_LIMIT,
            per_dial_timeout=PER_DIAL_TIMEOUT_SECONDS,
        )
    return ssh


def _bootstrap_settings(
    settings: ClusterSettings,
    private_key: pulumi.Output[str],
    servers: list[Machine],
    agents: list[Machine],
    registration: pulumi.Output[str] | None,
    lb_rules: dict[str, list[aws.vpc.SecurityGroupIngressRule]],
    snapshots: SnapshotStore | None,
    bastion: Bastion | None = None,
    manifests: tuple[pulumi.Input[dict[str, Any]], ...] | None = None,
    network: Network | None = None,
) -> BootstrapSettings:
    """What the bootstrap needs, from settings already checked (the bootstrap does not check
    them again)."""

    def host(machine: Machine) -> HostArgs:
        instance = machine.instance
        address = instance.private_ip if settings.bastion_host or bastion else instance.public_ip
        # Carry the load balancer rules and the private subnets' routes to the NAT gateways as
        # dependencies: the node's steps wait until it may reach the balancer it joins through
        # and the internet it downloads K3s from.
        waits = [*(rule.id for rule in lb_rules.get(machine.name, [])), *(network.egress_ready if network else ())]
        if waits:
            address = pulumi.Output.all(address, *waits).apply(lambda v: v[0])
        return HostArgs(
            name=machine.name,
            address=address,
            private_address=instance.private_ip,
            replace_on=instance.id,
            host_key=machine.host_key,
        )

    return BootstrapSettings(
        servers=tuple(host(m) for m in servers),
        agents=tuple(host(m) for m in agents),
        ssh=_ssh(settings, private_key, bastion),
        k3s=settings.k3s,
        token=settings.token,
        agent_token=settings.agent_token,
        registration_address=registration,
        server_config={
            **settings.server_config,
            **settings.k3s_server_settings,
            **(snapshots.etcd_s3_settings() if snapshots else {}),
        },
        agent_config=settings.agent_config,
        registries=settings.registries,
        server_manifests=manifests,
        # The removal key is let in from inside the VPC only, a range no server replacement
        # changes (bootstrap/removal_key.py). An existing VPC's range is not looked up.
        removal_key_sources=(str(settings.network.cidr),) if isinstance(settings.network, NewVpc) else (),
    )
