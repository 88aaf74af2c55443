"""Each node script's declared contract: its parameters (typed fields, the environment names
they travel under), what it reads on stdin and prints on stdout, and its time bound.

The steps build one of these per call; `to_env()` is the only way parameters reach a script.
tests/scripts/test_contracts.py checks that the `${K3S_...}` names each script reads are
exactly its declared fields plus TEST_HOOKS, so a parameter cannot be added on one side only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import pulumi

SSH_TIMEOUT_SECONDS = 10
"""K3S_HA_SSH_TIMEOUT's default in lib.sh: seconds to connect when a server SSHes to a node."""

TEST_HOOKS = frozenset(
    {
        "K3S_HA_BIN_DIR",
        "K3S_HA_CONFIG_DIR",
        "K3S_HA_DATA_DIR",
        "K3S_HA_SYSTEMD_DIR",
        "K3S_HA_STAGE_DIR",
        "K3S_HA_POLL_SECONDS",
        "K3S_HA_SSH_TIMEOUT",
        "K3S_HA_NODE_NAME",
        "K3S_HA_KUBECONFIG",
        "K3S_HA_CLOUD_INIT_TIMEOUT",
        "K3S_HA_DOWNLOAD_TIMEOUT",
        "K3S_HA_INSTALLER_TIMEOUT",
        "K3S_HA_AUTHORIZED_KEYS",
        "K3S_HA_STEP_SECONDS",
    }
)
"""Environment the scripts read that Pulumi does not set: paths and waits the tests (and people
running a script by hand on an odd layout) override. Python sets none of them, but for
K3S_HA_DATA_DIR on the start steps (_Start.data_dir), which know it from the config they send.
K3S_HA_STEP_SECONDS is the step's time bound, which run.sh passes on to the script."""


def bound(default: int) -> int:
    """A field that is no parameter: a count the step's time bound grows with."""
    return field(default=default, metadata={})  # type: ignore[return-value]


def env(name: str, default: object = dataclasses.MISSING) -> object:
    """A field that travels as environment variable `name`."""
    if default is dataclasses.MISSING:
        return field(metadata={"env": name})
    return field(default=default, metadata={"env": name})


@dataclass(frozen=True)
class Script:
    """A call of one script. Subclasses declare NAME, STDIN, STDOUT and their fields."""

    NAME: ClassVar[str]
    STDIN: ClassVar[str] = "nothing"
    STDOUT: ClassVar[str] = "nothing"

    def to_env(self) -> dict[str, pulumi.Input[str]]:
        """The script's environment: each set field under its declared name (None: unset)."""
        out: dict[str, pulumi.Input[str]] = {}
        for f in dataclasses.fields(self):
            if "env" not in f.metadata:
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool):
                value = "1" if value else "0"
            out[f.metadata["env"]] = value if isinstance(value, pulumi.Output) else str(value)
        return out

    def seconds(self) -> int:
        """The step's time bound, which the command puts `timeout` around."""
        raise NotImplementedError

    @classmethod
    def declared(cls) -> frozenset[str]:
        return frozenset(f.metadata["env"] for f in dataclasses.fields(cls) if "env" in f.metadata)


@dataclass(frozen=True)
class CheckUpgrade(Script):
    NAME: ClassVar[str] = "check-upgrade"
    version: str = env("K3S_VERSION")
    upgrade_from: str | None = env("K3S_HA_UPGRADE_FROM", None)
    """The release every node must run before moving to `version`'s minor (versions.py
    UPGRADE_PREREQUISITES), None when that minor needs none."""

    def seconds(self) -> int:
        return 120


@dataclass(frozen=True)
class InstallK3s(Script):
    NAME: ClassVar[str] = "install-k3s"
    STDOUT: ClassVar[str] = "NAME fresh|running BOOT_ID TIME: node name, whether K3s ran before, boot id, when"
    version: str = env("K3S_VERSION")
    role: str = env("K3S_ROLE")
    install_url: str = env("K3S_INSTALL_URL")
    upgrade_from: str | None = env("K3S_HA_UPGRADE_FROM", None)
    ssh_user: pulumi.Input[str] | None = env("K3S_HA_SSH_USER", None)
    removal_key: pulumi.Input[str] | None = env("K3S_HA_REMOVAL_KEY", None)
    """The authorized_keys line of the cluster's removal key (plan.RemovalKey), which the
    script puts into `ssh_user`'s file; None: left as it is."""

    def seconds(self) -> int:
        # cloud-init 600 + installer download 300 + installer 900 (install-k3s.sh) + 120.
        return 600 + 300 + 900 + 120


@dataclass(frozen=True)
class _Start(Script):
    STDIN: ClassVar[str] = "config.yaml (secret), then registries.yaml after a separator"
    STDOUT: ClassVar[str] = "the node name"
    ready_timeout: int = env("K3S_READY_TIMEOUT")
    version: str = env("K3S_VERSION")
    with_registries: bool | None = env("K3S_HA_WITH_REGISTRIES", None)
    wait_cloud_init: bool | None = env("K3S_HA_WAIT_CLOUD_INIT", None)
    """True when the role's kubelet runs with cloud-provider=external: the node counts as up
    only once a cloud controller manager has initialised it (lib.sh k3s_ha_check_cloud_initialized)."""
    data_dir: str | None = env("K3S_HA_DATA_DIR", None)
    """K3s's data dir, as the config.yaml on stdin sets it (plan.start_fields): the script
    does not read it back from that YAML (issue 16)."""

    def seconds(self) -> int:
        return self.ready_timeout + 120


@dataclass(frozen=True)
class StartServer(_Start):
    NAME: ClassVar[str] = "start-server"
    STDIN: ClassVar[str] = "config.yaml (secret), then registries.yaml and the manifests, each after a separator"
    STDOUT: ClassVar[str] = "the node name; on the init step (`init`) `HASH created|existing` instead"
    with_manifests: bool | None = env("K3S_HA_WITH_MANIFESTS", None)
    """True when stdin must carry the manifests for the auto-deploy directory (k3s-ha.yaml)."""
    peers: pulumi.Input[str] | None = env("K3S_HA_PEERS", None)
    machine: pulumi.Input[str] | None = env("K3S_HA_MACHINE", None)
    """Ignored by the script: the machine's identity, so a new machine re-runs the step."""
    cluster_init: str | None = env("K3S_HA_CLUSTER_INIT", None)
    """"never" on the first server's start (the init step made the cluster); None (allowed)
    on the init step."""
    join_url: pulumi.Input[str] | None = env("K3S_HA_JOIN_URL", None)
    """The `server:` URL the config.yaml on stdin joins; None on the first server, whose
    config has `cluster-init: true` (node_config.render_server_config_yaml)."""
    ca_hash: pulumi.Input[str] | None = env("K3S_HA_CA_HASH", None)
    """The first server's start: the cluster CA's SHA-256 (the init step's stdout), which a peer
    it joins on a fresh disk must present."""
    init: bool | None = env("K3S_HA_INIT", None)
    """True on the init step only (steps/servers.py): start the cluster, or on a server with
    cluster data only read its CA; stdout is then `HASH created|existing`."""


@dataclass(frozen=True)
class StartAgent(_Start):
    NAME: ClassVar[str] = "start-agent"


@dataclass(frozen=True)
class ConfirmNode(Script):
    NAME: ClassVar[str] = "confirm-node"
    node: pulumi.Input[str] = env("K3S_HA_NODE")
    ready_timeout: int = env("K3S_READY_TIMEOUT")

    def seconds(self) -> int:
        return self.ready_timeout + 60


@dataclass(frozen=True)
class EvictNode(Script):
    """A server's evict step: run on a server that is a member, before a new machine joins."""

    NAME: ClassVar[str] = "evict-node"
    STDIN: ClassVar[str] = "the SSH private key (secret)"
    address: pulumi.Input[str] = env("K3S_HA_ADDRESS")
    role: str = env("K3S_ROLE")
    cluster: str = env("K3S_HA_CLUSTER")
    host: str = env("K3S_HA_HOST")
    host_key: pulumi.Input[str] = env("K3S_HA_HOST_KEY")
    ssh_user: pulumi.Input[str] = env("K3S_HA_SSH_USER")

    DEAD_SERVERS: ClassVar[int] = 3
    """Dead servers the bound covers: with more, no cluster of up to 7 servers has quorum left.
    A constant, so that adding servers does not change (and re-run) every evict step."""

    def seconds(self) -> int:
        # The node list and one SSH command, two stale Nodes of 180 s each, 30 s to spare; then
        # the member record, and per dead server its key's read, an SSH probe, its Node and secret.
        return SSH_TIMEOUT_SECONDS + 450 + self.DEAD_SERVERS * (SSH_TIMEOUT_SECONDS + 240)


@dataclass(frozen=True)
class RecordMembers(Script):
    """One step on the first server after every server started, before any agent starts."""

    NAME: ClassVar[str] = "record-members"
    STDIN: ClassVar[str] = (
        "'ROLE NAME ADDRESS [TYPE BASE64] [@TIME]' per wanted node (@TIME: an agent's fresh"
        " machine, installed then), then an end line"
    )
    STDOUT: ClassVar[str] = "the leaving nodes, 'leaving NAME ROLE ADDRESS [TYPE BASE64]' a line"
    cluster: str = env("K3S_HA_CLUSTER")
    """The label an older release put on its nodes, read while there is no member record."""
    nodes: int = bound(0)
    """Not a parameter: how many nodes are wanted, for the bound."""

    def seconds(self) -> int:
        # Three API calls, the record's write, at most two deletions (Node and secret, 60 s each)
        # per rebuilt agent: 300 s for those plus a second per node for the loops.
        return 300 + self.nodes


@dataclass(frozen=True)
class RemoveMembers(Script):
    NAME: ClassVar[str] = "remove-members"
    STDIN: ClassVar[str] = "record-members' stdout (the leaving nodes), an end line, then the SSH private key"
    cluster: str = env("K3S_HA_CLUSTER")
    """The label an older release put on its nodes, read while there is no member record."""
    ssh_user: pulumi.Input[str] = env("K3S_HA_SSH_USER")
    drain_timeout: int = env("K3S_DRAIN_TIMEOUT")
    lb_grace_seconds: int = env("K3S_HA_LB_GRACE_SECONDS")
    removals_per_run: int = env("K3S_HA_REMOVALS_PER_RUN", 20)
    """Leaving nodes one run removes at most (the bound covers them); with more, the step fails
    after those, saying so, and the next `up` goes on."""

    def removal_seconds(self) -> int:
        # Four SSH commands of 30 s, the uninstaller's 300 s, the API calls' 300 s.
        return self.drain_timeout + self.lb_grace_seconds + 4 * SSH_TIMEOUT_SECONDS + 720

    def seconds(self) -> int:
        # Not the cluster's size: adding a node must not change this step's command.
        return 120 + self.removals_per_run * self.removal_seconds()


@dataclass(frozen=True)
class PrintKubeconfig(Script):
    NAME: ClassVar[str] = "print-kubeconfig"
    STDOUT: ClassVar[str] = "the admin kubeconfig (secret)"

    def seconds(self) -> int:
        return 60


def all_scripts() -> list[type[Script]]:
    """Every script contract the program runs."""
    found: list[type[Script]] = []
    pending = list(Script.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "NAME" in vars(cls):
            found.append(cls)
    return sorted(found, key=lambda cls: cls.NAME)
