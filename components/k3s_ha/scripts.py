"""The node scripts and the one place that turns them into remote command text.

Python decides the parameters; bash does the node's work. A command is
`sudo -n env K=V ... bash -c '<lib.sh + role script>' k3s-ha-<script>`: parameters are
plain, non-secret values (they show in previews and `ps`); secrets only ever travel on stdin.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

import pulumi

SCRIPT_DIR = Path(__file__).parent / "scripts"
_PARAM_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


@functools.cache
def script_body(name: str) -> str:
    """lib.sh followed by the role script, read from disk once per process."""
    lib = (SCRIPT_DIR / "lib.sh").read_text()
    role = (SCRIPT_DIR / f"{name}.sh").read_text()
    return lib + "\n" + role


def remote_command_input(name: str, params: Mapping[str, "pulumi.Input[str]"]) -> "pulumi.Input[str]":
    """remote_command for parameters that may be Outputs (node names, addresses)."""
    if not any(isinstance(v, pulumi.Output) for v in params.values()):
        return remote_command(name, params)  # type: ignore[arg-type]
    keys = sorted(params)
    return pulumi.Output.all(*[params[k] for k in keys]).apply(
        lambda values: remote_command(name, dict(zip(keys, values)))
    )


def remote_command(name: str, params: Mapping[str, str]) -> str:
    """The command text that runs script `name` as root with `params` in its environment."""
    for key in params:
        if not _PARAM_NAME.match(key):
            raise ValueError(f"script parameter {key!r} must be an upper-case shell name")
    env = " ".join(f"{key}={shlex.quote(str(params[key]))}" for key in sorted(params))
    return f"sudo -n env {env} bash -c {shlex.quote(script_body(name))} k3s-ha-{name}"
