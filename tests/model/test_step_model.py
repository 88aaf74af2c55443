"""The step model's own rules, pinned on tiny hand-built graphs (no Pulumi program runs)."""

from __future__ import annotations

from support import engine
from support import step_model as sm

STACK = "urn:pulumi:dev::p::"


def reg(name, typ, inputs, deps=(), prop_deps=None, outputs=None, rid=None, **options):
    urn = f"{STACK}{typ}::{name}"
    prop = {k: {f"{STACK}{t}::{n}" for t, n in v} for k, v in (prop_deps or {}).items()}
    all_deps = {f"{STACK}{t}::{n}" for t, n in deps} | {u for v in prop.values() for u in v}
    opts = {
        "ignoreChanges": options.get("ignore_changes", []),
        "deleteBeforeReplace": options.get("delete_before_replace", False),
        "retainOnDelete": options.get("retain_on_delete", False),
        "replaceOnChanges": options.get("replace_on_changes", ["triggers[*]"] if typ == sm.COMMAND else []),
    }
    return engine.Registration(
        type=typ, name=name, urn=urn, parent="", custom=True, inputs=inputs, secret_paths=set(),
        dependencies=all_deps, property_dependencies=prop, options=opts,
        id=rid or f"{name}-id", outputs={**inputs, **(outputs or {})},
    )  # fmt: skip


def run(*regs):
    return engine.Run(list(regs), {}, set(), [])


def machine(name="vm", ami="ami-1", instance_type="t3.medium", **options):
    return reg(
        name, sm.INSTANCE, {"ami": ami, "instanceType": instance_type, "subnetId": "subnet-1"},
        outputs={"publicIp": f"198.51.0.{len(name)}", "privateIp": f"10.0.0.{len(name)}"},
        rid=f"i-{name}0000", **options,
    )  # fmt: skip


VM = (sm.INSTANCE, "vm")


def command(
    name, create="echo create", delete=None, host="198.51.0.2", triggers=("i-vm0000",), deps=(), options=None, **extra
):
    inputs = {"connection": {"host": host, "user": "ubuntu"}, "create": create, "triggers": list(triggers), **extra}
    if delete:
        inputs["delete"] = delete
    prop = {"connection": [VM], "triggers": [VM]}
    return reg(
        name, sm.COMMAND, inputs, deps=deps, prop_deps=prop, outputs={"stdout": f"{name} says hi\n"}, **(options or {})
    )


def test_unchanged_inputs_are_all_same_steps():
    before = run(machine(), command("a"))
    plan = sm.plan_up(before, run(machine(), command("a")))
    assert plan.steps == [] and {s.name for s in plan.sames} == {"vm", "a"}


def test_first_up_creates_in_dependency_waves():
    a = command("a")
    b = command("b", deps=[(sm.COMMAND, "a")])
    plan = sm.plan_up(None, run(machine(), a, b))
    assert [[s.name for s in w] for w in plan.waves] == [["vm"], ["a"], ["b"]]
    assert {s.kind for s in plan.steps} == {sm.CREATE}


def test_replacement_creates_first_and_deletes_the_old_one_after_every_other_step():
    before = run(machine(ami="ami-1"), command("a"), reg("other", "aws:s3/bucket:Bucket", {"x": 1}))
    after = run(machine(ami="ami-2"), command("a"), reg("other", "aws:s3/bucket:Bucket", {"x": 2}))
    plan = sm.plan_up(before, after)
    kinds = [(s.kind, s.name) for s in plan.steps]
    assert kinds.index((sm.REPLACE, "vm")) < kinds.index((sm.DELETE_REPLACED, "vm"))
    old_vm = plan.named("vm", sm.DELETE_REPLACED)[0]
    assert old_vm.phase == sm.DELETE_PHASE
    for step in plan.steps:
        if step.phase == sm.APPLY_PHASE:
            assert plan.precedes(step, old_vm), step
    # The command followed its machine's new identity (triggers hold the instance id).
    assert plan.kinds()["a"] == sm.REPLACE and plan.kinds()["other"] == sm.UPDATE


def test_a_delete_acts_with_the_old_state():
    before = run(machine(), command("a", delete="echo bye old", host="198.51.0.2", environment={"V": "1"}))
    after = run(
        machine(), command("a", delete="echo bye new", host="203.0.113.9", environment={"V": "2"}, triggers=["x"])
    )
    plan = sm.plan_up(before, after)
    old = plan.named("a", sm.DELETE_REPLACED)[0]
    assert old.command_text() == "echo bye old"
    assert old.inputs_used["connection"]["host"] == "198.51.0.2" and old.inputs_used["environment"] == {"V": "1"}
    new = plan.named("a", sm.REPLACE)[0]
    assert new.inputs_used["connection"]["host"] == "203.0.113.9"


def test_removed_resources_are_deleted_in_reverse_dependency_waves():
    a = command("a", delete="rm a")
    b = command("b", delete="rm b", deps=[(sm.COMMAND, "a")])
    c = command("c", delete="rm c", deps=[(sm.COMMAND, "b")])
    d = command("d", delete="rm d")
    plan = sm.plan_up(run(machine(), a, b, c, d), run(machine()))
    assert [[s.name for s in w] for w in plan.delete_waves] == [["c", "d"], ["b"], ["a"]]
    assert all(s.kind == sm.DELETE for s in plan.steps)
    c_step, d_step, b_step = plan.named("c")[0], plan.named("d")[0], plan.named("b")[0]
    assert plan.may_overlap(c_step, d_step) and plan.precedes(c_step, b_step)


def test_ignore_changes_keeps_the_old_value():
    before = run(machine(ami="ami-1", ignore_changes=["ami"]))
    assert sm.plan_up(before, run(machine(ami="ami-2", ignore_changes=["ami"]))).steps == []
    # Dropping ignore_changes (pinning the image) makes the same change a replacement.
    assert sm.plan_up(before, run(machine(ami="ami-2"))).kinds() == {"vm": sm.REPLACE}


def test_a_command_is_replaced_only_by_its_triggers():
    before = run(machine(), command("a", create="echo v1", stdin="cfg1"))
    changed_text = sm.plan_up(before, run(machine(), command("a", create="echo v2", stdin="cfg2")))
    (step,) = changed_text.steps
    assert (step.kind, step.command_text(), step.inputs_used["stdin"]) == (sm.UPDATE, "echo v2", "cfg2")
    assert set(step.changed) == {"create", "stdin"}
    new_trigger = sm.plan_up(before, run(machine(), command("a", create="echo v1", stdin="cfg1", triggers=["i-other"])))
    assert new_trigger.kinds() == {"a": sm.REPLACE}


def test_an_update_runs_the_update_text_when_there_is_one():
    before = run(machine(), command("a", create="echo create", update="echo update v1"))
    plan = sm.plan_up(before, run(machine(), command("a", create="echo create", update="echo update v2")))
    assert plan.steps[0].command_text() == "echo update v2"


def test_a_replaced_machine_renews_what_refers_to_it():
    host_only = command("host-only", triggers=())  # connection host is the public ip
    unrelated = reg("other", sm.COMMAND, {"create": "echo hi", "connection": {"host": "192.0.2.1"}})
    before = run(machine(ami="ami-1"), command("pinned"), host_only, unrelated)
    after = run(machine(ami="ami-2"), command("pinned"), host_only, unrelated)
    kinds = sm.plan_up(before, after).kinds()
    assert kinds == {"vm": sm.REPLACE, "pinned": sm.REPLACE, "host-only": sm.UPDATE}


def test_a_new_instance_type_stops_and_starts_the_machine_and_renews_its_public_address():
    private = command("private", host="10.0.0.2", triggers=())
    public = command("public", host="198.51.0.2", triggers=())
    before = run(machine(instance_type="t3.medium"), private, public)
    plan = sm.plan_up(before, run(machine(instance_type="t3.large"), private, public))
    (vm,) = plan.named("vm")
    assert vm.kind == sm.UPDATE and vm.stop_start
    assert plan.kinds() == {"vm": sm.UPDATE, "public": sm.UPDATE}


def test_delete_before_replace_deletes_before_creating_in_the_apply_phase():
    before = run(machine(ami="ami-1", delete_before_replace=True))
    plan = sm.plan_up(before, run(machine(ami="ami-2", delete_before_replace=True)))
    assert [(s.kind, s.phase) for s in plan.steps] == [
        (sm.DELETE_REPLACED, sm.APPLY_PHASE),
        (sm.REPLACE, sm.APPLY_PHASE),
    ]
    assert plan.precedes(*plan.steps)


def test_steps_the_graph_does_not_order_may_overlap():
    a, b = command("a", create="1"), command("b", create="1")
    c = command("c", create="1", deps=[(sm.COMMAND, "a")])
    plan = sm.plan_up(None, run(machine(), a, b, c))
    sa, sb, sc = (plan.named(n)[0] for n in "abc")
    assert plan.may_overlap(sa, sb) and plan.may_overlap(sb, sc)
    assert plan.precedes(sa, sc) and not plan.may_overlap(sa, sc)


def test_retained_resources_are_forgotten_without_running_their_delete():
    gone = command("a", delete="rm -rf /data", options={"retain_on_delete": True})
    plan = sm.plan_up(run(machine(), gone), run(machine()))
    assert plan.named("a")[0].command_text() is None


def test_any_password_input_replaces_and_unknown_types_update():
    def password(length):
        return run(reg("pw", sm.RANDOM_PASSWORD, {"length": length}))

    def target_group(port):
        return run(reg("t", "aws:lb/targetGroup:TargetGroup", {"port": port}))

    assert sm.plan_up(password(16), password(32)).kinds() == {"pw": sm.REPLACE}
    assert sm.plan_up(target_group(1), target_group(2)).kinds() == {"t": sm.UPDATE}


def test_after_a_failed_step_the_state_keeps_what_finished_and_the_old_state_of_the_rest():
    """A re-run continues where the failed `up` stopped: done updates are not repeated, the
    failed update and the ones after it run again, an unreached create is still to do."""
    old_a, old_b, old_c = command("a"), command("b", deps=[(sm.COMMAND, "a")]), command("c", deps=[(sm.COMMAND, "b")])
    before = run(machine(), old_a, old_b, old_c)
    new = [command(n, create="echo v2", deps=d) for n, d in (("a", ()), ("b", [(sm.COMMAND, "a")]))]
    new_c = command("c", create="echo v2", deps=[(sm.COMMAND, "b")])
    added = command("d", deps=[(sm.COMMAND, "c")])
    after = run(machine(), *new, new_c, added)
    plan = sm.plan_up(before, after)

    state = sm.state_after_failure(plan, succeeded={new[0].urn})  # b failed; c and d never ran

    assert state.by_urn(new[0].urn).inputs["create"] == "echo v2"
    assert state.by_urn(old_b.urn).inputs["create"] == "echo create"
    assert state.by_urn(old_c.urn).inputs["create"] == "echo create"
    assert added.urn not in {r.urn for r in state.registrations}
    rerun = sm.plan_up(state, after)
    assert {s.name: s.kind for s in rerun.steps} == {"b": sm.UPDATE, "c": sm.UPDATE, "d": sm.CREATE}
