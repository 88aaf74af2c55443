"""The cluster simulator's own rules, pinned on tiny hand-built plans (no Pulumi program runs)."""

from __future__ import annotations

import pytest
from k3s_ha.bootstrap.commands import remote_command
from support import cluster_sim as cs
from support import engine
from support import step_model as sm

V1, V2 = "v1.36.4+k3s1", "v1.37.0+k3s1"
INIT = "cluster-init: true\ntoken: t\n"
JOIN = "server: https://192.0.2.10:6443\ntoken: t\n"


def text(script: str, **params: str) -> str:
    return remote_command(script, params, 60)


def command(name, host, create, stdin=None, delete=None, after=(), stdout=""):
    inputs = {"connection": {"host": host}, "create": create, "triggers": [f"{host}-machine"]}
    if stdin is not None:
        inputs["stdin"] = stdin
    if delete is not None:
        inputs["delete"] = delete
    return engine.Registration(
        type=sm.COMMAND, name=name, urn=f"urn:{name}", parent="", custom=True, inputs=inputs, secret_paths=set(),
        dependencies={f"urn:{a}" for a in after}, property_dependencies={}, options={"replaceOnChanges": ["triggers[*]"]},
        id=f"{name}-id", outputs={**inputs, "stdout": stdout},
    )  # fmt: skip


def node(host_name, address, role, config, version=V1, start_after=(), extra_params=None):
    """A host's install and start steps; the start prints the node's name."""
    install = command(f"{host_name}-install", address, text("install-k3s", K3S_VERSION=version, K3S_ROLE=role))
    start = command(
        f"{host_name}-start", address, text(f"start-{role}", K3S_VERSION=version, **(extra_params or {})),
        stdin=config, after=(f"{host_name}-install", *start_after), stdout=f"node-{host_name}\n",
    )  # fmt: skip
    return [install, start]


def run(*groups):
    return engine.Run([r for g in groups for r in g], {}, set(), [])


def three_servers(config_of=lambda i: INIT if i == 0 else JOIN, chained=True, version=V1):
    return [
        node(f"s{i}", f"192.0.2.1{i}", "server", config_of(i), version, (f"s{i - 1}-start",) if chained and i else ())
        for i in range(3)
    ]


def simulate(before, after):
    return cs.simulate(sm.plan_up(before, after))


def test_a_first_up_inits_once_and_joins_the_others():
    result = simulate(None, run(*three_servers()))
    assert result.violations == []
    assert [m.cluster for m in result.machines.values()] == [0, 0, 0]


def test_config_changes_restart_servers_one_at_a_time_when_chained():
    before = run(*three_servers())
    after = run(*three_servers(lambda i: (INIT if i == 0 else JOIN) + "x: 1\n"))
    assert simulate(before, after).violations == []


def test_unordered_server_restarts_are_flagged():
    before = run(*three_servers(chained=False))
    after = run(*three_servers(lambda i: (INIT if i == 0 else JOIN) + "x: 1\n", chained=False))
    assert simulate(before, after).broken() == {cs.ONE_SERVER_AT_A_TIME}


def test_an_agent_restarting_before_the_servers_is_flagged():
    def agent(cfg, after=()):
        return node("a0", "192.0.2.20", "agent", cfg, start_after=after)

    before = run(*three_servers(), agent(JOIN))
    bumped = JOIN + "x: 1\n"
    unordered = run(*three_servers(lambda i: INIT if i == 0 else bumped), agent(bumped))
    assert simulate(before, unordered).broken() == {cs.SERVERS_BEFORE_AGENTS}
    ordered = run(*three_servers(lambda i: INIT if i == 0 else bumped), agent(bumped, ("s2-start",)))
    assert simulate(before, ordered).violations == []


def test_a_binary_on_disk_is_not_a_running_upgrade(monkeypatch):
    # A start script that never compares the running version with the one on disk.
    monkeypatch.setattr(cs, "UPGRADE_EVIDENCE", ("no-such-check",))
    before = run(*three_servers())
    result = simulate(before, run(*three_servers(version=V2)))
    assert result.broken() == {cs.RUNS_WANTED_VERSION}
    assert {m.installed for m in result.machines.values()} == {V2}
    assert {m.running for m in result.machines.values()} == {V1}


def test_a_start_script_that_compares_versions_restarts_onto_the_new_binary(monkeypatch):
    monkeypatch.setattr(cs, "UPGRADE_EVIDENCE", ("k3s_ha_begin_start",))
    result = simulate(run(*three_servers()), run(*three_servers(version=V2)))
    assert result.violations == [] and {m.running for m in result.machines.values()} == {V2}


def test_cluster_init_on_a_fresh_server_after_the_first_up_is_flagged_unless_a_peer_answers():
    before = run(*three_servers())
    lonely = run(*three_servers(), node("s3", "192.0.2.13", "server", INIT))
    assert cs.NO_CLUSTER_INIT_AFTER_FIRST_UP in simulate(before, lonely).broken()
    peered = run(
        *three_servers(), node("s3", "192.0.2.13", "server", INIT, extra_params={"K3S_HA_PEERS": "192.0.2.11"})
    )
    assert cs.NO_CLUSTER_INIT_AFTER_FIRST_UP not in simulate(before, peered).broken()


@pytest.mark.parametrize(
    ("holder_of_s1", "broken"), [("192.0.2.10", set()), ("192.0.2.12", {cs.REMOVAL_FROM_A_MEMBER})]
)
def test_a_removal_needs_a_holder_that_is_still_a_member(holder_of_s1, broken):
    def remove(host):
        return text("remove-node", K3S_HA_NODE=f"node-{host}")

    members = [
        command("s1-member", holder_of_s1, text("confirm-node"), delete=remove("s1"), after=("s1-start",)),
        command("s2-member", "192.0.2.10", text("confirm-node"), delete=remove("s2"), after=("s2-start", "s1-member")),
    ]
    servers = three_servers()
    before = run(*servers, members)
    # Scaling in to one server: memberships go in reverse order, s2 first, then s1.
    result = simulate(before, run(servers[0]))
    assert result.broken() - {cs.ONE_CLUSTER} == broken


def _fourth_server(evict_role=None):
    """s3 joins the running three through s0; with `evict_role`, an evict step on s0 first."""
    evict = []
    after = ("s2-start",)
    if evict_role:
        params = {"K3S_ROLE": evict_role, "K3S_HA_ADDRESS": "192.0.2.13", "K3S_HA_CLUSTER": "dev"}
        evict = [command("s3-evict", "192.0.2.10", text("evict-node", **params), after=after)]
        after = ("s3-evict",)
    return [*evict, *node("s3", "192.0.2.13", "server", JOIN, start_after=after)]


def test_etcd_refuses_a_server_join_while_a_voter_is_dead():
    """etcd's strict reconfig check (server.go mayAddMember): no member add while the member
    that takes it is not connected to every voter."""
    result = cs.simulate(sm.plan_up(run(*three_servers()), run(*three_servers(), _fourth_server())), ("192.0.2.12",))
    (refused,) = [e for e in result.timeline if "join refused" in e.what]
    assert refused.step.name == "s3-start" and "mayAddMember" in refused.what
    (s3,) = [m for m in result.machines.values() if m.host == "192.0.2.13"]
    assert not s3.member and s3.running is None


def test_a_servers_evict_removes_the_dead_voter_first_and_an_agents_does_not():
    before = run(*three_servers())
    result = cs.simulate(sm.plan_up(before, run(*three_servers(), _fourth_server("server"))), ("192.0.2.12",))
    assert [e.what for e in result.timeline if e.step.name == "s3-evict"] == [
        "evict-node: deletes the Node of dead server host-192.0.2.12 (192.0.2.12)"
    ]
    assert not [e for e in result.timeline if "join refused" in e.what]
    refused = cs.simulate(sm.plan_up(before, run(*three_servers(), _fourth_server("agent"))), ("192.0.2.12",))
    assert [e.step.name for e in refused.timeline if "join refused" in e.what] == ["s3-start"]
