"""K3sCluster's AWS cloud integration (issue 19.2), as the engine receives it: what the default
(on) registers, and that the switch-off path leaves no trace of it.

The manifests themselves are checked against Kubernetes schemas in
tests/unit/test_cloud_manifests.py; the K3s side on real processes in tests/scripts and the lab.
"""

from __future__ import annotations

import json

import pytest
import yaml
from k3s_ha.aws import cloud_integration
from support import engine
from support.helpers import SECRET_KEYS, config, stdin_manifests, stdin_yaml

INSTANCE = "aws:ec2/instance:Instance"
GROUP = "aws:ec2/securityGroup:SecurityGroup"
SUBNET = "aws:ec2/subnet:Subnet"
CLUSTER_TAG = "kubernetes.io/cluster/k3s-ha-dev-dev"
SERVERS = [f"dev-server-{i}-start" for i in range(3)]
AGENTS = [f"dev-agent-{i}-start" for i in range(2)]


def _run(**overrides) -> engine.Run:
    return engine.run(engine.main_program, config(agents=2, **overrides), SECRET_KEYS)


@pytest.fixture(scope="module")
def on() -> engine.Run:
    return _run()


@pytest.fixture(scope="module")
def off() -> engine.Run:
    return _run(awsIntegration=False)


def _env(run: engine.Run, step: str) -> str:
    return run.named(step).inputs["create"]


def test_every_server_gets_the_manifests_and_the_settings_that_hand_the_cloud_to_the_ccm(on) -> None:
    for step in SERVERS:
        manifests = stdin_manifests(on, step)
        assert [m["kind"] for m in manifests] == ["HelmChart", "HelmChart", "StorageClass", "Secret"], step
        charts = {m["spec"]["chart"]: m for m in manifests if m["kind"] == "HelmChart"}
        assert set(charts) == {"aws-cloud-controller-manager", "aws-ebs-csi-driver"}
        csi = yaml.safe_load(charts["aws-ebs-csi-driver"]["spec"]["valuesContent"])
        assert csi["controller"]["k8sTagClusterId"] == "k3s-ha-dev-dev"
        assert csi["controller"]["region"]  # the provider's region, resolved before the step runs
        cfg = stdin_yaml(on, step)
        assert cfg["disable-cloud-controller"] is True
        assert {"servicelb", "local-storage"} <= set(cfg["disable"])
        assert cfg["kubelet-arg"] == ["cloud-provider=external"]
        assert "K3S_HA_WITH_MANIFESTS=1" in _env(on, step) and "K3S_HA_WAIT_CLOUD_INIT=1" in _env(on, step)
    for step in AGENTS:
        assert stdin_manifests(on, step) is None, "agents have no auto-deploy directory"
        assert stdin_yaml(on, step)["kubelet-arg"] == ["cloud-provider=external"]
        assert "K3S_HA_WAIT_CLOUD_INIT=1" in _env(on, step)


def test_the_csi_access_key_reaches_the_servers_only_as_a_secret(on) -> None:
    key = on.by_type("aws:iam/accessKey:AccessKey")[0]
    secret = next(m for m in stdin_manifests(on, SERVERS[0]) if m["kind"] == "Secret")
    assert secret["stringData"]["key_id"] == key.id
    assert secret["stringData"]["access_key"] == "mock-secret-access-key-of-dev-ebs-csi"
    for step in SERVERS:
        assert on.named(step).is_secret("stdin")
        assert "mock-secret-access-key" not in _env(on, step)


def test_only_the_nodes_group_the_instances_and_the_subnets_carry_the_cluster_tag(on) -> None:
    tagged_groups = [g.name for g in on.by_type(GROUP) if CLUSTER_TAG in (g.inputs.get("tags") or {})]
    assert tagged_groups == ["dev-nodes"], "the AWS CCM refuses an instance with two tagged groups"
    for instance in on.by_type(INSTANCE):
        assert instance.inputs["tags"][CLUSTER_TAG] == "owned", instance.name
    for subnet in on.by_type(SUBNET):
        tags = subnet.inputs["tags"]
        assert tags[CLUSTER_TAG] == "owned" and tags["kubernetes.io/role/elb"] == "1", subnet.name


def test_private_subnets_are_for_internal_load_balancers(on) -> None:
    run = _run(privateNodes=True)
    roles = {s.name: s.inputs["tags"] for s in run.by_type(SUBNET)}
    assert all(roles[f"dev-private-{i}"]["kubernetes.io/role/internal-elb"] == "1" for i in range(3))
    assert all("kubernetes.io/role/elb" not in roles[f"dev-private-{i}"] for i in range(3))
    [bastion] = [i for i in run.by_type(INSTANCE) if i.name == "dev-bastion"]
    assert CLUSTER_TAG not in bastion.inputs["tags"], "the bastion is no node"


def test_instances_never_update_the_tags_of_the_volumes_attached_to_them(on) -> None:
    """An instance's volumeTags reach every attached volume, the claims' too: a change would
    strip the EBS CSI driver's tags, so it is ignored after the instance is created."""
    for instance in on.by_type(INSTANCE):
        assert "volumeTags" in instance.options["ignoreChanges"], instance.name


def test_nodes_are_named_after_their_private_dns_names(on) -> None:
    for instance in on.by_type(INSTANCE):
        data = yaml.safe_load(instance.inputs["userData"])
        assert data["prefer_fqdn_over_hostname"] is True, instance.name
        assert "ed25519_private" in data["ssh_keys"]


def test_the_servers_role_holds_the_ccm_policy_and_the_csi_driver_has_its_own_user(on) -> None:
    policies = {p.name: p for p in on.by_type("aws:iam/rolePolicy:RolePolicy")}
    ccm = policies["dev-cloud-controller"]
    [role] = on.by_type("aws:iam/role:Role")
    assert ccm.parent == role.urn and role.name == "dev-server"
    assert json.loads(ccm.inputs["policy"]) == json.loads(cloud_integration.ccm_policy("k3s-ha-dev-dev"))
    for instance in on.by_type(INSTANCE):
        profile = instance.inputs.get("iamInstanceProfile")
        assert (profile is not None) == instance.name.startswith("dev-server-"), instance.name
    [policy] = on.by_type("aws:iam/policy:Policy")
    assert json.loads(policy.inputs["policy"]) == json.loads(cloud_integration.ebs_csi_policy("k3s-ha-dev-dev"))
    [attachment] = on.by_type("aws:iam/userPolicyAttachment:UserPolicyAttachment")
    [user] = on.by_type("aws:iam/user:User")
    assert attachment.parent == user.urn and policy.parent == user.urn
    assert not on.by_type("aws:iam/userPolicy:UserPolicy"), "an inline user policy may hold 2,048 characters"


def _size(policy: str) -> int:
    """A policy's size as IAM counts it against its quotas: without whitespace."""
    return len("".join(policy.split()))


def test_every_policy_fits_its_iam_quota(on) -> None:
    """IAM quotas: a role's inline policies 10,240 characters in all, a managed policy 6,144
    (without whitespace). The mock engine accepts any size; AWS refuses the create."""
    with_snapshots = _run(etcdS3=True)
    inline = [p.inputs["policy"] for p in with_snapshots.by_type("aws:iam/rolePolicy:RolePolicy")]
    assert len(inline) == 2 and all(isinstance(p, str) for p in inline)
    assert sum(_size(p) for p in inline) <= 10_240
    [managed] = on.by_type("aws:iam/policy:Policy")
    assert _size(managed.inputs["policy"]) <= 6_144


def test_an_existing_vpcs_listed_subnets_get_the_cluster_tag_as_shared() -> None:
    run = _run(vpcId="vpc-123", subnetIds=["subnet-a", "subnet-b", "subnet-c"])
    tags = sorted((t.inputs["resourceId"], t.inputs["key"], t.inputs["value"]) for t in run.by_type("aws:ec2/tag:Tag"))
    assert tags == [(s, CLUSTER_TAG, "shared") for s in ("subnet-a", "subnet-b", "subnet-c")]


def _trace(run: engine.Run) -> list[str]:
    """Everything the integration would leave in a program's registrations."""
    found = []
    for r in run.registrations:
        text = json.dumps(r.inputs, default=str)
        if r.type.startswith("aws:iam/") and (r.type != "aws:iam/rolePolicy:RolePolicy" or "snapshot" not in r.name):
            if r.type not in ("aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile"):
                found.append(f"{r.type} {r.name}")
        if r.type == "aws:ec2/tag:Tag" or "kubernetes.io/cluster/" in text or "kubernetes.io/role/" in text:
            found.append(f"cluster tag on {r.name}")
        for word in ("cloud-controller", "ebs-csi", "ebs.csi.aws.com", "cloud-provider=external",
                     "K3S_HA_WITH_MANIFESTS", "K3S_HA_WAIT_CLOUD_INIT", "prefer_fqdn_over_hostname"):  # fmt: skip
            if word in text or word in r.name:
                found.append(f"{word} in {r.name}")
    return found


@pytest.mark.parametrize(
    "overrides",
    [{}, {"etcdS3": True}, {"vpcId": "vpc-123", "subnetIds": ["subnet-a", "subnet-b"]}, {"privateNodes": True}],
    ids=["default", "with-s3-snapshots", "existing-vpc", "private-nodes"],
)
def test_the_switch_off_path_leaves_no_ccm_csi_iam_or_tag_behind(overrides) -> None:
    run = _run(awsIntegration=False, **overrides)
    assert _trace(run) == []
    roles = run.by_type("aws:iam/role:Role")
    assert len(roles) == (1 if overrides.get("etcdS3") else 0), "a role only for the etcd snapshots"
    for step in SERVERS:
        assert stdin_manifests(run, step) is None
        assert "disable-cloud-controller" not in stdin_yaml(run, step)


def test_the_trace_check_sees_the_integration_when_it_is_on(on) -> None:
    """The switch-off check above proves something: on, the same check finds every part."""
    found = " ".join(_trace(on))
    for part in ("aws:iam/user:User", "aws:iam/accessKey:AccessKey", "dev-cloud-controller", "cluster tag on dev-nodes",
                 "cloud-provider=external", "prefer_fqdn_over_hostname", "K3S_HA_WAIT_CLOUD_INIT"):  # fmt: skip
        assert part in found, part


def test_a_k3s_release_without_a_pinned_ccm_is_refused_before_anything_is_created() -> None:
    with pytest.raises(Exception, match="awsIntegration") as error:
        _run(k3sVersion="v1.19.5+k3s1")
    assert "set awsIntegration to false" in str(error.value)
