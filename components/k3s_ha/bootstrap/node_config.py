"""Render the /etc/rancher/k3s/config.yaml each role receives on stdin.

Settings live in config.yaml (mode 0600) rather than on the command line, because
flags land in the unit's ExecStart where anyone can read them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from ..ports import api_url


def _render(settings: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(settings), sort_keys=True, default_flow_style=False)


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
    settings: dict[str, Any] = {
        **extra,
        "token": token,
        "agent-token": agent_token,
        "tls-san": sorted(set(tls_sans)),
        "write-kubeconfig-mode": "0600",
    }
    if join_address is None:
        settings["cluster-init"] = True
    else:
        settings["server"] = api_url(join_address)
    return _render(settings)


def render_agent_config_yaml(*, agent_token: str, join_address: str, extra: Mapping[str, Any]) -> str:
    return _render({**extra, "server": api_url(join_address), "token": agent_token})
