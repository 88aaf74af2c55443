"""K3s settings a user passes through unchanged: extra config.yaml keys for servers and agents
(`server_config` / `agent_config`) and the node's registries.yaml (`registries`).

They are checked here, before anything is registered: keys must be K3s flag names (config.yaml
keys are the `k3s server` / `k3s agent` flags without their dashes, docs.k3s.io
installation/configuration), values YAML scalars or lists of scalars, and no key the bootstrap
itself writes or depends on may be overridden. `tls-san` is the exception: the user's names are
added to the ones the bootstrap puts there (node_config.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pulumi

from .errors import ConfigError
from .validation import field

_FLAG_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_SCALARS = (str, int, float, bool)

# Keys the bootstrap owns, with why and what to do instead.
_JOIN = "the bootstrap sets it: it is what makes the first server start the cluster and the others join it"
_TOKENS = "the bootstrap sets the tokens (generated, or the token / agentToken inputs)"
BOOTSTRAP_OWNED: dict[str, str] = {
    "token": _TOKENS,
    "token-file": _TOKENS,
    "agent-token": _TOKENS,
    "agent-token-file": _TOKENS,
    "server": _JOIN,
    "cluster-init": _JOIN,
    "cluster-reset": "it would reset etcd on every start of the server; restore with docs/restore.md instead",
    "cluster-reset-restore-path": "it would reset etcd on every start; restore with docs/restore.md instead",
    "datastore-endpoint": "k3s-ha builds an embedded-etcd cluster; an external datastore is another design",
    "disable-etcd": "k3s-ha builds an embedded-etcd cluster, every server an etcd member",
    "node-name": "it would give every node the same name; K3s names each node after its host name",
    "write-kubeconfig": "the kubeconfig step reads the kubeconfig from its default place",
    "write-kubeconfig-mode": "the bootstrap keeps the admin kubeconfig at 0600",
    "https-listen-port": "the firewall, the load balancer and the kubeconfig use 6443",
}
# Keys that have their own input (K3sCluster), by config.yaml key -> that input's argument.
ExtraOwned = Mapping[str, str]


def _refuse(arg: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(field(arg), problem, fix)


def _scalar(value: object, arg: str, key: str) -> object:
    if isinstance(value, pulumi.Output):
        raise _refuse(arg, f"{key}: an output cannot be checked before the cluster is built", "pass a plain value")
    if not isinstance(value, _SCALARS):
        raise _refuse(
            arg,
            f"{key}: {value!r} is not a YAML scalar (string, number, true/false) or a list of them",
            "give the value as K3s takes it on the command line, e.g. node-label: [role=db]",
        )
    if isinstance(value, float) and value.is_integer():
        return int(value)  # other languages send every number as a float; K3s' int flags refuse "5.0"
    if isinstance(value, str) and any(c in value for c in "\n\r\0"):
        raise _refuse(arg, f"{key}: a value holds a line break or NUL", "give one line per value (use a list)")
    return value


def k3s_settings(value: object, arg: str, role: str, extra_owned: ExtraOwned | None = None) -> dict[str, Any]:
    """Check `server_config` / `agent_config`: {config.yaml key: scalar or list of scalars}."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _refuse(
            arg,
            f"{value!r} is not an object of config.yaml settings",
            'use e.g. {"disable": ["traefik"], "node-label": ["team=a"]}',
        )
    checked: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _FLAG_NAME.match(key):
            raise _refuse(
                arg,
                f"{key!r} is not a K3s setting name",
                f"use the `k3s {role}` flag without its leading dashes, e.g. flannel-backend or node-taint",
            )
        if key in BOOTSTRAP_OWNED:
            raise _refuse(arg, f"{key} cannot be set here: {BOOTSTRAP_OWNED[key]}", f"remove {key}")
        if key == "etcd-disable-snapshots" and item not in (False, "false", "False"):
            raise _refuse(
                arg,
                "etcd-disable-snapshots turns off every scheduled etcd snapshot, and k3s-ha never leaves "
                "backups silently off",
                "remove it; to snapshot less often set etcd-snapshot-schedule-cron and etcd-snapshot-retention",
            )
        if extra_owned and key in extra_owned:
            raise _refuse(
                arg, f"{key} has its own input", f"use {field(extra_owned[key])} instead and remove {key} from here"
            )
        if isinstance(item, (list, tuple)):
            checked[key] = [_scalar(v, arg, key) for v in item]
        else:
            checked[key] = _scalar(item, arg, key)
    tls_san = checked.get("tls-san")
    if tls_san is not None and not all(
        isinstance(v, str) for v in (tls_san if isinstance(tls_san, list) else [tls_san])
    ):
        raise _refuse(arg, "tls-san must be host names or addresses", 'use e.g. ["k3s.example.com"]')
    return checked


_REGISTRY_SECTIONS = ("mirrors", "configs")


def registries(value: object, arg: str = "registries") -> Mapping[str, Any] | None:
    """Check a registries.yaml object (docs.k3s.io installation/private-registry: `mirrors` and
    `configs`, each keyed by registry host). Leaves may be outputs (e.g. a password from a
    secret store): they are resolved when the file is written."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _refuse(arg, f"{value!r} is not an object", 'use e.g. {"mirrors": {"docker.io": {"endpoint": [...]}}}')
    for section, entries in value.items():
        if section not in _REGISTRY_SECTIONS:
            raise _refuse(
                arg,
                f"{section!r} is not a registries.yaml section",
                "use mirrors (registry host -> endpoint list) and configs (registry host -> auth / tls)",
            )
        if not isinstance(entries, Mapping) or not all(isinstance(v, Mapping) for v in entries.values()):
            raise _refuse(
                arg,
                f"{section} must map each registry host to an object",
                f'use e.g. {{"{section}": {{"registry.example.com": {{...}}}}}}',
            )
    return value
