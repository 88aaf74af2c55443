"""The policy pack in policy/: its pure rules, its pulumi_policy wiring, the analyzer the Pulumi
CLI talks to, and the project's own program as the mock engine records it (which must pass,
and must fail once mutated the ways the rules forbid)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import engine
import k3s_policies
import k3s_rules as rules
import pytest
import yaml
from helpers import SECRET_KEYS, config
from processes import stop
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "policy"  # on the path through pytest.ini


ALL_POLICIES = {
    "k3s-imdsv2-required",
    "k3s-encrypted-volumes",
    "k3s-no-world-open-cluster-ports",
    "k3s-no-world-open-ssh",
    "k3s-odd-server-count",
    "k3s-init-server-starts-first",
    "k3s-servers-join-in-turn",
}


# ---------------------------------------------------------------------------------------------
# Recorded runs of the project's program, as plain resources


def as_resources(run: engine.Run) -> list[dict]:
    """Every registration as the rules (and a stack policy) see a resource: a fresh deep copy."""
    return [
        {
            "type": r.type,
            "name": r.name,
            "urn": r.urn,
            "parent": r.parent or None,
            "props": copy.deepcopy(r.inputs),
            "dependencies": sorted(r.dependencies),
            "property_dependencies": {k: sorted(v) for k, v in r.property_dependencies.items()},
        }
        for r in run.registrations
    ]


def named(resources: list[dict], name: str) -> dict:
    matches = [r for r in resources if r["name"] == name]
    assert len(matches) == 1, name
    return matches[0]


def flagged(resources: list[dict]) -> dict[str, list[rules.Violation]]:
    return {name: found for name, found in rules.evaluate(resources).items() if found}


@pytest.fixture(scope="module")
def dev_run():
    return engine.run(engine.main_program, config(agents=2), SECRET_KEYS)


@pytest.fixture(scope="module")
def prod_run():
    cfg = config(
        servers=5,
        agents=3,
        loadBalancer=True,
        availabilityZones=["eu-west-1a", "eu-west-1b", "eu-west-1c"],
        amiId="ami-0pinned0000000000",
    )
    return engine.run(engine.main_program, cfg, SECRET_KEYS, stack="prod")


@pytest.fixture
def dev(dev_run):
    return as_resources(dev_run)


def test_the_recorded_program_has_the_shapes_the_rules_look_for(dev):
    starts = [s.resource["name"] for s in rules.start_steps(dev)]
    assert starts == [
        "dev-agent-0-start",
        "dev-agent-1-start",
        "dev-server-0-start",
        "dev-server-1-start",
        "dev-server-2-start",
    ]
    servers = [r for r in dev if r["type"] == rules.INSTANCE and r["props"]["tags"].get("k3s-role") == "server"]
    assert {r["props"]["tags"]["k3s-cluster"] for r in servers} == {"dev"} and len(servers) == 3
    assert any(r["type"] == rules.INGRESS_RULE and r["props"].get("fromPort") == 2379 for r in dev)


@pytest.mark.parametrize("run_name", ["dev_run", "prod_run"])
def test_the_real_program_passes_every_policy(request, run_name):
    resources = as_resources(request.getfixturevalue(run_name))
    assert flagged(resources) == {}


def test_a_preview_with_unknown_values_passes_too():
    run = engine.run(engine.main_program, config(agents=1, loadBalancer=True), SECRET_KEYS, preview=True)
    assert flagged(as_resources(run)) == {}


def test_ssh_open_to_the_world_is_only_a_warning_in_the_program_but_fails_the_policy():
    run = engine.run(engine.main_program, config(sshAllowedCidrs=["0.0.0.0/0"]), SECRET_KEYS)
    assert any("ssh" in w.lower() for w in run.warnings)
    found = flagged(as_resources(run))
    assert set(found) == {"k3s-no-world-open-ssh"}
    assert [v.urn for v in found["k3s-no-world-open-ssh"]] == [run.urn("dev-ssh-0")]


# ---------------------------------------------------------------------------------------------
# The real program, mutated


def test_imds_v1_allowed_is_flagged(dev):
    instance = named(dev, "dev-server-1")
    instance["props"]["metadataOptions"]["httpTokens"] = "optional"
    found = flagged(dev)
    assert set(found) == {"k3s-imdsv2-required"}
    assert [v.urn for v in found["k3s-imdsv2-required"]] == [instance["urn"]]
    assert "optional" in found["k3s-imdsv2-required"][0].message


def test_missing_metadata_options_is_flagged(dev):
    del named(dev, "dev-server-0")["props"]["metadataOptions"]
    assert set(flagged(dev)) == {"k3s-imdsv2-required"}


def test_unencrypted_root_volume_is_flagged(dev):
    agent = named(dev, "dev-agent-0")
    agent["props"]["rootBlockDevice"]["encrypted"] = False
    found = flagged(dev)
    assert set(found) == {"k3s-encrypted-volumes"}
    assert found["k3s-encrypted-volumes"][0].urn == agent["urn"]


def test_no_root_block_device_is_flagged(dev):
    del named(dev, "dev-agent-1")["props"]["rootBlockDevice"]
    assert set(flagged(dev)) == {"k3s-encrypted-volumes"}


def test_world_open_etcd_rule_is_flagged(dev):
    etcd = named(dev, "dev-etcd")
    del etcd["props"]["referencedSecurityGroupId"]
    etcd["props"]["cidrIpv4"] = "0.0.0.0/0"
    found = flagged(dev)
    assert set(found) == {"k3s-no-world-open-cluster-ports"}
    assert [v.urn for v in found["k3s-no-world-open-cluster-ports"]] == [etcd["urn"]]
    assert "etcd" in found["k3s-no-world-open-cluster-ports"][0].message


def test_world_open_kubelet_over_ipv6_is_flagged(dev):
    kubelet = named(dev, "dev-kubelet")
    del kubelet["props"]["referencedSecurityGroupId"]
    kubelet["props"]["cidrIpv6"] = "::/0"
    found = flagged(dev)
    assert set(found) == {"k3s-no-world-open-cluster-ports"}
    assert "kubelet" in found["k3s-no-world-open-cluster-ports"][0].message


def test_world_open_ssh_rule_is_flagged(dev):
    named(dev, "dev-ssh-0")["props"]["cidrIpv4"] = "0.0.0.0/0"
    assert set(flagged(dev)) == {"k3s-no-world-open-ssh"}


def _add_fourth_server(resources: list[dict]) -> None:
    """Clone server 2's instance and start step as server 3, joining after server 2."""
    instance = copy.deepcopy(named(resources, "dev-server-2"))
    instance["name"] = "dev-server-3"
    instance["urn"] = instance["urn"].replace("dev-server-2", "dev-server-3")
    instance["props"]["tags"]["Name"] = "dev-server-3"
    start = copy.deepcopy(named(resources, "dev-server-2-start"))
    previous = start["urn"]
    start["name"] = "dev-server-3-start"
    start["urn"] = previous.replace("dev-server-2-start", "dev-server-3-start")
    start["dependencies"] = [previous]
    resources += [instance, start]


def test_four_servers_are_flagged_by_instances_and_by_start_steps(dev):
    _add_fourth_server(dev)
    found = flagged(dev)
    assert set(found) == {"k3s-odd-server-count"}
    messages = [v.message for v in found["k3s-odd-server-count"]]
    assert len(messages) == 2
    assert "4 server instances" in messages[0] and "starts 4 servers" in messages[1]


def test_a_join_that_does_not_wait_for_the_init_server_is_flagged(dev):
    join = named(dev, "dev-server-1-start")
    join["dependencies"] = [named(dev, "dev-server-1-install")["urn"]]
    join["property_dependencies"] = {}
    found = flagged(dev)
    assert set(found) == {"k3s-init-server-starts-first", "k3s-servers-join-in-turn"}
    # The later starts still wait for the init server through their evict steps, which run
    # on it (membership.py), so only this one is flagged.
    assert {v.urn for v in found["k3s-init-server-starts-first"]} == {named(dev, "dev-server-1-start")["urn"]}
    assert [v.urn for v in found["k3s-servers-join-in-turn"]] == [join["urn"]]


def test_an_agent_that_does_not_wait_for_the_init_server_is_flagged(dev):
    agent = named(dev, "dev-agent-1-start")
    agent["dependencies"] = [named(dev, "dev-agent-1-install")["urn"]]
    agent["property_dependencies"] = {}
    found = flagged(dev)
    assert set(found) == {"k3s-init-server-starts-first"}
    assert [v.urn for v in found["k3s-init-server-starts-first"]] == [agent["urn"]]


def test_parallel_joins_are_flagged(dev):
    second = named(dev, "dev-server-2-start")
    second["dependencies"] = [named(dev, "dev-server-2-install")["urn"], named(dev, "dev-server-0-start")["urn"]]
    second["property_dependencies"] = {}
    found = flagged(dev)
    assert set(found) == {"k3s-servers-join-in-turn"}
    assert [v.urn for v in found["k3s-servers-join-in-turn"]] == [second["urn"]]


def test_no_init_step_at_all_is_flagged(dev):
    init = named(dev, "dev-server-0-start")
    dev.remove(init)
    found = flagged(dev)
    assert "k3s-init-server-starts-first" in found
    assert len(found["k3s-init-server-starts-first"]) == 4
    assert "has no dev-server-0-start" in found["k3s-init-server-starts-first"][0].message


# ---------------------------------------------------------------------------------------------
# The rules on hand-made resources


def _instance(**props):
    base = {
        "tags": {"k3s-role": "server", "k3s-cluster": "c"},
        "metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required"},
        "rootBlockDevice": {"encrypted": True},
    }
    base.update(props)
    return base


def test_instance_rules():
    assert rules.imdsv2_required(rules.INSTANCE, _instance()) == []
    assert rules.imdsv2_required(rules.INSTANCE, _instance(metadataOptions={"httpTokens": "optional"}))
    assert rules.imdsv2_required(rules.INSTANCE, _instance(metadataOptions={"httpEndpoint": "enabled"}))
    # No metadata service at all is fine; an unknown value waits for the update.
    assert rules.imdsv2_required(rules.INSTANCE, _instance(metadataOptions={"httpEndpoint": "disabled"})) == []
    assert rules.imdsv2_required(rules.INSTANCE, _instance(metadataOptions={"httpTokens": rules.UNKNOWN})) == []
    assert rules.imdsv2_required(rules.INSTANCE, _instance(metadataOptions=UNKNOWN_STRING_VALUE)) == []
    assert rules.imdsv2_required(rules.SECURITY_GROUP, {}) == []

    assert rules.encrypted_volumes(rules.INSTANCE, _instance()) == []
    assert rules.encrypted_volumes(rules.INSTANCE, _instance(rootBlockDevice={"encrypted": False}))
    assert rules.encrypted_volumes(rules.INSTANCE, _instance(rootBlockDevice={"volumeSize": 30}))
    assert rules.encrypted_volumes(rules.INSTANCE, _instance(rootBlockDevice={"encrypted": rules.UNKNOWN})) == []
    assert rules.encrypted_volumes(
        rules.INSTANCE, _instance(ebsBlockDevices=[{"deviceName": "/dev/sdf", "encrypted": False}])
    )


def _labels(messages):
    return sorted(m.split(" (")[0] for m in messages)


@pytest.mark.parametrize(
    "resource_type,props,cluster,ssh",
    [
        # aws.vpc.SecurityGroupIngressRule
        (
            rules.INGRESS_RULE,
            {"ipProtocol": "-1", "cidrIpv4": "0.0.0.0/0"},
            ["etcd", "flannel VXLAN", "kubelet"],
            ["SSH"],
        ),
        (
            rules.INGRESS_RULE,
            {"ipProtocol": "tcp", "fromPort": 0, "toPort": 65535, "cidrIpv6": "::/0"},
            ["etcd", "kubelet"],
            ["SSH"],
        ),
        (
            rules.INGRESS_RULE,
            {"ipProtocol": "tcp", "fromPort": 2380, "toPort": 2380, "cidrIpv4": "0.0.0.0/0"},
            ["etcd"],
            [],
        ),
        (
            rules.INGRESS_RULE,
            {"ipProtocol": "17", "fromPort": 8472, "toPort": 8472, "cidrIpv4": "0.0.0.0/0"},
            ["flannel VXLAN"],
            [],
        ),
        (rules.INGRESS_RULE, {"ipProtocol": "udp", "fromPort": 2379, "toPort": 2380, "cidrIpv4": "0.0.0.0/0"}, [], []),
        (
            rules.INGRESS_RULE,
            {"ipProtocol": "tcp", "fromPort": 2379, "toPort": 2380, "cidrIpv4": "10.0.0.0/16"},
            [],
            [],
        ),
        (rules.INGRESS_RULE, {"ipProtocol": "tcp", "fromPort": 6443, "toPort": 6443, "cidrIpv4": "0.0.0.0/0"}, [], []),
        (rules.INGRESS_RULE, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "0.0.0.0/0"}, [], ["SSH"]),
        (rules.INGRESS_RULE, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "203.0.113.7/32"}, [], []),
        (rules.INGRESS_RULE, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": rules.UNKNOWN}, [], []),
        (
            rules.INGRESS_RULE,
            {"ipProtocol": "tcp", "fromPort": UNKNOWN_STRING_VALUE, "toPort": 22, "cidrIpv4": "0.0.0.0/0"},
            [],
            [],
        ),
        (
            rules.INGRESS_RULE,
            {"ipProtocol": "tcp", "fromPort": 22.0, "toPort": 22.0, "referencedSecurityGroupId": "sg-1"},
            [],
            [],
        ),
        # aws.ec2.SecurityGroupRule
        (
            rules.SECURITY_GROUP_RULE,
            {
                "type": "ingress",
                "protocol": "tcp",
                "fromPort": 10250,
                "toPort": 10250,
                "cidrBlocks": ["10.0.0.0/8", "0.0.0.0/0"],
            },
            ["kubelet"],
            [],
        ),
        (
            rules.SECURITY_GROUP_RULE,
            {"type": "ingress", "protocol": "all", "fromPort": 0, "toPort": 0, "ipv6CidrBlocks": ["::/0"]},
            ["etcd", "flannel VXLAN", "kubelet"],
            ["SSH"],
        ),
        (
            rules.SECURITY_GROUP_RULE,
            {"type": "egress", "protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]},
            [],
            [],
        ),
        # aws.ec2.SecurityGroup with inline rules
        (
            rules.SECURITY_GROUP,
            {
                "ingress": [
                    {"protocol": "udp", "fromPort": 8472, "toPort": 8472, "cidrBlocks": ["0.0.0.0/0"]},
                    {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]},
                    {"protocol": "tcp", "fromPort": 2379, "toPort": 2380, "securityGroups": ["sg-1"]},
                ],
                "egress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}],
            },
            ["flannel VXLAN"],
            ["SSH"],
        ),
        (rules.SECURITY_GROUP, {"description": "no inline rules"}, [], []),
    ],
)
def test_ingress_rules_in_every_shape(resource_type, props, cluster, ssh):
    assert _labels(rules.cluster_ports_not_world_open(resource_type, props)) == cluster
    assert _labels(rules.ssh_not_world_open(resource_type, props)) == ssh


def _step(cluster, role, index, *deps):
    name = f"{cluster}-{role}-{index}-start"
    return {
        "type": rules.COMMAND,
        "name": name,
        "urn": f"urn:{name}",
        "props": {},
        "dependencies": [f"urn:{cluster}-{d}-start" for d in deps],
    }


def test_stack_rules_on_hand_made_graphs():
    good = [
        _step("a", "server", 0),
        _step("a", "server", 1, "server-0"),
        _step("a", "server", 2, "server-1"),
        _step("a", "agent", 0, "server-2"),
    ]
    assert rules.odd_server_count(good) == []
    assert rules.init_server_first(good) == []
    assert rules.servers_join_in_turn(good) == []

    # Two clusters in one stack are judged apart: `b` has 2 servers and a detached agent.
    two = good + [_step("b", "server", 0), _step("b", "server", 1, "server-0"), _step("b", "agent", 0)]
    assert [v.message for v in rules.odd_server_count(two)] == [
        "cluster 'b' starts 2 servers: embedded etcd needs an odd number; use 3 or 5"
    ]
    assert [v.urn for v in rules.init_server_first(two)] == ["urn:b-agent-0-start"]

    # A cluster name may itself contain "-server-".
    tricky = [_step("my-server-x", "server", 0), _step("my-server-x", "agent", 0, "server-0")]
    assert {s.cluster for s in rules.start_steps(tricky)} == {"my-server-x"}
    assert rules.init_server_first(tricky) == []


def test_servers_are_counted_per_cluster_tag():
    def instance(cluster, role="server"):
        return {
            "type": rules.INSTANCE,
            "name": f"{cluster}-{role}",
            "urn": "",
            "props": {"tags": {"k3s-role": role, "k3s-cluster": cluster}},
        }

    resources = [instance("a"), instance("a"), instance("a"), instance("b"), instance("b"), instance("b", "agent")]
    assert [v.message.split(" has")[0] for v in rules.odd_server_count(resources)] == ["cluster 'b'"]


# ---------------------------------------------------------------------------------------------
# The pulumi_policy objects, called as the analyzer calls them


def _options():
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def _proxied(props: dict):
    """Props as the analyzer hands them over: deserialized and behind the unknown-checking proxy."""
    return unknown_checking_proxy(deserialize_properties(json.loads(json.dumps(props))))


def _validate_resource(policy, resource: dict) -> list[str]:
    reported: list[str] = []
    args = ResourceValidationArgs(
        resource["type"], _proxied(resource["props"]), resource["urn"], resource["name"], _options(), None
    )
    policy.validate(args, lambda message, urn=None: reported.append(message))
    return reported


def _validate_stack(policy, resources: list[dict]) -> list[tuple[str, str | None]]:
    by_urn = {}
    for r in resources:
        by_urn[r["urn"]] = PolicyResource(
            r["type"], _proxied(r["props"]), r["urn"], r["name"], _options(), None, None, [], {}
        )
    for r in resources:
        resource = by_urn[r["urn"]]
        resource.parent = by_urn.get(r.get("parent") or "")
        resource.dependencies = [by_urn[u] for u in r["dependencies"] if u in by_urn]
        resource.property_dependencies = {
            k: [by_urn[u] for u in v if u in by_urn] for k, v in r.get("property_dependencies", {}).items()
        }
    reported: list[tuple[str, str | None]] = []
    policy.validate(StackValidationArgs(list(by_urn.values())), lambda m, urn=None: reported.append((m, urn)))
    return reported


def test_the_pack_holds_every_policy_and_all_are_mandatory():
    assert {p.name for p in k3s_policies.POLICIES} == ALL_POLICIES
    assert set(rules.RESOURCE_RULES) | set(rules.STACK_RULES) == ALL_POLICIES
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in k3s_policies.POLICIES)
    assert k3s_policies.ENFORCEMENT == EnforcementLevel.MANDATORY
    project = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    assert "pulumi-policy" in (POLICY_DIR / "requirements.txt").read_text()
    assert "pulumi-policy" in (ROOT / "requirements-dev.txt").read_text()


def test_resource_policy_objects_flag_a_mutated_instance_despite_unknown_fields(dev):
    instance = named(dev, "dev-server-0")
    assert _validate_resource(k3s_policies.IMDSV2, instance) == []
    instance["props"]["metadataOptions"]["httpTokens"] = "optional"
    instance["props"]["subnetId"] = UNKNOWN_STRING_VALUE  # unknown during a preview
    [message] = _validate_resource(k3s_policies.IMDSV2, instance)
    assert "httpTokens is 'optional'" in message


def test_resource_policy_objects_on_every_recorded_resource(dev):
    for policy in (k3s_policies.IMDSV2, k3s_policies.ENCRYPTED_VOLUMES, k3s_policies.CLUSTER_PORTS, k3s_policies.SSH):
        assert [r["name"] for r in dev if _validate_resource(policy, r)] == [], policy.name
    etcd = named(dev, "dev-etcd")
    etcd["props"]["cidrIpv4"] = "0.0.0.0/0"
    assert len(_validate_resource(k3s_policies.CLUSTER_PORTS, etcd)) == 1


def test_stack_policy_objects_on_the_recorded_program(dev):
    for policy in (k3s_policies.ODD_SERVERS, k3s_policies.INIT_FIRST, k3s_policies.JOIN_IN_TURN):
        assert _validate_stack(policy, dev) == [], policy.name
    join = named(dev, "dev-server-2-start")
    join["dependencies"] = [named(dev, "dev-server-2-install")["urn"]]
    join["property_dependencies"] = {}
    join["props"]["stdin"] = UNKNOWN_STRING_VALUE
    reported = _validate_stack(k3s_policies.INIT_FIRST, dev)
    assert (join["urn"] in {urn for _, urn in reported}) and len(reported) == 3  # server-2 and both agents
    _add_fourth_server(dev)
    assert len(_validate_stack(k3s_policies.ODD_SERVERS, dev)) == 2


# ---------------------------------------------------------------------------------------------
# The analyzer the Pulumi CLI starts (`python -m pulumi.policy <engine> policy/`), over gRPC


@pytest.fixture(scope="module")
def analyzer():
    import grpc
    from pulumi.runtime.proto import analyzer_pb2_grpc

    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:0", str(POLICY_DIR)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(POLICY_DIR.parent),
    )
    try:
        line = process.stdout.readline().strip()  # the pack prints its port, then serves
        assert line.isdigit(), (
            f"no port from the policy pack: {line!r} {process.stderr.read() if process.poll() is not None else ''}"
        )
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        stop(process)


def _struct(props: dict):
    from google.protobuf import json_format, struct_pb2

    message = struct_pb2.Struct()
    json_format.ParseDict(json.loads(json.dumps(props)), message)
    return message


def _stack_request(resources: list[dict]):
    from pulumi.runtime.proto import analyzer_pb2

    return analyzer_pb2.AnalyzeStackRequest(
        resources=[
            analyzer_pb2.AnalyzerResource(
                type=r["type"],
                urn=r["urn"],
                name=r["name"],
                properties=_struct(r["props"]),
                parent=r.get("parent") or "",
                dependencies=r["dependencies"],
                propertyDependencies={
                    k: analyzer_pb2.AnalyzerPropertyDependencies(urns=v)
                    for k, v in r.get("property_dependencies", {}).items()
                },
            )
            for r in resources
        ]
    )


def test_the_analyzer_describes_a_mandatory_pack(analyzer):
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import analyzer_pb2

    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == k3s_policies.PACK_NAME
    assert {p.name for p in info.policies} == ALL_POLICIES
    assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}


def test_the_analyzer_passes_the_program_and_blocks_a_mutated_one(analyzer, dev):
    from pulumi.runtime.proto import analyzer_pb2

    assert list(analyzer.AnalyzeStack(_stack_request(dev)).diagnostics) == []
    for resource in dev:
        request = analyzer_pb2.AnalyzeRequest(
            type=resource["type"], urn=resource["urn"], name=resource["name"], properties=_struct(resource["props"])
        )
        assert list(analyzer.Analyze(request).diagnostics) == [], resource["name"]

    instance = named(dev, "dev-server-1")
    instance["props"]["metadataOptions"]["httpTokens"] = "optional"
    response = analyzer.Analyze(
        analyzer_pb2.AnalyzeRequest(
            type=instance["type"], urn=instance["urn"], name=instance["name"], properties=_struct(instance["props"])
        )
    )
    assert [(d.policyName, d.enforcementLevel) for d in response.diagnostics] == [
        ("k3s-imdsv2-required", analyzer_pb2.MANDATORY)
    ]

    agent = named(dev, "dev-agent-0-start")
    agent["dependencies"] = [named(dev, "dev-agent-0-install")["urn"]]
    agent["property_dependencies"] = {}
    _add_fourth_server(dev)
    diagnostics = analyzer.AnalyzeStack(_stack_request(dev)).diagnostics
    assert sorted((d.policyName, d.urn) for d in diagnostics) == sorted(
        [
            ("k3s-init-server-starts-first", agent["urn"]),
            ("k3s-odd-server-count", ""),
            ("k3s-odd-server-count", ""),
        ]
    )
    assert {d.enforcementLevel for d in diagnostics} == {analyzer_pb2.MANDATORY}
