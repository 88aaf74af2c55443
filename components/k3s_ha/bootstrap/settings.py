"""K3sBootstrapArgs -> BootstrapSettings: every input checked once and typed, with the
warnings to log, before anything is registered. The component builds only from the settings.

`parse_k3s_inputs` holds the checks K3sCluster shares: it calls it on its own arguments and
hands the bootstrap finished settings, so nothing is checked (or parsed) twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi

from .. import passthrough, validation
from ..versions import DEFAULT_K3S_VERSION, K3sVersion
from . import checks

if TYPE_CHECKING:
    from .args import HostArgs, K3sBootstrapArgs, SshArgs

DEFAULT_READY_TIMEOUT_SECONDS = 600
DEFAULT_INSTALL_URL = "https://get.k3s.io"


@dataclass(frozen=True)
class K3sInputs:
    """The inputs both components take and check the same way."""

    version: K3sVersion
    ready_timeout_seconds: int


def parse_k3s_inputs(
    *,
    k3s_version: object,
    allow_dqlite: bool,
    token: object,
    agent_token: object,
    ready_timeout_seconds: object,
    ssh_user: object,
) -> tuple[K3sInputs, list[str]]:
    version = checks.k3s_version(k3s_version, allow_dqlite)
    checks.token(token, "token")
    checks.token(agent_token, "agent_token")
    checks.tokens_differ(token, agent_token)
    timeout = validation.positive_int(ready_timeout_seconds, "ready_timeout_seconds", "use e.g. 600")
    validation.non_empty(ssh_user, "ssh_user", "set the login user, e.g. ubuntu")
    warning = checks.version_warning(version)
    return K3sInputs(version=version, ready_timeout_seconds=timeout), [warning] if warning else []


@dataclass(frozen=True)
class BootstrapSettings:
    """A K3sBootstrap's inputs, checked: what the component builds from."""

    servers: tuple[HostArgs, ...]
    """The first one initialises the cluster."""
    agents: tuple[HostArgs, ...]
    ssh: SshArgs
    k3s: K3sInputs
    token: pulumi.Input[str] | None = None
    """None: generated."""
    agent_token: pulumi.Input[str] | None = None
    registration_address: pulumi.Input[str] | None = None
    """None: the first server's private address."""
    api_address: pulumi.Input[str] | None = None
    """None: the registration address when one is given, else the first server's address."""
    tls_sans: tuple[pulumi.Input[str], ...] = ()
    removal_key_sources: tuple[pulumi.Input[str], ...] = ()
    """Where the removal key may log in from (authorized_keys from=); empty: anywhere."""
    server_config: Mapping[str, Any] = field(default_factory=dict)
    agent_config: Mapping[str, Any] = field(default_factory=dict)
    registries: Mapping[str, Any] | None = None
    """None: no registries.yaml is managed (one k3s-ha wrote before is removed)."""
    server_manifests: tuple[Mapping[str, Any], ...] | None = None
    """Objects for every server's auto-deploy directory; None: none are managed (a file
    k3s-ha wrote before is removed, what K3s deployed from it stays)."""
    install_url: str = DEFAULT_INSTALL_URL


def _whole(value: object) -> object:
    """Other languages send every number as a float, and pulumi 3.272's component host hands
    them on unconverted (ComponentProvider.map_input_properties): 600.0 is taken as 600."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def parse_bootstrap_args(args: K3sBootstrapArgs) -> tuple[BootstrapSettings, list[str]]:
    """Check every argument; return the settings and the warnings to log. Raises ConfigError
    naming the field on bad input."""
    servers = tuple(args.get("servers") or [])
    agents = tuple(args.get("agents") or [])
    validation.server_count(len(servers))
    validation.unique_names([h.get("name") for h in [*servers, *agents]], "servers")
    for role, hosts in (("servers", servers), ("agents", agents)):
        for index, host in enumerate(hosts):
            validation.host_address(host.get("address"), f"{role}[{index}].address")
            validation.host_address(host.get("private_address"), f"{role}[{index}].private_address")
            checks.host_key(host.get("host_key"), f"{role}[{index}].host_key")
    for arg in ("registration_address", "api_address"):
        validation.host_address(args.get(arg), validation.field(arg))
    for index, san in enumerate(args.get("tls_sans") or ()):
        validation.host_address(san, f"tlsSans / tls_sans[{index}]")
    for index, source in enumerate(args.get("removal_key_sources") or ()):
        checks.address_range(source, f"removalKeySources / removal_key_sources[{index}]")
    checks.install_url(args.get("install_url", DEFAULT_INSTALL_URL))
    schedule = (args.get("server_config") or {}).get("etcd-snapshot-schedule-cron")
    if schedule is not None:
        checks.snapshot_schedule(schedule, "serverConfig / server_config: etcd-snapshot-schedule-cron")
    ssh = args.get("ssh") or {}
    k3s, warnings = parse_k3s_inputs(
        k3s_version=args.get("k3s_version", DEFAULT_K3S_VERSION),
        allow_dqlite=bool(args.get("allow_dqlite")),
        token=args.get("token"),
        agent_token=args.get("agent_token"),
        ready_timeout_seconds=_whole(args.get("ready_timeout_seconds", DEFAULT_READY_TIMEOUT_SECONDS)),
        ssh_user=ssh.get("user"),
    )
    validation.non_empty(ssh.get("private_key"), "ssh_private_key", "pass the SSH private key as a secret")
    settings = BootstrapSettings(
        servers=servers,
        agents=agents,
        ssh=_ssh_numbers(args["ssh"]),
        k3s=k3s,
        token=args.get("token"),
        agent_token=args.get("agent_token"),
        registration_address=args.get("registration_address"),
        api_address=args.get("api_address"),
        tls_sans=tuple(args.get("tls_sans") or ()),
        removal_key_sources=tuple(args.get("removal_key_sources") or ()),
        server_config=passthrough.k3s_settings(args.get("server_config"), "server_config", "server"),
        agent_config=passthrough.k3s_settings(args.get("agent_config"), "agent_config", "agent"),
        registries=passthrough.registries(args.get("registries")),
        server_manifests=checks.manifests(args.get("manifests")),
        install_url=args.get("install_url", DEFAULT_INSTALL_URL),
    )
    return settings, warnings


def _ssh_numbers(ssh: SshArgs) -> SshArgs:
    """`ssh` with a float dial_error_limit (from another language) as the int it stands for."""
    if "dial_error_limit" not in ssh:
        return ssh
    return {**ssh, "dial_error_limit": _whole(ssh["dial_error_limit"])}  # type: ignore[typeddict-item]
