"""One measured run in this process, printed as one JSON line.

    python benchmarks/measure.py project SERVERS AGENTS [--shape-out FILE] [--graph] [--tracemalloc]
    python benchmarks/measure.py floor SERVERS AGENTS --shape FILE [--tracemalloc]

Wall and CPU seconds of the program under the recording mock engine (tests/support/engine.py), peak
RSS, and what it registered. Provider SDKs are imported before the clock starts, for both
sides: their import cost is the same and not the program's. `--shape-out` saves the remote
steps the floor replays (floor.shape_of); `--graph` adds the critical-path analysis;
`--tracemalloc` measures the peak of Python allocations instead of time (slower); `--count`
counts Output operations and event-loop tasks instead (deterministic).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import runpy  # noqa: E402,F401  (the harness runs __main__.py with it)

import engine  # noqa: E402
import pulumi  # noqa: E402
import pulumi_aws  # noqa: E402
import pulumi_command  # noqa: E402
import pulumi_random  # noqa: E402
import pulumi_tls  # noqa: E402
import yaml  # noqa: E402,F401

# The SDKs load their modules on first use: load them now, outside the clock.
_ = (
    pulumi_aws.get_availability_zones_output,
    pulumi_aws.ec2.Instance,
    pulumi_aws.vpc.SecurityGroupIngressRule,
    pulumi_aws.lb.LoadBalancer,
    pulumi_command.remote.Command,
    pulumi_random.RandomPassword,
    pulumi_tls.PrivateKey,  # the per-node host keys (both sides register them)
    pulumi.runtime.mocks,
)

# tests/support/helpers.py BASE_CONFIG, copied so the benchmark does not move when the tests do.
BASE_CONFIG = {
    "aws:region": "eu-west-1",
    "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nstand-in-key-material\n-----END OPENSSH PRIVATE KEY-----",
    "sshPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIstandin test@k3s-ha",
    "sshAllowedCidrs": ["203.0.113.7/32"],
    "apiAllowedCidrs": ["203.0.113.0/24"],
}
SECRET_KEYS = ("sshPrivateKey",)


def count_work() -> Counter:
    """Count Output operations and event-loop tasks from now on (deterministic, unlike time)."""
    import asyncio

    counts: Counter = Counter()

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    for name in ("apply", "all", "secret", "from_input", "concat"):
        raw = pulumi.Output.__dict__[name]
        fn = raw.__func__ if isinstance(raw, staticmethod) else raw
        setattr(
            pulumi.Output, name, staticmethod(counted(name, fn)) if isinstance(raw, staticmethod) else counted(name, fn)
        )
    asyncio.BaseEventLoop.create_task = counted("tasks", asyncio.BaseEventLoop.create_task)  # type: ignore[method-assign]
    return counts


def measure(
    mode: str,
    servers: int,
    agents: int,
    trace: bool = False,
    graph: bool = False,
    shape: str | None = None,
    shape_out: str | None = None,
    count: bool = False,
) -> dict:
    if mode == "project":
        program = engine.main_program
    else:
        loaded = json.loads(Path(shape).read_text())  # type: ignore[arg-type]

        def program():
            import floor  # inside the clock, as __main__.py imports k3s_ha inside it

            return floor.program(loaded)

    config = {**BASE_CONFIG, "servers": servers, "agents": agents}
    gc.collect()  # (disable() leaves explicit collections working)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    counts = count_work() if count else None
    if trace:
        import tracemalloc

        tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    run = engine.run(program, config, SECRET_KEYS)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result = {"mode": mode, "servers": servers, "agents": agents}
    if counts is not None:
        result["work"] = dict(counts)
    if trace:
        result["traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    if counts is None and not trace:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result.update(
            wall=wall, cpu=cpu, peak_rss_mb=peak / 1024, rss_growth_mb=(peak - base_rss) / 1024, load=os.getloadavg()[0]
        )
    regs = run.registrations
    result["types"] = dict(Counter(r.type for r in regs))
    result["calls"] = dict(Counter(token for token, _ in run.calls))
    result["dependency_edges"] = sum(len(r.dependencies) for r in regs)
    result["secret_inputs"] = sum(len(r.secret_paths) for r in regs)
    result["input_bytes"] = sum(len(json.dumps(r.inputs)) for r in regs)
    if shape_out:
        import floor

        Path(shape_out).write_text(json.dumps(floor.shape_of(regs)))
    if graph:
        import critical_path

        result["critical_path"] = critical_path.analyse(regs, servers, agents).as_dict()
    return result


def main() -> None:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["project", "floor", "import"])
    p.add_argument("servers", type=int)
    p.add_argument("agents", type=int)
    p.add_argument("--tracemalloc", action="store_true")
    p.add_argument("--graph", action="store_true")
    p.add_argument("--count", action="store_true")
    p.add_argument("--gc-off", action="store_true", help="diagnostic: no cyclic garbage collection during the run")
    p.add_argument("--shape")
    p.add_argument("--shape-out")
    a = p.parse_args()
    if a.mode == "import":  # what importing the component costs, the fixed part of the project's run
        sys.path.insert(0, str(ROOT / "components"))
        wall, cpu = time.perf_counter(), time.process_time()
        import k3s_ha  # noqa: F401
        import k3s_ha.stack_config  # noqa: F401

        print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}))
        return
    if a.gc_off:
        gc.disable()
    print(
        json.dumps(measure(a.mode, a.servers, a.agents, a.tracemalloc, a.graph, a.shape, a.shape_out, a.count)),
        flush=True,
    )
    os._exit(0)  # skip interpreter teardown (and the SDK's event-loop finalizer noise on stderr)


if __name__ == "__main__":
    main()
