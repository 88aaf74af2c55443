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


_FUNCTION = re.compile(r"^([a-z_][a-z0-9_]*)\(\) \{$")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _code_lines(text: str) -> list[str]:
    """Lines that do something: comments and blank lines stay in the files, not in the
    command text every node step stores in the Pulumi state."""
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@functools.cache
def _lib() -> tuple[list[str], dict[str, list[str]]]:
    """lib.sh split into its top-level lines and its functions, by name."""
    top: list[str] = []
    functions: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in _code_lines((SCRIPT_DIR / "lib.sh").read_text()):
        match = _FUNCTION.match(line)
        if match:
            current = functions.setdefault(match.group(1), [])
        (top if current is None else current).append(line)
        if current is not None and line == "}":
            current = None
    return top, functions


@functools.cache
def _callees(function: str) -> frozenset[str]:
    """The lib.sh functions `function` calls directly: scanned once, not once per script."""
    _top, functions = _lib()
    return frozenset(_WORD.findall("\n".join(functions[function]))) & functions.keys()


@functools.cache
def script_body(name: str) -> str:
    """lib.sh's top level and the functions the role script needs (transitively), then the
    role script; read from disk once per process. Only what is used is sent, so each
    command stays a few KB in the state however large lib.sh grows."""
    top, functions = _lib()
    role = _code_lines((SCRIPT_DIR / f"{name}.sh").read_text())
    needed: list[str] = []
    pending = set(_WORD.findall("\n".join(role))) & functions.keys()
    while pending:
        function = pending.pop()
        needed.append(function)
        pending |= _callees(function) - set(needed)
    lib = [line for function in sorted(needed) for line in functions[function]]
    return "\n".join([*top, *lib, *role]) + "\n"


def remote_command_input(name: str, params: Mapping[str, pulumi.Input[str]]) -> pulumi.Input[str]:
    """remote_command for parameters that may be Outputs (node names, addresses)."""
    late = [k for k, v in params.items() if isinstance(v, pulumi.Output)]
    if not late:
        return remote_command(name, params)  # type: ignore[arg-type]
    if len(late) == 1:  # the common case (a node's name): one apply, no gather
        key = late[0]
        return params[key].apply(lambda value: remote_command(name, {**params, key: value}))  # type: ignore[union-attr]
    return pulumi.Output.all(*[params[k] for k in late]).apply(
        lambda values: remote_command(name, {**params, **dict(zip(late, values))})
    )


def remote_command(name: str, params: Mapping[str, str]) -> str:
    """The command text that runs script `name` as root with `params` in its environment."""
    for key in params:
        if not _PARAM_NAME.match(key):
            raise ValueError(f"script parameter {key!r} must be an upper-case shell name")
    env = " ".join(f"{key}={shlex.quote(str(params[key]))}" for key in sorted(params))
    return f"sudo -n env {env} bash -c {_quoted_body(name)} k3s-ha-{name}"


@functools.cache
def _quoted_body(name: str) -> str:
    return shlex.quote(script_body(name))
