"""Stack config (camelCase keys declared in Pulumi.yaml) -> K3sClusterArgs (snake_case)."""

from __future__ import annotations

from typing import Any

import pulumi

from .aws.cluster import K3sClusterArgs

# config key -> (argument, kind). Pulumi.yaml declares the same keys; a test keeps them in step.
CONFIG_KEYS: dict[str, tuple[str, str]] = {
    "servers": ("servers", "int"),
    "agents": ("agents", "int"),
    "k3sVersion": ("k3s_version", "str"),
    "allowDqlite": ("allow_dqlite", "bool"),
    "serverInstanceType": ("server_instance_type", "str"),
    "agentInstanceType": ("agent_instance_type", "str"),
    "rootVolumeGb": ("root_volume_gb", "int"),
    "amiId": ("ami_id", "str"),
    "sshUser": ("ssh_user", "str"),
    "sshPublicKey": ("ssh_public_key", "str"),
    "keyName": ("key_name", "str"),
    "sshPrivateKey": ("ssh_private_key", "secret"),
    "sshAllowedCidrs": ("ssh_allowed_cidrs", "list"),
    "apiAllowedCidrs": ("api_allowed_cidrs", "list"),
    "vpcCidr": ("vpc_cidr", "str"),
    "vpcId": ("vpc_id", "str"),
    "subnetIds": ("subnet_ids", "list"),
    "extraSecurityGroupIds": ("extra_security_group_ids", "list"),
    "bastionHost": ("bastion_host", "str"),
    "bastionUser": ("bastion_user", "str"),
    "availabilityZones": ("availability_zones", "list"),
    "zoneCount": ("zone_count", "int"),
    "loadBalancer": ("load_balancer", "bool"),
    "loadBalancerInternal": ("load_balancer_internal", "bool"),
    # Read as plain text so the component can check it before anything is created; the
    # component wraps it as a secret at once.
    "token": ("token", "str"),
    "agentToken": ("agent_token", "str"),
    "etcdSnapshotSchedule": ("etcd_snapshot_schedule", "str"),
    "etcdSnapshotRetention": ("etcd_snapshot_retention", "int"),
    "etcdS3": ("etcd_s3", "bool"),
    "etcdS3Bucket": ("etcd_s3_bucket", "str"),
    "readyTimeoutSeconds": ("ready_timeout_seconds", "int"),
    "tags": ("tags", "object"),
}


def cluster_args_from_config(config: pulumi.Config) -> K3sClusterArgs:
    readers = {
        "int": config.get_int,
        "str": config.get,
        "bool": config.get_bool,
        "list": config.get_object,
        "object": config.get_object,
        "secret": config.get_secret,
    }
    args: dict[str, Any] = {}
    for key, (arg, kind) in CONFIG_KEYS.items():
        value = readers[kind](key)
        if value is not None:
            args[arg] = value
    if "ssh_private_key" not in args:
        args["ssh_private_key"] = config.require_secret("sshPrivateKey")
    return args  # type: ignore[return-value]
