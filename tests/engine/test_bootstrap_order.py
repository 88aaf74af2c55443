"""What the engine receives for the bootstrap steps: order, parallelism, parents, options."""

import pytest
import yaml
from k3s_ha.bootstrap.commands import parse_command
from k3s_ha.bootstrap.node_config import END_MARKER
from support import engine
from support.helpers import SECRET_KEYS, commands, config


@pytest.fixture(scope="module")
def run():
    return engine.run(engine.main_program, config(servers=5, agents=3), SECRET_KEYS)


def test_every_node_downloads_k3s_in_parallel_right_after_boot(run):
    installs = {n: c for n, c in commands(run).items() if n.endswith("-install")}
    assert sorted(installs) == sorted(
        [f"dev-server-{i}-install" for i in range(5)] + [f"dev-agent-{i}-install" for i in range(3)]
    )
    command_urns = {c.urn for c in commands(run).values()}
    guards = {run.urn("dev-version-guard"), *(run.urn(f"dev-server-{i}-version-guard") for i in range(1, 5))}
    for name, install in installs.items():
        # Only the (seconds-long) version guards on the servers hold a server's back; an
        # agent's waits for nothing but its own bundle (on a running agent it only stages:
        # install-k3s.sh), and its start waits for every guard through the servers.
        machine = name[: -len("-install")]
        assert install.dependencies & command_urns == (guards if "server" in name else set()), name
        assert run.urn(machine) in install.dependencies
        if "agent" in name:
            assert run.urn(f"{machine}-bundle") in install.dependencies
            start = f"{machine}-start"
            assert all(run.transitively_depends_on(start, guard.rsplit("::", 1)[1]) for guard in guards), start


def test_first_server_starts_the_cluster_after_its_download(run):
    """The init step starts the cluster on the first server once it is installed; the first
    server's start step follows it."""
    assert run.depends_on("dev-init", "dev-server-0-install")
    assert run.depends_on("dev-server-0-start", "dev-init")
    for name in ("dev-init", "dev-server-0-start"):
        assert engine.script_name(run.named(name).inputs["create"]) == "start-server"
        assert run.named(name).inputs["connection"]["host"] == run.named("dev-server-0").outputs["publicIp"]


def test_servers_join_one_at_a_time_in_order(run):
    for i in range(1, 5):
        name = f"dev-server-{i}-start"
        assert run.depends_on(name, f"dev-server-{i - 1}-start"), name
        assert run.depends_on(name, f"dev-server-{i}-install"), name
    # Nothing lets a later server start before an earlier one.
    for i in range(5):
        for j in range(i + 1, 5):
            assert not run.transitively_depends_on(f"dev-server-{i}-start", f"dev-server-{j}-start")


def test_every_join_waits_for_the_init_server(run):
    for name in [f"dev-server-{i}-start" for i in range(1, 5)] + [f"dev-agent-{i}-start" for i in range(3)]:
        assert run.transitively_depends_on(name, "dev-server-0-start"), name


def test_agents_join_after_all_servers_and_in_parallel(run):
    for i in range(3):
        name = f"dev-agent-{i}-start"
        assert run.depends_on(name, "dev-server-4-start")
        assert run.depends_on(name, f"dev-agent-{i}-install")
        for j in range(3):
            if i != j:
                assert not run.transitively_depends_on(name, f"dev-agent-{j}-start")


def test_longest_chain_of_starts_is_servers_then_one_agent(run):
    starts = [n for n in commands(run) if n.endswith("-start")]

    def depth(name):
        deps = [d for d in starts if run.depends_on(name, d)]
        return 1 + max((depth(d) for d in deps), default=0)

    assert max(depth(n) for n in starts) == 5 + 1


def test_every_resource_is_parented_inside_the_component(run):
    components = {r.urn for r in run.registrations if r.type.startswith("k3s-ha:index:")}
    cluster = next(r for r in run.registrations if r.type == "k3s-ha:index:K3sCluster")
    assert "pulumi:pulumi:Stack" in cluster.parent
    all_urns = {r.urn for r in run.registrations}
    for r in run.registrations:
        if r is cluster:
            continue
        assert r.parent in all_urns, (r.name, r.parent)
        # Walk up: every resource ends at the cluster component.
        parent = r.parent
        while parent != cluster.urn:
            parent = run.by_urn(parent).parent
    bootstrap = next(r for r in run.registrations if r.type == "k3s-ha:index:K3sBootstrap")
    for c in commands(run).values():
        assert c.parent == bootstrap.urn
    assert bootstrap.parent == cluster.urn
    assert components == {cluster.urn, bootstrap.urn}


def test_a_new_machine_gets_a_fresh_install_and_join(run):
    for name, cmd in commands(run).items():
        if name in ("dev-init", "dev-server-0-start", "dev-members", "dev-removals"):
            continue  # never replaced: see test_cluster_init_is_only_ever_in_the_first_servers_create
        if name in ("dev-kubeconfig", "dev-version-guard"):
            machine = "dev-server-0"
        elif name.endswith("-version-guard"):
            machine = name[: -len("-version-guard")]
        else:
            machine = name.rsplit("-", 1)[0]
        assert cmd.inputs["triggers"] == [engine.instance_id(machine)], name
        assert run.urn(machine) in cmd.property_dependencies["triggers"], name


def test_cluster_init_is_only_ever_in_the_init_step_which_never_runs_again(run):
    """issue 10.3 and 18.2: only the init step may run cluster-init, and it runs once in the
    cluster's life: no triggers, and every input in ignore_changes, so neither a changed config
    nor a new first server runs it again (its stdout, the CA hash, stays in the state). The
    first server's start forbids cluster-init and joins a peer that presents that CA instead;
    a new first server is an update of it (no triggers)."""
    init = run.named("dev-init")
    assert "triggers" not in init.inputs and "update" not in init.inputs
    assert "K3S_HA_INIT=1" in init.inputs["create"] and "K3S_HA_CLUSTER_INIT" not in init.inputs["create"]
    assert set(init.options["ignoreChanges"]) >= set(init.inputs)
    first = run.named("dev-server-0-start")
    assert "triggers" not in first.inputs
    assert "K3S_HA_CLUSTER_INIT=never" in first.inputs["create"]
    assert f"K3S_HA_CA_HASH={engine.MOCK_CA_HASH}" in first.inputs["create"]
    # The machine's identity is in the text, so a new machine at the same address re-runs it.
    assert f"K3S_HA_MACHINE={engine.instance_id('dev-server-0')}" in first.inputs["create"]
    for name, cmd in commands(run).items():
        assert "update" not in cmd.inputs, name
        if name != "dev-init":
            assert "K3S_HA_INIT" not in cmd.inputs["create"], name
            assert not cmd.options.get("ignoreChanges"), name


def _dial_seconds(limit: int, per_dial: int, refused: bool) -> float:
    """pulumi-command's dialing (real-behaviour.md): a dropped dial waits the whole
    per-dial timeout, a refused one fails at once; backoff 100 ms x1.5 capped at 5 s."""
    backoff = sum(min(0.1 * 1.5**i, 5.0) for i in range(int(limit)))
    return backoff + (0 if refused else limit * per_dial)


def test_an_unreachable_node_costs_minutes_not_an_hour_and_a_booting_vm_gets_a_minute(run):
    """issue 10.5: 100 dials x 30 s was about an hour per step for a dead host."""
    for name, cmd in commands(run).items():
        conn = cmd.inputs["connection"]
        dead = _dial_seconds(conn["dialErrorLimit"], conn["perDialTimeout"], refused=False)
        booting = _dial_seconds(conn["dialErrorLimit"], conn["perDialTimeout"], refused=True)
        assert dead <= 5 * 60, (name, dead)
        assert booting >= 60, (name, booting)
        assert conn["user"] == "ubuntu"


def test_steps_rely_on_their_own_bounds_and_send_no_previous_output(run):
    for name, cmd in commands(run).items():
        # custom_timeouts do nothing for pulumi-command (real-behaviour.md): none pretend to.
        assert cmd.options["customTimeouts"] == {"create": "", "update": "", "delete": ""}, name
        # Ubuntu's sshd refuses PULUMI_COMMAND_STDOUT/STDERR env requests with a warning.
        assert cmd.inputs["addPreviousOutputInEnv"] is False, name
    assert "K3S_READY_TIMEOUT=600" in run.named("dev-server-1-start").inputs["create"]


def test_start_steps_are_given_what_their_config_says_instead_of_parsing_it_back():
    """Issue 16: Python passes the join URL and the data dir it wrote into each node's
    config.yaml; the start scripts do not read them back from the YAML."""
    given = engine.run(
        engine.main_program,
        config(agents=2, serverConfig={"data-dir": "/data/k3s"}, agentConfig={"data-dir": "/data/agent"}),
        SECRET_KEYS,
    )
    seen = set()
    for name, cmd in commands(given).items():
        script, params = parse_command(cmd.inputs["create"])
        if script not in ("start-server", "start-agent"):
            continue
        settings = yaml.safe_load(cmd.inputs["stdin"].split(END_MARKER)[0])
        joins = settings.get("server") if script == "start-server" else None
        assert params.get("K3S_HA_JOIN_URL") == joins, name
        assert params["K3S_HA_DATA_DIR"] == settings["data-dir"], name
        seen.add((script, joins is None))
    assert seen == {("start-server", True), ("start-server", False), ("start-agent", True)}
