"""examples/: a larger Python program that uses k3s-ha as a library (run under the mock engine
with its own project and stack file), and two Pulumi YAML programs that use K3sCluster and
K3sBootstrap through the component provider (checked against the schema the provider infers)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from support import engine
from support.component_schema import PACKAGE, TOKEN, inferred_schema
from support.helpers import PRIVATE_KEY

ROOT = Path(__file__).resolve().parents[2]
PY_EXAMPLE = ROOT / "examples" / "python-in-vpc"
YAML_EXAMPLE = ROOT / "examples" / "yaml"
BOOTSTRAP_YAML_EXAMPLE = ROOT / "examples" / "yaml-bootstrap"

K8S_PROVIDER = "pulumi:providers:kubernetes"
NAMESPACE = "kubernetes:core/v1:Namespace"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _requirements(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.strip().startswith("#")]


# --- examples/python-in-vpc ----------------------------------------------------------------

PY_PROJECT = _yaml(PY_EXAMPLE / "Pulumi.yaml")
PY_NAME = PY_PROJECT["name"]
STACK_CONFIG = _yaml(PY_EXAMPLE / "Pulumi.dev.yaml")["config"]
# What the header of its Pulumi.yaml tells the user to set (the same as the root README's steps).
USER_SET = {
    f"{PY_NAME}:sshPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIstandin test@k3s-ha",
    f"{PY_NAME}:sshAllowedCidrs": ["203.0.113.7/32"],
    f"{PY_NAME}:apiAllowedCidrs": ["203.0.113.7/32"],
}
SECRETS = {f"{PY_NAME}:sshPrivateKey": PRIVATE_KEY}


@pytest.fixture(scope="module")
def example() -> engine.Run:
    return engine.run(
        engine.program_file(PY_EXAMPLE / "__main__.py"),
        {**STACK_CONFIG, **USER_SET, **SECRETS},
        tuple(SECRETS),
        project=PY_NAME,
        stack="dev",
    )


def _provider_urn(reference: str) -> str:
    return reference.rsplit("::", 1)[0]  # a provider reference is "<urn>::<id>"


def test_the_namespace_is_created_through_a_kubernetes_provider_with_a_secret_kubeconfig(example):
    [k8s] = example.by_type(K8S_PROVIDER)
    assert k8s.is_secret("kubeconfig")
    assert yaml.safe_load(k8s.inputs["kubeconfig"])["kind"] == "Config"
    [namespace] = example.by_type(NAMESPACE)
    assert _provider_urn(namespace.options["provider"]) == k8s.urn
    assert namespace.inputs["metadata"]["name"] == STACK_CONFIG[f"{PY_NAME}:appNamespace"]
    [config_map] = example.by_type(CONFIG_MAP)
    assert _provider_urn(config_map.options["provider"]) == k8s.urn
    assert config_map.inputs["metadata"]["namespace"] == namespace.inputs["metadata"]["name"]
    # Nothing Kubernetes goes to an ambient (default) provider, i.e. whatever ~/.kube/config says.
    for r in example.registrations:
        if r.type.startswith("kubernetes:"):
            assert _provider_urn(r.options["provider"]) == k8s.urn, r.name


def test_the_kubernetes_provider_waits_for_the_clusters_kubeconfig(example):
    # The bootstrap's last step reads the kubeconfig off the first server. The provider depends
    # on that step, and every Kubernetes object on the provider: nothing reaches the API early.
    k8s = example.named("k3s")
    assert example.depends_on("k3s", "k3s-dev-kubeconfig")
    assert example.urn("k3s-dev-kubeconfig") in k8s.property_dependencies["kubeconfig"]


def test_the_cluster_and_the_programs_own_resources_exist(example):
    [component] = example.by_type(TOKEN)
    assert component.name == "k3s-dev"
    assert component.parent.endswith(f"pulumi:pulumi:Stack::{PY_NAME}-dev")
    servers = STACK_CONFIG[f"{PY_NAME}:servers"]
    agents = STACK_CONFIG[f"{PY_NAME}:agents"]
    machines = example.by_type("aws:ec2/instance:Instance")
    assert sorted(m.name for m in machines) == sorted(
        [f"k3s-dev-server-{i}" for i in range(servers)] + [f"k3s-dev-agent-{i}" for i in range(agents)]
    )
    assert {m.inputs["instanceType"] for m in machines if "-agent-" in m.name} == {
        STACK_CONFIG[f"{PY_NAME}:agentInstanceType"]
    }
    for m in machines:
        assert m.inputs["tags"]["environment"] == "dev" and m.inputs["tags"]["stack"] == "dev"
    assert [s.name for s in example.by_type("command:remote:Command") if s.name.endswith("-start")]
    # The program's bucket is its own: not a child of the cluster, private, and in the ConfigMap.
    [bucket] = example.by_type("aws:s3/bucket:Bucket")
    assert bucket.name == "artifacts" and bucket.parent != component.urn
    [block] = example.by_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(
        block.inputs[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    [config_map] = example.by_type(CONFIG_MAP)
    assert config_map.inputs["data"]["bucket"] == example.outputs["artifactsBucket"]


def test_the_examples_outputs(example):
    assert "kubeconfig" in example.secret_outputs
    assert example.outputs["apiEndpoint"] == f"https://{example.outputs['serverPublicIps'][0]}:6443"
    assert example.outputs["namespace"] == STACK_CONFIG[f"{PY_NAME}:appNamespace"]


def test_the_python_example_project_and_stack_files():
    assert PY_PROJECT["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    declared = PY_PROJECT["config"]
    assert declared["sshPrivateKey"].get("secret") is True
    for key, value in STACK_CONFIG.items():
        namespace, _, name = key.partition(":")
        assert namespace in (PY_NAME, "aws"), key
        if namespace == PY_NAME:
            assert name in declared, f"{key} is not declared in Pulumi.yaml"
            assert not declared[name].get("secret"), f"{key} is a secret: set it with --secret, not in the file"
            assert {"integer": int, "string": str, "array": list, "object": dict}[declared[name]["type"]] is type(
                value
            ), key
    for name in ("sshPublicKey", "sshAllowedCidrs", "apiAllowedCidrs", "sshPrivateKey"):
        assert (
            f"pulumi config set {'--secret ' if name == 'sshPrivateKey' else ''}"
            in (PY_EXAMPLE / "Pulumi.yaml").read_text()
        )
        assert name in declared


def test_the_python_example_installs_this_repository_and_pulumi_kubernetes():
    lines = _requirements(PY_EXAMPLE / "requirements.txt")
    assert "-e ../.." in lines
    assert (PY_EXAMPLE / "../../pyproject.toml").resolve() == ROOT / "pyproject.toml"
    assert any(re.match(r"pulumi-kubernetes[<>=]", line) for line in lines)
    assert any(re.match(r"pulumi-kubernetes[<>=]", line) for line in _requirements(ROOT / "requirements-dev.txt"))


# --- examples/yaml ----------------------------------------------------------------------------

YAML_PROJECT = _yaml(YAML_EXAMPLE / "Pulumi.yaml")
INTERPOLATION = re.compile(r"^\$\{([A-Za-z][\w-]*)(?:\.([A-Za-z]\w*))?\}$")
PY_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}


@pytest.fixture(scope="module")
def schema() -> dict:
    return inferred_schema()


def _clusters() -> dict[str, dict]:
    return {name: r for name, r in YAML_PROJECT["resources"].items() if r["type"].startswith(f"{PACKAGE}:")}


def _check_value(value, prop: dict, where: str):
    """A literal value against a schema property (bool is not an integer here)."""
    kind = prop["type"]
    assert isinstance(value, PY_TYPES[kind]) and not (kind in ("integer", "number") and isinstance(value, bool)), (
        f"{where}: {value!r} is not {kind}"
    )
    if kind == "array":
        for i, item in enumerate(value):
            _check_value(item, prop["items"], f"{where}[{i}]")
    if kind == "object" and "additionalProperties" in prop:
        for key, item in value.items():
            _check_value(item, prop["additionalProperties"], f"{where}.{key}")


def _config_matches(declared: dict, prop: dict) -> bool:
    if declared["type"] != prop["type"]:
        return False
    return prop["type"] != "array" or declared["items"]["type"] == prop["items"]["type"]


def test_the_yaml_example_uses_the_local_component_package():
    assert YAML_PROJECT["runtime"] == "yaml"
    source = YAML_PROJECT["packages"][PACKAGE]
    plugin = (YAML_EXAMPLE / source).resolve()
    assert plugin == ROOT / "provider"
    assert _yaml(plugin / "PulumiPlugin.yaml")["runtime"] == "python"
    assert list(_clusters()) == ["cluster"]


def test_the_yaml_resources_match_the_inferred_schema(schema):
    inputs = schema["resources"][TOKEN]["inputProperties"]
    required = schema["resources"][TOKEN]["requiredInputs"]
    declared = YAML_PROJECT.get("config", {})
    for name, resource in _clusters().items():
        assert resource["type"] in schema["resources"], resource["type"]
        properties = resource["properties"]
        assert set(properties) <= set(inputs), f"{name}: not inputs of {TOKEN}: {set(properties) - set(inputs)}"
        assert set(required) <= set(properties), f"{name}: missing required inputs"
        for key, value in properties.items():
            reference = INTERPOLATION.match(value) if isinstance(value, str) else None
            if reference and reference.group(2) is None:
                config = declared.get(reference.group(1))
                assert config, f"{name}.{key}: ${{{reference.group(1)}}} is not declared under config:"
                assert _config_matches(config, inputs[key]), f"{name}.{key}: config {config} vs {inputs[key]}"
                if key in ("sshPrivateKey", "token", "agentToken"):
                    assert config.get("secret") is True, f"{name}.{key} must come from a secret config value"
            else:
                _check_value(value, inputs[key], f"{name}.{key}")


def test_the_yaml_outputs_are_outputs_of_the_component(schema):
    outputs = schema["resources"][TOKEN]["properties"]
    clusters = _clusters()
    for name, value in YAML_PROJECT["outputs"].items():
        reference = INTERPOLATION.match(value)
        assert reference and reference.group(1) in clusters, name
        assert reference.group(2) in outputs, f"{name}: {reference.group(2)} is not an output of {TOKEN}"
    assert "kubeconfig" in YAML_PROJECT["outputs"]


def test_the_yaml_stack_file_holds_no_secret():
    config = _yaml(YAML_EXAMPLE / "Pulumi.dev.yaml")["config"]
    secret_keys = {k for k, v in YAML_PROJECT["config"].items() if v.get("secret")}
    assert not {k.partition(":")[2] for k in config} & secret_keys


# --- examples/yaml-bootstrap ------------------------------------------------------------------
# K3sBootstrap's inputs nest (servers: [HostArgs], ssh: SshArgs): every key, at every level, is
# checked against the schema, following each `$ref` to its object type.

BOOTSTRAP_PROJECT = _yaml(BOOTSTRAP_YAML_EXAMPLE / "Pulumi.yaml")
BOOTSTRAP_TOKEN = f"{PACKAGE}:index:K3sBootstrap"


def _check_property(value, prop: dict, schema: dict, declared: dict, where: str) -> list[str]:
    """Check `value` (a literal or a ${config} reference) against schema property `prop`;
    return where it uses a secret config value."""
    reference = INTERPOLATION.match(value) if isinstance(value, str) else None
    if reference:
        assert reference.group(2) is None, f"{where}: only config references are expected here"
        config = declared.get(reference.group(1))
        assert config, f"{where}: ${{{reference.group(1)}}} is not declared under config:"
        assert _config_matches(config, prop), f"{where}: config {config} vs {prop}"
        return [where] if config.get("secret") else []
    ref = prop.get("$ref", "")
    if ref.startswith("#/types/"):
        spec = schema["types"][ref.removeprefix("#/types/")]
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        assert set(value) <= set(spec["properties"]), f"{where}: not properties: {set(value) - set(spec['properties'])}"
        assert set(spec.get("required", [])) <= set(value), f"{where}: missing {set(spec['required']) - set(value)}"
        secret = []
        for key, item in value.items():
            secret += _check_property(item, spec["properties"][key], schema, declared, f"{where}.{key}")
        return secret
    if ref == "pulumi.json#/Any":
        return []
    kind = prop["type"]
    assert isinstance(value, PY_TYPES[kind]) and not (kind in ("integer", "number") and isinstance(value, bool)), (
        f"{where}: {value!r} is not {kind}"
    )
    secret = []
    if kind == "array":
        for i, item in enumerate(value):
            secret += _check_property(item, prop["items"], schema, declared, f"{where}[{i}]")
    if kind == "object" and "additionalProperties" in prop:
        for key, item in value.items():
            secret += _check_property(item, prop["additionalProperties"], schema, declared, f"{where}.{key}")
    return secret


def test_the_bootstrap_yaml_example_uses_the_local_component_package():
    assert BOOTSTRAP_PROJECT["runtime"] == "yaml"
    assert (BOOTSTRAP_YAML_EXAMPLE / BOOTSTRAP_PROJECT["packages"][PACKAGE]).resolve() == ROOT / "provider"
    assert [r["type"] for r in BOOTSTRAP_PROJECT["resources"].values()] == [BOOTSTRAP_TOKEN]


def test_the_bootstrap_yaml_properties_all_exist_in_the_schema_and_the_key_is_a_secret(schema):
    resource = schema["resources"][BOOTSTRAP_TOKEN]
    declared = BOOTSTRAP_PROJECT["config"]
    [cluster] = BOOTSTRAP_PROJECT["resources"].values()
    properties = cluster["properties"]
    assert set(properties) <= set(resource["inputProperties"]), set(properties) - set(resource["inputProperties"])
    assert set(resource["requiredInputs"]) <= set(properties)
    secret_uses = []
    for key, value in properties.items():
        secret_uses += _check_property(value, resource["inputProperties"][key], schema, declared, f"cluster.{key}")
    # The one secret config value is the SSH key, where the schema marks a secret.
    assert secret_uses == ["cluster.ssh.privateKey"]
    assert schema["types"][f"{PACKAGE}:index:SshArgs"]["properties"]["privateKey"]["secret"] is True
    # Three servers (etcd quorum) and an agent, with host keys pinned.
    assert [h["name"] for h in properties["servers"]] == ["server-0", "server-1", "server-2"]
    assert all("hostKey" in h for h in [*properties["servers"], *properties["agents"]])


def test_the_bootstrap_yaml_outputs_are_outputs_of_the_component(schema):
    outputs = schema["resources"][BOOTSTRAP_TOKEN]["properties"]
    for name, value in BOOTSTRAP_PROJECT["outputs"].items():
        reference = INTERPOLATION.match(value)
        assert reference and reference.group(1) in BOOTSTRAP_PROJECT["resources"], name
        assert reference.group(2) in outputs, f"{name}: {reference.group(2)} is not an output of {BOOTSTRAP_TOKEN}"
    assert "kubeconfig" in BOOTSTRAP_PROJECT["outputs"]


def test_the_bootstrap_yaml_stack_file_holds_no_secret_and_every_key_is_declared():
    config = _yaml(BOOTSTRAP_YAML_EXAMPLE / "Pulumi.dev.yaml")["config"]
    declared = BOOTSTRAP_PROJECT["config"]
    for key in config:
        namespace, _, name = key.partition(":")
        assert namespace == BOOTSTRAP_PROJECT["name"] and name in declared, key
        assert not declared[name].get("secret"), key
    # Every config value without a default is set in the stack file or by a command in the header.
    header = (BOOTSTRAP_YAML_EXAMPLE / "Pulumi.yaml").read_text()
    for name, spec in declared.items():
        if "default" in spec or f"{BOOTSTRAP_PROJECT['name']}:{name}" in config:
            continue
        assert re.search(rf"^#.*\b{name}\b", header, re.MULTILINE), f"the header does not say how to set {name}"
