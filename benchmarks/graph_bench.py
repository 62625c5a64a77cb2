"""Task graphs on `htcgrid up` (SQLite + files), over HTTP with an API key.

    python benchmarks/graph_bench.py                      # G1 at a width of 10,000
    python benchmarks/graph_bench.py --width 100000       # a wider G1
    python benchmarks/graph_bench.py --workloads g2       # G2: 1,000,000 tasks, 1,000,000 edges

G1: a wide fan-out/fan-in graph (one root, ``--width`` tasks that each depend on it, one sink that
depends on all of them: width + 2 tasks, 2 x width edges) against a flat session of the same
number of tasks, on the same grid: tasks/s from submit to the last result, and the CPU time of
the whole process tree (client, server with its releaser, agents, workers) per task.

G2: one session of 1,000,000 no-op tasks with 1,000,000 edges (task i depends on task
(i - 1) // 2, a binary tree 20 levels deep, and the last task on task 0 too): the submit's
time (uploaded in parts, checked and stored whole), the run's time to the last result, and the
peak RSS of the server (API, TTL checker, releaser) and of the agents.

Wall times move with the machine's load (printed); CPU per task moves less.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grid_bench import command_of, local_grid, peak_rss_mib, timed, tree

import htcgrid


def fan(width: int) -> list[list[int] | None]:
    """Root 0, tasks 1..width on it, the sink on all of them."""
    return [None] + [[0]] * width + [list(range(1, width + 1))]


def run(grid: htcgrid.Client, n: int, deps: list[Any] | None) -> float:
    start = time.perf_counter()
    session = grid.submit([{}] * n, deps=deps)
    results = session.results()
    assert len(results) == n and all(r.ok for r in results), "not every task finished"
    return time.perf_counter() - start


def report_g1(grid: htcgrid.Client, width: int, repeat: int) -> None:
    n = width + 2
    for name, deps in (("flat", None), ("fan-out/fan-in", fan(width))):
        runs = [timed(lambda d=deps: run(grid, n, d)) for _ in range(repeat)]  # type: ignore[misc]
        best = min(runs, key=lambda r: r.seconds)
        print(
            f"G1 {name} {n:,} tasks ({0 if deps is None else 2 * width:,} edges): "
            f"{n / best.seconds:,.0f} tasks/s (best of {repeat}; all: "
            f"{', '.join(f'{n / r.seconds:,.0f}' for r in runs)}), CPU "
            f"{best.cpu_seconds / n * 1000:.3f} ms/task; load {best.load:.1f}",
            flush=True,
        )


def tree_deps(n: int) -> list[list[int] | None]:
    deps: list[list[int] | None] = [None] + [[(i - 1) // 2] for i in range(1, n)]
    last = deps[-1]
    assert last is not None
    last.append(0)
    return deps


def report_g2(grid: htcgrid.Client, n: int) -> None:
    deps = tree_deps(n)
    edges = sum(len(d) for d in deps if d)
    start = time.perf_counter()
    session = grid.submit([{}] * n, deps=deps)
    submitted = time.perf_counter() - start
    del deps
    counts = session.wait()["counts"]
    ran = time.perf_counter() - start - submitted
    assert counts["finished"] == n, counts
    grid_pids = [p for p in tree(os.getpid()) if p != os.getpid()]
    server = next(p for p in grid_pids if " up " in command_of(p))
    agents = [p for p in grid_pids if " agent " in command_of(p)]
    print(
        f"G2 {n:,} tasks, {edges:,} edges: submit {submitted:.1f} s, run {ran:.1f} s "
        f"({n / ran:,.0f} tasks/s); peak RSS: server {peak_rss_mib(server):.0f} MiB, agents "
        f"{sum(peak_rss_mib(p) for p in agents):.0f} MiB; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workloads", default="g1", help="g1, g2 or g1,g2")
    parser.add_argument("--width", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=1_000_000, help="G2's size")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--agents", type=int, default=1)
    args = parser.parse_args()
    wanted = set(args.workloads.split(","))
    with (
        local_grid(args.slots, args.agents, []) as (url, key),
        htcgrid.connect(url, api_key=key) as grid,
    ):
        run(grid, 10, None)  # workers started and warm
        if "g1" in wanted:
            report_g1(grid, args.width, args.repeat)
        if "g2" in wanted:
            report_g2(grid, args.tasks)


if __name__ == "__main__":
    main()
