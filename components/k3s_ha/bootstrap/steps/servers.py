"""Servers, in run order: the cluster's init step, the first server's start, then the others
join one at a time.

Step 0, the init step (`<name>-init`): runs once in the cluster's life, on the first server.
It starts the cluster with `cluster-init` (embedded etcd) and prints the cluster CA's hash and
that it created the cluster; on a cluster made before this step existed it only reads the
hash. Every input is in ignore_changes, so neither a new config nor a new first server ever
runs it again: its stdout is the cluster's identity, kept in the state, and the one value a
later step can rely on that no node can change (issue 18.2).
Step 1: the first server's start, always with K3S_HA_CLUSTER_INIT=never and the CA hash: a
rebuilt first server joins through a peer that answers (the registration address, or the next
servers, which start after it and so are the running ones) and presents this cluster's CA, and
fails with a clear message when none does.
Step 2: the other servers join one at a time, with the secure token K10<CA hash>::server:...,
so K3s refuses a registration address that presents another CA before it sends the token.
etcd admits one learner at a time and parallel joins fail (k3s-io/k3s#4335, #7000), so each
join depends on the previous server's start, and that start only finishes once the node is
Ready, an etcd voter and /readyz answers ok.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from ... import ports
from .. import node_config
from ..contracts import StartServer
from ..plan import BootstrapPlan
from ..remote import Node, present, run_script


@dataclass(frozen=True)
class ClusterIdentity:
    """What the init step reported: the cluster CA's SHA-256 and whether the step created the
    cluster (then NEW_CLUSTER_DEFAULTS apply, node_config.cluster_settings)."""

    step: command.remote.Command
    ca_hash: pulumi.Output[str]
    created: pulumi.Output[bool]


# Every input of the init step (pulumi-command's remote Command): none may ever run it again.
INIT_STEP_INPUTS = (
    "connection",
    "create",
    "update",
    "delete",
    "stdin",
    "environment",
    "triggers",
    "logging",
    "addPreviousOutputInEnv",
)


def secret_server_config_yaml(
    plan: BootstrapPlan,
    join_address: pulumi.Input[str] | None,
    created: pulumi.Input[bool],
    ca_hash: pulumi.Input[str] | None = None,
) -> pulumi.Output[str]:
    """A server's stdin (secret): its config.yaml, then registries.yaml when one is given, then
    the manifests when there are any. The
    same text for every server that joins, so build it once and pass it to each (`config=`).
    `created`: the cluster was made by the init step (its defaults apply); `ca_hash`: the
    cluster CA's hash, which a joining server's token carries."""
    # Output.all unwraps each argument deeply itself (Output.from_input): wrapping one in
    # from_input first only adds an apply.
    config = pulumi.Output.all(
        plan.token,
        plan.agent_token,
        pulumi.Output.all(*plan.tls_sans),
        join_address,
        plan.server_extra,
        plan.registries,
        created,
        ca_hash,
        plan.server_manifests,
    ).apply(
        lambda values: node_config.with_registries(
            node_config.render_server_config_yaml(
                token=values[0],
                agent_token=values[1],
                tls_sans=values[2],
                join_address=values[3],
                extra=node_config.cluster_settings(values[4], created=values[6]),
                ca_hash=values[7],
            ),
            values[5],
            values[8],
        )
    )
    return pulumi.Output.secret(config)


def start_server(
    plan: BootstrapPlan,
    node: Node,
    *,
    config: pulumi.Output[str],
    after: Sequence[pulumi.Resource],
    parent: pulumi.Resource,
    peers: pulumi.Input[str] | None = None,
    ca_hash: pulumi.Input[str] | None = None,
    first: bool = False,
) -> command.remote.Command:
    """`config`: the node's `secret_server_config_yaml`. `peers` and `ca_hash` (first server
    only): space-separated addresses to probe when it has no cluster data. If one answers and
    presents this cluster's CA (`ca_hash`), this is a rebuilt first server and the script joins
    it instead of splitting the cluster in two (k3s-ansible#269)."""
    call = StartServer(
        **plan.start_fields("server"),
        peers=peers,
        machine=node.replace_on if first else None,
        cluster_init="never" if first else None,
        ca_hash=ca_hash,
        join_url=None if first else pulumi.Output.from_input(plan.registration_address).apply(ports.api_url),
    )
    return run_script(
        f"{plan.name}-{node.name}-start",
        node,
        call,
        parent=parent,
        depends_on=after,
        stdin=config,
        replace_with_machine=not first,
    )


# Peers probed before cluster-init: the registration address and the next two servers. Not
# all servers, so scaling 3 -> 5 leaves this step's inputs untouched.
PEERS_PROBED = 2


def _peers(plan: BootstrapPlan, node: Node, others: Sequence[Node]) -> pulumi.Output[str]:
    candidates = [plan.registration_address, *(n.private_address for n in others[:PEERS_PROBED])]
    # Without a load balancer the registration address is this server itself: drop it.
    return pulumi.Output.all(node.private_address, *candidates).apply(
        lambda v: " ".join(a for a in dict.fromkeys(v[1:]) if a and a != v[0])
    )


def init_cluster(
    plan: BootstrapPlan, node: Node, after: Sequence[pulumi.Resource], others: Sequence[Node], parent: pulumi.Resource
) -> ClusterIdentity:
    """The init step on the first server (see the module docstring). `after`: its install (and
    its evict step, if any)."""
    step = run_script(
        f"{plan.name}-init",
        node,
        StartServer(**plan.start_fields("server"), peers=_peers(plan, node, others), init=True),
        parent=parent,
        depends_on=after,
        # The config a new cluster starts with: NEW_CLUSTER_DEFAULTS included.
        stdin=secret_server_config_yaml(plan, None, created=True),
        replace_with_machine=False,
        ignore_changes=INIT_STEP_INPUTS,
    )
    words = step.stdout.apply(_init_report)
    return ClusterIdentity(step=step, ca_hash=words.apply(lambda w: w[0]), created=words.apply(lambda w: w[1]))


def _init_report(stdout: str) -> tuple[str, bool]:
    """The init step's one line, `HASH created|existing`."""
    words = stdout.split()
    if len(words) != 2 or words[1] not in ("created", "existing") or len(words[0]) != 64:
        raise ValueError(f"the init step printed {stdout!r}, expected 'HASH created' or 'HASH existing'")
    return words[0], words[1] == "created"


def start_init_server(
    plan: BootstrapPlan,
    node: Node,
    identity: ClusterIdentity,
    after: Sequence[pulumi.Resource],
    others: Sequence[Node],
    parent: pulumi.Resource,
) -> command.remote.Command:
    """The first server's start, after the init step (the cluster exists from then on) and
    `after` (its install and evict step): named directly, because on every later `up` the init
    step is left as it is and a re-run install must still come first."""
    return start_server(
        plan,
        node,
        config=secret_server_config_yaml(plan, None, created=identity.created),
        after=[*after, identity.step],
        parent=parent,
        peers=_peers(plan, node, others),
        ca_hash=identity.ca_hash,
        first=True,
    )


def join_servers_in_turn(
    plan: BootstrapPlan,
    nodes: Sequence[Node],
    installs: Sequence[command.remote.Command],
    init_server: command.remote.Command,
    parent: pulumi.Resource,
    evicts: Sequence[command.remote.Command | None],
    identity: ClusterIdentity,
) -> list[command.remote.Command]:
    """`evicts`: each server's evict step (None for a host without `replace_on`)."""
    joined: list[command.remote.Command] = []
    previous = init_server
    # The same for every joining server.
    config = secret_server_config_yaml(plan, plan.registration_address, identity.created, identity.ca_hash)
    for node, installed, evict in zip(nodes, installs, evicts):
        previous = start_server(plan, node, config=config, after=present(installed, previous, evict), parent=parent)
        joined.append(previous)
    return joined
