"""serverConfig / agentConfig / registries: K3s settings passed through to every node's
config.yaml and registries.yaml, checked before anything is registered."""

from __future__ import annotations

import pytest
from k3s_ha import HostArgs, K3sBootstrap, K3sBootstrapArgs, SshArgs, passthrough
from k3s_ha.errors import ConfigError
from support import engine
from support.helpers import PRIVATE_KEY, SECRET_KEYS, commands, config, stdin_registries, stdin_yaml

SERVERS = [f"dev-server-{i}-start" for i in range(3)]
AGENTS = ["dev-agent-0-start", "dev-agent-1-start"]
PASSWORD = "registry-password-0123456789"
REGISTRIES = {
    "mirrors": {"docker.io": {"endpoint": ["https://mirror.example.internal:5000"]}},
    "configs": {"mirror.example.internal:5000": {"auth": {"username": "k3s", "password": PASSWORD}}},
}


def _run(**overrides):
    return engine.run(engine.main_program, config(agents=2, **overrides), SECRET_KEYS)


def _refuse(**overrides) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        _run(**overrides)
    assert caught.value.registrations == []  # nothing registered before the refusal
    return caught.value


def test_server_settings_reach_every_server_and_no_agent():
    server_config = {
        "disable": ["traefik", "servicelb"],
        "flannel-backend": "none",
        "disable-network-policy": True,
        "node-taint": ["CriticalAddonsOnly=true:NoExecute"],
    }
    run = _run(serverConfig=server_config)
    configs = [stdin_yaml(run, name) for name in SERVERS]
    # The AWS integration (on by default) adds its own items after the user's, once each.
    expected = {**server_config, "disable": ["traefik", "servicelb", "local-storage"]}
    for cfg in configs:
        for key, value in expected.items():
            assert cfg[key] == value, key
    # Everything but the join line and the token's form (a join carries the CA hash) is
    # identical on every server (K3s refuses a mismatch).
    assert configs[1]["token"].endswith(f"::server:{configs[0]['token']}")
    assert {k: v for k, v in configs[1].items() if k not in ("server", "token")} == {
        k: v for k, v in configs[0].items() if k not in ("cluster-init", "token")
    }
    for name in AGENTS:
        assert not set(server_config) & set(stdin_yaml(run, name)), name
        assert stdin_yaml(run, name)["kubelet-arg"] == ["cloud-provider=external"], name


def test_agent_settings_reach_every_agent_and_no_server():
    run = _run(agentConfig={"node-label": ["team=data"], "node-taint": ["gpu=true:NoSchedule"]})
    for name in AGENTS:
        cfg = stdin_yaml(run, name)
        assert cfg["node-label"] == ["team=data"] and cfg["node-taint"] == ["gpu=true:NoSchedule"]
        assert cfg["server"].startswith("https://") and cfg["token"]  # the bootstrap's own keys stay
    for name in SERVERS:
        assert "node-label" not in stdin_yaml(run, name)


def test_tls_san_entries_are_added_to_the_bootstraps():
    plain = stdin_yaml(_run(), SERVERS[0])["tls-san"]
    run = _run(serverConfig={"tls-san": ["k3s.example.com", "203.0.113.80"]})
    assert set(stdin_yaml(run, SERVERS[0])["tls-san"]) == {*plain, "k3s.example.com", "203.0.113.80"}
    single = _run(serverConfig={"tls-san": "k3s.example.com"})
    assert set(stdin_yaml(single, SERVERS[0])["tls-san"]) == {*plain, "k3s.example.com"}


def test_whole_numbers_from_other_languages_are_written_as_integers():
    run = _run(serverConfig={"etcd-snapshot-compress": True, "kube-apiserver-arg": ["max-requests-inflight=800"]})
    cfg = stdin_yaml(run, SERVERS[0])
    assert cfg["etcd-snapshot-compress"] is True and cfg["kube-apiserver-arg"] == ["max-requests-inflight=800"]
    assert passthrough.k3s_settings({"node-monitor-grace": 5.0}, "server_config", "server") == {"node-monitor-grace": 5}


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("token", "tokens"),
        ("agent-token", "tokens"),
        ("token-file", "tokens"),
        ("server", "join"),
        ("cluster-init", "join"),
        ("node-name", "same name"),
        ("datastore-endpoint", "embedded-etcd"),
        ("cluster-reset", "reset etcd"),
        ("write-kubeconfig-mode", "0600"),
        ("https-listen-port", "6443"),
    ],
)
def test_keys_the_bootstrap_owns_are_refused(key, why):
    error = _refuse(serverConfig={key: "x"})
    assert error.field == "serverConfig / server_config"
    assert key in error.problem and why in error.problem and error.fix == f"remove {key}"


@pytest.mark.parametrize("key", ["token", "server", "node-name"])
def test_agents_cannot_override_them_either(key):
    error = _refuse(agentConfig={key: "x"})
    assert error.field == "agentConfig / agent_config" and key in error.problem


def test_a_setting_with_its_own_input_is_refused_naming_that_input():
    error = _refuse(serverConfig={"etcd-snapshot-retention": 9})
    assert "etcdSnapshotRetention / etcd_snapshot_retention" in error.fix


def test_s3_snapshot_settings_pass_through_unless_etcd_s3_is_on():
    run = _run(serverConfig={"etcd-s3": True, "etcd-s3-endpoint": "minio.example.internal:9000"})
    assert stdin_yaml(run, SERVERS[0])["etcd-s3-endpoint"] == "minio.example.internal:9000"
    error = _refuse(etcdS3=True, serverConfig={"etcd-s3-bucket": "mine"})
    assert "etcdS3 / etcd_s3" in error.fix


@pytest.mark.parametrize(
    ("server_config", "problem"),
    [
        ({"--disable": "traefik"}, "is not a K3s setting name"),
        ({"node_label": ["a=b"]}, "is not a K3s setting name"),
        ({"Disable": "traefik"}, "is not a K3s setting name"),
        ({"disable": {"traefik": True}}, "is not a YAML scalar"),
        ({"disable": [["traefik"]]}, "is not a YAML scalar"),
        ({"disable": None}, "is not a YAML scalar"),
        ({"node-label": "a=b\nserver: https://evil:6443"}, "line break"),
        (["disable", "traefik"], "is not an object"),
        ({"tls-san": [7]}, "tls-san must be host names"),
    ],
)
def test_malformed_settings_are_refused(server_config, problem):
    error = _refuse(serverConfig=server_config)
    assert error.field == "serverConfig / server_config" and problem in error.problem


def _parameters(run, name: str) -> str:
    """The `env NAME=value ...` part of a step's command text, before the script."""
    return run.named(name).inputs["create"].split(" bash -c ", 1)[0]


def test_registries_follow_config_yaml_on_every_nodes_secret_stdin():
    run = _run(registries=REGISTRIES)
    for name in SERVERS + AGENTS:
        assert stdin_registries(run, name) == REGISTRIES, name
        assert stdin_yaml(run, name)["token"], name  # config.yaml still comes first
        assert run.named(name).is_secret("stdin"), name
        # so a stdin cut right after config.yaml is refused, not read as "no registries"
        assert " K3S_HA_WITH_REGISTRIES=1 " in _parameters(run, name), name
    for name, cmd in commands(run).items():
        plain = {k: v for k, v in cmd.inputs.items() if not cmd.is_secret(k)}
        assert PASSWORD not in repr(plain), name


def test_without_registries_the_stdin_is_config_yaml_alone():
    run = _run()
    for name in SERVERS + AGENTS:
        assert stdin_registries(run, name) is None
        assert "registries.yaml" not in run.named(name).inputs["stdin"]
        assert "K3S_HA_WITH_REGISTRIES" not in _parameters(run, name), name


@pytest.mark.parametrize(
    ("registries", "problem"),
    [
        ({"mirror": {}}, "'mirror' is not a registries.yaml section"),
        ({"mirrors": ["docker.io"]}, "mirrors must map each registry host to an object"),
        ({"configs": {"r.example": "secret"}}, "configs must map each registry host to an object"),
        (["mirrors"], "is not an object"),
    ],
)
def test_malformed_registries_are_refused(registries, problem):
    error = _refuse(registries=registries)
    assert error.field == "registries" and problem in error.problem


def test_k3s_bootstrap_checks_its_settings_the_same_way():
    def program():
        K3sBootstrap(
            "lab",
            K3sBootstrapArgs(
                servers=[HostArgs(name=f"server-{i}", address=f"192.0.2.{10 + i}") for i in range(3)],
                ssh=SshArgs(user="ubuntu", private_key=PRIVATE_KEY),
                server_config={"cluster-init": False},
            ),
        )

    with pytest.raises(ConfigError) as caught:
        engine.run(program)
    assert caught.value.field == "serverConfig / server_config" and "cluster-init" in caught.value.problem
    assert caught.value.registrations == []
