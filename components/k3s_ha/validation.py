"""Checks every argument before anything is registered.

Errors name the field as both the stack config key and the component argument
(e.g. `k3sVersion / k3s_version`), because people meet it through either.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import TypeGuard

import pulumi

from . import cron_schedule
from .errors import ConfigError
from .versions import DEFAULT_K3S_VERSION, Era, K3sVersion, parse_version

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# K3s' own default pod and service networks: a VPC overlapping them breaks routing.
K3S_DEFAULT_NETWORKS = (ipaddress.ip_network("10.42.0.0/16"), ipaddress.ip_network("10.43.0.0/16"))
_SHELL_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9._~:-]+$")
_BOOTSTRAP_TOKEN_SHAPE = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
MIN_TOKEN_LENGTH = 16


def camel_case(arg: str) -> str:
    """`k3s_version` -> `k3sVersion`: the stack config key (and schema name) of an argument."""
    head, *rest = arg.split("_")
    return head + "".join(part.capitalize() for part in rest)


def field(arg: str) -> str:
    """`k3s_version` -> `k3sVersion / k3s_version`; single words stay as they are."""
    camel = camel_case(arg)
    return arg if camel == arg else f"{camel} / {arg}"


def is_whole_number(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def server_count(value: object) -> int:
    if not is_whole_number(value) or value < 1 or value % 2 == 0:
        raise ConfigError(
            field("servers"),
            f"{value!r} servers: embedded etcd needs an odd number (quorum is n/2+1, "
            "so an even count adds no fault tolerance)",
            "use 3 (survives one server loss) or 5 (survives two); 1 only for a throwaway test",
        )
    return value


def agent_count(value: object) -> int:
    if not is_whole_number(value) or value < 0:
        raise ConfigError(field("agents"), f"{value!r} is not a whole number of agents", "use 0 or more")
    return value


def whole_number(value: object, arg: str, fix: str, minimum: int | None = None) -> int:
    if not is_whole_number(value) or (minimum is not None and value < minimum):
        what = {None: "a whole number", 1: "a positive whole number"}.get(
            minimum, f"a whole number of at least {minimum}"
        )
        raise ConfigError(field(arg), f"{value!r} is not {what}", fix)
    return value


def positive_int(value: object, arg: str, fix: str) -> int:
    return whole_number(value, arg, fix, minimum=1)


def of_kind(value: object, kind: str, arg: str, fix: str, minimum: int | None = None) -> object:
    """A value of a plain input kind (int, str, bool), as the stack config would give it."""
    if kind == "int":
        return whole_number(value, arg, fix, minimum)
    expected = {"str": str, "bool": bool}[kind]
    if not isinstance(value, expected):
        raise ConfigError(field(arg), f"{value!r} is not a {expected.__name__}", fix)
    return value


def k3s_version(tag: object, allow_dqlite: bool) -> K3sVersion:
    """Parse the tag and apply the era rules; warnings are left to `version_warning`."""
    version = parse_version(tag, field("k3s_version"))
    if version.era is Era.DQLITE and not allow_dqlite:
        raise ConfigError(
            field("k3s_version"),
            f"{version.tag} uses the deprecated embedded Dqlite datastore (K3s before v1.19.1); "
            "it cannot be upgraded to etcd later without losing data",
            f"use {DEFAULT_K3S_VERSION} (embedded etcd), or set allowDqlite / allow_dqlite "
            "to true if you really need this release",
        )
    return version


def version_warning(version: K3sVersion) -> str | None:
    if version.era is Era.EXPERIMENTAL_ETCD:
        return (
            f"k3sVersion {version.tag}: embedded etcd is experimental in v1.19.1-v1.19.4; "
            "it is stable from v1.19.5+k3s1"
        )
    if version.era is Era.DQLITE:
        return (
            f"k3sVersion {version.tag}: embedded Dqlite is deprecated and has no upgrade path to "
            "etcd (upgrading loses data); k3s-ha writes /etc/rancher/k3s/config.yaml, which K3s "
            "reads only from v1.19.1, so this release ignores the generated settings"
        )
    return None


def token(value: object, arg: str) -> None:
    """Check a user-supplied token. Outputs are checked once known (see bootstrap)."""
    if value is None or isinstance(value, pulumi.Output):
        return
    if not isinstance(value, str) or len(value) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            field(arg),
            f"the token must be a string of at least {MIN_TOKEN_LENGTH} characters",
            "leave it unset to have a 48-character random token generated, or set a longer one "
            f"with `pulumi config set --secret {field(arg).split(' / ')[0]} <value>`",
        )
    if value.startswith("K10"):
        raise ConfigError(
            field(arg),
            "the token starts with K10, which K3s reads as the secure token format "
            "(K10<ca hash>::server:<password>) that only exists after the first server starts",
            "pass a plain password (the first server accepts only the short form)",
        )
    if _BOOTSTRAP_TOKEN_SHAPE.match(value):
        raise ConfigError(
            field(arg),
            "the token has the shape of a Kubernetes bootstrap token (abcdef.0123456789abcdef), "
            "which K3s treats differently (k3s-io/k3s#7389)",
            "use a plain alphanumeric password of 32 or more characters",
        )
    if not _SHELL_SAFE_TOKEN.match(value):
        raise ConfigError(
            field(arg),
            "the token holds characters outside A-Z a-z 0-9 . _ ~ : - (shell metacharacters or "
            "spaces break the K3s join)",
            "use an alphanumeric password of 32 or more characters",
        )


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
        result.append(network)
    return tuple(result)


def world_open(networks: Iterable[Network]) -> bool:
    return any(network.prefixlen == 0 for network in networks)


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


def non_empty(value: object, arg: str, fix: str) -> None:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ConfigError(field(arg), "is required and was not set", fix)


def unique_names(names: list[str], arg: str) -> None:
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not re.match(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", name):
            raise ConfigError(
                field(arg), f"host name {name!r} is not a lower-case DNS label", "use names like server-0, agent-1"
            )
        if name in seen:
            raise ConfigError(field(arg), f"host name {name!r} appears twice", "give every host its own name")
        seen.add(name)


DEFAULT_SNAPSHOT_SCHEDULE = "0 */12 * * *"


def snapshot_schedule(value: object, name: str = "etcdSnapshotSchedule / etcd_snapshot_schedule") -> str:
    """The etcd snapshot cron spec, checked with K3s' own grammar (see cron_schedule.py): K3s
    ignores a spec its parser refuses and then takes no snapshots at all."""
    try:
        cron_schedule.parse(value)  # type: ignore[arg-type]
    except cron_schedule.CronError as error:
        raise ConfigError(
            name,
            f"{value!r} is not a schedule K3s can run ({error}); K3s would ignore it and take no snapshots",
            f'use five cron fields such as "{DEFAULT_SNAPSHOT_SCHEDULE}" (every 12 hours, the default), '
            'a descriptor such as "@daily", or "@every 6h"',
        ) from None
    return value  # type: ignore[return-value]
