"""Each EC2 node's SSH host key, generated here, installed by cloud-init at first boot and
pinned in every connection, so whoever answers on a node's address cannot pose as the node
(and receive root access and both tokens).

- pulumi-command checks the server's key only when `host_key` is set; it parses it with
  `ssh.ParseAuthorizedKey` and offers only that key's algorithm (pulumi/pulumi-command
  provider/pkg/provider/remote/connection.go, v1.2.1), so an ed25519 key pins the ed25519 host
  key even though cloud-init also generates rsa and ecdsa ones.
- cloud-init's `ssh_keys` writes `ed25519_private`/`ed25519_public` to
  /etc/ssh/ssh_host_ed25519_key(.pub), once per instance (canonical/cloud-init
  cloudinit/config/cc_ssh.py, CONFIG_KEY_TO_FILE, frequency PER_INSTANCE).
- Running instances never get it: user data takes effect only at first boot, and changing it
  stops and starts an instance (pulumi-aws Instance.user_data), so the instance ignores its
  changes. Whether a node was launched with its key is read from its HOST_KEY_TAG tag, set at
  creation with the user data; a node without it (created before this existed) is not pinned.
  The tag is only that marker: the key pinned is the generated one, from Pulumi's state
  (pulumi-tls PrivateKey). Anyone with ec2:CreateTags can change a tag, and `pulumi refresh`
  reads it back into the instance's outputs, so a tag that names another key than the state's
  fails the `up` (issue 18.5) rather than pinning whatever it says.
  The tag's changes are ignored too: for a path missing from an instance's old inputs the
  engine deletes it from the new ones (PropertyPath.Reset, pulumi/pulumi
  sdk/go/common/resource/properties_path.go), so a running node never gains the tag.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls
import yaml

# Set (with the user data) only when an instance is created, and never changed afterwards: it
# records which host key the instance was launched with. Tags are always in the instance's
# state, so an instance without this one is known to have been launched without the key.
HOST_KEY_TAG = "k3s-ha-ssh-host-key"


@dataclass(frozen=True)
class HostKey:
    """One node's generated SSH host key."""

    private_openssh: pulumi.Output[str]
    """Secret: pulumi_tls registers PrivateKey with `additional_secret_outputs` naming it
    (pulumi_tls/private_key.py), so it needs no Output.secret, which would cost an apply."""
    public_openssh: pulumi.Output[str]
    """authorized_keys format: `ssh-ed25519 AAAA...`, no trailing newline."""


def generate_host_key(name: str, parent: pulumi.Resource) -> HostKey:
    key = tls.PrivateKey(f"{name}-host-key", algorithm="ED25519", opts=pulumi.ResourceOptions(parent=parent))
    return HostKey(
        private_openssh=key.private_key_openssh,
        public_openssh=key.public_key_openssh.apply(str.strip),
    )


def cloud_config(private_openssh: str, public_openssh: str, extra: Mapping[str, object] | None = None) -> str:
    """User data installing the host key (it holds the private key: keep it secret), with
    `extra` cloud-config keys (e.g. the host name rule of the AWS integration)."""
    body = yaml.safe_dump(
        {**(extra or {}), "ssh_keys": {"ed25519_private": private_openssh, "ed25519_public": public_openssh.strip()}},
        sort_keys=True,
        default_flow_style=False,
    )
    return "#cloud-config\n" + body


def user_data(
    key: HostKey, *wait_for: pulumi.Input[object], extra: Mapping[str, object] | None = None
) -> pulumi.Output[str]:
    """The secret user data; `wait_for` are checks (e.g. of tokens given as Outputs) that must
    pass before any instance that gets this user data is created."""
    return pulumi.Output.secret(
        pulumi.Output.all(key.private_openssh, key.public_openssh, *wait_for).apply(
            lambda v: cloud_config(v[0], v[1], extra)
        )
    )


def pinned_host_key(instance: aws.ec2.Instance, key: HostKey, name: str) -> pulumi.Output[str | None]:
    """The public key to pin for this instance: the generated one from the state, when its
    HOST_KEY_TAG marks it as launched with it; None for an instance launched before host keys
    existed (no such tag; the tag's later changes are ignored, like the user data's, so it is
    never added afterwards). Fails closed when the tag names another key."""

    def pick(values: list) -> str | None:
        tags, generated = values
        marker = (tags or {}).get(HOST_KEY_TAG)
        if marker is None:
            pulumi.log.warn(
                f"{name} has no {HOST_KEY_TAG} tag (launched before k3s-ha pinned host keys, or the tag was "
                "removed): SSH to it accepts any host key until it is replaced (docs/security.md, Accepted risks)",
                resource=instance,
            )
            return None
        if marker.split()[:2] != generated.split()[:2]:
            raise ValueError(
                f"{name}'s {HOST_KEY_TAG} tag names another SSH host key than the one k3s-ha generated for it "
                f"and keeps in the state: someone changed the tag, or the instance does not run the key "
                f"it was launched with. Nothing is sent to it. Check the instance, then set the tag back to "
                f"{generated.split()[0]} {generated.split()[1][:16]}... or replace the instance "
                f"(pulumi up --replace <its URN>)"
            )
        return generated

    return pulumi.Output.all(instance.tags, key.public_openssh).apply(pick)
