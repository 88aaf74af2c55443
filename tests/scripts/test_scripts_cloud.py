"""The AWS cloud integration on a node (issue 19.2): a server writes the manifests from its
stdin into K3s's auto-deploy directory, and a node whose kubelet runs with
cloud-provider=external counts as up only once the cloud controller manager initialised it.

The stdin is what node_config.py renders for the start steps, so these tests also keep the
separator and header lines of Python and lib.sh in step.
"""

from __future__ import annotations

import stat

import pytest
import yaml
from k3s_ha.aws import cloud_integration
from k3s_ha.bootstrap import node_config
from support.fake_node import SECRET, Node, agent_params, assert_secret_hidden, server_params

SERVER_CONFIG = node_config.render_server_config_yaml(
    token=SECRET, agent_token=f"{SECRET}-agent", tls_sans=["10.0.0.10"], join_address=None, extra={}
)
AGENT_CONFIG = node_config.render_agent_config_yaml(agent_token=SECRET, join_address="10.0.0.10", extra={})
MANIFESTS = [cloud_integration.storage_class(), cloud_integration.csi_secret("AKIAEXAMPLE", SECRET)]
OTHER_MANIFESTS = [cloud_integration.storage_class()]
UNINITIALIZED = "|node.cloudprovider.kubernetes.io/uninitialized "
INITIALIZED = "aws:///eu-west-1a/i-0123456789abcdef0|"


def _start_server(node: Node, manifests: list | None, registries: dict | None = None, stdin: str | None = None):
    flags = {"K3S_HA_WITH_MANIFESTS": "1"} if manifests is not None else {}
    if registries is not None:
        flags["K3S_HA_WITH_REGISTRIES"] = "1"
    node.server_is_healthy()
    stdin = stdin or node_config.with_registries(SERVER_CONFIG, registries, manifests)
    return node.run("start-server", server_params(node, **flags), stdin=stdin)


def _manifests_file(node: Node):
    return node.data_dir / "server" / "manifests" / node_config.MANIFESTS_FILE


def _restarts(node: Node) -> int:
    return node.calls("systemctl").count("restart k3s")


def test_the_manifests_are_written_0600_into_the_auto_deploy_directory(node: Node) -> None:
    result = _start_server(node, MANIFESTS, registries={"mirrors": {}})

    assert result.returncode == 0, result.stderr
    path = _manifests_file(node)
    assert path.read_text() == node_config.render_manifests(MANIFESTS)
    assert [d for d in yaml.safe_load_all(path.read_text()) if d] == MANIFESTS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # config.yaml and registries.yaml are byte for byte what they are without manifests.
    assert (node.config_dir / "config.yaml").read_text() == SERVER_CONFIG
    assert yaml.safe_load((node.config_dir / "registries.yaml").read_text()) == {"mirrors": {}}
    assert_secret_hidden(node, result)


def test_the_directories_the_manifests_create_before_k3s_are_root_only(node: Node) -> None:
    """K3s makes DATA_DIR/server 0700 only when it creates it, so whatever is first must too."""
    assert not (node.data_dir / "server").exists()

    assert _start_server(node, MANIFESTS).returncode == 0

    for path in (node.data_dir / "server", _manifests_file(node).parent):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def test_changed_manifests_are_written_without_a_restart(node: Node) -> None:
    """K3s applies a changed file while it runs (pkg/deploy/controller.go rescans every 15 s)."""
    assert _start_server(node, MANIFESTS).returncode == 0

    result = _start_server(node, OTHER_MANIFESTS)

    assert result.returncode == 0, result.stderr
    assert _restarts(node) == 1  # the first start only
    assert _manifests_file(node).read_text() == node_config.render_manifests(OTHER_MANIFESTS)


def test_manifests_no_longer_given_are_removed_without_a_restart_and_a_file_by_hand_stays(node: Node) -> None:
    assert _start_server(node, MANIFESTS).returncode == 0
    own = _manifests_file(node).parent / "by-hand.yaml"
    own.write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: mine\n")

    result = _start_server(node, None)

    assert result.returncode == 0, result.stderr
    assert not _manifests_file(node).exists()
    assert own.exists()
    assert "what K3s deployed from it stays" in result.stderr
    assert _restarts(node) == 1


def test_a_stdin_cut_before_the_manifests_writes_nothing(node: Node) -> None:
    result = _start_server(node, MANIFESTS, stdin=SERVER_CONFIG)

    assert result.returncode != 0
    assert "manifests that were to follow" in result.stderr
    assert not (node.config_dir / "config.yaml").exists()
    assert not _manifests_file(node).exists()


@pytest.mark.parametrize("role", ["agent", "server"])
def test_with_cloud_provider_external_the_start_waits_for_the_cloud_controller(node: Node, role: str) -> None:
    """The Node registers tainted; the step ends only once the CCM set the providerID and
    removed the taint (kubernetes cloud-provider node_controller.go)."""
    node.set("node.k3s-server-1.cloud", UNINITIALIZED, UNINITIALIZED, UNINITIALIZED, INITIALIZED)
    wait = {"K3S_HA_WAIT_CLOUD_INIT": "1", "K3S_HA_POLL_SECONDS": "1"}
    if role == "agent":
        node.agent_is_healthy()
        result = node.run("start-agent", agent_params(node, **wait), stdin=AGENT_CONFIG)
    else:
        node.server_is_healthy()
        result = node.run("start-server", server_params(node, **wait), stdin=SERVER_CONFIG)

    assert result.returncode == 0, result.stderr
    asked = [c for c in node.calls("k3s") if "providerID" in c]
    assert len(asked) >= 4, asked
    assert "initialised by the cloud controller manager" in result.stderr


def test_a_node_the_cloud_controller_never_initialises_fails_naming_the_taint(node: Node) -> None:
    node.set("node.k3s-server-1.cloud", UNINITIALIZED)
    node.agent_is_healthy()

    result = node.run(
        "start-agent",
        agent_params(node, K3S_HA_WAIT_CLOUD_INIT="1", K3S_HA_POLL_SECONDS="1", K3S_READY_TIMEOUT="4"),
        stdin=AGENT_CONFIG,
    )

    assert result.returncode != 0
    assert "node.cloudprovider.kubernetes.io/uninitialized set" in result.stderr


def test_without_the_flag_nothing_asks_for_the_cloud_controller(node: Node) -> None:
    node.agent_is_healthy()

    result = node.run("start-agent", agent_params(node), stdin=AGENT_CONFIG)

    assert result.returncode == 0, result.stderr
    assert not [c for c in node.calls("k3s") if "providerID" in c]
