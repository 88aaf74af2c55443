"""The k3s-ha policy rules as pure functions over plain data (standard library only).

A resource is a mapping with `type`, `name`, `urn`, `props` and, for the stack rules,
`dependencies` (URNs) and optionally `property_dependencies` ({property: [URNs]}).
`props` are plain dicts and lists; a value Pulumi cannot know yet during a preview is
`UNKNOWN` (or one of Pulumi's unknown sentinel strings). A rule never fails on an unknown
value: resource policies run again with every input known before each create or update.

Resource rules take `(resource_type, props)` and return messages; stack rules take the list
of resources and return `Violation`s. `k3s_policies.py` wires them into pulumi_policy.

Scope: the pack guards the cluster, not the whole program it sits in. A rule applies to a
resource of the cluster (`in_cluster`): one tagged `k3s-cluster` or a descendant of a k3s-ha
component. A bastion or web server of a larger program is left alone, unless it opens a
cluster security group to the world (`k3s-no-world-open-cluster-groups`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

INSTANCE = "aws:ec2/instance:Instance"
COMMAND = "command:remote:Command"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
INGRESS_TYPES = (SECURITY_GROUP, SECURITY_GROUP_RULE, INGRESS_RULE)

ROLE_TAG = "k3s-role"
CLUSTER_TAG = "k3s-cluster"
# The components' type tokens (components/k3s_ha/aws/cluster.py, bootstrap/component.py).
COMPONENT_TYPES = frozenset({"k3s-ha:index:K3sCluster", "k3s-ha:index:K3sBootstrap"})

# The bootstrap's start steps, as K3sBootstrap names them: `<cluster>-server-<i>-start`,
# `<cluster>-agent-<i>-start`; server 0 initialises the cluster.
START_STEP = re.compile(r"^(?P<cluster>.+)-(?P<role>server|agent)-(?P<index>\d+)-start$")


class _Unknown:
    """A value that is not known until the update runs."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()

# pulumi_policy.proxy / the engine's sentinels for unknown values of each kind.
UNKNOWN_SENTINELS = frozenset(
    {
        "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",  # boolean
        "3eeb2bf0-c639-47a8-9e75-3b44932eb421",  # number
        "04da6b54-80e4-46f7-96ec-b56ff0331ba9",  # string (and the engine's generic unknown)
        "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",  # array
        "030794c1-ac77-496b-92df-f27374a8bd58",  # asset
        "e48ece36-62e2-4504-bad9-02848725956a",  # archive
        "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",  # object
    }
)


def is_unknown(value: Any) -> bool:
    return value is UNKNOWN or (isinstance(value, str) and value in UNKNOWN_SENTINELS)


def ancestor_types(urn: str | None) -> list[str]:
    """The types of a resource's parents, outermost first, read from its URN:
    `urn:pulumi:<stack>::<project>::<parent type>$...$<type>::<name>` (Pulumi's URN format,
    pulumi/pulumi sdk/go/common/resource/urn.go). A name may contain `::`; the others may not."""
    parts = (urn or "").split("::", 3)
    if len(parts) < 4:
        return []
    return parts[2].split("$")[:-1]


def in_cluster(urn: str | None, props: Mapping[str, Any]) -> bool:
    """A resource of a k3s-ha cluster: created inside a K3sCluster or K3sBootstrap (at any
    depth), or tagged `k3s-cluster` (the component tags its AWS resources so; a program that
    builds its own machines for K3sBootstrap can tag them to opt in)."""
    if COMPONENT_TYPES.intersection(ancestor_types(urn)):
        return True
    tags = props.get("tags") if isinstance(props, Mapping) else None
    return isinstance(tags, Mapping) and CLUSTER_TAG in tags


class Violation(NamedTuple):
    message: str
    urn: str | None = None


# --------------------------------------------------------------------------------------------
# Instances


def imdsv2_required(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """EC2 instances answer only IMDSv2 (session tokens): metadataOptions.httpTokens == "required"."""
    if resource_type != INSTANCE:
        return []
    options = props.get("metadataOptions")
    if is_unknown(options):
        return []
    if not isinstance(options, Mapping):
        return [
            "metadataOptions is not set, so the instance metadata service also answers IMDSv1 "
            'requests; set metadataOptions.httpTokens to "required"'
        ]
    if options.get("httpEndpoint") == "disabled":
        return []  # no metadata service at all
    tokens = options.get("httpTokens")
    if is_unknown(tokens) or tokens == "required":
        return []
    return [
        f"metadataOptions.httpTokens is {tokens!r}: IMDSv1 stays reachable (a pod or SSRF can read "
        'the node\'s credentials without a session token); set it to "required"'
    ]


def encrypted_volumes(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """The root volume (and every EBS volume declared inline) is encrypted."""
    if resource_type != INSTANCE:
        return []
    messages = []
    root = props.get("rootBlockDevice")
    if is_unknown(root):
        pass
    elif not isinstance(root, Mapping):
        messages.append(
            "rootBlockDevice is not set, so the root volume's encryption depends on the image and "
            "the account default; set rootBlockDevice.encrypted to true"
        )
    elif not is_unknown(root.get("encrypted")) and root.get("encrypted") is not True:
        messages.append(
            f"rootBlockDevice.encrypted is {root.get('encrypted')!r}: the root volume holds the etcd "
            "data and the cluster token; set it to true"
        )
    devices = props.get("ebsBlockDevices")
    if isinstance(devices, Sequence) and not isinstance(devices, str):
        for device in devices:
            if (
                isinstance(device, Mapping)
                and not is_unknown(device.get("encrypted"))
                and device.get("encrypted") is not True
            ):
                messages.append(f"EBS volume {device.get('deviceName', '?')} is not encrypted; set encrypted to true")
    return messages


# --------------------------------------------------------------------------------------------
# Security groups


class Port(NamedTuple):
    label: str
    protocol: str  # "tcp" or "udp"
    first: int
    last: int


SSH_PORTS = (Port("SSH", "tcp", 22, 22),)
CLUSTER_PORTS = (
    Port("etcd", "tcp", 2379, 2380),
    Port("kubelet", "tcp", 10250, 10250),
    Port("flannel VXLAN", "udp", 8472, 8472),
)

_PROTOCOLS = {"-1": "all", "all": "all", "tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp"}


class Ingress(NamedTuple):
    protocol: Any  # "all", "tcp", "udp", another string, or UNKNOWN
    first: Any  # int, None (every port) or UNKNOWN
    last: Any
    sources: tuple


def _number(value: Any) -> Any:
    if value is None or is_unknown(value):
        return value
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _protocol(value: Any) -> Any:
    if is_unknown(value):
        return UNKNOWN
    return _PROTOCOLS.get(str(value).lower(), str(value).lower())


def _listed(value: Any) -> tuple:
    if value is None:
        return ()
    if is_unknown(value) or isinstance(value, str):
        return (value,)
    return tuple(value)


def ingress_entries(resource_type: str, props: Mapping[str, Any]) -> Iterator[Ingress]:
    """Every ingress permission a resource grants, whichever of the three AWS shapes it uses."""
    if resource_type == INGRESS_RULE:
        sources = tuple(v for v in (props.get("cidrIpv4"), props.get("cidrIpv6")) if v is not None)
        yield Ingress(
            _protocol(props.get("ipProtocol")), _number(props.get("fromPort")), _number(props.get("toPort")), sources
        )
    elif resource_type == SECURITY_GROUP_RULE:
        if props.get("type") != "ingress":
            return
        yield Ingress(
            _protocol(props.get("protocol")),
            _number(props.get("fromPort")),
            _number(props.get("toPort")),
            _listed(props.get("cidrBlocks")) + _listed(props.get("ipv6CidrBlocks")),
        )
    elif resource_type == SECURITY_GROUP:
        rules = props.get("ingress")
        if rules is None or is_unknown(rules):
            return
        for rule in rules:
            if not isinstance(rule, Mapping):
                continue
            yield Ingress(
                _protocol(rule.get("protocol")),
                _number(rule.get("fromPort")),
                _number(rule.get("toPort")),
                _listed(rule.get("cidrBlocks")) + _listed(rule.get("ipv6CidrBlocks")),
            )


def is_world(cidr: Any) -> bool:
    """0.0.0.0/0, ::/0 or any other block with a zero-length prefix."""
    if not isinstance(cidr, str) or is_unknown(cidr):
        return False
    try:
        return ipaddress.ip_network(cidr.strip(), strict=False).prefixlen == 0
    except ValueError:
        return False


def world_covered(sources: Iterable[Any]) -> list[str]:
    """The sources whose union is the whole IPv4 or IPv6 internet (0.0.0.0/1 and 128.0.0.0/1
    together are 0.0.0.0/0), or [] when it is not."""
    by_version: dict[int, list] = {4: [], 6: []}
    for source in sources:
        if not isinstance(source, str) or is_unknown(source):
            continue
        try:
            network = ipaddress.ip_network(source.strip(), strict=False)
        except ValueError:
            continue
        by_version[network.version].append((source, network))
    for found in by_version.values():
        merged = list(ipaddress.collapse_addresses(n for _, n in found))
        if any(n.prefixlen == 0 for n in merged):
            return [s for s, _ in found]
    return []


def _covers(entry: Ingress, port: Port) -> bool:
    if entry.protocol == "all":
        return True  # every protocol and port, whatever fromPort/toPort say
    if entry.protocol != port.protocol:
        return False
    first = 0 if entry.first is None else entry.first
    last = 65535 if entry.last is None else entry.last
    return first <= port.last and port.first <= last


def world_open(resource_type: str, props: Mapping[str, Any], ports: Iterable[Port]) -> list[str]:
    """Ingress from the whole internet to any of `ports`."""
    ports = tuple(ports)
    messages = []
    for entry in ingress_entries(resource_type, props):
        if any(is_unknown(v) for v in (entry.protocol, entry.first, entry.last)):
            continue
        world = [s for s in entry.sources if is_world(s)]
        if not world:
            continue
        for port in ports:
            if _covers(entry, port):
                span = (
                    "all traffic"
                    if entry.protocol == "all"
                    else f"{entry.protocol} {0 if entry.first is None else entry.first}-"
                    f"{65535 if entry.last is None else entry.last}"
                )
                messages.append(
                    f"{port.label} ({port.protocol} {port.first}"
                    f"{'' if port.first == port.last else f'-{port.last}'}) is open to "
                    f"{', '.join(world)} ({span}); allow only the cluster's security groups "
                    "or narrow CIDRs"
                )
    return messages


def _span(entry: Ingress) -> str:
    if entry.protocol == "all":
        return "all traffic"
    return f"{entry.protocol} {0 if entry.first is None else entry.first}-{65535 if entry.last is None else entry.last}"


def union_world_open(entries: Iterable[Ingress], ports: Iterable[Port]) -> list[str]:
    """Ingress whose sources TOGETHER cover the whole internet for one of `ports`, where no
    single source does (those `world_open` reports): a world-open rule split into smaller
    blocks, in one resource or over several rules of the same security group."""
    entries = [e for e in entries if not any(is_unknown(v) for v in (e.protocol, e.first, e.last))]
    messages = []
    for port in ports:
        covering = [e for e in entries if _covers(e, port)]
        if any(is_world(s) for e in covering for s in e.sources):
            continue
        union = world_covered(s for e in covering for s in e.sources)
        if union:
            messages.append(
                f"{port.label} ({port.protocol} {port.first}{'' if port.first == port.last else f'-{port.last}'}) "
                f"is open to the whole internet through {', '.join(sorted(set(union)))} together; allow only "
                "the cluster's security groups or narrow CIDRs"
            )
    return messages


def ssh_not_world_open(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    entries = list(ingress_entries(resource_type, props))
    return world_open(resource_type, props, SSH_PORTS) + union_world_open(entries, SSH_PORTS)


def cluster_ports_not_world_open(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    entries = list(ingress_entries(resource_type, props))
    return world_open(resource_type, props, CLUSTER_PORTS) + union_world_open(entries, CLUSTER_PORTS)


# --------------------------------------------------------------------------------------------
# Stack rules: server count and bootstrap order


class Step(NamedTuple):
    cluster: str
    role: str
    index: int
    resource: Mapping[str, Any]


def start_steps(resources: Iterable[Mapping[str, Any]]) -> list[Step]:
    """The clusters' start steps (remote commands) by cluster, role and index."""
    steps = []
    for resource in resources:
        if resource.get("type") != COMMAND or not in_cluster(resource.get("urn"), resource.get("props") or {}):
            continue
        match = START_STEP.match(str(resource.get("name", "")))
        if match:
            steps.append(Step(match["cluster"], match["role"], int(match["index"]), resource))
    return sorted(steps, key=lambda s: (s.cluster, s.role, s.index))


def _tags(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    tags = (resource.get("props") or {}).get("tags")
    return tags if isinstance(tags, Mapping) else {}


def odd_server_count(resources: Sequence[Mapping[str, Any]]) -> list[Violation]:
    """Embedded etcd needs an odd number of servers: counted once from the instances tagged
    k3s-role=server (per k3s-cluster tag), once from the `<cluster>-server-<i>-start` steps."""
    violations = []
    instances: dict[str, list[Mapping[str, Any]]] = {}
    for resource in resources:
        if (
            resource.get("type") == INSTANCE
            and _tags(resource).get(ROLE_TAG) == "server"
            and in_cluster(resource.get("urn"), resource.get("props") or {})
        ):
            cluster = _tags(resource).get(CLUSTER_TAG)
            instances.setdefault("" if cluster is None or is_unknown(cluster) else str(cluster), []).append(resource)
    for cluster, members in sorted(instances.items()):
        if len(members) % 2 == 0:
            violations.append(
                Violation(
                    f"cluster {cluster or '(untagged)'!r} has {len(members)} server instances: embedded etcd needs an "
                    "odd number (quorum is n/2+1, so an even count adds no fault tolerance); use 3 or 5"
                )
            )
    starts: dict[str, int] = {}
    for step in start_steps(resources):
        if step.role == "server":
            starts[step.cluster] = starts.get(step.cluster, 0) + 1
    for cluster, count in sorted(starts.items()):
        if count % 2 == 0:
            violations.append(
                Violation(f"cluster {cluster!r} starts {count} servers: embedded etcd needs an odd number; use 3 or 5")
            )
    return violations


def _dependency_urns(resource: Mapping[str, Any]) -> set[str]:
    urns = set(resource.get("dependencies") or ())
    for values in (resource.get("property_dependencies") or {}).values():
        urns.update(values)
    return urns


def transitive_dependencies(resource: Mapping[str, Any], by_urn: Mapping[str, Mapping[str, Any]]) -> set[str]:
    seen: set[str] = set()
    pending = list(_dependency_urns(resource))
    while pending:
        urn = pending.pop()
        if urn in seen:
            continue
        seen.add(urn)
        if urn in by_urn:
            pending.extend(_dependency_urns(by_urn[urn]))
    return seen


def init_server_first(resources: Sequence[Mapping[str, Any]]) -> list[Violation]:
    """Every join (`*-server-N-start`, N > 0) and every `*-agent-N-start` waits, directly or
    through other steps, for the init server's `*-server-0-start`."""
    by_urn = {r["urn"]: r for r in resources if r.get("urn")}
    steps = start_steps(resources)
    inits = {s.cluster: s.resource for s in steps if s.role == "server" and s.index == 0}
    violations = []
    for step in steps:
        if step.role == "server" and step.index == 0:
            continue
        name = step.resource.get("name")
        init = inits.get(step.cluster)
        if init is None:
            violations.append(
                Violation(
                    f"{name} has no {step.cluster}-server-0-start to wait for: the first server must initialise the "
                    "cluster (cluster-init) before anything joins",
                    step.resource.get("urn"),
                )
            )
        elif init.get("urn") not in transitive_dependencies(step.resource, by_urn):
            violations.append(
                Violation(
                    f"{name} does not depend on {init.get('name')}: it could try to join before the first server has "
                    "initialised embedded etcd, and start a second cluster or fail",
                    step.resource.get("urn"),
                )
            )
    return violations


def servers_join_in_turn(resources: Sequence[Mapping[str, Any]]) -> list[Violation]:
    """etcd admits one learner at a time: `*-server-N-start` waits for `*-server-(N-1)-start`."""
    by_urn = {r["urn"]: r for r in resources if r.get("urn")}
    servers: dict[str, dict[int, Mapping[str, Any]]] = {}
    for step in start_steps(resources):
        if step.role == "server":
            servers.setdefault(step.cluster, {})[step.index] = step.resource
    violations = []
    for _cluster, by_index in sorted(servers.items()):
        for index, resource in sorted(by_index.items()):
            previous = by_index.get(index - 1)
            if index == 0 or previous is None:
                continue  # a missing server 0 is init_server_first's to report
            if previous.get("urn") not in transitive_dependencies(resource, by_urn):
                violations.append(
                    Violation(
                        f"{resource.get('name')} does not wait for {previous.get('name')}: parallel joins fail "
                        "(etcd admits one learner at a time, k3s-io/k3s#4335)",
                        resource.get("urn"),
                    )
                )
    return violations


def _dependencies_of(resource: Mapping[str, Any], prop: str) -> set[str]:
    return set((resource.get("property_dependencies") or {}).get(prop) or ())


def cluster_groups(resources: Sequence[Mapping[str, Any]]) -> set[str]:
    """URNs of the security groups that guard a cluster's machines: the cluster's own, and any
    other group its instances are placed in (extraSecurityGroupIds: a program's bastion or
    monitoring group), seen through the instances' vpcSecurityGroupIds dependencies."""
    groups = set()
    for resource in resources:
        props = resource.get("props") or {}
        if not in_cluster(resource.get("urn"), props):
            continue
        if resource.get("type") == SECURITY_GROUP:
            groups.add(resource.get("urn"))
        elif resource.get("type") == INSTANCE:
            groups |= _dependencies_of(resource, "vpcSecurityGroupIds") | _dependencies_of(resource, "securityGroups")
    groups.discard(None)
    return groups


def cluster_groups_not_world_open(resources: Sequence[Mapping[str, Any]]) -> list[Violation]:
    """What the cluster-scoped resource rules cannot see: ingress declared outside the cluster
    (a larger program's own group or rule) that opens a group guarding the cluster's machines
    to the world on SSH or the cluster ports."""
    guarded = cluster_groups(resources)
    by_urn = {r.get("urn"): r for r in resources}
    violations = []
    for resource in resources:
        props = resource.get("props") or {}
        if in_cluster(resource.get("urn"), props):
            continue  # the resource policies judge the cluster's own resources
        kind = resource.get("type")
        if kind == SECURITY_GROUP and resource.get("urn") in guarded:
            target = resource
        elif kind in (INGRESS_RULE, SECURITY_GROUP_RULE):
            targets = _dependencies_of(resource, "securityGroupId") & guarded
            if not targets:
                continue
            target = by_urn.get(min(targets), {"name": min(targets)})
        else:
            continue
        for message in world_open(kind, props, SSH_PORTS + CLUSTER_PORTS):
            violations.append(
                Violation(
                    f"{resource.get('name')} opens {target.get('name')}, which guards a k3s-ha cluster's machines: "
                    + message,
                    resource.get("urn"),
                )
            )
    return violations


def cluster_groups_not_world_open_together(resources: Sequence[Mapping[str, Any]]) -> list[Violation]:
    """The union of every ingress rule of each security group that guards a cluster's machines,
    per port: rules that each open a part of the internet (sshAllowedCidrs of 0.0.0.0/1 and
    128.0.0.0/1: two rules) may together open all of it, which no rule shows alone."""
    guarded = cluster_groups(resources)
    entries: dict[str, list[tuple[Ingress, Mapping[str, Any]]]] = {urn: [] for urn in guarded}
    for resource in resources:
        kind, props = resource.get("type"), resource.get("props") or {}
        if kind == SECURITY_GROUP and resource.get("urn") in guarded:
            targets = {resource.get("urn")}
        elif kind in (INGRESS_RULE, SECURITY_GROUP_RULE):
            targets = _dependencies_of(resource, "securityGroupId") & guarded
        else:
            continue
        for entry in ingress_entries(kind, props):
            for target in targets:
                entries[target].append((entry, resource))
    by_urn = {r.get("urn"): r for r in resources}
    violations = []
    for group, found in sorted(entries.items()):
        rules = {id(r): r for _, r in found}
        if len(rules) < 2:
            continue  # one resource alone: the resource rules judge it
        for message in union_world_open([e for e, _ in found], SSH_PORTS + CLUSTER_PORTS):
            name = (by_urn.get(group) or {}).get("name", group)
            violations.append(Violation(f"{name}, which guards a k3s-ha cluster's machines: {message}", group))
    return violations


RESOURCE_RULES = {
    "k3s-imdsv2-required": imdsv2_required,
    "k3s-encrypted-volumes": encrypted_volumes,
    "k3s-no-world-open-cluster-ports": cluster_ports_not_world_open,
    "k3s-no-world-open-ssh": ssh_not_world_open,
}
STACK_RULES = {
    "k3s-odd-server-count": odd_server_count,
    "k3s-init-server-starts-first": init_server_first,
    "k3s-servers-join-in-turn": servers_join_in_turn,
    "k3s-no-world-open-cluster-groups": cluster_groups_not_world_open,
    "k3s-no-world-open-together": cluster_groups_not_world_open_together,
}


def evaluate(resources: Sequence[Mapping[str, Any]]) -> dict[str, list[Violation]]:
    """Every rule over plain resources: {policy name: violations}, empty lists included. The
    resource rules see the cluster's resources only, as the pack's wiring does."""
    results: dict[str, list[Violation]] = {name: [] for name in [*RESOURCE_RULES, *STACK_RULES]}
    for resource in resources:
        if not in_cluster(resource.get("urn"), resource.get("props") or {}):
            continue
        for name, rule in RESOURCE_RULES.items():
            for message in rule(resource.get("type", ""), resource.get("props") or {}):
                results[name].append(Violation(message, resource.get("urn")))
    for name, stack_rule in STACK_RULES.items():
        results[name].extend(stack_rule(resources))
    return results
