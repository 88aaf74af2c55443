"""Bad input is refused before anything is registered, with an error naming the field and the fix."""

import pytest
from k3s_ha import ConfigError
from k3s_ha.versions import AWS_CCM_IMAGES, Era, parse_version
from support import engine
from support.helpers import SECRET_KEYS, USER_TOKEN, config, refuse


@pytest.mark.parametrize("servers", [0, 2, 4, -1])
def test_even_zero_or_negative_server_counts_are_refused(servers):
    error = refuse(servers=servers)
    assert error.field == "servers"
    assert "odd" in error.problem and "3" in error.fix


def test_negative_agents_are_refused():
    error = refuse(agents=-1)
    assert error.field == "agents" and "0 or more" in error.fix


@pytest.mark.parametrize("version", ["1.36.4+k3s1", "v1.36", "latest", "v1.36.4+rke2r1", "v1.30.0"])
def test_malformed_versions_are_refused(version):
    error = refuse(k3sVersion=version)
    assert error.field == "k3sVersion / k3s_version"
    assert "v1.36.4+k3s1" in error.fix or "+k3s1" in error.fix


def test_pre_1_0_versions_are_refused():
    error = refuse(k3sVersion="v0.10.2")
    assert "predates v1.0.0" in error.problem


@pytest.mark.parametrize("version", ["v1.18.20+k3s1", "v1.0.0", "v1.19.0+k3s1"])
def test_dqlite_versions_are_refused_without_opt_in(version):
    error = refuse(k3sVersion=version)
    assert "Dqlite" in error.problem and "allowDqlite" in error.fix


def test_dqlite_versions_with_opt_in_run_with_a_warning():
    run = engine.run(
        engine.main_program, config(k3sVersion="v1.18.20+k3s1", allowDqlite=True, awsIntegration=False), SECRET_KEYS
    )
    assert any("Dqlite is deprecated" in w and "no upgrade path" in w for w in run.warnings)
    assert "K3S_VERSION=v1.18.20+k3s1" in run.named("dev-server-0-install").inputs["create"]


@pytest.mark.parametrize("version", ["v1.19.1+k3s1", "v1.19.4+k3s1"])
def test_experimental_etcd_versions_run_with_a_warning(version):
    # No AWS cloud controller manager is pinned for Kubernetes 1.19 (versions.AWS_CCM_IMAGES).
    run = engine.run(engine.main_program, config(k3sVersion=version, awsIntegration=False), SECRET_KEYS)
    assert any("experimental" in w for w in run.warnings)


@pytest.mark.parametrize("version", ["v1.19.5+k3s1", "v1.36.4+k3s1", "v1.28.2-rc1+k3s1"])
def test_supported_versions_run_silently(version):
    integration = parse_version(version).minor in AWS_CCM_IMAGES
    run = engine.run(engine.main_program, config(k3sVersion=version, awsIntegration=integration), SECRET_KEYS)
    assert run.warnings == []


def test_version_eras_follow_the_k3s_history():
    assert parse_version("v1.19.5+k3s1").era is Era.ETCD
    assert parse_version("v1.19.4+k3s2").era is Era.EXPERIMENTAL_ETCD
    assert parse_version("v1.19.1+k3s1").era is Era.EXPERIMENTAL_ETCD
    assert parse_version("v1.19.0+k3s1").era is Era.DQLITE
    assert parse_version("v1.0.0").era is Era.DQLITE


@pytest.mark.parametrize("cidr", ["10.0.0.1/8", "300.1.2.3/32", "everyone", "203.0.113.7/33"])
def test_malformed_cidrs_are_refused(cidr):
    error = refuse(sshAllowedCidrs=[cidr])
    assert error.field == "sshAllowedCidrs / ssh_allowed_cidrs"
    assert "203.0.113.7/32" in error.fix


def test_malformed_api_cidr_is_refused():
    assert refuse(apiAllowedCidrs=["nope"]).field == "apiAllowedCidrs / api_allowed_cidrs"


def test_no_ssh_cidr_is_refused_because_pulumi_could_not_connect():
    error = refuse(sshAllowedCidrs=[])
    assert "SSH" in error.problem


@pytest.mark.parametrize(
    "token, words",
    [
        ("K10abcdefabcdefabcdef::server:secretsecret", "K10"),
        ("abcdef.0123456789abcdef", "bootstrap token"),
        ("token-with-$(rm -rf)-and-more-chars", "shell metacharacters"),
        ("token with spaces in it for sure", "shell metacharacters"),
        ("short", "at least 16"),
    ],
)
def test_unusable_user_tokens_are_refused(token, words):
    error = refuse(token=token)
    assert error.field == "token"
    assert words in error.problem or words in error.fix


def test_unusable_agent_token_is_refused():
    assert refuse(agentToken="K10" + "x" * 40).field == "agentToken / agent_token"


def test_a_good_user_token_is_accepted():
    engine.run(engine.main_program, config(token=USER_TOKEN), SECRET_KEYS)


@pytest.mark.parametrize("value", ["", "   ", "medium", "t3"])
def test_bad_instance_types_are_refused(value):
    error = refuse(serverInstanceType=value)
    assert error.field == "serverInstanceType / server_instance_type" and "t3.medium" in error.fix


def test_vpc_overlapping_k3s_pod_network_is_refused():
    error = refuse(vpcCidr="10.42.0.0/16")
    assert "10.42.0.0/16" in error.problem


def test_missing_key_is_refused():
    cfg = config()
    del cfg["sshPublicKey"]
    with pytest.raises(ConfigError) as caught:
        engine.run(engine.main_program, cfg, SECRET_KEYS)
    assert caught.value.registrations == []
    assert "sshPublicKey" in caught.value.field


def test_errors_read_as_one_sentence_with_field_and_fix():
    error = refuse(servers=2)
    assert str(error).startswith("servers: 2 servers: embedded etcd needs an odd number")
    assert "Fix: use 3" in str(error)
