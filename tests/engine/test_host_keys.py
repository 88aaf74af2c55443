"""Each EC2 node's SSH host key is generated, handed to cloud-init and pinned in every
connection (issue 12.4); running nodes are neither restarted nor pinned to a key they lack."""

import json

import pytest
import yaml
from k3s_ha.aws.host_keys import HOST_KEY_TAG
from k3s_ha.bootstrap.checks import host_key
from k3s_ha.bootstrap.commands import parse_command
from support import engine
from support.helpers import PRIVATE_KEY, SECRET_KEYS, commands, config

INSTANCE = "aws:ec2/instance:Instance"
KEY = "tls:index/privateKey:PrivateKey"


def test_every_node_gets_its_own_ed25519_host_key():
    run = engine.run(engine.main_program, config(agents=1), SECRET_KEYS)
    keys = {r.name: r for r in run.by_type(KEY) if r.name != "dev-removal-key"}
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


class TamperedTags(engine.CloudMocks):
    """`pulumi refresh` after someone with ec2:CreateTags put their own key in server-1's tag."""

    FORGED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIForgedKeyOfSomeoneWithCreateTags000000000"

    def new_resource(self, args):
        rid, state = super().new_resource(args)
        if args.typ == INSTANCE and args.name == "dev-server-1":
            state["tags"] = {**state["tags"], HOST_KEY_TAG: self.FORGED}
        return rid, state


def test_a_changed_tag_never_becomes_the_pinned_key_and_fails_the_up():
    """Issue 18.5: the key pinned is the generated one from the state; a tag that names
    another one stops the `up` before anything is sent to that node."""
    with pytest.raises(Exception) as caught:
        engine.run(engine.main_program, config(), SECRET_KEYS, mocks=TamperedTags())
    assert "dev-server-1's k3s-ha-ssh-host-key tag names another SSH host key" in str(caught.value)
    assert "Nothing is sent to it" in str(caught.value)


def test_the_pinned_key_comes_from_the_state_not_from_the_tag():
    run = engine.run(engine.main_program, config(), SECRET_KEYS)
    for name in ("dev-server-0", "dev-server-1", "dev-server-2"):
        generated = run.named(f"{name}-host-key").outputs["publicKeyOpenssh"].strip()
        assert run.named(f"{name}-install").inputs["connection"]["hostKey"] == generated


def test_a_node_without_the_tag_is_named_in_a_warning():
    run = engine.run(engine.main_program, config(), SECRET_KEYS, mocks=OldInstances())
    assert any("has no k3s-ha-ssh-host-key tag" in w and "accepts any host key" in w for w in run.warnings)


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


# --- the day-2 steps that SSH from a server to other nodes pin the same keys ----------------


def _params(step) -> dict[str, str]:
    """The script parameters of a step (commands.parse_command)."""
    return parse_command(step.inputs["create"])[1]


def _wanted(step) -> dict[str, str]:
    """The record step's wanted nodes from its stdin ("ROLE NAME ADDRESS [TYPE BASE64] [@TIME]"
    lines): NAME -> "TYPE BASE64" ("" without a key)."""
    return {name: " ".join(row.key) for name, row in engine.member_rows(step.inputs["stdin"]).items()}


def _type_and_blob(key: str) -> str:
    return " ".join(key.split()[:2])


def test_the_members_and_evict_steps_get_the_host_keys_pulumi_pins():
    """The record step gets every wanted node's key under the Node name its start (an agent's:
    its install) reported (it keeps them in the member record: a node that leaves is no longer
    among the inputs); each evict
    gets the key of the host whose address it reaches. Public keys only, as plain text."""
    run = engine.run(engine.main_program, config(agents=1), SECRET_KEYS)
    hosts = ("server-0", "server-1", "server-2", "agent-0")
    public = {h: yaml.safe_load(run.named(f"dev-{h}").inputs["userData"])["ssh_keys"]["ed25519_public"] for h in hosts}

    assert _wanted(run.named("dev-members")) == {
        engine.node_name(f"dev-{h}-start"): _type_and_blob(public[h]) for h in hosts
    }
    for h in hosts[:3]:  # servers: agents have no evict step of their own (record-members.sh)
        evict = _params(run.named(f"dev-{h}-evict"))
        assert evict["K3S_HA_HOST"] == h
        assert evict["K3S_HA_ADDRESS"] == run.named(f"dev-{h}").outputs["privateIp"]
        assert evict["K3S_HA_HOST_KEY"] == _type_and_blob(public[h])
        assert evict["K3S_HA_HOST_KEY"] == _type_and_blob(run.named(f"dev-{h}-install").inputs["connection"]["hostKey"])


def test_each_evict_names_the_cluster_label_an_older_release_put_on_its_nodes():
    """While a cluster has no member record yet (set up by an older release), a server's evict
    and the record step take the members from the k3s-ha.io/cluster label that release put
    on them: both must name the same value, the cluster's name."""
    run = engine.run(engine.main_program, config(agents=1), SECRET_KEYS)
    assert _params(run.named("dev-members"))["K3S_HA_CLUSTER"] == "dev"
    for h in ("server-0", "server-1", "server-2"):
        evict = _params(run.named(f"dev-{h}-evict"))
        assert (evict["K3S_HA_CLUSTER"], evict["K3S_ROLE"]) == ("dev", "server")


def test_nodes_launched_without_a_key_reach_the_day2_steps_without_one():
    run = engine.run(engine.main_program, config(agents=1), SECRET_KEYS, mocks=OldInstances())
    assert set(_wanted(run.named("dev-members")).values()) == {""}
    for h in ("server-0", "server-1", "server-2"):
        assert _params(run.named(f"dev-{h}-evict"))["K3S_HA_HOST_KEY"] == ""


def test_a_bootstrap_hosts_key_reaches_the_day2_steps_without_its_comment():
    import pulumi
    from k3s_ha import K3sBootstrap

    blob = "AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheTestOnly0000000000000000000"
    pin = f"ssh-ed25519 {blob} root@pi-1 (the lab's second pi)"

    def program():
        K3sBootstrap(
            "lab",
            {
                "servers": [
                    {"name": f"pi-{i}", "address": f"192.0.2.1{i}", "replace_on": f"disk-{i}"}
                    | ({"host_key": pin} if i == 1 else {})
                    for i in range(3)
                ],
                "agents": [{"name": "nuc-0", "address": "192.0.2.20", "replace_on": "disk-a"}],
                "ssh": {"user": "admin", "private_key": pulumi.Output.secret("key")},
            },
        )

    run = engine.run(program)
    keys = _wanted(run.named("lab-members"))
    assert keys[engine.node_name("lab-pi-1-start")] == f"ssh-ed25519 {blob}"
    assert sorted(keys.values()) == ["", "", "", f"ssh-ed25519 {blob}"]
    assert _params(run.named("lab-pi-1-evict"))["K3S_HA_HOST_KEY"] == f"ssh-ed25519 {blob}"
    for other in ("pi-0", "pi-2"):
        assert _params(run.named(f"lab-{other}-evict"))["K3S_HA_HOST_KEY"] == ""


def test_no_secret_reaches_the_day2_steps_command_text():
    """The SSH private key stays on (secret) stdin; the host keys' private halves, the login
    key and the tokens never reach the command text those steps keep in the state."""
    run = engine.run(engine.main_program, config(agents=1), SECRET_KEYS)
    secrets = {PRIVATE_KEY.splitlines()[1]}
    secrets |= {
        yaml.safe_load(i.inputs["userData"])["ssh_keys"]["ed25519_private"].splitlines()[1]
        for i in run.by_type(INSTANCE)
    }
    secrets |= {r.outputs["result"] for r in run.by_type("random:index/randomPassword:RandomPassword")}
    removal_key = run.named("dev-removal-key").outputs["privateKeyOpenssh"]
    secrets.add(removal_key.splitlines()[1])
    assert len(secrets) == 8  # login key, 4 host keys, 2 tokens, the removal key
    record = run.named("dev-members")
    assert not record.is_secret("stdin") and not any(secret in record.inputs["stdin"] for secret in secrets)
    steps = [s for name, s in commands(run).items() if name.endswith(("-removals", "-evict"))]
    assert len(steps) == 4  # the removals and the servers' evicts
    for step in steps:
        # The cluster's removal key, never the operator's login key (issue 18.3).
        assert step.inputs["stdin"].endswith(removal_key) and step.is_secret("stdin")
        assert PRIVATE_KEY.splitlines()[1] not in step.inputs["stdin"], step.name
        text = step.inputs["create"]
        assert not step.is_secret("create"), "public keys only: the text stays readable in previews"
        for secret in secrets:
            assert secret not in text, step.name
