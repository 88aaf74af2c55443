"""Day-2 changes as a real `pulumi up` would carry them out (step_model.py), replayed on a
simulated cluster (cluster_sim.py), with the invariants every change must keep.

Each scenario records the program before and after a config change with the mock engine,
plans the `up` and simulates it. Invariants that today's code breaks are strict xfails
naming issue 10's item (see docs/step-model.md), so they flip when the defect is fixed.
"""

from __future__ import annotations

import functools

import pytest
from k3s_ha import HostArgs, K3sBootstrap, K3sBootstrapArgs, SshArgs
from support import cluster_sim as cs
from support import engine
from support import step_model as sm
from support.helpers import PRIVATE_KEY, SECRET_KEYS, config

NEXT_VERSION = "v1.36.5+k3s1"  # a pinned AWS CCM exists for its minor (versions.AWS_CCM_IMAGES)
NEW_PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nrotated-stand-in\n-----END OPENSSH PRIVATE KEY-----"


@functools.cache
def cluster(
    zones: tuple[str, ...] = ("eu-west-1a", "eu-west-1b", "eu-west-1c"), generated_key: bool = False, **overrides
) -> engine.Run:
    """The project's program; `zones`: what get_availability_zones(state="available") answers;
    `generated_key`: no SSH key configured, so the component generates one."""
    mocks = engine.CloudMocks(zones=zones)
    cfg = config(**{"agents": 2, **overrides})
    if generated_key:
        del cfg["sshPrivateKey"], cfg["sshPublicKey"]
    return engine.run(engine.main_program, cfg, SECRET_KEYS, mocks=mocks)


@functools.cache
def cluster_with_passthrough() -> engine.Run:
    """cluster(), plus a registries.yaml and a server setting (passed through to every node)."""
    cfg = config(
        agents=2,
        registries={"mirrors": {"docker.io": {"endpoint": ["https://mirror.example.internal"]}}},
        serverConfig={"disable": ["traefik"]},
    )
    return engine.run(engine.main_program, cfg, SECRET_KEYS)


def bootstrap_program(
    servers: int = 3,
    agents: int = 2,
    version: str | None = None,
    reimaged: tuple[str, ...] = (),
    moved: tuple[str, ...] = (),
    replace_on: bool = True,
):
    """K3sBootstrap on hosts the user brings (plain addresses); a host in `reimaged` is a new
    machine (its `replace_on` changed); one in `moved` is at a new address (40 higher).
    Without `replace_on` no host sets it (no evict steps)."""

    def host(role: str, index: int, first: int) -> HostArgs:
        name = f"{role}-{index}"
        address = f"192.0.2.{first + index + (40 if name in moved else 0)}"
        if not replace_on:
            return HostArgs(name=name, address=address)
        return HostArgs(name=name, address=address, replace_on=f"{name}-{'2' if name in reimaged else '1'}")

    def program():
        args = K3sBootstrapArgs(
            servers=[host("server", i, 10) for i in range(servers)],
            agents=[host("agent", i, 20) for i in range(agents)],
            ssh=SshArgs(user="ubuntu", private_key=PRIVATE_KEY),
        )
        if version:
            args["k3s_version"] = version
        return {"kubeconfig": K3sBootstrap("lab", args).kubeconfig}

    return program


@functools.cache
def bootstrap(**options):
    """bootstrap_program(**options), recorded once per set of options."""
    return engine.run(bootstrap_program(**options))


# name -> (before, after, names to replace as `pulumi up --replace` would[, machines that
# died before the up: instance names or bootstrap host addresses, cluster_sim.simulate])
SCENARIOS = {
    "bring-up 3+2": lambda: (None, cluster(), ()),
    "unchanged": lambda: (cluster(), cluster(), ()),
    "3->5 servers": lambda: (cluster(), cluster(servers=5), ()),
    "5->3 servers": lambda: (cluster(servers=5), cluster(), ()),
    "3->1 servers": lambda: (cluster(), cluster(servers=1), ()),
    "+2 agents": lambda: (cluster(), cluster(agents=4), ()),
    "-1 agent": lambda: (cluster(), cluster(agents=1), ()),
    "replace one agent": lambda: (cluster(), cluster(), ("dev-agent-1",)),
    "replace the first server": lambda: (cluster(), cluster(), ("dev-server-0",)),
    "replace the first server behind a load balancer": lambda: (
        cluster(loadBalancer=True),
        cluster(loadBalancer=True),
        ("dev-server-0",),
    ),
    "replace two servers": lambda: (cluster(), cluster(), ("dev-server-1", "dev-server-2")),
    "rotate the ssh key": lambda: (
        cluster(),
        cluster(sshPublicKey="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIrotated test@k3s-ha", sshPrivateKey=NEW_PRIVATE_KEY),
        (),
    ),
    "generated key, unchanged": lambda: (cluster(generated_key=True), cluster(generated_key=True), ()),
    "generated key, 3->5 servers": lambda: (cluster(generated_key=True), cluster(generated_key=True, servers=5), ()),
    # Switching from the generated key to one of your own is a key rotation.
    "generated key -> given key": lambda: (cluster(generated_key=True), cluster(), ()),
    "add registries and server settings": lambda: (cluster(), cluster_with_passthrough(), ()),
    "pin the image": lambda: (cluster(), cluster(amiId="ami-0ffffffffffffffff"), ()),
    # Zone a impaired: the available zones, sorted, shift by one and every subnet moves.
    "zone list shifts": lambda: (cluster(), cluster(zones=("eu-west-1b", "eu-west-1c", "eu-west-1d")), ()),
    "change the instance type": lambda: (cluster(), cluster(serverInstanceType="t3.large"), ()),
    "version upgrade": lambda: (cluster(), cluster(k3sVersion=NEXT_VERSION), ()),
    "bootstrap bring-up": lambda: (None, bootstrap(), ()),
    "bootstrap unchanged": lambda: (bootstrap(), bootstrap(), ()),
    "bootstrap 3->5 servers": lambda: (bootstrap(), bootstrap(servers=5), ()),
    "bootstrap version upgrade": lambda: (bootstrap(), bootstrap(version=NEXT_VERSION), ()),
    "bootstrap re-imaged agent": lambda: (bootstrap(), bootstrap(reimaged=("agent-1",)), ()),
    # A server's machine died (the lab, with real etcd 3.4): its replacement must join while
    # the dead one is still a voter, which etcd refuses until the evict step removes it.
    "replace a dead server": lambda: (cluster(), cluster(), ("dev-server-1",), ("dev-server-1",)),
    "replace the dead first server": lambda: (cluster(), cluster(), ("dev-server-0",), ("dev-server-0",)),
    "3->5 servers, replacing a dead one": lambda: (
        cluster(),
        cluster(servers=5),
        ("dev-server-2",),
        ("dev-server-2",),
    ),
    "bootstrap dead server, new machine at a new address": lambda: (
        bootstrap(),
        bootstrap(reimaged=("server-2",), moved=("server-2",)),
        (),
        ("192.0.2.12",),
    ),
    "bootstrap re-imaged server": lambda: (bootstrap(), bootstrap(reimaged=("server-1",)), ()),
}


@functools.cache
def outcome(scenario: str) -> tuple[sm.Plan, cs.Result]:
    before, after, replace, *dead = SCENARIOS[scenario]()
    plan = sm.plan_up(before, after, [after.urn(name) for name in replace])
    return plan, cs.simulate(plan, *dead)


def _cases():
    for scenario in SCENARIOS:
        for invariant in cs.INVARIANTS:
            yield pytest.param(scenario, invariant, id=f"{scenario} | {invariant}")


@pytest.mark.parametrize(("scenario", "invariant"), list(_cases()))
def test_invariant(scenario, invariant):
    _, result = outcome(scenario)
    assert result.of(invariant) == []


@pytest.mark.parametrize("scenario", ["unchanged", "bootstrap unchanged", "generated key, unchanged"])
def test_an_unchanged_config_runs_nothing(scenario):
    plan, result = outcome(scenario)
    assert plan.steps == [] and result.timeline == []
    assert plan.sames, "everything is still there"


@pytest.mark.parametrize("scenario", ["bring-up 3+2", "bootstrap bring-up"])
def test_bring_up_runs_cluster_init_once_and_joins_everyone_to_it(scenario):
    plan, result = outcome(scenario)
    assert {s.kind for s in plan.steps} == {sm.CREATE}
    inits = [e for e in result.timeline if e.what.startswith("cluster-init")]
    assert len(inits) == 1 and inits[0].step.name.endswith("-init")
    joined = [m for m in result.machines.values() if m.member]
    assert len(joined) == 5 and {m.cluster for m in joined} == {0}


def test_scaling_out_only_creates_and_joins_the_new_servers_one_at_a_time():
    plan, result = outcome("3->5 servers")
    # The reconcile step sees two more wanted names (and removes nobody); all else is new.
    assert {s.name for s in plan.steps if s.kind != sm.CREATE} == {"dev-members"}
    starts = [s for s in plan.steps if s.name.endswith("-start")]
    assert [s.name for s in starts] == ["dev-server-3-start", "dev-server-4-start"]
    assert plan.precedes(starts[0], starts[1])
    assert [e.step.name for e in result.timeline if "(re)starts" in e.what] == [s.name for s in starts]


@pytest.mark.parametrize("scenario", ["5->3 servers", "3->1 servers"])
def test_scaling_in_removes_servers_from_the_first_server_before_any_delete(scenario):
    """issue 10.4: the removal runs in the create/update phase, from the first server of the
    new configuration; the delete phase only forgets the old steps and terminates machines."""
    plan, result = outcome(scenario)
    (reconcile,) = plan.named("dev-removals")
    assert reconcile.kind == sm.UPDATE and reconcile.phase == sm.APPLY_PHASE
    assert reconcile.inputs_used["connection"]["host"] == cluster().outputs["serverPublicIps"][0]
    assert engine.script_name(reconcile.command_text()) == "remove-members"
    # The record step named them (record-members.sh's stdout is the removals' stdin).
    assert plan.precedes(plan.named("dev-members")[0], reconcile)
    assert reconcile.inputs_used["stdin"].count("leaving ") == 2
    for step in plan.steps:
        if step.kind in (sm.DELETE, sm.DELETE_REPLACED):
            assert step.command_text() is None, step
            if step.type == sm.INSTANCE:
                assert plan.precedes(reconcile, step)
    removed = [e.what for e in result.timeline if e.step is reconcile]
    assert len(removed) == (2 if scenario == "5->3 servers" else 2)
    assert all(w.startswith("removes server") for w in removed)
    assert result.of(cs.REMOVAL_FROM_A_MEMBER) == [] and result.of(cs.ONE_CLUSTER) == []


def test_replacing_servers_0_and_1_together_removes_both_from_server_0s_new_machine():
    before = cluster()
    plan = sm.plan_up(before, cluster(), [before.urn("dev-server-0"), before.urn("dev-server-1")])
    result = cs.simulate(plan)
    assert result.violations == []
    (reconcile,) = plan.named("dev-removals")
    assert [e.what.split(" (")[0] for e in result.timeline if e.step is reconcile] == [
        "removes server " + m.hostname
        for m in result.machines.values()
        if m.key[0] == "instance" and m.key[2] == 0 and m.key[1].endswith(("dev-server-0", "dev-server-1"))
    ]


def test_replacing_the_first_server_creates_the_new_one_first_and_removes_the_old_one_last():
    plan, result = outcome("replace the first server")
    new, old = plan.named("dev-server-0", sm.REPLACE)[0], plan.named("dev-server-0", sm.DELETE_REPLACED)[0]
    assert plan.precedes(new, old) and old.phase == sm.DELETE_PHASE
    # The old machine's own steps are deleted with the old state, before the old machine goes.
    old_uninstall = plan.named("dev-server-0-install", sm.DELETE_REPLACED)[0]
    assert plan.precedes(old_uninstall, old)
    # The new first server joins the running cluster through a surviving peer.
    start = next(e for e in result.timeline if e.step.name == "dev-server-0-start")
    assert "in cluster 0" in start.what
    # Everyone else's config names the first server's address, so they all restart: in turn.
    restarted = [step.name for step, _ in result.restarts]
    assert restarted[:3] == ["dev-server-0-start", "dev-server-1-start", "dev-server-2-start"]
    assert sorted(restarted[3:]) == ["dev-agent-0-start", "dev-agent-1-start"]


def test_behind_a_load_balancer_replacing_the_first_server_restarts_nobody_else():
    plan, result = outcome("replace the first server behind a load balancer")
    assert [step.name for step, _ in result.restarts] == ["dev-server-0-start"]
    assert plan.kinds().get("dev-server-1-start") is None and plan.kinds().get("dev-agent-0-start") is None


def test_a_version_upgrade_updates_every_node_in_place_servers_in_turn():
    plan, _ = outcome("version upgrade")
    assert {s.kind for s in plan.steps} == {sm.UPDATE}
    starts = [plan.named(f"dev-server-{i}-start")[0] for i in range(3)]
    assert plan.precedes(starts[0], starts[1]) and plan.precedes(starts[1], starts[2])
    for agent in ("dev-agent-0-start", "dev-agent-1-start"):
        assert plan.precedes(starts[2], plan.named(agent)[0])


def test_a_new_instance_type_applies_to_new_nodes_only():
    plan, result = outcome("change the instance type")
    # issue 10.2: no machine is stopped and started; existing servers keep their type.
    assert [s for s in plan.steps if s.type == sm.INSTANCE] == []
    assert result.restarts == []
    grown = sm.plan_up(cluster(), cluster(servers=5, serverInstanceType="t3.large"))
    created = {s.name: s for s in grown.steps if s.type == sm.INSTANCE}
    assert set(created) == {"dev-server-3", "dev-server-4"}
    assert all(s.kind == sm.CREATE and s.inputs_used["instanceType"] == "t3.large" for s in created.values())


@pytest.mark.parametrize("scenario", ["rotate the ssh key", "pin the image", "zone list shifts"])
def test_machine_wide_changes_leave_every_running_node_alone(scenario):
    # issue 10.2: a new key pair, a pinned image or a shifted zone list used to replace
    # every instance in one up; existing nodes now keep what they were created with.
    plan, result = outcome(scenario)
    assert {s.name for s in plan.steps if s.type == sm.INSTANCE} == set()
    assert [e for e in result.timeline if "cluster-init" in e.what] == []
    assert result.restarts == []


def test_a_rebuilt_first_server_joins_a_running_peer_and_never_runs_cluster_init():
    """issue 10.3: the first server's start is updated, not replaced, on a new machine; its
    update text forbids cluster-init, so it joins through a server that keeps running."""
    plan, result = outcome("replace the first server")
    assert plan.kinds()["dev-server-0-start"] == sm.UPDATE
    start = plan.named("dev-server-0-start")[0]
    assert "K3S_HA_CLUSTER_INIT=never" in start.command_text()
    assert result.of(cs.NO_CLUSTER_INIT_AFTER_FIRST_UP) == []


def test_with_every_server_rebuilt_at_once_the_first_fails_rather_than_initialise():
    """issue 10.3: with no peer left to join, the rebuilt first server refuses cluster-init."""
    before = cluster()
    replace = [before.urn(f"dev-server-{i}") for i in range(3)]
    result = cs.simulate(sm.plan_up(before, cluster(), replace))
    assert result.of(cs.NO_CLUSTER_INIT_AFTER_FIRST_UP) == []
    first = [e for e in result.timeline if e.step.name == "dev-server-0-start"]
    assert [e.what for e in first] == ["refuses cluster-init: no peer answers; the step fails"]


def test_a_reimaged_bootstrap_host_has_its_stale_node_evicted_before_it_joins_and_no_old_delete_runs():
    """issue 10.8: a new machine at the same address with the same name: a server removes the
    old Node (and its node-password secret) before the new machine's start, and no step made
    for the old machine runs anything against the new one."""
    plan, result = outcome("bootstrap re-imaged agent")
    # Agents' stale Nodes go in the record step on the first server (issue 16); the new
    # machine's install output is new, so it runs again before the new machine's start.
    (evict,) = plan.named("lab-members", sm.UPDATE)
    (start,) = plan.named("lab-agent-1-start", sm.REPLACE)
    assert "stdin" in evict.changed
    assert plan.precedes(plan.named("lab-agent-1-install", sm.REPLACE)[0], evict)
    assert plan.precedes(evict, start)
    assert evict.inputs_used["connection"]["host"] == "192.0.2.10"  # the first server
    # The re-imaged agent's line carries its fresh install's stamp, which the record has not seen.
    assert any(
        row.address == "192.0.2.21" and row.stamp for row in engine.member_rows(evict.inputs_used["stdin"]).values()
    )
    for step in plan.steps:
        if step.kind in (sm.DELETE, sm.DELETE_REPLACED):
            assert step.command_text() is None, step
    assert result.of(cs.OLD_DELETES_ON_OLD_MACHINES) == [] and result.of(cs.ONE_CLUSTER) == []


def test_a_version_change_with_a_new_first_server_is_still_checked_on_a_surviving_server():
    """issue 10.10: the first server's guard runs on its new, empty machine and passes; the
    other servers' guards ask the running cluster before anything downloads."""
    before = cluster()
    plan = sm.plan_up(before, cluster(k3sVersion=NEXT_VERSION), [before.urn("dev-server-0")])
    guards = [s for s in plan.steps if s.name.endswith("version-guard")]
    assert {s.name for s in guards} == {"dev-version-guard", "dev-server-1-version-guard", "dev-server-2-version-guard"}
    survivor = plan.named("dev-server-1-version-guard")[0]
    assert survivor.kind == sm.UPDATE
    assert survivor.inputs_used["connection"]["host"] == before.outputs["serverPublicIps"][1]
    for install in (s for s in plan.steps if s.name.endswith("-install") and s.phase == sm.APPLY_PHASE):
        # Agents' downloads only stage the release (install-k3s.sh); their starts wait.
        step = install if "server" in install.name else plan.named(install.name.replace("-install", "-start"))[0]
        assert plan.precedes(survivor, step), step


def test_a_generated_key_is_kept_across_runs_and_scaling():
    """The generated key is created once and stays in the state: a later `up` neither replaces
    it nor the key pair, so Pulumi keeps logging in with the key the machines were given."""
    plan, _ = outcome("generated key, 3->5 servers")
    touched = {s.name for s in plan.steps}
    assert "dev-ssh-key" not in touched and "dev-ssh" not in touched
    assert {"dev-ssh-key", "dev-ssh"} <= {s.name for s in plan.sames}
    assert {s.name for s in plan.steps if s.kind == sm.CREATE} >= {"dev-server-3", "dev-server-4"}


def test_switching_from_the_generated_key_to_your_own_applies_to_new_nodes_only():
    """A key rotation (README, "Day 2"): a new public key is a new key pair, but running machines
    ignore `keyName` (issue 10.2), so none is replaced; they keep the generated key until you
    add yours to them by hand or replace them one at a time."""
    plan, result = outcome("generated key -> given key")
    assert plan.named("dev-ssh-key", sm.DELETE)
    assert plan.named("dev-ssh", sm.REPLACE)
    assert {s.name for s in plan.steps if s.type == sm.INSTANCE} == set()
    assert result.of(cs.NO_CLUSTER_INIT_AFTER_FIRST_UP) == []


def test_new_registries_and_server_settings_restart_servers_one_at_a_time_then_agents():
    """Every node's start step gets a new stdin; the join chain keeps the restarts in order."""
    plan, result = outcome("add registries and server settings")
    assert {s.kind for s in plan.steps} == {sm.UPDATE}
    starts = [s for s in plan.steps if s.name.endswith("-start")]
    assert {s.name for s in starts} == {f"dev-server-{i}-start" for i in range(3)} | {
        "dev-agent-0-start",
        "dev-agent-1-start",
    }
    servers = [plan.named(f"dev-server-{i}-start")[0] for i in range(3)]
    assert plan.precedes(servers[0], servers[1]) and plan.precedes(servers[1], servers[2])
    for agent in ("dev-agent-0-start", "dev-agent-1-start"):
        assert plan.precedes(servers[2], plan.named(agent)[0])


def _dead_member_gone_and_replacement_joined(result: cs.Result, dead: str) -> None:
    (machine,) = [m for m in result.machines.values() if not m.alive and m.host == dead]
    assert not machine.member
    assert not [e for e in result.timeline if "join refused" in e.what]
    assert result.of(cs.ONE_CLUSTER) == []


@pytest.mark.parametrize(
    ("scenario", "dead", "evict", "holder"),
    [
        ("replace a dead server", "dev-server-1", "dev-server-1-evict", "dev-server-0"),
        ("replace the dead first server", "dev-server-0", "dev-server-0-evict", "dev-server-1"),
    ],
)
def test_a_dead_servers_replacement_joins_after_its_evict_removed_the_dead_member(scenario, dead, evict, holder):
    """Real etcd refuses the replacement's learner add while the dead server is a voter
    (server.go mayAddMember, strict reconfig check): the evict step, which runs on a live
    server before the new machine's start, deletes the dead server's Node (and so its
    member) first."""
    plan, result = outcome(scenario)
    (step,) = [s for s in plan.steps if s.name == evict and s.phase == sm.APPLY_PHASE]
    (start,) = [s for s in plan.steps if s.name == f"{dead}-start" and s.phase == sm.APPLY_PHASE]
    assert plan.precedes(step, start)
    assert "K3S_HA_CLUSTER=dev" in step.command_text() and "K3S_ROLE=server" in step.command_text()
    removal = [e for e in result.timeline if e.step.name == evict and "dead server" in e.what]
    assert len(removal) == 1 and removal[0].host == holder
    _dead_member_gone_and_replacement_joined(result, dead)


def test_scaling_out_while_replacing_a_dead_server_removes_it_before_any_server_joins():
    """Every server's evict looks for dead servers (they run side by side, each before its own
    start): whichever runs first removes it, before the first join."""
    plan, result = outcome("3->5 servers, replacing a dead one")
    (removal,) = [e for e in result.timeline if "deletes the Node of dead server" in e.what]
    assert removal.step.name in {f"dev-server-{i}-evict" for i in (2, 3, 4)}
    joins = [e for e in result.timeline if e.step.name.endswith("-start") and "starts k3s" in e.what]
    assert len(joins) == 3 and all(result.timeline.index(removal) < result.timeline.index(j) for j in joins)
    _dead_member_gone_and_replacement_joined(result, "dev-server-2")


def test_scaling_out_while_a_server_is_dead_lets_the_new_servers_join():
    """The dead server stays in the configuration (not replaced), so the cluster is still
    short of it after the up, but it no longer blocks the new servers' joins."""
    before = cluster()
    result = cs.simulate(sm.plan_up(before, cluster(servers=5)), ("dev-server-2",))
    assert not [e for e in result.timeline if "join refused" in e.what]
    new = [m for m in result.machines.values() if m.host in ("dev-server-3", "dev-server-4")]
    assert len(new) == 2 and all(m.member and m.running and m.cluster == 0 for m in new)
    (dead,) = [m for m in result.machines.values() if m.host == "dev-server-2"]
    assert not dead.member


def test_a_dead_bootstrap_server_on_a_new_machine_joins_after_its_evict():
    plan, result = outcome("bootstrap dead server, new machine at a new address")
    assert [e.step.name for e in result.timeline if "dead server" in e.what] == ["lab-server-2-evict"]
    _dead_member_gone_and_replacement_joined(result, "192.0.2.12")


def test_without_an_evict_step_the_dead_servers_replacement_is_refused_by_etcd():
    """A host moved to a new machine without `replace_on` has no evict step: nothing removes
    the dead voter before the join, which etcd refuses (the reconcile removes it only after
    every start); the new machine ends outside the cluster."""
    before = bootstrap(replace_on=False)
    plan = sm.plan_up(before, bootstrap(moved=("server-2",), replace_on=False))
    assert not [s for s in plan.steps if s.name.endswith("-evict")]
    result = cs.simulate(plan, ("192.0.2.12",))
    (refused,) = [e for e in result.timeline if "join refused" in e.what]
    assert refused.step.name == "lab-server-2-start" and refused.host == "192.0.2.52"
    assert "mayAddMember" in refused.what
    assert any("192.0.2.52" in v.message for v in result.of(cs.ONE_CLUSTER))
