"""A newcomer's first `up`: no key to make by hand, and the outputs needed next.

With neither sshPrivateKey, sshPublicKey nor keyName set, the component generates an ED25519 key
(pulumi-tls), registers its public half, logs in with the private half and exports it, secret.
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest
import yaml
from k3s_ha import K3sCluster
from k3s_ha.errors import ConfigError
from support import engine
from support.helpers import OPERATOR_ADDRESS, PRIVATE_KEY, SECRET_KEYS, commands, config

ROOT = Path(__file__).resolve().parents[2]
TLS_KEY = "tls:index/privateKey:PrivateKey"
KEY_PAIR = "aws:ec2/keyPair:KeyPair"
# What the stand-in tls provider (tests/support/engine.py) returns for the key named dev-ssh-key.
GENERATED_PRIVATE = engine.standin_private_key("dev-ssh-key")
GENERATED_PUBLIC = engine.standin_public_key("dev-ssh-key")


def _without_keys(**overrides):
    cfg = config(**overrides)
    del cfg["sshPrivateKey"], cfg["sshPublicKey"]
    return cfg


def _ssh_keys(run):
    """The login keys the cluster generated (each node's host key is a tls.PrivateKey too, and
    so is the cluster's removal key)."""
    return [k for k in run.by_type(TLS_KEY) if not k.name.endswith(("-host-key", "-removal-key"))]


@pytest.fixture(scope="module")
def generated():
    return engine.run(engine.main_program, _without_keys(agents=1), SECRET_KEYS)


def test_without_any_key_an_ed25519_key_is_generated_once_under_the_cluster(generated):
    [key] = _ssh_keys(generated)
    assert key.name == "dev-ssh-key"
    # Its only input: nothing that changes between runs, so the key stays in the state.
    assert key.inputs == {"algorithm": "ED25519"}
    assert key.parent == generated.by_type("k3s-ha:index:K3sCluster")[0].urn


def test_the_generated_public_half_is_the_ec2_key_pair(generated):
    [pair] = generated.by_type(KEY_PAIR)
    assert pair.inputs["publicKey"] == GENERATED_PUBLIC
    assert generated.urn("dev-ssh-key") in pair.dependencies
    key_name = pair.outputs["keyName"]
    assert {m.inputs["keyName"] for m in generated.by_type("aws:ec2/instance:Instance")} == {key_name}


def test_pulumi_logs_in_with_the_generated_private_half_as_a_secret(generated):
    for name, cmd in commands(generated).items():
        assert cmd.inputs["connection"]["privateKey"] == GENERATED_PRIVATE, name
        assert cmd.is_secret("connection"), name


def test_the_generated_key_is_exported_secret_with_the_user_to_log_in_as(generated):
    assert generated.outputs["sshPrivateKey"] == GENERATED_PRIVATE
    assert "sshPrivateKey" in generated.secret_outputs
    assert generated.outputs["sshUser"] == "ubuntu"


def test_the_generated_private_key_is_in_no_plain_input(generated):
    for r in generated.registrations:
        plain = {k: v for k, v in r.inputs.items() if not r.is_secret(k)}
        assert GENERATED_PRIVATE.splitlines()[1] not in repr(plain), (r.type, r.name)


def test_stack_outputs_hold_what_a_user_needs_next(generated):
    outputs = generated.outputs
    for key in ("kubeconfig", "token", "sshPrivateKey"):
        assert outputs[key] and key in generated.secret_outputs, key
    assert outputs["apiEndpoint"] == f"https://{outputs['serverPublicIps'][0]}:6443"
    assert len(outputs["serverPublicIps"]) == 3 and len(outputs["serverPrivateIps"]) == 3
    assert len(outputs["agentPublicIps"]) == 1 and len(outputs["agentPrivateIps"]) == 1
    # The exported token is the one the servers were given.
    init = generated.named("dev-server-0-start").inputs["stdin"]
    assert f"token: {outputs['token']}\n" in init


def test_with_a_given_key_nothing_is_generated_and_no_key_is_exported():
    run = engine.run(engine.main_program, config(), SECRET_KEYS)
    assert _ssh_keys(run) == []
    assert run.outputs["sshPrivateKey"] is None
    for cmd in commands(run).values():
        assert cmd.inputs["connection"]["privateKey"] == PRIVATE_KEY


@pytest.mark.parametrize(
    ("keys", "field", "fix"),
    [
        ({"sshPrivateKey": PRIVATE_KEY}, "sshPublicKey / ssh_public_key", "unset sshPrivateKey"),
        ({"sshPublicKey": "ssh-ed25519 AAAA me"}, "sshPrivateKey / ssh_private_key", "unset sshPublicKey"),
        ({"keyName": "team-key"}, "sshPrivateKey / ssh_private_key", "unset keyName"),
        (
            {"sshPrivateKey": PRIVATE_KEY, "sshPublicKey": "ssh-ed25519 AAAA me", "keyName": "team-key"},
            "sshPublicKey / ssh_public_key",
            "set only one",
        ),
    ],
)
def test_half_a_key_is_refused_naming_the_missing_field(keys, field, fix):
    with pytest.raises(ConfigError) as caught:
        engine.run(engine.main_program, {**_without_keys(), **keys}, SECRET_KEYS)
    assert caught.value.field == field and fix in caught.value.fix
    assert caught.value.registrations == []


def test_the_public_key_may_be_an_output_of_another_resource():
    """E.g. a tls key made by the caller, in any language: the value is known only at deploy time."""

    def program():
        public = pulumi.Output.from_input("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5fromoutput caller")
        cluster = K3sCluster(
            "k3s",
            {
                "ssh_private_key": pulumi.Output.secret(PRIVATE_KEY),
                "ssh_public_key": public,
                "ssh_allowed_cidrs": ["203.0.113.7/32"],
            },
        )
        return {"endpoint": cluster.api_endpoint}

    run = engine.run(program)
    assert run.named("k3s-ssh").inputs["publicKey"] == "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5fromoutput caller"
    assert _ssh_keys(run) == []


def test_the_dev_stack_file_alone_is_a_whole_cluster():
    """What the README's first command runs: the dev stack with nothing set by hand (no key, no
    address): a generated key and the operator's address (`auto`, looked up by the stub)."""
    stack = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())["config"]
    values = {k.removeprefix("k3s-ha:"): v for k, v in stack.items()}
    run = engine.run(engine.main_program, values, SECRET_KEYS)
    assert run.warnings == []
    assert len(run.by_type("aws:ec2/instance:Instance")) == 4
    assert run.by_type(TLS_KEY) and "sshPrivateKey" in run.secret_outputs
    ssh = [
        r
        for r in run.by_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs.get("fromPort") == 22 and "cidrIpv4" in r.inputs  # not the servers-to-nodes rule
    ]
    assert [r.inputs["cidrIpv4"] for r in ssh] == [f"{OPERATOR_ADDRESS}/32"]
    assert "kubeconfig" in run.secret_outputs
