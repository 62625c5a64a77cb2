"""End-to-end workloads of a grid, as a user sees them over HTTP with an API key.

    python benchmarks/grid_bench.py                         # W1, W5, W4 on `htcgrid up` (SQLite)
    python benchmarks/grid_bench.py --workloads all         # and W2, W3, W7 (a grid each)
    python benchmarks/grid_bench.py --scale 1000,10000,100000,1000000   # W6
    python benchmarks/grid_bench.py --url http://host:port  # an already running grid

W1: one session of N no-op tasks, submit → every result collected, tasks/s. W5: sequential
single-task round trips, submit → result, p50/p99. W4: 500 tasks of 100 KiB of base64 text in
and out, MB/s (both directions, raw bytes). W2: 2,000 tasks of 5 ms of CPU on 2 slots; W3: 1,000
tasks sleeping 50 ms on 16 slots; W7: 2,000 tasks waiting 1-10 ms, 1 % of them 1-3 s, on 4 slots
(waiting, as I/O does: four CPU-bound slots cannot run in parallel on two cores): efficiency =
the ideal schedule's length / the measured one. W6: one session of each size on a
fresh grid, time per task and the peak RSS of the server and of the agents.

Each figure is the median of ``--repeat`` runs (min and max beside it), with the CPU time of the
whole process tree (this client, the server, agents, workers) per task and the load average
(other work on the machine moves wall times; CPU per task moves less).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import heapq
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import htcgrid

HERE = Path(__file__).resolve().parent
TIMED_HANDLER = ["--handler", "bench_handlers.work", "--path", str(HERE)]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def local_grid(slots: int, agents: int, extra: list[str]) -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "htcgrid", "up", "--port", "0", "--data-dir", tmp,
             "--slots", str(slots), "--agents", str(agents), *extra],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        credentials = json.loads((Path(tmp) / "admin-credentials.json").read_text())
        try:
            yield url, credentials["api_key"]
        finally:
            proc.terminate()
            proc.wait(timeout=60)


# ---- the process tree: CPU time and peak memory, from /proc ---------------------------------


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def tree(root: int) -> list[int]:
    """``root`` and every process below it (agents run in sessions of their own, but are
    still children of the process that started them)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = _stat(pid)
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def command_of(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace")


@dataclass
class Run:
    seconds: float
    cpu_seconds: float
    load: float
    extra: Any = None


def timed(work: Callable[[], Any]) -> Run:
    """Wall and whole-tree CPU seconds of ``work()``, and the 1-minute load average after."""
    pids = tree(os.getpid())
    cpu0, start = cpu_seconds(pids), time.perf_counter()
    extra = work()
    seconds = time.perf_counter() - start
    return Run(seconds, cpu_seconds(pids) - cpu0, os.getloadavg()[0], extra)


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    med = fmt.format(statistics.median(values))
    return f"{med} (min {fmt.format(min(values))}, max {fmt.format(max(values))})"


# ---- workloads --------------------------------------------------------------------------------


def throughput(grid: htcgrid.Client, n: int) -> float:
    start = time.perf_counter()
    session = grid.submit([{}] * n)
    results = session.results()
    elapsed = time.perf_counter() - start
    assert len(results) == n and all(r.ok for r in results), "not every task finished"
    return elapsed


def round_trips(grid: htcgrid.Client, count: int) -> list[float]:
    times = []
    for i in range(count):
        start = time.perf_counter()
        (result,) = grid.submit([i], wait=30).results()  # one request: the submit waits
        times.append(time.perf_counter() - start)
        assert result.output == i
    return times


def payload_throughput(grid: htcgrid.Client, n: int, kib: int) -> tuple[float, float]:
    """Seconds for ``n`` tasks of ``kib`` KiB in and out, and the MB (1e6 bytes) moved."""
    tasks = [base64.b64encode(os.urandom(kib * 1024)).decode() for _ in range(n)]
    start = time.perf_counter()
    session = grid.submit(tasks)
    results = session.results()
    elapsed = time.perf_counter() - start
    assert [r.output for r in results] == tasks, "an output differs from its input"
    # done with it, as retention would be: each run then starts from the same grid, not one
    # holding every earlier run's 100 MB (whose page cache the 2-core VM's memory pays for)
    grid.delete(session.id)
    return elapsed, 2 * n * kib * 1024 / 1e6


def timed_events(name: str, seed: int = 16) -> list[dict[str, float]]:
    """The tasks of W2, W3 or W7 (W7: exactly 1 % long, shuffled with a fixed seed)."""
    if name == "w2":
        return [{"cpu_ms": 5.0}] * 2000
    if name == "w3":
        return [{"sleep_ms": 50.0}] * 1000
    draw = random.Random(seed)
    lengths = [draw.uniform(1000, 3000) for _ in range(20)]
    lengths += [draw.uniform(1, 10) for _ in range(1980)]
    draw.shuffle(lengths)
    return [{"sleep_ms": ms} for ms in lengths]


TIMED_SLOTS = {"w2": 2, "w3": 16, "w7": 4}
TIMED_TITLES = {
    "w2": "W2 2,000 x 5 ms CPU, 2 slots",
    "w3": "W3 1,000 x 50 ms sleep, 16 slots",
    "w7": "W7 2,000 long-tailed waits (1-10 ms, 1 % 1-3 s), 4 slots",
}


def ideal_seconds(events: list[dict[str, float]], slots: int) -> float:
    """The ideal schedule's length: longest task first to the least loaded slot, knowing
    every length in advance (never below the work spread evenly, nor the longest task)."""
    lengths = sorted((e.get("cpu_ms", 0) + e.get("sleep_ms", 0)) / 1000 for e in events)
    loads = [0.0] * slots
    for length in reversed(lengths):
        heapq.heappush(loads, heapq.heappop(loads) + length)
    return max(loads)


def run_timed(grid: htcgrid.Client, events: list[dict[str, float]]) -> None:
    results = grid.submit(events).results()
    assert all(r.ok for r in results), "a timed task failed"


# ---- the report ---------------------------------------------------------------------------------


def report_w1(grid: htcgrid.Client, args: argparse.Namespace) -> None:
    with shares_of(args.tasks * args.repeat) as shares:
        runs = [timed(lambda: throughput(grid, args.tasks)) for _ in range(args.repeat)]
    rates = [args.tasks / r.seconds for r in runs]
    cpu = [r.cpu_seconds / args.tasks * 1000 for r in runs]
    print(
        f"W1 {args.tasks} no-op tasks: {spread(rates, '{:,.0f}')} tasks/s; "
        f"CPU {spread(cpu, '{:.3f}')} ms/task ({shares[0]}); load {runs[-1].load:.1f}",
        flush=True,
    )


def role_of(pid: int) -> str:
    if pid == os.getpid():
        return "client"
    command = command_of(pid)
    return "server" if " up " in command else "agent" if " agent " in command else "workers"


@contextlib.contextmanager
def shares_of(count: int) -> Iterator[list[str]]:
    """Each role's CPU (client, server, agent, workers) over the block, in ms per one of
    ``count``: ``shares[0]`` once the block has ended."""
    pids = tree(os.getpid())
    before = {p: cpu_seconds([p]) for p in pids}
    shares: list[str] = []
    yield shares
    roles: dict[str, float] = {}
    for p in set(pids) | set(tree(os.getpid())):  # workers started during the block count from 0
        with contextlib.suppress(OSError):
            roles[role_of(p)] = roles.get(role_of(p), 0) + cpu_seconds([p]) - before.get(p, 0)
    shares.append(", ".join(f"{r} {roles[r] / count * 1000:.2f}" for r in sorted(roles)))


def report_w5(grid: htcgrid.Client, args: argparse.Namespace) -> None:
    with shares_of(args.round_trips * args.repeat) as shares:
        runs = [
            timed(lambda: sorted(round_trips(grid, args.round_trips))) for _ in range(args.repeat)
        ]
    p50 = [statistics.median(r.extra) * 1000 for r in runs]
    p99 = [r.extra[max(0, int(len(r.extra) * 0.99) - 1)] * 1000 for r in runs]
    cpu = [r.cpu_seconds / args.round_trips * 1000 for r in runs]
    print(
        f"W5 {args.round_trips} round trips: p50 {spread(p50)} ms, p99 {spread(p99)} ms; "
        f"CPU {spread(cpu)} ms/round trip ({shares[0]}); load {runs[-1].load:.1f}",
        flush=True,
    )


def report_w4(grid: htcgrid.Client, args: argparse.Namespace) -> None:
    n, kib = args.payload_tasks, args.payload_kib
    with shares_of(n * args.repeat) as shares:
        runs = [timed(lambda: payload_throughput(grid, n, kib)) for _ in range(args.repeat)]
    rates = [r.extra[1] / r.extra[0] for r in runs]
    cpu = [r.cpu_seconds / n * 1000 for r in runs]
    print(
        f"W4 {n} x {kib} KiB in and out ({runs[0].extra[1]:.1f} MB): {spread(rates, '{:,.0f}')} "
        f"MB/s; CPU {spread(cpu)} ms/task ({shares[0]}); load {runs[-1].load:.1f}",
        flush=True,
    )


def report_timed(name: str, grid: htcgrid.Client, args: argparse.Namespace) -> None:
    events = timed_events(name)
    ideal = ideal_seconds(events, TIMED_SLOTS[name])
    with shares_of(len(events) * args.repeat) as shares:
        runs = [timed(lambda: run_timed(grid, events)) for _ in range(args.repeat)]
    efficiency = [ideal / r.seconds for r in runs]
    print(
        f"{TIMED_TITLES[name]}: efficiency {spread(efficiency, '{:.3f}')} "
        f"(ideal {ideal:.2f} s, median {statistics.median(r.seconds for r in runs):.2f} s); "
        f"CPU ms a task: {shares[0]}; load {runs[-1].load:.1f}",
        flush=True,
    )


def report_scale(sizes: list[int], args: argparse.Namespace) -> None:
    """W6: each size on a fresh grid, so each peak RSS belongs to that size alone."""
    for n in sizes:
        with (
            local_grid(args.slots, args.agents, []) as (url, token),
            htcgrid.connect(url, token=token) as grid,
        ):
            round_trips(grid, 5)  # workers started and warm, as in the other workloads
            run = timed(lambda: throughput(grid, n))  # noqa: B023 - called at once
            grid_pids = [p for p in tree(os.getpid()) if p != os.getpid()]
            server = next(p for p in grid_pids if " up " in command_of(p))
            agents = [p for p in grid_pids if " agent " in command_of(p)]
            print(
                f"W6 {n:,} no-op tasks: {run.seconds / n * 1e6:.1f} us/task "
                f"({n / run.seconds:,.0f} tasks/s), CPU {run.cpu_seconds / n * 1000:.3f} ms/task; "
                f"peak RSS: server {peak_rss_mib(server):.0f} MiB, agents "
                f"{sum(peak_rss_mib(p) for p in agents):.0f} MiB, client "
                f"{peak_rss_mib(os.getpid()):.0f} MiB (so far); load {run.load:.1f}",
                flush=True,
            )


def grid_for(
    url: str | None, slots: int, agents: int, extra: list[str]
) -> contextlib.AbstractContextManager[tuple[str, str | None]]:
    if url:
        return contextlib.nullcontext((url, None))
    return local_grid(slots, agents, extra)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running grid (default: start `htcgrid up`)")
    parser.add_argument("--token", help="its API key (with --url)")
    parser.add_argument("--workloads", default="w1,w5,w4", help="any of w1,w5,w4,w2,w3,w7; all")
    parser.add_argument("--tasks", type=int, default=10_000, help="W1 tasks")
    parser.add_argument("--round-trips", type=int, default=200, help="W5 round trips a run")
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1, help="W1, W5, W4, W6")
    parser.add_argument("--agents", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each workload (median)")
    parser.add_argument("--payload-tasks", type=int, default=500, help="W4 tasks")
    parser.add_argument("--payload-kib", type=int, default=100, help="W4 KiB in and out per task")
    parser.add_argument("--scale", help="W6 session sizes, e.g. 1000,10000,100000,1000000")
    args = parser.parse_args()
    chosen = ["w1", "w5", "w4", "w2", "w3", "w7"] if args.workloads == "all" else []
    chosen = chosen or [w.strip().lower() for w in args.workloads.split(",") if w.strip()]
    basic = [w for w in chosen if w in ("w1", "w5", "w4")]
    if basic:
        with (
            grid_for(args.url, args.slots, args.agents, []) as (url, token),
            htcgrid.connect(url, token=token or args.token) as grid,
        ):
            print(f"grid: {url}, {args.slots} slots", flush=True)
            round_trips(grid, 20)  # warm up workers and connections
            for name in basic:
                {"w1": report_w1, "w5": report_w5, "w4": report_w4}[name](grid, args)
    for name in (w for w in chosen if w in TIMED_SLOTS):
        with (
            grid_for(args.url, TIMED_SLOTS[name], args.agents, TIMED_HANDLER) as (url, token),
            htcgrid.connect(url, token=token or args.token) as grid,
        ):
            round_trips(grid, 5)
            report_timed(name, grid, args)
    if args.scale:
        report_scale([int(s) for s in args.scale.split(",")], args)


if __name__ == "__main__":
    main()
