"""Off-node etcd snapshots: an S3 bucket and an instance profile that can only reach it.

The bucket is encrypted, versioned, private, and kept when the stack is destroyed
(`retain_on_delete`): snapshots are what you restore from after losing the cluster, so they
must outlive it. Servers get read/write on the cluster's folder and nothing else.

The folder, `k3s-ha/<project>/<stack>/<cluster>/`, is unique per project, stack and cluster, so
stacks sharing a bucket never see or prune each other's snapshots. It ends in `/` because K3s
lists with the folder as a plain prefix (`ListObjects(Prefix: Folder)` in k3s-io/k3s
pkg/etcd/s3/s3.go ListSnapshots) and builds keys with `path.Join(Folder, name)`: without it,
cluster `dev` would list `dev2/`'s snapshots. Every ARN is built from a checked bucket name and
checked folder parts, so no `*`, `?` or `/` from an input can widen a grant.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from ..errors import ConfigError
from . import checks
from .server_role import ServerRole

NONCURRENT_DAYS = 30
FOLDER_ROOT = "k3s-ha"
# Pulumi project and stack names use these characters; none of them means anything to IAM.
_FOLDER_PART = re.compile(r"[A-Za-z0-9_.-]+")


def snapshot_folder(project: str, stack: str, cluster: str) -> str:
    """`k3s-ha/<project>/<stack>/<cluster>/`, from parts that cannot widen an IAM grant."""
    for what, part in (("the project name", project), ("the stack name", stack), ("the cluster's name", cluster)):
        if not isinstance(part, str) or not _FOLDER_PART.fullmatch(part) or part in (".", ".."):
            raise ConfigError(
                "name",
                f"{what} {part!r} cannot name an S3 snapshot folder (it goes into an IAM policy)",
                "use letters, digits, '-', '_' and '.' only",
            )
    return f"{FOLDER_ROOT}/{project}/{stack}/{cluster}/"


@dataclass(frozen=True)
class SnapshotStore:
    """Where the servers send their etcd snapshots (the servers' role may write there)."""

    bucket: pulumi.Output[str]
    region: pulumi.Output[str]
    folder: str

    def etcd_s3_settings(self) -> dict[str, Any]:
        """config.yaml keys that send every scheduled snapshot to S3 too."""
        return {
            "etcd-s3": True,
            "etcd-s3-bucket": self.bucket,
            "etcd-s3-region": self.region,
            "etcd-s3-folder": self.folder,
        }


def _bucket(name: str, tags: Mapping[str, str], parent: pulumi.Resource) -> aws.s3.Bucket:
    keep = pulumi.ResourceOptions(parent=parent, retain_on_delete=True)
    bucket = aws.s3.Bucket(f"{name}-etcd-snapshots", force_destroy=False, tags=dict(tags), opts=keep)
    inside = pulumi.ResourceOptions(parent=bucket, retain_on_delete=True)
    aws.s3.BucketPublicAccessBlock(
        f"{name}-etcd-snapshots",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=inside,
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-etcd-snapshots",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms"
                ),
                bucket_key_enabled=True,
            )
        ],
        opts=inside,
    )
    aws.s3.BucketVersioning(
        f"{name}-etcd-snapshots",
        bucket=bucket.id,
        versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
        opts=inside,
    )
    # Versioning keeps every overwritten or pruned snapshot; expire those after a month.
    aws.s3.BucketLifecycleConfiguration(
        f"{name}-etcd-snapshots",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-old-versions",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=NONCURRENT_DAYS
                ),
            )
        ],
        opts=inside,
    )
    return bucket


def snapshot_policy(bucket: str, folder: str) -> str:
    """Least privilege for K3s' etcd snapshots in S3: list only the folder, read/write/delete
    only objects under it."""
    bucket = checks.s3_bucket_name(bucket)
    parts = folder.split("/")
    if parts[0] != FOLDER_ROOT or parts[-1] != "" or len(parts) != 5:
        raise ValueError(f"{folder!r} is not a folder built by snapshot_folder")
    snapshot_folder(*parts[1:4])  # each part checked again: this text becomes a grant
    bucket_arn = f"arn:aws:s3:::{bucket}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": bucket_arn,
                    "Condition": {"StringLike": {"s3:prefix": [folder, folder + "*"]}},
                },
                {"Effect": "Allow", "Action": "s3:GetBucketLocation", "Resource": bucket_arn},
                {
                    "Effect": "Allow",
                    "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                    "Resource": f"{bucket_arn}/{folder}*",
                },
            ],
        },
    )


def build_snapshot_store(
    name: str,
    *,
    folder: str,
    existing_bucket: str | None,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
    server_role: ServerRole,
) -> SnapshotStore:
    if existing_bucket:
        bucket_name: pulumi.Output[str] = pulumi.Output.from_input(existing_bucket)
        region = aws.get_region_output(opts=pulumi.InvokeOptions(parent=parent)).region
    else:
        bucket = _bucket(name, tags, parent)
        bucket_name, region = bucket.bucket, bucket.region
    aws.iam.RolePolicy(
        f"{name}-etcd-snapshots",
        role=server_role.role.id,
        policy=bucket_name.apply(lambda b: snapshot_policy(b, folder)),
        opts=pulumi.ResourceOptions(parent=server_role.role),
    )
    return SnapshotStore(bucket=bucket_name, region=region, folder=folder)
