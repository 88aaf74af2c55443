"""What the design costs the people who run it: state size, steps, SSH sessions, chain length.

    python benchmarks/design_cost.py [--tree DIR] SERVERS AGENTS [--add-agent]
    python benchmarks/design_cost.py --table [--before DIR]   # the BENCHMARKS.md table

Runs the project's `__main__.py` (K3sCluster on AWS, the dev stack's settings) under the
recording mock engine of the tree DIR (default: this checkout; give a `git worktree` of an
older commit to measure the design before a change) and prints one JSON line:

- `checkpoint_bytes`: an estimate of the Pulumi checkpoint, built the way the engine stores a
  resource (pkg/resource/stack/deployment.go): its inputs and its outputs (pulumi-command
  repeats a Command's inputs in its outputs; the mock engine returns them the same way), URN,
  type, parent and dependency lists. A secret counts as the engine stores it: an envelope
  around base64 ciphertext of its JSON (~4/3 of it plus ~100 bytes).
- `remote_steps`: Commands and CopyToRemotes; `per_node` divides by the nodes.
- `ssh_sessions`: per host, the remote steps that connect to it in a first `up`, plus the SSH
  probes a server's evict step makes to the host it evicts for. `max_server_sessions` is the
  largest of those over the servers.
- `longest_chain`: the most remote steps on one dependency path (the critical path's length
  in steps).
- `largest_command`: the longest `create`/`update` text plus `stdin` of any one step, and which;
  `reconcile_command` and `reconcile_stdin_per_node` for the one cluster-wide step.
- with --add-agent: `add_agent_steps`, the remote steps a second `up` with one more agent runs
  (tests/support/step_model.py, as `pulumi up` plans it), and what that agent adds to the checkpoint (at
  500 agents, the project's limit, the 500th is added to 499).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

REMOTE = ("command:remote:Command", "command:remote:CopyToRemote")
SECRET_ENVELOPE = 100


def _setup(tree: Path) -> None:
    os.chdir(tree)
    for sub in ("components", "tests"):
        sys.path.insert(0, str(tree / sub))


def _support(name: str):
    """A test support module of the tree measured: `support.<name>` since the tests were
    sorted into tiers (issue 20.6), a top-level module in the older trees `--before` names."""
    try:
        return importlib.import_module(f"support.{name}")
    except ModuleNotFoundError:
        return importlib.import_module(name)


def _size(value, secret: bool) -> int:
    text = len(json.dumps(value, separators=(",", ":")))
    return SECRET_ENVELOPE + text * 4 // 3 if secret else text


def _props_size(props: dict, secret_keys: set[str]) -> int:
    return sum(len(k) + 4 + _size(v, k in secret_keys) for k, v in props.items())


def checkpoint_bytes(reg) -> int:
    """One resource as the checkpoint holds it: inputs, outputs, and its identity and edges."""
    secret = {p.split(".")[0].split("[")[0] for p in reg.secret_paths}
    secret |= set(reg.options.get("additionalSecretOutputs") or [])
    edges = len(reg.urn) + len(reg.type) + len(reg.parent or "") + 2 * sum(len(d) + 3 for d in reg.dependencies)
    return 150 + edges + _props_size(reg.inputs, secret) + _props_size(reg.outputs or {}, secret)


def _script(text: str) -> str:
    """The script a command runs, in either design (the name ends the old texts)."""
    try:
        from k3s_ha.bootstrap.commands import parse_command

        parsed = parse_command(text)
        if parsed:
            return parsed[0]
    except ImportError:
        pass
    return text.rsplit(" ", 1)[-1].removeprefix("k3s-ha-")


def measure(servers: int, agents: int, add_agent: bool) -> dict:
    engine = _support("engine")
    helpers = _support("helpers")
    SECRET_KEYS, config = helpers.SECRET_KEYS, helpers.config  # noqa: N806

    run = engine.run(engine.main_program, config(servers=servers, agents=agents), SECRET_KEYS)
    nodes = servers + agents
    custom = [r for r in run.registrations if r.custom]
    remote = [r for r in custom if r.type in REMOTE]
    total = sum(checkpoint_bytes(r) for r in custom)
    remote_bytes = sum(checkpoint_bytes(r) for r in remote)

    # By instance name: the mock invents addresses from a short hash, which collide at 500 nodes.
    public = {r.name: r.outputs.get("publicIp") for r in run.by_type("aws:ec2/instance:Instance")}
    sessions: dict[str, int] = {}
    for r in remote:
        host = r.inputs["connection"]["host"]
        sessions[host] = sessions.get(host, 0) + 1
        if r.type == REMOTE[0] and _script(r.inputs.get("create") or "") == "evict-node":
            # The evict step SSHes once to the host it evicts for (`<cluster>-<host>-evict`).
            target = public[r.name.removesuffix("-evict")]
            sessions[target] = sessions.get(target, 0) + 1
    server_hosts = {public[f"dev-server-{i}"] for i in range(servers)}

    def size_of(r) -> int:
        texts = [r.inputs.get("create") or "", r.inputs.get("update") or ""]
        return max(len(t) for t in texts) + len(r.inputs.get("stdin") or "")

    commands = [r for r in remote if r.type == REMOTE[0]]
    largest = max(commands, key=size_of)
    per_node = [r for r in commands if not r.name.endswith(("-members", "-removals", "-kubeconfig"))]
    largest_per_node = max(per_node, key=size_of)
    reconcile = next(r for r in commands if r.name.endswith("-members"))

    by_urn = {r.urn: r for r in custom}
    longest: dict[str, int] = {}

    def chain(urn: str) -> int:
        if urn not in longest:
            reg = by_urn[urn]
            own = 1 if reg.type in REMOTE else 0
            longest[urn] = own + max((chain(d) for d in reg.dependencies if d in by_urn), default=0)
        return longest[urn]

    result = {
        "servers": servers,
        "agents": agents,
        "resources": len(custom),
        "checkpoint_bytes": total,
        "checkpoint_per_node": total // nodes,
        "remote_checkpoint_bytes": remote_bytes,
        "remote_steps": len(remote),
        "remote_steps_per_node": round(len(remote) / nodes, 2),
        "max_server_sessions": max(sessions.get(h, 0) for h in server_hosts),
        "max_agent_sessions": max((v for h, v in sessions.items() if h not in server_hosts), default=0),
        "longest_chain": max(chain(r.urn) for r in remote),
        "largest_command": size_of(largest),
        "largest_command_step": largest.name,
        "largest_per_node_command": size_of(largest_per_node),
        "largest_per_node_step": largest_per_node.name,
        "reconcile_command": max(len(reconcile.inputs.get("create") or ""), len(reconcile.inputs.get("update") or "")),
        "reconcile_stdin": len(reconcile.inputs.get("stdin") or ""),
    }
    if add_agent:
        step_model = _support("step_model")

        # The project allows at most 500 agents: at that size, add the 500th to 499.
        base = (
            run
            if agents < 500
            else engine.run(engine.main_program, config(servers=servers, agents=agents - 1), SECRET_KEYS)
        )
        grown_to = agents + 1 if agents < 500 else agents
        grown = (
            engine.run(engine.main_program, config(servers=servers, agents=grown_to), SECRET_KEYS)
            if agents < 500
            else run
        )
        plan = step_model.plan_up(base, grown)
        ran = []
        for step in plan.steps:
            if step.phase != step_model.APPLY_PHASE or step.type not in REMOTE:
                continue
            if step.type == REMOTE[0] and step.command_text() is None:
                continue
            if (
                step.type == REMOTE[1]
                and step.kind == step_model.UPDATE
                and not {"source", "remotePath"} & set(step.changed)
            ):
                continue
            ran.append(step.name)
        result["add_agent_steps"] = len(ran)
        result["add_agent_step_names"] = sorted(ran)
        base_total = sum(checkpoint_bytes(r) for r in base.registrations if r.custom)
        grown_total = sum(checkpoint_bytes(r) for r in grown.registrations if r.custom)
        result["checkpoint_per_added_agent"] = grown_total - base_total
    return result


SIZES = ((3, 0), (3, 10), (5, 100), (5, 500))
COLUMNS = (
    ("checkpoint", lambda r: f"{r['checkpoint_bytes'] / 1e6:.2f} MB"),
    ("per node", lambda r: f"{r['checkpoint_per_node'] / 1e3:.1f} KB"),
    ("per added agent", lambda r: f"{r['checkpoint_per_added_agent'] / 1e3:.1f} KB"),
    ("remote steps per node", lambda r: f"{r['remote_steps_per_node']}"),
    ("SSH sessions, busiest server", lambda r: f"{r['max_server_sessions']}"),
    ("longest chain", lambda r: f"{r['longest_chain']}"),
    ("largest per-node command (+stdin)", lambda r: f"{r['largest_per_node_command']} B"),
    ("reconcile command / stdin", lambda r: f"{r['reconcile_command']} B / {r['reconcile_stdin']} B"),
    ("steps to add one agent", lambda r: f"{r['add_agent_steps']}"),
)


def table(before: Path | None) -> str:
    """Every size for this tree (and `before`), each in a fresh process, as a markdown table."""
    import subprocess

    here = Path(__file__).resolve()
    trees = [("this design", here.parent.parent)] + ([("before", before.resolve())] if before else [])
    rows = ["| design | size | " + " | ".join(name for name, _ in COLUMNS) + " |"]
    rows.append("|---|---|" + "---:|" * len(COLUMNS))
    for label, tree in trees:
        for servers, agents in SIZES:
            out = subprocess.run(
                [sys.executable, str(here), "--tree", str(tree), str(servers), str(agents), "--add-agent"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            result = json.loads(out.strip().splitlines()[-1])
            cells = " | ".join(render(result) for _, render in COLUMNS)
            rows.append(f"| {label} | {servers}+{agents} | {cells} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--before", type=Path)
    parser.add_argument("servers", type=int, nargs="?")
    parser.add_argument("agents", type=int, nargs="?")
    parser.add_argument("--add-agent", action="store_true")
    args = parser.parse_args()
    if args.table:
        print(table(args.before))
        return
    _setup(args.tree.resolve())
    print(json.dumps(measure(args.servers, args.agents, args.add_agent)))


if __name__ == "__main__":
    main()
