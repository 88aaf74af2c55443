"""Stack config (camelCase keys declared in Pulumi.yaml) -> K3sClusterArgs (snake_case).

Every K3sClusterArgs field is a config key, read by the kind of its annotation; nothing is
listed twice. tests/test_project_config.py keeps Pulumi.yaml's `config:` block in step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pulumi

from .aws.args import ARG_KINDS, K3sClusterArgs
from .validation import camel_case

# Read as a secret: the key Pulumi logs in with. `token` and `agentToken` are secret in
# Pulumi.yaml too, but are read as plain text so the component can check them before anything
# is created; the component wraps them as secrets at once.
_READ_AS_SECRET = {"ssh_private_key"}

CONFIG_KEYS: dict[str, tuple[str, str]] = {
    camel_case(arg): (arg, "secret" if arg in _READ_AS_SECRET else kind) for arg, kind in ARG_KINDS.items()
}
"""Config key -> (argument, kind: int, str, bool, list, object or secret)."""


def cluster_args_from_config(config: pulumi.Config) -> K3sClusterArgs:
    readers: dict[str, Callable[[str], Any]] = {
        "int": config.get_int,
        "str": config.get,
        "bool": config.get_bool,
        "list": config.get_object,
        "object": config.get_object,
        "secret": config.get_secret,
    }
    args: dict[str, Any] = {}
    for key, (arg, kind) in CONFIG_KEYS.items():
        value = readers[kind](key)
        if value is not None:
            args[arg] = value
    for required in K3sClusterArgs.__required_keys__ - args.keys():
        args[required] = config.require_secret(camel_case(required))
    return cast(K3sClusterArgs, args)
