"""k3s_ha_ssh (scripts/lib.sh) with the REAL OpenSSH client, agent and server, in a network
namespace of the test's own (port 22 on its loopback, nothing else reachable): checks what the
ssh stand-in in tests/support/standins/cluster/ models. A pinned host key lets the command run; another
key fails with exit 255 and "Host key verification failed." before authentication (sshd logs
the connection closed "[preauth]"), so nothing runs; an unpinned address accepts any key.

Skipped where it cannot run: it needs root (for the namespace and sshd), `unshare`, `ip`, and
the OpenSSH client and server."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from k3s_ha.bootstrap.bundle import SCRIPT_DIR

SSHD = "/usr/sbin/sshd"
TOOLS = ("ssh", "ssh-keygen", "ssh-agent", "ssh-add", "unshare", "ip")


def _usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a network namespace and sshd"
    missing = [t for t in TOOLS if shutil.which(t) is None] + ([SSHD] if not os.access(SSHD, os.X_OK) else [])
    if missing:
        return f"missing {', '.join(missing)}"
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        return "cannot create a network namespace here"
    return None


pytestmark = pytest.mark.skipif(_usable() is not None, reason=f"real OpenSSH: {_usable()}")

SCENARIO = r"""
set -euo pipefail
ip link set lo up
mkdir -p /run/sshd
. "$LIB"
AUTH=$DIR/user.pub
if [[ -n ${SOURCES:-} ]]; then
  # The removal key's line as the install step writes it, beside a line of another key.
  AUTH=$(mktemp "$DIR/authorized.XXXXXX")
  k3s_ha_at_exit rm -f "$AUTH"
  cp "$DIR/other.pub" "$AUTH"
  read -r type blob _ <"$DIR/user.pub"
  K3S_HA_AUTHORIZED_KEYS=$AUTH k3s_ha_authorize_removal_key root "restrict,from=\"$SOURCES\" $type $blob k3s-ha-removal:lab"
  printf 'lines=%s\n' "$(wc -l <"$AUTH")"
fi
"$SSHD" -D -e -p 22 -o ListenAddress=127.0.0.1 -h "$DIR/host" -o AuthorizedKeysFile="$AUTH" \
  -o StrictModes=no -o PidFile=none </dev/null >/dev/null 2>"$DIR/sshd.log" &
k3s_ha_at_exit kill "$!"
for _ in $(seq 50); do
  ssh-keyscan -T 1 127.0.0.1 >/dev/null 2>&1 && break
  sleep 0.1
done
K3S_HA_SSH_USER=root
K3S_HA_STEP_SECONDS=60
k3s_ha_load_ssh_key <"$DIR/user"
if [[ $PIN != none ]]; then
  k3s_ha_pin_host_key 127.0.0.1 "$(<"$DIR/$PIN.pub")"
fi
status=0
k3s_ha_ssh 127.0.0.1 20 'echo ran-on-the-host' output || status=$?
refused=0
k3s_ha_ssh_refused_host_key && refused=1
printf 'status=%s refused=%s output=%s\n' "$status" "$refused" "$output"
"""


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("real-ssh")
    for name in ("host", "other", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)], check=True)
    return directory


def _run(keys: Path, pin: str, tmp_path: Path, sources: str = "") -> tuple[str, str]:
    env = {
        "SOURCES": sources,
        "PATH": os.environ["PATH"],
        "DIR": str(keys),
        "LIB": str(SCRIPT_DIR / "lib.sh"),
        "SSHD": SSHD,
        "PIN": pin,
        "TMPDIR": str(tmp_path),
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        ["unshare", "-n", "bash", "-c", SCENARIO], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == [], "the run's known_hosts and its directory are removed at exit"
    return result.stdout.strip(), result.stderr + (keys / "sshd.log").read_text()


def test_the_pinned_key_lets_the_command_run(keys: Path, tmp_path: Path) -> None:
    out, _ = _run(keys, "host", tmp_path)
    assert out == "status=0 refused=0 output=ran-on-the-host"


def test_another_key_fails_before_authentication_and_nothing_runs(keys: Path, tmp_path: Path) -> None:
    out, log = _run(keys, "other", tmp_path)
    assert out == "status=255 refused=1 output="
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in log and "Host key verification failed." in log
    assert "[preauth]" in log and "Accepted publickey" not in log


def test_an_unpinned_address_accepts_any_key(keys: Path, tmp_path: Path) -> None:
    out, _ = _run(keys, "none", tmp_path)
    assert out == "status=0 refused=0 output=ran-on-the-host"


def test_the_removal_key_line_lets_the_key_in_from_its_sources_only(keys: Path, tmp_path: Path) -> None:
    """Issue 18.3: the line k3s_ha_authorize_removal_key writes, read by the real sshd: from an
    address it names the command runs (the line is added, the other key's kept); from any
    other address the key is refused before anything runs."""
    out, log = _run(keys, "host", tmp_path, sources="127.0.0.1")
    assert out.splitlines() == ["lines=2", "status=0 refused=0 output=ran-on-the-host"]

    out, log = _run(keys, "host", tmp_path, sources="10.9.9.0/24")
    assert out.splitlines() == ["lines=2", "status=255 refused=0 output="]
    assert "Accepted publickey" not in log
