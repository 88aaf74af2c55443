"""K3sBootstrap on machines the user already has (bare metal, homelab): no AWS at all."""

import pulumi
import pytest
import yaml
from k3s_ha import ConfigError, K3sBootstrap
from support import engine

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nhomelab\n-----END OPENSSH PRIVATE KEY-----"


def homelab(**extra):
    """A three-server, one-agent program; callable values are made inside the program."""

    def program():
        cluster = K3sBootstrap(
            "lab",
            {
                "servers": [
                    {"name": f"pi-{i}", "address": f"192.0.2.{10 + i}", "private_address": f"10.1.0.{10 + i}"}
                    for i in range(3)
                ],
                "agents": [{"name": "nuc-0", "address": "192.0.2.20"}],
                "ssh": {"user": "admin", "private_key": pulumi.Output.secret(KEY)},
                **{k: (v() if callable(v) else v) for k, v in extra.items()},
            },
        )
        return {"kubeconfig": cluster.kubeconfig, "endpoint": cluster.api_endpoint}

    return program


def test_bootstrap_runs_on_given_hosts_without_cloud_resources():
    run = engine.run(homelab())
    types = {r.type for r in run.registrations}
    assert not any(t.startswith("aws:") for t in types)
    assert run.depends_on("lab-pi-1-start", "lab-pi-0-start")
    assert run.depends_on("lab-pi-2-start", "lab-pi-1-start")
    assert run.depends_on("lab-nuc-0-start", "lab-pi-2-start")
    join = yaml.safe_load(run.named("lab-pi-1-start").inputs["stdin"])
    assert join["server"] == "https://10.1.0.10:6443"
    assert run.outputs["endpoint"] == "https://192.0.2.10:6443"
    assert run.named("lab-pi-0-install").inputs["connection"]["user"] == "admin"
    # Without a machine identity there is nothing to trigger a replacement on.
    assert "triggers" not in run.named("lab-pi-0-install").inputs


def test_a_fixed_registration_address_is_used_for_joins_kubeconfig_and_certificate():
    run = engine.run(homelab(registration_address="k3s.lab.example", tls_sans=["api.lab.example"]))
    init = yaml.safe_load(run.named("lab-pi-0-start").inputs["stdin"])
    assert init["tls-san"] == ["api.lab.example", "k3s.lab.example"]
    agent = yaml.safe_load(run.named("lab-nuc-0-start").inputs["stdin"])
    assert agent["server"] == "https://k3s.lab.example:6443"
    assert "server: https://k3s.lab.example:6443" in run.outputs["kubeconfig"]


def test_a_bad_token_given_as_an_output_fails_before_it_reaches_a_node():
    # The engine wraps errors raised inside an apply in its own ValueError chain.
    with pytest.raises(ValueError, match=r"token: the token starts with K10.*Fix: pass a plain password") as caught:
        engine.run(homelab(token=lambda: pulumi.Output.secret("K10" + "a" * 40)))
    started = [r.name for r in caught.value.registrations if r.name.endswith("-start")]
    # The start steps need the checked token for their stdin, so none is registered.
    assert started == []


def test_even_number_of_hosts_is_refused():
    def program():
        K3sBootstrap(
            "lab",
            {
                "servers": [{"name": "a", "address": "192.0.2.1"}, {"name": "b", "address": "192.0.2.2"}],
                "ssh": {"user": "admin", "private_key": KEY},
            },
        )

    with pytest.raises(ConfigError) as caught:
        engine.run(program)
    assert caught.value.registrations == []


def test_duplicate_host_names_are_refused():
    def program():
        K3sBootstrap(
            "lab",
            {
                "servers": [{"name": "a", "address": "192.0.2.1"}],
                "agents": [{"name": "a", "address": "192.0.2.2"}],
                "ssh": {"user": "admin", "private_key": KEY},
            },
        )

    with pytest.raises(ConfigError, match="appears twice"):
        engine.run(program)
