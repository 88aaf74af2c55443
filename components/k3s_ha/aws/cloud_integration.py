"""The AWS cloud integration (issue 19.2): the AWS cloud controller manager (CCM) and the EBS CSI
driver, installed by K3s itself from HelmChart resources in every server's auto-deploy
directory, and what K3s, the instances and IAM need for them. Sources, read and cited:

- K3s: "start all K3s servers with the `--disable-cloud-controller` flag", and the kubelets
  then need `cloud-provider=external` themselves, since K3s only sets it while its own CCM
  runs (k3s-io/docs networking/networking-services.md "Deploying an External Cloud Controller
  Manager"; k3s-io/k3s pkg/daemons/agent/agent_linux.go). A Node registered while K3s's CCM ran
  keeps providerID `k3s://NAME`, which the AWS CCM cannot parse ("Invalid format for AWS
  instance", cloud-provider-aws pkg/providers/v1/instances.go): see docs/aws.md on turning
  the integration on for a running cluster.
- Node names: with IP-based names the CCM finds a Node's instance by the EC2 filter
  `private-dns-name` = the Node's name (cloud-provider-aws pkg/providers/v1/aws.go
  findInstanceByNodeName), so a node must be named ip-10-0-1-5.eu-west-1.compute.internal, not
  Ubuntu's short host name. cloud-init's `prefer_fqdn_over_hostname: true` makes the host name
  the FQDN from the metadata's local-hostname (canonical/cloud-init distros/__init__.py
  _select_hostname; Ubuntu's default is the short name); K3s names the node after the host.
- The CCM chart: its default nodeSelector `node-role.kubernetes.io/control-plane: ""` matches
  no K3s server (K3s labels them "true"); `args` is a list Helm replaces as a whole; the
  DaemonSet is on the pod network unless `hostNetworking` is set, and the CCM reads IMDS at
  start (buildSelfAWSInstance), which a pod cannot reach past the instances' hop limit of 1
  (charts/aws-cloud-controller-manager values.yaml and templates/daemonset.yaml @63ec440).
  `--configure-cloud-routes=false`: flannel routes pod traffic, and the flag defaults to true.
- `bootstrap: true` on the CCM's HelmChart: only then does K3s's helm controller run the install
  job on the host network of a server and let it tolerate node.cloudprovider.kubernetes.io/
  uninitialized, which every Node carries until the CCM runs (k3s-io/helm-controller
  pkg/controllers/chart/chart.go @21a911f).
- The EBS CSI driver: the controller needs AWS credentials, and its chart has no host-network
  option for the controller (only `node.hostNetwork`); an instance profile would need an IMDS
  hop limit of 2, which hands the node's credentials to every pod on it. The driver's install
  guide lists a Secret (`awsAccessSecret`) before the instance profile, which it marks "Not
  Recommended" (aws-ebs-csi-driver docs/install.md @429e202). So the controller uses the access
  key of an IAM user that holds only the driver's policy. The node DaemonSet reads its metadata
  from the Kubernetes API (`node.metadataSources: kubernetes`): the providerID and the zone,
  region and instance-type labels the CCM sets.
- Cluster tags: `kubernetes.io/cluster/<id>` (cloud-provider-aws pkg/providers/v1/tags.go) on the
  instances (where the CCM reads its cluster id from, aws.go initFromTags) and on exactly ONE
  security group per instance: "Multiple tagged security groups found for instance"
  (aws.go findSecurityGroupForInstance). That one is the nodes' group.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

import pulumi
import pulumi_aws as aws
import yaml

from ..errors import ConfigError
from ..validation import field
from ..versions import AWS_CCM_CHART, AWS_CCM_IMAGES, AWS_EBS_CSI_CHART, Chart, K3sVersion

CLUSTER_TAG_PREFIX = "kubernetes.io/cluster/"
UNINITIALIZED_TAINT = "node.cloudprovider.kubernetes.io/uninitialized"
STORAGE_CLASS = "gp3-encrypted"
CSI_SECRET = "aws-ebs-csi-credentials"

SERVER_SETTINGS: Mapping[str, Any] = {
    "disable-cloud-controller": True,
    # ServiceLB would answer LoadBalancer Services on node ports, and local-path would be the
    # default StorageClass beside ours (docs.k3s.io networking/networking-services.md,
    # storage.md): the CCM and the EBS CSI driver take their place.
    "disable": ["servicelb", "local-storage"],
    "kubelet-arg": ["cloud-provider=external"],
}
AGENT_SETTINGS: Mapping[str, Any] = {"kubelet-arg": ["cloud-provider=external"]}
HOST_NAME_CLOUD_CONFIG: Mapping[str, Any] = {"prefer_fqdn_over_hostname": True}
"""User data (cloud-config) that names the host, and so the K3s node, after its private DNS name."""


def cluster_id(project: str, stack: str, name: str) -> str:
    """The cluster's id in its AWS tags: project, stack and cluster name, so that two stacks in
    one account never claim each other's load balancers and volumes."""
    return f"{project}-{stack}-{name}"


def cluster_tag(cluster: str) -> str:
    """The key of the cluster's tag, `kubernetes.io/cluster/<id>` (cloud-provider-aws tags.go)."""
    return f"{CLUSTER_TAG_PREFIX}{cluster}"


def ccm_image(version: K3sVersion) -> str:
    """The AWS CCM release for the cluster's Kubernetes minor, or a ConfigError naming the fix."""
    image = AWS_CCM_IMAGES.get(version.minor)
    if image is None:
        minors = ", ".join(f"1.{m}" for m in sorted(AWS_CCM_IMAGES))
        raise ConfigError(
            field("aws_integration"),
            f"no AWS cloud controller manager release is pinned for Kubernetes 1.{version.minor} "
            f"(k3sVersion {version.tag}); it must match the Kubernetes minor",
            f"use a K3s release of Kubernetes {minors}, or set awsIntegration to false",
        )
    return image


def merge_settings(user: Mapping[str, Any], ours: Mapping[str, Any], arg: str) -> dict[str, Any]:
    """`user` (serverConfig or agentConfig) with the integration's settings: list items added to
    the user's, a scalar the user set otherwise refused."""
    merged = dict(user)
    for key, value in ours.items():
        given = merged.get(key)
        if isinstance(value, list):
            items = [] if given is None else given if isinstance(given, list) else [given]
            for item in items:
                if key == "kubelet-arg" and str(item).startswith("cloud-provider=") and item not in value:
                    raise _conflict(arg, key, item)
            merged[key] = [*items, *(v for v in value if v not in items)]
        elif given is not None and given != value and str(given).lower() != str(value).lower():
            raise _conflict(arg, key, given)
        else:
            merged[key] = value
    return merged


def _conflict(arg: str, key: str, value: object) -> ConfigError:
    return ConfigError(
        field(arg),
        f"{key}: {value} contradicts the AWS cloud integration, which runs the AWS cloud controller manager",
        f"remove {key} from {field(arg)}, or set awsIntegration to false",
    )


def _helm_chart(chart: Chart, values: Mapping[str, Any], *, bootstrap: bool) -> dict[str, Any]:
    return {
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChart",
        "metadata": {"name": chart.name, "namespace": "kube-system"},
        "spec": {
            "repo": chart.repo,
            "chart": chart.name,
            "version": chart.version,
            "targetNamespace": "kube-system",
            "bootstrap": bootstrap,
            "valuesContent": yaml.safe_dump(dict(values), sort_keys=True, default_flow_style=False),
        },
    }


def ccm_chart(image: str, cluster: str) -> dict[str, Any]:
    """`--cluster-name`: the CCM names its NLBs' security groups from it (GetSecurityGroupNameForNLB,
    aws.go); the default, "kubernetes", is the same for every cluster sharing a VPC."""
    return _helm_chart(
        AWS_CCM_CHART,
        {
            "args": ["--v=2", "--cloud-provider=aws", "--configure-cloud-routes=false", f"--cluster-name={cluster}"],
            "image": {"tag": image},
            "nodeSelector": {"node-role.kubernetes.io/control-plane": "true"},
            "hostNetworking": True,
        },
        bootstrap=True,
    )


def ebs_csi_chart(cluster: str, region: str) -> dict[str, Any]:
    return _helm_chart(
        AWS_EBS_CSI_CHART,
        {
            "awsAccessSecret": {"name": CSI_SECRET, "keyId": "key_id", "accessKey": "access_key"},
            # Tags every volume and snapshot with ebs.csi.aws.com/cluster-name = this id, which
            # the IAM policy below requires (docs/tagging.md).
            "controller": {"region": region, "k8sTagClusterId": cluster},
            "node": {"metadataSources": "kubernetes"},
        },
        bootstrap=False,
    )


def storage_class() -> dict[str, Any]:
    """The default StorageClass: encrypted gp3 volumes (the account's aws/ebs key), created when
    a pod first uses the claim, in that pod's zone (aws-ebs-csi-driver docs/parameters.md)."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "ebs.csi.aws.com",
        "parameters": {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"},
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
        "reclaimPolicy": "Delete",
    }


def csi_secret(key_id: pulumi.Input[str], secret_key: pulumi.Input[str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CSI_SECRET, "namespace": "kube-system"},
        "type": "Opaque",
        "stringData": {"key_id": key_id, "access_key": secret_key},
    }


def upstream_policy(name: str) -> dict[str, Any]:
    """A policy document as upstream publishes it, kept in aws/policies/ (see its sources in
    docs/aws.md): cloud-provider-aws docs/prerequisites.md @63ec440 "Control Plane Policy", and
    aws-ebs-csi-driver docs/AmazonEBSCSIDriverPolicyV2.json @429e202."""
    return json.loads(resources.files("k3s_ha.aws").joinpath("policies", f"{name}.json").read_text())


# Upstream's control-plane policy, minus what this cluster turns off: routes
# (--configure-cloud-routes=false) and volumes (the EBS CSI driver handles them; an external
# CCM has no volume code).
CCM_UNUSED_ACTIONS = frozenset(
    {
        "ec2:CreateRoute",
        "ec2:DeleteRoute",
        "ec2:CreateVolume",
        "ec2:ModifyVolume",
        "ec2:AttachVolume",
        "ec2:DetachVolume",
        "ec2:DeleteVolume",
    }
)
# Actions on EC2 resources that already exist: the CCM changes only its own load balancers'
# security groups, which it creates with the cluster tag (TagSpecifications, ensureSecurityGroup
# in pkg/providers/v1/aws.go @63ec440), and the nodes' group, which carries it. CreateTags goes
# with them: left open, whoever holds the role could tag any group and then change it.
CCM_EC2_TAGGED_ONLY = frozenset(
    {
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupIngress",
        "ec2:DeleteSecurityGroup",
        "ec2:ModifyInstanceAttribute",
        "ec2:CreateTags",
    }
)
# Actions on load balancers, target groups and listeners that already exist: the CCM creates
# every one of them with the cluster tag (buildTags(ResourceLifecycleOwned) into the create
# requests' Tags, aws_loadbalancer.go @63ec440), so the role cannot touch another load balancer
# of the account, k3s-ha's own API balancer included. AddTags goes with them, as CreateTags.
CCM_ELB_TAGGED_ONLY = frozenset(
    "elasticloadbalancing:" + action
    for action in (
        "AddTags",
        "ApplySecurityGroupsToLoadBalancer",
        "AttachLoadBalancerToSubnets",
        "ConfigureHealthCheck",
        "CreateLoadBalancerListeners",
        "CreateLoadBalancerPolicy",
        "DeleteListener",
        "DeleteLoadBalancer",
        "DeleteLoadBalancerListeners",
        "DeleteTargetGroup",
        "DeregisterInstancesFromLoadBalancer",
        "DeregisterTargets",
        "DetachLoadBalancerFromSubnets",
        "ModifyListener",
        "ModifyLoadBalancerAttributes",
        "ModifyTargetGroup",
        "RegisterInstancesWithLoadBalancer",
        "RegisterTargets",
        "SetLoadBalancerPoliciesForBackendServer",
        "SetLoadBalancerPoliciesOfListener",
        "SetSecurityGroups",
    )
)
CCM_TAGGED_ONLY_ACTIONS = CCM_EC2_TAGGED_ONLY | CCM_ELB_TAGGED_ONLY


def ccm_policy(cluster: str) -> str:
    """Upstream's control-plane policy without CCM_UNUSED_ACTIONS, the actions on existing
    resources limited to this cluster's (its tag), tags allowed on new resources only as they are
    created, and the service-linked role only for Elastic Load Balancing."""
    [statement] = upstream_policy("cloud-provider-aws-control-plane")["Statement"]
    upstream = set(statement["Action"])
    tag = cluster_tag(cluster)
    open_actions = upstream - CCM_UNUSED_ACTIONS - CCM_TAGGED_ONLY_ACTIONS - {"iam:CreateServiceLinkedRole"}

    def allow(sid: str, actions: set[str] | frozenset[str], resource: str, condition: dict | None = None) -> dict:
        granted = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions & upstream), "Resource": resource}
        return {**granted, "Condition": condition} if condition else granted

    creates = ["CreateLoadBalancer", "CreateTargetGroup", "CreateListener"]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                allow("UpstreamReadsAndCreates", open_actions, "*"),
                allow(
                    "ThisClustersEc2Resources",
                    CCM_EC2_TAGGED_ONLY,
                    "*",
                    {"StringEquals": {f"ec2:ResourceTag/{tag}": "owned"}},
                ),
                allow(
                    "TagSecurityGroupsAsTheyAreCreated",
                    {"ec2:CreateTags"},
                    "arn:aws:ec2:*:*:security-group/*",
                    {"StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"}},
                ),
                allow(
                    "ThisClustersLoadBalancers",
                    CCM_ELB_TAGGED_ONLY,
                    "*",
                    {"StringEquals": {f"aws:ResourceTag/{tag}": "owned"}},
                ),
                allow(
                    "TagLoadBalancersAsTheyAreCreated",
                    {"elasticloadbalancing:AddTags"},
                    "*",
                    {"StringEquals": {"elasticloadbalancing:CreateAction": creates}},
                ),
                allow(
                    "ServiceLinkedRoleForElasticLoadBalancing",
                    {"iam:CreateServiceLinkedRole"},
                    "*",
                    {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}},
                ),
            ],  # fmt: skip
        },
        sort_keys=True,
    )


def ebs_csi_policy(cluster: str) -> str:
    """AmazonEBSCSIDriverPolicyV2, narrowed to this cluster: every condition on the driver's
    `ebs.csi.aws.com/cluster: true` tag (any cluster's volumes) asks for
    `ebs.csi.aws.com/cluster-name: <id>` instead, which the driver sets with k8sTagClusterId
    (docs/tagging.md), as upstream's EKS cluster-scoped policy does with a principal tag; the
    statements for volumes of in-tree migration (any volume of any PVC in the account) are
    left out, since a cluster k3s-ha builds never had in-tree volumes; and volumes attach only
    to this cluster's instances (the cluster tag)."""
    statements = []
    for statement in upstream_policy("aws-ebs-csi-driver-AmazonEBSCSIDriverPolicyV2")["Statement"]:
        if "CSIMigrated" in statement.get("Sid", ""):
            continue
        text = json.dumps(statement).replace(
            '/ebs.csi.aws.com/cluster": "true"', f'/ebs.csi.aws.com/cluster-name": "{cluster}"'
        )
        statement = json.loads(text)
        if statement.get("Sid") == "AttachDetachVolumesToAnyInstance":
            statement["Sid"] = "AttachDetachVolumesToThisClustersInstances"
            statement["Condition"] = {"StringEquals": {f"ec2:ResourceTag/{cluster_tag(cluster)}": "owned"}}
        statements.append(statement)
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def manifests(
    cluster: str, image: str, region: pulumi.Input[str], key_id: pulumi.Input[str], secret_key: pulumi.Input[str]
) -> tuple[pulumi.Input[dict[str, Any]], ...]:
    """Every server's k3s-ha.yaml: the two HelmCharts, the StorageClass and the CSI driver's
    Secret. The EBS CSI chart carries the region inside valuesContent (a string): given as an
    Output, it is rendered once known."""
    csi = (
        region.apply(lambda r: ebs_csi_chart(cluster, r))
        if isinstance(region, pulumi.Output)
        else ebs_csi_chart(cluster, region)
    )
    return ccm_chart(image, cluster), csi, storage_class(), csi_secret(key_id, secret_key)


def build_cloud_integration(
    name: str,
    *,
    cluster: str,
    image: str,
    server_role: aws.iam.Role,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
) -> tuple[pulumi.Input[dict[str, Any]], ...]:
    """The CCM's policy on the servers' role and the CSI driver's IAM user and access key;
    returns the manifests (`manifests`)."""
    aws.iam.RolePolicy(
        f"{name}-cloud-controller",
        role=server_role.id,
        policy=ccm_policy(cluster),
        opts=pulumi.ResourceOptions(parent=server_role),
    )
    user = aws.iam.User(f"{name}-ebs-csi", tags=dict(tags), opts=pulumi.ResourceOptions(parent=parent))
    # A managed policy, not an inline one: the narrowed policy is about 2,900 characters, and a
    # user's inline policies may hold 2,048 in all, a managed policy 6,144 (IAM quotas).
    policy = aws.iam.Policy(
        f"{name}-ebs-csi",
        policy=ebs_csi_policy(cluster),
        description=f"EBS CSI driver of K3s cluster {cluster}",
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=user),
    )
    aws.iam.UserPolicyAttachment(
        f"{name}-ebs-csi", user=user.name, policy_arn=policy.arn, opts=pulumi.ResourceOptions(parent=user)
    )
    # Replace it to rotate the key (`pulumi up --replace`): the new one reaches every server's
    # k3s-ha.yaml in the same `up` (docs/aws.md).
    key = aws.iam.AccessKey(f"{name}-ebs-csi", user=user.name, opts=pulumi.ResourceOptions(parent=user))
    region = aws.get_region_output(opts=pulumi.InvokeOptions(parent=parent)).region
    return manifests(cluster, image, region, key.id, key.secret)
