"""K3sCluster as a component provider (provider/): the schema the Pulumi SDK infers from
K3sClusterArgs and K3sCluster, the entry point the Python language host starts, and
construction from the plain dict the provider hands to the constructor.

The schema comes from `pulumi.provider.experimental.component.ComponentProvider`, the class
`component_provider_host` runs, so what is checked here is what `pulumi package add` and every
generated SDK (TypeScript, Go, C#, Java, YAML) get. The expectations are derived separately, from
K3sClusterArgs' resolved type hints and the docstrings in aws/args.py's and aws/cluster.py's source.
"""

from __future__ import annotations

import ast
import asyncio
import collections.abc
import inspect
import json
import re
import runpy
import selectors
import subprocess
import sys
import types
import typing
from pathlib import Path

import pulumi
import pytest
import typing_extensions
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from k3s_ha import K3sCluster, K3sClusterArgs
from pulumi.runtime import rpc
from support import component_schema, engine
from support.component_schema import TOKEN, inferred_schema, string_annotations
from support.helpers import PRIVATE_KEY
from support.processes import stop

ROOT = Path(__file__).resolve().parents[2]
PROVIDER = ROOT / "provider"

# What every user of the component must be able to read, in the schema, under these names.
EXPECTED_OUTPUTS = {
    "kubeconfig": {"type": "string"},
    "apiEndpoint": {"type": "string"},
    "token": {"type": "string"},
    "serverPublicIps": {"type": "array", "items": {"type": "string"}},
    "serverPrivateIps": {"type": "array", "items": {"type": "string"}},
    "agentPublicIps": {"type": "array", "items": {"type": "string"}},
    "agentPrivateIps": {"type": "array", "items": {"type": "string"}},
    "sshPrivateKey": {"type": "string"},
    "bastionPublicIp": {"type": "string"},
    "bastionHostKey": {"type": "string"},
}
SECRET_INPUTS = ("sshPrivateKey", "token", "agentToken", "registries")


@pytest.fixture(scope="module")
def schema() -> dict:
    return inferred_schema()


@pytest.fixture(scope="module")
def resource(schema) -> dict:
    return schema["resources"][TOKEN]


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _field_docstrings(cls: type) -> dict[str, str]:
    """The string right under each annotated field of `cls`, in its module's source."""
    tree = ast.parse(Path(inspect.getsourcefile(cls)).read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    docs: dict[str, str] = {}
    for stmt, following in zip(node.body, node.body[1:]):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[stmt.target.id] = following.value.value
    return docs


_NOT_REQUIRED = {typing_extensions.NotRequired, getattr(typing, "NotRequired", typing_extensions.NotRequired)}


def _args_fields() -> dict[str, tuple[object, bool]]:
    """K3sClusterArgs field -> (its type without NotRequired, optional), read from the class's
    own annotations (evaluated in its module's namespace if they are strings)."""
    fields = {}
    for name, hint in inspect.get_annotations(K3sClusterArgs).items():
        if isinstance(hint, str):
            hint = eval(hint, vars(sys.modules[K3sClusterArgs.__module__]))  # noqa: S307 - our own source
        optional = typing.get_origin(hint) in _NOT_REQUIRED
        hint = typing.get_args(hint)[0] if optional else hint
        # Optional[T] also makes the analyzer list the input as optional.
        optional = optional or type(None) in typing.get_args(hint)
        fields[name] = (hint, optional)
    return fields


def _expected_property(hint) -> dict:
    """The schema property (without description) a Python type should become. Fields typed
    pulumi.Input[T] (a Union with Awaitable[T]) accept Outputs; plain types are `plain`."""
    accepts_outputs = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        accepts_outputs = any(typing.get_origin(a) is collections.abc.Awaitable for a in members)
        rest = [
            a
            for a in members
            if typing.get_origin(a) is not collections.abc.Awaitable
            and not isinstance(a, typing.ForwardRef)
            and typing.get_origin(a) is not pulumi.Output
        ]
        assert len(rest) == 1, f"a Union the schema cannot express: {hint}"
        hint = rest[0]
    origin = typing.get_origin(hint)
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if origin is list:
        prop = {"type": "array", "items": _expected_property(typing.get_args(hint)[0])}
    elif origin is dict:
        key, value = typing.get_args(hint)
        assert key is str, f"map keys must be str: {hint}"
        prop = {"type": "object", "additionalProperties": _expected_property(value)}
    elif hint is typing.Any:  # the values of serverConfig / agentConfig / registries
        prop = {"$ref": "pulumi.json#/Any"}
    else:
        assert hint in simple, f"a type the schema cannot express: {hint}"
        prop = {"type": simple[hint]}
    prop["plain"] = not accepts_outputs
    return prop


def _strip(prop: dict) -> dict:
    """A schema property without descriptions and secret flags, `plain` as a bool."""
    out = {k: v for k, v in prop.items() if k not in ("description", "secret")}
    out["plain"] = bool(out.get("plain"))
    for nested in ("items", "additionalProperties"):
        if nested in out:
            out[nested] = _strip(out[nested])
    return out


def test_the_analyzer_sees_types_not_strings():
    # The analyzer reads raw annotations; a string (postponed evaluation) makes it fail with
    # "'str' object has no attribute '__mro__'" or "Unsupported type" before any schema exists.
    strings = string_annotations()
    assert strings == [], (
        "remove `from __future__ import annotations` (and any quoted type) from "
        f"components/k3s_ha/aws/args.py and cluster.py; the analyzer would see strings: {strings}"
    )


def test_the_package_has_both_components_in_the_index_module(schema, resource):
    assert schema["name"] == "k3s-ha"
    assert sorted(schema["resources"]) == sorted([TOKEN, "k3s-ha:index:K3sBootstrap"])
    assert resource["isComponent"] is True
    assert resource["description"] == inspect.cleandoc(K3sCluster.__doc__)
    # K3sCluster's inputs are flat: none refers to an object type (K3sBootstrap's do, below).
    assert not [name for name, prop in resource["inputProperties"].items() if "#/types/" in json.dumps(prop)]


def test_every_args_field_is_an_input_with_the_camelcase_name_type_and_optionality(resource):
    fields = _args_fields()
    inputs = resource["inputProperties"]
    assert set(inputs) == {camel(name) for name in fields}
    for name, (hint, _) in fields.items():
        assert _strip(inputs[camel(name)]) == _strip(_expected_property(hint)), name
    assert resource["requiredInputs"] == sorted(camel(n) for n, (_, optional) in fields.items() if not optional)
    # TypedDict agrees (it does not when NotRequired hides in a string annotation).
    assert K3sClusterArgs.__required_keys__ == {n for n, (_, optional) in fields.items() if not optional}, (
        "K3sClusterArgs.__required_keys__ disagrees with NotRequired/Optional in the annotations"
    )


def test_the_inputs_users_rely_on(resource):
    inputs = resource["inputProperties"]
    # Nothing is required: without sshPrivateKey (and sshPublicKey/keyName) a key is generated.
    assert resource["requiredInputs"] == []
    # Secrets are pulumi.Input: another language may pass an Output (a secret config value), and
    # so is the public key (e.g. a tls.PrivateKey's publicKeyOpenssh).
    for name in ("sshPrivateKey", "token", "agentToken", "sshPublicKey"):
        assert inputs[name]["type"] == "string" and not inputs[name].get("plain"), name
    assert inputs["registries"]["type"] == "object"  # checked as a whole before anything is built
    # Names as the SDK camel-cases them, digits kept in place.
    for name in ("k3sVersion", "rootVolumeGb", "etcdS3", "etcdS3Bucket", "readyTimeoutSeconds", "loadBalancerInternal"):
        assert name in inputs, name
    assert inputs["servers"]["type"] == "integer" and inputs["agents"]["type"] == "integer"
    assert inputs["loadBalancer"]["type"] == "boolean"
    assert inputs["sshAllowedCidrs"]["type"] == "array" and inputs["sshAllowedCidrs"]["items"]["type"] == "string"
    assert inputs["tags"]["type"] == "object" and inputs["tags"]["additionalProperties"]["type"] == "string"


def _in_schema_names(doc: str, python_names) -> str:
    """A docstring as a non-Python user should read it: each Python name of a field written as
    the schema names it (derived here with camel(), apart from the provider's own mapping)."""
    for name in sorted(python_names, key=len, reverse=True):
        doc = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", camel(name), doc)
    return doc


def _python_only_names() -> set[str]:
    """The Python names of every field of both components, their args and K3sBootstrap's types."""
    from k3s_ha import K3sBootstrap, K3sBootstrapArgs
    from k3s_ha.bootstrap.args import HostArgs, ProxyArgs, SshArgs

    classes = (K3sClusterArgs, K3sCluster, K3sBootstrapArgs, K3sBootstrap, HostArgs, SshArgs, ProxyArgs)
    return {n for cls in classes for n in _field_docstrings(cls) if camel(n) != n}


def test_every_input_and_output_is_described_by_its_docstring_in_schema_names(resource):
    python_names = _python_only_names()
    for cls, properties in (
        (K3sClusterArgs, resource["inputProperties"]),
        (K3sCluster, resource["properties"]),
    ):
        class_name = cls.__name__
        docs = _field_docstrings(cls)
        for name, doc in docs.items():
            if name.startswith("_"):
                continue
            description = properties[camel(name)].get("description")
            assert description and description.strip(), f"{class_name}.{name} has no docstring under it"
            assert description == _in_schema_names(doc, python_names), f"{class_name}.{name}"
        assert {camel(n) for n in docs if not n.startswith("_")} >= set(properties), class_name


def test_no_description_names_a_property_the_python_way(schema, resource):
    """A TypeScript, Go or YAML user sees `keyName`; a description saying `key_name` names
    nothing they can set."""
    python_names = _python_only_names()
    # The docstrings do cross-reference other fields (else this test would check nothing).
    raw = inferred_raw_descriptions()
    assert any(re.search(rf"(?<!\w){n}(?!\w)", d) for d in raw for n in python_names)
    descriptions = []

    def collect(node):
        if isinstance(node, dict):
            descriptions.extend(v for k, v in node.items() if k == "description" and isinstance(v, str))
            for v in node.values():
                collect(v)
        elif isinstance(node, list):
            for v in node:
                collect(v)

    collect(schema)
    found = {(n, d) for d in descriptions for n in python_names if re.search(rf"(?<!\w){n}(?!\w)", d)}
    assert found == set()


def inferred_raw_descriptions() -> list[str]:
    """Descriptions exactly as the SDK's analyzer copies them from the docstrings."""
    from pulumi.provider.experimental.component import ComponentProvider

    raw = json.loads(ComponentProvider([K3sCluster], component_schema.PACKAGE).schema)
    resource = raw["resources"][TOKEN]
    return [p.get("description", "") for s in ("inputProperties", "properties") for p in resource[s].values()]


def test_descriptions_are_rewritten_only_where_a_whole_python_name_stands():
    import k3s_ha_provider as hosted

    names = hosted.python_to_schema_names([{"sshUser": "ssh_user", "tags": "tags"}, {"keyName": "key_name"}])
    assert names == {"ssh_user": "sshUser", "key_name": "keyName"}
    schema = {
        "description": "Give `key_name` or ssh_user.",
        "resources": {
            "p:index:C": {
                "inputProperties": {
                    "keyName": {"type": "string", "description": "not my_key_name, key_names or ssh_user_x; key_name"}
                },
                "properties": {"tags": {"type": "object", "description": "tags, then ssh_user."}},
            }
        },
    }
    rewritten = hosted.describe_with_schema_names(schema, names)
    assert rewritten["description"] == "Give `keyName` or sshUser."
    component = rewritten["resources"]["p:index:C"]
    assert component["inputProperties"]["keyName"] == {
        "type": "string",
        "description": "not my_key_name, key_names or ssh_user_x; keyName",
    }
    assert component["properties"]["tags"]["description"] == "tags, then sshUser."
    assert schema["description"] == "Give `key_name` or ssh_user."  # the input is left alone
    with pytest.raises(ValueError, match="key_name is keyName in one place"):
        hosted.python_to_schema_names([{"keyName": "key_name"}, {"keyId": "key_name"}])


def test_the_schema_version_is_the_package_version(schema):
    """Not the host's default 0.0.0: generated SDKs and `pulumi package add ...@vX.Y.Z` carry it."""
    import k3s_ha

    assert re.fullmatch(r"\d+\.\d+\.\d+", k3s_ha.__version__)
    assert schema["version"] == k3s_ha.__version__
    assert component_schema.provider().version == k3s_ha.__version__


def test_secrets_are_marked_in_the_schema_and_the_descriptions(resource):
    """Issue 18: the analyzer infers no `secret` flag (SDK 3.272: PropertyDefinition has none);
    the hosted provider adds it, so other languages' SDKs treat these as secrets too. The
    values are also made secret at run time (tests below and tests/engine/test_secrets.py)."""
    for name in SECRET_INPUTS:
        assert "secret" in resource["inputProperties"][name]["description"], name
    for name in ("kubeconfig", "token", "sshPrivateKey"):
        assert "secret" in resource["properties"][name]["description"], name
    marked = {
        section: sorted(name for name, prop in resource[section].items() if prop.get("secret"))
        for section in ("inputProperties", "properties")
    }
    assert marked == {
        "inputProperties": sorted(SECRET_INPUTS),
        "properties": ["kubeconfig", "sshPrivateKey", "token"],
    }


def test_the_outputs(resource):
    outputs = {
        k: {kk: vv for kk, vv in v.items() if kk in ("type", "items")} for k, v in resource["properties"].items()
    }
    outputs = {k: {**v, "items": {"type": v["items"]["type"]}} if "items" in v else v for k, v in outputs.items()}
    assert outputs == EXPECTED_OUTPUTS
    # sshPrivateKey is optional: there is one only when the component generated the key; the
    # bastion's outputs only with privateNodes.
    assert resource["required"] == sorted(
        set(EXPECTED_OUTPUTS) - {"sshPrivateKey", "bastionPublicIp", "bastionHostKey"}
    )
    for prop in resource["properties"].values():
        assert not prop.get("plain")


# --- the entry point ------------------------------------------------------------------------


def test_the_plugin_manifest_and_requirements():
    manifest = yaml.safe_load((PROVIDER / "PulumiPlugin.yaml").read_text())
    # Python component providers support only pip with a `venv` virtualenv: nothing else here.
    assert manifest == {"runtime": "python"}
    lines = [
        line.strip()
        for line in (PROVIDER / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == ["-r ../requirements.txt"]  # nested -r: relative to the file, wherever pip runs
    ignored = subprocess.run(["git", "check-ignore", "-q", "provider/venv/bin/python"], cwd=ROOT)
    assert ignored.returncode == 0, "provider/venv (created by Pulumi) must be git-ignored"


def test_importing_the_entry_point_starts_nothing_and_running_it_serves_the_provider(monkeypatch):
    import k3s_ha_provider as hosted

    calls = []
    monkeypatch.setattr(hosted, "serve", lambda args: calls.append(args))
    monkeypatch.setattr(sys, "argv", [str(PROVIDER), "127.0.0.1:1", "--logtostderr"])
    runpy.run_path(str(PROVIDER / "__main__.py"), run_name="k3s_ha_provider_main")
    assert calls == []
    runpy.run_path(str(PROVIDER / "__main__.py"), run_name="__main__")
    assert calls == [["127.0.0.1:1", "--logtostderr"]]


def test_serve_hands_the_hosted_provider_to_the_sdk_server(monkeypatch):
    import k3s_ha_provider as hosted

    served = []
    monkeypatch.setattr(hosted, "main", lambda provider, args: served.append((provider, args)))
    hosted.serve(["127.0.0.1:1"])
    [(provider, args)] = served
    assert isinstance(provider, hosted.K3sHaProvider) and args == ["127.0.0.1:1"]
    assert sorted(json.loads(provider.schema)["resources"]) == sorted([TOKEN, "k3s-ha:index:K3sBootstrap"])


def test_the_language_host_command_serves_the_inferred_schema(schema):
    """`python <plugin dir> <engine address>` is how pulumi-language-python runs a plugin with a
    __main__.py; the provider prints its port and answers GetSchema over gRPC."""
    import grpc
    from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

    # The language host runs it in the consuming program's directory, not in provider/.
    process = subprocess.Popen(
        [sys.executable, str(PROVIDER), "127.0.0.1:1"],
        cwd=ROOT / "examples" / "yaml",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=60), "the provider printed no port within 60 s"
        port = process.stdout.readline().strip()
        assert re.fullmatch(r"\d+", port), (
            f"no port: {port!r}; stderr: {process.stderr.read() if process.poll() is not None else ''}"
        )
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = provider_pb2_grpc.ResourceProviderStub(channel)
            served = json.loads(stub.GetSchema(provider_pb2.GetSchemaRequest(version=0), timeout=30).schema)
            info = stub.GetPluginInfo(empty_pb2.Empty(), timeout=30)
        assert served == schema
        assert info.version == served["version"] == k3s_ha_version()
    finally:
        stop(process)


def k3s_ha_version() -> str:
    import k3s_ha

    return k3s_ha.__version__


# --- construction from a plain dict ----------------------------------------------------------

# What a TypeScript or YAML program sends for `new K3sCluster("k3s", {...})`: schema names,
# numbers as protobuf doubles, the private key as a secret (config.requireSecret).
WIRE_INPUTS = {
    "sshPrivateKey": {rpc._special_sig_key: rpc._special_secret_sig, "value": PRIVATE_KEY},
    "sshPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIstandin test@k3s-ha",
    "sshAllowedCidrs": ["203.0.113.7/32"],
    "apiAllowedCidrs": ["203.0.113.0/24"],
    "servers": 3,
    "agents": 1,
    "loadBalancer": True,
    "tags": {"owner": "platform"},
}


def _wire_struct(wire: dict) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    json_format.ParseDict(wire, struct)
    return struct


def _hosted_inputs(wire: dict) -> dict:
    """The inputs ProviderServicer._construct_inputs builds from a Construct request with no
    dependencies: secrets become secret Outputs, everything else stays a plain value."""
    values = rpc.deserialize_properties(_wire_struct(wire), keep_unknowns=True)
    return {k: pulumi.Output.secret(rpc.unwrap_rpc_secret(v)) if rpc.is_rpc_secret(v) else v for k, v in values.items()}


def test_the_wire_emulation_matches_the_provider_server():
    from pulumi.provider.server import ProviderServicer

    async def both():
        served = await ProviderServicer._construct_inputs(_wire_struct(WIRE_INPUTS), {})
        ours = _hosted_inputs(WIRE_INPUTS)
        key = served.pop("sshPrivateKey"), ours.pop("sshPrivateKey")
        assert [await k.is_secret() for k in key] == [True, True]
        assert [await k.future() for k in key] == [PRIVATE_KEY, PRIVATE_KEY]
        return served, ours

    served, ours = asyncio.run(both())
    assert served == ours
    assert isinstance(served["servers"], float)  # what the constructor is handed, see below


def _check_cluster(run: engine.Run, name: str, servers: int, agents: int):
    assert len(run.by_type("k3s-ha:index:K3sCluster")) == 1
    machines = run.by_type("aws:ec2/instance:Instance")
    assert sorted(m.name for m in machines) == sorted(
        [f"{name}-server-{i}" for i in range(servers)] + [f"{name}-agent-{i}" for i in range(agents)]
    )
    for cmd in run.by_type("command:remote:Command"):
        assert cmd.is_secret("connection"), cmd.name
        assert cmd.inputs["connection"]["privateKey"] == PRIVATE_KEY
    assert {"kubeconfig", "token"} <= run.secret_outputs
    assert run.outputs["apiEndpoint"].startswith("https://")


def test_the_constructor_takes_a_plain_dict_with_a_plain_private_key():
    """Hosted, args are a plain dict; a consumer may forget to mark the key secret."""

    def program():
        cluster = K3sCluster(
            "k3s",
            {
                "ssh_private_key": PRIVATE_KEY,
                "ssh_public_key": WIRE_INPUTS["sshPublicKey"],
                "ssh_allowed_cidrs": ["203.0.113.7/32"],
                "servers": 3,
                "agents": 1,
                "tags": {"owner": "platform"},
            },
        )
        return {"kubeconfig": cluster.kubeconfig, "token": cluster.token, "apiEndpoint": cluster.api_endpoint}

    run = engine.run(program)
    _check_cluster(run, "k3s", servers=3, agents=1)


def test_construct_through_the_component_provider_with_wire_inputs():
    """The full hosted path minus gRPC: ComponentProvider.construct maps the schema names to
    K3sClusterArgs keys, calls K3sCluster(name, dict, opts) and reads the outputs back."""

    def program():
        provider = component_schema.provider()
        result = provider.construct("k3s", TOKEN, _hosted_inputs(WIRE_INPUTS), None)
        assert set(result.state) == set(EXPECTED_OUTPUTS)
        return result.state

    run = engine.run(program)
    _check_cluster(run, "k3s", servers=3, agents=1)
    assert run.by_type("aws:lb/loadBalancer:LoadBalancer")
    assert run.named("k3s-vpc").inputs["tags"]["owner"] == "platform"


# --- K3sBootstrap ---------------------------------------------------------------------------
# Served by the same provider, for hosts the user brings. Its inputs nest: `servers` and
# `agents` are lists of HostArgs, `ssh` is an SshArgs with an optional ProxyArgs; the analyzer
# makes each TypedDict an object type of the package. The expectations come from the TypedDicts'
# own annotations (below), not from the analyzer.

BOOTSTRAP = "k3s-ha:index:K3sBootstrap"


def _type_token(cls: type) -> str:
    return f"k3s-ha:index:{cls.__name__}"


def _typed_dict_fields(cls: type) -> dict[str, tuple[object, bool]]:
    """A TypedDict's field -> (its type without NotRequired, optional)."""
    fields = {}
    for name, hint in inspect.get_annotations(cls).items():
        assert not isinstance(hint, str), f"{cls.__name__}.{name} is a string annotation: {hint!r}"
        optional = typing.get_origin(hint) in _NOT_REQUIRED
        fields[name] = (typing.get_args(hint)[0] if optional else hint, optional)
    return fields


def _expected_nested(hint) -> dict:
    """As _expected_property, with a TypedDict (or a list of them) as a reference to its type."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        awaited = [
            typing.get_args(a)[0] for a in typing.get_args(hint) if typing.get_origin(a) is collections.abc.Awaitable
        ]
        if awaited and typing.is_typeddict(awaited[0]):  # pulumi.Input[SomeTypedDict]
            return {"$ref": f"#/types/{_type_token(awaited[0])}", "plain": False}
    if typing.is_typeddict(hint):
        return {"$ref": f"#/types/{_type_token(hint)}", "plain": True}
    if typing.get_origin(hint) is list and typing.is_typeddict(typing.get_args(hint)[0]):
        return {"type": "array", "items": _expected_nested(typing.get_args(hint)[0]), "plain": True}
    return _expected_property(hint)


def _bootstrap_types() -> list[type]:
    from k3s_ha.bootstrap.args import HostArgs, ProxyArgs, SshArgs

    return [HostArgs, SshArgs, ProxyArgs]


@pytest.fixture(scope="module")
def bootstrap(schema) -> dict:
    return schema["resources"][BOOTSTRAP]


def test_bootstrap_is_a_component_of_the_package_with_its_nested_inputs_as_types(schema, bootstrap):
    from k3s_ha import K3sBootstrap

    assert bootstrap["isComponent"] is True
    assert bootstrap["description"] == inspect.cleandoc(K3sBootstrap.__doc__)
    assert set(schema["types"]) == {_type_token(t) for t in _bootstrap_types()}
    for cls in _bootstrap_types():
        assert schema["types"][_type_token(cls)]["type"] == "object"
        assert schema["types"][_type_token(cls)]["description"] == cls.__doc__


def test_bootstrap_inputs_and_their_types_have_the_camelcase_names_types_and_optionality(schema, bootstrap):
    from k3s_ha import K3sBootstrapArgs

    for cls, properties, required in [
        (K3sBootstrapArgs, bootstrap["inputProperties"], bootstrap["requiredInputs"]),
        *[
            (t, schema["types"][_type_token(t)]["properties"], schema["types"][_type_token(t)]["required"])
            for t in _bootstrap_types()
        ],
    ]:
        fields = _typed_dict_fields(cls)
        assert set(properties) == {camel(n) for n in fields}, cls.__name__
        for name, (hint, _) in fields.items():
            assert _strip(properties[camel(name)]) == _strip(_expected_nested(hint)), f"{cls.__name__}.{name}"
        assert sorted(required) == sorted(camel(n) for n, (_, optional) in fields.items() if not optional)
        assert cls.__required_keys__ == {n for n, (_, optional) in fields.items() if not optional}
    # What a YAML or TypeScript user must always give, by its schema name.
    assert sorted(bootstrap["requiredInputs"]) == ["servers", "ssh"]
    assert schema["types"]["k3s-ha:index:HostArgs"]["required"] == ["address", "name"]
    assert schema["types"]["k3s-ha:index:SshArgs"]["required"] == ["privateKey", "user"]


def test_bootstrap_outputs(bootstrap):
    assert {k: v["type"] for k, v in bootstrap["properties"].items()} == {
        "kubeconfig": "string",
        "apiEndpoint": "string",
        "token": "string",
    }
    assert bootstrap["required"] == ["apiEndpoint", "kubeconfig", "token"]
    assert not any(p.get("plain") for p in bootstrap["properties"].values())


def test_bootstrap_secrets_are_marked_in_the_schema(schema, bootstrap):
    marked = {
        section: sorted(name for name, prop in bootstrap[section].items() if prop.get("secret"))
        for section in ("inputProperties", "properties")
    }
    assert marked == {
        "inputProperties": ["agentToken", "manifests", "registries", "token"],
        "properties": ["kubeconfig", "token"],
    }
    marked_in_types = {
        token: sorted(name for name, prop in spec["properties"].items() if prop.get("secret"))
        for token, spec in schema["types"].items()
    }
    assert marked_in_types == {
        "k3s-ha:index:HostArgs": [],
        "k3s-ha:index:SshArgs": ["privateKey"],
        "k3s-ha:index:ProxyArgs": ["password", "privateKey", "privateKeyPassword"],
    }


def test_mark_secrets_refuses_a_name_the_schema_lacks():
    import k3s_ha_provider as hosted

    schema = {"resources": {"p:index:C": {"inputProperties": {"a": {}}}}, "types": {"p:index:T": {"properties": {}}}}
    assert hosted.mark_secrets(schema, {"p:index:C": {"inputProperties": ["a"]}})["resources"]["p:index:C"] == {
        "inputProperties": {"a": {"secret": True}}
    }
    assert "secret" not in schema["resources"]["p:index:C"]["inputProperties"]["a"]  # a copy
    with pytest.raises(KeyError):
        hosted.mark_secrets(schema, {"p:index:C": {"inputProperties": ["b"]}})
    with pytest.raises(KeyError):
        hosted.mark_secrets(schema, {}, {"p:index:T": ["privateKey"]})


def test_proxy_args_has_the_fields_of_pulumi_commands_proxy_connection():
    """ProxyArgs stands in for pulumi_command's remote.ProxyConnectionArgs, which the analyzer
    cannot take; the component builds one from it, so every field must be one it accepts."""
    import pulumi_command as command
    from k3s_ha.bootstrap.args import ProxyArgs

    ours = _typed_dict_fields(ProxyArgs)
    theirs = _typed_dict_fields(command.remote.ProxyConnectionArgsDict)
    assert {n: opt for n, (_, opt) in ours.items()} == {n: opt for n, (_, opt) in theirs.items()}
    assert {n: _strip(_expected_property(h)) for n, (h, _) in ours.items()} == {
        n: _strip(_expected_property(h)) for n, (h, _) in theirs.items()
    }


def test_bootstrap_descriptions_are_its_docstrings_in_schema_names(schema, bootstrap):
    from k3s_ha import K3sBootstrap, K3sBootstrapArgs

    python_names = _python_only_names()
    for cls, properties in [
        (K3sBootstrapArgs, bootstrap["inputProperties"]),
        (K3sBootstrap, bootstrap["properties"]),
        *[(t, schema["types"][_type_token(t)]["properties"]) for t in _bootstrap_types()],
    ]:
        docs = _field_docstrings(cls)
        assert {camel(n) for n in docs} == set(properties), cls.__name__
        for name, doc in docs.items():
            assert properties[camel(name)]["description"] == _in_schema_names(doc, python_names), (
                f"{cls.__name__}.{name}"
            )
    # A cross-reference is rewritten: K3sBootstrap.kubeconfig's docstring names api_address.
    assert "`apiAddress`" in bootstrap["properties"]["kubeconfig"]["description"]


BOOTSTRAP_WIRE = {
    "servers": [{"name": f"server-{i}", "address": f"192.0.2.{10 + i}"} for i in range(3)],
    "agents": [{"name": "agent-0", "address": "192.0.2.20", "hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIagent"}],
    # A secret nested in an object arrives as a secret output value (the engine's Construct
    # keeps output values for providers that accept them, as this one does).
    "ssh": {
        "user": "admin",
        "privateKey": {rpc._special_sig_key: rpc._special_output_value_sig, "value": PRIVATE_KEY, "secret": True},
        "dialErrorLimit": 30,
        "proxy": {"host": "203.0.113.50", "user": "jump", "port": 2222, "perDialTimeout": 5},
    },
    "readyTimeoutSeconds": 900,
    "serverConfig": {"etcd-snapshot-retention": 10},
}


def test_construct_bootstrap_through_the_component_provider_with_wire_inputs():
    """The hosted path minus gRPC: the provider maps schema names (nested ones too) to the
    TypedDicts' keys, numbers arrive as floats, and K3sBootstrap(name, dict, opts) builds the
    cluster with the key secret in every connection and through the bastion."""

    def program():
        hosted = _hosted_inputs(BOOTSTRAP_WIRE)
        # The nested secret stays inside `ssh` (a plain dict the provider can map), as an Output.
        assert isinstance(hosted["ssh"], dict) and isinstance(hosted["ssh"]["privateKey"], pulumi.Output)
        assert isinstance(hosted["readyTimeoutSeconds"], float)
        result = component_schema.provider().construct("lab", BOOTSTRAP, hosted, None)
        assert set(result.state) == {"kubeconfig", "apiEndpoint", "token"}
        return result.state

    run = engine.run(program)
    assert len(run.by_type(BOOTSTRAP)) == 1
    assert not any(r.type.startswith("aws:") for r in run.registrations)
    commands = run.by_type("command:remote:Command")
    assert {c.name for c in commands if c.name.endswith("-start")} == {
        "lab-server-0-start",
        "lab-server-1-start",
        "lab-server-2-start",
        "lab-agent-0-start",
    }
    for cmd in commands:
        connection = cmd.inputs["connection"]
        assert cmd.is_secret("connection"), cmd.name
        assert connection["privateKey"] == PRIVATE_KEY and connection["user"] == "admin"
        assert connection["dialErrorLimit"] == 30
        assert connection["proxy"]["host"] == "203.0.113.50" and connection["proxy"]["user"] == "jump"
        assert connection["proxy"]["port"] == 2222 and connection["proxy"]["perDialTimeout"] == 5
    assert run.named("lab-agent-0-install").inputs["connection"]["hostKey"].endswith("AAAAIagent")
    # 900 arrived as 900.0 and reaches the node scripts as the whole number they require.
    timeouts = {t for c in commands for t in re.findall(r"K3S_READY_TIMEOUT=(\S+)", json.dumps(c.inputs))}
    assert timeouts == {"900"}
    assert "etcd-snapshot-retention: 10" in run.named("lab-server-0-start").inputs["stdin"]
    assert {"kubeconfig", "token"} <= run.secret_outputs
    assert run.outputs["apiEndpoint"] == "https://192.0.2.10:6443"
