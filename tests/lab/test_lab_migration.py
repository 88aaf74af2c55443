"""Issue 16: a cluster brought up by the previous version of this project (before the script
bundle), then `up` with this one. The first `up` after updating the project copies the bundle
to every host, runs every step again with its new, short command (each finds its node as it
is: nothing restarts), drops the agents' per-agent server steps (their deletes run nothing),
and converges: the `up` after it runs nothing.

The previous version's program runs from its own source (`git archive` of PREVIOUS, in a
subprocess with its own recording engine) and its commands go over real SSH like ours.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import pytest
from support import engine

from lab import driver
from lab.cluster import Cluster, record
from lab.test_lab_day2 import ran, running_pids

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
PREVIOUS = "d6fb9d5"
"""The last release before the script bundle (issue 16): commands carried the scripts inline."""

# Runs in the previous version's tree: its K3sBootstrap under its own recording engine, with
# start steps reporting the lab host's name (as the lab's mocks do), printed as JSON.
_RECORD = r"""
import dataclasses, json, sys
tree, args, names = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
sys.path[:0] = [tree + "/components", tree + "/tests"]
import engine, pulumi
from k3s_ha import K3sBootstrap

class Mocks(engine.CloudMocks):
    def new_resource(self, a):
        rid, state = super().new_resource(a)
        if a.typ == "command:remote:Command" and "k3s-ha-start-" in state.get("create", ""):
            state["stdout"] = names[engine._reveal(a.inputs["connection"], "", set())["host"]] + "\n"
        return rid, state

def program():
    args["ssh"]["private_key"] = pulumi.Output.secret(args["ssh"]["private_key"])
    return {"kubeconfig": K3sBootstrap("lab", args).kubeconfig}

run = engine.run(program, mocks=Mocks())
regs = [dataclasses.asdict(r) for r in run.registrations]
print(json.dumps({"registrations": regs, "outputs": run.outputs}, default=sorted))
"""


def previous_tree(tmp: Path) -> Path:
    known = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{PREVIOUS}^{{commit}}"], capture_output=True)
    if known.returncode != 0:
        pytest.skip(f"this clone has no history back to {PREVIOUS} (a shallow clone): the migration needs it")
    found = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS, "components", "tests"], capture_output=True)
    assert found.returncode == 0, found.stderr.decode()
    tarfile.open(fileobj=BytesIO(found.stdout)).extractall(tmp)
    return tmp


def previous_run(cluster: Cluster, tree: Path) -> engine.Run:
    names = {h.address: h.hostname for h in cluster.lab.hosts.values()}
    out = subprocess.run(
        [sys.executable, "-c", _RECORD, str(tree), json.dumps(cluster.bootstrap_args()), json.dumps(names)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    regs = []
    for r in data["registrations"]:
        r["secret_paths"], r["dependencies"] = set(r["secret_paths"]), set(r["dependencies"])
        r["property_dependencies"] = {k: set(v) for k, v in r["property_dependencies"].items()}
        regs.append(engine.Registration(**r))
    return engine.Run(regs, data["outputs"], set(), [])


def test_a_cluster_of_the_previous_version_takes_the_update_without_a_restart(make_lab, tmp_path) -> None:
    cluster = Cluster(make_lab(["s0", "s1", "s2", "a0", "a1"]), ["s0", "s1", "s2"], ["a0", "a1"], machine_ids=True)
    old = previous_run(cluster, previous_tree(tmp_path / "previous"))
    applies, _ = driver.up_plan(None, old)
    assert not any(a.copy_to for wave in applies for a in wave)  # no bundle then
    cluster.run(applies)
    cluster.recorded = old
    cluster.check(secure_tokens=False)  # the previous release joined with the short token form
    before = running_pids(cluster)
    assert all(before.values())

    update = cluster.up()
    record("migration from the previous version", steps=len(update.outcomes), seconds=round(update.seconds, 1))
    assert running_pids(cluster) == before, "a node restarted"
    cluster.check()
    names = ran(update)
    assert {f"lab-{h}-bundle" for h in ("s0", "s1", "s2", "a0", "a1")} <= names
    # The record step takes the members from the old release's labels and writes the record.
    assert {"lab-members", "lab-s0-start", "lab-a1-start"} <= names
    # The init step (issue 18.2) found the cluster: it read its CA and started nothing, and the
    # cluster keeps Secrets encryption off (K3s cannot turn it on for a running cluster).
    init = next(o for o in update.outcomes if o.name == "lab-init")
    assert init.stdout.endswith(" existing\n"), init.stdout
    servers = [cluster.host(n).path("/etc/rancher/k3s/config.yaml").read_text() for n in cluster.servers]
    assert not any("secrets-encryption" in text for text in servers)
    members_log = next(o.stderr for o in update.outcomes if o.name == "lab-members")
    assert "took 5 members from the k3s-ha.io/cluster=lab labels" in members_log, members_log
    # The per-agent server steps of the previous version are gone, and their deletes ran nothing.
    assert not {n for n in names if n.startswith(("lab-a0-", "lab-a1-")) and n.endswith(("-evict", "-member"))}
    install_logs = {o.name: o.stderr for o in update.outcomes if o.name.endswith("-install")}
    assert all("nothing to download" in log for log in install_logs.values()), install_logs
    assert cluster.up().outcomes == [], "the up after the migration runs nothing"
