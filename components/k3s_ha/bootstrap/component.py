"""K3sBootstrap: turn a list of reachable hosts into an HA K3s cluster.

It owns the cluster token and the ordered remote steps, and knows nothing about clouds, so
the same bootstrap runs on EC2 (K3sCluster), bare metal, a homelab or another cloud. The
node scripts ship once per host (remote.ship_bundle); wiring.py orders the steps, one file
per step in steps/.

The component provider (provider/) serves K3sBootstrap to other languages with a schema inferred
from these annotations and K3sBootstrapArgs: hence no `from __future__ import annotations`.
"""

import dataclasses

import pulumi
import pulumi_command as command
import pulumi_random as random

from .. import validation
from ..ports import api_url
from . import checks
from .args import HostArgs, K3sBootstrapArgs, SshArgs
from .plan import BootstrapPlan
from .remote import DEFAULT_DIAL_ERROR_LIMIT, PER_DIAL_TIMEOUT_SECONDS, Node, ship_bundle
from .removal_key import removal_key
from .settings import BootstrapSettings, parse_bootstrap_args
from .token_check import check_tokens
from .wiring import wire_steps

TOKEN_LENGTH = 48


def _connection(
    ssh: SshArgs, address: pulumi.Input[str], host_key: pulumi.Input[str] | None = None
) -> command.remote.ConnectionArgs:
    return command.remote.ConnectionArgs(
        host=address,
        host_key=host_key,
        user=ssh["user"],
        private_key=ssh["private_key"],  # made secret once, in K3sBootstrap
        proxy=ssh.get("proxy"),  # a ProxyArgs dict or a ProxyConnectionArgs: the SDK serializes either
        dial_error_limit=ssh.get("dial_error_limit", DEFAULT_DIAL_ERROR_LIMIT),
        per_dial_timeout=PER_DIAL_TIMEOUT_SECONDS,
    )


def _checked_token(value: pulumi.Input[str], arg: str) -> pulumi.Output[str]:
    """A token given as an Output is checked when its value is known, before any stdin uses it."""

    def check(token: str) -> str:
        checks.token(token, arg)
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

    def __init__(self, name: str, args: K3sBootstrapArgs, opts: pulumi.ResourceOptions | None = None):
        """`args`: the inputs, or BootstrapSettings a caller has already checked (K3sCluster
        builds them from its own checked settings, so nothing is checked twice). The annotation
        names K3sBootstrapArgs alone because the component provider's schema is inferred from it
        and the SDK's analyzer rejects a Union (pulumi 3.272, provider/experimental/analyzer.py)."""
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
        plan = BootstrapPlan.decide(
            name, settings, token, agent_token, init, ssh, removal_key(name, settings.removal_key_sources, self)
        )

        steps = wire_steps(plan, servers, agents, self)
        self.kubeconfig = steps.kubeconfig
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
