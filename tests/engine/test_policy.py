"""The policy pack in policy/: its pure rules, its pulumi_policy wiring, the analyzer the Pulumi
CLI talks to, and the project's own program as the mock engine records it (which must pass,
and must fail once mutated the ways the rules forbid)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import k3s_policies
import k3s_rules as rules
import pytest
import yaml
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
from support import engine
from support.helpers import SECRET_KEYS, config
from support.processes import stop

ROOT = Path(__file__).resolve().parents[2]
POLICY_DIR = ROOT / "policy"  # on the path through pytest.ini


ALL_POLICIES = {
    "k3s-no-world-open-cluster-groups",
    "k3s-no-world-open-together",
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


def engine_urns(run: engine.Run) -> dict[str, str]:
    """{recorded URN: the URN the real engine gives}. The SDK's MockMonitor.make_urn prefixes
    only the parent's last type (pulumi/runtime/mocks.py); the engine prefixes the parent's
    whole qualified type and leaves the root stack out (pulumi/pulumi
    pkg/resource/deploy/deployment.go generateURN, sdk/go/common/resource/urn.go NewURN), so
    a security group rule of a K3sCluster is
    `...::k3s-ha:index:K3sCluster$aws:ec2/securityGroup:SecurityGroup$aws:vpc/...::dev-etcd`.
    The policies read a resource's ancestry from that chain."""
    by_urn = {r.urn: r for r in run.registrations}
    real: dict[str, str] = {}

    def convert(urn: str) -> str:
        if urn in real or urn not in by_urn:
            return real.get(urn, urn)
        r = by_urn[urn]
        parent = by_urn.get(r.parent or "")
        prefix = (
            "" if parent is None or parent.type == "pulumi:pulumi:Stack" else convert(parent.urn).split("::")[2] + "$"
        )
        stack, project = urn.split("::")[:2]
        real[urn] = "::".join([stack, project, prefix + r.type, r.name])
        return real[urn]

    for urn in by_urn:
        convert(urn)
    return real


def as_resources(run: engine.Run) -> list[dict]:
    """Every registration as the rules (and a stack policy) see a resource, with the engine's
    URNs: a fresh deep copy."""
    urns = engine_urns(run)

    def real(urn):
        return urns.get(urn, urn)

    return [
        {
            "type": r.type,
            "name": r.name,
            "urn": real(r.urn),
            "parent": real(r.parent) if r.parent else None,
            "props": copy.deepcopy(r.inputs),
            "dependencies": sorted(map(real, r.dependencies)),
            "property_dependencies": {k: sorted(map(real, v)) for k, v in r.property_dependencies.items()},
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
    assert [v.urn for v in found["k3s-no-world-open-ssh"]] == [engine_urns(run)[run.urn("dev-ssh-0")]]


def test_ssh_split_into_two_halves_of_the_internet_fails_the_policy():
    """Issue 18.4: 0.0.0.0/1 and 128.0.0.0/1 are two rules, each narrower than the world, and
    together the whole of it."""
    run = engine.run(engine.main_program, config(sshAllowedCidrs=["0.0.0.0/1", "128.0.0.0/1"]), SECRET_KEYS)
    found = flagged(as_resources(run))
    assert set(found) == {"k3s-no-world-open-together"}
    (violation,) = found["k3s-no-world-open-together"]
    assert "ssh" in violation.message.lower() and "0.0.0.0/1, 128.0.0.0/1 together" in violation.message


def test_one_rule_with_both_halves_is_flagged_by_the_resource_rule(dev):
    group = next(r for r in dev if r["type"] == "aws:ec2/securityGroup:SecurityGroup")
    group["props"]["ingress"] = [
        {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/2"]}
    ]
    found = flagged(dev)
    assert "k3s-no-world-open-ssh" in found
    assert "together" in found["k3s-no-world-open-ssh"][0].message


def test_two_narrow_ssh_sources_pass():
    run = engine.run(engine.main_program, config(sshAllowedCidrs=["203.0.113.0/24", "198.51.100.7/32"]), SECRET_KEYS)
    assert flagged(as_resources(run)) == {}


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


def _step_urn(name: str, parents: str = "k3s-ha:index:K3sBootstrap") -> str:
    return f"urn:pulumi:dev::p::{parents}$command:remote:Command::{name}"


def _step(cluster, role, index, *deps, parents="k3s-ha:index:K3sBootstrap"):
    """A start step of a K3sBootstrap (or, with other `parents`, of something else)."""
    name = f"{cluster}-{role}-{index}-start"
    return {
        "type": rules.COMMAND,
        "name": name,
        "urn": _step_urn(name, parents),
        "props": {},
        "dependencies": [_step_urn(f"{cluster}-{d}-start", parents) for d in deps],
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
    assert [v.urn for v in rules.init_server_first(two)] == [_step_urn("b-agent-0-start")]

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
    # Only server-2: the agents also wait for the first server through the record step.
    assert {urn for _, urn in reported} == {join["urn"]}
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


# ---------------------------------------------------------------------------------------------
# A larger program: the pack guards the cluster, not its neighbours


def larger_program(attach_bastion_group: bool = False):
    """A platform program with its own world-open bastion (inline SSH ingress and a separate
    IPv6 rule), an instance with neither IMDSv2 nor an encrypted root volume, and a web app
    whose remote steps happen to be called `web-server-<i>-start`, beside a K3sCluster."""

    def program():
        import pulumi
        import pulumi_aws as aws
        from k3s_ha import K3sCluster
        from pulumi_command import remote
        from support.helpers import PRIVATE_KEY

        bastion_group = aws.ec2.SecurityGroup(
            "bastion",
            description="bastion",
            ingress=[{"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr_blocks": ["0.0.0.0/0"]}],
        )
        aws.vpc.SecurityGroupIngressRule(
            "bastion-ssh-v6",
            security_group_id=bastion_group.id,
            ip_protocol="tcp",
            from_port=22,
            to_port=22,
            cidr_ipv6="::/0",
        )
        aws.ec2.Instance(
            "bastion",
            ami="ami-0bastion000000000",
            instance_type="t3.micro",
            vpc_security_group_ids=[bastion_group.id],
            tags={"Name": "bastion"},
        )
        connection = {"host": "198.51.100.20", "user": "ubuntu"}
        first = remote.Command("web-server-0-start", connection=connection, create="systemctl start web")
        remote.Command("web-server-1-start", connection=connection, create="systemctl start web")
        cluster = K3sCluster(
            "k3s",
            {
                "ssh_private_key": pulumi.Output.secret(PRIVATE_KEY),
                "ssh_public_key": "ssh-ed25519 AAAA test",
                "ssh_allowed_cidrs": ["203.0.113.7/32"],
                **({"extra_security_group_ids": [bastion_group.id]} if attach_bastion_group else {}),
            },
        )
        return {"endpoint": cluster.api_endpoint, "web": first.stdout}

    return program


@pytest.fixture(scope="module")
def larger_run():
    return engine.run(larger_program())


@pytest.fixture
def larger(larger_run):
    return as_resources(larger_run)


def test_a_larger_programs_own_resources_are_not_the_packs_business(larger):
    assert flagged(larger) == {}
    # ...though, judged like the cluster's, they would break five of the rules.
    bastion = named_of_type(larger, "bastion", rules.INSTANCE)
    group = named_of_type(larger, "bastion", rules.SECURITY_GROUP)
    assert rules.imdsv2_required(rules.INSTANCE, bastion["props"])
    assert rules.encrypted_volumes(rules.INSTANCE, bastion["props"])
    assert rules.ssh_not_world_open(rules.SECURITY_GROUP, group["props"])
    assert rules.ssh_not_world_open(rules.INGRESS_RULE, named(larger, "bastion-ssh-v6")["props"])
    web = [r for r in larger if r["name"].startswith("web-server-")]
    assert len(web) == 2 and rules.start_steps(web) == []
    inside = [{**r, "urn": r["urn"].replace("::command:", "::k3s-ha:index:K3sBootstrap$command:")} for r in web]
    assert rules.odd_server_count(inside) and rules.init_server_first(inside)


def named_of_type(resources: list[dict], name: str, typ: str) -> dict:
    [found] = [r for r in resources if r["name"] == name and r["type"] == typ]
    return found


def test_what_belongs_to_the_cluster(larger):
    def scope(name, typ):
        resource = named_of_type(larger, name, typ)
        return rules.in_cluster(resource["urn"], resource["props"])

    # Tagged by the component, or created inside it (the rules have no tags).
    assert scope("k3s-server-0", rules.INSTANCE) and scope("k3s-nodes", rules.SECURITY_GROUP)
    assert scope("k3s-etcd", rules.INGRESS_RULE) and scope("k3s-server-1-start", rules.COMMAND)
    assert not scope("bastion", rules.INSTANCE) and not scope("bastion", rules.SECURITY_GROUP)
    assert not scope("bastion-ssh-v6", rules.INGRESS_RULE) and not scope("web-server-1-start", rules.COMMAND)
    # The cluster's own steps are still judged in the same program.
    assert [s.resource["name"] for s in rules.start_steps(larger) if s.role == "server"] == [
        "k3s-server-0-start",
        "k3s-server-1-start",
        "k3s-server-2-start",
    ]


def test_an_instance_of_the_program_tagged_k3s_cluster_is_judged(larger):
    bastion = named_of_type(larger, "bastion", rules.INSTANCE)
    bastion["props"]["tags"]["k3s-cluster"] = "k3s"
    found = flagged(larger)
    assert set(found) == {"k3s-imdsv2-required", "k3s-encrypted-volumes", "k3s-no-world-open-cluster-groups"}
    assert {v.urn for v in found["k3s-imdsv2-required"] + found["k3s-encrypted-volumes"]} == {bastion["urn"]}
    # A machine of the cluster now, so its world-open group guards the cluster too.
    assert {v.urn for v in found["k3s-no-world-open-cluster-groups"]} == {
        named_of_type(larger, "bastion", rules.SECURITY_GROUP)["urn"],
        named(larger, "bastion-ssh-v6")["urn"],
    }


def test_a_world_open_group_given_to_the_cluster_as_an_extra_group_is_flagged():
    """The bastion group is the program's own, but as extraSecurityGroupIds it guards the nodes:
    SSH on every node is then open to the world."""
    resources = as_resources(engine.run(larger_program(attach_bastion_group=True)))
    found = flagged(resources)
    assert set(found) == {"k3s-no-world-open-cluster-groups"}
    assert sorted(v.urn for v in found["k3s-no-world-open-cluster-groups"]) == sorted(
        [
            named_of_type(resources, "bastion", rules.SECURITY_GROUP)["urn"],
            named(resources, "bastion-ssh-v6")["urn"],
        ]
    )
    assert all("guards a k3s-ha cluster's machines" in v.message for v in found["k3s-no-world-open-cluster-groups"])


def test_a_rule_outside_the_cluster_that_opens_a_cluster_group_is_flagged(larger):
    nodes = named_of_type(larger, "k3s-nodes", rules.SECURITY_GROUP)
    stray = {
        "type": rules.INGRESS_RULE,
        "name": "debug-kubelet",
        "urn": "urn:pulumi:dev::k3s-ha::aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule::debug-kubelet",
        "parent": None,
        "props": {"ipProtocol": "tcp", "fromPort": 10250, "toPort": 10250, "cidrIpv4": "0.0.0.0/0"},
        "dependencies": [nodes["urn"]],
        "property_dependencies": {"securityGroupId": [nodes["urn"]]},
    }
    found = flagged([*larger, stray])
    assert set(found) == {"k3s-no-world-open-cluster-groups"}
    [violation] = found["k3s-no-world-open-cluster-groups"]
    assert violation.urn == stray["urn"] and "kubelet" in violation.message and "k3s-nodes" in violation.message
    # Pointed at the bastion's group instead, it is the program's own business.
    bastion = named_of_type(larger, "bastion", rules.SECURITY_GROUP)
    stray["property_dependencies"] = {"securityGroupId": [bastion["urn"]]}
    assert flagged([*larger, stray]) == {}


def test_the_policy_objects_leave_the_program_alone_and_judge_the_cluster(larger):
    bastion = named_of_type(larger, "bastion", rules.INSTANCE)
    assert _validate_resource(k3s_policies.IMDSV2, bastion) == []
    assert _validate_resource(k3s_policies.ENCRYPTED_VOLUMES, bastion) == []
    assert _validate_resource(k3s_policies.SSH, named_of_type(larger, "bastion", rules.SECURITY_GROUP)) == []
    assert _validate_stack(k3s_policies.ODD_SERVERS, larger) == []
    assert _validate_stack(k3s_policies.INIT_FIRST, larger) == []
    assert _validate_stack(k3s_policies.CLUSTER_GROUPS, larger) == []
    server = named(larger, "k3s-server-0")
    server["props"]["metadataOptions"]["httpTokens"] = "optional"
    assert len(_validate_resource(k3s_policies.IMDSV2, server)) == 1


def test_the_analyzer_passes_the_larger_program(analyzer, larger):
    from pulumi.runtime.proto import analyzer_pb2

    assert list(analyzer.AnalyzeStack(_stack_request(larger)).diagnostics) == []
    for resource in larger:
        request = analyzer_pb2.AnalyzeRequest(
            type=resource["type"], urn=resource["urn"], name=resource["name"], properties=_struct(resource["props"])
        )
        assert list(analyzer.Analyze(request).diagnostics) == [], resource["name"]
