"""EC2 instances for servers and agents."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws

CANONICAL_OWNER = "099720109477"
UBUNTU_2404 = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-*"
_GRAVITON = re.compile(r"^[a-z]+\d+[a-z]*g[a-z]*\.")  # t4g, m7g, c7gn, r8gd ...


def architecture(instance_type: str) -> str:
    return "arm64" if _GRAVITON.match(instance_type) else "amd64"


def ubuntu_image(instance_type: str, parent: pulumi.Resource) -> pulumi.Output[str]:
    """The newest Ubuntu 24.04 LTS image at the time a node is created.

    Instances ignore later changes of `ami` (see NEW_NODES_ONLY), so a newly published image
    never replaces a running node (pulumi-eks #88).
    """
    return aws.ec2.get_ami_output(
        owners=[CANONICAL_OWNER],
        most_recent=True,
        filters=[
            aws.ec2.GetAmiFilterArgs(name="name", values=[UBUNTU_2404.format(arch=architecture(instance_type))]),
            aws.ec2.GetAmiFilterArgs(name="virtualization-type", values=["hvm"]),
        ],
        opts=pulumi.InvokeOptions(parent=parent),
    ).id


# Inputs whose change would replace (ami, subnetId, keyName, availabilityZone, privateIp,
# associatePublicIpAddress) or stop and start (instanceType, userData) a machine
# (terraform-provider-aws internal/service/ec2/ec2_instance.go: ForceNew fields and
# resourceInstanceUpdate). Independent instances change in parallel: every server at once,
# an outage, and without a load balancer a new first server that finds no peer. So an
# existing node keeps the values it was created with and only new nodes get the new ones;
# a node is moved onto them by replacing it alone (`pulumi up --replace <instance urn>`),
# one at a time (docs/day2.md).
NEW_NODES_ONLY = [
    "ami",
    "keyName",
    "subnetId",
    "availabilityZone",
    "privateIp",
    "associatePublicIpAddress",
    "instanceType",
    "userData",
]


def build_instance(
    name: str,
    *,
    role: str,
    cluster: str,
    ami: pulumi.Input[str],
    instance_type: str,
    subnet_id: pulumi.Input[str],
    security_group_ids: Sequence[pulumi.Input[str]],
    key_name: pulumi.Input[str],
    root_volume_gb: int,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
    instance_profile: pulumi.Input[str] | None = None,
    public_address: bool | None = None,
    user_data: pulumi.Input[str] | None = None,
    creation_tags: Mapping[str, pulumi.Input[str]] | None = None,
) -> aws.ec2.Instance:
    """`public_address`: ask for a public IP whatever the subnet's `map_public_ip_on_launch`
    says (an existing VPC reached without a bastion); None leaves it to the subnet.
    `user_data` takes effect at first boot only: later changes are ignored (NEW_NODES_ONLY),
    because applying them stops and starts the instance (pulumi-aws Instance.user_data).
    `creation_tags` are set when the instance is created and never changed, so they record how
    it was launched."""
    node_tags = {**tags, "Name": name, "k3s-role": role, "k3s-cluster": cluster}
    return aws.ec2.Instance(
        name,
        ami=ami,
        instance_type=instance_type,
        subnet_id=subnet_id,
        vpc_security_group_ids=list(security_group_ids),
        key_name=key_name,
        iam_instance_profile=instance_profile,
        associate_public_ip_address=public_address,
        user_data=user_data,
        # IMDSv2 only; hop limit 1 keeps pods from reaching the node's credentials.
        metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
            http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
        ),
        root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
            encrypted=True, volume_type="gp3", volume_size=root_volume_gb, delete_on_termination=True
        ),
        tags={**node_tags, **(creation_tags or {})},
        volume_tags=node_tags,
        opts=pulumi.ResourceOptions(
            parent=parent,
            # volumeTags: the provider reads it back from EVERY volume attached to the instance
            # and applies a change to every one of them (terraform-provider-aws ec2_instance.go,
            # readVolumeTags and resourceInstanceUpdate), which would strip the EBS CSI driver's
            # tags from the claims' volumes (and the driver's narrowed policy then refuses to
            # detach or delete them). It is set when the instance is created and left alone.
            ignore_changes=[*NEW_NODES_ONLY, "volumeTags", *(f'tags["{key}"]' for key in creation_tags or {})],
        ),
    )
