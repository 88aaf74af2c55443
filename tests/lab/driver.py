"""Runs a program's remote steps on the lab's hosts over real SSH, in the engine's order.

The mock engine (tests/engine.py) records every remote.Command the program registers. Each
step's exact `create` text and `stdin` (and, for a delete, its `delete` text) go over real SSH
to the lab host whose address is the step's connection host. Steps run in waves: every step
of a wave in parallel, waves one after another. `run_waves` takes any list of waves of
`Action`s, so a step model (e.g. tests/step_model.py's plan_up) can drive it; `up_waves`,
`change_waves` and `destroy_waves` derive waves from the recorded dependencies here:
a step runs once every step it depends on has run, and deletes run in reverse dependency
order (pulumi pkg/resource/deploy: deletes after every create and update of an `up`, in
reverse dependency order, wave after wave).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import engine
from lab.harness import Lab

COMMAND = "command:remote:Command"


@dataclass(frozen=True)
class Step:
    urn: str
    name: str
    host: str
    create: str
    stdin: str | None
    delete: str | None
    depends_on: frozenset[str]

    def changed_from(self, old: Step) -> bool:
        """An update in pulumi-command: create, stdin or connection changed."""
        return (self.create, self.stdin, self.host) != (old.create, old.stdin, old.host)


@dataclass(frozen=True)
class Action:
    """One step as the driver runs it: what runs where, with what on stdin."""

    urn: str
    command: str
    stdin: str | None
    host: str


@dataclass
class Outcome:
    action: Action
    status: int
    stdout: str
    stderr: str
    seconds: float


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


def steps_of(run: engine.Run) -> dict[str, Step]:
    """The remote commands of a recorded run, with dependencies among them (through any
    other resource in between)."""
    by_urn = {r.urn: r for r in run.registrations}
    commands = {r.urn for r in run.registrations if r.type == COMMAND}

    def command_deps(urn: str, seen: set[str]) -> set[str]:
        found: set[str] = set()
        registration = by_urn.get(urn)
        if registration is None:
            return found
        direct = set(registration.dependencies)
        for deps in registration.property_dependencies.values():
            direct |= deps
        for dep in direct - seen:
            seen.add(dep)
            found |= {dep} if dep in commands else command_deps(dep, seen)
        return found

    steps = {}
    for registration in run.registrations:
        if registration.type != COMMAND:
            continue
        inputs = registration.inputs
        steps[registration.urn] = Step(
            urn=registration.urn,
            name=registration.name,
            host=inputs["connection"]["host"],
            create=inputs["create"],
            stdin=inputs.get("stdin"),
            delete=inputs.get("delete"),
            depends_on=frozenset(command_deps(registration.urn, set())),
        )
    return steps


def _levels(steps: dict[str, Step], chosen: Iterable[str]) -> list[list[Step]]:
    """Waves of the chosen steps: each after the waves of every chosen step it depends on
    (directly or through steps that are not chosen)."""
    chosen = set(chosen)
    level: dict[str, int] = {}

    def depth(urn: str) -> int:
        if urn not in level:
            below = max((depth(d) for d in steps[urn].depends_on if d in steps), default=0)
            level[urn] = below + (1 if urn in chosen else 0)
        return level[urn]

    waves: dict[int, list[Step]] = {}
    for urn in chosen:
        waves.setdefault(depth(urn), []).append(steps[urn])
    return [sorted(waves[k], key=lambda s: s.name) for k in sorted(waves)]


def as_actions(waves: list[list[Step]], delete: bool = False) -> list[list[Action]]:
    return [[Action(s.urn, s.delete if delete else s.create, s.stdin, s.host) for s in wave] for wave in waves]


def up_waves(steps: dict[str, Step]) -> list[list[Action]]:
    """A fresh `up`: every step."""
    return as_actions(_levels(steps, steps))


def change_waves(before: dict[str, Step], after: dict[str, Step]) -> tuple[list[list[Action]], list[list[Action]]]:
    """An `up` from `before` to `after`: creates and updates (new or changed steps), then the
    deletes of steps that are gone, with their OLD text, stdin and connection."""
    changed = [u for u, s in after.items() if u not in before or s.changed_from(before[u])]
    gone = [u for u in before if u not in after and before[u].delete]
    deletes = [list(reversed(w)) for w in reversed(_levels(before, gone))]
    return as_actions(_levels(after, changed)), as_actions(deletes, delete=True)


def destroy_waves(steps: dict[str, Step]) -> list[list[Action]]:
    with_delete = [u for u, s in steps.items() if s.delete]
    return as_actions([list(w) for w in reversed(_levels(steps, with_delete))], delete=True)


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
                result = lab.ssh(lab.by_address(action.host), action.command, action.stdin, timeout=timeout)
                return Outcome(action, result.status, result.stdout, result.stderr, result.seconds)

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
        if args.typ == COMMAND and "k3s-ha-start-" in state.get("create", ""):
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
