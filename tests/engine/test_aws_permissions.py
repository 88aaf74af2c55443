"""docs/aws-permissions.json, the operator's IAM policy for `pulumi up` (issue 20.3), against
what the program registers and invokes: every AWS resource type and data source of the dev and
prod stack files (and a private-subnet, existing-VPC shape) has its actions written down here,
and the policy grants exactly their union.

The actions per type are those terraform-provider-aws calls for create, read, update and
delete (read from its resource code, not run: nothing here has an AWS account). A new type
fails the first test until its actions are listed, and an action no type needs fails the last.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support import engine
from support.helpers import SECRET_KEYS, config

ROOT = Path(__file__).resolve().parents[2]
POLICY = json.loads((ROOT / "docs" / "aws-permissions.json").read_text())

_TAGS = ["ec2:CreateTags", "ec2:DeleteTags", "ec2:DescribeTags"]
_ELB_TAGS = ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags", "elasticloadbalancing:DescribeTags"]
TYPE_ACTIONS: dict[str, list[str]] = {
    "aws:ec2/instance:Instance": [
        *_TAGS,
        "ec2:RunInstances", "ec2:TerminateInstances", "ec2:DescribeInstances", "ec2:DescribeInstanceAttribute",
        "ec2:ModifyInstanceAttribute", "ec2:ModifyInstanceMetadataOptions", "ec2:DescribeInstanceTypes",
        "ec2:DescribeInstanceCreditSpecifications", "ec2:DescribeVolumes", "ec2:DescribeNetworkInterfaces",
    ],
    "aws:ec2/keyPair:KeyPair": [*_TAGS, "ec2:ImportKeyPair", "ec2:DeleteKeyPair", "ec2:DescribeKeyPairs"],
    "aws:ec2/vpc:Vpc": [
        *_TAGS,
        "ec2:CreateVpc", "ec2:DeleteVpc", "ec2:DescribeVpcs", "ec2:DescribeVpcAttribute", "ec2:ModifyVpcAttribute",
        # The VPC's read also looks up its default security group, main route table and ACL.
        "ec2:DescribeSecurityGroups", "ec2:DescribeRouteTables", "ec2:DescribeNetworkAcls",
    ],
    "aws:ec2/subnet:Subnet": [*_TAGS, "ec2:CreateSubnet", "ec2:DeleteSubnet", "ec2:DescribeSubnets", "ec2:ModifySubnetAttribute"],
    "aws:ec2/internetGateway:InternetGateway": [
        *_TAGS,
        "ec2:CreateInternetGateway", "ec2:DeleteInternetGateway", "ec2:AttachInternetGateway",
        "ec2:DetachInternetGateway", "ec2:DescribeInternetGateways",
    ],
    "aws:ec2/routeTable:RouteTable": [
        *_TAGS,
        "ec2:CreateRouteTable", "ec2:DeleteRouteTable", "ec2:DescribeRouteTables", "ec2:CreateRoute",
        "ec2:DeleteRoute", "ec2:ReplaceRoute",
    ],
    # privateNodes (prod): an Elastic IP and a NAT gateway per zone. The EIP's read also reads
    # its reverse DNS record (ptr_record: DescribeAddressesAttribute); its delete disassociates
    # it first when it is still associated.
    "aws:ec2/eip:Eip": [
        *_TAGS,
        "ec2:AllocateAddress", "ec2:ReleaseAddress", "ec2:DescribeAddresses", "ec2:DescribeAddressesAttribute",
        "ec2:DisassociateAddress",
    ],
    "aws:ec2/natGateway:NatGateway": [
        *_TAGS, "ec2:CreateNatGateway", "ec2:DeleteNatGateway", "ec2:DescribeNatGateways",
    ],
    "aws:ec2/routeTableAssociation:RouteTableAssociation": [
        "ec2:AssociateRouteTable", "ec2:DisassociateRouteTable", "ec2:DescribeRouteTables",
    ],
    "aws:ec2/securityGroup:SecurityGroup": [
        *_TAGS,
        "ec2:CreateSecurityGroup", "ec2:DeleteSecurityGroup", "ec2:DescribeSecurityGroups",
        # A new group's default allow-all egress rule is revoked (revoke_rules_on_delete too).
        "ec2:RevokeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress",
    ],
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": [
        *_TAGS,
        "ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:DescribeSecurityGroupRules",
        "ec2:ModifySecurityGroupRules",
    ],
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": [
        *_TAGS,
        "ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupEgress", "ec2:DescribeSecurityGroupRules",
        "ec2:ModifySecurityGroupRules",
    ],
    "aws:lb/loadBalancer:LoadBalancer": [
        *_ELB_TAGS,
        "elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeLoadBalancerAttributes",
        "elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:SetSecurityGroups",
        "elasticloadbalancing:SetSubnets",
    ],
    "aws:lb/targetGroup:TargetGroup": [
        *_ELB_TAGS,
        "elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:DeleteTargetGroup",
        "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetGroupAttributes",
        "elasticloadbalancing:ModifyTargetGroup", "elasticloadbalancing:ModifyTargetGroupAttributes",
    ],
    "aws:lb/listener:Listener": [
        *_ELB_TAGS,
        "elasticloadbalancing:CreateListener", "elasticloadbalancing:DeleteListener",
        "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:ModifyListener",
    ],
    "aws:lb/targetGroupAttachment:TargetGroupAttachment": [
        "elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets",
        "elasticloadbalancing:DescribeTargetHealth",
    ],
    "aws:s3/bucket:Bucket": [
        "s3:CreateBucket", "s3:DeleteBucket", "s3:ListBucket", "s3:GetBucketLocation", "s3:GetBucketTagging",
        "s3:PutBucketTagging", "s3:GetBucketAcl", "s3:GetBucketCORS", "s3:GetBucketWebsite", "s3:GetBucketLogging",
        "s3:GetBucketPolicy", "s3:GetBucketRequestPayment", "s3:GetAccelerateConfiguration",
        "s3:GetReplicationConfiguration", "s3:GetBucketObjectLockConfiguration", "s3:GetBucketOwnershipControls",
        "s3:GetBucketVersioning", "s3:GetEncryptionConfiguration", "s3:GetLifecycleConfiguration",
    ],
    # The S3 DeletePublicAccessBlock call is authorised by s3:PutBucketPublicAccessBlock.
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": ["s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock"],
    "aws:s3/bucketVersioning:BucketVersioning": ["s3:GetBucketVersioning", "s3:PutBucketVersioning"],
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": [
        "s3:GetEncryptionConfiguration", "s3:PutEncryptionConfiguration",
    ],
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": [
        "s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration",
    ],
    "aws:iam/role:Role": [
        "iam:CreateRole", "iam:DeleteRole", "iam:GetRole", "iam:TagRole", "iam:UntagRole", "iam:UpdateAssumeRolePolicy",
        "iam:ListRolePolicies", "iam:ListAttachedRolePolicies", "iam:ListInstanceProfilesForRole",
    ],
    "aws:iam/rolePolicy:RolePolicy": ["iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy"],
    # The EBS CSI driver's user, its policy and access key (aws/cloud_integration.py).
    "aws:iam/user:User": ["iam:CreateUser", "iam:GetUser", "iam:DeleteUser", "iam:TagUser", "iam:UntagUser"],
    "aws:iam/policy:Policy": [
        "iam:CreatePolicy", "iam:DeletePolicy", "iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions",
        "iam:CreatePolicyVersion", "iam:DeletePolicyVersion", "iam:TagPolicy", "iam:UntagPolicy",
    ],
    "aws:iam/userPolicyAttachment:UserPolicyAttachment": [
        "iam:AttachUserPolicy", "iam:DetachUserPolicy", "iam:ListAttachedUserPolicies",
    ],
    "aws:iam/accessKey:AccessKey": ["iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:ListAccessKeys", "iam:UpdateAccessKey"],
    # The cluster tag on subnets of an existing VPC.
    "aws:ec2/tag:Tag": ["ec2:CreateTags", "ec2:DeleteTags", "ec2:DescribeTags"],
    "aws:iam/instanceProfile:InstanceProfile": [
        "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile", "iam:GetInstanceProfile", "iam:TagInstanceProfile",
        "iam:UntagInstanceProfile", "iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile",
        # Launching an instance with the profile passes its role to EC2.
        "iam:PassRole",
    ],
}  # fmt: skip
INVOKE_ACTIONS: dict[str, list[str]] = {
    "aws:ec2/getAmi:getAmi": ["ec2:DescribeImages"],
    "aws:index/getAvailabilityZones:getAvailabilityZones": ["ec2:DescribeAvailabilityZones"],
    "aws:index/getRegion:getRegion": [],  # answered from the provider's configuration
}
PROVIDER_ACTIONS = ["sts:GetCallerIdentity"]  # the AWS provider checks its credentials when configured


def _stack(name: str) -> dict:
    stack = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{name}.yaml").read_text())["config"]
    return {k.removeprefix("k3s-ha:"): v for k, v in stack.items()}


@pytest.fixture  # not module-wide: conftest stubs the `auto` address lookup per test
def runs() -> list[engine.Run]:
    prod = {**_stack("prod"), **{k: v for k, v in config().items() if k not in _stack("prod")}}
    private = config(
        vpcId="vpc-0123456789abcdef0",
        subnetIds=["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2", "subnet-0aaaaaaaaaaaaaaa3"],
        bastionHost="203.0.113.10",
        loadBalancer=True,
        loadBalancerInternal=True,
    )
    return [
        engine.run(engine.main_program, values, SECRET_KEYS, stack=stack)
        for stack, values in (("dev", _stack("dev")), ("prod", prod), ("dev", private))
    ]


def _used(runs: list[engine.Run]) -> tuple[set[str], set[str]]:
    types = {r.type for run in runs for r in run.registrations if r.custom and r.type.startswith("aws:")}
    invokes = {token for run in runs for token, _ in run.calls if token.startswith("aws:")}
    return types, invokes


def _granted() -> set[str]:
    actions: set[str] = set()
    for statement in POLICY["Statement"]:
        assert statement["Effect"] == "Allow"
        actions.update(statement["Action"])
    return actions


def test_every_aws_type_and_data_source_the_program_uses_has_its_actions_listed(runs) -> None:
    types, invokes = _used(runs)
    assert "aws:iam/role:Role" in types and "aws:lb/loadBalancer:LoadBalancer" in types  # prod's parts are seen
    assert sorted(types - TYPE_ACTIONS.keys()) == []
    assert sorted(invokes - INVOKE_ACTIONS.keys()) == []


def test_the_policy_grants_exactly_what_those_need(runs) -> None:
    types, invokes = _used(runs)
    needed = {*PROVIDER_ACTIONS}
    for kind in types:
        needed.update(TYPE_ACTIONS[kind])
    for token in invokes:
        needed.update(INVOKE_ACTIONS[token])
    granted = _granted()
    assert sorted(needed - granted) == [], "missing from docs/aws-permissions.json"
    assert sorted(granted - needed) == [], "granted but used by nothing the program registers"


def test_iam_and_s3_are_granted_only_on_the_names_the_program_gives(runs) -> None:
    """The role, profile and bucket are auto-named from `<cluster>-server` and
    `<cluster>-etcd-snapshots` (Pulumi adds a random suffix): the statements are narrowed to
    those patterns, and PassRole to EC2."""
    by_sid = {s["Sid"]: s for s in POLICY["Statement"]}
    names = {(r.type, r.name) for run in runs for r in run.registrations}
    assert ("aws:iam/role:Role", "prod-server") in names
    assert ("aws:s3/bucket:Bucket", "prod-etcd-snapshots") in names
    assert by_sid["EtcdSnapshotBucket"]["Resource"] == "arn:aws:s3:::*-etcd-snapshots-*"
    assert set(by_sid["ServerRoleAndProfile"]["Resource"]) == {
        "arn:aws:iam::*:role/*-server-*",
        "arn:aws:iam::*:instance-profile/*-server-*",
    }
    passing = by_sid["PassTheServerRoleToEc2Only"]
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
    assert not any("iam:" in a or "s3:" in a for s in POLICY["Statement"] if s["Resource"] == "*" for a in s["Action"])
