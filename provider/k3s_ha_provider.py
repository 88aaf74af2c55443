"""The k3s-ha component provider: the schema Pulumi's analyzer infers from K3sCluster and
K3sBootstrap, with the package's version, secrets marked and descriptions that name properties
the way the schema does.

The analyzer copies each docstring as written for Python users, so a description of `keyName`
says "Give this or `key_name`"; a TypeScript, Go or YAML user only ever sees `keyName`. The
descriptions are rewritten after inference, using the analyzer's own name mapping (schema name
-> Python name), so the names always agree with the properties the SDKs generate. The Python
package keeps its snake_case docstrings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from k3s_ha import K3sBootstrap, K3sCluster, __version__
from pulumi.provider import main
from pulumi.provider.experimental.component import ComponentProvider

# Must equal the package part of the type tokens the components register with
# (`k3s-ha:index:K3sCluster`, `k3s-ha:index:K3sBootstrap`).
PACKAGE = "k3s-ha"
COMPONENTS = [K3sCluster, K3sBootstrap]


def python_to_schema_names(mappings: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """{python name: schema name} for every property whose two names differ, from mappings
    of schema name -> Python name as the analyzer records them."""
    names: dict[str, str] = {}
    for mapping in mappings:
        for schema_name, python_name in mapping.items():
            if schema_name == python_name:
                continue
            if names.setdefault(python_name, schema_name) != schema_name:
                raise ValueError(
                    f"{python_name} is {names[python_name]} in one place of the schema and {schema_name} "
                    "in another: descriptions cannot be rewritten unambiguously"
                )
    return names


def describe_with_schema_names(schema: dict[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """A copy of `schema` whose every `description` names properties by their schema names.
    A Python name is replaced only as a whole identifier (`ssh_user` but not `ssh_user_x`)."""
    if not names:
        return json.loads(json.dumps(schema))
    pattern = re.compile(r"(?<![\w])(" + "|".join(map(re.escape, sorted(names, key=len, reverse=True))) + r")(?![\w])")

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: pattern.sub(lambda m: names[m.group(1)], value)
                if key == "description" and isinstance(value, str)
                else rewrite(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    return rewrite(schema)


SECRET_INPUTS = ("sshPrivateKey", "token", "agentToken", "registries")
SECRET_OUTPUTS = ("kubeconfig", "token", "sshPrivateKey")
"""K3sCluster's secrets. Marked `"secret": true` in the schema (pulumi pkg/codegen/schema
PropertySpec.Secret: "Secret specifies if the property is secret"), which the analyzer cannot
infer (SDK 3.272's PropertyDefinition has no such flag): so every language's generated SDK treats
them as secrets, not only Python, which makes them secret at run time (aws/cluster.py,
bootstrap/component.py)."""

SECRETS: dict[str, dict[str, tuple[str, ...]]] = {
    f"{PACKAGE}:index:K3sCluster": {"inputProperties": SECRET_INPUTS, "properties": SECRET_OUTPUTS},
    # The SSH key is ssh.privateKey (type SshArgs, below). `manifests` may carry Secrets (the AWS
    # integration's carries an access key): it travels on the secret stdin, and is secret here too.
    f"{PACKAGE}:index:K3sBootstrap": {
        "inputProperties": ("token", "agentToken", "registries", "manifests"),
        "properties": ("kubeconfig", "token"),
    },
}
"""Per resource token, the secret properties of each section."""

SECRET_TYPE_PROPERTIES: dict[str, tuple[str, ...]] = {
    f"{PACKAGE}:index:SshArgs": ("privateKey",),
    f"{PACKAGE}:index:ProxyArgs": ("privateKey", "privateKeyPassword", "password"),
}
"""Per object type (K3sBootstrap's nested inputs), its secret properties."""


def mark_secrets(
    schema: dict[str, Any],
    resources: Mapping[str, Mapping[str, Iterable[str]]],
    types: Mapping[str, Iterable[str]] = {},  # noqa: B006 - read only
) -> dict[str, Any]:
    """A copy of `schema` with the named properties of each resource (per section) and of each
    object type marked secret. A name the schema lacks raises KeyError: nothing is skipped."""
    marked = json.loads(json.dumps(schema))
    for token, sections in resources.items():
        resource = marked["resources"][token]
        for section, names in sections.items():
            for name in names:
                resource[section][name]["secret"] = True
    for token, names in types.items():
        for name in names:
            marked["types"][token]["properties"][name]["secret"] = True
    return marked


class K3sHaProvider(ComponentProvider):
    """ComponentProvider (what `component_provider_host` serves) with the package version and
    descriptions in schema names. GetSchema and GetPluginInfo answer from `schema` and
    `version` (pulumi/pulumi sdk/python/lib/pulumi/provider/server.py)."""

    def __init__(self) -> None:
        super().__init__(COMPONENTS, PACKAGE, None, __version__)
        # The analyzer's results as ComponentProvider keeps them
        # (pulumi/pulumi sdk/python/lib/pulumi/provider/experimental/component.py).
        mappings = [m for d in self._component_defs.values() for m in (d.inputs_mapping, d.outputs_mapping)]
        mappings += [t.properties_mapping for t in self._type_defs.values()]
        names = python_to_schema_names(mappings)
        described = describe_with_schema_names(json.loads(self.schema), names)
        self.schema = json.dumps(mark_secrets(described, SECRETS, SECRET_TYPE_PROPERTIES))


def serve(args: list[str]) -> None:
    """What `component_provider_host(COMPONENTS, PACKAGE, version=__version__)` does, with
    K3sHaProvider in place of ComponentProvider: serve over gRPC until the engine stops it."""
    main(K3sHaProvider(), args)
