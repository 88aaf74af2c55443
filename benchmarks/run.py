"""Program cost against a bare floor, and modeled time to a ready cluster.

    python benchmarks/run.py                  # the full run behind BENCHMARKS.md (~7 min on 2 cores)
    python benchmarks/run.py --quick --sizes 3:0,5:100   # a smoke run, results in benchmarks/out/

Each measurement runs in a fresh subprocess (benchmarks/measure.py); project and floor runs
alternate so drift hits both alike. Writes benchmarks/results.md (the tables BENCHMARKS.md
shows), benchmarks/time_to_ready.png and, git-ignored, benchmarks/out/results.json (every run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from critical_path import ASSUMPTIONS, DURATIONS  # noqa: E402

SIZES = [(3, 0), (3, 10), (5, 100), (5, 300), (5, 500)]
PLOT_SERVERS = [1, 3, 5, 7]
PLOT_AGENTS = [0, 10, 100, 500]
GOAL_RATIO = 1.3
SAME = ("types", "calls", "dependency_edges", "secret_inputs", "input_bytes")


OUT = HERE / "out"  # scratch (git-ignored): raw results, bytecode cache
# Children write and reuse bytecode under benchmarks/out/pycache, as a Pulumi project's venv
# does in __pycache__ after its first run: the numbers are the steady state, not the first
# run after an edit (which also compiles components/ from source; measured separately).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPYCACHEPREFIX"] = str(OUT / "pycache")


EXTRA: list[str] = []  # --gc-off, passed on to every measured run


def child(*args: str, env: dict | None = None, seed: int = 0) -> dict:
    # The hash seed changes set and dict order inside the SDK, and with it the run time by up
    # to +-25% at small sizes: rep i runs project and floor with the same seed i.
    out = subprocess.run(
        [sys.executable, str(HERE / "measure.py"), *args, *EXTRA],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**(env or ENV), "PYTHONHASHSEED": str(seed)},
    )
    if out.returncode:
        sys.exit(f"measure.py {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout)


def reps_for(agents: int, quick: bool) -> int:
    if quick:
        return 1
    return 21 if agents <= 10 else 7 if agents <= 100 else 5 if agents <= 300 else 3


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = next(
        (
            int(line.split()[1]) // 2**20
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        None,
    )
    from importlib.metadata import version

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        **{pkg: version(pkg) for pkg in ("pulumi", "pulumi_aws", "pulumi_command", "pulumi_random", "pulumi_tls")},
    }


def code_state() -> dict:
    """Which program was measured: the commit, and a digest of components/ and __main__.py as
    they are on disk (other people may be editing them)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted([ROOT / "__main__.py", *(ROOT / "components").rglob("*")]):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    git = subprocess.run(
        ["git", "status", "--porcelain", "--", "components", "__main__.py"], capture_output=True, text=True, cwd=ROOT
    )
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return {
        "commit": head.stdout.strip() or None,
        "components_digest": digest.hexdigest()[:16],
        "uncommitted_changes": len(git.stdout.splitlines()),
    }


def bootstrap_ci(project: list[float], floor: list[float], rounds: int = 2000) -> tuple[float, float]:
    """90% interval of median(project) / median(floor), resampling each side's runs."""
    import random

    rng = random.Random(0)
    ratios = sorted(
        statistics.median(rng.choices(project, k=len(project))) / statistics.median(rng.choices(floor, k=len(floor)))
        for _ in range(rounds)
    )
    return round(ratios[int(0.05 * rounds)], 3), round(ratios[int(0.95 * rounds) - 1], 3)


def bench_size(servers: int, agents: int, reps: int, trace: bool, shape_file: str) -> dict:
    size = [str(servers), str(agents)]
    runs = {"project": [], "floor": []}
    # Not timed: the steps the floor replays, and the critical path of the recorded graph.
    graph = child("project", *size, "--shape-out", shape_file, "--graph")["critical_path"]
    for rep in range(reps):  # project and floor alternate, each pair with its own hash seed
        runs["project"].append(child("project", *size, seed=rep))
        runs["floor"].append(child("floor", *size, "--shape", shape_file, seed=rep))
    shape_arg = {"project": [], "floor": ["--shape", shape_file]}
    # One more run per side: Output operations counted, and (unless --quick) the traced memory peak.
    extra = {m: child(m, *size, "--count", *(["--tracemalloc"] if trace else []), *shape_arg[m]) for m in runs}
    work = {m: extra[m]["work"] for m in runs}
    p, f = runs["project"][-1], runs["floor"][-1]
    mismatch = {k: (p[k], f[k]) for k in SAME if p[k] != f[k]}
    row = {
        "servers": servers,
        "agents": agents,
        "reps": reps,
        "resources": sum(p["types"].values()),
        "types": p["types"],
        "mismatch": mismatch,
        "work": work,
        "load": [round(r["load"], 2) for m in ("project", "floor") for r in runs[m]],
        "critical_path": graph,
    }
    for metric in ("wall", "cpu", "peak_rss_mb", "rss_growth_mb"):
        for mode in ("project", "floor"):
            row[f"{mode}_{metric}"] = statistics.median(r[metric] for r in runs[mode])
            row[f"{mode}_{metric}_all"] = [round(r[metric], 4) for r in runs[mode]]
        row[f"{metric}_ratio"] = row[f"project_{metric}"] / row[f"floor_{metric}"]
        row[f"{metric}_ratio_ci90"] = bootstrap_ci(
            [r[metric] for r in runs["project"]], [r[metric] for r in runs["floor"]]
        )
    if trace:
        for mode in ("project", "floor"):
            row[f"{mode}_traced_mb"] = extra[mode]["traced_peak_mb"]
        row["traced_ratio"] = row["project_traced_mb"] / row["floor_traced_mb"]
    return row


def graph_sizes(done: set[tuple[int, int]]) -> list[dict]:
    todo = [f"{s}:{a}" for s in PLOT_SERVERS for a in PLOT_AGENTS if (s, a) not in done]
    out = subprocess.run(
        [sys.executable, str(HERE / "critical_path.py"), *todo], capture_output=True, text=True, cwd=ROOT, env=ENV
    )
    if out.returncode:
        sys.exit(f"critical_path.py failed:\n{out.stderr[-3000:]}")
    return [json.loads(line) for line in out.stdout.splitlines()]


def plot(paths: list[dict], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for s in sorted({p["servers"] for p in paths}):
        pts = sorted((p["agents"], p["modeled_seconds"] / 60) for p in paths if p["servers"] == s)
        ax.plot(*zip(*pts), marker="o", label=f"{s} server{'s' if s > 1 else ''}")
    ax.set(
        xlabel="agents (cluster size = servers + agents)",
        ylabel="modeled time to ready (min)",
        ylim=(0, None),
        title="Modeled time to a ready HA cluster (critical path of the recorded graph)",
    )
    ax.legend(title="servers")
    ax.grid(alpha=0.3)
    steps = [f"{k} {v} s" for k, v in DURATIONS.items() if v]
    half = (len(steps) + 1) // 2  # two lines: one would run off the figure
    fig.text(
        0.01, 0.01, ", ".join(steps[:half]) + ",\n" + ", ".join(steps[half:]) + "; unbounded parallelism", fontsize=7
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(target, dpi=110)


def markdown(result: dict) -> str:
    def ci(r, metric):
        low, high = r[f"{metric}_ratio_ci90"]
        return f"{low:.2f}-{high:.2f}"

    lines = [
        "| servers+agents | resources | runs | wall project / floor (s) | ratio | 90% CI "
        "| CPU project / floor (s) | ratio | peak RSS project / floor (MB) | ratio "
        "| RSS growth in the run (MB) | ratio | traced peak (MB) | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["sizes"]:
        traced = (
            f"{r['project_traced_mb']:.1f} / {r['floor_traced_mb']:.1f} | {r['traced_ratio']:.2f}x"
            if "traced_ratio" in r
            else "- | -"
        )
        lines.append(
            f"| {r['servers']}+{r['agents']} | {r['resources']} | {r['reps']} "
            f"| {r['project_wall']:.3f} / {r['floor_wall']:.3f} | **{r['wall_ratio']:.2f}x** | {ci(r, 'wall')} "
            f"| {r['project_cpu']:.3f} / {r['floor_cpu']:.3f} | {r['cpu_ratio']:.2f}x "
            f"| {r['project_peak_rss_mb']:.0f} / {r['floor_peak_rss_mb']:.0f} | {r['peak_rss_mb_ratio']:.2f}x "
            f"| {r['project_rss_growth_mb']:.0f} / {r['floor_rss_growth_mb']:.0f} | {r['rss_growth_mb_ratio']:.2f}x "
            f"| {traced} |"
        )
    rows = result["sizes"]
    lines += [
        "",
        f"Of the project's time, importing components/ (k3s_ha) takes {1000 * result['component_import_s']:.0f} ms "
        f"with its bytecode cached ({1000 * result['component_import_cold_s']:.0f} ms on a first run, compiling "
        "from source; median of 5 fresh processes each): a fixed cost the floor does not have.",
        "",
        "Marginal cost per added node (wall, ms/node, between consecutive sizes):",
        "",
        "| from -> to | project | floor |",
        "|---|---:|---:|",
    ]
    rows = result["sizes"]
    for a, b in zip(rows, rows[1:]):
        dn = (b["servers"] + b["agents"]) - (a["servers"] + a["agents"])
        lines.append(
            f"| {a['servers']}+{a['agents']} -> {b['servers']}+{b['agents']} "
            f"| {1000 * (b['project_wall'] - a['project_wall']) / dn:.1f} "
            f"| {1000 * (b['floor_wall'] - a['floor_wall']) / dn:.1f} |"
        )
    lines += [
        "",
        "Work done (deterministic counts: Output operations and asyncio tasks created, project / floor):",
        "",
        "| size | tasks | Output.apply | Output.all | Output.secret | Output.from_input |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        w = r["work"]
        lines.append(
            f"| {r['servers']}+{r['agents']} | "
            + " | ".join(
                f"{w['project'].get(k, 0)} / {w['floor'].get(k, 0)}"
                for k in ("tasks", "apply", "all", "secret", "from_input")
            )
            + " |"
        )
    if len(rows) > 1:
        a, b = rows[-2], rows[-1]
        dn = (b["servers"] + b["agents"]) - (a["servers"] + a["agents"])
        lines.append(
            f"| per added node ({a['servers']}+{a['agents']} -> {b['servers']}+{b['agents']}) | "
            + " | ".join(
                f"{(b['work']['project'].get(k, 0) - a['work']['project'].get(k, 0)) / dn:.1f} / "
                f"{(b['work']['floor'].get(k, 0) - a['work']['floor'].get(k, 0)) / dn:.1f}"
                for k in ("tasks", "apply", "all", "secret", "from_input")
            )
            + " |"
        )
    lines += [
        "",
        "Critical path (modeled; " + ASSUMPTIONS + "):",
        "",
        "| servers+agents | modeled time to ready | expected: boot + download + init + (S-1) joins + agent wave + members reconcile "
        "+ short steps on the path | remote steps on it | longest chain of node starts | longest chain of remote steps |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for p in sorted(result["critical_paths"], key=lambda p: (p["servers"], p["agents"])):
        lines.append(
            f"| {p['servers']}+{p['agents']} | {p['modeled_seconds']} s ({p['modeled_seconds'] / 60:.1f} min) "
            f"| {p['expected_seconds']} s | {p['remote_steps_on_path']} | {p['longest_start_chain']} "
            f"| {p['longest_remote_chain']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one repetition per size, no tracemalloc (a smoke run)")
    parser.add_argument("--sizes", help="e.g. 3:0,5:100 (default: {})".format(",".join(f"{s}:{a}" for s, a in SIZES)))
    parser.add_argument(
        "--gc-off",
        action="store_true",
        help="diagnostic: measure with Python's cyclic garbage collector off (less noise, no GC pauses)",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the critical-path sizes and the plot")
    args = parser.parse_args()
    if args.gc_off:
        EXTRA.append("--gc-off")
    sizes = [tuple(map(int, s.split(":"))) for s in args.sizes.split(",")] if args.sizes else SIZES
    started = time.perf_counter()
    result = {
        "machine": machine(),
        "code": code_state(),
        "durations_s": DURATIONS,
        "assumptions": ASSUMPTIONS,
        "sizes": [],
    }
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        child("project", "3", "1", "--shape-out", f"{tmp}/shape.json")  # warm-up: fills the bytecode cache
        child("floor", "3", "1", "--shape", f"{tmp}/shape.json")
        for servers, agents in sizes:
            row = bench_size(servers, agents, reps_for(agents, args.quick), not args.quick, f"{tmp}/shape.json")
            result["sizes"].append(row)
            print(
                f"{servers}+{agents}: wall {row['project_wall']:.2f}s vs floor {row['floor_wall']:.2f}s "
                f"({row['wall_ratio']:.2f}x), cpu {row['cpu_ratio']:.2f}x, peak RSS {row['peak_rss_mb_ratio']:.2f}x"
                + (f", MISMATCH {row['mismatch']}" if row["mismatch"] else ""),
                flush=True,
            )
    result["component_import_s"] = statistics.median(child("import", "0", "0")["wall"] for _ in range(5))
    with tempfile.TemporaryDirectory() as empty:  # no bytecode: compiled from source, as on a first run
        cold = {**ENV, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": empty}
        result["component_import_cold_s"] = statistics.median(
            child("import", "0", "0", env=cold)["wall"] for _ in range(5)
        )
    paths = [r["critical_path"] for r in result["sizes"]]
    if not args.no_plot:
        paths += graph_sizes({(p["servers"], p["agents"]) for p in paths})
    result["critical_paths"] = paths
    result["seconds"] = time.perf_counter() - started
    if code_state() != result["code"]:
        result["code"]["changed_during_run"] = True
        print("WARNING: components/ changed on disk during the run; re-run for clean numbers")
    result["gc_off"] = args.gc_off
    suffix = "-gc-off" if args.gc_off else ""
    (OUT / f"results{suffix}.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.sizes or args.quick or args.gc_off or args.no_plot:  # a partial or diagnostic run: keep the report's files
        (OUT / f"results{suffix}.md").write_text(markdown(result))
    else:
        (HERE / "results.md").write_text(markdown(result))
        plot(paths, HERE / "time_to_ready.png")
    print(markdown(result))
    print(f"done in {result['seconds']:.0f} s; results in benchmarks/results.md (full runs) and benchmarks/out/")

    failures = []
    for r in result["sizes"]:
        if r["mismatch"]:
            failures.append(f"{r['servers']}+{r['agents']}: floor out of step with the project: {r['mismatch']}")
        for metric in ("wall", "cpu", "peak_rss_mb"):
            if r[f"{metric}_ratio"] > GOAL_RATIO:
                failures.append(f"{r['servers']}+{r['agents']}: {metric} {r[f'{metric}_ratio']:.2f}x the floor")
    for p in paths:
        if p["modeled_seconds"] != p["expected_seconds"]:
            failures.append(f"{p['servers']}+{p['agents']}: critical path {p['path_kinds']} is not the expected one")
        if p["longest_start_chain"] > p["servers"] + (1 if p["agents"] else 0):
            failures.append(f"{p['servers']}+{p['agents']}: a chain passes {p['longest_start_chain']} node starts")
    for f in failures:
        print("GOAL MISSED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
