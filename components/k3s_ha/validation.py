"""Checks every argument before anything is registered.

Errors name the field as both the stack config key and the component argument
(e.g. `k3sVersion / k3s_version`), because people meet it through either.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeGuard

import pulumi

from . import cron_schedule
from .errors import ConfigError
from .versions import DEFAULT_K3S_VERSION, Era, K3sVersion, parse_version

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# K3s' own default pod and service networks: a VPC overlapping them breaks routing.
K3S_DEFAULT_NETWORKS = (ipaddress.ip_network("10.42.0.0/16"), ipaddress.ip_network("10.43.0.0/16"))
_SHELL_SAFE_TOKEN = re.compile(r"[A-Za-z0-9._~:-]+")  # fullmatch: `$` would let a trailing newline in
_BOOTSTRAP_TOKEN_SHAPE = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
MIN_TOKEN_LENGTH = 16
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


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


# etcd's guidance: 3, 5 or 7 members. Every write waits for a majority, so more members add
# latency and no useful tolerance (7 already survives three losses) (etcd docs, FAQ
# "What is maximum cluster size?").
MAX_SERVERS = 7
# The largest cluster the benchmarks ran (BENCHMARKS.md: 5 servers + 500 agents); beyond it
# one `pulumi up` drives thousands of SSH steps nobody has measured.
MAX_AGENTS = 500


def server_count(value: object) -> int:
    if not is_whole_number(value) or value < 1 or value % 2 == 0:
        raise ConfigError(
            field("servers"),
            f"{value!r} servers: embedded etcd needs an odd number (quorum is n/2+1, "
            "so an even count adds no fault tolerance)",
            "use 3 (survives one server loss) or 5 (survives two); 1 only for a throwaway test",
        )
    if value > MAX_SERVERS:
        raise ConfigError(
            field("servers"),
            f"{value} servers: etcd recommends 3, 5 or 7 members; every write waits for a majority, "
            f"so more than {MAX_SERVERS} only slows the cluster down",
            "use 3 or 5 servers and add agents for more capacity",
        )
    return value


def agent_count(value: object) -> int:
    if not is_whole_number(value) or value < 0:
        raise ConfigError(field("agents"), f"{value!r} is not a whole number of agents", "use 0 or more")
    if value > MAX_AGENTS:
        raise ConfigError(
            field("agents"),
            f"{value} agents: more than the {MAX_AGENTS} this project has been measured with in one deployment",
            f"use at most {MAX_AGENTS} agents per cluster, or split the workload over several clusters",
        )
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
    if value != value.strip():
        raise ConfigError(
            field(arg),
            "the token starts or ends with whitespace (often the newline of a file read with `cat`), "
            "which the node's config.yaml would keep or drop unpredictably",
            f"set it again without it, e.g. `pulumi config set --secret {camel_case(arg)} -- \"$(tr -d '\\n' < file)\"`",
        )
    if not _SHELL_SAFE_TOKEN.fullmatch(value):
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


def non_empty(value: object, arg: str, fix: str) -> None:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ConfigError(field(arg), "is required and was not set", fix)


def unique_names(names: list[str], arg: str) -> None:
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not _DNS_LABEL.fullmatch(name):
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


def tokens_differ(token: object, agent_token: object) -> None:
    """The agent token exists so agents cannot act as servers: the same value gives them the
    server token. Checked on plain values; Outputs are checked once known (`checked_tokens`)."""
    if isinstance(token, str) and isinstance(agent_token, str) and token == agent_token:
        raise ConfigError(
            "agentToken / agent_token",
            "is the same as token, so every agent would hold the server token (and could join as a server)",
            "give agentToken its own value, or unset it to have one generated",
        )


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


# A host the bootstrap connects to and writes into config.yaml/kubeconfig: an IP address or a
# DNS name. Nothing else, so no whitespace, newline, quote or shell/YAML metacharacter gets in.
_DNS_NAME = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def cluster_name(name: object, arg: str) -> None:
    """The cluster's name is the value of the k3s-ha.io/cluster label an older release put on its
    Nodes, by which the day-2 steps find its members while the cluster has no member record
    yet: a Kubernetes label value (at most 63 characters, letters and digits at both ends, `-`,
    `_` and `.` between)."""
    if isinstance(name, str) and _LABEL_VALUE.match(name):
        return
    raise ConfigError(
        arg,
        f"{name!r} cannot be a Kubernetes label value (at most 63 characters: letters, digits, '-', '_' "
        "and '.', starting and ending with a letter or digit), and it labels the cluster's nodes",
        "rename the stack (or the component) e.g. to dev or prod-eu",
    )


def host_address(value: object, arg: str) -> None:
    """Plain values only: an Output (an instance's address) is the cloud's and is taken as is."""
    if value is None or isinstance(value, pulumi.Output):
        return
    if isinstance(value, str):
        try:
            ipaddress.ip_address(value)
            return
        except ValueError:
            if _DNS_NAME.fullmatch(value) and not value.replace(".", "").isdigit():
                return
    raise ConfigError(
        arg,
        f"{value!r} is not an IP address or a DNS name (no spaces, newlines, ports or other characters)",
        "give the bare address, e.g. 192.0.2.10 or k3s.example.com",
    )


def install_url(value: object) -> str:
    """The installer runs as root on every node: https only, and no credentials in the URL,
    which would land in the command text and the state."""
    from urllib.parse import urlsplit

    parts = urlsplit(value) if isinstance(value, str) else None
    if (
        parts is None
        or parts.scheme != "https"
        or not parts.hostname
        or any(c.isspace() for c in value)  # type: ignore[union-attr]
        or any(c in value for c in "'\"`$\\")  # type: ignore[operator]
    ):
        raise ConfigError(
            "installUrl / install_url",
            f"{value!r} is not an https:// URL (the installer runs as root on every node)",
            "use https://get.k3s.io or an https mirror of install.sh",
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            "installUrl / install_url",
            "holds credentials (user:password@), which would be stored in the command text and state",
            "serve the installer from an https URL that needs no credentials, e.g. an internal mirror",
        )
    return value  # type: ignore[return-value]


# authorized_keys format, as pulumi-command parses `host_key` (ssh.ParseAuthorizedKey in
# pulumi/pulumi-command provider/pkg/provider/remote/connection.go, v1.2.1).
_HOST_KEY = re.compile(
    r"(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa|rsa-sha2-(256|512)) [A-Za-z0-9+/]+={0,3}( [^\r\n]*)?\n?"
)


def host_key(value: object, arg: str) -> None:
    if value is None or isinstance(value, pulumi.Output):
        return
    if not isinstance(value, str) or not _HOST_KEY.fullmatch(value):
        raise ConfigError(
            arg,
            "is not an SSH public host key in authorized_keys format",
            "give the host's key line, e.g. the content of /etc/ssh/ssh_host_ed25519_key.pub "
            "(`ssh-ed25519 AAAA... root@host`)",
        )


def unknown_config_keys(given: Iterable[str], known: Iterable[str], namespace: str) -> None:
    """A typo'd key is otherwise ignored silently and its default used instead."""
    known = sorted(known)
    for key in sorted(given):
        if key not in known:
            import difflib  # only for this error; importing it costs every program ~0.6 ms

            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {namespace}:{close[0]}? " if close else ""
            raise ConfigError(
                f"{namespace}:{key}",
                "is not a setting of this project, so it would be ignored",
                f"{hint}remove it with `pulumi config rm {key}`; the settings are listed in Pulumi.yaml",
            )


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
