"""A fake node for the script tests: stand-in tools on PATH (tests/support/standins/, each marked
"stand-in, not the real ..."), their recorded calls, and the dirs scripts write. The `node`
fixture in conftest.py makes one per test."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from k3s_ha.bootstrap.bundle import SCRIPT_DIR
from k3s_ha.bootstrap.commands import remote_command

STANDINS = Path(__file__).parent / "standins"
STANDIN_TOOLS = ("sudo", "k3s", "systemctl", "curl", "hostname", "cloud-init")
VERSION = "v1.36.4+k3s1"
SECRET = "S3cretTokenValue0123456789abcdefXYZ"
# The last line of every config.yaml Python sends (node_config.END_MARKER): without it the
# scripts take stdin for truncated and write nothing.
END = "# k3s-ha: end of config.yaml\n"
SERVER_CONFIG = f"""cluster-init: true
token: {SECRET}
agent-token: {SECRET}-agent
tls-san:
  - k3s.example.internal
{END}"""
CLUSTER_CA = "-----BEGIN CERTIFICATE-----\nstand-in cluster CA, not a certificate\n-----END CERTIFICATE-----\n"
"""The server-ca.crt of the cluster the fake node belongs to (state file server-ca.crt)."""
CA_HASH = hashlib.sha256(CLUSTER_CA.encode()).hexdigest()
AGENT_CONFIG = f"server: https://k3s.example.internal:6443\ntoken: {SECRET}\n{END}"


@dataclass
class Node:
    """One fake machine: stand-in tools on PATH, their state, and the dirs scripts write."""

    root: Path
    path_dir: Path
    state: Path
    config_dir: Path
    install_bin: Path
    systemd_dir: Path
    tmp_dir: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "var-lib-rancher-k3s"

    def run(
        self,
        name: str,
        params: dict[str, str] | None = None,
        stdin: str = "",
        extra_env: dict[str, str] | None = None,
        wall_seconds: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        """`wall_seconds`: a guard against a hang, not a measure (a loaded CI stretches wall time)."""
        params = dict(params or {})
        # The step's bound is the command's `timeout` now (commands.py); tests still name it
        # as the parameter it once was.
        seconds = int(params.pop("K3S_HA_STEP_TIMEOUT", 300))
        all_params = {
            "K3S_HA_CONFIG_DIR": str(self.config_dir),
            # Never the host's /var/lib/rancher/k3s, whose etcd data would change behaviour.
            "K3S_HA_DATA_DIR": str(self.data_dir),
            "K3S_HA_POLL_SECONDS": "0",
            "K3S_HA_STAGE_DIR": str(self.root / "stage"),
            **params,
        }
        joined = re.search(r"^server: (https://\S+?)/?$", stdin, re.M)
        if name == "start-server" and joined and "K3S_HA_JOIN_URL" not in all_params:
            # As Python passes it (steps/servers.py): the URL the config on stdin joins.
            all_params["K3S_HA_JOIN_URL"] = joined.group(1)
        env = {
            "PATH": f"{self.path_dir}:{os.environ['PATH']}",
            "STANDIN_STATE": str(self.state),
            # Where the stand-ins put what K3s writes under its data dir on a start.
            "STANDIN_K3S_DATA_DIR": str(self.data_dir),
            "TMPDIR": str(self.tmp_dir),
            "LC_ALL": "C",
            **(extra_env or {}),
        }
        return subprocess.run(
            ["bash", "-c", self.command(name, all_params, seconds)],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=wall_seconds,
        )

    def command(self, name: str, params: dict[str, str], seconds: int = 300) -> str:
        """The real command text, with the bundle verified into this node's own root instead
        of /var/lib/k3s-ha, copied from the checkout's scripts (the upload)."""
        return remote_command(
            name, params, seconds, installs_bundle=True, bundle_root=str(self.root / "bundles"), upload=str(SCRIPT_DIR)
        )

    def set(self, name: str, *answers: str) -> None:
        (self.state / name).write_text("".join(f"{a}\n" for a in answers))

    def calls(self, tool: str) -> list[str]:
        log = self.state / f"{tool}.log"
        return log.read_text().splitlines() if log.exists() else []

    def peer_of_this_cluster(self, address: str) -> None:
        """A server of this cluster answers at `address`: /ping, and /cacerts with its CA."""
        self.set(f"ping.{address}", "pong")
        (self.state / f"cacerts.{address}").write_text(CLUSTER_CA)

    def agent_is_healthy(self, node: str = "k3s-server-1") -> None:
        self.set(f"node.{node}.Ready", "True")

    def server_is_healthy(self, node: str = "k3s-server-1") -> None:
        (self.state / "server-ca.crt").write_text(CLUSTER_CA)
        self.set("readyz", "ok")
        self.set(f"node.{node}.Ready", "True")
        self.set(f"node.{node}.EtcdIsVoter", "True")

    def install_fake_k3s(self, version: str, unit: str | None) -> None:
        """A k3s binary reporting `version` (and the unit), as a previous install left them: like
        the stand-in installer's, a wrapper around the k3s stand-in, with the version in the
        state file "version"."""
        self.install_bin.mkdir(exist_ok=True)
        binary = self.install_bin / "k3s"
        binary.write_text(f'#!/bin/sh\n# stand-in, not the real k3s\nexec {STANDINS / "k3s"} "$@"\n')
        binary.chmod(0o755)
        self.set("version", version)
        if unit:
            self.systemd_dir.mkdir(exist_ok=True)
            (self.systemd_dir / unit).write_text("[Service]\n")


def server_params(node: Node, **extra: str) -> dict[str, str]:
    # The k3s stand-in sits in the PATH dir, where production has /usr/local/bin.
    return {"K3S_HA_BIN_DIR": str(node.path_dir), "K3S_READY_TIMEOUT": "10", **extra}


def agent_params(node: Node, **extra: str) -> dict[str, str]:
    """An agent node: the k3s stand-in on PATH, and no admin kubeconfig (agent_only), so the
    scripts must read the node's own Node with the kubelet's kubeconfig."""
    node.set("agent_only", "")
    return {"K3S_HA_BIN_DIR": str(node.path_dir), "K3S_READY_TIMEOUT": "10", **extra}


def with_lines(config: str, *lines: str) -> str:
    """`config` with `lines` added before its end marker line."""
    assert config.endswith(END)
    return config[: -len(END)] + "".join(f"{line}\n" for line in lines) + END


def install_params(node: Node, role: str, **extra: str) -> dict[str, str]:
    return {
        "K3S_VERSION": VERSION,
        "K3S_ROLE": role,
        "K3S_HA_BIN_DIR": str(node.install_bin),
        "K3S_HA_SYSTEMD_DIR": str(node.systemd_dir),
        **extra,
    }


def assert_secret_hidden(node: Node, *results: subprocess.CompletedProcess[str]) -> None:
    """The token is nowhere in output, stand-in call logs (argv) or installer environment."""
    for result in results:
        assert SECRET not in result.stdout
        assert SECRET not in result.stderr
    for recorded in node.state.iterdir():
        assert SECRET not in recorded.read_text(errors="replace"), recorded.name


def assert_only_config_file(node: Node) -> None:
    """No temporary file is left next to config.yaml."""
    assert sorted(p.name for p in node.config_dir.iterdir()) == ["config.yaml"]


def last_error(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.strip().splitlines()[-1]


def write_config(node: Node, text: str) -> Path:
    """A config.yaml as an earlier run left it (mode 0600)."""
    node.config_dir.mkdir(exist_ok=True)
    config = node.config_dir / "config.yaml"
    config.write_text(text)
    config.chmod(0o600)
    return config


def make_etcd_data(node: Node) -> Path:
    """What a server that has been an etcd member holds: K3s counts only member/wal as data
    (k3s-io/k3s pkg/etcd/etcd.go, IsInitialized); the name file is written on every start."""
    db = node.data_dir / "server" / "db"
    (db / "etcd" / "member" / "wal").mkdir(parents=True)
    (db / "etcd" / "member" / "wal" / "0000000000000000-0000000000000000.wal").write_text("etcd data\n")
    (db / "etcd" / "name").write_text("k3s-server-1-0a1b2c3d\n")
    # K3s wrote it at the member's last start (pkg/server/server.go writeToken).
    (node.data_dir / "server" / "token").write_text(f"K10{CA_HASH}::server:{SECRET}\n")
    return db


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def gone_soon(pid: int, seconds: float = 5) -> bool:
    """Whether process `pid` is gone (or goes within `seconds`: a killed process is reaped
    a moment after its parent exits)."""
    deadline = time.monotonic() + seconds
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not pid_alive(pid)


def make_node(tmp_path: Path) -> Node:
    """A fresh fake node under `tmp_path`."""
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    for tool in STANDIN_TOOLS:
        (path_dir / tool).symlink_to(STANDINS / tool)
    state = tmp_path / "state"
    state.mkdir()
    (state / "hostname").write_text("K3S-Server-1\n")
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    return Node(
        root=tmp_path,
        path_dir=path_dir,
        state=state,
        config_dir=tmp_path / "etc-rancher-k3s",
        install_bin=tmp_path / "usr-local-bin",
        systemd_dir=tmp_path / "etc-systemd-system",
        tmp_dir=tmp_dir,
    )
