"""The k3s-ha policies for pulumi_policy: thin wrappers around the pure rules in k3s_rules.py.

Importing this module starts nothing; `__main__.py` builds the PolicyPack (which serves the
policies to the Pulumi CLI and blocks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import k3s_rules as rules
from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

PACK_NAME = "k3s-ha"
ENFORCEMENT = EnforcementLevel.MANDATORY


def plain(value: Any) -> Any:
    """pulumi_policy's props (proxies that raise on unknown values) as plain dicts and lists,
    with `rules.UNKNOWN` where a value is not known yet, so one unknown field (an address,
    a token) never stops a whole policy."""
    if isinstance(value, Mapping):
        result = {}
        for key in list(value):
            try:
                result[key] = plain(value[key])
            except UnknownValueError:
                result[key] = rules.UNKNOWN
        return result
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items = []
        for index in range(len(value)):
            try:
                items.append(plain(value[index]))
            except UnknownValueError:
                items.append(rules.UNKNOWN)
        return items
    return value


def resource_dict(resource: PolicyResource) -> dict:
    """A stack resource as the pure rules take it."""
    return {
        "type": resource.resource_type,
        "name": resource.name,
        "urn": resource.urn,
        "props": plain(resource.props),
        "parent": resource.parent.urn if resource.parent is not None else None,
        "dependencies": [d.urn for d in resource.dependencies],
        "property_dependencies": {k: [d.urn for d in v] for k, v in (resource.property_dependencies or {}).items()},
    }


def _resource_validation(rule: Callable[[str, Mapping[str, Any]], list[str]]):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        props = plain(args.props)
        if not rules.in_cluster(args.urn, props):
            return  # another part of the program: not this pack's business
        for message in rule(args.resource_type, props):
            report_violation(message, None)

    return validate


def _stack_validation(rule: Callable[[list[dict]], list[rules.Violation]]):
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for violation in rule([resource_dict(r) for r in args.resources]):
            report_violation(violation.message, violation.urn)

    return validate


IMDSV2 = ResourceValidationPolicy(
    name="k3s-imdsv2-required",
    description="The cluster's EC2 instances require IMDSv2 session tokens (metadataOptions.httpTokens = required).",
    validate=_resource_validation(rules.imdsv2_required),
    enforcement_level=ENFORCEMENT,
)
ENCRYPTED_VOLUMES = ResourceValidationPolicy(
    name="k3s-encrypted-volumes",
    description="The cluster's EC2 instances declare an encrypted root volume (and encrypt every inline EBS volume).",
    validate=_resource_validation(rules.encrypted_volumes),
    enforcement_level=ENFORCEMENT,
)
CLUSTER_PORTS = ResourceValidationPolicy(
    name="k3s-no-world-open-cluster-ports",
    description="No ingress of the cluster from 0.0.0.0/0 or ::/0 to etcd (2379-2380/tcp), the kubelet (10250/tcp) or "
    "flannel VXLAN (8472/udp).",
    validate=_resource_validation(rules.cluster_ports_not_world_open),
    enforcement_level=ENFORCEMENT,
)
SSH = ResourceValidationPolicy(
    name="k3s-no-world-open-ssh",
    description="No ingress of the cluster from 0.0.0.0/0 or ::/0 to SSH (22/tcp).",
    validate=_resource_validation(rules.ssh_not_world_open),
    enforcement_level=ENFORCEMENT,
)
ODD_SERVERS = StackValidationPolicy(
    name="k3s-odd-server-count",
    description="Each cluster has an odd number of servers (instances tagged k3s-role=server per k3s-cluster, "
    "and <cluster>-server-<i>-start steps): embedded etcd quorum.",
    validate=_stack_validation(rules.odd_server_count),
    enforcement_level=ENFORCEMENT,
)
INIT_FIRST = StackValidationPolicy(
    name="k3s-init-server-starts-first",
    description="Every <cluster>-server-<N>-start (N > 0) and <cluster>-agent-<N>-start depends, directly or "
    "transitively, on <cluster>-server-0-start.",
    validate=_stack_validation(rules.init_server_first),
    enforcement_level=ENFORCEMENT,
)
JOIN_IN_TURN = StackValidationPolicy(
    name="k3s-servers-join-in-turn",
    description="<cluster>-server-<N>-start depends on <cluster>-server-<N-1>-start: one etcd learner at a time.",
    validate=_stack_validation(rules.servers_join_in_turn),
    enforcement_level=ENFORCEMENT,
)

CLUSTER_GROUPS = StackValidationPolicy(
    name="k3s-no-world-open-cluster-groups",
    description="No ingress declared outside the cluster opens a security group of the cluster's machines "
    "(its own, or one given as extraSecurityGroupIds) to 0.0.0.0/0 or ::/0 on SSH or the cluster ports.",
    validate=_stack_validation(rules.cluster_groups_not_world_open),
    enforcement_level=ENFORCEMENT,
)

TOGETHER = StackValidationPolicy(
    name="k3s-no-world-open-together",
    description="The ingress rules of each security group of the cluster's machines do not, taken together, "
    "open SSH or a cluster port to the whole internet (e.g. 0.0.0.0/1 and 128.0.0.0/1).",
    validate=_stack_validation(rules.cluster_groups_not_world_open_together),
    enforcement_level=ENFORCEMENT,
)

POLICIES = [
    IMDSV2,
    ENCRYPTED_VOLUMES,
    CLUSTER_PORTS,
    SSH,
    ODD_SERVERS,
    INIT_FIRST,
    JOIN_IN_TURN,
    CLUSTER_GROUPS,
    TOGETHER,
]
