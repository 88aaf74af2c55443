"""The AWS cloud integration's manifests and IAM policies (issue 19.2), checked offline.

Every object K3s would read from a server's k3s-ha.yaml is validated against the Kubernetes
schemas of the cluster's own minor (PyPI's kubernetes-validate ships them), and the HelmCharts
against the HelmChart CRD K3s installs (tests/support/schemas, copied from helm-controller), with
unknown fields refused: the apiserver prunes a field a CRD does not declare, so a misspelled
`bootstrap` would vanish without a word and the CCM's install job would never schedule.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from k3s_ha import DEFAULT_K3S_VERSION
from k3s_ha.aws import cloud_integration
from k3s_ha.bootstrap import checks as bootstrap_checks
from k3s_ha.bootstrap import node_config
from k3s_ha.errors import ConfigError
from k3s_ha.versions import AWS_CCM_IMAGES, AWS_EBS_CSI_CHART, parse_version

CRD = Path(__file__).parents[1] / "support" / "schemas" / "helm.cattle.io_helmcharts.yaml"
CLUSTER = "k3s-ha-prod-prod"


def manifests(version: str = DEFAULT_K3S_VERSION) -> list[dict]:
    """The manifests as a server's K3s reads them: rendered into k3s-ha.yaml, parsed back."""
    image = cloud_integration.ccm_image(parse_version(version))
    objects = cloud_integration.manifests(CLUSTER, image, "eu-west-1", "AKIAEXAMPLE", "secret-example")
    return [d for d in yaml.safe_load_all(node_config.render_manifests(objects)) if d]


def helm_chart_schema() -> dict:
    crd = yaml.safe_load(CRD.read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def unknown_fields(value: object, schema: dict, path: str = "") -> list[str]:
    """Fields of `value` the schema does not declare (what the apiserver would prune)."""
    if not isinstance(value, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    declared = schema.get("properties")
    if declared is None:
        return []
    found = []
    for key, item in value.items():
        if key not in declared:
            found.append(f"{path}.{key}")
        else:
            found += unknown_fields(item, declared[key], f"{path}.{key}")
    return found


def validate_helm_chart(chart: dict) -> None:
    schema = helm_chart_schema()
    jsonschema.validate(chart, schema)
    pruned = unknown_fields({k: v for k, v in chart.items() if k not in ("apiVersion", "kind", "metadata")}, schema)
    assert not pruned, f"{chart['metadata']['name']}: fields the HelmChart CRD does not declare: {pruned}"


def kubernetes_minor(version: str) -> str:
    parsed = parse_version(version)
    return f"{parsed.major}.{parsed.minor}.0"


@pytest.mark.parametrize("version", [f"v1.{m}.0+k3s1" for m in sorted(AWS_CCM_IMAGES)])
def test_every_manifest_passes_its_schema_for_each_pinned_kubernetes_minor(version: str) -> None:
    objects = manifests(version)
    assert sorted(o["kind"] for o in objects) == ["HelmChart", "HelmChart", "Secret", "StorageClass"]
    for obj in objects:
        if obj["apiVersion"] == "helm.cattle.io/v1":
            validate_helm_chart(obj)
        else:
            kubernetes_validate.validate(obj, kubernetes_minor(version), strict=True)


def test_the_checks_catch_a_misspelled_field_and_a_wrong_type() -> None:
    chart = manifests()[0]
    chart["spec"]["bootStrap"] = chart["spec"].pop("bootstrap")
    with pytest.raises(AssertionError, match="spec.bootStrap"):
        validate_helm_chart(chart)
    storage = next(o for o in manifests() if o["kind"] == "StorageClass")
    storage["parameters"]["encrypted"] = True  # StorageClass parameters are strings
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(storage, kubernetes_minor(DEFAULT_K3S_VERSION), strict=True)


def test_the_ccm_chart_runs_where_k3s_can_run_it() -> None:
    """bootstrap: true (the only install job that tolerates the uninitialized taint every Node
    has until the CCM runs), a nodeSelector K3s servers match ("true", not the chart's ""), the
    host network (IMDS past a hop limit of 1), no cloud routes (flannel), and the image of the
    cluster's Kubernetes minor."""
    ccm = manifests()[0]
    values = yaml.safe_load(ccm["spec"]["valuesContent"])
    assert ccm["spec"]["bootstrap"] is True
    assert values["nodeSelector"] == {"node-role.kubernetes.io/control-plane": "true"}
    assert values["hostNetworking"] is True
    assert "--configure-cloud-routes=false" in values["args"] and "--cloud-provider=aws" in values["args"]
    assert f"--cluster-name={CLUSTER}" in values["args"]
    minor = parse_version(DEFAULT_K3S_VERSION).minor
    assert values["image"]["tag"].startswith(f"v1.{minor}.")


def test_the_csi_driver_uses_the_secret_and_tags_volumes_with_the_cluster() -> None:
    csi = manifests()[1]
    values = yaml.safe_load(csi["spec"]["valuesContent"])
    secret = next(o for o in manifests() if o["kind"] == "Secret")
    assert values["awsAccessSecret"]["name"] == secret["metadata"]["name"]
    assert set(secret["stringData"]) == {values["awsAccessSecret"]["keyId"], values["awsAccessSecret"]["accessKey"]}
    assert values["controller"] == {"region": "eu-west-1", "k8sTagClusterId": CLUSTER}
    assert values["node"]["metadataSources"] == "kubernetes"
    storage = next(o for o in manifests() if o["kind"] == "StorageClass")
    assert storage["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert storage["parameters"]["encrypted"] == "true" and storage["parameters"]["type"] == "gp3"


def test_the_pinned_csi_chart_tags_volumes_with_the_cluster_name_the_policy_asks_for() -> None:
    """The driver tags ebs.csi.aws.com/cluster-name when k8sTagClusterId is set since chart
    2.58.0 (aws-ebs-csi-driver commit 4e7e9d4, pkg/driver/controller.go); an older pin would
    make every volume action fail the narrowed policy."""
    assert tuple(int(p) for p in AWS_EBS_CSI_CHART.version.split(".")) >= (2, 58, 0)


def test_a_kubernetes_minor_without_a_pinned_ccm_is_refused_naming_the_switch() -> None:
    with pytest.raises(ConfigError, match="awsIntegration") as error:
        cloud_integration.ccm_image(parse_version("v1.99.1+k3s1"))
    assert "set awsIntegration to false" in str(error.value)


def test_the_ccm_policy_is_upstreams_without_routes_and_volumes_and_scoped_where_it_changes_things() -> None:
    [upstream] = cloud_integration.upstream_policy("cloud-provider-aws-control-plane")["Statement"]
    policy = json.loads(cloud_integration.ccm_policy(CLUSTER))
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    granted = {a for s in policy["Statement"] for a in s["Action"]}
    assert granted == set(upstream["Action"]) - cloud_integration.CCM_UNUSED_ACTIONS
    assert not granted & {"ec2:CreateRoute", "ec2:DeleteVolume", "ec2:AttachVolume"}
    open_actions = set(by_sid["UpstreamReadsAndCreates"]["Action"])
    # Nothing that changes or deletes an existing resource, or tags one, is left open.
    assert not open_actions & cloud_integration.CCM_TAGGED_ONLY_ACTIONS
    assert not {a for a in open_actions if a.split(":")[1].startswith(("Delete", "Modify", "Revoke", "Deregister"))}
    assert "ec2:CreateTags" not in open_actions and "elasticloadbalancing:AddTags" not in open_actions
    tag = f"kubernetes.io/cluster/{CLUSTER}"
    assert by_sid["ThisClustersEc2Resources"]["Condition"] == {"StringEquals": {f"ec2:ResourceTag/{tag}": "owned"}}
    assert by_sid["ThisClustersLoadBalancers"]["Condition"] == {"StringEquals": {f"aws:ResourceTag/{tag}": "owned"}}
    assert by_sid["TagSecurityGroupsAsTheyAreCreated"]["Condition"] == {
        "StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"}
    }
    assert by_sid["ServiceLinkedRoleForElasticLoadBalancing"]["Condition"] == {
        "StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}
    }


def test_the_csi_policy_is_upstreams_v2_narrowed_to_this_cluster() -> None:
    upstream = cloud_integration.upstream_policy("aws-ebs-csi-driver-AmazonEBSCSIDriverPolicyV2")["Statement"]
    policy = json.loads(cloud_integration.ebs_csi_policy(CLUSTER))["Statement"]
    kept = [s for s in upstream if "CSIMigrated" not in s["Sid"]]
    assert [s["Action"] for s in policy] == [s["Action"] for s in kept]
    text = json.dumps(policy)
    assert '"ebs.csi.aws.com/cluster": "true"' not in text and '/ebs.csi.aws.com/cluster": "true"' not in text
    assert text.count(f'ebs.csi.aws.com/cluster-name": "{CLUSTER}"') >= 6
    assert 'created-for/pvc/name": "*"' not in text
    attach = next(s for s in policy if s["Resource"] == "arn:aws:ec2:*:*:instance/*")
    assert attach["Condition"] == {"StringEquals": {f"ec2:ResourceTag/kubernetes.io/cluster/{CLUSTER}": "owned"}}
    # Every statement the driver may use is still conditioned or read-only, as upstream's is.
    for statement in policy:
        assert "Condition" in statement or all(a.startswith("ec2:Describe") for a in statement["Action"]), statement


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (
            {},
            {
                "disable-cloud-controller": True,
                "disable": ["servicelb", "local-storage"],
                "kubelet-arg": ["cloud-provider=external"],
            },
        ),  # fmt: skip
        (
            {"disable": ["traefik"], "kubelet-arg": "max-pods=50"},
            {
                "disable-cloud-controller": True,
                "disable": ["traefik", "servicelb", "local-storage"],
                "kubelet-arg": ["max-pods=50", "cloud-provider=external"],
            },
        ),  # fmt: skip
    ],
)
def test_the_k3s_settings_add_to_the_users(user: dict, expected: dict) -> None:
    assert cloud_integration.merge_settings(user, cloud_integration.SERVER_SETTINGS, "server_config") == expected


@pytest.mark.parametrize("user", [{"disable-cloud-controller": False}, {"kubelet-arg": ["cloud-provider=aws"]}])
def test_settings_that_contradict_the_integration_are_refused(user: dict) -> None:
    with pytest.raises(ConfigError, match="serverConfig / server_config") as error:
        cloud_integration.merge_settings(user, cloud_integration.SERVER_SETTINGS, "server_config")
    assert "awsIntegration" in str(error.value)


def test_an_empty_manifests_list_manages_no_file() -> None:
    """A file of no objects would be refused on the node ("refusing to write an empty ..."):
    an empty list is taken as none given, so a file k3s-ha wrote before is removed."""
    assert bootstrap_checks.manifests([]) is None
    assert bootstrap_checks.manifests([cloud_integration.storage_class()]) == (cloud_integration.storage_class(),)
