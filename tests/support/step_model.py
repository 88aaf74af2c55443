"""The engine's step model: what a real `pulumi up` does when the program's registrations
change from `before` to `after` (two runs recorded by tests/support/engine.py).

    plan = plan_up(before_run, after_run)   # before_run=None: the first `up`
    for wave in plan.waves: ...              # Step(kind, urn, type, name, inputs_used, old_inputs, ...)

Rules, each with the source it was read from (see also /work/shared/real-behaviour.md and
docs/step-model.md):

- Steps per resource, matched by URN: same, create, update, replace, delete
  (pulumi pkg/resource/deploy/step_generator.go, generateSteps / GenerateDeletes).
- A replacement is create-before-delete: the new resource is created in place of the old one
  and the old one becomes a pending delete, run after every create and update of the whole
  `up` (step_generator.go: NewCreateReplacementStep(..., pendingDelete=true); GenerateDeletes
  runs once the program has finished). `delete_before_replace` deletes it first instead.
- Deletes (removed resources and replaced old ones) run in reverse dependency order, in waves
  that run one after another (step_generator.go ScheduleDeletes: antichains of the old
  dependency graph; deployment_executor.go runs them wave by wave). A delete acts with the OLD
  state (pulumi-command provider/pkg/provider/remote/commandController.go: Delete(props)
  runs props.Delete with the old connection, environment and stdin).
- Creates, updates and replacement-creates run as soon as everything they depend on has
  finished: RegisterResource returns only when the resource's step is done
  (source_eval.go) and the Python SDK awaits every dependency before registering
  (pulumi/runtime/rpc.py). Steps not ordered by the graph may run at the same time.
- `ignore_changes` keeps the old value of the named inputs (step_generator.go
  processIgnoreChanges); `replace_on_changes` turns a change of the named inputs into a
  replacement (the pulumi-command SDK sets it to `triggers[*]` for every Command).
- remote.Command: only `triggers` replaces; any other change is an update that runs `update`
  if set, else `create`, with the NEW inputs (commandController.go Update).
- aws.ec2.Instance: ami, subnetId, keyName, availabilityZone, privateIp,
  associatePublicIpAddress and rootBlockDevice.encrypted/kmsKeyId are ForceNew (replace);
  instanceType and userData (unless userDataReplaceOnChange) stop and start the instance,
  which gives it a new public address (terraform-provider-aws
  internal/service/ec2/ec2_instance.go schema and resourceInstanceUpdate).
- aws.ec2.KeyPair: publicKey/keyName/keyNamePrefix are ForceNew (ec2_key_pair.go);
  random.RandomPassword: every input is ForceNew (terraform-provider-random
  resource_password.go); tls.PrivateKey: every input is RequiresReplace and Read is a no-op,
  so the key lives in the state until an input changes (terraform-provider-tls
  internal/provider/resource_private_key.go); aws.ec2.Subnet: vpcId, cidrBlock, availabilityZone(Id);
  aws.ec2.Vpc: cidrBlock; aws.ec2.SecurityGroup: name, namePrefix, description, vpcId.
- Any other type, or any other input: an in-place update (the DEFAULT when we do not know
  that a field is ForceNew; add the provider's ForceNew fields to FORCE_NEW when it matters).
- New identity propagates: a created or replaced resource has new computed outputs (id, ip
  addresses, key name, stdout, ...); a stopped-and-started instance a new public address.
  The mock invents the same values again, so the model marks them itself: an input of a
  dependant changes when its recorded property dependencies name such a resource and its
  value mentions one of that resource's renewed output values.

NOT modelled (know this before you trust a result):
- Failures: every step succeeds. (A failed create leaves nothing, a failed update keeps the
  old state, a failed delete blocks the deletes of what it depends on and fails the `up`.)
- Step durations: only the order. Steps that the graph does not order may overlap.
- Components: they have no provider steps; only custom resources are planned.
- Outputs of an updated resource other than a stopped instance's public address are taken
  as unchanged (a Command's stdout after an update is its old stdout).
- Preview (outputs unknown), refresh/drift, `retain_on_delete` beyond "no provider call",
  aliases, providers' own Diff beyond the ForceNew tables above, `ignore_changes` with `[*]`
  wildcards, the dependents a delete-before-replace resource drags along.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from support.engine import ARCHIVE_SIG, LEAVING_UNKNOWN, SIG_KEY, MemberRow, Registration, Run, member_rows, script_name

SAME = "same"
CREATE = "create"
UPDATE = "update"
REPLACE = "replace"  # the create half of a replacement
DELETE = "delete"
DELETE_REPLACED = "delete-replaced"  # the old half of a replacement (a pending delete)

APPLY_PHASE = "apply"
DELETE_PHASE = "delete"

COMMAND = "command:remote:Command"
INSTANCE = "aws:ec2/instance:Instance"
KEY_PAIR = "aws:ec2/keyPair:KeyPair"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
TLS_PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SUBNET = "aws:ec2/subnet:Subnet"
VPC = "aws:ec2/vpc:Vpc"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"

EVERY_INPUT = "*"

# Inputs (as the engine sees them, camelCase; dotted for nested fields) whose change replaces.
FORCE_NEW: dict[str, frozenset[str]] = {
    INSTANCE: frozenset(
        {
            "ami",
            "subnetId",
            "keyName",
            "availabilityZone",
            "privateIp",
            "associatePublicIpAddress",
            "rootBlockDevice.encrypted",
            "rootBlockDevice.kmsKeyId",
        }
    ),
    KEY_PAIR: frozenset({"publicKey", "keyName", "keyNamePrefix"}),
    RANDOM_PASSWORD: frozenset({EVERY_INPUT}),
    TLS_PRIVATE_KEY: frozenset({EVERY_INPUT}),
    SUBNET: frozenset({"vpcId", "cidrBlock", "availabilityZone", "availabilityZoneId"}),
    VPC: frozenset({"cidrBlock"}),
    SECURITY_GROUP: frozenset({"name", "namePrefix", "description", "vpcId"}),
}

# Inputs whose in-place update stops and starts the machine, and the outputs that come back new.
STOP_START: dict[str, frozenset[str]] = {INSTANCE: frozenset({"instanceType", "userData", "userDataBase64"})}
STOP_START_RENEWS: dict[str, tuple[str, ...]] = {INSTANCE: ("publicIp", "publicDns")}


@dataclass(frozen=True, eq=False)
class Step:
    """One provider operation of the `up`.

    `inputs_used` are the inputs the provider acts with: the new ones for create, update and
    replace, the old state's for delete and delete-replaced. `old_inputs` are the old state's
    (None for a create)."""

    kind: str
    urn: str
    type: str
    name: str
    inputs_used: Mapping[str, Any]
    old_inputs: Mapping[str, Any] | None
    changed: tuple[str, ...] = ()
    stop_start: bool = False
    retain: bool = False
    phase: str = APPLY_PHASE
    wave: int = 0

    def command_text(self) -> str | None:
        """For a Command: the text the provider runs in this step (None: runs nothing)."""
        if self.type != COMMAND:
            return None
        if self.kind in (DELETE, DELETE_REPLACED):
            return None if self.retain else self.inputs_used.get("delete")
        if self.kind == UPDATE:
            return self.inputs_used.get("update") or self.inputs_used.get("create")
        if self.kind in (CREATE, REPLACE):
            return self.inputs_used.get("create")
        return None

    def __repr__(self) -> str:
        extra = " stop/start" if self.stop_start else ""
        return f"Step({self.kind}{extra} {self.name} wave={self.phase}:{self.wave})"


@dataclass
class Plan:
    steps: list[Step]
    """Every step but `same`, in execution order (apply waves, then delete waves)."""
    sames: list[Step]
    apply_waves: list[list[Step]]
    delete_waves: list[list[Step]]
    renewed: dict[str, set[str]]
    """URN -> output values that are new after this `up` (new identity or address)."""
    before: Run | None = None
    after: Run | None = None
    _ancestors: dict[int, set[int]] = field(repr=False, default_factory=dict)

    @property
    def replaced(self) -> set[str]:
        return {s.urn for s in self.steps if s.kind == REPLACE}

    @property
    def waves(self) -> list[list[Step]]:
        return [*self.apply_waves, *self.delete_waves]

    def named(self, name: str, kind: str | None = None) -> list[Step]:
        return [s for s in self.steps if s.name == name and (kind is None or s.kind == kind)]

    def kinds(self) -> dict[str, str]:
        """name -> what happens to it (`replace` for both halves of a replacement)."""
        out: dict[str, str] = {}
        for step in self.steps:
            out[step.name] = REPLACE if step.kind in (REPLACE, DELETE_REPLACED) else step.kind
        return out

    def precedes(self, a: Step, b: Step) -> bool:
        """`a` is certain to have finished before `b` starts."""
        if a.phase == APPLY_PHASE and b.phase == DELETE_PHASE:
            return True
        if a.phase == DELETE_PHASE and b.phase == APPLY_PHASE:
            return False
        if a.phase == DELETE_PHASE:
            return a.wave < b.wave
        return id(a) in self._ancestors.get(id(b), set())

    def may_overlap(self, a: Step, b: Step) -> bool:
        return a is not b and not self.precedes(a, b) and not self.precedes(b, a)


def _custom(run: Run | None) -> dict[str, Registration]:
    return {r.urn: r for r in run.registrations if r.custom} if run else {}


def _deps(reg: Registration) -> set[str]:
    out = set(reg.dependencies)
    for urns in reg.property_dependencies.values():
        out |= urns
    return out


def _topological(regs: Mapping[str, Registration]) -> list[Registration]:
    order: list[Registration] = []
    state: dict[str, int] = {}

    def visit(urn: str) -> None:
        if state.get(urn) == 2:
            return
        if state.get(urn) == 1:
            raise ValueError(f"dependency cycle through {urn}")
        state[urn] = 1
        for dep in sorted(_deps(regs[urn]) & regs.keys()):
            visit(dep)
        state[urn] = 2
        order.append(regs[urn])

    for urn in regs:
        visit(urn)
    return order


def _value_at(inputs: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(inputs, Mapping):
            return None
        inputs = inputs.get(part)
    return inputs


def _with_ignored(old: Mapping[str, Any], new: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """`new` with the old value at every ignore_changes path (top-level or dotted)."""
    result = json.loads(json.dumps(new))
    for path in paths:
        parts = path.split(".")
        old_value = _value_at(old, path)
        target = result
        for part in parts[:-1]:
            target = target.setdefault(part, {}) if isinstance(target, dict) else None
            if target is None:
                break
        if isinstance(target, dict):
            if old_value is None:
                target.pop(parts[-1], None)
            else:
                target[parts[-1]] = old_value
    return result


_BOUNDARY = r"[A-Za-z0-9_.\-]"


def _mentions(value: Any, renewed: set[str]) -> bool:
    text = value if isinstance(value, str) else json.dumps(value)
    return any(re.search(rf"(?<!{_BOUNDARY}){re.escape(v)}(?!{_BOUNDARY})", text) for v in renewed)


def _computed_outputs(reg: Registration) -> set[str]:
    """Output values the provider invents (not echoed inputs): new with every new resource."""
    values = {reg.id} if reg.id else set()
    for key, value in reg.outputs.items():
        if key not in reg.inputs and isinstance(value, str) and value.strip():
            values.add(value.strip())
    stdout = (reg.outputs or {}).get("stdout")
    if reg.type == COMMAND and script_name(reg.inputs.get("create")) == "install-k3s" and stdout:
        # The record step's stdin carries only the install's time ("@TIME", membership.py
        # install_stamp), which a new machine's install reports anew.
        values.update(stdout.split()[3:4])
    return values


def _top_key(path: str) -> str:
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def _replace_keys(
    reg: Registration, old: Mapping[str, Any], new: Mapping[str, Any], changed: set[str], renewed_keys: set[str]
) -> set[str]:
    """The changed inputs that force a replacement. `renewed_keys` changed although the mock
    recorded the same value (they carry a dependency's new identity)."""
    keys: set[str] = set()
    on_changes = {_top_key(p) for p in reg.options.get("replaceOnChanges") or []}
    if EVERY_INPUT in on_changes:
        return set(changed)
    keys |= changed & on_changes
    force_new = set(FORCE_NEW.get(reg.type, frozenset()))
    if reg.type == INSTANCE and new.get("userDataReplaceOnChange"):
        force_new |= {"userData", "userDataBase64"}
    if EVERY_INPUT in force_new:
        return set(changed)
    for path in force_new:
        top = _top_key(path)
        if top in renewed_keys or (top in changed and _value_at(old, path) != _value_at(new, path)):
            keys.add(top)
    return keys


def _equal(old: Any, new: Any) -> bool:
    """Input equality as the engine has it: assets and archives are equal when their hashes
    are, whatever their paths (pulumi sdk/go/common/resource Archive.Equals, DeepEquals)."""
    if isinstance(old, dict) and isinstance(new, dict):
        if ARCHIVE_SIG in (old.get(SIG_KEY), new.get(SIG_KEY)):
            return old.get(SIG_KEY) == new.get(SIG_KEY) and old.get("hash") == new.get("hash")
        return old.keys() == new.keys() and all(_equal(old[k], new[k]) for k in old)
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(_equal(a, b) for a, b in zip(old, new))
    return old == new


def _printed_nothing(reg: Registration) -> Registration:
    """An old registration the mock recorded without this model (a run handed in as `before`
    as it was recorded): its record step printed nothing, as a first `up`'s does."""
    if reg.type != COMMAND or not any(
        LEAVING_UNKNOWN in str(v) for v in (reg.inputs.get("stdin"), (reg.outputs or {}).get("stdout"))
    ):
        return reg
    stdin = reg.inputs.get("stdin")
    inputs = {**reg.inputs, "stdin": stdin.replace(LEAVING_UNKNOWN, "")} if isinstance(stdin, str) else reg.inputs
    outputs = {**(reg.outputs or {})}
    if outputs.get("stdout") == LEAVING_UNKNOWN:
        outputs["stdout"] = ""
    return dataclasses.replace(reg, inputs=inputs, outputs=outputs)


def _leaving_printed(reg: Registration, old: Registration | None, same: bool, renewed: Mapping[str, set[str]]) -> str:
    """What record-members.sh prints (`reg` is its step; the mock engine left LEAVING_UNKNOWN as
    its stdout): the nodes of the member record that are not wanted now. In this model every
    step of the previous `up` succeeded, so the record holds exactly the nodes the old record
    step was given: the leaving ones are those the new one no longer names, and those whose
    machine is new (a replaced instance: on AWS it has a new address and so a new host name
    and Node name, which the mock, naming Nodes after steps, does not show), with the role,
    address and key recorded then. A record step that does not run keeps its old stdout (a
    first `up`'s printed nothing)."""
    if same and old is not None:
        text = (old.outputs or {}).get("stdout") or ""
        return "" if text == LEAVING_UNKNOWN else text
    new_machines = set().union(*renewed.values()) if renewed else set()

    def rows(r: Registration | None) -> dict[str, MemberRow]:
        return member_rows(r.inputs.get("stdin") if r else None)

    now = rows(reg)
    return "".join(
        row.leaving(name) for name, row in sorted(rows(old).items()) if name not in now or row.address in new_machines
    )


def plan_up(before: Run | None, after: Run, replace: Iterable[str] = ()) -> Plan:
    """What `pulumi up` does to move the stack from `before`'s registrations to `after`'s.

    `replace`: URNs to replace although unchanged, as `pulumi up --replace URN` does
    (step_generator.go: ReplaceTargets turn a same or an update into a replace)."""
    forced = set(replace)
    olds, news = {urn: _printed_nothing(r) for urn, r in _custom(before).items()}, _custom(after)
    leaving: list[str] = []
    modelled: dict[str, Registration] = {}
    renewed: dict[str, set[str]] = {}
    apply_steps: list[Step] = []
    sames: list[Step] = []
    step_of: dict[str, Step] = {}  # urn -> its apply-phase step (create/update/replace/same)
    finish: dict[str, int] = {}
    ancestors: dict[int, set[int]] = {}
    pending_deletes: list[Registration] = []

    for reg in _topological(news):
        stdin = reg.inputs.get("stdin")
        if leaving and isinstance(stdin, str) and LEAVING_UNKNOWN in stdin:
            # The removals step: its stdin carries what the record step printed (membership.py).
            reg = modelled[reg.urn] = dataclasses.replace(
                reg, inputs={**reg.inputs, "stdin": stdin.replace(LEAVING_UNKNOWN, leaving[0], 1)}
            )
        deps = _deps(reg) & news.keys()
        old = olds.get(reg.urn)
        kind, changed, stop_start, dbr_delete = CREATE, (), False, None
        if old is not None:
            ignore = reg.options.get("ignoreChanges") or []
            new_inputs = _with_ignored(old.inputs, reg.inputs, ignore)
            changed_keys = {
                k for k in old.inputs.keys() | new_inputs.keys() if not _equal(old.inputs.get(k), new_inputs.get(k))
            }
            ignored_top = {_top_key(p) for p in ignore}
            renewed_keys: set[str] = set()
            for key, key_deps in reg.property_dependencies.items():
                if key in ignored_top or key not in new_inputs:
                    continue
                values = set().union(*(renewed.get(d, set()) for d in key_deps))
                if values and _mentions(new_inputs[key], values):
                    renewed_keys.add(key)
            changed_keys |= renewed_keys
            changed = tuple(sorted(changed_keys))
            if reg.urn in forced:
                kind = REPLACE
            elif not changed_keys:
                kind = SAME
            elif _replace_keys(reg, old.inputs, new_inputs, changed_keys, renewed_keys):
                kind = REPLACE
            else:
                kind = UPDATE
                stop_start = bool(changed_keys & STOP_START.get(reg.type, frozenset()))

        if reg.type == COMMAND and reg.outputs and reg.outputs.get("stdout") == LEAVING_UNKNOWN:
            leaving.append(_leaving_printed(reg, old, kind == SAME, renewed))
            reg = modelled[reg.urn] = dataclasses.replace(reg, outputs={**reg.outputs, "stdout": leaving[-1]})
        if kind in (CREATE, REPLACE):
            renewed[reg.urn] = _computed_outputs(reg)
        elif stop_start:
            renewed[reg.urn] = {str(reg.outputs[k]) for k in STOP_START_RENEWS.get(reg.type, ()) if reg.outputs.get(k)}

        begin = max((finish[d] for d in deps), default=0)
        step_ancestors: set[int] = set()
        for d in deps:
            step_ancestors |= ancestors[id(step_of[d])] | {id(step_of[d])}
        if kind == REPLACE and old is not None:
            if reg.options.get("deleteBeforeReplace"):
                dbr_delete = Step(
                    DELETE_REPLACED,
                    reg.urn,
                    reg.type,
                    reg.name,
                    old.inputs,
                    old.inputs,
                    changed,
                    retain=bool(old.options.get("retainOnDelete")),
                    wave=begin,
                )
                ancestors[id(dbr_delete)] = set(step_ancestors)
                apply_steps.append(dbr_delete)
                step_ancestors |= {id(dbr_delete)}
                begin += 1
            else:
                pending_deletes.append(old)
        step = Step(
            kind, reg.urn, reg.type, reg.name, reg.inputs, old.inputs if old else None, changed, stop_start, wave=begin
        )
        ancestors[id(step)] = step_ancestors
        step_of[reg.urn] = step
        finish[reg.urn] = begin + (0 if kind == SAME else 1)
        (sames if kind == SAME else apply_steps).append(step)

    pending_deletes += [old for urn, old in olds.items() if urn not in news]
    delete_waves = _delete_waves(olds, pending_deletes, news)

    apply_steps.sort(key=lambda s: s.wave)
    apply_waves: list[list[Step]] = []
    for step in apply_steps:
        while len(apply_waves) <= step.wave:
            apply_waves.append([])
        apply_waves[step.wave].append(step)
    apply_waves = [w for w in apply_waves if w]
    steps = [s for w in apply_waves for s in w] + [s for w in delete_waves for s in w]
    if modelled:
        after = dataclasses.replace(after, registrations=[modelled.get(r.urn, r) for r in after.registrations])
    return Plan(steps, sames, apply_waves, delete_waves, renewed, before, after, ancestors)


def _delete_waves(
    olds: Mapping[str, Registration], condemned: list[Registration], news: Mapping[str, Registration]
) -> list[list[Step]]:
    """Reverse dependency order over the OLD graph, in antichains (ScheduleDeletes)."""
    dependents: dict[str, set[str]] = {urn: set() for urn in olds}
    for reg in olds.values():
        for dep in _deps(reg) & olds.keys():
            dependents[dep].add(reg.urn)

    def all_dependents(urn: str) -> set[str]:
        seen: set[str] = set()
        stack = list(dependents[urn])
        while stack:
            u = stack.pop()
            if u not in seen:
                seen.add(u)
                stack.extend(dependents[u])
        return seen

    remaining = {r.urn for r in condemned}
    waves: list[list[Step]] = []
    while remaining:
        ready = sorted(u for u in remaining if not (all_dependents(u) & remaining))
        if not ready:
            raise ValueError("dependency cycle among deletes")
        wave = len(waves)
        waves.append(
            [
                Step(
                    DELETE_REPLACED if u in news else DELETE,
                    u,
                    olds[u].type,
                    olds[u].name,
                    olds[u].inputs,
                    olds[u].inputs,
                    retain=bool(olds[u].options.get("retainOnDelete")),
                    phase=DELETE_PHASE,
                    wave=wave,
                )
                for u in ready
            ]
        )
        remaining -= set(ready)
    return waves


def state_after_failure(plan: Plan, succeeded: set[str]) -> Run:
    """The stack's state after an `up` that stopped at a failed step (real-behaviour.md: a failed
    create leaves nothing, a failed update keeps the old state, and the engine starts no new
    step after a failure, so no delete has run). For pulumi-command: a failed command is a
    plain error, and pulumi-go-provider's infer Update returns an empty response for it (no
    partial state: that is only for ResourceInitFailedError, infer/resource.go), so the old
    inputs stay and the next `up` runs the step again.

    `succeeded`: URNs whose step ran to the end. A step that runs nothing on a host (not a
    Command) counts as done when every step it depends on is. The old half of a replacement
    whose new half succeeded is left out (its pending delete would run nothing here)."""
    olds, news = _custom(plan.before), _custom(plan.after)
    done = set(succeeded) | {s.urn for s in plan.sames}
    for wave in plan.apply_waves:
        for step in wave:
            if step.type != COMMAND and _deps(news[step.urn]) & news.keys() <= done:
                done.add(step.urn)
    kept = [r for r in plan.after.registrations if not r.custom]
    kept += [news[urn] if urn in done else olds[urn] for urn in news if urn in done or urn in olds]
    kept += [old for urn, old in olds.items() if urn not in news]
    outputs = plan.before.outputs if plan.before else {}
    return Run(kept, outputs, set(plan.before.secret_outputs) if plan.before else set(), [])
