"""K3sBootstrapArgs: the bootstrap's inputs, as the component, settings.py and plan.py read
them. Their own module (as aws/args.py is K3sCluster's), so that nothing the component imports
has to import the component back.

The component provider (provider/) infers K3sBootstrap's schema from these classes, so no
`from __future__ import annotations` here: the SDK's analyzer needs real types, and every field
type must be one it can express (str, int, float, bool, list, dict, Any, pulumi.Input and these
TypedDicts, which become object types of the package)."""

from typing import Any, TypedDict

import pulumi
from typing_extensions import NotRequired


class HostArgs(TypedDict):
    """One machine the bootstrap installs K3s on."""

    name: str
    """Logical name, unique in the cluster (a lower-case DNS label such as `server-0`); it names
    this host's commands, so keep it stable."""
    address: pulumi.Input[str]
    """Where Pulumi reaches the host over SSH (a public address, or a private one behind `proxy`)."""
    private_address: NotRequired[pulumi.Input[str]]
    """Where the other nodes reach it; defaults to `address`."""
    replace_on: NotRequired[pulumi.Input[str]]
    """A value that changes when the machine is a new one (an instance id): the host's steps are
    replaced, so a new machine gets a fresh install and join, after a server has removed any
    Node its old machine left under the same name or address."""
    host_key: NotRequired[pulumi.Input[str]]
    """The host's SSH public host key in authorized_keys format (`ssh-ed25519 AAAA...`, the
    content of /etc/ssh/ssh_host_ed25519_key.pub). Without it any host key is accepted, so
    whoever answers on `address` receives root commands and the tokens (see docs/security.md)."""


class ProxyArgs(TypedDict):
    """A bastion (jump host) Pulumi's SSH hops through: the fields of pulumi-command's
    remote.ProxyConnectionArgs, handed to it as they are."""

    host: pulumi.Input[str]
    """The bastion's address."""
    user: NotRequired[pulumi.Input[str]]
    """The login user on the bastion."""
    private_key: NotRequired[pulumi.Input[str]]
    """The private key for the bastion (secret); takes preference over `password`."""
    private_key_password: NotRequired[pulumi.Input[str]]
    """The passphrase of an encrypted `private_key` (secret)."""
    password: NotRequired[pulumi.Input[str]]
    """The password for the bastion (secret)."""
    agent_socket_path: NotRequired[pulumi.Input[str]]
    """SSH agent socket path; defaults to SSH_AUTH_SOCK when that is set."""
    host_key: NotRequired[pulumi.Input[str]]
    """The bastion's SSH public host key; without it any host key is accepted."""
    port: NotRequired[pulumi.Input[float]]
    """The bastion's SSH port (default 22)."""
    dial_error_limit: NotRequired[pulumi.Input[int]]
    """Failed dials tolerated (default 10; -1: no limit)."""
    per_dial_timeout: NotRequired[pulumi.Input[int]]
    """Seconds each dial may take (default 15; 0: no limit)."""


class SshArgs(TypedDict):
    """How Pulumi logs in to every host."""

    user: pulumi.Input[str]
    """The login user; it needs passwordless sudo (`ubuntu` on Ubuntu images)."""
    private_key: pulumi.Input[str]
    """The private key, as a secret."""
    proxy: NotRequired[pulumi.Input[ProxyArgs]]
    """A bastion to hop through, for hosts in private subnets. From Python, a pulumi-command
    remote.ProxyConnectionArgs is taken as it is."""
    dial_error_limit: NotRequired[int]
    """Failed SSH dials tolerated per step, each waiting up to 10 s; the default (20) gives a
    booting VM about a minute and bounds an unreachable host to about 4.5 minutes a step."""


class K3sBootstrapArgs(TypedDict):
    """Inputs of a K3sBootstrap."""

    servers: list[HostArgs]
    """The servers, an odd number; the first one initialises the cluster."""
    ssh: SshArgs
    """SSH login shared by all hosts. The first server uses it too (on port 22 of the other
    hosts' private addresses) to stop and uninstall a node that leaves."""
    agents: NotRequired[list[HostArgs]]
    """The agents (workers); they join after every server has."""
    k3s_version: NotRequired[str]
    """K3s release tag, pinned, e.g. v1.36.4+k3s1."""
    allow_dqlite: NotRequired[bool]
    """Accept a release before v1.19.1 (deprecated Dqlite datastore, no upgrade path to etcd)."""
    token: NotRequired[pulumi.Input[str]]
    """Cluster (server) token, a secret; generated (48 alphanumeric characters) when unset."""
    agent_token: NotRequired[pulumi.Input[str]]
    """Token agents join with, which cannot join a server; generated when unset."""
    registration_address: NotRequired[pulumi.Input[str]]
    """Fixed address servers and agents join through (a load balancer); defaults to the first
    server's private address. It is put in every server's certificate (tls-san)."""
    api_address: NotRequired[pulumi.Input[str]]
    """Address the kubeconfig points at; defaults to the registration address when one is given,
    else the first server's `address`."""
    tls_sans: NotRequired[list[pulumi.Input[str]]]
    """Further names or addresses for the API certificate."""
    removal_key_sources: NotRequired[list[pulumi.Input[str]]]
    """Addresses or CIDR ranges the cluster's removal key is accepted from (its authorized_keys
    `from=`): the servers' private addresses or the subnets they live in. Unset: from any
    address (the key is still `restrict`ed). Keep it stable across server replacements: a node
    accepts the key from the sources it had when its install step last ran."""
    server_config: NotRequired[dict[str, Any]]
    """Further config.yaml settings for every server (identical on all of them), e.g.
    `etcd-snapshot-retention`."""
    agent_config: NotRequired[dict[str, Any]]
    """Further config.yaml settings for every agent, e.g. `node-label`."""
    registries: NotRequired[dict[str, Any]]
    """/etc/rancher/k3s/registries.yaml for every node (`mirrors`, `configs`); sent on stdin, secret."""
    manifests: NotRequired[list[dict[str, Any]]]
    """Kubernetes objects (each with apiVersion, kind and metadata.name) that every server puts
    into K3s's auto-deploy directory as one file, k3s-ha.yaml, which K3s applies at start and
    whenever it changes, e.g. HelmChart resources. Unset: a file k3s-ha wrote before is removed;
    what K3s deployed from it stays."""
    ready_timeout_seconds: NotRequired[int]
    """How long a node may take to become ready before its step fails (default 600)."""
    install_url: NotRequired[str]
    """Where the K3s installer is downloaded from (default https://get.k3s.io)."""
