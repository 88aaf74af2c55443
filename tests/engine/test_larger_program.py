"""What a larger program already has: its VPC and subnets, security groups, a bastion, a key
pair, tags, and an AWS provider for another region or account."""

import pulumi
import pulumi_aws as aws
import pytest
from k3s_ha import ConfigError, K3sCluster
from support import engine
from support.helpers import PRIVATE_KEY, SECRET_KEYS, commands, config

INSTANCE = "aws:ec2/instance:Instance"


def test_an_existing_vpc_and_subnets_are_used_and_no_network_is_created():
    run = engine.run(
        engine.main_program,
        config(
            vpcId="vpc-0abc", subnetIds=["subnet-a", "subnet-b", "subnet-c"], extraSecurityGroupIds=["sg-monitoring"]
        ),
        SECRET_KEYS,
    )
    for typ in ("aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/internetGateway:InternetGateway"):
        assert run.by_type(typ) == []
    assert not any(c[0] == "aws:index/getAvailabilityZones:getAvailabilityZones" for c in run.calls)
    assert {g.inputs["vpcId"] for g in run.by_type("aws:ec2/securityGroup:SecurityGroup")} == {"vpc-0abc"}
    servers = sorted((r for r in run.by_type(INSTANCE) if "-server-" in r.name), key=lambda r: r.name)
    assert [s.inputs["subnetId"] for s in servers] == ["subnet-a", "subnet-b", "subnet-c"]
    for machine in run.by_type(INSTANCE):
        assert "sg-monitoring" in machine.inputs["vpcSecurityGroupIds"]
        # issue 10: Pulumi logs in on the public address, which a subnet without
        # map_public_ip_on_launch would not give; asking for it is ignored on running nodes.
        assert machine.inputs["associatePublicIpAddress"] is True
        assert "associatePublicIpAddress" in machine.options["ignoreChanges"]


def test_an_existing_vpc_needs_its_subnets():
    with pytest.raises(ConfigError, match="both the VPC id and at least one of its subnet ids") as caught:
        engine.run(engine.main_program, config(vpcId="vpc-0abc"), SECRET_KEYS)
    assert caught.value.registrations == []


def test_fewer_than_three_subnets_warn_about_zone_loss():
    run = engine.run(engine.main_program, config(vpcId="vpc-0abc", subnetIds=["subnet-a"]), SECRET_KEYS)
    assert any("losing one zone can lose etcd quorum" in w for w in run.warnings)


def test_a_bastion_reaches_nodes_on_their_private_addresses():
    run = engine.run(engine.main_program, config(bastionHost="203.0.113.50", bastionUser="jump"), SECRET_KEYS)
    private = run.outputs["serverPrivateIps"]
    for name, cmd in commands(run).items():
        conn = cmd.inputs["connection"]
        assert conn["proxy"]["host"] == "203.0.113.50" and conn["proxy"]["user"] == "jump", name
        assert conn["proxy"]["privateKey"] == PRIVATE_KEY
        assert cmd.is_secret("connection")
    assert run.named("dev-server-0-install").inputs["connection"]["host"] == private[0]
    # Behind a bastion nodes need no public address: the subnet decides.
    assert all("associatePublicIpAddress" not in m.inputs for m in run.by_type(INSTANCE))


def test_an_existing_key_pair_is_used_by_name():
    cfg = config(keyName="team-key")
    del cfg["sshPublicKey"]
    run = engine.run(engine.main_program, cfg, SECRET_KEYS)
    assert run.by_type("aws:ec2/keyPair:KeyPair") == []
    assert {m.inputs["keyName"] for m in run.by_type(INSTANCE)} == {"team-key"}


def test_a_provider_for_another_region_reaches_every_aws_resource():
    def program():
        other = aws.Provider("us-east", region="us-east-1")
        cluster = K3sCluster(
            "k3s",
            {
                "ssh_private_key": pulumi.Output.secret(PRIVATE_KEY),
                "ssh_public_key": "ssh-ed25519 AAAA test",
                "ssh_allowed_cidrs": ["203.0.113.7/32"],
                "tags": {"owner": "platform"},
            },
            pulumi.ResourceOptions(providers={"aws": other}),
        )
        return {"endpoint": cluster.api_endpoint}

    run = engine.run(program)
    aws_resources = [r for r in run.registrations if r.type.startswith("aws:") and r.custom]
    assert aws_resources
    for r in aws_resources:
        assert "pulumi:providers:aws::us-east" in r.options["provider"], r.name
        assert r.inputs.get("tags", {}).get("owner", "platform") == "platform"
    assert run.named("k3s-vpc").inputs["tags"] == {"owner": "platform", "k3s-cluster": "k3s", "Name": "k3s-vpc"}


def _in_program_vpc(subnet_ids, **extra):
    """A program that makes its own VPC and subnets (as awsx does) and hands K3sCluster their
    ids as Outputs, the whole list being one Output when `subnet_ids` says so (issue 19)."""

    def program():
        vpc = aws.ec2.Vpc("platform", cidr_block="10.20.0.0/16")
        subnets = [aws.ec2.Subnet(f"platform-{i}", vpc_id=vpc.id, cidr_block=f"10.20.{i}.0/24") for i in range(3)]
        cluster = K3sCluster(
            "k3s",
            {
                "ssh_private_key": pulumi.Output.secret(PRIVATE_KEY),
                "ssh_public_key": "ssh-ed25519 AAAA test",
                "ssh_allowed_cidrs": ["203.0.113.7/32"],
                "vpc_id": vpc.id,
                "subnet_ids": subnet_ids(subnets),
                "load_balancer": True,
                **extra,
            },
        )
        return {"endpoint": cluster.api_endpoint}

    return program


def test_subnet_ids_may_be_one_output_as_awsx_gives_them():
    run = engine.run(_in_program_vpc(lambda subnets: pulumi.Output.all(*[s.id for s in subnets])))
    ids = [r.id for r in sorted(run.by_type("aws:ec2/subnet:Subnet"), key=lambda r: r.name)]
    servers = sorted((r for r in run.by_type(INSTANCE) if "-server-" in r.name), key=lambda r: r.name)
    assert [s.inputs["subnetId"] for s in servers] == ids  # round-robin, in the given order
    (balancer,) = run.by_type("aws:lb/loadBalancer:LoadBalancer")
    assert balancer.inputs["subnets"] == ids
    assert {g.inputs["vpcId"] for g in run.by_type("aws:ec2/securityGroup:SecurityGroup")} == {
        run.by_type("aws:ec2/vpc:Vpc")[0].id
    }


def test_subnet_ids_as_a_list_of_outputs_keep_each_instance_on_its_own_subnet():
    """A plain list of Outputs is indexed at once: each instance depends on its subnet alone, so
    replacing one subnet does not make a preview show every instance changing."""
    run = engine.run(_in_program_vpc(lambda subnets: [s.id for s in subnets]))
    for index in range(3):
        server = run.named(f"k3s-server-{index}")
        assert set(server.property_dependencies["subnetId"]) == {run.urn(f"platform-{index}")}


def test_subnet_ids_that_resolve_to_nothing_are_refused_naming_the_field():
    """Checked once known (it cannot be before): the instances and the balancer, whose inputs
    wait for it, fail with the field and the fix named."""
    with pytest.raises(Exception) as caught:
        engine.run(_in_program_vpc(lambda subnets: subnets[0].id.apply(lambda _: [])))
    assert "subnetIds / subnet_ids: the output given resolved to [], not a list of subnet ids" in str(caught.value)


def _with_provider():
    from k3s_ha import kubernetes_provider

    cluster = K3sCluster("k3s", {**_cluster_args(), "ssh_private_key": pulumi.Output.secret(PRIVATE_KEY)})
    kubernetes_provider("k3s", cluster)
    return {}


def _cluster_args() -> dict:
    return {"ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5me caller", "ssh_allowed_cidrs": ["203.0.113.7/32"]}


def test_a_kubernetes_provider_gets_the_secret_kubeconfig_and_waits_for_the_whole_cluster():
    """Issue 19.3: k3s_ha.kubernetes_provider, for the rest of a program."""
    run = engine.run(_with_provider)
    [provider] = run.by_type("pulumi:providers:kubernetes")
    assert provider.inputs["kubeconfig"].startswith("apiVersion: v1") and provider.is_secret("kubeconfig")
    # The SDK expands a dependency on a component into its resources: every step included.
    steps = [c for c in run.by_type("command:remote:Command")]
    assert steps and {c.urn for c in steps} <= provider.dependencies
    assert run.urn("k3s-removals") in provider.dependencies


def test_without_pulumi_kubernetes_the_provider_helper_says_what_to_install(monkeypatch):
    import sys

    from k3s_ha import kubernetes_provider

    monkeypatch.setitem(sys.modules, "pulumi_kubernetes", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'k3s-ha\[kubernetes\]'"):
        kubernetes_provider("k3s", object())
