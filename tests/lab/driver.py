"""Runs a program's remote steps on the lab's hosts over real SSH, in the engine's order.

The mock engine (tests/support/engine.py) records every remote.Command the program registers; the
step model (tests/support/step_model.py, plan_up) says what a real `pulumi up` or `destroy` does with
them, in waves. Each command step's text (`create`, `update` or `delete`, whichever the
provider would run), with its `stdin`, goes over real SSH to the lab host whose address is
the step's connection host: every action of a wave in parallel, waves one after another.
`run_waves` takes any waves of `Action`s (urn, command text, stdin, host).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from k3s_ha.bootstrap.bundle import SCRIPT_DIR
from support import engine, step_model

from lab.harness import Lab
from lab.standin.k3s_standin import make_ca

COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"


@dataclass(frozen=True)
class Action:
    """One step as the driver runs it: what runs where, with what on stdin."""

    urn: str
    command: str
    stdin: str | None
    host: str
    private_key: str | None = None
    """The connection's key, which the driver logs in with (None: the lab's own)."""
    copy_to: str | None = None
    """A CopyToRemote step: the `remotePath` the script bundle goes to over real SFTP (`command`
    is then empty)."""


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
    if step.type == COPY:
        # pulumi-command copies on a create or replace, and on an update only when the source's
        # hash or the remote path changed (copyController.go Update); a delete copies nothing.
        copies = step.kind in (step_model.CREATE, step_model.REPLACE) or (
            step.kind == step_model.UPDATE and {"source", "remotePath"} & set(step.changed)
        )
        if not copies:
            return None
        inputs = step.inputs_used
        connection = inputs["connection"]
        return Action(step.urn, "", None, connection["host"], connection.get("privateKey"), inputs["remotePath"])
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
                host = lab.by_address(action.host)
                if action.copy_to is not None:
                    result = lab.sftp_put(host, SCRIPT_DIR, action.copy_to, key=key)
                else:
                    result = lab.ssh(host, action.command, action.stdin, timeout=timeout, key=key)
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

    def __init__(self, lab: Lab, previous: engine.Run | None = None, replace: frozenset[str] = frozenset()):
        super().__init__()
        self.lab = lab
        self.previous = previous
        self.replace = replace
        """Names of steps this `up` replaces (`--replace`): they run again, so the program gets
        what they print this time, never the old state's outputs."""
        """The stack's state before this `up`: a step whose inputs did not change keeps its
        outputs, as the engine gives the program the old state's outputs for a `same` step."""
        self.expected_stdout: dict[str, str] = {}

    def new_resource(self, args):
        rid, state = super().new_resource(args)
        if args.typ == "tls:index/privateKey:PrivateKey" and args.name.endswith("-removal-key"):
            # The cluster's removal key really logs in to lab hosts: a real ED25519 key, made
            # once per lab and kept across `up`s, as pulumi-tls keeps it in the state.
            private = self.lab.root / "removal-key"
            if not private.exists():
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(private)], check=True
                )
            state.update(privateKeyOpenssh=private.read_text(), publicKeyOpenssh=Path(f"{private}.pub").read_text())
            return rid, state
        script = engine.script_name(state.get("create")) if args.typ == COMMAND else None
        if script == "start-server" and engine.parse_command(state["create"])[1].get("K3S_HA_INIT") == "1":
            state["stdout"] = self._init_report(args, state)
            self.expected_stdout[args.name] = state["stdout"]
        elif script in ("start-server", "start-agent", "install-k3s"):
            connection = engine._reveal(args.inputs["connection"], "", set())
            host = self.lab.by_address(connection["host"])
            state["stdout"] = host.hostname + "\n"
            kept = self._unchanged_stdout(args.name, state)
            if kept is not None:
                state["stdout"] = kept
            elif script == "install-k3s":
                # What install-k3s.sh will report: whether K3s runs there now (the install step
                # runs before anything starts) and the host's boot id (host-init.sh).
                unit = "k3s" if engine.parse_command(state["create"])[1].get("K3S_ROLE") == "server" else "k3s-agent"
                running = self.lab.unit_running(host, unit)
                boot = host.path("/boot_id").read_text().strip() if host.path("/boot_id").exists() else "-"
                # The install's time is only known when it runs: predicted as now, and what the
                # check compares is the rest of the line.
                state["stdout"] = f"{host.hostname} {'running' if running else 'fresh'} {boot} {int(time.time())}\n"
            self.expected_stdout[args.name] = state["stdout"]
        elif script == "record-members":
            kept = self._unchanged_stdout(args.name, state)
            state["stdout"] = kept if kept is not None else self._leaving(args, state)
            self.expected_stdout[args.name] = state["stdout"]
        return rid, state

    def _init_report(self, args, state: dict) -> str:
        """What the init step prints (start-server.sh with K3S_HA_INIT): kept from the state
        once it ran (every input is in its ignore_changes, steps/servers.py). Before its first
        run: on a host with cluster data, that cluster's CA hash and "existing"; on a fresh one
        "created", with a CA the lab puts in server/tls beforehand, as an operator may give
        K3s custom CA certificates (pkg/daemons/control/deps/deps.go createSigningCertKey uses
        files already there), so that the hash is known before the step runs."""
        if self.previous is not None and args.name not in self.replace:
            old = next((r for r in self.previous.registrations if r.name == args.name), None)
            if old is not None:
                return old.outputs["stdout"]
        connection = engine._reveal(args.inputs["connection"], "", set())
        host = self.lab.by_address(connection["host"])
        data = engine.parse_command(state["create"])[1].get("K3S_HA_DATA_DIR", "/var/lib/rancher/k3s")
        if host.path(f"{data}/server/db/etcd/member/wal").is_dir():
            token = host.path(f"{data}/server/token").read_text()
            return f"{token[3:67]} existing\n"
        tls = host.path(f"{data}/server/tls")
        tls.mkdir(parents=True, exist_ok=True, mode=0o700)
        make_ca(str(tls / "server-ca.crt"), str(tls / "server-ca.key"))
        return f"{hashlib.sha256((tls / 'server-ca.crt').read_bytes()).hexdigest()} created\n"

    def _leaving(self, args, state: dict) -> str:
        """What record-members.sh will print: the nodes of the member record on the first
        server (kube-system/k3s-ha-members; while there is none, the Nodes an older release
        labelled, with their annotated keys) that the step's stdin no longer wants, and removed
        nodes whose Node is back. The driver checks it against what the step prints."""
        connection = engine._reveal(args.inputs["connection"], "", set())
        first = self.lab.by_address(connection["host"])
        wanted = set(engine.member_rows(state.get("stdin")))
        # Asked of the step's host or, when that is a new machine with no K3s yet (a new first
        # server joins before the step runs there), of any host whose API answers.
        for host in [first, *(h for h in self.lab.hosts.values() if h is not first)]:
            got = self.lab.root_on(
                host, "k3s kubectl -n kube-system get configmap k3s-ha-members -o jsonpath={.data.nodes}", timeout=20
            )
            if got.status == 0 or "(NotFound)" in got.stderr:
                break
        nodes = self.lab.root_on(host, "k3s kubectl get nodes -o json", timeout=20)
        items = json.loads(nodes.stdout)["items"] if nodes.status == 0 else []
        present = {item["metadata"]["name"] for item in items}
        entries: dict[str, list[str]] = {}
        if got.status == 0:
            for words in (line.split() for line in got.stdout.splitlines() if line.strip()):
                # A member's install stamp (@TIME) is not printed when it leaves.
                entries[words[1]] = [words[0], *(w for w in words[2:] if not w.startswith("@"))]
        elif "(NotFound)" in got.stderr:
            for item in items:
                meta = item["metadata"]
                if meta.get("labels", {}).get("k3s-ha.io/cluster") != engine.parse_command(state["create"])[1].get(
                    "K3S_HA_CLUSTER"
                ):
                    continue
                role = "server" if meta["labels"].get("node-role.kubernetes.io/etcd") == "true" else "agent"
                ip = next((a["address"] for a in item["status"].get("addresses", []) if a["type"] == "InternalIP"), "")
                key = meta.get("annotations", {}).get("k3s-ha.io/ssh-host-key", "").split()
                entries[meta["name"]] = ["member", role, ip, *key]
        created = {item["metadata"]["name"]: item["metadata"].get("creationTimestamp", "unknown") for item in items}
        lines = []
        for name, (entry_state, *rest) in entries.items():
            if name in wanted or (entry_state == "removed" and name not in present):
                continue
            if entry_state == "removed":
                lines.append(f"# {name} registered again at {created[name]}\n")
            lines.append(" ".join(["leaving", name, *rest]) + "\n")
        return "".join(sorted(lines))

    def _unchanged_stdout(self, name: str, state: dict) -> str | None:
        if self.previous is None or name in self.replace:
            return None
        old = next((r for r in self.previous.registrations if r.name == name), None)
        if old is None or old.type != COMMAND:
            return None
        # Any changed input (the connection's key too) makes the step run again: then the
        # prediction stands, and the check compares it with what the step printed.
        new = engine._reveal({k: v for k, v in state.items() if k not in ("stdout", "stderr")}, "", set())
        if old.inputs != new:
            return None
        return old.outputs.get("stdout")

    def check(self, outcome: Outcome) -> str | None:
        name = outcome.action.urn.rsplit("::", 1)[-1]
        wanted = self.expected_stdout.get(name)
        if wanted is not None and name.endswith("-install"):
            wanted, got = wanted.rsplit(" ", 1)[0], outcome.stdout.rsplit(" ", 1)[0]
            return None if got == wanted else f"printed {outcome.stdout!r}, the program was run with {wanted!r}"
        if wanted is not None and outcome.stdout != wanted:
            return f"printed {outcome.stdout!r}, the program was run with {wanted!r}"
        return None
