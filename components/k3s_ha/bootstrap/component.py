"""K3sBootstrap: turn a list of reachable hosts into an HA K3s cluster.

It owns the cluster token and the ordered remote steps, and knows nothing about clouds, so
the same bootstrap runs on EC2 (K3sCluster), bare metal, a homelab or another cloud.
Order, one file per step: remote.ship_bundle (the node scripts, once per host) ->
upgrade_guard.py (every server) -> install.py (all nodes, parallel)
-> servers.py (the first server, then joins one at a time) -> membership.record_members (the
member record on the first server, which also evicts rebuilt agents) -> agents.py (every agent
in parallel) -> membership.py (server confirmations, then the removals on the first server of
the nodes the record step named as leaving) and kubeconfig.py. A server host on a new machine first has its stale Node evicted
(membership.py).
"""

from __future__ import annotations

import dataclasses

import pulumi
import pulumi_command as command
import pulumi_random as random

from .. import validation
from ..ports import api_url
from .args import HostArgs, K3sBootstrapArgs, SshArgs
from .plan import BootstrapPlan
from .remote import DEFAULT_DIAL_ERROR_LIMIT, PER_DIAL_TIMEOUT_SECONDS, Node, present, ship_bundle
from .settings import BootstrapSettings, parse_bootstrap_args
from .steps.agents import start_agents
from .steps.install import install
from .steps.kubeconfig import fetch_kubeconfig
from .steps.membership import evict_stale_node, hold_memberships, node_name, record_members, remove_members
from .steps.servers import join_servers_in_turn, start_init_server
from .steps.upgrade_guard import guard_upgrade
from .token_check import check_tokens

TOKEN_LENGTH = 48


def _connection(
    ssh: SshArgs, address: pulumi.Input[str], host_key: pulumi.Input[str] | None = None
) -> command.remote.ConnectionArgs:
    return command.remote.ConnectionArgs(
        host=address,
        host_key=host_key,
        user=ssh["user"],
        private_key=ssh["private_key"],  # made secret once, in K3sBootstrap
        proxy=ssh.get("proxy"),
        dial_error_limit=ssh.get("dial_error_limit", DEFAULT_DIAL_ERROR_LIMIT),
        per_dial_timeout=PER_DIAL_TIMEOUT_SECONDS,
    )


def _checked_token(value: pulumi.Input[str], arg: str) -> pulumi.Output[str]:
    """A token given as an Output is checked when its value is known, before any stdin uses it."""

    def check(token: str) -> str:
        validation.token(token, arg)
        return token

    return pulumi.Output.secret(pulumi.Output.from_input(value).apply(check))


class K3sBootstrap(pulumi.ComponentResource):
    """Installs K3s on the given hosts in HA order and returns the admin kubeconfig."""

    kubeconfig: pulumi.Output[str]
    """Admin kubeconfig (secret), pointing at `api_address`."""
    api_endpoint: pulumi.Output[str]
    """https://<api address>:6443."""
    token: pulumi.Output[str]
    """The cluster token (secret): keep it, etcd snapshots cannot be restored without it."""

    def __init__(
        self, name: str, args: K3sBootstrapArgs | BootstrapSettings, opts: pulumi.ResourceOptions | None = None
    ):
        """`args`: the inputs, or BootstrapSettings a caller has already checked (K3sCluster
        builds them from its own checked settings, so nothing is checked twice)."""
        validation.cluster_name(name, "the K3sBootstrap's name")
        settings, warnings = (args, []) if isinstance(args, BootstrapSettings) else parse_bootstrap_args(args)
        super().__init__("k3s-ha:index:K3sBootstrap", name, {}, opts)
        for warning in warnings:
            pulumi.log.warn(warning, resource=self)

        # One secret Output for the key, shared by every node's connection.
        ssh = SshArgs(**{**settings.ssh, "private_key": pulumi.Output.secret(settings.ssh["private_key"])})

        # Tokens given as Outputs are checked once known; every node step waits for that check.
        tokens = check_tokens(settings.token, settings.agent_token)

        def node(host: HostArgs) -> Node:
            address = host["address"]
            found = Node(
                name=host["name"],
                connection=_connection(ssh, tokens.after_check(address), host.get("host_key")),
                address=address,
                private_address=host.get("private_address", address),
                replace_on=host.get("replace_on"),
                host_key=host.get("host_key"),
            )
            copied = ship_bundle(f"{name}-{found.name}-bundle", found, self)
            return dataclasses.replace(found, bundle=copied)

        servers = [node(h) for h in settings.servers]
        agents = [node(h) for h in settings.agents]
        init = servers[0]

        token = self._token(name, "token", tokens.token)
        agent_token = self._token(name, "agent-token", tokens.agent_token)
        plan = BootstrapPlan.decide(name, settings, token, agent_token, init, ssh)

        guards = guard_upgrade(plan, servers, self)
        server_installs = [install(plan, n, "server", guards, self) for n in servers]
        # An agent's install only stages a new release beside the running one (install-k3s.sh),
        # so it need not wait for the guards: its start step, after every server, does.
        agent_installs = [install(plan, n, "agent", [], self) for n in agents]
        # The first server's stale Node is evicted from the second server, which is still a
        # member when the first is rebuilt alone (servers start in order, so it starts after).
        init_evict = (
            evict_stale_node(plan, init, "server", servers[1], [server_installs[0], server_installs[1]], self)
            if len(servers) > 1
            else None
        )
        init_start = start_init_server(plan, init, present(server_installs[0], init_evict), servers[1:], self)
        join_evicts = [
            evict_stale_node(plan, n, "server", init, [installed, init_start], self)
            for n, installed in zip(servers[1:], server_installs[1:])
        ]
        joins = join_servers_in_turn(plan, servers[1:], server_installs[1:], init_start, self, join_evicts)
        last_server = joins[-1] if joins else init_start
        self.server_starts = [init_start, *joins]
        # One Output per server's Node name, shared by its membership step and the record.
        server_names = [node_name(start) for start in self.server_starts]
        self.memberships = hold_memberships(plan, servers, self.server_starts, server_names, self)
        members = record_members(plan, init, servers, server_names, agents, agent_installs, [last_server], self)
        self.agent_starts = start_agents(plan, agents, agent_installs, last_server, self, members)
        starts = [*self.server_starts, *self.agent_starts]
        self.removals = remove_members(plan, init, members, [*starts, *self.memberships], self)

        self.kubeconfig = fetch_kubeconfig(plan, init, [init_start], self)
        self.api_endpoint = pulumi.Output.from_input(plan.api_address).apply(api_url)
        self.token = token
        self.register_outputs({"kubeconfig": self.kubeconfig, "api_endpoint": self.api_endpoint, "token": self.token})

    def _token(self, name: str, suffix: str, given: pulumi.Input[str] | None) -> pulumi.Output[str]:
        if given is not None:
            return _checked_token(given, suffix.replace("-", "_"))
        password = random.RandomPassword(
            f"{name}-{suffix}",
            length=TOKEN_LENGTH,
            special=False,  # no shell metacharacters
            upper=False,  # so it can never start with K10, the secure-token prefix
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Already secret: pulumi_random registers RandomPassword with `additional_secret_outputs`
        # naming `result` (pulumi_random/random_password.py); Output.secret would add an apply.
        return password.result
