"""Runs a program's remote steps on the lab's hosts over real SSH, in the engine's order.

The mock engine (tests/engine.py) records every remote.Command the program registers; the
step model (tests/step_model.py, plan_up) says what a real `pulumi up` or `destroy` does with
them, in waves. Each command step's text (`create`, `update` or `delete`, whichever the
provider would run), with its `stdin`, goes over real SSH to the lab host whose address is
the step's connection host: every action of a wave in parallel, waves one after another.
`run_waves` takes any waves of `Action`s (urn, command text, stdin, host).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import engine
import step_model

from lab.harness import Lab

COMMAND = "command:remote:Command"


@dataclass(frozen=True)
class Action:
    """One step as the driver runs it: what runs where, with what on stdin."""

    urn: str
    command: str
    stdin: str | None
    host: str
    private_key: str | None = None
    """The connection's key, which the driver logs in with (None: the lab's own)."""


@dataclass
class Outcome:
    action: Action
    status: int
    stdout: str
    stderr: str
    seconds: float
    started: float = 0.0
    """When it started (time.time())."""

    @property
    def name(self) -> str:
        return self.action.urn.rsplit("::", 1)[-1]


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    max_parallel: int = 0

    def step_seconds(self) -> dict[str, float]:
        return {o.action.urn.rsplit("::", 1)[-1]: round(o.seconds, 1) for o in self.outcomes}


class StepFailed(Exception):
    def __init__(self, failed: list[Outcome], report: Report):
        self.failed = failed
        self.report = report
        lines = [
            f"{o.action.urn.rsplit('::', 1)[-1]} on {o.action.host}: exit {o.status}\n{o.stderr[-3000:]}"
            for o in failed
        ]
        super().__init__("steps failed:\n" + "\n".join(lines))


def _action(step: step_model.Step) -> Action | None:
    text = step.command_text()
    if text is None:
        return None
    inputs = step.inputs_used
    connection = inputs["connection"]
    return Action(step.urn, text, inputs.get("stdin"), connection["host"], connection.get("privateKey"))


def plan_waves(plan: step_model.Plan) -> tuple[list[list[Action]], list[list[Action]]]:
    """A step model plan's commands as waves of actions: the apply phase (creates, updates,
    replacements) and the delete phase. Steps that run nothing on a host (other resource
    types, deletes without delete text) are left out."""

    def waves(phase: list[list[step_model.Step]]) -> list[list[Action]]:
        found = [[a for a in map(_action, wave) if a is not None] for wave in phase]
        return [wave for wave in found if wave]

    return waves(plan.apply_waves), waves(plan.delete_waves)


def up_plan(before: engine.Run | None, after: engine.Run) -> tuple[list[list[Action]], list[list[Action]]]:
    """`pulumi up` from `before` (None: the first up) to `after`, as the step model has it."""
    return plan_waves(step_model.plan_up(before, after))


def destroy_plan(before: engine.Run) -> list[list[Action]]:
    """`pulumi destroy`: every resource deleted, in reverse dependency order."""
    nothing = engine.Run([], {}, set(), [])
    return plan_waves(step_model.plan_up(before, nothing))[1]


def run_waves(
    lab: Lab,
    waves: list[list[Action]],
    timeout: float = 300,
    check: Callable[[Outcome], str | None] | None = None,
) -> Report:
    """Run each wave's actions in parallel over SSH; stop after a wave with a failure (the
    engine starts nothing new once a step failed). `check` may reject an outcome that exited
    0 (returns the reason)."""
    report = Report()
    started = time.time()
    with ThreadPoolExecutor(max_workers=max([len(w) for w in waves] or [1])) as pool:
        for wave in waves:
            if not wave:
                continue
            report.max_parallel = max(report.max_parallel, len(wave))

            def one(action: Action) -> Outcome:
                began = time.time()
                key = lab.key_file(action.private_key) if action.private_key else None
                result = lab.ssh(lab.by_address(action.host), action.command, action.stdin, timeout=timeout, key=key)
                return Outcome(action, result.status, result.stdout, result.stderr, result.seconds, began)

            outcomes = list(pool.map(one, wave))
            report.outcomes += outcomes
            failed = [o for o in outcomes if o.status != 0]
            if check:
                for outcome in outcomes:
                    reason = check(outcome) if outcome.status == 0 else None
                    if reason:
                        outcome.status, outcome.stderr = 1, reason
                        failed.append(outcome)
            if failed:
                report.seconds = time.time() - started
                raise StepFailed(failed, report)
    report.seconds = time.time() - started
    return report


class LabMocks(engine.CloudMocks):
    """The mock engine's invented outputs, made to agree with the lab: a start step reports
    the host name of the lab host it connects to (the start scripts print the Node name,
    which K3s takes from the host name), so later steps get the names the lab really has.
    `expected_stdout` lets the driver check that prediction against what the step printed."""

    def __init__(self, lab: Lab):
        super().__init__()
        self.lab = lab
        self.expected_stdout: dict[str, str] = {}

    def new_resource(self, args):
        rid, state = super().new_resource(args)
        if args.typ == COMMAND and engine.script_name(state.get("create")) in ("start-server", "start-agent"):
            connection = engine._reveal(args.inputs["connection"], "", set())
            host = self.lab.by_address(connection["host"])
            state["stdout"] = host.hostname + "\n"
            self.expected_stdout[args.name] = state["stdout"]
        return rid, state

    def check(self, outcome: Outcome) -> str | None:
        name = outcome.action.urn.rsplit("::", 1)[-1]
        wanted = self.expected_stdout.get(name)
        if wanted is not None and outcome.stdout != wanted:
            return f"printed {outcome.stdout!r}, the program was run with {wanted!r}"
        return None
