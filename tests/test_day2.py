"""Day 2 as the engine would see it: run the program twice and compare what each run registers.

The engine's diff is driven by inputs (and `triggers` replaces), so "untouched" means: the
same resource with the same inputs. Dependencies decide update and delete order.
"""

import json

import engine
import pytest
import yaml
from helpers import SECRET_KEYS, commands, config

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
    assert change["removed"] == [] and change["inputs"] == []
    assert change["added"] == [
        "dev-agent-2",
        "dev-agent-2-host-key",
        "dev-agent-2-install",
        "dev-agent-2-member",
        "dev-agent-2-start",
    ]


def test_three_to_five_servers_leaves_existing_nodes_alone_and_joins_one_at_a_time(base):
    five = _run(servers=5, agents=2)
    change = _changed(base, five)
    assert change["removed"] == [] and change["inputs"] == []
    assert change["added"] == [
        "dev-server-3",
        "dev-server-3-host-key",
        "dev-server-3-install",
        "dev-server-3-member",
        "dev-server-3-start",
        "dev-server-4",
        "dev-server-4-host-key",
        "dev-server-4-install",
        "dev-server-4-member",
        "dev-server-4-start",
    ]
    assert five.depends_on("dev-server-3-start", "dev-server-2-start")
    assert five.depends_on("dev-server-4-start", "dev-server-3-start")
    # Agents now wait for the last server; that is an ordering change, not an input change.
    assert five.depends_on("dev-agent-0-start", "dev-server-4-start")


def test_a_version_bump_upgrades_in_place_servers_one_at_a_time_then_agents(base):
    bumped = _run(agents=2, k3sVersion="v1.37.0+k3s1")
    change = _changed(base, bumped)
    assert change["added"] == [] and change["removed"] == []
    assert all(bumped.named(n).type == CMD for n in change["inputs"]), "no instance changes"
    assert set(change["inputs"]) == {
        "dev-version-guard",
        *[f"dev-{h}-install" for h in ("server-0", "server-1", "server-2", "agent-0", "agent-1")],
        *[f"dev-{h}-start" for h in ("server-0", "server-1", "server-2", "agent-0", "agent-1")],
    }
    for name in change["inputs"]:
        # Same triggers, so each step is an update (the script runs again), never a replace.
        assert _by_key(base)[(CMD, name)].inputs.get("triggers") == bumped.named(name).inputs.get("triggers")
        assert "K3S_VERSION=v1.37.0+k3s1" in bumped.named(name).inputs["create"]
    # Nothing downloads before the guard has accepted the new version on the running cluster.
    for name in change["inputs"]:
        if name.endswith("-install"):
            assert bumped.depends_on(name, "dev-version-guard")
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
        assert new.options["ignoreChanges"] == ["ami", "userData", 'tags["k3s-ha-ssh-host-key"]']


def test_removing_an_agent_leaves_the_others_alone(base):
    fewer = _run(agents=1)
    change = _changed(base, fewer)
    assert change["added"] == [] and change["inputs"] == []
    assert change["removed"] == [
        "dev-agent-1",
        "dev-agent-1-host-key",
        "dev-agent-1-install",
        "dev-agent-1-member",
        "dev-agent-1-start",
    ]


def test_a_leaving_agent_is_drained_and_deleted_from_a_server_then_uninstalled(base):
    member, start, install = (base.named(f"dev-agent-1-{s}") for s in ("member", "start", "install"))
    node = engine.node_name("dev-agent-1-start")
    # Held by the first server: kubectl runs there, not on the leaving node.
    assert member.inputs["connection"]["host"] == base.outputs["serverPublicIps"][0]
    assert "k3s-ha-remove-node" in member.inputs["delete"] and f"K3S_HA_NODE={node}" in member.inputs["delete"]
    assert "k3s-ha-confirm-node" in member.inputs["create"]
    assert "k3s-ha-uninstall-k3s" in install.inputs["delete"] and "K3S_ROLE=agent" in install.inputs["delete"]
    assert install.inputs["connection"]["host"] == base.outputs["agentPublicIps"][1]
    # The engine deletes dependents first: member (drain, delete Node) -> start -> install
    # (uninstall) -> instance (terminate).
    assert base.depends_on("dev-agent-1-member", "dev-agent-1-start")
    assert base.transitively_depends_on("dev-agent-1-start", "dev-agent-1-install")
    assert base.urn("dev-agent-1") in install.property_dependencies["connection"]


def test_servers_leave_one_at_a_time():
    five = _run(servers=5)
    fewer = _run(servers=3)
    change = _changed(five, fewer)
    assert change["inputs"] == [] and change["added"] == []
    assert change["removed"] == [
        "dev-server-3",
        "dev-server-3-host-key",
        "dev-server-3-install",
        "dev-server-3-member",
        "dev-server-3-start",
        "dev-server-4",
        "dev-server-4-host-key",
        "dev-server-4-install",
        "dev-server-4-member",
        "dev-server-4-start",
    ]
    # member-4 depends on member-3, so the engine removes server-4's etcd member first.
    for i in range(1, 5):
        assert five.depends_on(f"dev-server-{i}-member", f"dev-server-{i - 1}-member")
    assert "K3S_ROLE=server" in five.named("dev-server-4-install").inputs["delete"]


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
    policy = json.loads(run.by_type("aws:iam/rolePolicy:RolePolicy")[0].inputs["policy"])
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
    cfg = yaml.safe_load(run.named("dev-server-0-start").inputs["stdin"])
    assert cfg["etcd-s3"] is True and cfg["etcd-s3-bucket"] == "dev-etcd-snapshots-20261126"
    assert cfg["etcd-s3-region"] == "eu-west-1" and cfg["etcd-s3-folder"] == "k3s-ha/k3s-ha/dev/dev/"


def test_an_existing_bucket_is_used_without_creating_one():
    run = engine.run(engine.main_program, config(etcdS3Bucket="team-backups"), SECRET_KEYS)
    assert run.by_type("aws:s3/bucket:Bucket") == []
    cfg = yaml.safe_load(run.named("dev-server-1-start").inputs["stdin"])
    assert cfg["etcd-s3-bucket"] == "team-backups" and cfg["etcd-s3-region"] == "eu-west-1"
