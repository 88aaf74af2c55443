#!/usr/bin/python3
"""STAND-IN for systemctl, not systemd. Lab only: lab hosts have no systemd, so the lab puts
this first on root's PATH (/usr/local/sbin, ahead of /usr/bin in sudo's secure_path) and
binds it over /usr/bin/systemctl, which users' sessions call.

It runs a unit's ExecStart (with its EnvironmentFile) as a daemon in its own session, and
models what the node scripts depend on:
- Type=notify: `start`/`restart` block until the service reports ready (the stand-in k3s
  writes $K3S_STANDIN_NOTIFY) and fail like systemd when it exits first; with --no-block
  they return at once, as units started at boot do not hold anything up;
- enable/disable as [Install] symlinks, failing for a unit file that does not exist;
- `show --property=MainPID --value`, `is-active [--quiet]`, `is-enabled`, `daemon-reload`.
- Restart=always with RestartSec (systemd.service(5)), as install.sh writes the K3s units: a
  supervisor starts the service again RestartSec after it exits, whatever its status, until
  `stop`. So a K3s that exits comes back, as on a real host (a removed server that was not
  disabled rejoins; docs/real-behaviour-read.md). Between two runs `is-active` says
  "activating", as systemd's auto-restart state does.
Differences: `stop` ends the whole process group (the real k3s embeds etcd in its own
process; the stand-in runs it as a child), and there is no start rate limit (systemd's
default of 5 starts in 10 s never trips with RestartSec=5s).
State lives in /run/k3s-standin (per lab host).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

UNIT_DIR = "/etc/systemd/system"
STATE = "/run/k3s-standin"
WANTS = os.path.join(UNIT_DIR, "multi-user.target.wants")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
START_LIMIT_SECONDS = 900  # the node scripts bound starts themselves; this only stops a leak


def unit_name(arg: str) -> str:
    name = os.path.basename(arg)
    return name[: -len(".service")] if name.endswith(".service") else name


def unit_file(name: str) -> str:
    return os.path.join(UNIT_DIR, f"{name}.service")


DROP_IN_DIRS = ("/etc/systemd/system", "/run/systemd/system")


def unit_setting(name: str, key: str) -> str:
    """A [Service] setting's value ('' when unset or the unit file is gone): the unit file's,
    overridden by its drop-ins (<dir>/<unit>.service.d/*.conf), merged across directories and
    applied in file-name order, a name in /etc hiding the same name in /run (systemd.unit(5)).
    The removals step's Restart=no drop-in is one."""
    drop_ins: dict[str, str] = {}
    for directory in reversed(DROP_IN_DIRS):
        folder = os.path.join(directory, f"{name}.service.d")
        if os.path.isdir(folder):
            drop_ins.update({f: os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".conf")})
    files = [unit_file(name), *(drop_ins[f] for f in sorted(drop_ins))]
    value = ""
    for path in files:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        value = next((line.split("=", 1)[1].strip() for line in lines if line.startswith(f"{key}=")), value)
    return value


def restart_seconds(name: str) -> float:
    """RestartSec= (systemd's default is 100 ms), in seconds."""
    value = unit_setting(name, "RestartSec") or "100ms"
    return float(value[:-2]) / 1000 if value.endswith("ms") else float(value.rstrip("s"))


def parse_unit(name: str) -> tuple[list[str], dict[str, str]]:
    with open(unit_file(name)) as f:
        text = f.read().replace("\\\n", " ")
    exec_start: list[str] = []
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            exec_start = shlex.split(line.split("=", 1)[1])
        elif line.startswith("EnvironmentFile="):
            path = line.split("=", 1)[1].lstrip("-")
            if os.path.exists(path):
                with open(path) as f:
                    for entry in f:
                        if "=" in entry:
                            key, value = entry.rstrip("\n").split("=", 1)
                            env[key] = value.strip("'\"")
    return exec_start, env


def pid_of(name: str) -> int:
    try:
        with open(os.path.join(STATE, f"{name}.pid")) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0
    return pid if alive(pid) else 0


def alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def state_of(name: str) -> str:
    if pid_of(name):
        return "active"
    if supervisor_of(name):
        return "activating"  # systemd's auto-restart: waiting RestartSec to start it again
    return "failed" if os.path.exists(os.path.join(STATE, f"{name}.failed")) else "inactive"


def supervisor_of(name: str) -> int:
    try:
        with open(os.path.join(STATE, f"{name}.supervisor")) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0
    return pid if alive(pid) else 0


def stop(name: str) -> int:
    supervisor = supervisor_of(name)
    if supervisor:  # no restart after this stop
        os.kill(supervisor, signal.SIGKILL)
        while alive(supervisor):
            time.sleep(0.05)
    pid = pid_of(name)
    if pid:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.time() + 20
        while alive(pid) and time.time() < deadline:
            time.sleep(0.1)
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
    for suffix in ("pid", "ready", "supervisor"):
        try:
            os.remove(os.path.join(STATE, f"{name}.{suffix}"))
        except FileNotFoundError:
            pass
    return 0


def start(name: str, block: bool = True) -> int:
    if not os.path.exists(unit_file(name)):
        print(f"Failed to start {name}.service: Unit {name}.service not found.", file=sys.stderr)
        return 5
    if pid_of(name):
        return 0
    stop(name)  # a supervisor between two runs (auto-restart) is replaced by this start
    ready = os.path.join(STATE, f"{name}.ready")
    failed = os.path.join(STATE, f"{name}.failed")
    for path in (ready, failed):
        if os.path.exists(path):
            os.remove(path)
    supervisor = subprocess.Popen(
        [sys.executable, os.path.realpath(__file__), "--supervise", name],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/",
        start_new_session=True,
    )
    with open(os.path.join(STATE, f"{name}.supervisor"), "w") as f:
        f.write(str(supervisor.pid))
    if not block:
        return 0
    deadline = time.time() + START_LIMIT_SECONDS
    while time.time() < deadline:
        if os.path.exists(ready):
            return 0
        if os.path.exists(failed):
            print(
                f"Job for {name}.service failed because the control process exited with error code.\n"
                f'See "systemctl status {name}.service" and "journalctl -xeu {name}.service" for details.',
                file=sys.stderr,
            )
            return 1
        time.sleep(0.2)
    return 1


def supervise(name: str) -> int:
    """The service's runs: each in its own session (so `stop` and `kill` end k3s and its etcd
    together), the main pid written for `show` and `is-active`; after an exit, again
    RestartSec later when the unit says Restart=always, else done."""
    ready = os.path.join(STATE, f"{name}.ready")
    failed = os.path.join(STATE, f"{name}.failed")
    while os.path.exists(unit_file(name)):
        exec_start, env = parse_unit(name)
        with open(os.path.join(STATE, f"{name}.log"), "ab") as log:
            process = subprocess.Popen(
                exec_start,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd="/",
                env={"PATH": PATH, "HOME": "/root", **env, "K3S_STANDIN_NOTIFY": ready},
                start_new_session=True,
            )
        with open(os.path.join(STATE, f"{name}.pid"), "w") as f:
            f.write(str(process.pid))
        process.wait()
        if os.path.exists(ready):
            os.remove(ready)
        open(failed, "w").close()
        if unit_setting(name, "Restart") != "always":
            break
        time.sleep(restart_seconds(name))
        if os.path.exists(failed):
            os.remove(failed)
    return 0


def main(args: list[str]) -> int:
    if args[:1] == ["--supervise"]:
        return supervise(args[1])
    try:
        os.makedirs(STATE, exist_ok=True)
        with open(os.path.join(STATE, "systemctl.log"), "a") as f:
            f.write(" ".join(args) + "\n")
    except PermissionError:
        pass  # a user's read-only call (is-active over SSH as the login user), like systemd's
    quiet = "--quiet" in args or "-q" in args
    words = [a for a in args if not a.startswith("-")]
    verb = words[0] if words else ""
    units = [unit_name(w) for w in words[1:]]
    if verb == "daemon-reload":
        return 0
    if verb in ("enable", "disable"):
        for name in units:
            if not os.path.exists(unit_file(name)):
                print(f"Failed to {verb} unit: Unit file {name}.service does not exist.", file=sys.stderr)
                return 1
            link = os.path.join(WANTS, f"{name}.service")
            if verb == "enable":
                os.makedirs(WANTS, exist_ok=True)
                if not os.path.islink(link):
                    os.symlink(unit_file(name), link)
                    print(f"Created symlink {link} → {unit_file(name)}.", file=sys.stderr)
            elif os.path.islink(link):
                os.remove(link)
                print(f"Removed {link}.", file=sys.stderr)
        return 0
    if verb == "is-enabled":
        enabled = all(os.path.islink(os.path.join(WANTS, f"{n}.service")) for n in units)
        if not quiet:
            print("enabled" if enabled else "disabled")
        return 0 if enabled else 1
    if verb == "is-active":
        states = [state_of(n) for n in units]
        if not quiet:
            print("\n".join(states))
        return 0 if all(s == "active" for s in states) else 3
    if verb == "stop":
        return max([stop(n) for n in units] or [0])
    if verb in ("start", "restart"):
        for name in units:
            if verb == "restart":
                stop(name)
            status = start(name, block="--no-block" not in args)
            if status:
                return status
        return 0
    if verb == "show":
        prop = next((a.split("=", 1)[1] for a in args if a.startswith("--property=")), "")
        if prop == "MainPID":
            print(pid_of(units[0]))
            return 0
    if verb == "kill":
        pid = pid_of(units[0])
        if pid:
            os.killpg(pid, signal.SIGKILL)
        return 0
    print(f"stand-in systemctl: unsupported call: {' '.join(args)}", file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
