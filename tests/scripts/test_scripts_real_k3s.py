"""The node scripts against what the real K3s, install.sh and sudo do (issue 10, node side;
issue 12 sections 2 and 6). The stand-ins in tests/support/standins/ model those behaviours and cite
where each comes from; every test here failed on the scripts before the fix it names.

Like tests/scripts/test_scripts.py, each test runs the real command text from
`k3s_ha.bootstrap.commands.remote_command` with the stand-ins first on PATH.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.fake_node import (
    CA_HASH,
    END,
    SECRET,
    SERVER_CONFIG,
    VERSION,
    Node,
    agent_params,
    assert_only_config_file,
    assert_secret_hidden,
    gone_soon,
    install_params,
    last_error,
    make_etcd_data,
    server_params,
    with_lines,
    write_config,
)

OLD = "v1.35.2+k3s1"
JOIN_CONFIG = with_lines(
    SERVER_CONFIG.replace("cluster-init: true\n", ""),
    "server: https://k3s.example.internal:6443",
)


def running(node: Node, unit: str = "k3s") -> str:
    return (node.state / f"running.{unit}").read_text().strip()


# --- 10.1: an upgrade restarts K3s, and the step ends only once the node RUNS it -------


def test_upgrade_end_to_end_restarts_the_server_onto_the_new_version(node: Node) -> None:
    """install-k3s.sh replaces the binary (the running copy under data/<hash>/ keeps running);
    the same config then still restarts the server, which ends up running the new version."""
    node.install_fake_k3s(OLD, "k3s.service")
    node.server_is_healthy()
    params = {**server_params(node), "K3S_HA_BIN_DIR": str(node.install_bin)}
    first = node.run("start-server", {**params, "K3S_VERSION": OLD}, stdin=SERVER_CONFIG)
    assert first.returncode == 0, first.stderr
    assert running(node) == OLD

    installed = node.run("install-k3s", install_params(node, "server"))
    upgraded = node.run("start-server", {**params, "K3S_VERSION": VERSION}, stdin=SERVER_CONFIG)

    assert installed.returncode == 0, installed.stderr
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"restarting k3s because it runs k3s {OLD} and {VERSION} is installed (upgrade)" in upgraded.stderr
    assert node.calls("systemctl").count("restart k3s") == 2
    assert running(node) == VERSION
    assert (node.state / "enabled.k3s").exists()


def test_upgrade_waits_until_the_node_runs_the_new_version(node: Node) -> None:
    # The kubelet posts the new version only once it has started.
    node.server_is_healthy()
    node.set("node.k3s-server-1.kubeletVersion", OLD, OLD, OLD, VERSION)

    result = node.run("start-server", server_params(node, K3S_VERSION=VERSION), stdin=SERVER_CONFIG)

    assert result.returncode == 0, result.stderr
    assert f"running version {VERSION} (last seen: {OLD})" in result.stderr
    assert "done waiting for k3s server k3s-server-1" in result.stderr


def test_upgrade_fails_when_the_node_never_runs_the_new_version(node: Node) -> None:
    node.server_is_healthy()
    node.set("node.k3s-server-1.kubeletVersion", OLD)

    result = node.run(
        "start-server", server_params(node, K3S_VERSION=VERSION, K3S_READY_TIMEOUT="1"), stdin=SERVER_CONFIG
    )

    assert result.returncode == 1
    assert f"running version {VERSION} (last seen: {OLD})" in last_error(result)


def test_upgrade_restarts_an_agent_that_runs_the_old_version(node: Node) -> None:
    params = agent_params(node)
    node.agent_is_healthy()
    node.set("version", OLD)
    assert node.run("start-agent", {**params, "K3S_VERSION": OLD}, stdin=AGENT).returncode == 0
    node.set("version", VERSION)  # install-k3s.sh replaced the binary

    result = node.run("start-agent", {**params, "K3S_VERSION": VERSION}, stdin=AGENT)

    assert result.returncode == 0, result.stderr
    assert f"restarting k3s-agent because it runs k3s {OLD} and {VERSION} is installed (upgrade)" in result.stderr
    assert running(node, "k3s-agent") == VERSION
    kubelet = f"kubectl --kubeconfig {node.data_dir}/agent/kubelet.kubeconfig get node k3s-server-1"
    assert any(c.startswith(kubelet) and "kubeletVersion" in c for c in node.calls("k3s"))
    assert result.stdout == "k3s-server-1\n"


def test_same_version_rerun_does_not_restart(node: Node) -> None:
    node.server_is_healthy()
    params = server_params(node, K3S_VERSION=VERSION)
    assert node.run("start-server", params, stdin=SERVER_CONFIG).returncode == 0

    result = node.run("start-server", params, stdin=SERVER_CONFIG)

    assert result.returncode == 0, result.stderr
    assert node.calls("systemctl").count("restart k3s") == 1
    assert f"already running with this config and {VERSION}; not restarting" in result.stderr


def test_a_running_server_whose_version_cannot_be_read_is_restarted(node: Node) -> None:
    # Running, same config, but its API does not say what it runs: only a restart makes
    # sure it runs the installed K3S_VERSION.
    node.server_is_healthy()
    assert node.run("start-server", server_params(node), stdin=SERVER_CONFIG).returncode == 0
    node.set("node.k3s-server-1.kubeletVersion", "!Unable to connect to the server: EOF", VERSION)

    result = node.run("start-server", server_params(node, K3S_VERSION=VERSION), stdin=SERVER_CONFIG)

    assert result.returncode == 0, result.stderr
    assert "because the version it runs cannot be read (Unable to connect to the server: EOF)" in result.stderr
    assert node.calls("systemctl").count("restart k3s") == 2


AGENT = f"server: https://k3s.example.internal:6443\ntoken: {SECRET}\n{END}"


# --- 10.3: etcd data is member/wal, not the db/etcd directory --------------------------


def test_a_failed_join_is_not_etcd_data(node: Node) -> None:
    # K3s wrote server/db/etcd/name on a start whose join then failed: no member/wal.
    (node.data_dir / "server" / "db" / "etcd").mkdir(parents=True)
    (node.data_dir / "server" / "db" / "etcd" / "name").write_text("k3s-server-1-0a1b2c3d\n")
    node.peer_of_this_cluster("10.0.0.3")
    node.server_is_healthy()

    params = server_params(node, K3S_HA_PEERS="10.0.0.3", K3S_HA_CLUSTER_INIT="never", K3S_HA_CA_HASH=CA_HASH)
    result = node.run("start-server", params, stdin=SERVER_CONFIG)

    assert result.returncode == 0, result.stderr
    assert "server: https://10.0.0.3:6443\n" in (node.config_dir / "config.yaml").read_text()
    assert "cluster-init" not in (node.config_dir / "config.yaml").read_text()


def test_a_member_with_wal_keeps_its_config(node: Node) -> None:
    make_etcd_data(node)
    node.set("ping.10.0.0.3", "pong")
    node.server_is_healthy()

    result = node.run("start-server", server_params(node, K3S_HA_PEERS="10.0.0.3"), stdin=SERVER_CONFIG)

    assert result.returncode == 0, result.stderr
    assert (node.config_dir / "config.yaml").read_text() == SERVER_CONFIG
    assert node.calls("curl") == []


# --- 10.5: the whole step is bounded on the node ---------------------------------------


def test_the_whole_step_is_bounded_and_leaves_nothing_running(node: Node) -> None:
    # A hung join (Type=notify never notifies) with a generous readiness budget: the step's
    # own bound stops it, and what it started with it.
    node.set("restart_hangs.k3s", "")
    started = time.monotonic()

    result = node.run(
        "start-server", server_params(node, K3S_READY_TIMEOUT="25", K3S_HA_STEP_TIMEOUT="6"), stdin=SERVER_CONFIG
    )

    assert time.monotonic() - started < 20
    assert result.returncode == 1
    assert "the step did not finish within 6s" in last_error(result)
    assert gone_soon(int((node.state / "hung.pid").read_text()))
    assert_only_config_file(node)
    assert_secret_hidden(node, result)


# --- 10.7: restore on any surviving server; rejoin pointed at the restored one ---------


def snapshot(node: Node) -> Path:
    snapshots = node.data_dir / "server" / "db" / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    path = snapshots / "etcd-snapshot-k3s-server-2-1767225600"
    path.write_text("snapshot\n")
    return path


def test_restore_works_on_a_server_that_joined(node: Node) -> None:
    config = write_config(node, JOIN_CONFIG)
    path = snapshot(node)
    node.set("active.k3s", "active")
    node.server_is_healthy()

    result = node.run("restore-snapshot", server_params(node, K3S_HA_SNAPSHOT=path.name))

    assert result.returncode == 0, result.stderr
    assert "cannot perform cluster-reset" not in result.stderr
    assert "server:" not in config.read_text()
    assert f"token: {SECRET}\n" in config.read_text()
    (backup,) = node.config_dir.glob("config.yaml.before-restore-*")
    assert backup.read_text() == JOIN_CONFIG
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    assert node.calls("systemctl") == ["stop k3s", "start k3s"]
    assert "removed the server: line" in result.stderr
    assert_secret_hidden(node, result)


def test_rejoin_can_be_pointed_at_the_restored_server(node: Node) -> None:
    # The registration address in config.yaml is the dead server; 10.0.0.3 was restored.
    config = write_config(node, JOIN_CONFIG)
    make_etcd_data(node)
    node.set("active.k3s", "active")
    node.server_is_healthy()
    node.peer_of_this_cluster("10.0.0.3")

    result = node.run("rejoin-server", server_params(node, K3S_HA_PEERS="10.0.0.3"))

    assert result.returncode == 0, result.stderr
    text = config.read_text()
    assert "server: https://10.0.0.3:6443\n" in text
    assert "k3s.example.internal:6443" not in text.split("tls-san")[0]
    assert [line for line in text.splitlines() if line.startswith("server:")] == ["server: https://10.0.0.3:6443"]
    assert text.endswith(END)
    assert node.calls("systemctl") == ["stop k3s", "start k3s"]
    assert all(c.endswith(("10.0.0.3:6443/ping", "10.0.0.3:6443/cacerts")) for c in node.calls("curl"))
    assert_secret_hidden(node, result)


def test_rejoin_does_not_pass_on_the_old_etcd_voter_condition(node: Node) -> None:
    # The Node object from before the restore still says EtcdIsVoter=True; the leader sets
    # False (learner) and True again only after the rejoin.
    write_config(node, JOIN_CONFIG)
    make_etcd_data(node)
    node.set("active.k3s", "active")
    node.set("ping.k3s.example.internal", "pong")
    node.set("readyz", "ok")
    node.set("node.k3s-server-1.Ready", "True")
    node.set("node.k3s-server-1.EtcdIsVoter", "True old old", "True old old", "False now now", "True now now")

    result = node.run("rejoin-server", server_params(node))

    assert result.returncode == 0, result.stderr
    assert "EtcdIsVoter (last seen: True, but since" in result.stderr
    assert len([c for c in node.calls("k3s") if "EtcdIsVoter" in c]) == 4


# --- 10.9/10.10: readiness after a restart is not the stale Ready --------------------


def test_readiness_after_a_restart_waits_for_a_fresh_ready(node: Node) -> None:
    make_etcd_data(node)
    node.set("readyz", "ok")
    node.set("node.k3s-server-1.EtcdIsVoter", "True old old")  # unchanged membership stands
    # Right after the restart the Node still shows the old kubelet's Ready=True.
    node.set("node.k3s-server-1.Ready", "True old old", "True old old", "True now old")

    result = node.run("start-server", server_params(node), stdin=JOIN_CONFIG)

    assert result.returncode == 0, result.stderr
    assert "Ready (last seen: True, but from" in result.stderr
    assert len([c for c in node.calls("k3s") if "Ready" in c and "EtcdIsVoter" not in c]) == 3


def test_ping_alone_is_not_ready(node: Node) -> None:
    # /ping answers pong from the supervisor before the apiserver is up.
    make_etcd_data(node)
    node.set("ping.k3s.example.internal", "pong")
    node.set("node.k3s-server-1.Ready", "True")
    node.set("node.k3s-server-1.EtcdIsVoter", "True")

    result = node.run("start-server", server_params(node, K3S_READY_TIMEOUT="1"), stdin=JOIN_CONFIG)

    assert result.returncode == 1
    assert "readyz (last seen: error: The connection to the server" in last_error(result)


def test_a_new_server_does_not_pass_on_an_old_nodes_etcd_voter(node: Node) -> None:
    # A rebuilt machine joins under its old name: its Node still says EtcdIsVoter=True.
    node.set("ping.k3s.example.internal", "pong")
    node.set("readyz", "ok")
    node.set("node.k3s-server-1.Ready", "True")
    node.set("node.k3s-server-1.EtcdIsVoter", "True old old")

    result = node.run("start-server", server_params(node, K3S_READY_TIMEOUT="1"), stdin=JOIN_CONFIG)

    assert result.returncode == 1
    assert "EtcdIsVoter (last seen: True, but since" in last_error(result)


def test_an_agent_waits_for_a_fresh_ready_after_its_restart(node: Node) -> None:
    node.set("node.k3s-server-1.Ready", "True old old", "True now now")

    result = node.run("start-agent", agent_params(node), stdin=AGENT)

    assert result.returncode == 0, result.stderr
    assert "Ready (last seen: True, but from" in result.stderr


# --- 12.6: nothing half-written on the node ------------------------------------------


@pytest.mark.parametrize("cut", [10, len(SERVER_CONFIG) - len(END), len(SERVER_CONFIG) - 5])
def test_truncated_stdin_is_never_written(node: Node, cut: int) -> None:
    write_config(node, JOIN_CONFIG)
    node.server_is_healthy()

    result = node.run("start-server", server_params(node), stdin=SERVER_CONFIG[:cut])

    assert result.returncode == 1
    assert "does not end with the line '# k3s-ha: end of config.yaml': it was cut short" in last_error(result)
    assert (node.config_dir / "config.yaml").read_text() == JOIN_CONFIG
    assert node.calls("systemctl") == []
    assert_only_config_file(node)
    assert_secret_hidden(node, result)


def test_truncated_stdin_is_never_written_on_an_agent(node: Node) -> None:
    result = node.run("start-agent", agent_params(node), stdin=AGENT[: len(AGENT) - len(END)])

    assert result.returncode == 1
    assert "it was cut short" in last_error(result)
    assert not (node.config_dir / "config.yaml").exists()


def test_a_killed_step_leaves_no_temp_file_with_the_token(node: Node) -> None:
    # The step's bound fires while the config is being moved into place: SIGTERM reaches
    # the script, and the temp file holding the token must go with it.
    fake_mv = node.path_dir / "mv"
    fake_mv.write_text(
        '#!/bin/sh\n# stand-in, not the real mv: hangs\ntouch "$STANDIN_STATE/mv.started"\nexec sleep 30\n'
    )
    fake_mv.chmod(0o755)
    started = time.monotonic()

    result = node.run("start-server", server_params(node, K3S_HA_STEP_TIMEOUT="6"), stdin=SERVER_CONFIG)

    assert time.monotonic() - started < 20
    assert (node.state / "mv.started").exists()
    assert result.returncode == 1
    assert "the step did not finish within 6s" in last_error(result)
    assert list(node.config_dir.iterdir()) == []
    assert_secret_hidden(node, result)


def test_a_temp_file_left_by_a_sigkill_is_removed_by_the_next_run(node: Node) -> None:
    node.config_dir.mkdir()
    stale = node.config_dir / ".config.yaml.AbC123"
    stale.write_text(SERVER_CONFIG)
    node.server_is_healthy()

    result = node.run("start-server", server_params(node), stdin=SERVER_CONFIG)

    assert result.returncode == 0, result.stderr
    assert not stale.exists()
    assert_only_config_file(node)


# --- 12.2: a token change never takes a server down -----------------------------------


def stored_tokens(node: Node, token: str = SECRET, agent_token: str = f"{SECRET}-agent") -> None:
    """What K3s wrote when the cluster was built: the secure form of each token."""
    server = node.data_dir / "server"
    server.mkdir(parents=True, exist_ok=True)
    (server / "token").write_text(f"K10{'ab' * 32}::server:{token}\n")
    (server / "agent-token").write_text(f"K10{'ab' * 32}::node:{agent_token}\n")


@pytest.mark.parametrize(
    ("config", "key"),
    [
        (SERVER_CONFIG.replace(f"token: {SECRET}\n", "token: AnotherToken0123456789abcdefXYZ\n"), "token"),
        (
            SERVER_CONFIG.replace(f"agent-token: {SECRET}-agent\n", "agent-token: AnotherAgentToken0123456789\n"),
            "agent-token",
        ),
    ],
)
def test_a_token_change_is_refused_before_anything_changes(node: Node, config: str, key: str) -> None:
    make_etcd_data(node)
    stored_tokens(node)
    write_config(node, SERVER_CONFIG)
    node.set("active.k3s", "active")

    result = node.run("start-server", server_params(node), stdin=config)

    assert result.returncode == 1
    message = last_error(result)
    assert f"refusing to change the cluster's {key}" in message
    assert "k3s token rotate" in message and "v1.28.2" in message
    assert (node.config_dir / "config.yaml").read_text() == SERVER_CONFIG
    assert node.calls("systemctl") == []
    assert "AnotherToken" not in result.stderr + result.stdout
    assert_secret_hidden(node, result)


def test_pinning_the_same_token_is_a_no_op(node: Node) -> None:
    make_etcd_data(node)
    stored_tokens(node)
    node.server_is_healthy()
    assert node.run("start-server", server_params(node), stdin=SERVER_CONFIG).returncode == 0

    result = node.run("start-server", server_params(node), stdin=SERVER_CONFIG)

    assert result.returncode == 0, result.stderr
    assert node.calls("systemctl").count("restart k3s") == 1
