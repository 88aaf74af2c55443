"""K3sClusterArgs: the one declaration of every K3sCluster input (and stack config key).

Each field's name, type and docstring here are the source: the stack config key is its
camelCase name (stack_config.py reads them all from this class), the component provider's
schema is inferred from it (no `from __future__ import annotations` here: the SDK's analyzer
needs real types), and the defaults sit in the two tables below. Pulumi.yaml's `config:` block
and the table in docs/configuration.md repeat them for people; tests/engine/test_project_config.py keeps them in step.
"""

import collections.abc
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

import pulumi
from typing_extensions import NotRequired

from ..bootstrap import checks as k3s_checks
from ..bootstrap.settings import DEFAULT_READY_TIMEOUT_SECONDS
from ..versions import DEFAULT_K3S_VERSION


class K3sClusterArgs(TypedDict):
    """Inputs of a K3sCluster on AWS. Counts, types and CIDRs are plain values: they shape the
    resource graph and are checked before anything is created."""

    ssh_private_key: NotRequired[pulumi.Input[str]]
    """SSH private key (secret) Pulumi logs in with to install K3s; required with `ssh_public_key` or `key_name`. Leave all three unset to have an ED25519 key generated (output `ssh_private_key`)."""
    ssh_public_key: NotRequired[pulumi.Input[str]]
    """Public half of `ssh_private_key` (OpenSSH format; may be an output, e.g. of a tls key), registered as an EC2 key pair. Give this or `key_name`, or neither for a generated key."""
    key_name: NotRequired[str]
    """An existing EC2 key pair name, instead of `ssh_public_key`."""
    ssh_allowed_cidrs: NotRequired[list[str]]
    """Who may reach port 22 (Pulumi itself must be among them), e.g. ["203.0.113.7/32"]; the item "auto" is the public IPv4 address of the machine running Pulumi, looked up on every run."""
    api_allowed_cidrs: NotRequired[list[str]]
    """Who may reach the Kubernetes API on 6443 from outside the cluster; "auto" as for `ssh_allowed_cidrs`."""
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
    subnet_ids: NotRequired[pulumi.Input[list[pulumi.Input[str]]]]
    """Existing subnets of `vpc_id`, in different zones; nodes are spread over them in order. May
    be an output of another resource (e.g. awsx's `private_subnet_ids`); then it is checked when
    known, before any instance is created."""
    extra_security_group_ids: NotRequired[list[pulumi.Input[str]]]
    """Further security groups for every node (e.g. your monitoring's)."""
    bastion_host: NotRequired[pulumi.Input[str]]
    """A bastion Pulumi's SSH hops through; nodes are then reached on their private addresses."""
    bastion_user: NotRequired[str]
    """Login user on the bastion (default: `ssh_user`); it uses the same private key."""
    private_nodes: NotRequired[bool]
    """Put the nodes in private subnets of the VPC k3s-ha creates (not with `vpc_id`), behind NAT gateways, and create a small bastion Pulumi's SSH hops through (output `bastion_public_ip`). Default false: nodes in public subnets, no NAT gateway, no bastion."""
    aws_integration: NotRequired[bool]
    """The AWS cloud integration, on unless set false: the AWS cloud controller manager (a `LoadBalancer` Service gets an AWS load balancer; Nodes get their providerID and zone labels) and the EBS CSI driver with an encrypted gp3 default StorageClass, installed by K3s at pinned chart versions; K3s's own cloud controller, ServiceLB and local-path are turned off, nodes are named after their private DNS names, and the cluster's AWS resources carry its `kubernetes.io/cluster/<id>` tag. False: none of it, and no IAM for it (see docs/aws.md before turning it on for a running cluster)."""
    nat_gateways: NotRequired[str]
    """With `private_nodes`: "perZone" (default), a NAT gateway in every zone, so a zone's failure takes only that zone's egress; or "single", one in the first zone (cheaper; every node loses egress when that zone fails)."""
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
    """Cron schedule of etcd snapshots (default 0 */12 * * *: every 12 hours)."""
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
    server_config: NotRequired[dict[str, Any]]
    """Further config.yaml settings for every server, e.g. {"disable": ["traefik", "servicelb"], "flannel-backend": "none", "node-taint": ["CriticalAddonsOnly=true:NoExecute"]}: K3s server flags without dashes, values scalars or lists of them; `tls-san` entries are added to the bootstrap's."""
    agent_config: NotRequired[dict[str, Any]]
    """Further config.yaml settings for every agent, e.g. {"node-label": ["team=data"]}."""
    registries: NotRequired[dict[str, Any]]
    """/etc/rancher/k3s/registries.yaml for every node ({"mirrors": ..., "configs": ...}); sent on stdin and kept secret, as it may hold registry passwords."""


@dataclass(frozen=True)
class K3sServerSetting:
    """An input handed unchanged to every server's /etc/rancher/k3s/config.yaml, the way
    k3s-ansible's `server_config_yaml` and kube-hetzner's custom config pass K3s flags: no
    code beyond this row. Its type is the K3sClusterArgs field's; a value of another type is
    refused naming the field."""

    arg: str
    """The K3sClusterArgs field (and, camelCased, the stack config key)."""
    k3s_key: str
    """The config.yaml key: the `k3s server` flag without its dashes."""
    default: str | int | bool
    fix: str
    """What to tell someone who gave a value of the wrong type (or an int below `minimum`)."""
    minimum: int | None = None
    """For whole numbers: the smallest accepted value."""
    check: Callable[[Any], Any] | None = None
    """A further check of the value's content, raising ConfigError (e.g. the cron grammar)."""


# Adding a K3s server setting as a stack config key: one row here, plus the K3sClusterArgs
# field (its type and description: the component's schema), the Pulumi.yaml `config:` entry and
# the docs/configuration.md row, which tests/engine/test_project_config.py demands (it names what is missing).
K3S_SERVER_SETTINGS: tuple[K3sServerSetting, ...] = (
    K3sServerSetting(
        "etcd_snapshot_schedule",
        "etcd-snapshot-schedule-cron",
        "0 */12 * * *",
        "use a cron expression, e.g. 0 */12 * * *",
        check=k3s_checks.snapshot_schedule,
    ),
    K3sServerSetting("etcd_snapshot_retention", "etcd-snapshot-retention", 5, "keep at least 1", minimum=1),
)

# Defaults of the inputs K3sCluster itself acts on; unset inputs not listed have none.
_CLUSTER_DEFAULTS: dict[str, Any] = {
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
    "ready_timeout_seconds": DEFAULT_READY_TIMEOUT_SECONDS,
    "etcd_s3": False,
    "private_nodes": False,
    "nat_gateways": "perZone",
    "aws_integration": True,
}

DEFAULTS: dict[str, Any] = {**_CLUSTER_DEFAULTS, **{s.arg: s.default for s in K3S_SERVER_SETTINGS}}
"""Every input's default, by argument name."""


def _plain(hint: Any) -> Any:
    """The plain type a field holds: NotRequired[T] -> T, pulumi.Input[T] -> T."""
    if typing.get_origin(hint) is NotRequired:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        [hint] = [
            a
            for a in typing.get_args(hint)
            if a is not type(None)
            and typing.get_origin(a) not in (collections.abc.Awaitable, pulumi.Output)
            and not isinstance(a, typing.ForwardRef)
        ]
    return hint


def _kind(hint: Any) -> str:
    plain = _plain(hint)
    origin = typing.get_origin(plain)
    if origin is list:
        return "list"
    if origin is dict:
        return "object"
    return {int: "int", str: "str", bool: "bool"}[plain]


ARG_KINDS: dict[str, str] = {arg: _kind(hint) for arg, hint in K3sClusterArgs.__annotations__.items()}
"""Argument -> int, str, bool, list or object, read from K3sClusterArgs' annotations."""
