"""Render the /etc/rancher/k3s/config.yaml each role receives on stdin.

Settings live in config.yaml (mode 0600) rather than on the command line, because
flags land in the unit's ExecStart where anyone can read them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from ..ports import api_url

END_MARKER = "# k3s-ha: end of config.yaml"
"""The last line of every config: the node scripts refuse stdin without it (cut short by a
dropped session) rather than write a truncated config.yaml (lib.sh, k3s_ha_config_end_marker)."""


def _render(settings: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(settings), sort_keys=True, default_flow_style=False) + END_MARKER + "\n"


NEW_CLUSTER_DEFAULTS: Mapping[str, Any] = {"secrets-encryption": True}
"""Server settings k3s-ha turns on for clusters it creates, and only for those: K3s cannot take
them later. Secrets encrypted at rest (AES-CBC, a key K3s generates and keeps in its
bootstrap data), so etcd and its snapshots hold no Secret in plain text. "Starting K3s without
encryption and enabling it at a later time is currently not supported" (docs.k3s.io,
cli/secrets-encrypt), and it is a critical setting every server must share
(pkg/daemons/config CriticalControlArgs `secrets-encryption`): a cluster's servers get it when
its init step created the cluster, never on a cluster made before (the init step's stdout).
A value the user sets in serverConfig wins."""


def cluster_settings(extra: Mapping[str, Any], created: bool) -> dict[str, Any]:
    """`extra` (serverConfig) with NEW_CLUSTER_DEFAULTS added when this cluster was created by
    k3s-ha's init step (`created`)."""
    if not created:
        return dict(extra)
    return {**NEW_CLUSTER_DEFAULTS, **extra}


def secure_token(ca_hash: str, user: str, password: str) -> str:
    """K3s's secure token form, K10<CA hash>::<user>:<password> (pkg/clientaccess/token.go):
    a node joining with it fetches the server's /cacerts and refuses a CA whose SHA-256 differs
    before it sends the password, then verifies the connection against that CA. `user` is
    "server" for a server's token, "node" for an agent's."""
    if len(ca_hash) != 64 or any(c not in "0123456789abcdef" for c in ca_hash):
        raise ValueError(f"the cluster CA hash must be 64 lower-case hex digits, got {ca_hash!r}")
    return f"K10{ca_hash}::{user}:{password}"


def render_server_config_yaml(
    *,
    token: str,
    agent_token: str,
    tls_sans: Sequence[str],
    join_address: str | None,
    extra: Mapping[str, Any],
    ca_hash: str | None = None,
) -> str:
    """A server's config.yaml: `cluster-init` on the first, `server:` on the ones that join it,
    whose token then carries the cluster CA's hash (`ca_hash`, secure_token).

    Everything but the join line and the token's form must be identical on every server, or
    K3s refuses the join with "critical configuration value mismatch".
    """
    extra_sans = extra.get("tls-san") or []
    if join_address is not None and ca_hash is not None:
        token = secure_token(ca_hash, "server", token)
    settings: dict[str, Any] = {
        **extra,
        "token": token,
        "agent-token": agent_token,
        # The user's names are added to the bootstrap's (passthrough.py checked they are strings).
        "tls-san": sorted({*tls_sans, *([extra_sans] if isinstance(extra_sans, str) else extra_sans)}),
        "write-kubeconfig-mode": "0600",
    }
    if join_address is None:
        settings["cluster-init"] = True
    else:
        settings["server"] = api_url(join_address)
    return _render(settings)


def render_agent_config_yaml(
    *, agent_token: str, join_address: str, extra: Mapping[str, Any], ca_hash: str | None = None
) -> str:
    token = agent_token if ca_hash is None else secure_token(ca_hash, "node", agent_token)
    return _render({**extra, "server": api_url(join_address), "token": token})


# The line that ends config.yaml and starts registries.yaml on a start script's stdin; lib.sh's
# k3s_ha_config_split_registries splits there. A column-0 line starting with `---` never occurs
# inside a rendered config.yaml: its values are scalars without line breaks (passthrough.py).
REGISTRIES_SEPARATOR = "--- # k3s-ha: registries.yaml follows\n"
# The first line of every registries.yaml k3s-ha writes: the script removes only a file that
# starts with it when the stack stops giving one, and leaves one written by hand alone.
REGISTRIES_HEADER = "# Written by k3s-ha from the registries input; replaced on every start step.\n"


# The line that starts the manifests on a server's stdin, after config.yaml and registries.yaml
# (lib.sh k3s_ha_config_split_manifests), and the first line of the file they are written to.
MANIFESTS_SEPARATOR = "--- # k3s-ha: manifests follow\n"
MANIFESTS_HEADER = "# Written by k3s-ha from the manifests input; replaced on every start step.\n"
MANIFESTS_FILE = "k3s-ha.yaml"
"""Its name in the server's auto-deploy directory, DATA_DIR/server/manifests."""


def render_manifests(manifests: Sequence[Mapping[str, Any]]) -> str:
    """Kubernetes objects as one multi-document YAML file, header first and the end marker last
    (a comment, harmless to K3s's deploy controller)."""
    body = yaml.safe_dump_all([dict(m) for m in manifests], sort_keys=True, default_flow_style=False)
    return MANIFESTS_HEADER + body + END_MARKER + "\n"


def with_registries(
    config_yaml: str,
    registries: Mapping[str, Any] | None,
    manifests: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """A start script's stdin: config.yaml, then, when `registries` is given, the separator and
    registries.yaml (secret too: it may hold registry passwords), then, when `manifests` are
    given (servers only), their separator and the manifests file."""
    stdin = config_yaml
    if registries is not None:
        stdin += REGISTRIES_SEPARATOR + REGISTRIES_HEADER + _render(registries)
    if manifests is not None:
        stdin += MANIFESTS_SEPARATOR + render_manifests(manifests)
    return stdin
