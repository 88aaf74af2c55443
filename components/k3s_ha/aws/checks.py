"""The AWS rules an input must meet, before anything is registered: CIDRs and the VPC, instance
types, tags and S3 bucket names (shared checks are in validation.py, K3s's in
bootstrap/checks.py)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConfigError
from ..validation import (
    field,
    whole_number,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# K3s' own default pod and service networks: a VPC overlapping them breaks routing.
K3S_DEFAULT_NETWORKS = (ipaddress.ip_network("10.42.0.0/16"), ipaddress.ip_network("10.43.0.0/16"))
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")


def of_kind(value: object, kind: str, arg: str, fix: str, minimum: int | None = None) -> object:
    """A value of a plain input kind (int, str, bool), as the stack config would give it."""
    if kind == "int":
        return whole_number(value, arg, fix, minimum)
    expected = {"str": str, "bool": bool}[kind]
    if not isinstance(value, expected):
        raise ConfigError(field(arg), f"{value!r} is not a {expected.__name__}", fix)
    return value


def cidrs(values: object, arg: str) -> tuple[Network, ...]:
    if values is None:
        return ()
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ConfigError(field(arg), f"{values!r} is not a list of CIDR blocks", 'use a list, e.g. ["203.0.113.7/32"]')
    result = []
    for value in values:
        try:
            network = ipaddress.ip_network(str(value), strict=True)
        except ValueError:
            raise ConfigError(
                field(arg),
                f"{value!r} is not a valid CIDR block",
                "write an address with its prefix length and no host bits set, e.g. 203.0.113.7/32",
            ) from None
        if network.version != 4:
            raise ConfigError(
                field(arg),
                f"{value} is an IPv6 block; the security group rules are IPv4 only and the nodes have no IPv6 address",
                "use IPv4 blocks, e.g. 203.0.113.7/32",
            )
        result.append(network)
    return tuple(result)


def world_open(networks: Iterable[Network]) -> bool:
    """True when the blocks together cover every address (e.g. 0.0.0.0/1 plus 128.0.0.0/1)."""
    merged = ipaddress.collapse_addresses(n for n in networks if n.version == 4)
    return any(network.prefixlen == 0 for network in merged)


def k3s_networks_outside(server_config: Mapping[str, Any], vpc: ipaddress.IPv4Network) -> None:
    """A pod or service network (serverConfig cluster-cidr / service-cidr, comma-separated for
    dual stack) that overlaps the VPC breaks routing between nodes and pods."""
    for key in ("cluster-cidr", "service-cidr"):
        value = server_config.get(key)
        if value is None:
            continue
        for part in (
            str(v).strip() for item in (value if isinstance(value, list) else [value]) for v in str(item).split(",")
        ):
            try:
                network = ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ConfigError(
                    "serverConfig / server_config", f"{key}: {part!r} is not a CIDR block", "use e.g. 10.42.0.0/16"
                ) from None
            if network.version == 4 and network.overlaps(vpc):
                raise ConfigError(
                    "serverConfig / server_config",
                    f"{key} {part} overlaps the VPC {vpc}, so nodes could not route to pods or services",
                    f"choose a block outside {vpc}, e.g. K3s' default ({'10.42.0.0/16' if key == 'cluster-cidr' else '10.43.0.0/16'})",
                )


def vpc_cidr(value: object, subnet_count: int) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.ip_network(str(value), strict=True)
    except ValueError:
        raise ConfigError(field("vpc_cidr"), f"{value!r} is not a valid CIDR block", "use e.g. 10.0.0.0/16") from None
    if not isinstance(network, ipaddress.IPv4Network) or not 16 <= network.prefixlen <= 24:
        raise ConfigError(
            field("vpc_cidr"), f"{value} must be an IPv4 block from /16 to /24 (AWS VPC limits)", "use e.g. 10.0.0.0/16"
        )
    for k3s_net in K3S_DEFAULT_NETWORKS:
        if network.overlaps(k3s_net):
            raise ConfigError(
                field("vpc_cidr"),
                f"{value} overlaps K3s' default pod/service network {k3s_net}",
                "choose a VPC block outside 10.42.0.0/16 and 10.43.0.0/16, e.g. 10.0.0.0/16",
            )
    if subnet_count > 2 ** (28 - network.prefixlen):
        raise ConfigError(
            field("vpc_cidr"), f"{value} is too small for {subnet_count} subnets", "use a larger block, e.g. a /16"
        )
    return network


def instance_type(value: object, arg: str) -> str:
    if not isinstance(value, str) or not _INSTANCE_TYPE.match(value.strip()):
        raise ConfigError(
            field(arg),
            f"{value!r} is not an EC2 instance type",
            "use a type such as t3.medium (K3s servers need at least 2 GB of memory)",
        )
    return value.strip()


def tags(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(
            field("tags"),
            f"{value!r} is not a map of tag names to text values",
            'write it as an object, e.g. `pulumi config set --path "tags.team" platform`',
        )
    return dict(value)


# S3 bucket naming rules (AWS S3 User Guide, "General purpose bucket naming rules").
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def s3_bucket_name(value: object) -> str:
    """The bucket goes into an IAM policy ARN: a `*` or `/` there would widen the grant."""
    problem = None
    if not isinstance(value, str) or not _BUCKET.fullmatch(value):
        problem = "must be 3-63 characters of lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit"
    elif ".." in value or ".-" in value or "-." in value:
        problem = "must not hold two dots in a row or a dot next to a hyphen"
    elif re.fullmatch(r"\d+\.\d+\.\d+\.\d+", value):
        problem = "must not look like an IP address"
    elif value.startswith(_BUCKET_RESERVED_PREFIXES) or value.endswith(_BUCKET_RESERVED_SUFFIXES):
        problem = "uses a prefix or suffix AWS reserves (xn--, sthree-, -s3alias, --ol-s3 ...)"
    if problem:
        raise ConfigError(
            "etcdS3Bucket / etcd_s3_bucket",
            f"{value!r} is not an S3 bucket name: it {problem}",
            "give the bucket's exact name, e.g. my-team-etcd-snapshots (or set etcdS3 instead to have one created)",
        )
    return value  # type: ignore[return-value]
