"""An application stack that uses k3s-ha as a library.

It owns an S3 bucket for the application's artifacts, builds a K3sCluster, and then reaches into
the new cluster with a Kubernetes provider built from the cluster's (secret) kubeconfig: a
namespace for the application and a ConfigMap telling it where its bucket is.
"""

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from k3s_ha import K3sCluster, kubernetes_provider

config = pulumi.Config()
stack = pulumi.get_stack()
tags = {**(config.get_object("tags") or {}), "stack": stack}

# The program's own resources, outside the cluster.
artifacts = aws.s3.Bucket(
    "artifacts",
    bucket_prefix=f"{pulumi.get_project()}-{stack}-",
    force_destroy=True,
    tags=tags,
)
aws.s3.BucketPublicAccessBlock(
    "artifacts",
    bucket=artifacts.id,
    block_public_acls=True,
    block_public_policy=True,
    ignore_public_acls=True,
    restrict_public_buckets=True,
)

cluster = K3sCluster(
    f"k3s-{stack}",
    {
        "ssh_private_key": config.require_secret("sshPrivateKey"),
        "ssh_public_key": config.require("sshPublicKey"),
        "ssh_allowed_cidrs": config.require_object("sshAllowedCidrs"),
        "api_allowed_cidrs": config.get_object("apiAllowedCidrs") or [],
        "servers": config.get_int("servers", 3),
        "agents": config.get_int("agents", 1),
        "agent_instance_type": config.get("agentInstanceType", "t3.medium"),
        "tags": tags,
        # Into a network this organisation already has, when the stack names one (vpcId and
        # subnetIds, one subnet per zone; subnet_ids may also be an Output, as awsx's
        # private_subnet_ids is); without them the cluster makes its own VPC across three zones.
        **(
            {"vpc_id": config.require("vpcId"), "subnet_ids": config.require_object("subnetIds")}
            if config.get("vpcId")
            else {}
        ),
    },
)

# Everything Kubernetes goes through this provider (k3s_ha.kubernetes_provider: the cluster's
# secret kubeconfig, and it waits for the whole cluster, so the namespace comes after the last
# node has joined).
kubernetes = kubernetes_provider("k3s", cluster)
in_cluster = pulumi.ResourceOptions(provider=kubernetes)

namespace = k8s.core.v1.Namespace(
    "apps",
    metadata={
        "name": config.get("appNamespace", "apps"),
        "labels": {"app.kubernetes.io/part-of": pulumi.get_project()},
    },
    opts=in_cluster,
)
k8s.core.v1.ConfigMap(
    "artifacts",
    metadata={"name": "artifacts", "namespace": namespace.metadata.name},
    data={"bucket": artifacts.bucket, "region": artifacts.region},
    opts=in_cluster,
)

pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("apiEndpoint", cluster.api_endpoint)
pulumi.export("serverPublicIps", cluster.server_public_ips)
pulumi.export("artifactsBucket", artifacts.bucket)
pulumi.export("namespace", namespace.metadata.name)
