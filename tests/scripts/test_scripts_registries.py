"""registries.yaml on the nodes: the start scripts take it from stdin after config.yaml.

The stdin is what node_config.py renders for the start steps, so these tests also keep the
separator and header lines of Python and lib.sh in step.
"""

from __future__ import annotations

import stat

import pytest
import yaml
from k3s_ha.bootstrap import node_config
from support.fake_node import SECRET, Node, agent_params, assert_secret_hidden, server_params

REGISTRIES = {
    "mirrors": {"docker.io": {"endpoint": ["https://mirror.example.internal:5000"]}},
    "configs": {"mirror.example.internal:5000": {"auth": {"username": "k3s", "password": SECRET}}},
}
OTHER_REGISTRIES = {"mirrors": {"docker.io": {"endpoint": ["https://other.example.internal"]}}}
# Agents are simpler to start with the stand-ins (no readiness wait), servers split the same way.
CONFIG = node_config.render_agent_config_yaml(agent_token=SECRET, join_address="10.0.0.10", extra={})
SERVER_CONFIG = node_config.render_server_config_yaml(
    token=SECRET, agent_token=f"{SECRET}-agent", tls_sans=["10.0.0.10"], join_address=None, extra={}
)


def _start(node: Node, role: str, registries: dict | None, config: str | None = None, stdin: str | None = None):
    """Run a start script as the step would: with K3S_HA_WITH_REGISTRIES=1 when `registries`
    is given (plan.start_params) and the stdin node_config renders (or `stdin`)."""
    flag = {"K3S_HA_WITH_REGISTRIES": "1"} if registries is not None else {}
    if role == "agent":
        node.agent_is_healthy()
        stdin = stdin or node_config.with_registries(config or CONFIG, registries)
        return node.run("start-agent", agent_params(node, **flag), stdin=stdin)
    node.server_is_healthy()
    stdin = stdin or node_config.with_registries(config or SERVER_CONFIG, registries)
    return node.run("start-server", server_params(node, **flag), stdin=stdin)


def _restarts(node: Node, role: str) -> int:
    return node.calls("systemctl").count(f"restart {'k3s-agent' if role == 'agent' else 'k3s'}")


@pytest.mark.parametrize("role", ["agent", "server"])
def test_registries_yaml_is_written_0600_next_to_an_unchanged_config_yaml(node: Node, role: str) -> None:
    result = _start(node, role, REGISTRIES)

    assert result.returncode == 0, result.stderr
    config = node.config_dir / "config.yaml"
    registries = node.config_dir / "registries.yaml"
    # config.yaml is byte for byte what it is without registries.
    assert config.read_text() == (CONFIG if role == "agent" else SERVER_CONFIG)
    assert yaml.safe_load(registries.read_text()) == REGISTRIES
    assert registries.read_text().startswith(node_config.REGISTRIES_HEADER)
    for path in (config, registries):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    assert sorted(p.name for p in node.config_dir.iterdir()) == ["config.yaml", "registries.yaml"]
    assert_secret_hidden(node, result)


@pytest.mark.parametrize("role", ["agent", "server"])
def test_a_rerun_with_the_same_registries_does_not_restart(node: Node, role: str) -> None:
    assert _start(node, role, REGISTRIES).returncode == 0

    result = _start(node, role, REGISTRIES)

    assert result.returncode == 0, result.stderr
    assert _restarts(node, role) == 1


@pytest.mark.parametrize("role", ["agent", "server"])
def test_changed_registries_alone_restart_k3s(node: Node, role: str) -> None:
    """K3s reads registries.yaml only when it starts."""
    assert _start(node, role, REGISTRIES).returncode == 0

    result = _start(node, role, OTHER_REGISTRIES)

    assert result.returncode == 0, result.stderr
    assert _restarts(node, role) == 2
    assert yaml.safe_load((node.config_dir / "registries.yaml").read_text()) == OTHER_REGISTRIES


@pytest.mark.parametrize("role", ["agent", "server"])
def test_registries_no_longer_given_are_removed_and_k3s_restarts(node: Node, role: str) -> None:
    assert _start(node, role, REGISTRIES).returncode == 0

    result = _start(node, role, None)

    assert result.returncode == 0, result.stderr
    assert not (node.config_dir / "registries.yaml").exists()
    assert _restarts(node, role) == 2
    assert "removed" in result.stderr and "registries.yaml" in result.stderr


def test_a_registries_yaml_written_by_hand_is_left_alone(node: Node) -> None:
    node.config_dir.mkdir()
    own = node.config_dir / "registries.yaml"
    own.write_text("mirrors:\n  docker.io:\n    endpoint: [https://by-hand.example]\n")

    first = _start(node, "agent", None)
    second = _start(node, "agent", None)

    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert own.read_text().startswith("mirrors:")
    assert _restarts(node, "agent") == 1  # the first start only


def test_passthrough_settings_reach_the_written_config_yaml(node: Node) -> None:
    config = node_config.render_agent_config_yaml(
        agent_token=SECRET,
        join_address="10.0.0.10",
        extra={"node-label": ["team=data", "tier=batch"], "node-taint": ["gpu=true:NoSchedule"]},
    )

    result = _start(node, "agent", REGISTRIES, config=config)

    assert result.returncode == 0, result.stderr
    written = yaml.safe_load((node.config_dir / "config.yaml").read_text())
    assert written["node-label"] == ["team=data", "tier=batch"]
    assert written["node-taint"] == ["gpu=true:NoSchedule"]
    assert written["server"] == "https://10.0.0.10:6443"


@pytest.mark.parametrize("role", ["agent", "server"])
def test_stdin_cut_between_config_and_registries_changes_nothing(node: Node, role: str) -> None:
    """config.yaml's part ends with the same end marker as the whole stdin: cut right there,
    stdin would look complete and registries-free, and the file k3s-ha wrote would go."""
    assert _start(node, role, REGISTRIES).returncode == 0
    written = (node.config_dir / "registries.yaml").read_text()
    whole = node_config.with_registries(CONFIG if role == "agent" else SERVER_CONFIG, OTHER_REGISTRIES)
    cut = whole[: whole.index(node_config.REGISTRIES_SEPARATOR)]
    assert cut.endswith(node_config.END_MARKER + "\n")

    result = _start(node, role, OTHER_REGISTRIES, stdin=cut)

    assert result.returncode != 0
    assert "registries.yaml was to follow" in result.stderr
    assert (node.config_dir / "registries.yaml").read_text() == written
    assert _restarts(node, role) == 1
