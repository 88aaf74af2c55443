"""The K3s rules an input must meet, before anything is registered: versions, tokens, the
snapshot schedule, the installer URL and SSH host keys (the cloud-neutral half's own; shared
checks are in validation.py)."""

from __future__ import annotations

import ipaddress
import re

import pulumi

from .. import cron_schedule
from ..errors import ConfigError
from ..validation import (
    camel_case,
    field,
)
from ..versions import DEFAULT_K3S_VERSION, Era, K3sVersion, parse_version

_SHELL_SAFE_TOKEN = re.compile(r"[A-Za-z0-9._~:-]+")  # fullmatch: `$` would let a trailing newline in
_BOOTSTRAP_TOKEN_SHAPE = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
MIN_TOKEN_LENGTH = 16


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


def address_range(value: object, arg: str) -> None:
    """An IP address or CIDR range, as authorized_keys `from=` takes it (sshd(8)); an Output
    (another resource's address) is taken as is."""
    if isinstance(value, pulumi.Output):
        return
    if isinstance(value, str):
        try:
            ipaddress.ip_network(value, strict=False)
            return
        except ValueError:
            pass
    raise ConfigError(
        arg,
        f"{value!r} is not an IP address or CIDR range",
        "give the servers' private addresses or their subnets, e.g. 10.0.0.0/16",
    )


def manifests(value: object) -> tuple[dict, ...] | None:
    """The `manifests` input: None, or objects K3s can apply, each a mapping with a string
    apiVersion and kind and a metadata.name (values inside may be Outputs, e.g. a Secret's
    data: the file travels on the start step's secret stdin). K3s logs a file it cannot apply and goes on, so a bad one would
    otherwise only show on the servers."""
    if value is None:
        return None
    arg = "manifests"
    if not isinstance(value, (list, tuple)):
        raise ConfigError(arg, f"{type(value).__name__} is not a list of objects", "give a list of Kubernetes objects")
    for index, item in enumerate(value):
        where = f"{arg}[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(
                where, f"{item!r} is not an object", "give a Kubernetes object (apiVersion, kind, metadata)"
            )
        for key in ("apiVersion", "kind"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise ConfigError(where, f"has no {key}", f"set {key}, e.g. helm.cattle.io/v1 and HelmChart")
        name = (item.get("metadata") or {}).get("name") if isinstance(item.get("metadata"), dict) else None
        if not isinstance(name, str) or not name:
            raise ConfigError(where, "has no metadata.name", "name the object in metadata.name")
    # An empty list manages no file, like None: a file of no objects would be refused on the node.
    return tuple(value) or None
