"""The IAM role of the servers, and the instance profile they launch with: one role, to which
each feature that needs AWS from the servers adds its own policy (etcd snapshots to S3, the
AWS cloud controller manager). Agents get no role: nothing on them calls AWS (their kubelets
run with cloud-provider=external, and the EBS CSI node plugin reads its metadata from the
Kubernetes API: aws/cloud_integration.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

EC2_ASSUMES = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    },
    sort_keys=True,
)


@dataclass(frozen=True)
class ServerRole:
    role: aws.iam.Role
    instance_profile: pulumi.Output[str]
    """The profile's name, as aws.ec2.Instance's iam_instance_profile takes it."""


def build_server_role(name: str, tags: Mapping[str, str], parent: pulumi.Resource) -> ServerRole:
    # The names (and parents) are those the etcd snapshot store gave them when it alone made
    # them, so existing stacks keep their role and profile.
    role = aws.iam.Role(
        f"{name}-server", assume_role_policy=EC2_ASSUMES, tags=dict(tags), opts=pulumi.ResourceOptions(parent=parent)
    )
    profile = aws.iam.InstanceProfile(
        f"{name}-server", role=role.name, tags=dict(tags), opts=pulumi.ResourceOptions(parent=role)
    )
    return ServerRole(role=role, instance_profile=profile.name)
