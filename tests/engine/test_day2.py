"""Day 2 as the engine would see it: run the program twice and compare what each run registers.

The engine's diff is driven by inputs (and `triggers` replaces), so "untouched" means: the
same resource with the same inputs. Dependencies decide update and delete order.
"""

import json

import pytest
from k3s_ha.aws.machines import NEW_NODES_ONLY
from k3s_ha.bootstrap.steps.membership import NODES_END
from support import engine, step_model
from support.helpers import PRIVATE_KEY, SECRET_KEYS, commands, config, stdin_yaml

CMD = "command:remote:Command"


def _run(**overrides):
    return engine.run(engine.main_program, config(**overrides), SECRET_KEYS)


def _by_key(run):
    return {(r.type, r.name): r for r in run.registrations}


def _changed(before, after):
    a, b = _by_key(before), _by_key(after)
    return {
        "added": sorted(k[1] for k in b.keys() - a.keys()),
        "removed": sorted(k[1] for k in a.keys() - b.keys()),
        "inputs": sorted(k[1] for k in a.keys() & b.keys() if a[k].inputs != b[k].inputs),
    }


@pytest.fixture(scope="module")
def base():
    return _run(agents=2)


def test_unchanged_config_changes_nothing(base):
    again = _run(agents=2)
    assert _changed(base, again) == {"added": [], "removed": [], "inputs": []}
    for key, r in _by_key(base).items():
        other = _by_key(again)[key]
        assert {base.by_urn(u).name for u in r.dependencies} == {again.by_urn(u).name for u in other.dependencies}


def test_one_more_agent_adds_only_that_agents_resources(base):
    more = _run(agents=3)
    change = _changed(base, more)
    # The record step on the first server sees one more agent (its list of wanted nodes and
    # of agent machines); the removals step does not (its input is what the record step
    # prints: the nodes that left), no other node's step changes, and no server step is added
    # for it (issue 16).
    assert change["removed"] == [] and change["inputs"] == ["dev-members"]
    assert change["added"] == [
        "dev-agent-2",
        "dev-agent-2-bundle",
        "dev-agent-2-host-key",
        "dev-agent-2-install",
        "dev-agent-2-start",
    ]


def test_three_to_five_servers_leaves_existing_nodes_alone_and_joins_one_at_a_time(base):
    five = _run(servers=5, agents=2)
    change = _changed(base, five)
    assert change["removed"] == [] and change["inputs"] == ["dev-members"]
    assert change["added"] == [
        f"dev-server-{i}{suffix}"
        for i in (3, 4)
        for suffix in ("", "-bundle", "-evict", "-host-key", "-install", "-member", "-start", "-version-guard")
    ]
    assert five.depends_on("dev-server-3-start", "dev-server-2-start")
    assert five.depends_on("dev-server-4-start", "dev-server-3-start")
    # Agents now wait for the last server; that is an ordering change, not an input change.
    assert five.depends_on("dev-agent-0-start", "dev-server-4-start")


def test_a_version_bump_upgrades_in_place_servers_one_at_a_time_then_agents(base):
    bumped = _run(agents=2, k3sVersion="v1.36.5+k3s1")
    change = _changed(base, bumped)
    assert change["added"] == [] and change["removed"] == []
    assert all(bumped.named(n).type == CMD for n in change["inputs"]), "no instance changes"
    # The init step's text names the version too, but no change of its inputs ever runs it
    # again (ignore_changes: steps/servers.py): the step model plans nothing for it.
    init = bumped.named("dev-init")
    assert set(init.options["ignoreChanges"]) >= set(init.inputs)
    assert not [s for s in step_model.plan_up(base, bumped).steps if s.name == "dev-init"]
    change["inputs"] = [n for n in change["inputs"] if n != "dev-init"]
    assert set(change["inputs"]) == {
        "dev-version-guard",
        "dev-server-1-version-guard",
        "dev-server-2-version-guard",
        *[f"dev-{h}-install" for h in ("server-0", "server-1", "server-2", "agent-0", "agent-1")],
        *[f"dev-{h}-start" for h in ("server-0", "server-1", "server-2", "agent-0", "agent-1")],
    }
    for name in change["inputs"]:
        # Same triggers, so each step is an update (the script runs again), never a replace.
        assert _by_key(base)[(CMD, name)].inputs.get("triggers") == bumped.named(name).inputs.get("triggers")
        assert "K3S_VERSION=v1.36.5+k3s1" in bumped.named(name).inputs["create"]
    # No server downloads, and no node starts, before every guard has accepted the new version
    # on the running cluster; agents only stage it (install-k3s.sh), so their downloads start at once.
    guards = ("dev-version-guard", "dev-server-1-version-guard", "dev-server-2-version-guard")
    for name in change["inputs"]:
        if name.endswith("-install") and "server" in name:
            assert all(bumped.depends_on(name, guard) for guard in guards), name
        if name.endswith("-start"):
            assert all(bumped.transitively_depends_on(name, guard) for guard in guards), name
    assert bumped.depends_on("dev-server-1-start", "dev-server-0-start")
    assert bumped.depends_on("dev-server-2-start", "dev-server-1-start")
    for i in range(2):
        assert bumped.depends_on(f"dev-agent-{i}-start", "dev-server-2-start")


def test_a_newly_published_image_changes_only_ignored_inputs(base):
    newer = engine.run(
        engine.main_program, config(agents=2), SECRET_KEYS, mocks=engine.CloudMocks(ami="ami-0ffffffffffffffff")
    )
    change = _changed(base, newer)
    assert change["added"] == [] and change["removed"] == []
    for name in change["inputs"]:
        old, new = _by_key(base)[("aws:ec2/instance:Instance", name)], newer.named(name)
        assert {k for k in new.inputs if new.inputs[k] != old.inputs.get(k)} == {"ami"}
        assert new.options["ignoreChanges"] == [*NEW_NODES_ONLY, "volumeTags", 'tags["k3s-ha-ssh-host-key"]']


def test_removing_an_agent_leaves_the_others_alone(base):
    fewer = _run(agents=1)
    change = _changed(base, fewer)
    assert change["added"] == [] and change["inputs"] == ["dev-members"]
    assert change["removed"] == [
        "dev-agent-1",
        "dev-agent-1-bundle",
        "dev-agent-1-host-key",
        "dev-agent-1-install",
        "dev-agent-1-start",
    ]


def test_a_leaving_agent_is_removed_by_the_first_server_and_its_old_steps_run_nothing(base):
    """issue 10.4: removal runs in the create/update phase from the first server of the new
    configuration (record-members.sh names it, remove-members.sh takes it out); the old
    steps' deletes run nothing on the old host."""
    fewer = _run(agents=1)
    record, removals = fewer.named("dev-members"), fewer.named("dev-removals")
    for step in (record, removals):
        assert step.inputs["connection"]["host"] == fewer.outputs["serverPublicIps"][0]
    assert engine.script_name(record.inputs["create"]) == "record-members"
    assert engine.script_name(removals.inputs["create"]) == "remove-members"
    wanted = list(engine.member_rows(record.inputs["stdin"]))
    assert engine.node_name("dev-agent-1-start") not in wanted
    assert sorted(wanted) == sorted(
        engine.node_name(f"dev-{h}-start") for h in ("server-0", "server-1", "server-2", "agent-0")
    )
    # What leaves is what the record step printed; what the step model puts there is the
    # agent the old record named and the new one does not.
    plan = step_model.plan_up(base, fewer)
    (ran,) = plan.named("dev-removals", step_model.UPDATE)
    leaving, key = ran.inputs_used["stdin"].split(NODES_END + "\n")
    assert [line.split()[:3] for line in leaving.splitlines()] == [
        ["leaving", engine.node_name("dev-agent-1-start"), "agent"]
    ]
    # It runs after every node has started, and the cluster's removal key (never the
    # operator's login key, issue 18.3) reaches it only on stdin.
    for start in ("dev-server-2-start", "dev-agent-0-start"):
        assert fewer.depends_on("dev-removals", start)
    assert key == fewer.named("dev-removal-key").outputs["privateKeyOpenssh"] and removals.is_secret("stdin")
    assert PRIVATE_KEY not in ran.inputs_used["stdin"]
    assert key not in removals.inputs["create"] and key not in record.inputs["stdin"]
    for name in ("dev-agent-1-start", "dev-agent-1-install"):
        assert "delete" not in base.named(name).inputs, name


def test_servers_leave_one_at_a_time():
    five = _run(servers=5)
    fewer = _run(servers=3)
    change = _changed(five, fewer)
    assert change["inputs"] == ["dev-members"] and change["added"] == []  # dev-removals: see the step model
    assert change["removed"] == [
        f"dev-server-{i}{suffix}"
        for i in (3, 4)
        for suffix in ("", "-bundle", "-evict", "-host-key", "-install", "-member", "-start", "-version-guard")
    ]
    # One removals step removes both, one after the other (remove-members.sh).
    for name in change["removed"]:
        if five.named(name).type == CMD:
            assert "delete" not in five.named(name).inputs, name


def test_memberships_are_replaced_only_with_their_own_machine(base):
    for name, cmd in commands(base).items():
        if name.endswith("-member"):
            host = name[: -len("-member")]
            assert cmd.inputs["triggers"] == [engine.instance_id(host)], name
    # The first server's membership is held by the second server.
    assert base.named("dev-server-0-member").inputs["connection"]["host"] == base.outputs["serverPublicIps"][1]
    assert base.depends_on("dev-server-0-member", "dev-server-1-start")


def test_a_rebuilt_first_server_probes_its_peers_before_cluster_init(base):
    create = base.named("dev-server-0-start").inputs["create"]
    private = base.outputs["serverPrivateIps"]
    assert f"K3S_HA_PEERS='{private[1]} {private[2]}'" in create
    prod = engine.run(engine.main_program, config(loadBalancer=True, servers=5), SECRET_KEYS, stack="prod")
    peers = prod.named("prod-server-0-start").inputs["create"].split("K3S_HA_PEERS='")[1].split("'")[0].split()
    assert peers == ["prod-api-0123456789.elb.eu-west-1.amazonaws.com", *prod.outputs["serverPrivateIps"][1:3]]


def test_s3_snapshots_get_a_private_encrypted_versioned_bucket_kept_on_destroy():
    run = engine.run(engine.main_program, config(etcdS3=True, agents=1), SECRET_KEYS)
    bucket = run.by_type("aws:s3/bucket:Bucket")[0]
    assert bucket.options["retainOnDelete"] is True
    assert bucket.inputs["forceDestroy"] is False
    sse = run.by_type("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")[0]
    assert sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    versioning = run.by_type("aws:s3/bucketVersioning:BucketVersioning")[0]
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
    block = run.by_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")[0].inputs
    assert all(
        block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    [snapshots] = [p for p in run.by_type("aws:iam/rolePolicy:RolePolicy") if p.name == "dev-etcd-snapshots"]
    policy = json.loads(snapshots.inputs["policy"])
    resources = {r for s in policy["Statement"] for r in [s["Resource"]]}
    assert resources == {
        "arn:aws:s3:::dev-etcd-snapshots-20261126",
        "arn:aws:s3:::dev-etcd-snapshots-20261126/k3s-ha/k3s-ha/dev/dev/*",
    }
    actions = [a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    assert not any("*" == a or a.endswith(":*") for a in actions)
    for machine in run.by_type("aws:ec2/instance:Instance"):
        has_profile = machine.inputs.get("iamInstanceProfile") == "dev-server-generated"
        assert has_profile == ("-server-" in machine.name), machine.name
    cfg = stdin_yaml(run, "dev-server-0-start")
    assert cfg["etcd-s3"] is True and cfg["etcd-s3-bucket"] == "dev-etcd-snapshots-20261126"
    assert cfg["etcd-s3-region"] == "eu-west-1" and cfg["etcd-s3-folder"] == "k3s-ha/k3s-ha/dev/dev/"


def test_an_existing_bucket_is_used_without_creating_one():
    run = engine.run(engine.main_program, config(etcdS3Bucket="team-backups"), SECRET_KEYS)
    assert run.by_type("aws:s3/bucket:Bucket") == []
    cfg = stdin_yaml(run, "dev-server-1-start")
    assert cfg["etcd-s3-bucket"] == "team-backups" and cfg["etcd-s3-region"] == "eu-west-1"
