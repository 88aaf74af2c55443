"""The lab (issue 9, part 2): K3sBootstrap's real steps over real SSH on hosts in namespaces,
with a stand-in k3s on a real etcd. `bash tests/run.sh -m lab` runs these alone.

Each test brings up its own cluster from nothing and tears everything down afterwards, also
on failure; the first one takes a single cluster of 3 servers and 2 agents through five checks
in turn (one bring-up instead of five: issue 20.5), each a function below. Figures (wall time, steps in parallel) go to BENCHMARKS.md (section 4) by hand from a
run with K3S_HA_LAB_FIGURES=<file.json>.
"""

from __future__ import annotations

import stat
import time

import pytest
import yaml

from lab import driver
from lab.cluster import ETCDCTL, Cluster, record
from lab.fixtures import k3s_processes, processes

pytestmark = pytest.mark.lab

SERVERS = ["s0", "s1", "s2"]
AGENTS = ["a0", "a1"]
NEXT_PATCH = "v1.36.5+k3s1"


def test_one_cluster_through_its_life_bring_up_upgrade_a_dead_server_restore_destroy(make_lab) -> None:
    """3 servers and 2 agents: they come up in under two minutes as the README says; a version
    change makes every node run it; with the first server dead the others answer and take
    writes; a snapshot taken on a joined server restores; destroy runs nothing on the hosts and
    the uninstallers clean them. In this order, each starting from the cluster the last left."""
    # With the AWS integration's K3s side (issue 19.2): nodes count as up only once the
    # stand-in's cloud controller, installed from the servers' manifests, initialised them.
    cluster = Cluster(make_lab([*SERVERS, *AGENTS]), list(SERVERS), list(AGENTS), cloud=True)
    comes_up_in_under_two_minutes(cluster, cluster.up())
    a_version_change_makes_every_node_run_the_new_version(cluster)
    with_one_server_dead_the_others_answer_and_take_writes(cluster)
    a_snapshot_restores_on_a_joined_server(cluster)
    destroy_runs_nothing_on_the_hosts_and_the_readme_uninstall_cleans_them(cluster)


def comes_up_in_under_two_minutes(cluster: Cluster, report: driver.Report) -> None:
    record("bring-up, 3 servers + 2 agents", seconds=round(report.seconds, 1), max_parallel=report.max_parallel,
           steps=len(report.outcomes), step_seconds=report.step_seconds())  # fmt: skip

    members = cluster.members("s2")
    assert sorted(m["name"].rsplit("-", 1)[0] for m in members) == ["lab-s0", "lab-s1", "lab-s2"]
    assert not any(m.get("isLearner") for m in members), members
    health = cluster.root("s1", f"{ETCDCTL} endpoint health --cluster")
    assert health.status == 0 and health.stderr.count("is healthy") + health.stdout.count("is healthy") == 3, health

    nodes = cluster.nodes("s1")
    assert sorted(nodes) == ["lab-a0", "lab-a1", "lab-s0", "lab-s1", "lab-s2"]
    assert all(n["Ready"] == "True" for n in nodes.values()), nodes
    assert all(nodes[f"lab-{s}"]["EtcdIsVoter"] == "True" for s in SERVERS), nodes

    configs = {}
    for name in [*SERVERS, *AGENTS]:
        path = cluster.host(name).path("/etc/rancher/k3s/config.yaml")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        configs[name] = yaml.safe_load(path.read_text())
    server_token = configs["s0"]["token"]
    assert len(server_token) >= 32
    assert [configs[s].get("cluster-init") for s in SERVERS] == [True, None, None]
    assert [configs[s].get("server") for s in SERVERS] == [None, *["https://10.213.0.10:6443"] * 2]
    # Joins carry the cluster CA's hash (issue 18.2), the one the servers' server/token holds.
    ca = cluster.host("s0").path("/var/lib/rancher/k3s/server/token").read_text()[3:67]
    assert all(configs[s]["token"] == f"K10{ca}::server:{server_token}" for s in SERVERS[1:])
    assert all(configs[a]["token"] == f"K10{ca}::node:{configs['s0']['agent-token']}" for a in AGENTS)
    assert configs["s0"]["agent-token"] != server_token
    # A new cluster encrypts Secrets at rest: the same critical setting on every server.
    assert all(configs[s]["secrets-encryption"] is True for s in SERVERS)
    assert all(configs[a]["server"] == "https://10.213.0.10:6443" for a in AGENTS)

    # The README's promise: tokens only in the 0600 config.yaml, never in unit or env files,
    # process arguments, service logs or step output.
    tokens = {server_token, configs["s0"]["agent-token"]}
    for name in [*SERVERS, *AGENTS]:
        host = cluster.host(name)
        unit = "k3s" if name in SERVERS else "k3s-agent"
        places = {
            "unit file": host.path(f"/etc/systemd/system/{unit}.service").read_text(),
            "env file": host.path(f"/etc/systemd/system/{unit}.service.env").read_text(),
            "service log": cluster.lab.unit_log(host, unit),
            "process arguments": "\n".join(processes(cluster.lab, host).values()),
        }
        for place, text in places.items():
            assert not any(t in text for t in tokens), f"a token is in the {place} on {name}"
    for outcome in report.outcomes:
        assert not any(t in outcome.stdout + outcome.stderr for t in tokens), outcome.action.urn

    cluster.check()
    assert report.seconds < 120, f"bring-up took {report.seconds:.0f}s"


def with_one_server_dead_the_others_answer_and_take_writes(cluster: Cluster) -> None:
    lab = cluster.lab
    # The first server: the registration address, and the holder of most memberships.
    killed_at = time.time()
    lab.kill_unit(cluster.host("s0"), "k3s")
    cluster.wait_for("k3s and etcd on s0 to be gone", lambda: not k3s_processes(lab, cluster.host("s0")), 10)

    def readyz_everywhere_else():
        return all(cluster.root(s, "k3s kubectl get --raw=/readyz").stdout.strip() == "ok" for s in ("s1", "s2"))

    cluster.wait_for("/readyz ok on s1 and s2", readyz_everywhere_else, seconds=30)
    recovered = time.time() - killed_at

    drained = cluster.root("s1", "k3s kubectl drain lab-a0 --ignore-daemonsets --timeout=30s")
    assert drained.status == 0, drained.stderr
    written = cluster.root("s2", f"{ETCDCTL} put /lab/written-while-s0-is-down yes")
    assert written.status == 0, written.stderr
    read = cluster.root("s1", f"{ETCDCTL} get --print-value-only /lab/written-while-s0-is-down")
    assert read.stdout.strip() == "yes"
    node = cluster.root("s2", "k3s kubectl get node lab-a0 -o json")
    assert '"unschedulable": true' in node.stdout
    health = cluster.root("s1", f"{ETCDCTL} endpoint health --cluster")
    assert (health.stdout + health.stderr).count("is healthy") == 2
    record("one server killed (s0)", seconds_until_others_ready=round(recovered, 1))


def test_the_installer_writes_no_script_text_into_the_units_env_file(make_lab) -> None:
    """install.sh copies K3S_* words of `sh -c export` into the env file, and sudo's
    SUDO_COMMAND holds the whole script (shared/real-behaviour.md)."""
    cluster = Cluster(make_lab(["s0", "a0"]), ["s0"], ["a0"])
    applies, _ = driver.up_plan(None, cluster.record_program())
    installs = [[a for a in wave if a.urn.endswith(("-bundle", "-install", "-version-guard"))] for wave in applies]
    driver.run_waves(cluster.lab, [w for w in installs if w])
    for name, unit in (("s0", "k3s"), ("a0", "k3s-agent")):
        assert cluster.host(name).path(f"/etc/systemd/system/{unit}.service").exists()
        env = cluster.host(name).path(f"/etc/systemd/system/{unit}.service.env").read_text()
        assert env == "", f"{unit}.service.env on {name}: {env!r}"


def destroy_runs_nothing_on_the_hosts_and_the_readme_uninstall_cleans_them(cluster: Cluster) -> None:
    """README, Destroying the stack: no step's delete logs in anywhere; K3sBootstrap leaves K3s
    installed, and k3s-uninstall.sh / k3s-agent-uninstall.sh remove it."""
    running = {n for n in [*SERVERS, *AGENTS] if k3s_processes(cluster.lab, cluster.host(n))}
    assert {"s1", "a0", "a1"} <= running  # what the checks before left running
    report = cluster.destroy()
    record("destroy, 3 servers + 2 agents", seconds=round(report.seconds, 1), steps=len(report.outcomes))
    assert report.outcomes == []
    assert {n for n in [*SERVERS, *AGENTS] if k3s_processes(cluster.lab, cluster.host(n))} == running
    for name in [*SERVERS, *AGENTS]:
        uninstaller = "k3s-uninstall.sh" if name in SERVERS else "k3s-agent-uninstall.sh"
        result = cluster.root(name, f"/usr/local/bin/{uninstaller}")
        assert result.status == 0, result.stderr
        host = cluster.host(name)
        for leftover in ("/usr/local/bin/k3s", "/var/lib/rancher/k3s", "/etc/rancher/k3s",
                         "/etc/systemd/system/k3s.service", "/etc/systemd/system/k3s-agent.service"):  # fmt: skip
            assert not host.path(leftover).exists(), f"{leftover} is still on {name}"
        cluster.wait_for(f"k3s on {name} to stop", lambda h=host: not k3s_processes(cluster.lab, h), 20)


def test_three_to_five_servers_and_back(make_lab) -> None:
    every = ["s0", "s1", "s2", "s3", "s4"]
    cluster = Cluster(make_lab([*every, *AGENTS]), list(SERVERS), list(AGENTS))
    cluster.up()

    grown = cluster.up(servers=every)
    cluster.check()
    members = cluster.members("s4")
    assert sorted(m["name"].rsplit("-", 1)[0] for m in members) == [f"lab-{s}" for s in every]
    assert not any(m.get("isLearner") for m in members)
    nodes = cluster.nodes("s3")
    assert len(nodes) == 7 and all(n["Ready"] == "True" for n in nodes.values()), nodes
    ran = {o.action.urn.rsplit("::", 1)[-1] for o in grown.outcomes}
    assert {f"lab-{s}-{step}" for s in ("s3", "s4") for step in ("install", "start", "member")} <= ran
    assert not {f"lab-{n}-start" for n in [*SERVERS, *AGENTS]} & ran, "a running node's start step ran again"

    shrunk = cluster.up(servers=list(SERVERS))
    cluster.check()
    members = cluster.members("s0")
    assert sorted(m["name"].rsplit("-", 1)[0] for m in members) == ["lab-s0", "lab-s1", "lab-s2"]
    nodes = cluster.nodes("s1")
    assert sorted(nodes) == ["lab-a0", "lab-a1", "lab-s0", "lab-s1", "lab-s2"]
    assert all(n["Ready"] == "True" for n in nodes.values()), nodes
    for gone in ("s3", "s4"):
        assert not cluster.host(gone).path("/usr/local/bin/k3s").exists(), f"k3s is still installed on {gone}"
        assert k3s_processes(cluster.lab, cluster.host(gone)) == [], gone
    record("3 -> 5 servers", seconds=round(grown.seconds, 1), max_parallel=grown.max_parallel,
           steps=len(grown.outcomes), step_seconds=grown.step_seconds())  # fmt: skip
    record("5 -> 3 servers", seconds=round(shrunk.seconds, 1), max_parallel=shrunk.max_parallel,
           steps=len(shrunk.outcomes), step_seconds=shrunk.step_seconds())  # fmt: skip


def a_version_change_makes_every_node_run_the_new_version(cluster: Cluster) -> None:
    """Issue 10.1: the wrapper execs a staged copy, so /proc/PID/exe never shows '(deleted)';
    only the Node's kubeletVersion tells what a node runs."""
    report = cluster.up(version=NEXT_PATCH)
    record("version change (start steps rerun)", seconds=round(report.seconds, 1), max_parallel=report.max_parallel,
           steps=len(report.outcomes), step_seconds=report.step_seconds())  # fmt: skip
    installed = {n: cluster.root(n, "k3s --version").stdout.split()[2] for n in [*SERVERS, *AGENTS]}
    assert set(installed.values()) == {NEXT_PATCH}, installed
    running = {name: node["version"] for name, node in cluster.nodes("s1").items()}
    assert set(running.values()) == {NEXT_PATCH}, f"nodes run {running} after the change"
    cluster.check()


def _script(name: str, params: dict[str, str]) -> str:
    """The command text for a node script no program step runs (restore, rejoin), from the
    bundle the `up` installed on every host, under a 15-minute bound."""
    from k3s_ha.bootstrap.commands import remote_command

    return remote_command(name, params, 900)


def a_snapshot_restores_on_a_joined_server(cluster: Cluster) -> None:
    """Issue 10.7: K3s refuses --cluster-reset while `server:` is set, which every joined
    server's config.yaml has. s0 is down already (the check before killed it)."""
    started = time.time()
    saved = cluster.root("s1", "k3s etcd-snapshot save")
    assert saved.status == 0, saved.stderr
    snapshot = saved.stdout.strip().splitlines()[-1]
    for other in ("s0", "s2"):
        assert cluster.root(other, "systemctl stop k3s").status == 0
    restore = _script("restore-snapshot", {"K3S_HA_SNAPSHOT": snapshot, "K3S_READY_TIMEOUT": "120"})
    restored = cluster.lab.ssh(cluster.host("s1"), restore, timeout=240)
    record("snapshot + restore on a joined server", seconds=round(time.time() - started, 1))
    assert restored.status == 0, restored.stderr[-2000:]
    assert [m["name"].rsplit("-", 1)[0] for m in cluster.members("s1")] == ["lab-s1"]
