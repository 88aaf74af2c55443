"""The floor: a bare Pulumi program that registers what the project registers, and nothing else.

Same resource types and counts, same parents, same input shapes (the same ~13 kB command
texts, the same dependencies, options and secrets), the same invokes and exports, and an
Output-valued input wherever the real value only exists at deploy time (addresses, ids,
tokens, a node's name printed by an earlier step). What it leaves out is the component: no
validation, no per-node helpers, no Output built twice: one `apply` per distinct deploy-time
value, shared by every step that uses it.

The network, machines (each with its SSH host key: a tls key in its user data, pinned in
every connection to it) and tokens are written out below. The remote steps are replayed from
a *shape* (`shape_of`) taken from a recorded run of the project at the same size, so the
floor keeps step with the bootstrap as steps are added: every command is registered plainly
with its recorded text, stdin, dependencies and options. `run.py` checks that both programs
register the same resources by type, make the same invokes and have the same dependency edges.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_command as command
import pulumi_random as random
import pulumi_tls as tls
import yaml

COMMAND = "command:remote:Command"
INSTANCE = "aws:ec2/instance:Instance"
PASSWORD = "random:index/randomPassword:RandomPassword"
HOST_KEY_TAG = "k3s-ha-ssh-host-key"  # as components/k3s_ha/aws/host_keys.py
# Instance inputs a running machine keeps (components/k3s_ha/aws/machines.py NEW_NODES_ONLY).
NEW_NODES_ONLY = [
    "ami",
    "keyName",
    "subnetId",
    "availabilityZone",
    "privateIp",
    "associatePublicIpAddress",
    "instanceType",
    "userData",
]


def _short(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def shape_of(registrations) -> dict:
    """What the floor needs of a recorded run: the remote steps, with long texts stored once."""
    texts: list[str] = []
    index: dict[str, int] = {}

    def text(value):
        if value is None:
            return None
        if value not in index:
            index[value] = len(texts)
            texts.append(value)
        return index[value]

    steps = []
    for r in registrations:
        if r.type != COMMAND:
            continue
        deps = {k: sorted(_short(u) for u in v) for k, v in r.property_dependencies.items()}
        implied = set().union(*map(set, deps.values())) if deps else set()
        steps.append(
            {
                "name": r.name,
                "host": deps["connection"][0],
                "triggers": deps.get("triggers", [None])[0] if r.inputs.get("triggers") else None,
                "create": [text(r.inputs.get("create")), deps.get("create", [])],
                "update": [text(r.inputs.get("update")), deps.get("update", [])],
                "delete": [text(r.inputs.get("delete")), deps.get("delete", [])],
                "stdin": [text(r.inputs.get("stdin")), deps.get("stdin", [])],
                "stdin_secret": r.is_secret("stdin"),
                "after": sorted({_short(u) for u in r.dependencies} - implied),
                "timeouts": r.options["customTimeouts"],
                "secret_output": "stdout" in r.options["additionalSecretOutputs"],
                "logging": r.inputs.get("logging"),
            }
        )
    # In dependency order, so the floor registers them in one plain loop.
    done = {r.name for r in registrations if r.type != COMMAND}
    ordered = []
    while steps:
        ready = [s for s in steps if all(d in done for d in _needs(s))]
        if not ready:
            raise ValueError("the recorded remote steps have a dependency cycle")
        ordered += ready
        done.update(s["name"] for s in ready)
        steps = [s for s in steps if s["name"] not in done]
    return {"texts": texts, "steps": ordered}


def _needs(step) -> list[str]:
    return [
        step["host"],
        *step["after"],
        *step["create"][1],
        *step["update"][1],
        *step["delete"][1],
        *step["stdin"][1],
    ]


def program(shape: dict) -> dict:
    config = pulumi.Config()
    servers, agents = config.require_int("servers"), config.require_int("agents")
    ssh_key = config.require_secret("sshPrivateKey")
    tags = {"k3s-cluster": "dev"}

    named: dict[str, pulumi.Resource] = {}  # what a replayed step may depend on, by name
    cluster = pulumi.ComponentResource("k3s-ha:index:K3sCluster", "dev", {})
    in_cluster = pulumi.ResourceOptions(parent=cluster)
    vpc = named["dev-vpc"] = aws.ec2.Vpc(
        "dev-vpc",
        cidr_block="10.0.0.0/16",
        enable_dns_hostnames=True,
        enable_dns_support=True,
        tags={**tags, "Name": "dev-vpc"},
        opts=in_cluster,
    )
    in_vpc = pulumi.ResourceOptions(parent=vpc)
    key = named["dev-ssh"] = aws.ec2.KeyPair(
        "dev-ssh", public_key=config.require("sshPublicKey"), tags=tags, opts=in_cluster
    )
    zones = aws.get_availability_zones_output(state="available", opts=pulumi.InvokeOptions(parent=cluster)).names
    igw = aws.ec2.InternetGateway("dev-igw", vpc_id=vpc.id, tags={**tags, "Name": "dev-igw"}, opts=in_vpc)
    routes = aws.ec2.RouteTable(
        "dev-public",
        vpc_id=vpc.id,
        tags={**tags, "Name": "dev-public"},
        opts=in_vpc,
        routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
    )
    subnets = []
    for i in range(3):
        subnet = aws.ec2.Subnet(
            f"dev-public-{i}",
            vpc_id=vpc.id,
            cidr_block=f"10.0.{16 * i}.0/20",
            availability_zone=zones.apply(lambda names, i=i: names[i]),
            map_public_ip_on_launch=True,
            tags={**tags, "Name": f"dev-public-{i}"},
            opts=in_vpc,
        )
        aws.ec2.RouteTableAssociation(
            f"dev-public-{i}", subnet_id=subnet.id, route_table_id=routes.id, opts=pulumi.ResourceOptions(parent=subnet)
        )
        subnets.append(subnet)
        named[f"dev-public-{i}"] = subnet

    groups = {}
    for g, description in (
        ("nodes", "K3s cluster nodes (servers and agents)"),
        ("servers", "K3s servers (API and embedded etcd)"),
    ):
        group = aws.ec2.SecurityGroup(
            f"dev-{g}", description=description, vpc_id=vpc.id, tags={**tags, "Name": f"dev-{g}"}, opts=in_cluster
        )
        aws.vpc.SecurityGroupEgressRule(
            f"dev-{g}-egress",
            security_group_id=group.id,
            ip_protocol="-1",
            cidr_ipv4="0.0.0.0/0",
            description="outbound: K3s download, images, AWS APIs",
            opts=pulumi.ResourceOptions(parent=group),
        )
        groups[g] = named[f"dev-{g}"] = group
    nodes, srv = groups["nodes"], groups["servers"]
    for name, group, proto, lo, hi, desc, source, cidr in (
        ("dev-vxlan", nodes, "udp", 8472, 8472, "flannel VXLAN between nodes", nodes, None),
        ("dev-kubelet", nodes, "tcp", 10250, 10250, "kubelet between nodes", nodes, None),
        ("dev-etcd", srv, "tcp", 2379, 2380, "embedded etcd between servers", srv, None),
        ("dev-api-nodes", srv, "tcp", 6443, 6443, "API/supervisor from nodes", nodes, None),
        ("dev-ssh-from-servers", nodes, "tcp", 22, 22, "SSH from servers: node removal", srv, None),
        ("dev-ssh-0", nodes, "tcp", 22, 22, "SSH from 203.0.113.7/32", None, "203.0.113.7/32"),
        ("dev-api-0", srv, "tcp", 6443, 6443, "API from 203.0.113.0/24", None, "203.0.113.0/24"),
    ):
        named[name] = aws.vpc.SecurityGroupIngressRule(
            name,
            security_group_id=group.id,
            ip_protocol=proto,
            from_port=lo,
            to_port=hi,
            referenced_security_group_id=source.id if source else None,
            cidr_ipv4=cidr,
            description=desc,
            opts=pulumi.ResourceOptions(parent=group),
        )

    pinned: dict[str, pulumi.Output] = {}  # per machine: the host key its connections pin

    def machines(role: str, count: int, group_ids: list) -> list[aws.ec2.Instance]:
        ami = aws.ec2.get_ami_output(
            owners=["099720109477"],
            most_recent=True,
            opts=pulumi.InvokeOptions(parent=cluster),
            filters=[
                aws.ec2.GetAmiFilterArgs(
                    name="name", values=["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"]
                ),
                aws.ec2.GetAmiFilterArgs(name="virtualization-type", values=["hvm"]),
            ],
        ).id
        out = []
        for i in range(count):
            node_tags = {**tags, "Name": f"dev-{role}-{i}", "k3s-role": role}
            # The node's SSH host key, installed by cloud-init and recorded in a creation tag.
            host_key = tls.PrivateKey(
                f"dev-{role}-{i}-host-key", algorithm="ED25519", opts=pulumi.ResourceOptions(parent=cluster)
            )
            public = host_key.public_key_openssh.apply(str.strip)
            user_data = pulumi.Output.secret(
                pulumi.Output.all(host_key.private_key_openssh, public).apply(
                    lambda v: (
                        "#cloud-config\n"
                        + yaml.safe_dump(
                            {"ssh_keys": {"ed25519_private": v[0], "ed25519_public": v[1]}},
                            sort_keys=True,
                            default_flow_style=False,
                        )
                    )
                )
            )
            vm = aws.ec2.Instance(
                f"dev-{role}-{i}",
                ami=ami,
                instance_type="t3.medium",
                subnet_id=subnets[i % 3].id,
                vpc_security_group_ids=group_ids,
                key_name=key.key_name,
                associate_public_ip_address=True,
                user_data=user_data,
                metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                    http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
                ),
                root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                    encrypted=True, volume_type="gp3", volume_size=30, delete_on_termination=True
                ),
                tags={**node_tags, HOST_KEY_TAG: public},
                volume_tags=node_tags,
                opts=pulumi.ResourceOptions(
                    parent=cluster, ignore_changes=[*NEW_NODES_ONLY, f'tags["{HOST_KEY_TAG}"]']
                ),
            )
            named[f"dev-{role}-{i}"] = vm
            pinned[f"dev-{role}-{i}"] = vm.tags.apply(lambda t: (t or {}).get(HOST_KEY_TAG))
            out.append(vm)
        return out

    server_vms = machines("server", servers, [nodes.id, srv.id])
    agent_vms = machines("agent", agents, [nodes.id])

    bootstrap = pulumi.ComponentResource("k3s-ha:index:K3sBootstrap", "dev", {}, in_cluster)
    in_bootstrap = pulumi.ResourceOptions(parent=bootstrap)
    for n in ("token", "agent-token"):
        named[f"dev-{n}"] = random.RandomPassword(f"dev-{n}", length=48, special=False, upper=False, opts=in_bootstrap)

    # The remote steps. A deploy-time value (a text that holds a token, an address or an
    # earlier step's output) is one Output per distinct value and dependency set, shared.
    missing = {d for s in shape["steps"] for d in _needs(s)} - named.keys() - {s["name"] for s in shape["steps"]}
    if missing:
        raise ValueError(
            f"the project's steps depend on {sorted(missing)}, which benchmarks/floor.py does not register"
        )
    texts = shape["texts"]
    values: dict[tuple, pulumi.Output] = {}

    def value(ref, secret=False):
        idx, deps = ref
        if idx is None:
            return None
        if not deps:
            return pulumi.Output.secret(texts[idx]) if secret else texts[idx]
        k = (idx, tuple(deps), secret)
        if k not in values:
            after = named[deps[0]].urn if len(deps) == 1 else pulumi.Output.all(*[named[d].urn for d in deps])
            out = after.apply(lambda _, t=texts[idx]: t)
            values[k] = pulumi.Output.secret(out) if secret else out
        return values[k]

    for s in shape["steps"]:  # already in dependency order
        vm = named[s["host"]]
        t = s["timeouts"]
        named[s["name"]] = command.remote.Command(
            s["name"],
            connection=command.remote.ConnectionArgs(
                host=vm.public_ip,
                host_key=pinned[s["host"]],
                user="ubuntu",
                private_key=ssh_key,
                dial_error_limit=20,
                per_dial_timeout=10,
            ),
            create=value(s["create"]),
            update=value(s["update"]),
            delete=value(s["delete"]),
            stdin=value(s["stdin"], s["stdin_secret"]),
            triggers=[named[s["triggers"]].id] if s["triggers"] else None,
            logging=s["logging"],
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(
                parent=bootstrap,
                depends_on=[named[d] for d in s["after"]],
                custom_timeouts=pulumi.CustomTimeouts(
                    create=t["create"] or None, update=t["update"] or None, delete=t["delete"] or None
                ),
                additional_secret_outputs=["stdout", "stderr"] if s["secret_output"] else None,
            ),
        )

    init = server_vms[0]
    reader = next(named[s["name"]] for s in shape["steps"] if s["secret_output"])
    exports = {
        "kubeconfig": pulumi.Output.secret(
            pulumi.Output.all(reader.stdout, init.public_ip).apply(
                lambda v: v[0].replace("https://127.0.0.1:6443", f"https://{v[1]}:6443")
            )
        ),
        "apiEndpoint": pulumi.Output.concat("https://", init.public_ip, ":6443"),
        "serverPublicIps": pulumi.Output.all(*[m.public_ip for m in server_vms]),
        "serverPrivateIps": pulumi.Output.all(*[m.private_ip for m in server_vms]),
        "agentPublicIps": pulumi.Output.all(*[m.public_ip for m in agent_vms]),
        "agentPrivateIps": pulumi.Output.all(*[m.private_ip for m in agent_vms]),
    }
    for name, v in exports.items():  # as __main__.py does
        pulumi.export(name, v)
    return exports
