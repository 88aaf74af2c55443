"""Pulumi.yaml, the stack files and the component agree on keys, types and defaults."""

from pathlib import Path

import pytest
import yaml
from k3s_ha.aws.args import DEFAULTS
from k3s_ha.stack_config import CONFIG_KEYS
from k3s_ha.versions import AWS_CCM_CHART, AWS_EBS_CSI_CHART
from support import engine
from support.helpers import BASE_CONFIG, SECRET_KEYS, stdin_manifests, stdin_yaml

ROOT = Path(__file__).resolve().parents[2]
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
TYPES = {"int": "integer", "str": "string", "bool": "boolean", "list": "array", "object": "object", "secret": "string"}


def test_project_file_shape():
    assert PROJECT["name"] == "k3s-ha"
    assert PROJECT["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    assert PROJECT["stackConfigDir"] == "stacks"


def test_every_config_key_is_declared_with_type_and_description():
    declared = PROJECT["config"]
    assert set(declared) == set(CONFIG_KEYS)
    for key, (_arg, kind) in CONFIG_KEYS.items():
        spec = declared[key]
        assert spec["type"] == TYPES[kind], key
        assert spec.get("description"), key
        if spec["type"] == "array":
            assert spec["items"] == {"type": "string"}, key
        assert not ("default" in spec and "value" in spec), key
        assert not (spec.get("secret") and "default" in spec), key


def test_declared_defaults_are_the_components_defaults():
    for key, spec in PROJECT["config"].items():
        arg = CONFIG_KEYS[key][0]
        if "default" in spec:
            assert DEFAULTS[arg] == spec["default"], key
        else:
            assert arg not in DEFAULTS, key
    assert PROJECT["config"]["k3sVersion"]["default"] == "v1.36.4+k3s1"
    assert PROJECT["config"]["sshPrivateKey"]["secret"] is True


def _stack(name):
    return yaml.safe_load((ROOT / "stacks" / f"Pulumi.{name}.yaml").read_text())["config"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_use_only_declared_keys(stack):
    for key in _stack(stack):
        namespace, _, name = key.partition(":")
        if namespace == "k3s-ha":
            assert name in CONFIG_KEYS, key
            assert not PROJECT["config"][name].get("secret"), f"{key} must be set with --secret, not in the file"


def _run_stack(stack):
    values = {k.split(":", 1)[1] if k.startswith("k3s-ha:") else k: v for k, v in _stack(stack).items()}
    # What every user adds with `pulumi config set` (see README): key, SSH source, API source.
    return engine.run(engine.main_program, {**BASE_CONFIG, **values}, SECRET_KEYS, stack=stack)


def test_dev_stack_is_three_small_servers_and_one_agent():
    run = _run_stack("dev")
    machines = run.by_type("aws:ec2/instance:Instance")
    assert sorted(m.name for m in machines) == ["dev-agent-0", "dev-server-0", "dev-server-1", "dev-server-2"]
    assert not run.by_type("aws:lb/loadBalancer:LoadBalancer")
    assert run.warnings == []


def test_prod_stack_spreads_servers_over_zones_behind_a_balancer_with_snapshots():
    run = _run_stack("prod")
    machines = run.by_type("aws:ec2/instance:Instance")
    assert sum("-server-" in m.name for m in machines) == 3
    assert sum("-agent-" in m.name for m in machines) == 3
    assert run.by_type("aws:lb/loadBalancer:LoadBalancer")
    subnets = run.by_type("aws:ec2/subnet:Subnet")
    for kind in ("public", "private"):  # the nodes are in the private ones (privateNodes)
        zones = sorted(s.inputs["availabilityZone"] for s in subnets if s.name.startswith(f"prod-{kind}-"))
        assert zones == ["eu-west-1a", "eu-west-1b", "eu-west-1c"], kind
    assert all(m.inputs["associatePublicIpAddress"] is False for m in machines if m.name != "prod-bastion")
    cfg = stdin_yaml(run, "prod-server-0-start")
    assert cfg["etcd-snapshot-schedule-cron"] == "0 */6 * * *"
    assert cfg["etcd-snapshot-retention"] == 28
    # Issue 19's prod: the CCM and EBS CSI at the pinned versions on every server, the cluster
    # tag on the subnets and on the nodes' security group, an instance profile on servers only.
    pinned = {AWS_CCM_CHART.name: AWS_CCM_CHART.version, AWS_EBS_CSI_CHART.name: AWS_EBS_CSI_CHART.version}
    for index in range(3):
        charts = [m for m in stdin_manifests(run, f"prod-server-{index}-start") if m["kind"] == "HelmChart"]
        assert {c["spec"]["chart"]: c["spec"]["version"] for c in charts} == pinned
    tag = "kubernetes.io/cluster/k3s-ha-prod-prod"
    assert all(s.inputs["tags"][tag] == "owned" for s in subnets)
    groups = run.by_type("aws:ec2/securityGroup:SecurityGroup")
    assert [g.name for g in groups if tag in g.inputs["tags"]] == ["prod-nodes"]
    assert {m.name for m in machines if m.inputs.get("iamInstanceProfile")} == {f"prod-server-{i}" for i in range(3)}


def test_the_docs_document_every_config_key_with_its_default():
    readme = (ROOT / "README.md").read_text()
    assert "pulumi up -s dev" in readme and "bash tests/run.sh" in readme
    reference = (ROOT / "docs" / "configuration.md").read_text()
    for key, spec in PROJECT["config"].items():
        line = next((line for line in reference.splitlines() if line.startswith(f"| `{key}` | {spec['type']}")), None)
        assert line is not None, f"docs/configuration.md has no row for {key}"
        if "default" in spec:
            default = str(spec["default"]).lower() if isinstance(spec["default"], bool) else str(spec["default"])
            assert f"`{default}`" in line, key


def test_ci_runs_the_readme_test_command():
    assert "bash tests/run.sh" in (ROOT / ".ci" / "run").read_text()
