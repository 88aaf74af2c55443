"""Inputs are parsed once into typed settings; K3s settings pass through from one table; each
constant has one home. The links a new config key relies on are checked here."""

from __future__ import annotations

import ast
import io
import ipaddress
import re
import tokenize
from pathlib import Path

import pytest
from k3s_ha import ConfigError, K3sBootstrap, K3sClusterArgs
from k3s_ha.aws.args import ARG_KINDS, DEFAULTS, K3S_SERVER_SETTINGS
from k3s_ha.aws.settings import ExistingVpc, NewVpc, parse_cluster_args
from k3s_ha.bootstrap.settings import parse_bootstrap_args
from k3s_ha.ports import API_PORT
from k3s_ha.stack_config import CONFIG_KEYS
from k3s_ha.validation import camel_case
from support import engine
from support.helpers import PRIVATE_KEY, SECRET_KEYS, config, stdin_yaml

PACKAGE = Path(__file__).resolve().parents[2] / "components" / "k3s_ha"
ARGS = {
    "ssh_private_key": PRIVATE_KEY,
    "ssh_public_key": "ssh-ed25519 AAAA test",
    "ssh_allowed_cidrs": ["203.0.113.7/32"],
}


def _changed(value):
    """A valid value other than the default, of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 2
    if value == "0 */12 * * *":  # a cron spec is checked with K3s' grammar (test_snapshot_schedule.py)
        return "30 */6 * * *"
    return f"{value} changed"


def _wrong_type(value):
    return "five" if isinstance(value, int) and not isinstance(value, bool) else 5


# --- one declaration per config key -------------------------------------------------------


def test_every_args_field_is_a_config_key_read_by_its_annotated_kind():
    assert {arg for arg, _ in CONFIG_KEYS.values()} == set(K3sClusterArgs.__annotations__)
    assert CONFIG_KEYS["rootVolumeGb"] == ("root_volume_gb", "int")
    assert CONFIG_KEYS["etcdS3"] == ("etcd_s3", "bool")
    assert CONFIG_KEYS["subnetIds"] == ("subnet_ids", "list")
    assert CONFIG_KEYS["tags"] == ("tags", "object")
    # The SSH key is read as a secret; the tokens as text, so they can be checked first.
    assert CONFIG_KEYS["sshPrivateKey"] == ("ssh_private_key", "secret")
    assert CONFIG_KEYS["token"] == ("token", "str")


def test_defaults_belong_to_args_fields_and_match_their_annotated_kind():
    kinds = {"int": int, "str": str, "bool": bool}
    for arg, default in DEFAULTS.items():
        assert arg in ARG_KINDS, arg
        assert type(default) is kinds[ARG_KINDS[arg]], arg


def _docstrings() -> dict[str, str]:
    tree = ast.parse((PACKAGE / "aws" / "args.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "K3sClusterArgs")
    return {
        stmt.target.id: following.value.value
        for stmt, following in zip(node.body, node.body[1:])
        if isinstance(stmt, ast.AnnAssign) and isinstance(following, ast.Expr)
    }


def test_a_default_a_field_description_names_is_the_default_applied():
    """The descriptions are the component schema other languages read; a default they quote
    must be the one DEFAULTS applies."""
    quoted = {arg: m.group(1) for arg, doc in _docstrings().items() if (m := re.search(r"\(default ([^)]+)\)", doc))}
    assert quoted, "no description quotes a default: the check below would prove nothing"
    for arg, text in quoted.items():
        assert arg in DEFAULTS, f"{arg}'s description quotes a default, but DEFAULTS has none"
        assert text.startswith(str(DEFAULTS[arg])), f"{arg}: description says {text!r}, DEFAULTS has {DEFAULTS[arg]!r}"


# --- K3s settings passed through unchanged --------------------------------------------------


@pytest.mark.parametrize("setting", K3S_SERVER_SETTINGS, ids=lambda s: s.arg)
def test_a_passthrough_setting_is_a_plain_args_field_with_a_default_of_its_kind(setting):
    assert setting.arg in K3sClusterArgs.__annotations__, (
        f"add `{setting.arg}: NotRequired[{type(setting.default).__name__}]` and its description to K3sClusterArgs"
    )
    assert ARG_KINDS[setting.arg] in ("int", "str", "bool")
    assert DEFAULTS[setting.arg] == setting.default
    assert camel_case(setting.arg) in CONFIG_KEYS


def test_passthrough_defaults_reach_every_server_config_and_no_agent():
    run = engine.run(engine.main_program, config(agents=1), SECRET_KEYS)
    for index in range(3):
        server = stdin_yaml(run, f"dev-server-{index}-start")
        for setting in K3S_SERVER_SETTINGS:
            assert server[setting.k3s_key] == setting.default, setting.arg
    agent = stdin_yaml(run, "dev-agent-0-start")
    assert not {s.k3s_key for s in K3S_SERVER_SETTINGS} & set(agent)


def test_passthrough_values_from_stack_config_reach_every_server_config():
    values = {s: _changed(s.default) for s in K3S_SERVER_SETTINGS}
    run = engine.run(engine.main_program, config(**{camel_case(s.arg): v for s, v in values.items()}), SECRET_KEYS)
    for index in range(3):
        server = stdin_yaml(run, f"dev-server-{index}-start")
        for setting, value in values.items():
            assert server[setting.k3s_key] == value, setting.arg


@pytest.mark.parametrize("setting", K3S_SERVER_SETTINGS, ids=lambda s: s.arg)
def test_a_passthrough_value_of_the_wrong_type_is_refused_naming_the_field(setting):
    with pytest.raises(ConfigError) as caught:
        parse_cluster_args({**ARGS, setting.arg: _wrong_type(setting.default)})
    assert caught.value.field == f"{camel_case(setting.arg)} / {setting.arg}"
    assert caught.value.fix == setting.fix


def test_a_passthrough_int_below_its_minimum_is_refused():
    [retention] = [s for s in K3S_SERVER_SETTINGS if s.arg == "etcd_snapshot_retention"]
    with pytest.raises(ConfigError, match="is not a positive whole number") as caught:
        parse_cluster_args({**ARGS, "etcd_snapshot_retention": 0})
    assert caught.value.fix == retention.fix == "keep at least 1"


# --- settings: checked once, typed -----------------------------------------------------------


def test_cluster_settings_hold_typed_values_with_defaults_filled_in():
    settings, warnings = parse_cluster_args(
        {**ARGS, "servers": 5.0, "api_allowed_cidrs": ["0.0.0.0/0"], "tags": {"team": "k3s"}}
    )
    assert settings.servers == 5 and type(settings.servers) is int  # other languages send floats
    assert settings.agents == 0 and settings.root_volume_gb == 30
    assert settings.k3s.version.tag == DEFAULTS["k3s_version"] and settings.k3s.ready_timeout_seconds == 600
    assert settings.ssh_cidrs == (ipaddress.ip_network("203.0.113.7/32"),)
    assert isinstance(settings.network, NewVpc) and settings.network.cidr == ipaddress.ip_network("10.0.0.0/16")
    assert settings.network.zones is None and settings.network.zone_count == 3
    assert settings.k3s_server_settings == {s.k3s_key: s.default for s in K3S_SERVER_SETTINGS}
    assert settings.snapshot_bucket is None and settings.ssh_key.key_name is None
    assert warnings == ["apiAllowedCidrs opens the Kubernetes API (6443) to the whole internet; narrow it"]
    with pytest.raises(AttributeError):
        settings.servers = 3  # frozen: decided once


def test_an_existing_vpc_is_settled_in_the_settings():
    settings, _ = parse_cluster_args({**ARGS, "vpc_id": "vpc-1", "subnet_ids": ["a", "b", "c"]})
    assert settings.network == ExistingVpc("vpc-1", ("a", "b", "c"))


def test_a_version_warning_is_logged_once_not_again_by_the_bootstrap_inside():
    run = engine.run(engine.main_program, config(k3sVersion="v1.19.2+k3s1", awsIntegration=False), SECRET_KEYS)
    assert len([w for w in run.warnings if "experimental" in w]) == 1


def test_bootstrap_settings_are_typed_and_keep_the_given_addresses():
    settings, warnings = parse_bootstrap_args(
        {
            "servers": [{"name": "server-0", "address": "192.0.2.10"}],
            "ssh": {"user": "root", "private_key": PRIVATE_KEY},
            "k3s_version": "v1.19.3+k3s1",
            "registration_address": "k3s.lab.example",
            "tls_sans": ["extra.example"],
        }
    )
    assert settings.k3s.version.tag == "v1.19.3+k3s1" and settings.k3s.ready_timeout_seconds == 600
    assert settings.registration_address == "k3s.lab.example" and settings.tls_sans == ("extra.example",)
    assert settings.agents == () and settings.install_url == "https://get.k3s.io"
    assert len(warnings) == 1 and "experimental" in warnings[0]


def test_the_bootstrap_still_checks_its_own_inputs():
    with pytest.raises(ConfigError, match="odd number"):
        K3sBootstrap(
            "lab",
            {
                "servers": [{"name": "a", "address": "192.0.2.1"}, {"name": "b", "address": "192.0.2.2"}],
                "ssh": {"user": "root", "private_key": PRIVATE_KEY},
            },
        )


# --- one home per constant -----------------------------------------------------------------

PORTS = {6443, 2379, 2380, 8472, 10250}


def _port_literals(source: str) -> list[int]:
    """Line numbers of K3s port numbers in code: number literals, and ":6443" in strings that are
    not triple-quoted (prose and docstrings may name the port; code must use ports.API_PORT).
    tokenize, not ast: CPython 3.11's ast.parse can fail spuriously while another thread builds
    an AST (python/cpython#106905)."""
    lines = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        text = token.string
        number = token.type == tokenize.NUMBER and text.isdigit() and int(text) in PORTS
        url = (
            token.type == tokenize.STRING and ":6443" in text and not text.lstrip("rbfuRBFU").startswith(('"""', "'''"))
        )
        if number or url:
            lines.append(token.start[0])
    return lines


def test_k3s_ports_are_written_only_in_ports_py():
    offenders = {
        str(path.relative_to(PACKAGE)): lines
        for path in PACKAGE.rglob("*.py")
        if path.name != "ports.py" and (lines := _port_literals(path.read_text()))
    }
    assert offenders == {}
    assert API_PORT == 6443


def test_the_port_check_sees_literals_but_not_prose():
    code = 'def f():\n    """Listens on https://host:6443."""\n    return allow((6443, 6443)), "https://x:6443"\n'
    assert _port_literals(code) == [3, 3, 3]
