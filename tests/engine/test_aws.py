"""The AWS side as the engine would receive it: port matrix, instances, zones, load balancer."""

import ipaddress

import pytest
from k3s_ha.aws.machines import NEW_NODES_ONLY
from support import engine
from support.helpers import SECRET_KEYS, config, ingress_rules, stdin_yaml

SG = "aws:ec2/securityGroup:SecurityGroup"
INSTANCE = "aws:ec2/instance:Instance"


def _rules(run):
    """(group name, protocol, from, to, source group name or CIDR) for every ingress rule."""
    out = set()
    for rule in ingress_rules(run):
        i = rule.inputs
        group = i["securityGroupId"][: -len("-id")]
        source = i.get("referencedSecurityGroupId", "")[: -len("-id")] or i.get("cidrIpv4")
        out.add((group, i["ipProtocol"], int(i.get("fromPort", -1)), int(i.get("toPort", -1)), source))
    return out


@pytest.fixture(scope="module")
def dev():
    return engine.run(engine.main_program, config(agents=2, tags={"team": "platform"}), SECRET_KEYS)


@pytest.fixture(scope="module")
def prod():
    cfg = config(
        agents=3,
        loadBalancer=True,
        availabilityZones=["eu-west-1a", "eu-west-1b", "eu-west-1c"],
        amiId="ami-0pinned0000000000",
    )
    return engine.run(engine.main_program, cfg, SECRET_KEYS, stack="prod")


def test_port_matrix_without_load_balancer(dev):
    assert _rules(dev) == {
        ("dev-servers", "tcp", 2379, 2380, "dev-servers"),  # etcd: servers only
        ("dev-nodes", "udp", 8472, 8472, "dev-nodes"),  # VXLAN: cluster nodes only
        ("dev-nodes", "tcp", 10250, 10250, "dev-nodes"),  # kubelet: cluster nodes only
        ("dev-servers", "tcp", 6443, 6443, "dev-nodes"),  # API from the cluster
        ("dev-servers", "tcp", 6443, 6443, "203.0.113.0/24"),  # API from allowed CIDRs
        ("dev-nodes", "tcp", 22, 22, "203.0.113.7/32"),  # SSH from allowed CIDRs
        ("dev-nodes", "tcp", 22, 22, "dev-servers"),  # SSH from servers: removing nodes (issue 10.4)
    }


def test_servers_carry_both_groups_agents_only_the_node_group(dev):
    for r in dev.by_type(INSTANCE):
        groups = {g[: -len("-id")] for g in r.inputs["vpcSecurityGroupIds"]}
        assert groups == ({"dev-nodes", "dev-servers"} if "-server-" in r.name else {"dev-nodes"}), r.name


def test_nothing_is_open_to_the_world_by_default(dev, prod):
    for run in (dev, prod):
        for rule in ingress_rules(run):
            cidr = rule.inputs.get("cidrIpv4")
            if cidr:
                assert ipaddress.ip_network(cidr).prefixlen > 0, rule.name
        assert run.warnings == []


def test_opening_ssh_to_the_world_works_but_warns():
    run = engine.run(engine.main_program, config(sshAllowedCidrs=["0.0.0.0/0"]), SECRET_KEYS)
    assert ("dev-nodes", "tcp", 22, 22, "0.0.0.0/0") in _rules(run)
    assert any("SSH (22) to the whole internet" in w for w in run.warnings)


def test_instances_require_imdsv2_encrypt_disks_and_are_tagged(dev):
    machines = dev.by_type(INSTANCE)
    assert len(machines) == 5
    for r in machines:
        i = r.inputs
        assert i["metadataOptions"]["httpTokens"] == "required"
        assert i["metadataOptions"]["httpPutResponseHopLimit"] == 1
        assert i["rootBlockDevice"]["encrypted"] is True
        assert i["rootBlockDevice"]["volumeType"] == "gp3"
        role = "server" if "-server-" in r.name else "agent"
        assert i["tags"]["k3s-role"] == role
        assert i["tags"]["k3s-cluster"] == "dev"
        assert i["tags"]["team"] == "platform"  # user tags reach every node
        assert i["ami"] == "ami-0a1b2c3d4e5f60718"


def test_a_newly_published_image_never_replaces_nodes(dev, prod):
    for r in dev.by_type(INSTANCE):
        assert r.options["ignoreChanges"] == [*NEW_NODES_ONLY, "volumeTags", 'tags["k3s-ha-ssh-host-key"]'], r.name
    ami_lookups = [args for token, args in dev.calls if token == "aws:ec2/getAmi:getAmi"]
    assert ami_lookups and all(a["owners"] == ["099720109477"] for a in ami_lookups)
    assert "ubuntu-noble-24.04-amd64-server" in ami_lookups[0]["filters"][0]["values"][0]
    # A pinned image is used as given; like the looked-up one it applies to new nodes only
    # (issue 10.2: changing the pin must not replace every node at once).
    for r in prod.by_type(INSTANCE):
        assert r.inputs["ami"] == "ami-0pinned0000000000"
        assert r.options["ignoreChanges"] == [*NEW_NODES_ONLY, "volumeTags", 'tags["k3s-ha-ssh-host-key"]']
    assert not any(token == "aws:ec2/getAmi:getAmi" for token, _ in prod.calls)


def test_servers_are_spread_over_three_zones(dev):
    subnets = {r.name: r for r in dev.by_type("aws:ec2/subnet:Subnet")}
    zones = {n: s.inputs["availabilityZone"] for n, s in subnets.items()}
    assert sorted(zones.values()) == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    server_zones = {zones[r.inputs["subnetId"][: -len("-id")]] for r in dev.by_type(INSTANCE) if "-server-" in r.name}
    assert len(server_zones) == 3


def test_vpc_is_parented_along_the_chain(dev):
    vpc = dev.named("dev-vpc")
    for name in ("dev-public-0", "dev-public-1", "dev-igw"):
        assert (
            next(
                r
                for r in dev.registrations
                if r.name == name and r.type != "aws:ec2/routeTableAssociation:RouteTableAssociation"
            ).parent
            == vpc.urn
        )
    assoc = next(r for r in dev.registrations if r.type.endswith("routeTableAssociation:RouteTableAssociation"))
    assert dev.by_urn(assoc.parent).type == "aws:ec2/subnet:Subnet"


def test_load_balancer_is_the_registration_address(prod):
    lb = prod.by_type("aws:lb/loadBalancer:LoadBalancer")[0]
    assert lb.inputs["loadBalancerType"] == "network"
    assert lb.inputs["internal"] is False
    dns = "prod-api-0123456789.elb.eu-west-1.amazonaws.com"
    attachments = prod.by_type("aws:lb/targetGroupAttachment:TargetGroupAttachment")
    assert sorted(a.inputs["targetId"] for a in attachments) == sorted(
        engine.instance_id(f"prod-server-{i}") for i in range(3)
    )
    tg = prod.by_type("aws:lb/targetGroup:TargetGroup")[0]
    assert tg.inputs["port"] == 6443
    # issue 10.9: servers reach the balancer themselves, so no client IP preservation (a
    # target reaching itself would time out), and in service only once the apiserver answers
    # (401 to an anonymous /readyz), not the supervisor's /ping.
    assert tg.inputs["preserveClientIp"] == "false"
    check = tg.inputs["healthCheck"]
    assert (check["protocol"], check["path"], check["matcher"]) == ("HTTPS", "/readyz", "401")
    assert check["healthyThreshold"] >= 3
    # A leaving server is fenced off from the balancer for longer than two missed checks
    # before it is drained and uninstalled (remove-members.sh).
    grace = int(prod.named("prod-removals").inputs["create"].split("K3S_HA_LB_GRACE_SECONDS=")[1].split()[0])
    assert grace >= check["unhealthyThreshold"] * check["interval"] + 5
    for i in range(3):
        cfg = stdin_yaml(prod, f"prod-server-{i}-start")
        assert dns in cfg["tls-san"]
        if i:
            assert cfg["server"] == f"https://{dns}:6443"
    for i in range(3):
        assert stdin_yaml(prod, f"prod-agent-{i}-start")["server"] == f"https://{dns}:6443"
    assert prod.outputs["apiEndpoint"] == f"https://{dns}:6443"
    assert f"server: https://{dns}:6443" in prod.outputs["kubeconfig"]


def test_api_access_goes_through_the_load_balancer_group(prod):
    rules = _rules(prod)
    assert ("prod-api-lb", "tcp", 6443, 6443, "203.0.113.0/24") in rules
    assert ("prod-servers", "tcp", 6443, 6443, "prod-api-lb") in rules
    assert ("prod-servers", "tcp", 6443, 6443, "203.0.113.0/24") not in rules
    # Nodes reach the internet-facing balancer from their public addresses.
    node_rules = {r for r in rules if r[0] == "prod-api-lb" and r[4].endswith("/32")}
    assert len(node_rules) == 6


def test_without_load_balancer_joins_use_the_init_servers_private_address(dev):
    assert "K3S_HA_LB_GRACE_SECONDS=0 " in dev.named("dev-removals").inputs["create"]
    init_private = dev.outputs["serverPrivateIps"][0]
    for i in (1, 2):
        assert stdin_yaml(dev, f"dev-server-{i}-start")["server"] == f"https://{init_private}:6443"
    init = stdin_yaml(dev, "dev-server-0-start")
    assert init["cluster-init"] is True and "server" not in init
    assert init_private in init["tls-san"]
    assert dev.outputs["serverPublicIps"][0] in init["tls-san"]


def test_every_server_gets_identical_settings_but_the_join_line(prod):
    """K3s refuses a join whose critical settings differ ("critical configuration value
    mismatch"): only the join line and the token's form (the CA hash a join carries) differ."""
    configs = [stdin_yaml(prod, f"prod-server-{i}-start") for i in range(3)]
    common = [
        {**{k: v for k, v in c.items() if k not in ("server", "cluster-init")}, "token": c["token"].rsplit(":", 1)[-1]}
        for c in configs
    ]
    assert common[0] == common[1] == common[2]
    assert common[0]["etcd-snapshot-schedule-cron"] == "0 */12 * * *"
    assert common[0]["write-kubeconfig-mode"] == "0600"


def test_nodes_join_only_once_they_may_reach_the_public_load_balancer(prod):
    for host in ("server-1", "agent-0"):
        assert prod.transitively_depends_on(f"prod-{host}-start", f"prod-{host}-to-lb")
