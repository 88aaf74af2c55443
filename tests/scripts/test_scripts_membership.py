"""reconcile-members.sh and evict-node.sh against stand-ins (tests/support/standins/cluster/: a k3s
kubectl over a small cluster in a JSON file, ssh to machines in the same file, ssh-agent and
ssh-add), each marked "stand-in, not the real ...". What they model: deleting a Node drops a
server's etcd member (k3s member_controller.go onRemove); a stopped unit makes the Node
NotReady; an unreachable machine times out; a machine that hangs never answers; ssh-agent
leaves a detached agent running (openssh ssh-agent.c, setsid) until `ssh-agent -k`."""

from __future__ import annotations

import json
import resource
import subprocess
import time
from pathlib import Path

import pytest
from k3s_ha.bootstrap.commands import remote_command
from k3s_ha.bootstrap.contracts import EvictNode, RemoveMembers
from k3s_ha.bootstrap.steps.membership import NODES_END
from support.fake_node import STANDINS, Node, gone_soon
from support.helpers import PRIVATE_KEY

CLUSTER_STANDINS = STANDINS / "cluster"
LABEL = "k3s-ha.io/cluster"


def _setup(node: Node, nodes: dict, machines: dict, secrets: list[str] | None = None, **extra) -> Path:
    """`extra`: further cluster.json keys of the k3s stand-in (api_down, volumes, pv_list_fails)."""
    bin_dir = node.root / "cluster-bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "k3s").symlink_to(CLUSTER_STANDINS / "k3s")
    for tool in ("ssh", "ssh-agent", "ssh-add"):
        (node.path_dir / tool).symlink_to(CLUSTER_STANDINS / tool)
    cluster = {
        "nodes": nodes,
        "machines": machines,
        "secrets": secrets if secrets is not None else [f"{n}.node-password.k3s" for n in nodes],
        **extra,
    }
    (node.state / "cluster.json").write_text(json.dumps(cluster))
    return bin_dir


def _cluster(node: Node) -> dict:
    return json.loads((node.state / "cluster.json").read_text())


def _events(node: Node) -> list[str]:
    return node.calls("events")


def _server(ip: str, ready: str = "True", label: str | None = "dev") -> dict:
    labels = {LABEL: label} if label else {}
    return {"etcd": True, "ready": ready, "ip": ip, "labels": labels}


def _agent(ip: str, ready: str = "True", label: str | None = "dev") -> dict:
    return {"etcd": False, "ready": ready, "ip": ip, "labels": {LABEL: label} if label else {}}


def member_stdin(node: Node, wanted: str, host_keys: str = "", agents: dict[str, str] | None = None) -> str:
    """record-members' stdin as membership.member_lines writes it: "ROLE NAME ADDRESS [TYPE
    BASE64] [@TIME]" per wanted node (role and address from the stand-in cluster, keys from
    "NAME:TYPE:BASE64 ..."), or "agent NAME <agents[NAME]>" for the names in `agents`, then
    the end line."""
    keys = dict(entry.split(":", 1) for entry in host_keys.split())
    nodes = _cluster(node)["nodes"]
    agents = agents or {}
    lines = []
    for name in [*(n for n in wanted.split() if n not in agents), *agents]:
        found = nodes.get(name, {})
        role = "server" if found.get("etcd") else "agent"
        rest = agents.get(name) or " ".join([found.get("ip") or "10.9.9.9", *keys.get(name, "").split(":")])
        lines.append(f"{role} {name} {rest}".strip())
    return "".join(f"{line}\n" for line in lines) + NODES_END + "\n"


def reconcile(node: Node, bin_dir: Path, wanted: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """What the program runs on the first server: record-members with the wanted nodes, then
    remove-members with what it printed and the SSH key (membership.py). The result is the
    removal's (the record's when that failed), with both logs."""
    host_keys = extra.pop("K3S_HA_HOST_KEYS", "")
    stdin = extra.pop("stdin", None)
    wall = float(extra.pop("wall_seconds", 30))
    cluster = extra.pop("K3S_HA_CLUSTER", "dev")
    common = {"K3S_HA_BIN_DIR": str(bin_dir), "K3S_HA_CLUSTER": cluster}
    record = node.run(
        "record-members",
        common,
        stdin=stdin if stdin is not None else member_stdin(node, wanted, host_keys),
        wall_seconds=wall,
    )
    if record.returncode != 0:
        return record
    removal = node.run(
        "remove-members",
        {**common, "K3S_HA_SSH_USER": "ubuntu", **extra},
        stdin=record.stdout + NODES_END + "\n" + PRIVATE_KEY,
        wall_seconds=wall,
    )
    return subprocess.CompletedProcess(removal.args, removal.returncode, removal.stdout, record.stderr + removal.stderr)


def _record(node: Node) -> dict[str, list[str]]:
    """The member record kube-system/k3s-ha-members: NAME -> [STATE, ROLE, ADDRESS, KEY...]."""
    text = _cluster(node).get("configmaps", {}).get("k3s-ha-members", {}).get("nodes", "")
    return {w[1]: [w[0], *w[2:]] for w in (line.split() for line in text.splitlines())}


def _assert_key_hidden(node: Node, result: subprocess.CompletedProcess[str]) -> None:
    assert "stand-in-key-material" not in result.stdout + result.stderr
    for recorded in node.state.iterdir():
        if recorded.name != "cluster.json":
            assert "stand-in-key-material" not in recorded.read_text(), recorded.name


def _assert_nothing_left_running(node: Node) -> None:
    """The agent that held the key is stopped, and so is any ssh that hung."""
    for pid_file in ("agent.pid", "hung-ssh.pid"):
        if (node.state / pid_file).exists():
            assert gone_soon(int((node.state / pid_file).read_text())), pid_file


def test_three_to_one_removes_both_servers_one_at_a_time_stopping_first_while_quorum_allows(node: Node) -> None:
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "s1": _server("10.0.0.2"), "s2": _server("10.0.0.3")},
        {f"10.0.0.{i}": {"hostname": f"s{i - 1}", "unit_active": True} for i in (1, 2, 3)},
    )
    result = reconcile(node, bin_dir, "s0")

    assert result.returncode == 0, result.stderr
    cluster = _cluster(node)
    assert list(cluster["nodes"]) == ["s0"] and cluster["secrets"] == ["s0.node-password.k3s"]
    assert all(cluster["machines"][f"10.0.0.{i}"]["uninstalled"] for i in (2, 3))
    events = [e for e in _events(node) if e.startswith(("ssh ubuntu", "k3s kubectl delete node"))]
    s1 = [e for e in events if "10.0.0.2" in e or " node s1 " in e]
    s2 = [e for e in events if "10.0.0.3" in e or " node s2 " in e]
    # 3 members: s1 (or s2) may stop first, the other two keep quorum (#5404 order).
    first, second = (s1, s2) if events.index(s1[0]) < events.index(s2[0]) else (s2, s1)
    assert "systemctl disable" in first[0] and "systemctl stop" in first[1]
    assert first[2].startswith("k3s kubectl delete node") and "uninstall.sh" in first[3]
    # 2 members left: stopping the second would lose quorum, so its member goes while it
    # runs, with systemd already told not to restart it, and it stops right after.
    assert "systemctl disable" in second[0] and "Restart=no" in second[0]
    assert second[1].startswith("k3s kubectl delete node") and "systemctl stop" in second[2]
    # One node at a time: everything about the first is done before the second starts.
    assert events.index(first[-1]) < events.index(second[0])
    _assert_key_hidden(node, result)


def test_behind_a_balancer_a_leaving_server_is_fenced_off_before_it_is_drained(node: Node) -> None:
    """issue 10.9: the balancer takes it out (its health check fails) before it is drained,
    stopped and uninstalled; the cluster's nodes may still reach it meanwhile."""
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "s1": _server("10.0.0.2"), "s2": _server("10.0.0.3"), "a0": _agent("10.0.1.1")},
        {"10.0.0.3": {"unit_active": True}},
    )
    result = reconcile(node, bin_dir, "s0 s1 a0", K3S_HA_LB_GRACE_SECONDS="1")

    assert result.returncode == 0, result.stderr
    events = _events(node)
    fence = next(i for i, e in enumerate(events) if "iptables" in e)
    assert "10.0.0.3" in events[fence] and "--ctstate NEW -j REJECT" in events[fence]
    for ip in ("10.0.0.1", "10.0.0.2", "10.0.1.1", "127.0.0.0/8"):
        assert f"-s {ip} -j ACCEPT" in events[fence]
    drain = next(i for i, e in enumerate(events) if e.startswith("k3s kubectl drain s2"))
    later = [e for e in events[drain:] if "systemctl stop" in e or "delete node" in e or "uninstall" in e]
    assert fence < drain and len(later) == 3
    assert "waiting 1s for the load balancer" in result.stderr


def test_agents_leave_before_servers_and_wanted_nodes_are_recorded(node: Node) -> None:
    bin_dir = _setup(
        node,
        {
            "s0": _server("10.0.0.1"),
            "s1": _server("10.0.0.2"),
            "s2": _server("10.0.0.3"),
            "s3": _server("10.0.0.4"),
            "a0": _agent("10.0.1.1"),
            "new": _agent("10.0.1.2", label=None),
        },
        {"10.0.0.4": {"unit_active": True}, "10.0.1.1": {"unit_active": True}},
    )
    result = reconcile(node, bin_dir, "s0 s1 s2 new")

    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["new", "s0", "s1", "s2"]
    record = _record(node)
    assert record["new"] == ["member", "agent", "10.0.1.2"] and record["s0"] == ["member", "server", "10.0.0.1"]
    assert record["a0"][0] == record["s3"][0] == "removed"
    assert "labels" not in "".join(e for e in _events(node) if "patch" in e)  # nothing labels Nodes now
    deletes = [e for e in _events(node) if e.startswith("k3s kubectl delete node")]
    assert [d.split()[4] for d in deletes] == ["a0", "s3"]
    assert "k3s-agent-uninstall.sh" in "".join(e for e in _events(node) if "10.0.1.1" in e)


def test_a_node_without_the_label_is_never_removed(node: Node) -> None:
    bin_dir = _setup(node, {"s0": _server("10.0.0.1"), "byhand": _agent("10.0.1.9", label=None)}, {})
    result = reconcile(node, bin_dir, "s0")

    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["byhand", "s0"]
    assert "no node has left" in result.stderr


def test_a_dead_node_loses_its_node_and_secret_without_ssh_work(node: Node) -> None:
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "s1": _server("10.0.0.2"), "old": _server("10.0.0.9", ready="False")},
        {"10.0.0.9": {"unreachable": True}},
    )
    result = reconcile(node, bin_dir, "s0 s1")

    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0", "s1"]
    assert "old.node-password.k3s" not in _cluster(node)["secrets"]
    assert "taking it as gone" in result.stderr
    # One SSH attempt (the disable), which timed out; nothing else ran there.
    assert len([e for e in _events(node) if "10.0.0.9" in e]) == 1


def test_a_ready_node_that_ssh_cannot_reach_is_refused_and_kept(node: Node) -> None:
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "s1": _server("10.0.0.2"), "s2": _server("10.0.0.3")},
        {"10.0.0.3": {"unreachable": True}},
    )
    result = reconcile(node, bin_dir, "s0 s1")

    assert result.returncode == 1
    assert "s2 is Ready but SSH from this server to ubuntu@10.0.0.3 fails" in result.stderr
    assert "s2" in _cluster(node)["nodes"]
    assert not any(e.startswith("k3s kubectl delete node") for e in _events(node))


def test_the_key_arrives_on_stdin_only_and_is_required(node: Node) -> None:
    bin_dir = _setup(node, {"s0": _server("10.0.0.1"), "a9": _agent("10.0.1.9")}, {"10.0.1.9": {"unit_active": True}})
    params = {"K3S_HA_BIN_DIR": str(bin_dir), "K3S_HA_CLUSTER": "dev", "K3S_HA_SSH_USER": "ubuntu"}
    result = node.run("remove-members", params, stdin=f"leaving a9 agent 10.0.1.9\n{NODES_END}\n")
    assert result.returncode == 1 and "the SSH private key must arrive on stdin" in result.stderr
    ok = reconcile(node, bin_dir, "s0")
    assert ok.returncode == 0, ok.stderr
    assert any(e.startswith("ssh-add -q - (a key of") for e in _events(node))
    assert "ssh-agent -k" in _events(node)
    _assert_key_hidden(node, ok)
    _assert_nothing_left_running(node)


def test_a_hung_reconcile_is_stopped_whole_and_leaves_nothing_running(node: Node) -> None:
    """issue 10.5: a dropped SSH session to a leaving node would hang the `up` for ever
    (pulumi-command has no time limit, real-behaviour.md); the step's bound stops it, the
    ssh with it, and the detached ssh-agent that holds the key."""
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "s1": _server("10.0.0.2"), "a0": _agent("10.0.1.1")},
        {"10.0.1.1": {"hangs": True}},
    )
    started = time.monotonic()
    result = reconcile(node, bin_dir, "s0 s1", K3S_HA_STEP_TIMEOUT="20")

    assert time.monotonic() - started < 50  # the hung ssh alone would take 60 s
    assert result.returncode == 1
    assert "the step did not finish within 20s" in result.stderr
    assert (node.state / "hung-ssh.pid").exists()  # it did hang in the ssh to a0
    assert "a0" in _cluster(node)["nodes"]  # stopped before its Node was deleted
    # (A bound of 20 s: with the CI's eight workers on two cores, the script once needed more
    # than 6 s to reach the ssh.) Had the stop been a SIGKILL (no exit handlers), the agent would still forget the key
    # when the bound is over: its lifetime is the bound plus run.sh's 10 s kill-after, and 5.
    assert "ssh-agent -s -t 35" in _events(node)
    _assert_nothing_left_running(node)
    _assert_key_hidden(node, result)
    _assert_no_temp_files_left(node)


@pytest.mark.parametrize(
    ("fields", "bound"),
    [
        ({}, 120 + 20 * (120 + 4 * 10 + 720)),
        ({"drain_timeout": 60, "lb_grace_seconds": 30}, 120 + 20 * (60 + 30 + 4 * 10 + 720)),
        ({"removals_per_run": 2}, 120 + 2 * (120 + 4 * 10 + 720)),
    ],
    ids=["default", "behind a balancer, shorter drain", "two removals a run"],
)
def test_the_removals_bound_covers_a_run_of_removals_whatever_the_cluster_size(fields: dict, bound: int) -> None:
    """The bound is the command's `timeout` (commands.py), fixed before the step starts: it
    covers `removals_per_run` removals, and not the cluster's size, so that adding a node does
    not change the command (and run the step)."""
    call = RemoveMembers(cluster="dev", ssh_user="ubuntu", **{"drain_timeout": 120, "lb_grace_seconds": 0, **fields})
    assert call.seconds() == bound
    assert remote_command(call.NAME, call.to_env(), call.seconds()).endswith(f"/run.sh remove-members {bound}")


def test_more_leaving_nodes_than_a_run_covers_fail_the_step_after_those_saying_to_run_up_again(node: Node) -> None:
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "a0": _agent("10.0.1.1"), "a1": _agent("10.0.1.2"), "a2": _agent("10.0.1.3")},
        {f"10.0.1.{i}": {"hostname": f"a{i - 1}", "unit_active": True} for i in (1, 2, 3)},
    )
    result = reconcile(node, bin_dir, "s0", K3S_HA_REMOVALS_PER_RUN="2")

    assert result.returncode == 1
    assert "removed 2 nodes, as many as this step's time bound covers; 1 more have left" in result.stderr
    assert "run pulumi up again to go on" in result.stderr
    assert len(_cluster(node)["nodes"]) == 2  # s0 and the one agent left for the next run
    result = reconcile(node, bin_dir, "s0", K3S_HA_REMOVALS_PER_RUN="2")
    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0"]


# --- evict-node.sh ------------------------------------------------------------------------


def evict(
    node: Node, bin_dir: Path, address: str, role: str = "agent", **extra: str
) -> subprocess.CompletedProcess[str]:
    params = {
        "K3S_HA_BIN_DIR": str(bin_dir),
        "K3S_HA_ADDRESS": address,
        "K3S_ROLE": role,
        "K3S_HA_CLUSTER": "dev",
        "K3S_HA_SSH_USER": "ubuntu",
        **extra,
    }
    return node.run("evict-node", params, stdin=PRIVATE_KEY)


@pytest.mark.parametrize(
    ("old_name", "old_ip", "ready"),
    [("worker-1", "10.0.1.1", "True"), ("worker-1", "10.0.1.50", "Unknown"), ("other-name", "10.0.1.1", "True")],
    ids=["same name and address", "same name, elsewhere, not Ready", "same address"],
)
def test_a_new_machine_gets_the_stale_node_and_its_password_removed_before_it_joins(
    node: Node, old_name: str, old_ip: str, ready: str
) -> None:
    """issue 10.8: K3s refuses a new machine under an old name until the old Node and its
    <name>.node-password.k3s secret are gone (real-behaviour.md, k3s-io/k3s#10408)."""
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), old_name: _agent(old_ip, ready=ready)},
        {"10.0.1.1": {"hostname": "Worker-1", "unit_active": False}},
    )
    result = evict(node, bin_dir, "10.0.1.1")

    assert result.returncode == 0, result.stderr
    cluster = _cluster(node)
    assert sorted(cluster["nodes"]) == ["s0"]
    assert cluster["secrets"] == ["s0.node-password.k3s"]
    _assert_key_hidden(node, result)


@pytest.mark.parametrize("role", ["server", "agent"])
def test_a_ready_node_elsewhere_under_the_new_machines_name_is_a_collision_not_a_stale_node(
    node: Node, role: str
) -> None:
    """Issue 17.4: the new machine at 10.0.1.1 calls itself worker-1, and a Ready worker-1 lives
    at 10.0.1.50. For a server that is a live etcd member: deleting it would take it out."""
    live = _server("10.0.1.50") if role == "server" else _agent("10.0.1.50")
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "worker-1": live},
        {"10.0.1.1": {"hostname": "worker-1", "unit_active": False}},
    )
    result = evict(node, bin_dir, "10.0.1.1", role=role)
    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0", "worker-1"]
    assert "node worker-1 is Ready at 10.0.1.50, another address than 10.0.1.1" in result.stderr


@pytest.mark.parametrize("answer", ["", "offline", "unknown"], ids=["nothing", "offline", "unknown"])
def test_an_address_whose_systemctl_cannot_say_changes_nothing(node: Node, answer: str) -> None:
    """Found in the lab: a probe whose systemctl printed nothing read as "K3s does not run
    there", and the evicts re-run on a new first server deleted live servers' Nodes (and so
    their etcd members). Only inactive or failed may evict."""
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "s1": _server("10.0.0.2")},
        {"10.0.0.2": {"hostname": "s1", "unit_active": True, "unit_state": answer}},
    )
    result = evict(node, bin_dir, "10.0.0.2", role="server")

    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0", "s1"]
    assert "could not tell whether k3s runs on 10.0.0.2" in result.stderr and "nothing evicted" in result.stderr


def test_a_login_banner_before_the_probe_is_not_taken_for_the_answer(node: Node) -> None:
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "worker-1": _agent("10.0.1.1")},
        {"10.0.1.1": {"hostname": "worker-1", "unit_active": False, "banner": "Welcome to Ubuntu\ninactive"}},
    )
    result = evict(node, bin_dir, "10.0.1.1")

    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0"], "the stale Node of the re-imaged host stays"


def test_the_same_machine_still_running_k3s_is_left_alone(node: Node) -> None:
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "worker-1": _agent("10.0.1.1")},
        {"10.0.1.1": {"hostname": "worker-1", "unit_active": True}},
    )
    result = evict(node, bin_dir, "10.0.1.1")

    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0", "worker-1"]
    assert "it is the same machine" in result.stderr


def test_evict_never_blocks_the_first_up(node: Node) -> None:
    bin_dir = _setup(node, {}, {})
    (node.state / "cluster.json").write_text(json.dumps({"nodes": {}, "api_down": True}))
    result = evict(node, bin_dir, "10.0.1.1", role="server")

    assert result.returncode == 0, result.stderr
    assert "no cluster API on this server yet" in result.stderr
    assert not any(e.startswith("ssh ") for e in _events(node))


def test_a_hung_evict_is_stopped_whole_leaves_nothing_running_and_lets_the_join_go_on(node: Node) -> None:
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "worker-1": _agent("10.0.1.1")},
        {"10.0.1.1": {"hangs": True}},
    )
    started = time.monotonic()
    result = node.run(
        "evict-node",
        {
            "K3S_HA_BIN_DIR": str(bin_dir),
            "K3S_HA_ADDRESS": "10.0.1.1",
            "K3S_ROLE": "agent",
            "K3S_HA_SSH_USER": "ubuntu",
            "K3S_HA_STEP_TIMEOUT": "20",
        },
        stdin=PRIVATE_KEY,
    )

    assert time.monotonic() - started < 50  # the hung ssh alone would take 60 s
    assert result.returncode == 0, result.stderr
    assert "may take up to 20s" in result.stderr  # the command's bound, stated first
    assert "stopped early (exit 143); reporting success anyway" in result.stderr
    assert (node.state / "hung-ssh.pid").exists()
    _assert_nothing_left_running(node)
    _assert_key_hidden(node, result)
    _assert_no_temp_files_left(node)


def test_evicts_bound_is_fixed_whatever_the_cluster_size(node: Node) -> None:
    bin_dir = _setup(node, {"s0": _server("10.0.0.1")}, {"10.0.1.1": {"hostname": "worker-1"}})
    result = node.run(
        "evict-node",
        {
            "K3S_HA_BIN_DIR": str(bin_dir),
            "K3S_HA_ADDRESS": "10.0.1.1",
            "K3S_ROLE": "agent",
            "K3S_HA_SSH_USER": "ubuntu",
            "K3S_HA_SSH_TIMEOUT": "5",
        },
        stdin=PRIVATE_KEY,
    )
    assert result.returncode == 0, result.stderr
    call = EvictNode(address="10.0.1.1", role="server", cluster="dev", host="s1", host_key="", ssh_user="ubuntu")
    # The SSH default (10 s), three dead servers: a constant, so adding servers re-runs nothing.
    assert call.seconds() == 10 + 450 + 3 * (10 + 240)


# --- pinned host keys (issue 12.4) --------------------------------------------------------
# The ssh stand-in checks host keys as OpenSSH does with StrictHostKeyChecking=yes: a key of
# the offered type that is not in the known_hosts files, or none of that type, fails the
# connection during key exchange with exit 255 and "Host key verification failed.", before
# the command is sent (openssh-portable sshconnect.c check_host_key, sshconnect2.c
# verify_host_key_callback). machine-commands.log holds only commands that reached a machine.

KEY_S2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPinnedKeyOfServerTwo"
KEY_A0 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPinnedKeyOfAgentZero"
IMPOSTOR = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAISomeoneElsesKey"
ANNOTATION = "k3s-ha.io/ssh-host-key"


def _pinned(entry: dict, key: str) -> dict:
    return {**entry, "annotations": {ANNOTATION: key}}


def _connections(node: Node) -> list[dict]:
    log = node.state / "ssh-connections.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _reached(node: Node, address: str) -> list[str]:
    log = node.state / "machine-commands.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if line.startswith(f"{address} ")]


def _assert_pinned(connection: dict, address: str, key: str) -> None:
    """Strict checking against a known_hosts file of this run (0600) holding the node's key,
    and only it, for its address, and nothing from the machine's global file; the agent never
    forwarded."""
    options = connection["options"]
    assert options["StrictHostKeyChecking"] == "yes"
    assert options["GlobalKnownHostsFile"] == "/dev/null"
    assert options["ForwardAgent"] == "no"
    assert options["UserKnownHostsFile"] != "/dev/null"
    assert connection["known_hosts_mode"] == 0o600
    assert [line for line in connection["known_hosts"] if line[0] == address] == [[address, *key.split()]]


def _assert_no_temp_files_left(node: Node) -> None:
    assert list(node.tmp_dir.iterdir()) == [], "the known_hosts file and its directory are removed at exit"


def test_the_record_keeps_each_wanted_nodes_key_and_forgets_a_key_no_longer_pinned(
    node: Node,
) -> None:
    """A node that leaves is no longer among the inputs: its key must be in the record by then,
    and not on its Node, which its own kubelet may write."""
    bin_dir = _setup(
        node,
        {"s0": _pinned(_server("10.0.0.1"), "ssh-ed25519 AAAAold"), "a0": _agent("10.0.1.1", label=None)},
        {},
    )
    a0_type, a0_blob = KEY_A0.split()
    result = reconcile(node, bin_dir, "s0 a0", K3S_HA_HOST_KEYS=f"a0:{a0_type}:{a0_blob}")

    assert result.returncode == 0, result.stderr
    record = _record(node)
    assert record["a0"] == ["member", "agent", "10.0.1.1", *KEY_A0.split()]
    assert record["s0"] == ["member", "server", "10.0.0.1"]  # the old annotation is not taken


def test_a_leaving_node_is_reached_only_with_its_recorded_key(node: Node) -> None:
    bin_dir = _setup(
        node,
        {
            "s0": _server("10.0.0.1"),
            "s1": _server("10.0.0.2"),
            "s2": _pinned(_server("10.0.0.3"), KEY_S2),
            "a0": _pinned(_agent("10.0.1.1"), KEY_A0),
        },
        {"10.0.0.3": {"unit_active": True, "host_key": KEY_S2}, "10.0.1.1": {"unit_active": True, "host_key": KEY_A0}},
    )
    result = reconcile(node, bin_dir, "s0 s1")

    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0", "s1"]
    machines = _cluster(node)["machines"]
    assert machines["10.0.0.3"]["uninstalled"] and machines["10.0.1.1"]["uninstalled"]
    connections = _connections(node)
    assert {c["address"] for c in connections} == {"10.0.0.3", "10.0.1.1"}
    for connection in connections:
        _assert_pinned(connection, connection["address"], KEY_S2 if connection["address"] == "10.0.0.3" else KEY_A0)
    assert "warning" not in result.stderr
    _assert_no_temp_files_left(node)


def test_a_notready_node_whose_address_answers_with_another_key_is_sent_nothing_and_taken_as_gone(
    node: Node,
) -> None:
    """Its kubelet no longer reports and its address is someone else's now (an address reused
    by another machine): whoever answers there gets no removal commands; only its Node and
    node password are deleted, as for a node that does not answer at all."""
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "s1": _server("10.0.0.2"), "old": _pinned(_agent("10.0.1.9", "False"), KEY_A0)},
        {"10.0.1.9": {"unit_active": True, "host_key": IMPOSTOR}},
    )
    result = reconcile(node, bin_dir, "s0 s1")

    assert result.returncode == 0, result.stderr
    assert "Host key verification failed." in result.stderr
    assert "old is NotReady and answers SSH at 10.0.1.9 with another host key than its pinned one" in result.stderr
    assert _reached(node, "10.0.1.9") == []
    machine = _cluster(node)["machines"]["10.0.1.9"]
    assert machine["unit_active"] and not machine.get("disabled") and not machine.get("uninstalled")
    assert "old" not in _cluster(node)["nodes"]
    assert "old.node-password.k3s" not in _cluster(node)["secrets"]


def test_a_ready_node_whose_address_answers_with_another_key_is_refused_and_kept(node: Node) -> None:
    """The node still reports Ready from somewhere this server cannot tell to stop: removing
    it would bring it back (k3s-io/k3s#5404), as for a Ready node SSH cannot reach."""
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "s1": _server("10.0.0.2"), "s2": _pinned(_server("10.0.0.3"), KEY_S2)},
        {"10.0.0.3": {"unit_active": True, "host_key": IMPOSTOR}},
    )
    result = reconcile(node, bin_dir, "s0 s1")

    assert result.returncode == 1
    assert "s2 is Ready but SSH from this server to ubuntu@10.0.0.3 fails" in result.stderr
    assert "with another host key than its pinned one" in result.stderr
    assert _reached(node, "10.0.0.3") == []
    assert "s2" in _cluster(node)["nodes"]
    assert not any(e.startswith(("k3s kubectl delete node", "k3s kubectl drain")) for e in _events(node))
    _assert_no_temp_files_left(node)
    _assert_nothing_left_running(node)


def test_a_leaving_node_without_a_recorded_key_is_reached_unpinned_with_a_warning_naming_it(node: Node) -> None:
    """Nodes that left before any reconcile recorded keys, or never had one (README, Accepted
    risks: unpinned hosts): today's behaviour, with a warning."""
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "a0": _agent("10.0.1.1")},
        {"10.0.1.1": {"unit_active": True, "host_key": IMPOSTOR}},
    )
    result = reconcile(node, bin_dir, "s0")

    assert result.returncode == 0, result.stderr
    assert "warning: a0 has no pinned SSH host key" in result.stderr
    assert _cluster(node)["machines"]["10.0.1.1"]["uninstalled"]
    for connection in _connections(node):
        assert connection["options"]["StrictHostKeyChecking"] == "no"
        assert connection["options"]["UserKnownHostsFile"] == "/dev/null"
        assert connection["options"]["ForwardAgent"] == "no"


@pytest.mark.parametrize(
    "recorded",
    [
        "ssh-dss AAAAB3NzaC1kc3M",
        # An annotation may hold newlines: one that forged a node list row (a leaving server of
        # this cluster at an address of its choosing) or a second known_hosts line must not work.
        "ssh-ed25519 AAAA\nvictim|true|False|10.0.0.2|dev",
    ],
    ids=["not a key type OpenSSH takes", "several lines"],
)
def test_a_recorded_value_that_is_not_one_host_key_sends_nothing(node: Node, recorded: str) -> None:
    bin_dir = _setup(
        node,
        {
            "s0": _server("10.0.0.1"),
            "s1": _server("10.0.0.2", label=None),
            "a0": _pinned(_agent("10.0.1.1", "False"), recorded),
        },
        {"10.0.1.1": {"unit_active": True}, "10.0.0.2": {"unit_active": True}},
    )
    result = reconcile(node, bin_dir, "s0")

    assert result.returncode == 0, result.stderr
    assert "a0's k3s-ha.io/ssh-host-key annotation is not an SSH host key: nothing is sent to it" in result.stderr
    assert _connections(node) == []
    assert sorted(_cluster(node)["nodes"]) == ["s0", "s1"]  # a0 taken as gone, nothing else touched


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("server s0 10.0.0.1 ssh-ed25519 AAAAC3Nz extra", "is not 'server|agent NAME ADDRESS [TYPE BASE64]'"),
        ("server s0 10.0.0.1 ssh-dss AAAAB3Nz", "is not 'server|agent NAME ADDRESS [TYPE BASE64]'"),
        ('server s0 10.0.0.1 ssh-ed25519 AAAA"}', "is not 'server|agent NAME ADDRESS [TYPE BASE64]'"),
        ("server s0 10.0.0.1 @1780272000", "is not 'server|agent NAME ADDRESS [TYPE BASE64]'"),
        ("node s0 server 10.0.0.1", "is not 'server|agent NAME ADDRESS [TYPE BASE64]'"),
        ("server s0 10.0.0.1\nserver s0 10.0.0.1", "node s0 is wanted twice on stdin"),
        ("server s0 10.0.0.1", "stdin ended before the line '# k3s-ha: end of nodes'"),
    ],
    ids=["extra field", "unknown key type", "not base64", "stamp on a server", "old form", "twice", "cut short"],
)
def test_bad_node_lines_are_refused_before_anything_changes(node: Node, keys: str, message: str) -> None:
    bin_dir = _setup(node, {"s0": _server("10.0.0.1", label=None)}, {})
    end = "" if message.startswith("stdin ended") else f"\n{NODES_END}\n"
    result = reconcile(node, bin_dir, "s0", stdin=keys + end)

    assert result.returncode == 1 and message in result.stderr
    assert "configmaps" not in _cluster(node)  # nothing recorded


def evict_pinned(node: Node, bin_dir: Path, key: str) -> subprocess.CompletedProcess[str]:
    params = {
        "K3S_HA_BIN_DIR": str(bin_dir),
        "K3S_HA_ADDRESS": "10.0.1.1",
        "K3S_ROLE": "agent",
        "K3S_HA_HOST": "agent-1",
        "K3S_HA_HOST_KEY": key,
        "K3S_HA_SSH_USER": "ubuntu",
    }
    return node.run("evict-node", params, stdin=PRIVATE_KEY)


def test_evict_reaches_the_new_machine_only_with_its_pinned_key(node: Node) -> None:
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "worker-1": _agent("10.0.1.1", ready="False")},
        {"10.0.1.1": {"hostname": "worker-1", "unit_active": False, "host_key": KEY_A0}},
    )
    result = evict_pinned(node, bin_dir, KEY_A0 + " root@worker-1")

    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0"]
    (connection,) = _connections(node)
    _assert_pinned(connection, "10.0.1.1", KEY_A0)
    assert "warning" not in result.stderr
    _assert_no_temp_files_left(node)
    _assert_key_hidden(node, result)


def test_evict_believes_nothing_an_address_with_another_key_says(node: Node) -> None:
    """Whoever answers on the host's address could name a live node as its own old name; with
    the wrong key it is sent nothing and nothing is evicted."""
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "s1": _server("10.0.0.2")},
        {"10.0.1.1": {"hostname": "s1", "unit_active": False, "host_key": IMPOSTOR}},
    )
    result = evict_pinned(node, bin_dir, KEY_A0)

    assert result.returncode == 0, result.stderr
    assert "Host key verification failed." in result.stderr
    assert "10.0.1.1 answers SSH with another host key than the one pinned for host agent-1" in result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0", "s1"]
    assert _reached(node, "10.0.1.1") == []
    _assert_no_temp_files_left(node)


def test_evict_without_a_pinned_key_warns_naming_the_host_and_accepts_any_key(node: Node) -> None:
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "worker-1": _agent("10.0.1.1", ready="False")},
        {"10.0.1.1": {"hostname": "worker-1", "unit_active": False, "host_key": IMPOSTOR}},
    )
    result = evict_pinned(node, bin_dir, "")

    assert result.returncode == 0, result.stderr
    assert "warning: host agent-1 has no pinned SSH host key" in result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0"]
    (connection,) = _connections(node)
    assert connection["options"]["StrictHostKeyChecking"] == "no"
    assert connection["options"]["ForwardAgent"] == "no"


# --- evict-node.sh: dead servers before a server joins ------------------------------------
# Real etcd refuses any member add, a learner's too, while the member that takes it is not
# connected to every voter (etcd server/etcdserver/server.go mayAddMember, StrictReconfigCheck
# on by default; K3s does not turn it off: k3s-io/k3s pkg/daemons/executor/executor.go). A
# dead server that is still a member therefore blocks every server join until its Node (and
# with it its etcd member, k3s member_controller.go onRemove) is gone.

NEW_SERVER = {"10.0.0.4": {"hostname": "s3", "unit_active": False}}


def _three_servers_one_dead(dead_ready: str = "Unknown", dead_label: str | None = "dev") -> dict:
    return {
        "s0": _server("10.0.0.1"),
        "s1": _server("10.0.0.2"),
        "s2": _pinned(_server("10.0.0.3", ready=dead_ready, label=dead_label), KEY_S2),
    }


@pytest.mark.parametrize(
    ("dead_machine", "why"),
    [
        ({"unreachable": True}, "does not answer SSH"),
        (
            {"unit_active": True, "host_key": IMPOSTOR},
            "answers SSH at 10.0.0.3 with another host key than its pinned one",
        ),
    ],
    ids=["no answer", "another machine answers at its address"],
)
def test_a_servers_evict_first_removes_a_dead_server_of_its_cluster_with_its_node_password(
    node: Node, dead_machine: dict, why: str
) -> None:
    bin_dir = _setup(node, _three_servers_one_dead(), {"10.0.0.3": dead_machine, **NEW_SERVER})
    result = evict(node, bin_dir, "10.0.0.4", role="server")

    assert result.returncode == 0, result.stderr
    cluster = _cluster(node)
    assert sorted(cluster["nodes"]) == ["s0", "s1"]
    assert "s2.node-password.k3s" not in cluster["secrets"]
    assert f"server s2 (10.0.0.3) is NotReady and {why}" in result.stderr
    events = _events(node)
    deletes = [i for i, e in enumerate(events) if e.startswith("k3s kubectl") and " delete " in f" {e} " and "s2" in e]
    assert len(deletes) == 2  # its Node, then its secret
    # Before anything is asked of the machine that joins.
    first_to_new = next(i for i, e in enumerate(events) if e.startswith("ssh ubuntu@10.0.0.4"))
    assert max(deletes) < first_to_new
    # The probe pinned the key recorded on its Node; nothing ran on whatever answers there.
    probes = [c for c in _connections(node) if c["address"] == "10.0.0.3"]
    assert len(probes) == 1
    _assert_pinned(probes[0], "10.0.0.3", KEY_S2)
    assert _reached(node, "10.0.0.3") == []
    _assert_key_hidden(node, result)
    _assert_no_temp_files_left(node)


def test_a_notready_server_that_answers_with_its_key_is_left_alone(node: Node) -> None:
    """It still runs (its kubelet is stuck, or it is partitioned from the API only): deleting
    its Node while it runs would bring it back as a new member (k3s-io/k3s#5404)."""
    bin_dir = _setup(
        node,
        _three_servers_one_dead(dead_ready="False"),
        {"10.0.0.3": {"unit_active": True, "host_key": KEY_S2}, **NEW_SERVER},
    )
    result = evict(node, bin_dir, "10.0.0.4", role="server")

    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0", "s1", "s2"]
    assert "s2.node-password.k3s" in _cluster(node)["secrets"]
    assert "server s2 (10.0.0.3) is not Ready but answers SSH: left alone" in result.stderr
    assert not any(e.startswith("k3s kubectl delete") for e in _events(node))


def test_a_ready_server_that_ssh_cannot_reach_is_left_alone_and_not_even_probed(node: Node) -> None:
    bin_dir = _setup(
        node, _three_servers_one_dead(dead_ready="True"), {"10.0.0.3": {"unreachable": True}, **NEW_SERVER}
    )
    result = evict(node, bin_dir, "10.0.0.4", role="server")

    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0", "s1", "s2"]
    assert not any(e.startswith("k3s kubectl delete") for e in _events(node))
    assert [c["address"] for c in _connections(node)] == ["10.0.0.4"]


def test_an_agents_evict_never_removes_another_node(node: Node) -> None:
    """An agent's join does not touch etcd: a dead server does not block it."""
    bin_dir = _setup(
        node,
        _three_servers_one_dead(),
        {"10.0.0.3": {"unreachable": True}, "10.0.1.1": {"hostname": "a1", "unit_active": False}},
    )
    result = evict(node, bin_dir, "10.0.1.1", role="agent")

    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0", "s1", "s2"]
    assert not any(e.startswith("k3s kubectl delete") for e in _events(node))
    assert [c["address"] for c in _connections(node)] == ["10.0.1.1"]


@pytest.mark.parametrize("label", ["prod", None], ids=["another cluster's", "unlabelled (joined by hand)"])
def test_a_dead_server_without_this_clusters_label_is_left_alone(node: Node, label: str | None) -> None:
    bin_dir = _setup(node, _three_servers_one_dead(dead_label=label), {"10.0.0.3": {"unreachable": True}, **NEW_SERVER})
    result = evict(node, bin_dir, "10.0.0.4", role="server")

    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0", "s1", "s2"]
    assert not any(e.startswith("k3s kubectl delete") for e in _events(node))
    assert "every server of the cluster is Ready" in result.stderr


def test_a_servers_evict_without_a_record_or_cluster_label_still_evicts_the_stale_node(node: Node) -> None:
    bin_dir = _setup(
        node,
        {**_three_servers_one_dead(), "s3": _server("10.0.0.4", ready="Unknown")},
        {"10.0.0.3": {"unreachable": True}, **NEW_SERVER},
    )
    result = evict(node, bin_dir, "10.0.0.4", role="server", K3S_HA_CLUSTER="")

    assert result.returncode == 0, result.stderr
    assert "every server of the cluster is Ready" in result.stderr  # no member known: none dead
    assert sorted(_cluster(node)["nodes"]) == ["s0", "s1", "s2"]  # s3, the stale node, is gone


def test_a_servers_evict_removes_the_dead_servers_one_at_a_time(node: Node) -> None:
    nodes = {**_three_servers_one_dead(), "s9": _server("10.0.0.9", ready="False")}
    bin_dir = _setup(node, nodes, {"10.0.0.3": {"unreachable": True}, "10.0.0.9": {"unreachable": True}, **NEW_SERVER})
    result = evict(node, bin_dir, "10.0.0.4", role="server", K3S_HA_SSH_TIMEOUT="5")

    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0", "s1"]
    # One at a time: s2's Node and secret are gone before s9 is probed, or the other way round.
    events = [
        e
        for e in _events(node)
        if e.startswith(("ssh ubuntu@10.0.0.3", "ssh ubuntu@10.0.0.9", "k3s kubectl delete", "k3s kubectl -n"))
        and "configmap" not in e
    ]
    owners = ["s2" if "10.0.0.3" in e or "s2" in e else "s9" for e in events]
    assert owners in (["s2"] * 3 + ["s9"] * 3, ["s9"] * 3 + ["s2"] * 3)


def test_a_dead_server_whose_new_machine_keeps_its_name_is_removed_once(node: Node) -> None:
    """A K3sBootstrap host moved to a new machine at a new address under the same host name:
    the dead pass removes its old Node; the stale-name pass then has nothing left to do."""
    bin_dir = _setup(
        node,
        _three_servers_one_dead(),
        {"10.0.0.3": {"unreachable": True}, "10.0.0.4": {"hostname": "S2", "unit_active": False}},
    )
    result = evict(node, bin_dir, "10.0.0.4", role="server")

    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0", "s1"]
    assert len([e for e in _events(node) if e.startswith("k3s kubectl delete node s2")]) == 1
    assert "could not delete" not in result.stderr


# --- issue 16: the reconcile writes only what changed -------------------------------------


def _record_writes(node: Node) -> list[str]:
    return [e for e in _events(node) if e.startswith("k3s kubectl apply")]


def test_a_record_with_nothing_changed_makes_no_api_write(node: Node) -> None:
    bin_dir = _setup(node, {f"s{i}": _server(f"10.0.0.{i + 1}", label=None) for i in range(3)}, {})
    keys = "s1:ssh-ed25519:AAAAC3NzaC1lZDI1NTE5AAAAIB"
    first = reconcile(node, bin_dir, "s0 s1 s2", K3S_HA_HOST_KEYS=keys)
    assert first.returncode == 0, first.stderr
    assert len(_record_writes(node)) == 1

    again = reconcile(node, bin_dir, "s0 s1 s2", K3S_HA_HOST_KEYS=keys)
    assert again.returncode == 0, again.stderr
    assert len(_record_writes(node)) == 1  # none more
    writes = [e for e in _events(node) if e.split()[2:3] in (["patch"], ["delete"], ["cordon"], ["drain"], ["apply"])]
    assert len(writes) == 1
    assert "no node has left the configuration" in again.stderr

    # A key no longer pinned is one change: one write.
    third = reconcile(node, bin_dir, "s0 s1 s2")
    assert third.returncode == 0 and len(_record_writes(node)) == 2
    assert _record(node)["s1"] == ["member", "server", "10.0.0.2"]


def test_a_node_a_kubelet_could_have_forged_is_never_taken_for_a_member(node: Node) -> None:
    """Issue 18.1: root on an agent may register a new Node with the agent token, label it as a
    member of this cluster and give it a victim's address and host key (all on its own Node,
    which NodeRestriction lets its kubelet write). Once the record exists, membership, address
    and key come from the record alone: the forged Node is not a member, is never reached,
    and the victim is left alone."""
    victim = {"hostname": "a0", "unit_active": True, "host_key": KEY_A0}
    bin_dir = _setup(node, {"s0": _server("10.0.0.1"), "a0": _agent("10.0.1.1")}, {"10.0.1.1": victim})
    a0_type, a0_blob = KEY_A0.split()
    assert reconcile(node, bin_dir, "s0 a0", K3S_HA_HOST_KEYS=f"a0:{a0_type}:{a0_blob}").returncode == 0
    cluster = _cluster(node)
    cluster["nodes"]["forged"] = _pinned(_agent("10.0.1.1"), KEY_A0)
    (node.state / "cluster.json").write_text(json.dumps(cluster))

    result = reconcile(node, bin_dir, "s0 a0", K3S_HA_HOST_KEYS=f"a0:{a0_type}:{a0_blob}")
    assert result.returncode == 0, result.stderr
    assert "forged" not in _record(node) and "no node has left the configuration" in result.stderr
    assert not any(e.startswith("ssh ") for e in _events(node))
    assert not _cluster(node)["machines"]["10.0.1.1"].get("uninstalled")


def test_a_leaving_nodes_recorded_address_held_by_another_node_is_not_reached(node: Node) -> None:
    """Issue 18.1: the address a leaving node had may belong to another node by then (a new
    machine took it): nothing is sent there, and the leaving node, NotReady, is taken as gone."""
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "a0": _agent("10.0.1.1"), "a1": _agent("10.0.1.2")},
        {"10.0.1.1": {"hostname": "a0", "unit_active": True}},
    )
    assert reconcile(node, bin_dir, "s0 a0 a1").returncode == 0
    cluster = _cluster(node)
    cluster["nodes"]["a0"]["ready"] = "Unknown"
    cluster["nodes"]["a1"]["ip"] = "10.0.1.1"  # a1 now holds a0's old address
    (node.state / "cluster.json").write_text(json.dumps(cluster))

    result = reconcile(node, bin_dir, "s0 a1")
    assert result.returncode == 0, result.stderr
    assert "its recorded address 10.0.1.1 is node a1's now" in result.stderr
    assert not any(e.startswith("ssh ") for e in _events(node))
    assert sorted(_cluster(node)["nodes"]) == ["a1", "s0"] and _record(node)["a0"][0] == "removed"


def test_a_removed_node_that_comes_back_leaves_again(node: Node) -> None:
    """Issue 17.5: a removed node whose machine powers on again (its unit still enabled, as it
    was unreachable when it was removed) registers again; the next record run makes it leave."""
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "a0": _agent("10.0.1.1", ready="Unknown")},
        {"10.0.1.1": {"unreachable": True}},
    )
    assert reconcile(node, bin_dir, "s0 a0").returncode == 0
    assert reconcile(node, bin_dir, "s0").returncode == 0
    assert "a0" not in _cluster(node)["nodes"] and _record(node)["a0"][0] == "removed"
    cluster = _cluster(node)
    cluster["nodes"]["a0"] = _agent("10.0.1.1", label=None)  # it came back
    cluster["machines"]["10.0.1.1"] = {"hostname": "a0", "unit_active": True}
    (node.state / "cluster.json").write_text(json.dumps(cluster))

    result = reconcile(node, bin_dir, "s0 a9")
    assert result.returncode == 0, result.stderr
    assert "node a0 was removed from the cluster and has come back" in result.stderr
    assert "a0" not in _cluster(node)["nodes"] and _cluster(node)["machines"]["10.0.1.1"].get("uninstalled")


def _recorded_again_cpu_seconds(node: Node, bin_dir: Path, count: int) -> float:
    """CPU seconds (the scripts and every tool they ran) of a record step with `count` wanted
    agents that are all recorded already. CPU, not wall time: under a loaded CI the wall time
    says more about the other tests than about this one."""
    nodes = {f"n{i}": _agent(f"10.1.{i // 250}.{i % 250 + 1}") for i in range(count)}
    cluster = {"nodes": nodes, "machines": {}, "secrets": [f"{n}.node-password.k3s" for n in nodes]}
    (node.state / "cluster.json").write_text(json.dumps(cluster))
    # Minutes of wall time allowed: at 2,000 nodes a CI running eight workers on two cores once
    # took over 30 s for what is 3.5 CPU seconds alone.
    assert reconcile(node, bin_dir, " ".join(nodes), wall_seconds="180").returncode == 0
    writes = len(_record_writes(node))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = reconcile(node, bin_dir, " ".join(nodes), wall_seconds="180")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert result.returncode == 0, result.stderr
    assert len(_record_writes(node)) == writes and "no node has left" in result.stderr
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_the_records_time_is_linear_in_the_nodes(node: Node) -> None:
    """No `" ${list[*]} " == *" $name "*` scans per node: wanted nodes already recorded take
    one read of the record and a pass over it, so 4x the nodes costs about 4x (a scan per node
    would be 16x)."""
    bin_dir = _setup(node, {}, {})
    small = _recorded_again_cpu_seconds(node, bin_dir, 500)
    large = _recorded_again_cpu_seconds(node, bin_dir, 2000)
    assert large < 8 * small, (small, large)
    assert large < 20, large


# --- issue 16: rebuilt agents' stale Nodes, in the record step -----------------------------


def evict_agents(node: Node, bin_dir: Path, agents: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """record-members with every server Node wanted and these agent lines ("ADDRESS [@TIME]"
    by name: @TIME when the agent's install found a fresh machine)."""
    servers = " ".join(name for name, found in _cluster(node)["nodes"].items() if found.get("etcd"))
    stdin = member_stdin(node, servers, agents=agents)
    return node.run("record-members", {"K3S_HA_BIN_DIR": str(bin_dir), "K3S_HA_CLUSTER": "dev"}, stdin=stdin)


# 2026-06-01T00:00:00Z: the fresh machines' install steps ran then; the stand-in's Nodes were
# created on 2026-01-01 unless a test says otherwise.
INSTALLED = 1780272000


def test_evict_agents_removes_the_old_machines_node_by_address_and_by_name(node: Node) -> None:
    nodes = {
        "s0": _server("10.0.0.1"),
        # At the fresh machine's address and still Ready (re-imaged within the grace period):
        # the fresh machine holds that address now, so this Node is the old machine's.
        "old-at-address": _agent("10.0.1.1"),
        "worker-2": _agent("10.0.1.99", ready="False"),
        "worker-3": _agent("10.0.1.3"),  # a live agent, not rebuilt
    }
    bin_dir = _setup(node, nodes, {})
    result = evict_agents(
        node,
        bin_dir,
        {"worker-1": f"10.0.1.1 @{INSTALLED}", "worker-2": f"10.0.1.2 @{INSTALLED}", "worker-3": "10.0.1.3"},
    )
    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0", "worker-3"]
    assert sorted(_cluster(node)["secrets"]) == ["s0.node-password.k3s", "worker-3.node-password.k3s"]
    assert not any(e.startswith("ssh ") for e in _events(node))  # no SSH at all
    # Each fresh machine is handled once: the record keeps its stamp.
    assert _record(node)["worker-1"][-1] == f"@{INSTALLED}" and _record(node)["worker-3"][-1] == "10.0.1.3"


def test_a_fresh_machine_is_handled_once_and_its_own_node_never_deleted(node: Node) -> None:
    """The line stays "@TIME" in the state until the install step runs again, so later runs
    find the machine joined, down or rebooted, with a clock behind the servers' (its Node
    "created" before the install ran): the record's stamp says it was handled, and no Node is
    even listed."""
    bin_dir = _setup(node, {"s0": _server("10.0.0.1")}, {})
    lines = {"worker-1": f"10.0.1.1 @{INSTALLED}", "worker-2": f"10.0.1.2 @{INSTALLED}"}
    assert evict_agents(node, bin_dir, lines).returncode == 0
    cluster = _cluster(node)
    cluster["nodes"]["worker-1"] = {**_agent("10.0.1.1", ready="False"), "created": "2026-05-31T23:59:00Z"}
    cluster["nodes"]["worker-2"] = _agent("10.0.1.2")
    (node.state / "cluster.json").write_text(json.dumps(cluster))
    before = len(_events(node))
    result = evict_agents(node, bin_dir, {**lines, "worker-3": "10.0.1.3"})  # an agent added
    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0", "worker-1", "worker-2"]
    assert not any("get nodes" in e or "delete" in e for e in _events(node)[before:])


def test_without_the_record_a_node_created_after_the_install_and_a_live_namesake_stay(node: Node) -> None:
    """With the record lost (an admin deleted it), a stamp is new again: a Node created after
    the install ran may be the machine's own and stays; a Ready Node elsewhere with the new
    machine's name is named in a warning."""
    nodes = {
        "s0": _server("10.0.0.1"),
        "worker-1": {**_agent("10.0.1.1", ready="False"), "created": "2026-06-02T00:00:00Z"},
        "worker-2": _agent("10.0.9.9"),  # a live node elsewhere with the new machine's name
    }
    bin_dir = _setup(node, nodes, {})
    result = evict_agents(node, bin_dir, {"worker-1": f"10.0.1.1 @{INSTALLED}", "worker-2": f"10.0.1.2 @{INSTALLED}"})
    assert result.returncode == 0, result.stderr
    assert sorted(_cluster(node)["nodes"]) == ["s0", "worker-1", "worker-2"]
    assert "node worker-2 is Ready at 10.0.9.9, but the new machine at 10.0.1.2 has the same host name" in result.stderr


def test_evict_agents_with_no_fresh_machine_lists_no_nodes(node: Node) -> None:
    bin_dir = _setup(node, {"s0": _server("10.0.0.1")}, {})
    assert evict_agents(node, bin_dir, {}).returncode == 0  # the record exists from here on
    before = len(_events(node))
    result = evict_agents(node, bin_dir, {"worker-1": "10.0.1.1"})  # its install found K3s there
    assert result.returncode == 0, result.stderr
    assert not any("get nodes" in e or "delete" in e for e in _events(node)[before:])


def test_the_record_step_refuses_bad_lines_and_an_api_that_cannot_say_before_anything_changes(node: Node) -> None:
    """It decides membership: with a line it cannot read, or no record to read, it changes
    nothing and fails (no agent starts; the next `up` goes on)."""
    bin_dir = _setup(node, {"s0": _server("10.0.0.1")}, {})
    bad = evict_agents(node, bin_dir, {"worker-1": "10.0.1.1 @not-a-time"})
    assert bad.returncode == 1 and "is not 'server|agent NAME ADDRESS [TYPE BASE64]'" in bad.stderr
    cluster = _cluster(node)
    cluster["api_down"] = True
    (node.state / "cluster.json").write_text(json.dumps(cluster))
    down = evict_agents(node, bin_dir, {"worker-1": f"10.0.1.1 @{INSTALLED}"})
    assert down.returncode == 1 and "cannot read the member record on this server" in down.stderr
    assert "configmaps" not in _cluster(node)


def test_three_to_one_with_a_dead_leaving_server_removes_the_dead_one_first(node: Node) -> None:
    """Issue 17.3: s1 is live and s2 dead. Name order takes s1 first through the
    remove-while-running path, which etcd refuses (the started members left would be below
    quorum: mayRemoveMember), leaving s1 Terminating on every re-run. Dead servers go first."""
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "s1": _server("10.0.0.2"), "s2": _server("10.0.0.3", ready="Unknown")},
        {
            "10.0.0.1": {"hostname": "s0", "unit_active": True},
            "10.0.0.2": {"hostname": "s1", "unit_active": True},
            "10.0.0.3": {"unreachable": True},
        },
    )
    result = reconcile(node, bin_dir, "s0")

    assert result.returncode == 0, result.stderr
    assert list(_cluster(node)["nodes"]) == ["s0"]
    deletes = [e for e in _events(node) if e.startswith("k3s kubectl delete node")]
    assert [e.split()[4] for e in deletes] == ["s2", "s1"]


def test_a_leaving_nodes_address_that_answers_under_another_name_gets_nothing(node: Node) -> None:
    """Issue 17.4: a renamed host (or a reused address) answers at the leaving Node's address
    with the right key; it calls itself something else, so nothing is stopped or uninstalled
    there. NotReady, the Node is taken as gone; Ready, the removal is refused."""
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "a0": _agent("10.0.1.1", ready="Unknown"), "a1": _agent("10.0.1.2")},
        {"10.0.1.1": {"hostname": "wanted-host", "unit_active": True}, "10.0.1.2": {"hostname": "other"}},
    )
    result = reconcile(node, bin_dir, "s0")
    assert result.returncode == 1
    assert "a1 is Ready but" in result.stderr and "answers SSH at 10.0.1.2 under another host name" in result.stderr
    assert not _cluster(node)["machines"]["10.0.1.1"].get("uninstalled")
    assert not [e for e in _reached(node, "10.0.1.1") if "systemctl" in e or "uninstall" in e]
    assert "a0" not in _cluster(node)["nodes"]  # NotReady and not itself at its address: gone
    assert "a1" in _cluster(node)["nodes"]


def test_a_removal_names_the_persistent_volumes_it_destroys(node: Node) -> None:
    """Issue 17.6: the uninstaller deletes the data dir, local-path volumes included, and a
    failed drain is only a warning: the step's log names what goes."""
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "a0": _agent("10.0.1.1"), "a1": _agent("10.0.1.2")},
        {"10.0.1.1": {"hostname": "a0", "unit_active": True}},
        volumes={"pvc-1": {"node": "a0", "claim": "shop/db"}, "pvc-2": {"node": "a1", "claim": "shop/cache"}},
    )
    result = reconcile(node, bin_dir, "s0 a1")
    assert result.returncode == 0, result.stderr
    assert "removing a0 destroys the data of 1 PersistentVolume(s) on its disk: pvc-1 (claim shop/db)" in result.stderr
    assert "pvc-2" not in result.stderr


def test_a_pv_list_that_cannot_be_read_is_said_and_changes_nothing_else(node: Node) -> None:
    bin_dir = _setup(
        node,
        {"s0": _server("10.0.0.1"), "a0": _agent("10.0.1.1")},
        {"10.0.1.1": {"hostname": "a0", "unit_active": True}},
        pv_list_fails=True,
    )
    result = reconcile(node, bin_dir, "s0")
    assert result.returncode == 0, result.stderr
    assert "could not list PersistentVolumes" in result.stderr and list(_cluster(node)["nodes"]) == ["s0"]
