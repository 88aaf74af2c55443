"""Each EC2 node's SSH host key is generated, handed to cloud-init and pinned in every
connection (issue 12.4); running nodes are neither restarted nor pinned to a key they lack."""

import json

import engine
import yaml
from helpers import SECRET_KEYS, commands, config
from k3s_ha.aws.host_keys import HOST_KEY_TAG
from k3s_ha.validation import host_key

INSTANCE = "aws:ec2/instance:Instance"
KEY = "tls:index/privateKey:PrivateKey"


def test_every_node_gets_its_own_ed25519_host_key():
    run = engine.run(engine.main_program, config(agents=1), SECRET_KEYS)
    keys = {r.name: r for r in run.by_type(KEY)}
    assert set(keys) == {f"dev-{h}-host-key" for h in ("server-0", "server-1", "server-2", "agent-0")}
    assert {r.inputs["algorithm"] for r in keys.values()} == {"ED25519"}


def test_the_host_key_reaches_cloud_init_as_secret_user_data_that_never_restarts_a_node():
    run = engine.run(engine.main_program, config(), SECRET_KEYS)
    for instance in run.by_type(INSTANCE):
        assert instance.is_secret("userData"), "user data holds the host's private key"
        data = instance.inputs["userData"]
        assert data.startswith("#cloud-config\n")
        keys = yaml.safe_load(data)["ssh_keys"]
        assert set(keys) == {"ed25519_private", "ed25519_public"}
        assert keys["ed25519_private"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
        assert keys["ed25519_public"].startswith("ssh-ed25519 ")
        # Changing user data stops and starts an instance: it only ever applies at creation,
        # and so does the tag that records it.
        assert "userData" in instance.options["ignoreChanges"]
        assert f'tags["{HOST_KEY_TAG}"]' in instance.options["ignoreChanges"]
        assert instance.inputs["tags"][HOST_KEY_TAG] == keys["ed25519_public"]
        assert "userDataReplaceOnChange" not in instance.inputs


def test_every_connection_to_a_new_node_pins_its_host_key():
    run = engine.run(engine.main_program, config(agents=1), SECRET_KEYS)
    hosts = {
        **{ip: f"dev-server-{i}" for i, ip in enumerate(run.outputs["serverPublicIps"])},
        **{ip: f"dev-agent-{i}" for i, ip in enumerate(run.outputs["agentPublicIps"])},
    }
    steps = commands(run)
    assert steps
    for name, step in steps.items():
        connection = step.inputs["connection"]
        instance = run.named(hosts[connection["host"]])
        expected = yaml.safe_load(instance.inputs["userData"])["ssh_keys"]["ed25519_public"]
        assert connection["hostKey"] == expected, name
        host_key(connection["hostKey"], "hostKey")  # the authorized_keys format pulumi-command parses


class OldInstances(engine.CloudMocks):
    """Instances as they are in the state of a stack created before host keys existed: launched
    without the host key, so without its tag (the instance ignores the tag's later changes,
    and tags are always in an instance's state)."""

    def new_resource(self, args):
        rid, state = super().new_resource(args)
        if args.typ == INSTANCE:
            state.pop("userData", None)
            state["tags"] = {k: v for k, v in state["tags"].items() if k != HOST_KEY_TAG}
        return rid, state


def test_running_nodes_launched_without_the_key_are_not_pinned_and_their_steps_do_not_change():
    before = engine.run(engine.main_program, config(), SECRET_KEYS, mocks=OldInstances())
    for name, step in commands(before).items():
        assert "hostKey" not in step.inputs["connection"], name


def test_a_bootstrap_host_key_is_pinned_for_that_host_only():
    import pulumi
    from k3s_ha import K3sBootstrap

    pin = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheTestOnly0000000000000000000 root@pi-0"

    def program():
        K3sBootstrap(
            "lab",
            {
                "servers": [
                    {"name": "pi-0", "address": "192.0.2.10", "host_key": pin},
                    {"name": "pi-1", "address": "192.0.2.11"},
                    {"name": "pi-2", "address": "192.0.2.12"},
                ],
                "ssh": {"user": "admin", "private_key": pulumi.Output.secret("key")},
            },
        )

    run = engine.run(program)
    assert run.named("lab-pi-0-install").inputs["connection"]["hostKey"] == pin
    assert "hostKey" not in run.named("lab-pi-1-install").inputs["connection"]


def test_the_host_private_key_appears_only_in_secret_inputs():
    run = engine.run(engine.main_program, config(agents=1), SECRET_KEYS)
    private = {
        yaml.safe_load(i.inputs["userData"])["ssh_keys"]["ed25519_private"].splitlines()[1]
        for i in run.by_type(INSTANCE)
    }
    assert len(private) == 4
    for r in run.registrations:
        for key, value in r.inputs.items():
            if any(p in json.dumps(value) for p in private):
                assert r.is_secret(key), f"{r.name}.{key} carries a host private key in the clear"
