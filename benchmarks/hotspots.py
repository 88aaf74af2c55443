"""Where the project's program spends its time, by component function.

    python benchmarks/hotspots.py SERVERS AGENTS [--top N]
    python benchmarks/hotspots.py SERVERS AGENTS --warm N

`--warm N` instead runs project and floor N times each, alternating, in this one process
after a first run of each: their cost without imports and first-run setup, with less noise
than fresh processes give at small sizes (CPU time, min and median).

Runs the project once under cProfile (after the same warm-up imports as measure.py) and
prints, for code under components/, the functions by own time and by cumulative time (the
synchronous part of the SDK work they cause). The SDK finishes each registration and each
`apply` later, in event-loop tasks that cProfile does not charge to the caller; so a second
run counts the Output operations (`apply`, `all`, `secret`, `from_input`) by the line of
component code that called them, per agent added.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
from collections import Counter
from pathlib import Path

import pulumi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import BASE_CONFIG, SECRET_KEYS, engine  # noqa: E402

COMPONENTS = str(Path(__file__).resolve().parent.parent / "components")


def output_ops_by_line(servers: int, agents: int, program=None, code: str = COMPONENTS) -> Counter:
    """Output operations called directly by code under `code` (not the SDK's own), by line."""
    counts: Counter = Counter()

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            frame = sys._getframe(1)
            if frame.f_code.co_filename.startswith(code):
                path = Path(frame.f_code.co_filename).relative_to(Path(code).parent)
                counts[(name, f"{path}:{frame.f_lineno} {frame.f_code.co_name}")] += 1
            return fn(*args, **kwargs)

        return wrapper

    saved = {name: pulumi.Output.__dict__[name] for name in ("apply", "all", "secret", "from_input")}
    for name, raw in saved.items():
        fn = raw.__func__ if isinstance(raw, staticmethod) else raw
        setattr(
            pulumi.Output, name, staticmethod(counted(name, fn)) if isinstance(raw, staticmethod) else counted(name, fn)
        )
    try:
        engine.run(program or engine.main_program, {**BASE_CONFIG, "servers": servers, "agents": agents}, SECRET_KEYS)
    finally:
        for name, raw in saved.items():
            setattr(pulumi.Output, name, raw)
    return counts


def floor_ops(servers: int, agents: int) -> Counter:
    import floor

    config = {**BASE_CONFIG, "servers": servers, "agents": agents}
    shape = floor.shape_of(engine.run(engine.main_program, config, SECRET_KEYS).registrations)
    return output_ops_by_line(servers, agents, lambda: floor.program(shape), floor.__file__)


def warm(servers: int, agents: int, n: int) -> None:
    import gc
    import statistics
    import time

    import floor

    config = {**BASE_CONFIG, "servers": servers, "agents": agents}
    shape = floor.shape_of(engine.run(engine.main_program, config, SECRET_KEYS).registrations)
    programs = {"project": engine.main_program, "floor": lambda: floor.program(shape)}
    engine.run(programs["floor"], config, SECRET_KEYS)
    times: dict[str, list[float]] = {m: [] for m in programs}
    for _ in range(n):
        for mode, program in programs.items():
            gc.collect()
            cpu = time.process_time()
            engine.run(program, config, SECRET_KEYS)
            times[mode].append(time.process_time() - cpu)
    for mode, t in times.items():
        print(f"{mode:8} min {1000 * min(t):7.1f} ms  median {1000 * statistics.median(t):7.1f} ms")
    p, f = times["project"], times["floor"]
    print(f"ratio    min {min(p) / min(f):.2f}x      median {statistics.median(p) / statistics.median(f):.2f}x")


def main() -> None:
    servers, agents = int(sys.argv[1]), int(sys.argv[2])
    if "--warm" in sys.argv:
        return warm(servers, agents, int(sys.argv[sys.argv.index("--warm") + 1]))
    top = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 25
    profile = cProfile.Profile()
    profile.enable()
    engine.run(engine.main_program, {**BASE_CONFIG, "servers": servers, "agents": agents}, SECRET_KEYS)
    profile.disable()
    stats = pstats.Stats(profile).stats  # (file, line, func) -> (cc, nc, tottime, cumtime, callers)
    total = sum(v[2] for v in stats.values())
    ours = {k: v for k, v in stats.items() if k[0].startswith(COMPONENTS)}

    def show(title, key):
        print(f"\n{title}")
        print(f"{'calls':>8} {'own s':>8} {'cum s':>8}  function")
        for k, v in sorted(ours.items(), key=key, reverse=True)[:top]:
            print(f"{v[1]:>8} {v[2]:>8.3f} {v[3]:>8.3f}  {Path(k[0]).relative_to(COMPONENTS)}:{k[1]} {k[2]}")

    print(
        f"{servers}+{agents}: {total:.2f} s profiled, {sum(v[2] for v in ours.values()):.3f} s own time in components/"
    )
    show("by cumulative time (own + the SDK work it triggers)", lambda kv: kv[1][3])
    show("by own time", lambda kv: kv[1][2])

    small, large = output_ops_by_line(servers, 0), output_ops_by_line(servers, agents)
    f_small, f_large = floor_ops(servers, 0), floor_ops(servers, agents)

    def by_op(c: Counter) -> str:
        ops: Counter = Counter()
        for (op, _), n in c.items():
            ops[op] += n
        return ", ".join(f"{n} {op}" for op, n in sorted(ops.items()))

    print(f"\nOutput operations called by component code at {servers}+0: {by_op(small)} (the floor: {by_op(f_small)})")
    for (op, line), n in sorted(small.items(), key=lambda kv: -kv[1]):
        print(f"{n:>8}  {op:<10} {line}")
    per = Counter({k: (n - small.get(k, 0)) / max(agents, 1) for k, n in large.items()})
    f_per = Counter({k: (n - f_small.get(k, 0)) / max(agents, 1) for k, n in f_large.items()})
    print(f"\n... and per agent added ({servers}+0 -> {servers}+{agents}): {by_op(+per)} (the floor: {by_op(+f_per)})")
    for (op, line), n in sorted(per.items(), key=lambda kv: -kv[1]):
        if n:
            print(f"{n:>8.2f}  {op:<10} {line}")


if __name__ == "__main__":
    main()
