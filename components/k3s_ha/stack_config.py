"""Stack config (camelCase keys declared in Pulumi.yaml) -> K3sClusterArgs (snake_case).

Every K3sClusterArgs field is a config key, read by the kind of its annotation; nothing is
listed twice. tests/engine/test_project_config.py keeps Pulumi.yaml's `config:` block in step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pulumi

from .aws.args import ARG_KINDS, K3sClusterArgs
from .errors import ConfigError
from .validation import camel_case, field, unknown_config_keys

# Read as a secret: the key Pulumi logs in with. `token` and `agentToken` are secret in
# Pulumi.yaml too, but are read as plain text so the component can check them before anything
# is created; the component wraps them as secrets at once.
_READ_AS_SECRET = {"ssh_private_key"}

CONFIG_KEYS: dict[str, tuple[str, str]] = {
    camel_case(arg): (arg, "secret" if arg in _READ_AS_SECRET else kind) for arg, kind in ARG_KINDS.items()
}
"""Config key -> (argument, kind: int, str, bool, list, object or secret)."""


_KIND_WORDS = {
    "int": ("a whole number", "a whole number, e.g. `pulumi config set KEY 3`"),
    "bool": ("true or false", "`pulumi config set KEY true` or false"),
    "list": ("a list", 'a list, e.g. `pulumi config set --path "KEY[0]" value`'),
    "object": ("a map", 'a map, e.g. `pulumi config set --path "KEY.team" platform`'),
}


def project_config_keys(namespace: str) -> set[str]:
    """Every key set under `namespace:` in the stack config. The language host hands the config
    to the program as the PULUMI_CONFIG environment JSON (and tests through set_all_config):
    pulumi/runtime/config.py reads both, so both are read here."""
    from pulumi.runtime import config as runtime_config

    keys = {*runtime_config.CONFIG.get(), *runtime_config.get_config_env()}
    prefix = f"{namespace}:"
    return {key[len(prefix) :] for key in keys if key.startswith(prefix)}


def cluster_args_from_config(config: pulumi.Config) -> K3sClusterArgs:
    # A misspelt key would otherwise be ignored and its default used in its place.
    unknown_config_keys(project_config_keys(config.name), CONFIG_KEYS, config.name)
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
        try:
            value = readers[kind](key)
        except pulumi.ConfigTypeError:
            raise ConfigError(
                field(arg),
                f"is not {_KIND_WORDS[kind][0]}",
                f"set it again as {_KIND_WORDS[kind][1]}".replace("KEY", key),
            ) from None
        if value is not None:
            args[arg] = value
    for required in K3sClusterArgs.__required_keys__ - args.keys():
        args[required] = config.require_secret(camel_case(required))
    return cast(K3sClusterArgs, args)
