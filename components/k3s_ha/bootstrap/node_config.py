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


def render_server_config_yaml(
    *,
    token: str,
    agent_token: str,
    tls_sans: Sequence[str],
    join_address: str | None,
    extra: Mapping[str, Any],
) -> str:
    """A server's config.yaml: `cluster-init` on the first, `server:` on the ones that join it.

    Everything but the join line must be identical on every server, or K3s refuses the join
    with "critical configuration value mismatch".
    """
    extra_sans = extra.get("tls-san") or []
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


def render_agent_config_yaml(*, agent_token: str, join_address: str, extra: Mapping[str, Any]) -> str:
    return _render({**extra, "server": api_url(join_address), "token": agent_token})


# The line that ends config.yaml and starts registries.yaml on a start script's stdin; lib.sh's
# k3s_ha_config_split_registries splits there. A column-0 line starting with `---` never occurs
# inside a rendered config.yaml: its values are scalars without line breaks (passthrough.py).
REGISTRIES_SEPARATOR = "--- # k3s-ha: registries.yaml follows\n"
# The first line of every registries.yaml k3s-ha writes: the script removes only a file that
# starts with it when the stack stops giving one, and leaves one written by hand alone.
REGISTRIES_HEADER = "# Written by k3s-ha from the registries input; replaced on every start step.\n"


def with_registries(config_yaml: str, registries: Mapping[str, Any] | None) -> str:
    """A start script's stdin: config.yaml, then, when `registries` is given, the separator and
    registries.yaml (secret too: it may hold registry passwords)."""
    if registries is None:
        return config_yaml
    return config_yaml + REGISTRIES_SEPARATOR + REGISTRIES_HEADER + _render(registries)
