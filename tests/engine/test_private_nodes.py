"""privateNodes (issue 19, item 1): nodes in private subnets of the VPC k3s-ha creates, NAT
gateways for their egress, and a bastion k3s-ha creates that Pulumi's SSH hops through."""

import ipaddress

import pytest
from support import engine
from support.helpers import SECRET_KEYS, config, ingress_rules, refuse

INSTANCE = "aws:ec2/instance:Instance"
SUBNET = "aws:ec2/subnet:Subnet"
NAT = "aws:ec2/natGateway:NatGateway"
EIP = "aws:ec2/eip:Eip"
ROUTES = "aws:ec2/routeTable:RouteTable"
ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"
NEW_TYPES = (NAT, EIP)


def _id(value: str) -> str:
    """The resource name behind a mock id (`<name>-id`)."""
    return value[: -len("-id")]


def _nodes(run):
    return [r for r in run.by_type(INSTANCE) if r.name != "dev-bastion"]


def _rules(run):
    out = set()
    for rule in ingress_rules(run):
        i = rule.inputs
        source = _id(i.get("referencedSecurityGroupId", "-id")) or i.get("cidrIpv4")
        out.add((rule.name, _id(i["securityGroupId"]), int(i["fromPort"]), source))
    return out


@pytest.fixture(scope="module")
def default():
    return engine.run(engine.main_program, config(agents=2, loadBalancer=True), SECRET_KEYS)


@pytest.fixture(scope="module")
def per_zone():
    return engine.run(engine.main_program, config(agents=2, loadBalancer=True, privateNodes=True), SECRET_KEYS)


@pytest.fixture(scope="module")
def single():
    cfg = config(agents=2, loadBalancer=True, loadBalancerInternal=True, privateNodes=True, natGateways="single")
    return engine.run(engine.main_program, cfg, SECRET_KEYS)


def test_no_node_asks_for_a_public_ip_and_every_node_is_in_a_private_subnet(per_zone, single):
    for run in (per_zone, single):
        subnets = {r.name: r for r in run.by_type(SUBNET)}
        nodes = _nodes(run)
        assert len(nodes) == 5
        for node in nodes:
            assert node.inputs["associatePublicIpAddress"] is False, node.name
            subnet = subnets[_id(node.inputs["subnetId"])]
            assert subnet.name.startswith("dev-private-"), node.name
            assert subnet.inputs["mapPublicIpOnLaunch"] is False
        # Servers still spread over the three zones.
        zones = {subnets[_id(n.inputs["subnetId"])].inputs["availabilityZone"] for n in nodes if "-server-" in n.name}
        assert len(zones) == 3


def test_pulumi_reaches_the_nodes_on_their_private_addresses(per_zone):
    for host in ("server-0", "server-2", "agent-1"):
        connection = per_zone.named(f"dev-{host}-start").inputs["connection"]
        assert connection["host"] == per_zone.named(f"dev-{host}").outputs["privateIp"]


def test_the_public_subnets_stay_as_they_are_and_private_ones_take_the_upper_half(default, per_zone):
    def public(run):
        return {r.name: (r.inputs, r.parent) for r in run.by_type(SUBNET) if r.name.startswith("dev-public-")}

    assert public(per_zone) == public(default)  # same names, CIDRs and parents: nothing replaced
    vpc = ipaddress.ip_network("10.0.0.0/16")
    upper = list(vpc.subnets(prefixlen_diff=1))[1]
    private = [r for r in per_zone.by_type(SUBNET) if r.name.startswith("dev-private-")]
    assert len(private) == 3
    public_cidrs = [ipaddress.ip_network(i["cidrBlock"]) for i, _ in public(per_zone).values()]
    for subnet in private:
        cidr = ipaddress.ip_network(subnet.inputs["cidrBlock"])
        assert cidr.subnet_of(upper) and not any(cidr.overlaps(p) for p in public_cidrs), subnet.name
        assert subnet.parent == per_zone.urn("dev-vpc")


def test_one_nat_gateway_per_zone_each_with_its_own_elastic_ip_in_a_public_subnet(per_zone):
    nats = per_zone.by_type(NAT)
    assert sorted(n.name for n in nats) == ["dev-nat-0", "dev-nat-1", "dev-nat-2"]
    eips = {r.name: r for r in per_zone.by_type(EIP)}
    for nat in nats:
        assert nat.inputs["allocationId"] == f"eipalloc-{nat.name}"
        assert eips[nat.name].inputs["domain"] == "vpc"
        subnet = nat.inputs["subnetId"]
        assert _id(subnet) == nat.name.replace("nat", "public")
        # Parented along the chain, and after the internet gateway (pulumi-aws NatGateway docs).
        assert per_zone.by_urn(nat.parent).name == _id(subnet)
        assert per_zone.urn("dev-igw") in nat.dependencies


def test_a_single_nat_gateway_serves_every_zone(single):
    assert [n.name for n in single.by_type(NAT)] == ["dev-nat-0"]
    assert [e.name for e in single.by_type(EIP)] == ["dev-nat-0"]


@pytest.mark.parametrize("layout", ["per_zone", "single"])
def test_private_route_tables_send_the_default_route_to_a_nat_gateway(layout, request):
    run = request.getfixturevalue(layout)
    tables = [r for r in run.by_type(ROUTES) if r.name.startswith("dev-private-")]
    assert len(tables) == 3
    for table in tables:
        index = table.name.rsplit("-", 1)[1]
        [route] = table.inputs["routes"]
        assert route["cidrBlock"] == "0.0.0.0/0" and "gatewayId" not in route
        assert _id(route["natGatewayId"]) == (f"dev-nat-{index}" if layout == "per_zone" else "dev-nat-0")
        assert run.by_urn(table.parent).name == table.name  # its subnet
        [association] = [a for a in run.by_type(ASSOCIATION) if a.parent == table.urn]
        assert _id(association.inputs["subnetId"]) == table.name
        assert _id(association.inputs["routeTableId"]) == table.name


def test_the_bastion_is_pinned_in_the_proxy_and_launched_like_a_node(per_zone):
    [bastion] = [r for r in per_zone.by_type(INSTANCE) if r.name == "dev-bastion"]
    i = bastion.inputs
    assert i["instanceType"] == "t3.micro"
    assert i["associatePublicIpAddress"] is True
    assert _id(i["subnetId"]) == "dev-public-0"
    assert i["metadataOptions"]["httpTokens"] == "required"
    assert i["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert i["rootBlockDevice"]["encrypted"] is True and i["rootBlockDevice"]["volumeType"] == "gp3"
    assert {_id(g) for g in i["vpcSecurityGroupIds"]} == {"dev-bastion"}
    assert "userData" in bastion.secret_paths
    key = engine.standin_public_key("dev-bastion-host-key").strip()
    assert i["tags"]["k3s-ha-ssh-host-key"] == key
    for step in ("dev-server-0-start", "dev-agent-1-start", "dev-server-1-install"):
        proxy = per_zone.named(step).inputs["connection"]["proxy"]
        assert proxy["host"] == bastion.outputs["publicIp"]
        assert proxy["hostKey"] == key
    assert per_zone.outputs["bastionPublicIp"] == bastion.outputs["publicIp"]
    assert per_zone.outputs["bastionHostKey"] == key


def test_ssh_reaches_the_bastion_from_the_allowed_cidrs_and_the_nodes_only_from_it(per_zone):
    ssh = {(group, source) for _, group, port, source in _rules(per_zone) if port == 22}
    assert ssh == {
        ("dev-bastion", "203.0.113.7/32"),
        ("dev-nodes", "dev-bastion"),
        ("dev-nodes", "dev-servers"),  # the servers' SSH for node removal stays
    }
    assert not any(group == "dev-bastion" for _, group, port, _ in _rules(per_zone) if port != 22)


def test_an_internet_facing_balancer_admits_the_nat_addresses_and_nodes_wait_for_them(per_zone):
    [lb] = per_zone.by_type("aws:lb/loadBalancer:LoadBalancer")
    assert lb.inputs["internal"] is False
    assert sorted(_id(s) for s in lb.inputs["subnets"]) == ["dev-public-0", "dev-public-1", "dev-public-2"]
    to_lb = {(name, source) for name, group, _, source in _rules(per_zone) if group == "dev-api-lb"}
    nat_ips = {e.name: e.outputs["publicIp"] for e in per_zone.by_type(EIP)}
    assert {s for n, s in to_lb if n.startswith("dev-nat-")} == {f"{ip}/32" for ip in nat_ips.values()}
    assert not any(n.startswith(("dev-server-", "dev-agent-")) for n, _ in to_lb)  # no per-node rules
    for host in ("server-0", "server-1", "agent-0"):
        for index in range(3):
            assert per_zone.transitively_depends_on(f"dev-{host}-start", f"dev-nat-{index}-to-lb")


def test_every_node_step_waits_for_the_routes_to_the_nat_gateways(per_zone):
    """A node's first steps download K3s: they wait until its subnet routes to a NAT gateway
    that exists (an instance itself depends only on its subnet)."""
    associations = [a.urn for a in per_zone.by_type(ASSOCIATION) if a.name.startswith("dev-private-")]
    assert len(associations) == 3
    for step in ("dev-server-0-install", "dev-server-1-start", "dev-agent-0-install"):
        assert set(associations) <= set(per_zone.named(step).dependencies), step


def test_an_internal_balancer_goes_in_the_private_subnets(single):
    [lb] = single.by_type("aws:lb/loadBalancer:LoadBalancer")
    assert lb.inputs["internal"] is True
    assert sorted(_id(s) for s in lb.inputs["subnets"]) == ["dev-private-0", "dev-private-1", "dev-private-2"]
    assert not [r for r in ingress_rules(single) if r.name.endswith("-to-lb")]


def test_the_default_registers_no_nat_no_bastion_and_no_private_subnet(default):
    names = {(r.type, r.name) for r in default.registrations}
    assert not [n for n in names if n[0] in NEW_TYPES or "private" in n[1] or "bastion" in n[1]]
    assert default.outputs["bastionPublicIp"] is None and default.outputs["bastionHostKey"] is None
    explicit = engine.run(
        engine.main_program, config(agents=2, loadBalancer=True, privateNodes=False, natGateways="single"), SECRET_KEYS
    )

    def shape(run):
        return {r.urn: (r.parent, r.inputs, r.dependencies) for r in run.registrations}

    assert shape(explicit) == shape(default)


def test_private_nodes_in_an_existing_vpc_are_refused_with_the_way_to_do_it():
    error = refuse(privateNodes=True, vpcId="vpc-0123456789abcdef0", subnetIds=["subnet-0aaaaaaaaaaaaaaa1"])
    assert error.field == "privateNodes / private_nodes"
    assert "put nodes in your private subnets with subnetIds and give bastionHost" in error.fix


def test_a_bastion_host_with_private_nodes_is_refused():
    error = refuse(privateNodes=True, bastionHost="203.0.113.10")
    assert error.field == "bastionHost / bastion_host"
    assert "k3s-ha creates the bastion" in error.problem and "unset bastionHost" in error.fix


@pytest.mark.parametrize("value", ["perzone", "none", "two"])
def test_a_nat_layout_other_than_per_zone_or_single_is_refused(value):
    error = refuse(privateNodes=True, natGateways=value)
    assert error.field == "natGateways / nat_gateways"
    assert "perZone" in error.fix and "single" in error.fix


def test_private_nodes_without_an_internet_facing_balancer_warn_that_the_api_is_inside_the_vpc(single):
    assert any("reachable only inside the VPC" in w for w in single.warnings)
