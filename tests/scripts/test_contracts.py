"""Issue 16: every node script has a declared contract (bootstrap/contracts.py), its command is
short and names the bundle's digest, and the bundle is checked before anything runs as root."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from k3s_ha.bootstrap import bundle, contracts
from k3s_ha.bootstrap.commands import PRELUDE, parse_command, remote_command
from support.fake_node import STANDINS

SCRIPTS = bundle.SCRIPT_DIR
_READ = re.compile(r"\$\{?(K3S_[A-Z0-9_]+)")
_FUNCTION = re.compile(r"^([a-z_][a-z0-9_]*)\(\) \{$", re.M)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _lib_functions() -> dict[str, str]:
    text = bundle.library_text()
    starts = [(m.group(1), m.start()) for m in _FUNCTION.finditer(text)]
    bodies = {}
    for name, start in starts:
        bodies[name] = text[start : text.index("\n}\n", start) + 2]
    return bodies


def _reads(script: str) -> set[str]:
    """The K3S_* names `script` reads, itself or through the lib.sh functions it calls."""
    functions = _lib_functions()
    text = (SCRIPTS / f"{script}.sh").read_text()
    reached: set[str] = set()
    pending = set(_WORD.findall(text)) & functions.keys()
    while pending:
        name = pending.pop()
        reached.add(name)
        pending |= (set(_WORD.findall(functions[name])) & functions.keys()) - reached
    return set(_READ.findall(text + "".join(functions[name] for name in reached)))


@pytest.mark.parametrize("cls", contracts.all_scripts(), ids=lambda cls: cls.NAME)
def test_each_scripts_reads_are_its_declared_fields_plus_the_test_hooks(cls) -> None:
    reads = _reads(cls.NAME)
    # K3S_HA_MACHINE is never read: it is the machine's identity, there so that a new machine
    # changes (and re-runs) the first server's start step (contracts.StartServer.machine).
    declared = cls.declared() - {"K3S_HA_MACHINE"}
    assert reads - contracts.TEST_HOOKS == declared - contracts.TEST_HOOKS, cls.NAME
    assert declared <= reads, cls.NAME  # K3S_HA_DATA_DIR: a start step's parameter, elsewhere a test hook


def test_upper_case_names_in_the_scripts_are_the_contract_alone() -> None:
    """Internal state is `_k3s_ha_*`: every upper-case K3S_ name a script or lib.sh mentions is
    a declared parameter, a test hook, or a parameter of the scripts run by hand."""
    by_hand = {"K3S_HA_PEERS", "K3S_READY_TIMEOUT", "K3S_HA_SNAPSHOT", "K3S_HA_RESET_TIMEOUT"}
    declared = set().union(*(cls.declared() for cls in contracts.all_scripts()))
    mentioned = set()
    for path in SCRIPTS.rglob("*.sh"):
        mentioned |= set(re.findall(r"\b(K3S_[A-Z0-9_]+)\b", path.read_text()))
    # The installer's own variables, which install-k3s.sh hands to install.sh.
    mentioned -= {"K3S_HA_ONLY"} | {n for n in mentioned if n.startswith("K3S_INSTALL_URL")}
    assert mentioned - declared - contracts.TEST_HOOKS - by_hand == set()


def test_to_env_sets_only_what_is_given() -> None:
    call = contracts.StartServer(ready_timeout=600, version="v1.36.4+k3s1", with_registries=True)
    assert call.to_env() == {"K3S_READY_TIMEOUT": "600", "K3S_VERSION": "v1.36.4+k3s1", "K3S_HA_WITH_REGISTRIES": "1"}
    assert call.seconds() == 720
    assert contracts.StartAgent(ready_timeout=30, version="v1.36.4+k3s1").to_env() == {
        "K3S_READY_TIMEOUT": "30",
        "K3S_VERSION": "v1.36.4+k3s1",
    }


# --- the command --------------------------------------------------------------------------


def _typical() -> list[contracts.Script]:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheTestOnly0000000000000000000"
    return [
        contracts.CheckUpgrade(version="v1.36.4+k3s1"),
        contracts.InstallK3s(version="v1.36.4+k3s1", role="server", install_url="https://get.k3s.io"),
        contracts.StartServer(
            ready_timeout=600, version="v1.36.4+k3s1", peers="10.0.1.11 10.0.2.12", machine="i-0123456789abcdef0"
        ),
        contracts.StartAgent(ready_timeout=600, version="v1.36.4+k3s1", with_registries=True),
        contracts.ConfirmNode(node="ip-10-0-1-11", ready_timeout=600),
        contracts.EvictNode(
            address="10.0.1.11", role="server", cluster="prod", host="server-1", host_key=key, ssh_user="ubuntu"
        ),
        contracts.RecordMembers(cluster="prod", nodes=505),
        contracts.RemoveMembers(cluster="prod", ssh_user="ubuntu", drain_timeout=120, lb_grace_seconds=30),
        contracts.PrintKubeconfig(),
    ]


@pytest.mark.parametrize("call", _typical(), ids=lambda c: c.NAME)
def test_every_command_is_a_few_hundred_bytes_and_names_the_digest_and_its_bound(call) -> None:
    text = remote_command(call.NAME, call.to_env(), call.seconds())
    assert len(text) < 512, len(text)
    assert text.endswith(f" {bundle.BUNDLE_ROOT}/{bundle.digest()}/run.sh {call.NAME} {call.seconds()}")
    assert parse_command(text) == (call.NAME, call.to_env())
    first = remote_command(call.NAME, call.to_env(), call.seconds(), installs_bundle=True)
    assert len(first) < 1300, len(first)
    assert parse_command(first) == (call.NAME, call.to_env())
    assert f"k3s-ha {bundle.digest()} {call.NAME} {call.seconds()} {bundle.BUNDLE_ROOT} " in first
    for command in (text, first):
        assert "k3s_ha_log()" not in command  # no script text: it ships in the bundle


def test_a_change_to_any_script_changes_the_digest_and_so_every_command(tmp_path) -> None:
    before = bundle.digest(SCRIPTS)
    copy = tmp_path / "scripts"
    shutil.copytree(SCRIPTS, copy)
    lib = copy / "lib" / "core.sh"
    lib.write_text(lib.read_text().replace("k3s_ha_log() {", "k3s_ha_log() {\n  :", 1))
    after = bundle.digest(copy)
    assert before != after
    call = contracts.PrintKubeconfig()
    assert remote_command(call.NAME, {}, 60, digest=before) != remote_command(call.NAME, {}, 60, digest=after)


def test_the_digest_is_what_sha256sum_says_on_a_node() -> None:
    listing = subprocess.run(
        "find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum",
        shell=True,
        cwd=SCRIPTS,
        capture_output=True,
        text=True,
        check=True,
    )
    assert listing.stdout.split()[0][: bundle.DIGEST_HEX] == bundle.digest() and len(bundle.digest()) == 32


# --- the prelude, run for real ----------------------------------------------------------


def _run(tmp_path: Path, upload: Path, script: str = "print-kubeconfig", seconds: int = 30, digest=None):
    config = tmp_path / "etc"
    config.mkdir(exist_ok=True)
    (config / "k3s.yaml").write_text("kind: Config\n")
    text = remote_command(
        script,
        {"K3S_HA_CONFIG_DIR": str(config)},
        seconds,
        installs_bundle=True,
        digest=digest or bundle.digest(),
        bundle_root=str(tmp_path / "root"),
        upload=str(upload),
    )
    env = {"PATH": f"{STANDINS}:{os.environ['PATH']}", "STANDIN_STATE": str(tmp_path)}
    return subprocess.run(["bash", "-c", text], capture_output=True, text=True, env=env, timeout=60)


def test_the_bundle_is_verified_into_its_own_directory_and_run_from_there(tmp_path) -> None:
    upload = tmp_path / "upload"
    shutil.copytree(SCRIPTS, upload)
    result = _run(tmp_path, upload)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "kind: Config\n"
    installed = tmp_path / "root" / bundle.digest()
    assert (installed / "run.sh").is_file() and (installed / "print-kubeconfig.sh").is_file()
    assert oct(installed.stat().st_mode & 0o777) == "0o755"
    assert oct((installed / "lib.sh").stat().st_mode & 0o777) == "0o644"
    # Changing the upload afterwards changes nothing that runs: the verified copy is used.
    (upload / "print-kubeconfig.sh").write_text("#!/bin/bash\necho hijacked\n")
    again = _run(tmp_path, upload)
    assert again.returncode == 0 and again.stdout == "kind: Config\n"


@pytest.mark.parametrize("tamper", ["changed", "added", "symlink", "added-symlink", "fifo", "missing"])
def test_an_upload_that_does_not_match_the_digest_runs_nothing(tmp_path, tamper) -> None:
    upload = tmp_path / "upload"
    shutil.copytree(SCRIPTS, upload)
    target = upload / "print-kubeconfig.sh"
    if tamper == "changed":
        target.write_text(target.read_text() + "\necho hijacked\n")
    elif tamper == "added":
        (upload / "extra.sh").write_text("echo hijacked\n")
    elif tamper == "symlink":
        target.unlink()
        target.symlink_to(tmp_path / "elsewhere.sh")
        (tmp_path / "elsewhere.sh").write_text("echo hijacked\n")
    elif tamper == "added-symlink":  # the digest lists regular files only: adopt.sh refuses it
        (upload / "elsewhere").symlink_to(tmp_path)
    elif tamper == "fifo":  # copied as a FIFO (cp -R), never read, then refused
        os.mkfifo(upload / "pipe")
    else:
        shutil.rmtree(upload)
    result = _run(tmp_path, upload)
    assert result.returncode == 1
    assert "hijacked" not in result.stdout
    expected = "holds something other than files" if tamper in ("added-symlink", "fifo") else "no bundle with digest"
    assert expected in result.stderr and "nothing was run" in result.stderr
    assert not (tmp_path / "root" / bundle.digest()).exists()
    assert [p.name for p in (tmp_path / "root").glob(".new.*")] == []  # the staging copy is gone


def test_the_command_bounds_the_script_and_says_so(tmp_path) -> None:
    upload = tmp_path / "upload"
    shutil.copytree(SCRIPTS, upload)
    (upload / "print-kubeconfig.sh").write_text("sleep 30\n")
    digest = bundle.digest(upload)
    result = _run(tmp_path, upload, seconds=1, digest=digest)
    assert result.returncode == 1
    assert "may take up to 1s" in result.stderr
    assert "the step did not finish within 1s and was stopped" in result.stderr


def test_the_prelude_is_plain_posix_tools_and_bash() -> None:
    """It runs before anything is verified, so it stays small enough to read in a preview."""
    assert len(PRELUDE) < 500
    for tool in ("mktemp", "find", "sha256sum", "adopt.sh"):
        assert tool in PRELUDE
    assert "mv -T" in (SCRIPTS / "adopt.sh").read_text()
    assert f"sha256sum | cut -c1-{bundle.DIGEST_HEX})" in PRELUDE  # the node checks what Python names


def test_the_short_form_runs_the_installed_bundle(tmp_path) -> None:
    """Every step but a host's first names the installed bundle's run.sh directly."""
    upload = tmp_path / "upload"
    shutil.copytree(SCRIPTS, upload)
    assert _run(tmp_path, upload).returncode == 0  # the first step installs it
    config = tmp_path / "etc"
    text = remote_command(
        "print-kubeconfig", {"K3S_HA_CONFIG_DIR": str(config)}, 30, bundle_root=str(tmp_path / "root")
    )
    result = subprocess.run(["bash", "-c", text], capture_output=True, text=True, timeout=60,
                            env={"PATH": f"{STANDINS}:{os.environ['PATH']}",
                                 "STANDIN_STATE": str(tmp_path)})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "kind: Config\n"
    assert "print-kubeconfig (bundle " in result.stderr and "may take up to 30s" in result.stderr


def test_run_sh_refuses_what_is_not_one_of_its_scripts(tmp_path) -> None:
    for args, message in ((["../lib", "5"], "has no script ../lib"), (["run", "5"], "has no script run"),
                          (["print-kubeconfig", "0"], "positive whole number")):  # fmt: skip
        result = subprocess.run(["bash", str(SCRIPTS / "run.sh"), *args], capture_output=True, text=True)
        assert result.returncode == 1 and message in result.stderr, result.stderr


def test_a_one_line_change_in_a_shared_function_is_one_changed_digest_per_host_and_reruns_every_step(
    tmp_path, monkeypatch
) -> None:
    """Issue 16: what a preview shows for an edit of lib.sh. Each host's bundle step is an
    update (a new remotePath and hash: one changed digest per host), and every remote step but
    the init step (which runs once in a cluster's life) is an update that runs its script
    again; nothing is replaced and no machine is touched."""
    from support import engine
    from support import step_model as sm
    from support.helpers import SECRET_KEYS, config

    before = engine.run(engine.main_program, config(agents=2), SECRET_KEYS)
    copy = tmp_path / "scripts"
    shutil.copytree(SCRIPTS, copy)
    lib = copy / "lib" / "core.sh"
    lib.write_text(lib.read_text().replace("k3s_ha_log() {", "k3s_ha_log() {\n  :", 1))
    monkeypatch.setattr(bundle, "SCRIPT_DIR", copy)
    after = engine.run(engine.main_program, config(agents=2), SECRET_KEYS)
    plan = sm.plan_up(before, after)

    copies = [s for s in plan.steps if s.type == "command:remote:CopyToRemote"]
    assert len(copies) == 5 and {s.kind for s in copies} == {sm.UPDATE}
    assert all(set(s.changed) == {"remotePath", "source"} for s in copies)
    commands = [s for s in plan.steps if s.type == "command:remote:Command"]
    assert len(commands) == len(after.by_type("command:remote:Command")) - 1
    assert not any(s.urn.endswith("::dev-init") for s in commands)
    assert {s.kind for s in commands} == {sm.UPDATE}
    assert all(bundle.digest(copy) in s.command_text() for s in commands)
    assert {s.type for s in plan.steps} == {"command:remote:CopyToRemote", "command:remote:Command"}


def test_every_step_on_a_host_waits_for_its_bundle_through_the_hosts_first_step() -> None:
    """The first step on each host (a server's version guard, an agent's install) installs
    the bundle; every other step that runs there must come after it, or it would find no
    bundle (commands.py)."""
    from support import engine
    from support.helpers import SECRET_KEYS, config

    run = engine.run(engine.main_program, config(agents=2, loadBalancer=True), SECRET_KEYS)
    commands = run.by_type("command:remote:Command")
    first = {}
    for step in commands:
        if " -c " in step.inputs["create"]:
            host = step.inputs["connection"]["host"]
            assert host not in first, f"two first steps on {host}"
            first[host] = step
            bundle = next(
                r for r in run.by_type("command:remote:CopyToRemote") if r.inputs["connection"]["host"] == host
            )
            assert bundle.urn in step.dependencies
    assert len(first) == len(run.by_type("command:remote:CopyToRemote")) == 5
    for step in commands:
        host = step.inputs["connection"]["host"]
        if step is not first[host]:
            assert run.transitively_depends_on(step.name, first[host].name), (step.name, first[host].name)
