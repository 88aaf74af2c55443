"""Checks both halves share, before anything is registered: field names, counts, names and
addresses. The K3s rules are in bootstrap/checks.py, the AWS ones in aws/checks.py.

Errors name the field as both the stack config key and the component argument
(e.g. `k3sVersion / k3s_version`), because people meet it through either.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import TypeGuard

import pulumi

from .errors import ConfigError

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
