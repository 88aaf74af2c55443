"""Secrets (tokens, SSH key, kubeconfig) stay secret end to end and never reach command text."""

import json

import pytest
import yaml
from k3s_ha.bootstrap.commands import parse_command
from support import engine
from support.helpers import PRIVATE_KEY, SECRET_KEYS, USER_TOKEN, commands, config, stdin_yaml


def _plain_text(registration) -> str:
    """Every input of a resource that is NOT marked secret, as text."""

    def strip(value, path):
        if path in registration.secret_paths:
            return None
        if isinstance(value, dict):
            return {k: strip(v, f"{path}.{k}" if path else k) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    return json.dumps(strip(registration.inputs, ""))


@pytest.fixture(scope="module")
def generated():
    return engine.run(engine.main_program, config(agents=2), SECRET_KEYS)


@pytest.fixture(scope="module")
def given():
    return engine.run(engine.main_program, config(agents=1, token=USER_TOKEN), SECRET_KEYS)


def _tokens(run):
    init = stdin_yaml(run, "dev-server-0-start")
    return init["token"], init["agent-token"]


def test_generated_tokens_are_48_lowercase_alphanumerics_and_distinct(generated):
    for name in ("dev-token", "dev-agent-token"):
        password = generated.named(name)
        assert password.inputs["length"] == 48
        assert password.inputs["special"] is False
        assert password.inputs["upper"] is False  # never starts with K10
    token, agent_token = _tokens(generated)
    # Two separate passwords feed the two settings (values come from the mock).
    assert token == generated.named("dev-token").inputs.get("result", token)
    assert token != agent_token


def test_tokens_travel_only_on_stdin_and_stdin_is_secret(generated):
    token, agent_token = _tokens(generated)
    for name, cmd in commands(generated).items():
        if name == "dev-members":
            # Public values only: names, roles, addresses, host keys, install times (membership.py).
            assert not cmd.is_secret("stdin") and token not in cmd.inputs["stdin"]
        elif "stdin" in cmd.inputs:
            assert cmd.is_secret("stdin"), name
        assert token not in cmd.inputs["create"], name
        assert agent_token not in cmd.inputs["create"], name
        assert "environment" not in cmd.inputs, name  # shown in previews and needs AcceptEnv


def test_no_secret_appears_in_any_plain_input_of_any_resource(generated, given):
    for run in (generated, given):
        token, agent_token = _tokens(run)
        for r in run.registrations:
            text = _plain_text(r)
            for secret in (token, agent_token, "stand-in-key-material"):
                assert secret not in text, (r.type, r.name)


def test_the_ssh_connection_is_secret(generated):
    for name, cmd in commands(generated).items():
        assert cmd.is_secret("connection"), name
        assert cmd.inputs["connection"]["privateKey"] == PRIVATE_KEY


def test_agents_get_the_agent_token_not_the_server_token(generated):
    """Issue 18.2: in K3s's secure form, pinned to the cluster CA the init step reported."""
    token, agent_token = _tokens(generated)
    agent = stdin_yaml(generated, "dev-agent-0-start")
    assert agent["token"] == f"K10{engine.MOCK_CA_HASH}::node:{agent_token}"
    assert token not in generated.named("dev-agent-0-start").inputs["stdin"]


def test_joining_servers_carry_the_cluster_ca_hash_and_the_first_server_its_own_token(generated):
    """Issue 18.2: every join says which CA it trusts (K10<hash>::server:), so K3s refuses a
    registration address that presents another before it sends the token. The first server
    joins nobody (cluster-init) and keeps the bare password; the init step gets it too."""
    token, _ = _tokens(generated)
    assert stdin_yaml(generated, "dev-init")["token"] == token
    assert stdin_yaml(generated, "dev-server-0-start")["token"] == token
    for name in ("dev-server-1-start", "dev-server-2-start"):
        assert stdin_yaml(generated, name)["token"] == f"K10{engine.MOCK_CA_HASH}::server:{token}"
    first = engine.parse_command(generated.named("dev-server-0-start").inputs["create"])[1]
    assert first["K3S_HA_CA_HASH"] == engine.MOCK_CA_HASH and first["K3S_HA_CLUSTER_INIT"] == "never"


def test_a_new_cluster_encrypts_secrets_at_rest_on_every_server(generated):
    """Issue 18: secrets-encryption on every server of a cluster the init step created, and
    never on an agent (a server-only setting)."""
    for name in ("dev-init", "dev-server-0-start", "dev-server-1-start", "dev-server-2-start"):
        assert stdin_yaml(generated, name)["secrets-encryption"] is True, name
    assert "secrets-encryption" not in stdin_yaml(generated, "dev-agent-0-start")


def test_a_user_token_is_used_and_no_token_is_generated(given):
    assert not given.by_type("random:index/randomPassword:RandomPassword")[0].name == "dev-token"
    names = [r.name for r in given.by_type("random:index/randomPassword:RandomPassword")]
    assert names == ["dev-agent-token"]
    for name in ("dev-init", "dev-server-0-start", "dev-server-1-start", "dev-server-2-start"):
        assert stdin_yaml(given, name)["token"].rsplit(":", 1)[-1] == USER_TOKEN


def test_kubeconfig_is_secret_never_logged_and_points_at_the_api_address(generated):
    reader = generated.named("dev-kubeconfig")
    assert reader.inputs["logging"] == "none"
    assert {"stdout", "stderr"} <= set(reader.options["additionalSecretOutputs"])
    assert "kubeconfig" in generated.secret_outputs
    kubeconfig = yaml.safe_load(generated.outputs["kubeconfig"])
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    init_public = generated.outputs["serverPublicIps"][0]
    assert server == f"https://{init_public}:6443"
    assert generated.outputs["apiEndpoint"] == server


def test_only_the_kubeconfig_step_captures_secret_output(generated):
    for name, cmd in commands(generated).items():
        if name != "dev-kubeconfig":
            # pulumi-command itself always lists `connection`; nothing else is hidden.
            assert cmd.options["additionalSecretOutputs"] == ["connection"], name
            assert "print-kubeconfig" not in cmd.inputs["create"], name


def test_preview_command_text_is_readable_and_identical_across_runs():
    first = engine.run(engine.main_program, config(agents=1), SECRET_KEYS, preview=True)
    second = engine.run(engine.main_program, config(agents=1), SECRET_KEYS, preview=True)
    a = {n: c.inputs["create"] for n, c in commands(first).items()}
    b = {n: c.inputs["create"] for n, c in commands(second).items()}
    assert a == b
    for name, cmd in commands(first).items():
        assert not cmd.is_secret("create"), name
        assert cmd.inputs["create"].startswith("sudo -n "), name
        assert parse_command(cmd.inputs["create"]) is not None, name
