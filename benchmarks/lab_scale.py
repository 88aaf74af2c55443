"""Measured bring-up in the lab (tests/lab: namespaces with real sshd, sudo and etcd; K3s is a
stand-in) beside the modeled critical path of the same recorded graph.

    sudo .venv-test/bin/python benchmarks/lab_scale.py            # 3+2 and 5+20
    sudo .venv-test/bin/python benchmarks/lab_scale.py 5:20

The model (critical_path.analyse) runs twice on the graph the lab ran: once with the EC2
durations of BENCHMARKS.md section 2, and once with durations calibrated on the lab's own
3+2 step times (lab hosts are up before the first step, so no boot time), which shows whether
the graph alone explains the measured time. Needs root (the lab). Not a test: it prints a
Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "components"), str(ROOT / "tests"), str(ROOT / "benchmarks")]

import critical_path  # noqa: E402
from lab.cluster import Cluster  # noqa: E402
from lab.harness import Lab, unavailable_reason  # noqa: E402

# Seconds per step kind measured in the lab's 3+2 bring-up (BENCHMARKS.md (section 4)): the stand-in
# keeps K3s's 15 s etcd leader tick, so every server start is about 17 s.
LAB_DURATIONS = {
    "boot": 0,
    "download": 0.7,
    "init": 17.0,
    "join": 17.0,
    "agent": 1.0,
    "guard": 0.4,
    "evict": 0.4,
    "confirm": 0.4,
    "kubeconfig": 0.4,
    "reconcile": 0.4,
    "remote": 0.4,
    "copy": 0.3,
    "aws": 0,
    "none": 0,
}


def modeled(run, servers: int, agents: int, durations: dict[str, float]) -> float:
    saved = dict(critical_path.DURATIONS)
    critical_path.DURATIONS.update(durations)
    try:
        return critical_path.analyse(run.registrations, servers, agents).modeled_seconds
    finally:
        critical_path.DURATIONS.clear()
        critical_path.DURATIONS.update(saved)


def sessions(report) -> dict[str, int]:
    """SSH logins per lab host in one `up`: every step that connects to it (a bundle copy is
    one SFTP session), plus the probe a server's evict step makes to the host it evicts for."""
    counts: dict[str, int] = {}
    for outcome in report.outcomes:
        counts[outcome.action.host] = counts.get(outcome.action.host, 0) + 1
    return counts


def reconcile_writes(report) -> str:
    """The API writes the membership steps made: the record step's one write of the member
    record when it changed ("recorded the cluster's members"), or none."""
    for outcome in report.outcomes:
        if outcome.name.endswith("-members"):
            return "1" if "recorded the cluster's members" in outcome.stderr else "0"
    return "did not run"


def measure(servers: int, agents: int) -> dict:
    """Bring up servers+agents, then add one agent (a host kept spare until then)."""
    names = [f"s{i}" for i in range(servers)] + [f"a{i}" for i in range(agents + 1)]
    with Lab(names) as lab:
        cluster = Cluster(lab, names[:servers], names[servers:-1], machine_ids=True)
        started = time.monotonic()
        report = cluster.up()
        whole = time.monotonic() - started
        voters = [m for m in cluster.members(on="s0") if not m.get("isLearner")]
        ready = [n for n, node in cluster.nodes(on="s0").items() if node.get("Ready") == "True"]
        assert len(voters) == servers and len(ready) == servers + agents, (voters, ready)
        run = cluster.recorded
        server_hosts = {lab.hosts[n].address for n in names[:servers]}
        logins = sessions(report)
        first_writes = reconcile_writes(report)
        grown = cluster.up(agents=names[servers:])
        grown_logins = sessions(grown)
        again = cluster.up()
    return {
        "max_server_logins": max(logins.get(h, 0) for h in server_hosts),
        "max_agent_logins": max(v for h, v in logins.items() if h not in server_hosts),
        "reconcile_writes": first_writes,
        "add_agent_steps": len(grown.outcomes),
        "add_agent_step_names": sorted(o.name for o in grown.outcomes),
        "add_agent_server_logins": max(grown_logins.get(h, 0) for h in server_hosts),
        "add_agent_seconds": round(grown.seconds, 1),
        "add_agent_reconcile_writes": reconcile_writes(grown),
        "rerun_steps": len(again.outcomes),
        "size": f"{servers}+{agents}",
        "steps_seconds": round(report.seconds, 1),
        "whole_seconds": round(whole, 1),
        "steps": len(report.outcomes),
        "max_parallel": report.max_parallel,
        "modeled_lab": round(modeled(run, servers, agents, LAB_DURATIONS), 1),
        "modeled_ec2": round(modeled(run, servers, agents, dict(critical_path.DURATIONS)), 1),
    }


def main() -> None:
    reason = unavailable_reason()
    if reason:
        sys.exit(f"lab unavailable: {reason}")
    sizes = [tuple(int(x) for x in a.split(":")) for a in sys.argv[1:]] or [(3, 2), (5, 20)]
    print(
        "| bring-up | measured (steps) | measured (incl. recording) | modeled, lab durations | modeled, EC2 durations "
        "| remote steps | most in parallel | SSH logins, busiest server / agent | reconcile writes "
        "| + 1 agent: steps, busiest server's logins, seconds, reconcile writes | `up` again: steps |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for servers, agents in sizes:
        r = measure(servers, agents)
        print(
            f"| {r['size']} | {r['steps_seconds']} s | {r['whole_seconds']} s | {r['modeled_lab']} s | "
            f"{r['modeled_ec2']} s | {r['steps']} | {r['max_parallel']} | {r['max_server_logins']} / "
            f"{r['max_agent_logins']} | {r['reconcile_writes']} | {r['add_agent_steps']}, "
            f"{r['add_agent_server_logins']}, {r['add_agent_seconds']} s, {r['add_agent_reconcile_writes']} "
            f"| {r['rerun_steps']} |",
            flush=True,
        )
        print(f"<!-- {r['size']} + 1 agent ran: {', '.join(r['add_agent_step_names'])} -->", flush=True)


if __name__ == "__main__":
    main()
