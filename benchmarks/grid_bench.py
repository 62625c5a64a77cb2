"""End-to-end throughput and round trip of a grid, as a user sees them.

    python benchmarks/grid_bench.py                       # starts `htcgrid up` (SQLite + files)
    python benchmarks/grid_bench.py --url http://host:port  # an already running grid

Prints: tasks/s for one session of N no-op tasks (submit → all results collected) (W1), the
median/p99 of single-task submit → result round trips (W5), and MB/s for a session of tasks
with 100 KiB of data in and out (W4: 500 tasks, each a distinct base64 text of 100 KiB of
random bytes that the echo handler returns; both directions are counted, as raw bytes).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import htcgrid


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
        (result,) = grid.submit([i]).results()
        times.append(time.perf_counter() - start)
        assert result.output == i
    return times


def payload_throughput(grid: htcgrid.Client, n: int, kib: int) -> tuple[float, float]:
    """Seconds for ``n`` tasks of ``kib`` KiB in and out, and the MB (1e6 bytes) moved."""
    tasks = [base64.b64encode(os.urandom(kib * 1024)).decode() for _ in range(n)]
    start = time.perf_counter()
    results = grid.submit(tasks).results()
    elapsed = time.perf_counter() - start
    assert [r.output for r in results] == tasks, "an output differs from its input"
    return elapsed, 2 * n * kib * 1024 / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running grid (default: start `htcgrid up`)")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--agents", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs (best is reported)")
    parser.add_argument("--payload-tasks", type=int, default=500, help="W4 tasks (0: skip)")
    parser.add_argument("--payload-kib", type=int, default=100, help="W4 KiB in and out per task")
    args = parser.parse_args()
    grid_cm = (
        contextlib.nullcontext((args.url, None))
        if args.url
        else local_grid(args.slots, args.agents, [])
    )
    with grid_cm as (url, token), htcgrid.connect(url, token=token) as grid:
        round_trips(grid, 5)  # warm up workers and connections
        runs = [throughput(grid, args.tasks) for _ in range(args.repeat)]
        best = min(runs)
        rtt = sorted(round_trips(grid, args.round_trips))
        moved = [
            payload_throughput(grid, args.payload_tasks, args.payload_kib)
            for _ in range(args.repeat if args.payload_tasks else 0)
        ]
        print(f"grid: {url}")
        print(
            f"throughput: {args.tasks} no-op tasks in {best:.2f} s = {args.tasks / best:,.0f} tasks/s "
            f"(runs: {', '.join(f'{r:.2f}' for r in runs)} s)"
        )
        print(
            f"round trip: median {statistics.median(rtt) * 1000:.1f} ms, "
            f"p99 {rtt[int(len(rtt) * 0.99) - 1] * 1000:.1f} ms over {len(rtt)} tasks"
        )
        if moved:
            seconds, mb = min(moved)
            print(
                f"payloads: {args.payload_tasks} tasks x {args.payload_kib} KiB in and out, "
                f"{mb:.1f} MB in {seconds:.2f} s = {mb / seconds:,.0f} MB/s "
                f"(runs: {', '.join(f'{s:.2f}' for s, _ in moved)} s)"
            )


if __name__ == "__main__":
    main()
