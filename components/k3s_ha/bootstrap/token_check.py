"""Tokens given as Outputs (a secret from another resource, a stack reference) are only known
at deploy time, so the up-front checks (checks.token, checks.tokens_differ) cannot see
them. They are checked as soon as they are known, and everything that would put a machine or
a node step in place waits for that check: a refused token creates no instance and runs
nothing on any node.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from . import checks


@dataclass(frozen=True)
class CheckedTokens:
    """The tokens as given, and the check that tokens given as Outputs must pass."""

    token: pulumi.Input[str] | None
    agent_token: pulumi.Input[str] | None
    gate: pulumi.Output[None] | None
    """Resolves once both are known and checked; fails the deployment otherwise. None when
    both are plain values (already checked) or unset."""

    def after_check(self, value: pulumi.Input[str]) -> pulumi.Input[str]:
        """`value`, unchanged, but only once the tokens have passed their checks."""
        if self.gate is None:
            return value
        return pulumi.Output.all(value, self.gate).apply(lambda v: v[0])


def check_tokens(token: pulumi.Input[str] | None, agent_token: pulumi.Input[str] | None) -> CheckedTokens:
    if not any(isinstance(t, pulumi.Output) for t in (token, agent_token)):
        return CheckedTokens(token, agent_token, None)

    def check(values: list[str | None]) -> list[str | None]:
        given, given_agent = values
        checks.token(given, "token")
        checks.token(given_agent, "agent_token")
        checks.tokens_differ(given, given_agent)
        return values

    both = pulumi.Output.all(token, agent_token).apply(check)
    return CheckedTokens(
        token=None if token is None else both.apply(lambda v: v[0]),
        agent_token=None if agent_token is None else both.apply(lambda v: v[1]),
        gate=pulumi.Output.unsecret(both.apply(lambda _: None)),
    )
