"""One remote command on one node: the connection, triggers and options every step shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from .commands import remote_command_input

# A booting VM refuses SSH for a minute or two; the provider's default of 10 dial errors
# gives up after about 11 s (pulumi-command #1238). 100 errors at the 5 s backoff cap
# is roughly 8 minutes of waiting.
DEFAULT_DIAL_ERROR_LIMIT = 100
PER_DIAL_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Node:
    """A host as the bootstrap sees it, with its SSH connection already built."""

    name: str
    connection: command.remote.ConnectionArgs
    address: pulumi.Input[str]
    private_address: pulumi.Input[str]
    replace_on: pulumi.Input[str] | None


def run_script(
    resource_name: str,
    node: Node,
    script: str,
    params: Mapping[str, pulumi.Input[str]],
    *,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
    stdin: pulumi.Input[str] | None = None,
    timeout: str = "30m",
    secret_output: bool = False,
    on_delete: tuple[str, Mapping[str, pulumi.Input[str]]] | None = None,
    on_update: Mapping[str, pulumi.Input[str]] | None = None,
    identity: pulumi.Input[str] | None = None,
    replace_with_machine: bool = True,
) -> command.remote.Command:
    """Run components/k3s_ha/scripts/<script>.sh on `node` as root.

    `triggers` holds only a machine's identity (`identity`, by default `node`'s), so a new
    machine gets a fresh run while a changed script or config runs the (idempotent) script
    again as an update. `on_delete` is the script (and its parameters) that runs when the step
    is deleted: when its node leaves the cluster, or is replaced by a new machine.
    `on_update`: the script's parameters when the step runs again on a later `up` (the
    provider runs `update` instead of `create` then; pulumi-command commandController.go).
    `replace_with_machine=False`: no triggers, so a new machine updates the step (runs the
    `update` text) instead of replacing it (which would run `create` again).
    """
    identity = node.replace_on if identity is None else identity
    if not replace_with_machine:
        identity = None
    options = pulumi.ResourceOptions(
        parent=parent,
        depends_on=list(depends_on),
        custom_timeouts=pulumi.CustomTimeouts(create=timeout, update=timeout, delete=timeout),
        additional_secret_outputs=["stdout", "stderr"] if secret_output else None,
    )
    return command.remote.Command(
        resource_name,
        connection=node.connection,
        create=remote_command_input(script, params),
        update=remote_command_input(script, on_update) if on_update is not None else None,
        delete=remote_command_input(*on_delete) if on_delete else None,
        stdin=stdin,
        triggers=[identity] if identity is not None else None,
        # Output that carries a secret must not reach the logs either (pulumi-command #260).
        logging=command.remote.Logging.NONE if secret_output else None,
        opts=options,
    )
