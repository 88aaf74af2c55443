"""Shared config and lookups for the mock-engine tests."""

from __future__ import annotations

import pytest
import yaml
from k3s_ha import ConfigError
from k3s_ha.bootstrap.node_config import MANIFESTS_SEPARATOR, REGISTRIES_SEPARATOR

from support import engine
from support.engine import Run

PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nstand-in-key-material\n-----END OPENSSH PRIVATE KEY-----"
USER_TOKEN = "usertoken0123456789abcdefghijklmnopqrstuvwxyz01"

BASE_CONFIG = {
    "aws:region": "eu-west-1",
    "sshPrivateKey": PRIVATE_KEY,
    "sshPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIstandin test@k3s-ha",
    "sshAllowedCidrs": ["203.0.113.7/32"],
    "apiAllowedCidrs": ["203.0.113.0/24"],
}
SECRET_KEYS = ("sshPrivateKey", "token", "agentToken")

# What `auto` in sshAllowedCidrs / apiAllowedCidrs resolves to in every test (a documentation
# address; tests/conftest.py stubs the lookup): tests never ask checkip.amazonaws.com.
OPERATOR_ADDRESS = "198.51.100.23"


def config(**overrides):
    return {**BASE_CONFIG, **overrides}


def refuse(**overrides) -> ConfigError:
    """The error the project's program raises for `config(**overrides)`, having created nothing."""
    with pytest.raises(ConfigError) as caught:
        engine.run(engine.main_program, config(**overrides), SECRET_KEYS)
    assert caught.value.registrations == [], "a refused input must create nothing"
    return caught.value


def commands(run: Run):
    return {r.name: r for r in run.by_type("command:remote:Command")}


def stdin_yaml(run: Run, name: str) -> dict:
    """The config.yaml a start step sends (without the registries.yaml and manifests that may
    follow it)."""
    return yaml.safe_load(run.named(name).inputs["stdin"].split(MANIFESTS_SEPARATOR)[0].split(REGISTRIES_SEPARATOR)[0])


def stdin_registries(run: Run, name: str) -> dict | None:
    """The registries.yaml a start step sends after config.yaml, None when it sends none."""
    parts = run.named(name).inputs["stdin"].split(MANIFESTS_SEPARATOR)[0].split(REGISTRIES_SEPARATOR)
    return yaml.safe_load(parts[1]) if len(parts) == 2 else None


def stdin_manifests(run: Run, name: str) -> list[dict] | None:
    """The objects a server's start step sends for its auto-deploy directory, None when none."""
    parts = run.named(name).inputs["stdin"].split(MANIFESTS_SEPARATOR)
    return [d for d in yaml.safe_load_all(parts[1]) if d] if len(parts) == 2 else None


def ingress_rules(run: Run):
    return run.by_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")


def group_urn_of_id(run: Run, group_id: str) -> str:
    """Security group resource name for a mock id (`<name>-id`)."""
    return group_id[: -len("-id")]
