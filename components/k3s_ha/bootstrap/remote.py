"""One remote command on one node: the connection, triggers and options every step shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from . import bundle
from .commands import remote_command_input
from .contracts import Script

# Dialing (pulumi-command, real-behaviour.md): a dial that gets no answer (a dead host: security
# groups drop packets) waits the whole per-dial timeout; a refused one (a booting VM) fails at
# once; between dials a backoff of 100 ms x1.5, capped at 5 s. The provider's default of 10
# errors gives a booting VM about 11 s (pulumi-command #1238). 20 errors of at most 10 s: a VM
# that refuses SSH while it boots gets about a minute, and a dead host costs at most about
# 4.5 minutes per step (20 x 10 s + ~66 s of backoff) instead of an hour.
DEFAULT_DIAL_ERROR_LIMIT = 20
PER_DIAL_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Node:
    """A host as the bootstrap sees it, with its SSH connection already built."""

    name: str
    connection: command.remote.ConnectionArgs
    address: pulumi.Input[str]
    private_address: pulumi.Input[str]
    replace_on: pulumi.Input[str] | None
    host_key: pulumi.Input[str | None] | None = None
    """The SSH host key pinned in `connection` (authorized_keys format), None when unpinned;
    the steps that SSH from a server to other nodes pin it too (membership.py)."""
    bundle: pulumi.Resource | None = None
    """The step that copied the script bundle to this host (ship_bundle): the host's first
    step waits for it, and every other step there for that one."""


def ship_bundle(resource_name: str, node: Node, parent: pulumi.Resource) -> command.remote.CopyToRemote:
    """Copy the script bundle to `node`, once per machine and bundle digest (bundle.py).

    `remotePath` names the digest, so a changed script is an update that copies the new
    bundle next to the old one; `triggers` holds the machine's identity, so a new machine gets
    a fresh copy (a changed connection alone copies nothing: copyController.go Update)."""
    digest = bundle.digest()
    return command.remote.CopyToRemote(
        resource_name,
        connection=node.connection,
        source=pulumi.FileArchive(str(bundle.SCRIPT_DIR)),  # the directory: bundle.py
        remote_path=bundle.upload_path(digest),
        triggers=[node.replace_on] if node.replace_on is not None else None,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def present(*steps: pulumi.Resource | None) -> list[pulumi.Resource]:
    """The steps that exist, in order: a dependency list where some steps are optional (an
    evict step exists only for hosts with `replace_on`)."""
    return [step for step in steps if step is not None]


def run_script(
    resource_name: str,
    node: Node,
    script: Script,
    *,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
    stdin: pulumi.Input[str] | None = None,
    secret_output: bool = False,
    on_update: Script | None = None,
    identity: pulumi.Input[str] | None = None,
    replace_with_machine: bool = True,
    installs_bundle: bool = False,
    ignore_changes: Sequence[str] = (),
) -> command.remote.Command:
    """Run `script` (bootstrap/scripts/<NAME>.sh, from the host's bundle) on `node` as root.

    `triggers` holds only a machine's identity (`identity`, by default `node`'s), so a new
    machine gets a fresh run while a changed script or config runs the (idempotent) script
    again as an update. No step has a `delete`: a delete runs with the OLD state's connection
    after every create and update (real-behaviour.md), on a machine that may be gone or
    re-imaged; nodes that leave are removed by remove-members.sh instead.
    `on_update`: the script call when the step runs again on a later `up` (the
    provider runs `update` instead of `create` then; pulumi-command commandController.go).
    `replace_with_machine=False`: no triggers, so a new machine updates the step (runs the
    `update` text) instead of replacing it (which would run `create` again).
    `ignore_changes`: inputs whose changes never run the step again (the init step: all).
    `installs_bundle`: the first step on `node` (every other step there depends on it): its
    command checks the copied bundle against its digest and installs it (commands.py).
    """
    identity = node.replace_on if identity is None else identity
    if not replace_with_machine:
        identity = None
    # No custom_timeouts: pulumi-command ignores them (the engine calls providers with
    # context.TODO(), real-behaviour.md); every script bounds itself on the node.
    options = pulumi.ResourceOptions(
        parent=parent,
        # Only the host's first step waits for the bundle copy explicitly: every other step on
        # the host depends on that one already, and each explicit dependency is two URNs more
        # in the state (dependencies and propertyDependencies).
        depends_on=[*([node.bundle] if installs_bundle and node.bundle is not None else []), *depends_on],
        additional_secret_outputs=["stdout", "stderr"] if secret_output else None,
        ignore_changes=list(ignore_changes) or None,
    )
    return command.remote.Command(
        resource_name,
        connection=node.connection,
        create=_command(script, installs_bundle),
        update=_command(on_update, installs_bundle) if on_update is not None else None,
        stdin=stdin,
        triggers=[identity] if identity is not None else None,
        # Output that carries a secret must not reach the logs either (pulumi-command #260).
        logging=command.remote.Logging.NONE if secret_output else None,
        # Otherwise every run sends the previous stdout/stderr as SSH env requests, which
        # sshd refuses with a warning, and stdout here carries the node name or the kubeconfig.
        add_previous_output_in_env=False,
        opts=options,
    )


def _command(script: Script, installs_bundle: bool) -> pulumi.Input[str]:
    return remote_command_input(script.NAME, script.to_env(), script.seconds(), installs_bundle)
