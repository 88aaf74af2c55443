"""A lab of hosts on this machine: each host is its own network, mount and UTS namespace with a
real sshd (Debian openssh-server) and real sudo, reached over real SSH from a hub namespace.

Layout: a hub network namespace holds a bridge (10.213.0.1/24); each host's namespace has a
veth onto it and the address 10.213.0.<10+i>. Only these namespace addresses (and loopback)
are ever contacted. Per host, /etc/rancher, /var/lib/rancher, /var/lib/k3s-ha, the login user's home, /usr/local/bin, /usr/local/sbin,
/etc/systemd/system, /run and /tmp are bind mounts of directories under the lab's root, so
K3s files never touch the machine's own; /etc/hosts is the lab's, and the CA bundle holds only
the certificate of the lab's mirror (mirror.py, on the hub), which serves the stand-in
installer over HTTPS. Every wait is bounded and `close()` ends every process in the lab's
namespaces (by pid) and removes them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
STANDIN = HERE / "standin"
SUBNET = "10.213.0"
HUB_ADDRESS = f"{SUBNET}.1"
MIRROR = "k3s-mirror.lab"  # the hub's name in the hosts' /etc/hosts
USER_PREFIX = "k3slab"  # + the lab's id: every lab has its own login user, so labs may overlap
PACKAGES = {  # Debian package -> a file it installs
    "openssh-server": "/usr/sbin/sshd",
    "openssh-client": "/usr/bin/ssh",
    "openssh-sftp-server": "/usr/lib/openssh/sftp-server",
    "sudo": "/usr/bin/sudo",
    "etcd-server": "/usr/bin/etcd",
    "etcd-client": "/usr/bin/etcdctl",
    "iproute2": "/usr/sbin/ip",
    "util-linux": "/usr/bin/unshare",
    "curl": "/usr/bin/curl",
    "openssl": "/usr/bin/openssl",
    # The K3s stand-in reads the auto-deploy directory's YAML with the hosts' python3.
    "python3-yaml": "/usr/lib/python3/dist-packages/yaml/__init__.py",
}
# Mount points the hosts bind over; created on the machine when missing (empty directories),
# and left there: removing one would detach the bind mounts of another lab that is running.
MOUNT_POINTS = ("/etc/rancher", "/var/lib/rancher", "/var/lib/k3s-ha")


def missing_packages() -> list[str]:
    return [name for name, path in PACKAGES.items() if not os.path.exists(path)]


def unavailable_reason() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the lab needs root (network and mount namespaces, sshd, sudo)"
    missing = missing_packages()
    if missing:
        return f"the lab needs Debian packages {' '.join(missing)} (tests/run.sh installs them when run as root)"
    if not os.path.exists("/usr/bin/python3"):
        return "the lab's stand-ins need /usr/bin/python3"
    probe = f"k3slab-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=20)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    try:
        inside = subprocess.run(
            ["ip", "netns", "exec", probe, "unshare", "--mount", "--uts", "--propagation", "private", "true"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=20)
    if inside.returncode != 0:
        return f"cannot create mount/UTS namespaces: {inside.stderr.strip()}"
    return None


def _run(*args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


@dataclass
class Host:
    name: str
    """The host's name in the program (e.g. s0); its host name is `lab-<name>`."""
    address: str
    netns: str
    root: Path
    process: subprocess.Popen | None = None
    renamed: str | None = None
    """A host name given since (Lab.rename), which it boots with from then on."""

    @property
    def hostname(self) -> str:
        return self.renamed or f"lab-{self.name}"

    def path(self, inside: str) -> Path:
        """Where a file the host sees at `inside` (under a per-host mount) lives on the machine."""
        return self.root / inside.lstrip("/")


@dataclass
class SshResult:
    status: int
    stdout: str
    stderr: str
    seconds: float


class Lab:
    """Hosts in namespaces with real sshd and sudo. Use as a context manager."""

    def __init__(self, names: list[str]):
        self.id = uuid.uuid4().hex[:4]
        self.root = Path(tempfile.mkdtemp(prefix=f"k3s-lab-{self.id}-", dir="/var/tmp"))
        os.chmod(self.root, 0o755)
        self.hub = f"k3slab-{self.id}-hub"
        self.hosts: dict[str, Host] = {}
        self.names = names
        self.user = f"{USER_PREFIX}{self.id}"
        self.created_user = False
        self.sudoers = Path(f"/etc/sudoers.d/k3slab-{self.id}")
        self.key = self.root / "id_ed25519"
        self.login_key = self.key
        """The key the lab's own checks log in with: the last one `authorized_keys` was given."""
        self._keys_lock = threading.Lock()
        self.mirror: subprocess.Popen | None = None

    # --- setup ----------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _setup(self) -> None:
        remove_abandoned_labs()
        (self.root / "owner.pid").write_text(f"{os.getpid()}\n")
        for point in MOUNT_POINTS:
            os.makedirs(point, exist_ok=True)
        self._user()
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "k3s-lab", "-f", str(self.key))
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.root / "ssh_host_ed25519_key"))
        shutil.copy(f"{self.key}.pub", self.root / "authorized_keys")
        os.chmod(self.root / "authorized_keys", 0o644)
        self._release()
        _run("ip", "netns", "add", self.hub)
        _run("ip", "-n", self.hub, "link", "set", "lo", "up")
        _run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.hub, "addr", "add", f"{HUB_ADDRESS}/24", "dev", "br0")
        _run("ip", "-n", self.hub, "link", "set", "br0", "up")
        self._mirror()
        hosts_file = self.root / "hosts"
        lines = ["127.0.0.1 localhost", f"{HUB_ADDRESS} {MIRROR}"]
        for index, name in enumerate(self.names):
            host = Host(name, f"{SUBNET}.{10 + index}", f"k3slab-{self.id}-{name}", self.root / "hosts.d" / name)
            self.hosts[name] = host
            lines.append(f"{host.address} {host.hostname}")
        hosts_file.write_text("\n".join(lines) + "\n")
        for index, host in enumerate(self.hosts.values()):
            self._start_host(host, index, hosts_file)
        deadline = time.time() + 30
        for host in self.hosts.values():
            self._wait_for_ssh(host, deadline)
        first = next(iter(self.hosts.values()))
        while self.ssh(first, f"curl -sSf -o /dev/null {self.install_url}", timeout=10).status != 0:
            if time.time() > deadline:
                raise RuntimeError(f"the mirror at {self.install_url} did not answer within 30 s")
            time.sleep(0.3)

    def _wait_for_ssh(self, host: Host, deadline: float) -> None:
        while True:
            result = self.ssh(host, "true", timeout=10)
            if result.status == 0:
                return
            if time.time() > deadline:
                raise RuntimeError(f"sshd on {host.name} did not answer in time: {result.stderr.strip()}")
            time.sleep(0.3)

    def _user(self) -> None:
        if _run("id", "-u", self.user, check=False).returncode != 0:
            # '*': no password, but not locked (sshd refuses locked accounts without PAM).
            _run("useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", self.user)
            self.created_user = True
        self.sudoers.write_text(f"{self.user} ALL=(ALL:ALL) NOPASSWD: ALL\n")
        os.chmod(self.sudoers, 0o440)
        _run("visudo", "-c", "-q", "-f", str(self.sudoers))

    def _release(self) -> None:
        """The stand-in installer, served as file:// (K3S_INSTALL_URL), pointing at the release,
        and the files hosts start from. All under the lab's root: a checkout under /tmp is
        hidden inside the hosts, which get their own /tmp."""
        dist = self.root / "dist"
        dist.mkdir()
        for name in ("k3s_standin.py", "systemctl.py"):
            shutil.copy(STANDIN / name, dist / name)
        shutil.copy(HERE / "host-init.sh", dist / "host-init.sh")
        text = (STANDIN / "install.sh").read_text().replace("@RELEASE@", str(dist / "k3s_standin.py"))
        (dist / "install.sh").write_text(text)

    @property
    def home(self) -> str:
        """The login user's home on the machine; each host bind-mounts its own over it."""
        return os.path.expanduser(f"~{self.user}")

    @property
    def install_url(self) -> str:
        return f"https://{MIRROR}/install.sh"

    def _mirror(self) -> None:
        """The installer over HTTPS from the hub, with a certificate the hosts trust."""
        dist = self.root / "dist"
        _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "2", "-subj", f"/CN={MIRROR}", "-addext", f"subjectAltName=DNS:{MIRROR},IP:{HUB_ADDRESS}",
             "-keyout", str(self.root / "mirror.key"), "-out", str(self.root / "mirror.crt"))  # fmt: skip
        log = open(self.root / "mirror.log", "ab")
        self.mirror = subprocess.Popen(
            ["ip", "netns", "exec", self.hub, "/usr/bin/python3", str(HERE / "mirror.py"), str(dist),
             str(self.root / "mirror.crt"), str(self.root / "mirror.key"), HUB_ADDRESS],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip

    def _start_host(self, host: Host, index: int, hosts_file: Path) -> None:
        veth_hub, veth_host = f"kl{self.id}{index:02d}a", f"kl{self.id}{index:02d}b"
        _run("ip", "netns", "add", host.netns)
        _run("ip", "link", "add", veth_hub, "type", "veth", "peer", "name", veth_host)
        _run("ip", "link", "set", veth_hub, "netns", self.hub)
        _run("ip", "link", "set", veth_host, "netns", host.netns)
        _run("ip", "-n", self.hub, "link", "set", veth_hub, "master", "br0", "up")
        _run("ip", "-n", host.netns, "link", "set", veth_host, "name", "eth0")
        _run("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _run("ip", "-n", host.netns, "link", "set", "eth0", "up")
        _run("ip", "-n", host.netns, "link", "set", "lo", "up")
        self._boot(host, hosts_file)

    def _boot(self, host: Host, hosts_file: Path) -> None:
        """Start the host's own processes: its mounts and sshd (host-init.sh)."""
        host.root.mkdir(parents=True, exist_ok=True)
        config = host.root.parent / f"{host.name}.sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {host.address}",
                    f"HostKey {self.root / 'ssh_host_ed25519_key'}",
                    # The lab's login keys, then the user's own file on the host (where the
                    # install step puts the cluster's removal key).
                    f"AuthorizedKeysFile {self.root / 'authorized_keys'} .ssh/authorized_keys",
                    "PidFile /run/sshd.pid",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin no",
                    f"AllowUsers {self.user}",
                    # No MaxStartups or MaxSessions: the distribution's defaults (10:30:100
                    # and 10), which drop connections when many steps dial one host at once.
                    "LogLevel ERROR",
                    # As in Debian's and Ubuntu's sshd_config: pulumi-command's CopyToRemote
                    # (the script bundle) speaks SFTP.
                    "Subsystem sftp /usr/lib/openssh/sftp-server",
                ]
            )
            + "\n"
        )
        log = open(host.root.parent / f"{host.name}.sshd.log", "ab")
        host.process = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts", "--propagation", "private",
             "--kill-child", "--fork", "bash", str(self.root / "dist" / "host-init.sh"), str(host.root),
             host.hostname, str(config), str(hosts_file), str(self.root / "dist" / "systemctl.py"),
             str(self.root / "mirror.crt"), self.user, self.home],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip

    # --- use ------------------------------------------------------------------------------

    def ssh(
        self, host: Host, command: str, stdin: str | None = None, timeout: float = 300, key: Path | None = None
    ) -> SshResult:
        """Run `command` on `host` over real SSH as the lab user (as pulumi-command would),
        logging in with `key` (default: `login_key`)."""
        args = [
            "ip", "netns", "exec", self.hub, "ssh", "-i", str(key or self.login_key), "-o", "IdentitiesOnly=yes", "-T",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-o", "ServerAliveInterval=5",
            f"{self.user}@{host.address}", command,
        ]  # fmt: skip
        started = time.time()
        try:
            result = subprocess.run(
                args,
                input=stdin if stdin is not None else "",
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as expired:
            return SshResult(124, str(expired.stdout or ""), f"timed out after {timeout}s", time.time() - started)
        return SshResult(result.returncode, result.stdout, result.stderr, time.time() - started)

    def sftp_put(self, host: Host, local: Path, remote_path: str, key: Path | None = None) -> SshResult:
        """Copy directory `local` to `remote_path/<its name>` over real SFTP as the lab user,
        where pulumi-command's CopyToRemote puts a directory archive (copyController.go
        sftpCopy; paths relative to the login's home)."""
        batch = "".join(f"-mkdir {p}\n" for p in _parents(remote_path)) + f"put -r {local} {remote_path}/{local.name}\n"
        args = [
            "ip", "netns", "exec", self.hub, "sftp", "-i", str(key or self.login_key), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-b", "-", f"{self.user}@{host.address}",
        ]  # fmt: skip
        started = time.time()
        result = subprocess.run(args, input=batch, capture_output=True, text=True, timeout=120)
        return SshResult(result.returncode, result.stdout, result.stderr, time.time() - started)

    def unit_running(self, host: Host, unit: str) -> bool:
        """Whether the stand-in systemd runs `unit` on `host` now (its pid file names a live process)."""
        pid_file = host.path(f"/run/k3s-standin/{unit}.pid")
        try:
            pid = int(pid_file.read_text().strip() or 0)
        except (OSError, ValueError):
            return False
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return pid > 0

    def root_on(self, host: Host, command: str, timeout: float = 60) -> SshResult:
        """`command` as root on `host` (through sudo, like the node scripts)."""
        return self.ssh(host, f"sudo -n bash -c {_quote(command)}", timeout=timeout)

    def by_address(self, address: str) -> Host:
        return next(h for h in self.hosts.values() if h.address == address)

    def kill_unit(self, host: Host, unit: str) -> None:
        """SIGKILL a unit's whole process group (k3s and its etcd) and the stand-in systemd's
        supervisor of it, like a crashed machine: nothing restarts it (Restart=always would)."""
        supervisor = host.path(f"/run/k3s-standin/{unit}.supervisor")
        if supervisor.exists():
            os.kill(int(supervisor.read_text().strip()), signal.SIGKILL)
        pid_file = host.path(f"/run/k3s-standin/{unit}.pid")
        pid = int(pid_file.read_text().strip())
        os.killpg(pid, signal.SIGKILL)

    def kill_host(self, host: Host) -> None:
        """The machine dies: every process on it ends at once and its network goes dark (its
        link is down, so nothing answers there: no SSH, no etcd peer, no API)."""
        self._kill_processes(host)
        _run("ip", "-n", host.netns, "link", "set", "eth0", "down")

    def power_on(self, host: Host) -> None:
        """A dead machine (kill_host) boots again with its disk as it was: its link comes up, it
        gets a new boot id, sshd starts, and systemd starts every enabled unit, as at any boot
        (the K3s units are WantedBy=multi-user.target; install.sh), without waiting for them
        to be ready: a K3s that never gets ready holds nothing up."""
        _run("ip", "-n", host.netns, "link", "set", "eth0", "up")
        (host.root / "boot_id").unlink(missing_ok=True)
        self._boot(host, self.root / "hosts")
        self._wait_for_ssh(host, time.time() + 30)
        started = self.root_on(
            host,
            "for u in k3s k3s-agent; do if systemctl is-enabled --quiet $u; then systemctl start --no-block $u; fi; done",
        )
        assert started.status == 0, started.stderr

    def rename(self, host: Host, hostname: str) -> None:
        """The machine is given another host name and reboots (kill_host, power_on): same
        address, disk and SSH host key, and its K3s, enabled, starts under the new name
        (K3s names a node after its host name: pkg/cli/cmds)."""
        self.kill_host(host)
        host.renamed = hostname
        hosts_file = self.root / "hosts"
        lines = hosts_file.read_text().splitlines()
        hosts_file.write_text(
            "\n".join(f"{host.address} {hostname}" if line.startswith(f"{host.address} ") else line for line in lines)
            + "\n"
        )
        self.power_on(host)

    def reimage(self, host: Host) -> None:
        """A new machine at the same address under the same host name: the old one's processes
        and disk are gone (nothing of K3s is left), and it boots to a fresh sshd."""
        self._kill_processes(host)
        shutil.rmtree(host.root)
        self._boot(host, self.root / "hosts")
        self._wait_for_ssh(host, time.time() + 30)

    def _kill_processes(self, host: Host) -> None:
        for pid in self.pids(host.netns):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if host.process is not None:
            host.process.wait(timeout=10)
        deadline = time.time() + 10
        while self.pids(host.netns):
            if time.time() > deadline:
                raise RuntimeError(f"processes on {host.name} outlived SIGKILL: {self.pids(host.netns)}")
            time.sleep(0.1)

    def key_file(self, private_key: str) -> Path:
        """A step's private key (its connection's `privateKey`) as a file ssh reads, 0600 under
        the lab's root: the driver logs in with the key each step was given."""
        path = self.root / f"login-{hashlib.sha256(private_key.encode()).hexdigest()[:12]}"
        with self._keys_lock:  # the driver's threads ask at once
            if not path.exists():
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "w") as f:
                    f.write(private_key if private_key.endswith("\n") else private_key + "\n")
        return path

    def new_key(self, name: str) -> Path:
        """Another login key pair (for a key rotation); not yet authorized anywhere."""
        path = self.root / name
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"k3s-lab-{name}", "-f", str(path))
        return path

    def authorized_keys(self, keys: list[Path]) -> None:
        """The public keys every host's login user accepts (the hosts share one file, as if the
        same edit had been made on each of them)."""
        text = "".join(Path(f"{key}.pub").read_text() for key in keys)
        (self.root / "authorized_keys").write_text(text)
        self.login_key = keys[-1]

    def unit_log(self, host: Host, unit: str) -> str:
        path = host.path(f"/run/k3s-standin/{unit}.log")
        return path.read_text(errors="replace") if path.exists() else ""

    # --- teardown -------------------------------------------------------------------------

    def pids(self, netns: str) -> list[int]:
        """Every process in a lab namespace."""
        result = _run("ip", "netns", "pids", netns, check=False, timeout=20)
        return [int(p) for p in result.stdout.split()]

    def close(self) -> None:
        namespaces = [h.netns for h in self.hosts.values()] + [self.hub]
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            for netns in namespaces:
                for pid in self.pids(netns):
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
            deadline = time.time() + wait
            while time.time() < deadline and any(self.pids(n) for n in namespaces):
                time.sleep(0.1)
        for process in [self.mirror, *(h.process for h in self.hosts.values())]:
            if process is not None:
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        for netns in namespaces:
            _run("ip", "netns", "del", netns, check=False, timeout=20)
        self.sudoers.unlink(missing_ok=True)
        if self.created_user:
            _run("userdel", "--remove", self.user, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def remove_abandoned_labs() -> None:
    """Take down what labs whose test process died (SIGKILL, a lost CI runner) left behind:
    their namespaces and processes, login user, sudoers file and root. A lab is abandoned when
    the pid in its root's owner.pid is gone; a lab of a running process is left alone."""
    for root in Path("/var/tmp").glob("k3s-lab-*-*"):
        try:
            owner = int((root / "owner.pid").read_text())
        except (OSError, ValueError):
            continue  # not set up yet, or not a lab
        if Path(f"/proc/{owner}").exists():
            continue
        lab_id = root.name.split("-")[2]
        listed = _run("ip", "netns", "list", check=False).stdout.split()
        namespaces = [n for n in listed if n.startswith(f"k3slab-{lab_id}-")]
        for netns in namespaces:
            for pid in _run("ip", "netns", "pids", netns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.5)
        for netns in namespaces:
            _run("ip", "netns", "del", netns, check=False)
        Path(f"/etc/sudoers.d/k3slab-{lab_id}").unlink(missing_ok=True)
        _run("userdel", "--remove", f"{USER_PREFIX}{lab_id}", check=False)
        shutil.rmtree(root, ignore_errors=True)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _parents(path: str) -> list[str]:
    """ ".k3s-ha/bundle-X" -> [".k3s-ha", ".k3s-ha/bundle-X"]: sftp's mkdir makes one level."""
    parts = path.strip("/").split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
