"""IAM least privilege by construction (issue 12.3): the snapshot bucket name is checked with the
S3 naming rules before it reaches a policy, ARNs are built from checked parts, listing is
limited to the cluster's folder, and the folder is unique per project, stack and cluster."""

import json

import pytest
from k3s_ha import ConfigError
from k3s_ha.aws.snapshots import snapshot_folder, snapshot_policy
from support import engine
from support.helpers import SECRET_KEYS, config, refuse, stdin_yaml

POLICY = "aws:iam/rolePolicy:RolePolicy"


@pytest.mark.parametrize(
    "bucket",
    [
        "*",
        "team-*",
        "team/backups",
        "arn:aws:s3:::team",
        "Team-Backups",
        "team_backups",
        "ab",
        "a" * 64,
        "-team",
        "team-",
        "team..backups",
        "team.-backups",
        "192.168.1.10",
        "xn--team",
        "sthree-team",
        "team-s3alias",
        "team--ol-s3",
        "team backups",
        "team\n",
    ],
)
def test_bucket_names_outside_the_s3_rules_are_refused(bucket):
    error = refuse(etcdS3Bucket=bucket)
    assert error.field == "etcdS3Bucket / etcd_s3_bucket"
    assert "S3 bucket name" in error.problem and "etcdS3" in error.fix


@pytest.mark.parametrize("bucket", ["abc", "team-backups", "team.etcd-snapshots.eu", "a" * 63, "1team"])
def test_valid_bucket_names_are_accepted(bucket):
    run = engine.run(engine.main_program, config(etcdS3Bucket=bucket), SECRET_KEYS)
    assert stdin_yaml(run, "dev-server-0-start")["etcd-s3-bucket"] == bucket


def _policy(run):
    """The etcd snapshots' policy (the servers' role also holds the cloud controller's)."""
    [policy] = [p for p in run.by_type(POLICY) if p.name.endswith("-etcd-snapshots")]
    return json.loads(policy.inputs["policy"])


def test_the_policy_lists_and_touches_only_the_clusters_folder():
    run = engine.run(engine.main_program, config(etcdS3Bucket="team-backups"), SECRET_KEYS)
    folder = "k3s-ha/k3s-ha/dev/dev/"
    assert _policy(run) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": "arn:aws:s3:::team-backups",
                "Condition": {"StringLike": {"s3:prefix": [folder, folder + "*"]}},
            },
            {"Effect": "Allow", "Action": "s3:GetBucketLocation", "Resource": "arn:aws:s3:::team-backups"},
            {
                "Effect": "Allow",
                "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                "Resource": f"arn:aws:s3:::team-backups/{folder}*",
            },
        ],
    }
    assert stdin_yaml(run, "dev-server-0-start")["etcd-s3-folder"] == folder


def test_two_stacks_sharing_a_bucket_never_share_a_folder():
    dev = engine.run(engine.main_program, config(etcdS3Bucket="team-backups"), SECRET_KEYS, stack="dev")
    staging = engine.run(engine.main_program, config(etcdS3Bucket="team-backups"), SECRET_KEYS, stack="dev2")
    other_project = engine.run(
        engine.main_program,
        {f"other:{k}" if ":" not in k else k: v for k, v in config(etcdS3Bucket="team-backups").items()},
        tuple(f"other:{k}" for k in SECRET_KEYS),
        project="other",
    )
    grants = []
    for run in (dev, staging, other_project):
        statement = _policy(run)["Statement"]
        grants.append((statement[0]["Condition"]["StringLike"]["s3:prefix"][0], statement[2]["Resource"]))
    folders = [folder for folder, _ in grants]
    assert folders == ["k3s-ha/k3s-ha/dev/dev/", "k3s-ha/k3s-ha/dev2/dev2/", "k3s-ha/other/dev/dev/"]
    for folder, objects in grants:
        for other_folder in folders:
            if other_folder != folder:
                # No grant of one stack reaches into another's folder ("dev/" is no prefix of "dev2/").
                assert not other_folder.startswith(folder)
                assert not f"arn:aws:s3:::team-backups/{other_folder}".startswith(objects.rstrip("*"))


def test_a_created_bucket_gets_the_same_folder_scoped_policy():
    run = engine.run(engine.main_program, config(etcdS3=True), SECRET_KEYS)
    statement = _policy(run)["Statement"]
    assert statement[0]["Resource"] == "arn:aws:s3:::dev-etcd-snapshots-20261126"
    assert statement[2]["Resource"] == "arn:aws:s3:::dev-etcd-snapshots-20261126/k3s-ha/k3s-ha/dev/dev/*"


@pytest.mark.parametrize("part", ["a/b", "*", "..", "a b", "a\n", ""])
def test_folder_parts_that_could_widen_a_grant_are_refused(part):
    with pytest.raises(ConfigError):
        snapshot_folder("proj", "stack", part)
    with pytest.raises(ConfigError):
        snapshot_folder(part, "stack", "dev")


def test_the_policy_builder_refuses_an_unchecked_bucket_name():
    with pytest.raises(ConfigError):
        snapshot_policy("*", "k3s-ha/p/s/c/")
