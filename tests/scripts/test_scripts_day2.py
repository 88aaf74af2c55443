"""Day-2 behaviour of the node scripts: version guard, rejoin instead of a second
cluster-init, node names on stdout, membership (confirm / remove), uninstall, restore.

Like tests/scripts/test_scripts.py (whose fake node and stand-ins this reuses), each test runs the
real command text from `k3s_ha.bootstrap.commands.remote_command` with the stand-ins first on PATH;
the restore scripts also run the way a person runs them, as `cat lib.sh X.sh | bash -s`.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
from k3s_ha.bootstrap.bundle import SCRIPT_DIR
from support.fake_node import (
    CA_HASH,
    CLUSTER_CA,
    END,
    SECRET,
    SERVER_CONFIG,
    VERSION,
    Node,
    agent_params,
    assert_secret_hidden,
    install_params,
    last_error,
    make_etcd_data,
    server_params,
    with_lines,
    write_config,
)

JOIN_CONFIG = f"""agent-token: {SECRET}-agent
server: https://k3s.example.internal:6443
tls-san:
  - k3s.example.internal
token: {SECRET}
{END}"""
REFUSED = "!The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?"


def run_lib(script: str) -> subprocess.CompletedProcess[str]:
    """Runs `script` after sourcing lib.sh, with no stand-ins (for pure functions)."""
    return subprocess.run(
        ["bash", "-c", f'. "{SCRIPT_DIR / "lib.sh"}"\n{script}'],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "LC_ALL": "C"},
        timeout=10,
    )


def empty_bin(node: Node) -> str:
    """A bin dir without k3s: a node where nothing is installed."""
    node.install_bin.mkdir(exist_ok=True)
    return str(node.install_bin)


# --- the version guard itself ----------------------------------------------------------

DOWNGRADE = "refusing to downgrade k3s from {f} to {t}"
SKIP = "upgrade one minor at a time: {f} -> {next} first"
DQLITE = "data would be lost; no supported upgrade path from Dqlite to etcd"


@pytest.mark.parametrize(
    ("frm", "to", "refusal"),
    [
        ("", "v1.36.4+k3s1", None),  # nothing installed
        ("v1.36.4+k3s1", "v1.36.4+k3s1", None),
        ("v1.36.2+k3s1", "v1.36.4+k3s1", None),  # patch
        ("v1.36.4+k3s1", "v1.36.4+k3s2", None),  # k3s revision
        ("v1.35.9+k3s2", "v1.36.4+k3s1", None),  # one minor
        ("v1.36.4-rc1+k3s1", "v1.36.4+k3s1", None),  # release candidate to its release
        ("v1.0.1", "v1.1.0", None),  # pre-1.17 tags have no +k3sN
        ("v1.17.0+k3s.1", "v1.18.2+k3s1", None),
        ("v1.19.1+k3s1", "v1.19.5+k3s1", None),  # experimental etcd to stable etcd
        ("v1.36.4+k3s1", "v2.0.0+k3s1", None),  # a new major is not a skipped minor
        ("v1.36.4+k3s1", "v1.35.9+k3s1", DOWNGRADE),
        ("v1.36.4+k3s1", "v1.36.3+k3s5", DOWNGRADE),
        ("v1.36.4+k3s2", "v1.36.4+k3s1", DOWNGRADE),  # revision goes back
        ("v1.36.4+k3s1", "v1.36.4-rc2+k3s1", DOWNGRADE),  # release to its candidate
        ("v1.34.5+k3s1", "v1.36.4+k3s1", SKIP),
        ("v1.30.0+k3s1", "v1.36.4+k3s1", SKIP),
        ("v1.18.9+k3s1", "v1.19.1+k3s1", DQLITE),
        ("v1.19.0+k3s1", "v1.19.5+k3s1", DQLITE),
        ("v1.18.20+k3s1", "v1.20.0+k3s1", DQLITE),  # Dqlite is named before the skip
    ],
)
def test_check_upgrade(frm: str, to: str, refusal: str | None) -> None:
    result = run_lib(f'k3s_ha_check_upgrade "{frm}" "{to}"; echo allowed')

    if refusal is None:
        assert result.returncode == 0, result.stderr
        assert result.stdout == "allowed\n"
        return
    assert result.returncode == 1
    assert result.stdout == ""
    message = last_error(result)
    major, minor = frm[1:].split(".")[:2]
    assert refusal.format(f=frm, t=to, next=f"v{major}.{int(minor) + 1}") in message
    assert frm in message and to in message
    fixes = {DOWNGRADE: f"set the version to {frm} or newer", SKIP: "then on towards", DQLITE: "build a new cluster"}
    assert fixes[refusal] in message


def test_check_upgrade_refuses_what_it_cannot_compare() -> None:
    result = run_lib('k3s_ha_check_upgrade "v1.36.4+k3s1-dirty" v1.36.4+k3s1')

    assert result.returncode == 1
    assert "'v1.36.4+k3s1-dirty' is not a K3s release tag" in last_error(result)


# --- check-upgrade.sh ------------------------------------------------------------------


def guard(node: Node, target: str = VERSION, **extra: str) -> subprocess.CompletedProcess[str]:
    return node.run("check-upgrade", {"K3S_HA_BIN_DIR": str(node.path_dir), "K3S_VERSION": target, **extra})


def test_check_upgrade_script_passes_a_fresh_node(node: Node) -> None:
    result = guard(node, K3S_HA_BIN_DIR=empty_bin(node))

    assert result.returncode == 0, result.stderr
    assert "fresh node" in result.stderr
    assert result.stdout == ""
    assert node.calls("k3s") == []


@pytest.mark.parametrize(
    ("local", "cluster"),
    [
        ("v1.36.4+k3s1", "v1.36.4+k3s1 v1.36.4+k3s1 v1.36.4+k3s1"),  # re-run, nothing moves
        ("v1.36.2+k3s1", "v1.36.2+k3s1 v1.36.2+k3s1 v1.36.4+k3s1"),  # patch, one node done
        ("v1.35.1+k3s1", "v1.35.1+k3s1 v1.35.3+k3s1"),  # one minor
    ],
    ids=["same", "patch", "minor"],
)
def test_check_upgrade_script_allows(node: Node, local: str, cluster: str) -> None:
    node.set("version", local)
    node.set("kubelet_versions", cluster)

    result = guard(node)

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "the cluster may move to k3s v1.36.4+k3s1" in result.stderr
    assert "kubectl get nodes -o jsonpath={.items[*].status.nodeInfo.kubeletVersion} --request-timeout=10s" in (
        node.calls("k3s")
    )


@pytest.mark.parametrize(
    ("local", "cluster", "target", "expected"),
    [
        # Another node already runs a newer version than the target: the HIGHEST counts.
        (
            "v1.36.4+k3s1",
            "v1.36.4+k3s1 v1.37.0+k3s1",
            VERSION,
            "refusing to downgrade k3s from v1.37.0+k3s1 to v1.36.4+k3s1",
        ),
        # An agent lags two minors behind: the LOWEST counts.
        (
            "v1.35.1+k3s1",
            "v1.35.1+k3s1 v1.34.5+k3s1",
            VERSION,
            "upgrade one minor at a time: v1.34.5+k3s1 -> v1.35 first",
        ),
        ("v1.18.9+k3s1", "v1.18.9+k3s1", "v1.19.5+k3s1", DQLITE),
    ],
    ids=["downgrade", "minor-skip", "dqlite"],
)
def test_check_upgrade_script_refuses(node: Node, local: str, cluster: str, target: str, expected: str) -> None:
    node.set("version", local)
    node.set("kubelet_versions", cluster)

    result = guard(node, target)

    assert result.returncode == 1
    assert result.stdout == ""
    assert expected in last_error(result)


def test_check_upgrade_script_uses_the_local_version_when_the_api_is_down(node: Node) -> None:
    node.set("version", "v1.35.2+k3s1")  # no kubelet_versions: connection refused

    allowed = guard(node)
    refused = guard(node, "v1.34.9+k3s1")

    assert allowed.returncode == 0, allowed.stderr
    assert "the local API does not answer" in allowed.stderr
    assert refused.returncode == 1
    assert "refusing to downgrade k3s from v1.35.2+k3s1 to v1.34.9+k3s1" in last_error(refused)


def test_check_upgrade_script_ignores_what_is_not_a_release_tag(node: Node) -> None:
    node.set("kubelet_versions", "v1.36.4+k3s1 v1.36.4-eks-1234")

    result = guard(node)

    assert result.returncode == 0, result.stderr
    assert "ignoring node version 'v1.36.4-eks-1234'" in result.stderr


def test_check_upgrade_script_rejects_a_bad_target(node: Node) -> None:
    result = guard(node, "latest")

    assert result.returncode == 1
    assert "K3S_VERSION must look like v1.36.4+k3s1, got 'latest'" in result.stderr


# --- install-k3s.sh guard --------------------------------------------------------------


@pytest.mark.parametrize(
    ("installed", "target", "expected"),
    [
        ("v1.37.0+k3s1", VERSION, "refusing to downgrade k3s from v1.37.0+k3s1 to v1.36.4+k3s1"),
        ("v1.34.5+k3s1", VERSION, "upgrade one minor at a time: v1.34.5+k3s1 -> v1.35 first"),
        ("v1.18.9+k3s1", "v1.19.5+k3s1", DQLITE),
    ],
    ids=["downgrade", "minor-skip", "dqlite"],
)
def test_install_refuses_before_downloading(node: Node, installed: str, target: str, expected: str) -> None:
    node.install_fake_k3s(installed, "k3s.service")
    binary = (node.install_bin / "k3s").read_text()

    result = node.run("install-k3s", install_params(node, "server", K3S_VERSION=target))

    assert result.returncode == 1
    assert expected in last_error(result)
    assert node.calls("curl") == []
    assert node.calls("cloud-init") == []
    assert not (node.state / "installer.log").exists()
    assert node.calls("systemctl") == []
    assert (node.install_bin / "k3s").read_text() == binary  # the node keeps what it runs
    assert list(node.tmp_dir.iterdir()) == []


@pytest.mark.parametrize("installed", ["v1.36.2+k3s1", "v1.35.9+k3s1"], ids=["patch", "minor"])
def test_install_allows_an_upgrade(node: Node, installed: str) -> None:
    node.install_fake_k3s(installed, "k3s.service")

    result = node.run("install-k3s", install_params(node, "server"))

    assert result.returncode == 0, result.stderr
    assert f"staging k3s {VERSION} at" in result.stderr and f"beside the installed {installed}" in result.stderr
    assert len(node.calls("curl")) == 1


# --- start-server: rejoin instead of a second cluster-init -----------------------------


def start_server(node: Node, stdin: str = SERVER_CONFIG, **extra: str) -> subprocess.CompletedProcess[str]:
    node.server_is_healthy()
    return node.run("start-server", server_params(node, **extra), stdin=stdin)


def pings(node: Node) -> list[str]:
    return [c.split()[-1] for c in node.calls("curl") if c.endswith("/ping")]


def test_rebuilt_first_server_joins_a_peer_that_answers(node: Node) -> None:
    node.peer_of_this_cluster("10.0.0.3")  # 10.0.0.2 refuses

    result = start_server(node, K3S_HA_PEERS="10.0.0.2 10.0.0.3", K3S_HA_CLUSTER_INIT="never", K3S_HA_CA_HASH=CA_HASH)

    assert result.returncode == 0, result.stderr
    config = node.config_dir / "config.yaml"
    text = config.read_text()
    assert "cluster-init" not in text
    # The join carries the secure token form, which K3s checks against the peer's CA itself.
    assert text == SERVER_CONFIG.replace("cluster-init: true\n", "server: https://10.0.0.3:6443\n").replace(
        f"token: {SECRET}\n", f"token: K10{CA_HASH}::server:{SECRET}\n"
    )
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert sorted(p.name for p in node.config_dir.iterdir()) == ["config.yaml"]
    assert (
        "this cluster already answers at 10.0.0.3 (its CA checked): joining it instead of starting a second cluster (k3s-ansible#269)"
        in result.stderr
    )
    # Probe 10.0.0.2, probe 10.0.0.3, then the join's own wait for its server.
    assert pings(node) == [
        "https://10.0.0.2:6443/ping",
        "https://10.0.0.3:6443/ping",
        "https://10.0.0.3:6443/ping",
    ]
    assert "restart k3s" in node.calls("systemctl")
    assert result.stdout == "k3s-server-1\n"
    assert_secret_hidden(node, result)


def test_the_init_step_starts_the_cluster_when_no_peer_answers(node: Node) -> None:
    node.set("ping.10.0.0.3", "404 page not found")  # something, but not k3s

    result = start_server(node, K3S_HA_PEERS="10.0.0.2 10.0.0.3", K3S_HA_INIT="1")

    assert result.returncode == 0, result.stderr
    assert (node.config_dir / "config.yaml").read_text() == SERVER_CONFIG
    assert "answered '404 page not found' instead of pong" in result.stderr
    assert "no other server answers: starting a new cluster (cluster-init)" in result.stderr
    assert pings(node) == ["https://10.0.0.2:6443/ping", "https://10.0.0.3:6443/ping"]
    assert "restart k3s" in node.calls("systemctl")
    # The cluster's identity: the hash of the CA K3s made, and that this step made the cluster.
    assert result.stdout == f"{CA_HASH} created\n"
    assert_secret_hidden(node, result)


def test_the_init_step_refuses_when_a_server_answers_at_a_peer(node: Node) -> None:
    """Issue 18.2: the init step knows no CA yet, so a K3s server answering at a peer (this
    cluster, or an impostor) gets neither the token nor a second cluster next to it."""
    node.peer_of_this_cluster("10.0.0.3")

    result = start_server(node, K3S_HA_PEERS="10.0.0.2 10.0.0.3", K3S_HA_INIT="1")

    assert result.returncode == 1
    assert "a K3s server already answers at 10.0.0.3" in last_error(result)
    assert "nor send the token to a server whose CA it has never seen" in last_error(result)
    # Left for a hand join with rejoin-server.sh (docs/day2.md), K3s not started.
    assert (node.config_dir / "config.yaml").read_text() == SERVER_CONFIG
    assert node.calls("systemctl") == []
    assert not any(c.endswith("/cacerts") for c in node.calls("curl"))
    assert result.stdout == ""


def test_the_init_step_on_a_server_with_cluster_data_only_reports_its_ca(node: Node) -> None:
    """A cluster made before the init step existed: the step learns its CA and changes nothing."""
    make_etcd_data(node)
    node.peer_of_this_cluster("10.0.0.3")

    result = start_server(node, K3S_HA_PEERS="10.0.0.3", K3S_HA_INIT="1")

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{CA_HASH} existing\n"
    assert not (node.config_dir / "config.yaml").exists()
    assert node.calls("systemctl") == [] and node.calls("curl") == []
    assert_secret_hidden(node, result)


def test_after_the_init_step_refused_a_hand_join_checks_the_ca_and_joins(node: Node) -> None:
    """docs/day2.md, 'A first server that cannot start': the config the init step left, then
    rejoin-server.sh with the peer and its CA hash, as a person runs it."""
    node.peer_of_this_cluster("10.0.0.3")
    assert start_server(node, K3S_HA_PEERS="10.0.0.3", K3S_HA_INIT="1").returncode == 1

    result = node.run("rejoin-server", server_params(node, K3S_HA_PEERS="10.0.0.3", K3S_HA_CA_HASH=CA_HASH))

    assert result.returncode == 0, result.stderr
    assert (node.config_dir / "config.yaml").read_text() == SERVER_CONFIG.replace(
        "cluster-init: true\n", "server: https://10.0.0.3:6443\n"
    ).replace(f"token: {SECRET}\n", f"token: K10{CA_HASH}::server:{SECRET}\n")
    assert "start k3s" in node.calls("systemctl")
    assert_secret_hidden(node, result)


def test_a_rebuilt_first_server_does_not_join_a_peer_with_another_ca(node: Node) -> None:
    """Issue 18.2: whoever answers /ping at a peer address but presents another CA (another
    cluster, or someone on the path) is not sent the token; the step fails as with no peer."""
    node.set("ping.10.0.0.3", "pong")
    (node.state / "cacerts.10.0.0.3").write_text(CLUSTER_CA.replace("stand-in", "another"))

    result = start_server(node, K3S_HA_PEERS="10.0.0.3", K3S_HA_CLUSTER_INIT="never", K3S_HA_CA_HASH=CA_HASH)

    assert result.returncode == 1
    assert "peer 10.0.0.3 presents another cluster CA" in result.stderr
    assert "refusing to start a new cluster (cluster-init)" in last_error(result)
    assert not (node.config_dir / "config.yaml").exists()
    assert node.calls("systemctl") == []
    assert_secret_hidden(node, result)


@pytest.mark.parametrize("peers", ["10.0.0.2 10.0.0.3", ""])
def test_first_server_never_initialises_after_the_first_up(node: Node, peers: str) -> None:
    """issue 10.3: Pulumi's update text (every run after the first) says never: a fresh disk
    with no peer to join fails, and nothing is written or started."""
    node.set("ping.10.0.0.3", "404 page not found")

    result = start_server(node, K3S_HA_PEERS=peers, K3S_HA_CLUSTER_INIT="never", K3S_HA_CA_HASH=CA_HASH)

    assert result.returncode == 1
    assert "refusing to start a new cluster (cluster-init)" in result.stderr
    assert "starting a new cluster" not in result.stderr
    assert not (node.config_dir / "config.yaml").exists()
    assert not any("restart" in c or "start k3s" in c for c in node.calls("systemctl"))
    assert result.stdout == ""
    assert_secret_hidden(node, result)


def test_first_server_in_never_mode_still_joins_a_peer(node: Node) -> None:
    node.peer_of_this_cluster("10.0.0.3")

    result = start_server(node, K3S_HA_PEERS="10.0.0.2 10.0.0.3", K3S_HA_CLUSTER_INIT="never", K3S_HA_CA_HASH=CA_HASH)

    assert result.returncode == 0, result.stderr
    assert "server: https://10.0.0.3:6443\n" in (node.config_dir / "config.yaml").read_text()


def test_first_server_with_etcd_data_keeps_cluster_init_and_probes_nobody(node: Node) -> None:
    make_etcd_data(node)
    node.set("ping.10.0.0.3", "pong")

    result = start_server(node, K3S_HA_PEERS="10.0.0.3")

    assert result.returncode == 0, result.stderr
    assert (node.config_dir / "config.yaml").read_text() == SERVER_CONFIG
    assert node.calls("curl") == []
    assert result.stdout == "k3s-server-1\n"


def test_first_server_without_peers_probes_nobody(node: Node) -> None:
    result = start_server(node, K3S_HA_PEERS="")

    assert result.returncode == 0, result.stderr
    assert (node.config_dir / "config.yaml").read_text() == SERVER_CONFIG
    assert node.calls("curl") == []


def test_first_server_finds_etcd_data_in_the_configs_data_dir(node: Node) -> None:
    data_dir = node.root / "custom-data"
    (data_dir / "server" / "db" / "etcd" / "member" / "wal").mkdir(parents=True)
    node.set("ping.10.0.0.3", "pong")
    config = with_lines(SERVER_CONFIG, f'data-dir: "{data_dir}"  # on the big disk')

    node.server_is_healthy()
    result = node.run("start-server", server_params(node, K3S_HA_PEERS="10.0.0.3", K3S_HA_DATA_DIR=""), stdin=config)

    assert result.returncode == 0, result.stderr
    assert (node.config_dir / "config.yaml").read_text() == config
    assert node.calls("curl") == []


def test_ipv6_peer_gets_brackets(node: Node) -> None:
    node.peer_of_this_cluster("[fd00::3]")

    result = start_server(node, K3S_HA_PEERS="fd00::3", K3S_HA_CLUSTER_INIT="never", K3S_HA_CA_HASH=CA_HASH)

    assert result.returncode == 0, result.stderr
    assert "server: https://[fd00::3]:6443\n" in (node.config_dir / "config.yaml").read_text()


def test_start_server_rejects_a_bad_peer_before_writing(node: Node) -> None:
    result = start_server(node, K3S_HA_PEERS="10.0.0.2 evil;rm", K3S_HA_CA_HASH=CA_HASH)

    assert result.returncode == 1
    assert "peer address 'evil;rm' is not a host name or IP address" in last_error(result)
    assert not (node.config_dir / "config.yaml").exists()
    assert node.calls("systemctl") == []
    assert result.stdout == ""


# --- start-server: a join waits for its server -----------------------------------------


def test_join_waits_for_ping_before_starting(node: Node) -> None:
    node.set("ping.k3s.example.internal", "!refused", "!refused", "pong")

    result = start_server(node, stdin=JOIN_CONFIG)

    assert result.returncode == 0, result.stderr
    assert pings(node) == ["https://k3s.example.internal:6443/ping"] * 3
    assert "waiting for https://k3s.example.internal:6443 to answer /ping: no answer (curl exit 7)" in result.stderr
    assert node.calls("systemctl")[:2] == ["enable k3s", "restart k3s"]
    assert (node.config_dir / "config.yaml").read_text() == JOIN_CONFIG
    assert result.stdout == "k3s-server-1\n"
    assert_secret_hidden(node, result)


def test_join_gives_up_within_the_ready_budget_without_starting(node: Node) -> None:
    started = time.monotonic()

    result = start_server(node, stdin=JOIN_CONFIG, K3S_READY_TIMEOUT="0", K3S_HA_POLL_SECONDS="0.2")

    assert (
        time.monotonic() - started < 15
    )  # unbounded, the wait would run on for minutes; the margin is for a loaded CI
    assert result.returncode == 1
    message = last_error(result)
    assert "timed out after 0s waiting for https://k3s.example.internal:6443 to answer /ping" in message
    assert "load balancer" in message
    assert node.calls("systemctl") == []
    assert result.stdout == ""
    assert_secret_hidden(node, result)


def test_member_with_etcd_data_restarts_without_waiting_for_ping(node: Node) -> None:
    make_etcd_data(node)

    result = start_server(node, stdin=JOIN_CONFIG)

    assert result.returncode == 0, result.stderr
    assert node.calls("curl") == []


# --- node names on stdout --------------------------------------------------------------


def test_start_server_prints_only_the_node_name(node: Node) -> None:
    node.set("hostname", "CP-0.Example")
    node.server_is_healthy(node="cp-0.example")
    node.set("chatty", "")  # what tools print must not reach stdout either

    result = node.run("start-server", server_params(node), stdin=SERVER_CONFIG)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "cp-0.example\n"
    assert "k3s-ha: " in result.stderr


def test_start_agent_prints_only_the_node_name(node: Node) -> None:
    agent_config = f"server: https://k3s.example.internal:6443\ntoken: {SECRET}\n{END}"
    node.set("chatty", "")
    node.agent_is_healthy("worker-7")

    result = node.run("start-agent", agent_params(node, K3S_HA_NODE_NAME="worker-7"), stdin=agent_config)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "worker-7\n"
    assert_secret_hidden(node, result)


# --- confirm-node ----------------------------------------------------------------------


def confirm(node: Node, **extra: str) -> subprocess.CompletedProcess[str]:
    params = {"K3S_HA_BIN_DIR": str(node.path_dir), "K3S_HA_NODE": "k3s-agent-1", "K3S_READY_TIMEOUT": "10"}
    return node.run("confirm-node", {**params, **extra})


def test_confirm_node_waits_until_ready(node: Node) -> None:
    node.set("node.k3s-agent-1.Ready", '!Error from server (NotFound): nodes "k3s-agent-1" not found', "False", "True")

    result = confirm(node)

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    queries = [c for c in node.calls("k3s") if c.startswith("kubectl get node k3s-agent-1 ")]
    assert len(queries) == 3
    assert "done waiting for node k3s-agent-1 to be Ready" in result.stderr


def test_confirm_node_times_out_clearly(node: Node) -> None:
    result = confirm(node, K3S_READY_TIMEOUT="0")

    assert result.returncode == 1
    message = last_error(result)
    assert message.startswith("k3s-ha: error: timed out after 0s waiting for node k3s-agent-1 to be Ready")
    assert 'Ready (last seen: error: Error from server (NotFound): nodes "k3s-agent-1" not found)' in message
    assert "journalctl -u k3s-agent" in message


@pytest.mark.parametrize("name", ["", "-o=yaml", "Upper"])
def test_confirm_node_rejects_a_bad_name(node: Node, name: str) -> None:
    result = confirm(node, K3S_HA_NODE=name)

    assert result.returncode == 1
    assert "K3S_HA_NODE" in last_error(result)
    assert node.calls("k3s") == []


# --- lib: never fail --------------------------------------------------------------------


def test_never_fail_turns_any_exit_into_success() -> None:
    result = run_lib("k3s_ha_never_fail\nfalse\necho unreachable")

    assert result.returncode == 0
    assert result.stdout == ""
    assert "warning: stopped early (exit 1)" in result.stderr


# --- restore-snapshot / rejoin-server --------------------------------------------------


def by_hand(node: Node, name: str, params: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`cat lib/*.sh NAME.sh | ssh host sudo env PARAMS bash -s`, as docs/restore.md has it."""
    parts = sorted((SCRIPT_DIR / "lib").glob("*.sh"))
    script = "".join(p.read_text() for p in parts) + (SCRIPT_DIR / f"{name}.sh").read_text()
    env = {
        "PATH": f"{node.path_dir}:{os.environ['PATH']}",
        "STANDIN_STATE": str(node.state),
        "TMPDIR": str(node.tmp_dir),
        "LC_ALL": "C",
        "K3S_HA_CONFIG_DIR": str(node.config_dir),
        "K3S_HA_DATA_DIR": str(node.data_dir),
        "K3S_HA_BIN_DIR": str(node.path_dir),
        "K3S_HA_POLL_SECONDS": "0",
        "K3S_READY_TIMEOUT": "10",
        **params,
    }
    return subprocess.run(["bash", "-s"], input=script, capture_output=True, text=True, env=env, timeout=30)


def snapshot(node: Node, name: str = "etcd-snapshot-k3s-server-1-1767225600") -> Path:
    snapshots = node.data_dir / "server" / "db" / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    path = snapshots / name
    path.write_text("snapshot\n")
    return path


def restore(node: Node, **params: str) -> subprocess.CompletedProcess[str]:
    return node.run("restore-snapshot", server_params(node, **params))


def test_restore_snapshot_by_name(node: Node) -> None:
    write_config(node, SERVER_CONFIG)
    path = snapshot(node)
    node.set("active.k3s", "active")
    node.server_is_healthy()

    result = restore(node, K3S_HA_SNAPSHOT=path.name)

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    # The k3s stand-in refuses --cluster-reset while the unit is active: stop came first.
    assert node.calls("systemctl") == ["stop k3s", "start k3s"]
    k3s = node.calls("k3s")
    assert (
        k3s[0] == f"server --cluster-reset --cluster-reset-restore-path={path} --config {node.config_dir}/config.yaml"
    )
    assert any("EtcdIsVoter" in c for c in k3s[1:])
    assert "Managed etcd cluster membership has been reset" in result.stderr  # k3s's output, on stderr
    assert "now run rejoin-server.sh on each other server" in result.stderr
    assert_secret_hidden(node, result)


def test_restore_snapshot_by_path_as_a_person_runs_it(node: Node) -> None:
    write_config(node, JOIN_CONFIG + "etcd-s3: true\n")
    path = node.root / "backup" / "etcd-snapshot-k3s-server-1-1767225600.zip"
    path.parent.mkdir()
    path.write_text("snapshot\n")
    node.set("active.k3s", "active")
    node.server_is_healthy()

    result = by_hand(node, "restore-snapshot", {"K3S_HA_SNAPSHOT": str(path)})

    assert result.returncode == 0, result.stderr
    config = node.config_dir / "config.yaml"
    assert (
        node.calls("k3s")[0]
        == f"server --cluster-reset --cluster-reset-restore-path={path} --config {config} --etcd-s3=false"
    )
    assert node.calls("systemctl") == ["stop k3s", "start k3s"]
    assert_secret_hidden(node, result)


@pytest.mark.parametrize(
    ("config", "snapshot_name", "expected"),
    [
        (SERVER_CONFIG, "missing-snapshot", "snapshot 'missing-snapshot' not found"),
        (None, None, "config.yaml does not exist"),
        (
            "cluster-init: true\n",
            None,
            "has no token: line; restoring needs the token the cluster had when the snapshot was taken",
        ),
        ("token:\ncluster-init: true\n", None, "has no token: line"),
    ],
    ids=["no-snapshot", "no-config", "no-token", "empty-token"],
)
def test_restore_snapshot_refuses(node: Node, config: str | None, snapshot_name: str | None, expected: str) -> None:
    if config is not None:
        write_config(node, config)
    path = snapshot(node)

    result = restore(node, K3S_HA_SNAPSHOT=snapshot_name or path.name)

    assert result.returncode == 1
    assert expected in last_error(result)
    assert node.calls("systemctl") == []
    assert node.calls("k3s") == []


def test_restore_snapshot_refuses_while_another_server_runs(node: Node) -> None:
    write_config(node, SERVER_CONFIG)
    path = snapshot(node)
    node.set("ping.10.0.0.3", "pong")

    result = restore(node, K3S_HA_SNAPSHOT=path.name, K3S_HA_PEERS="10.0.0.2 10.0.0.3")

    assert result.returncode == 1
    assert "k3s still answers at 10.0.0.3: stop k3s on every other server first" in last_error(result)
    assert node.calls("systemctl") == []


def test_restore_snapshot_stops_when_the_reset_fails(node: Node) -> None:
    write_config(node, SERVER_CONFIG)
    path = snapshot(node)
    node.set("cluster_reset", '!level=fatal msg="bootstrap data decryption failed: wrong token?"')

    result = restore(node, K3S_HA_SNAPSHOT=path.name)

    assert result.returncode == 1
    assert "k3s server --cluster-reset failed (exit 1, output above); k3s stays stopped here" in last_error(result)
    assert "wrong token?" in result.stderr
    assert node.calls("systemctl") == ["stop k3s"]
    assert_secret_hidden(node, result)


def test_restore_snapshot_bounds_a_hanging_reset(node: Node) -> None:
    write_config(node, SERVER_CONFIG)
    path = snapshot(node)
    node.set("cluster_reset_hangs", "")
    started = time.monotonic()

    result = restore(node, K3S_HA_SNAPSHOT=path.name, K3S_HA_RESET_TIMEOUT="1")

    assert time.monotonic() - started < 15  # the hang it bounds is 60 s; the margin is for a loaded CI
    assert result.returncode == 1
    assert "did not finish within 1s" in last_error(result)
    assert node.calls("systemctl") == ["stop k3s"]


def test_restore_snapshot_times_out_when_the_server_never_gets_ready(node: Node) -> None:
    write_config(node, SERVER_CONFIG)
    path = snapshot(node)
    node.set("readyz", "ok")
    node.set("node.k3s-server-1.Ready", "False")

    result = restore(node, K3S_HA_SNAPSHOT=path.name, K3S_READY_TIMEOUT="0")

    assert result.returncode == 1
    assert "timed out after 0s waiting for k3s server k3s-server-1 to be ready" in last_error(result)


def rejoin_setup(node: Node, config: str) -> Path:
    write_config(node, config)
    db = make_etcd_data(node)
    node.set("active.k3s", "active")
    node.server_is_healthy()
    return db


def moved_aside(node: Node) -> list[Path]:
    return sorted((node.data_dir / "server").glob("db.before-restore-*"))


def test_rejoin_server_moves_db_aside_and_rejoins(node: Node) -> None:
    db = rejoin_setup(node, JOIN_CONFIG)
    node.set("ping.k3s.example.internal", "pong")

    result = by_hand(node, "rejoin-server", {})

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert not db.exists()
    (aside,) = moved_aside(node)
    assert (
        aside / "etcd" / "member" / "wal" / "0000000000000000-0000000000000000.wal"
    ).read_text() == "etcd data\n"  # kept, never deleted
    assert node.calls("systemctl") == ["stop k3s", "start k3s"]
    assert pings(node) == ["https://k3s.example.internal:6443/ping"]
    assert any("EtcdIsVoter" in c for c in node.calls("k3s"))
    assert (node.config_dir / "config.yaml").read_text() == JOIN_CONFIG
    assert "has rejoined the restored cluster" in result.stderr
    assert_secret_hidden(node, result)


def test_rejoin_first_server_rewrites_cluster_init_to_join_a_peer(node: Node) -> None:
    rejoin_setup(node, SERVER_CONFIG)
    node.peer_of_this_cluster("10.0.0.2")

    result = node.run("rejoin-server", server_params(node, K3S_HA_PEERS="10.0.0.2"))

    assert result.returncode == 0, result.stderr
    config = node.config_dir / "config.yaml"
    # The CA hash comes from this server's own server/token: the restored cluster keeps its CA.
    assert config.read_text() == SERVER_CONFIG.replace(
        "cluster-init: true\n", "server: https://10.0.0.2:6443\n"
    ).replace(f"token: {SECRET}\n", f"token: K10{CA_HASH}::server:{SECRET}\n")
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert len(moved_aside(node)) == 1
    assert_secret_hidden(node, result)


@pytest.mark.parametrize("peers", ["", "10.0.0.2"])
def test_rejoin_first_server_refuses_without_an_answering_peer(node: Node, peers: str) -> None:
    db = rejoin_setup(node, SERVER_CONFIG)

    result = node.run("rejoin-server", server_params(node, K3S_HA_PEERS=peers))

    assert result.returncode == 1
    message = last_error(result)
    assert "would start a new, empty cluster" in message or "no server in K3S_HA_PEERS (10.0.0.2) answers" in message
    assert "set K3S_HA_PEERS to the restored server's address" in message
    assert db.exists() and moved_aside(node) == []
    assert node.calls("systemctl") == []
    assert (node.config_dir / "config.yaml").read_text() == SERVER_CONFIG


def test_rejoin_server_touches_nothing_until_the_restored_server_answers(node: Node) -> None:
    db = rejoin_setup(node, JOIN_CONFIG)

    result = node.run("rejoin-server", server_params(node, K3S_READY_TIMEOUT="0"))

    assert result.returncode == 1
    assert "timed out after 0s waiting for https://k3s.example.internal:6443 to answer /ping" in last_error(result)
    assert db.exists() and moved_aside(node) == []
    assert node.calls("systemctl") == []


def test_rejoin_server_refuses_without_config(node: Node) -> None:
    result = node.run("rejoin-server", server_params(node))

    assert result.returncode == 1
    assert "config.yaml does not exist" in last_error(result)
    assert node.calls("systemctl") == []


# --- issue 17.1: the minimum source release of a minor that needs one ----------------------

NEEDS = "v1.33.7+k3s3"  # versions.py UPGRADE_PREREQUISITES, target v1.34


@pytest.mark.parametrize(
    ("cluster", "target", "allowed"),
    [
        ("v1.33.6+k3s1 v1.33.6+k3s1", "v1.34.3+k3s1", False),  # etcd 3.5.25 -> 3.6: refused
        ("v1.33.7+k3s3 v1.33.7+k3s1", "v1.34.3+k3s1", False),  # the LOWEST node counts
        ("v1.33.7+k3s3 v1.33.9+k3s1", "v1.34.3+k3s1", True),
        ("v1.33.6+k3s1 v1.33.6+k3s1", "v1.33.7+k3s3", True),  # a patch upgrade to the minimum
        ("v1.34.1+k3s1 v1.34.1+k3s1", "v1.34.3+k3s1", True),  # patch upgrades within v1.34
    ],
    ids=["below", "one node below", "at or above", "patch to the minimum", "patch within"],
)
def test_a_minor_that_needs_a_minimum_source_release_is_refused_below_it(
    node: Node, cluster: str, target: str, allowed: bool
) -> None:
    node.set("version", cluster.split()[0])
    node.set("kubelet_versions", cluster)
    result = guard(node, target, K3S_HA_UPGRADE_FROM=NEEDS)
    if allowed:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1
        lowest = min(cluster.split(), key=lambda v: (v.split("+")[0], v))
        message = last_error(result)
        assert f"refusing to upgrade k3s from {lowest} to {target}: every node must run {NEEDS}" in message
        assert f"set k3sVersion to {NEEDS}, run pulumi up, then set it to {target}" in message


def test_the_install_step_refuses_below_the_minimum_before_downloading(node: Node) -> None:
    node.set("version", "v1.33.6+k3s1")
    result = node.run(
        "install-k3s",
        {"K3S_HA_BIN_DIR": str(node.path_dir), "K3S_VERSION": "v1.34.3+k3s1", "K3S_ROLE": "agent",
         "K3S_HA_UPGRADE_FROM": NEEDS},
    )  # fmt: skip
    assert result.returncode == 1
    assert f"every node must run {NEEDS}" in last_error(result)
    assert node.calls("curl") == []


def test_the_program_passes_the_minimum_only_for_a_minor_that_needs_one() -> None:
    from k3s_ha.bootstrap.commands import parse_command
    from support import engine
    from support.helpers import SECRET_KEYS, config

    for version, wanted in (("v1.34.3+k3s1", NEEDS), ("v1.36.4+k3s1", None), ("v1.33.7+k3s3", None)):
        run = engine.run(engine.main_program, config(k3sVersion=version), SECRET_KEYS)
        for name in ("dev-version-guard", "dev-server-1-install"):
            assert parse_command(run.named(name).inputs["create"])[1].get("K3S_HA_UPGRADE_FROM") == wanted, (
                version,
                name,
            )


def test_a_join_url_that_is_not_an_https_address_is_refused_before_anything_is_written(node: Node) -> None:
    """K3S_HA_JOIN_URL, which Python passes (issue 16), is checked like the config's own."""
    result = start_server(node, stdin=JOIN_CONFIG, K3S_HA_JOIN_URL="http://k3s.example.internal:6443")
    assert result.returncode == 1
    assert "K3S_HA_JOIN_URL is 'http://k3s.example.internal:6443', expected https://ADDRESS:6443" in result.stderr
    assert not (node.config_dir / "config.yaml").exists()
