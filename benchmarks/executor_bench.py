"""What an ``htcgrid.Executor`` task costs next to a plain task, end to end.

    python benchmarks/executor_bench.py                         # starts `htcgrid up`
    python benchmarks/executor_bench.py --url http://host:port  # a running grid

Prints, for N calls or events (best of --repeat runs, submit → every result in hand):
  plain        Client.submit of N events to the built-in echo, results collected
  named        Executor(url, function="default").map(events): the same tasks through futures
  pickled      Executor(url).map(fn, range(N)): N pickled Python calls, one task each
  chunked      the same with chunksize=100: N/100 tasks
and the median round trip of one call: Client.submit([x]).results() against
Executor.submit(fn, x).result().
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grid_bench import local_grid

import htcgrid


def square(x: int) -> int:
    return x * x


def best(runs: int, job: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    return min(times)


def median_ms(count: int, call: Callable[[int], object]) -> float:
    times = []
    for i in range(count):
        start = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running grid (default: start `htcgrid up`)")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--round-trips", type=int, default=100)
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.tasks
    grid_cm = (
        contextlib.nullcontext((args.url, None)) if args.url else local_grid(args.slots, 1, [])
    )
    with grid_cm as (url, token), htcgrid.connect(url, token=token) as grid:
        named = htcgrid.Executor(client=grid, function="default")
        python = htcgrid.Executor(client=grid)
        python.submit(square, 1).result(60)  # warm up workers and connections
        rows = {
            "plain": best(args.repeat, lambda: grid.submit(list(range(n))).results()),
            "named": best(args.repeat, lambda: list(named.map(range(n)))),
            "pickled": best(args.repeat, lambda: list(python.map(square, range(n)))),
            "chunked": best(args.repeat, lambda: list(python.map(square, range(n), chunksize=100))),
        }
        plain_rtt = median_ms(args.round_trips, lambda i: grid.submit([i]).results())
        executor_rtt = median_ms(args.round_trips, lambda i: python.submit(square, i).result())
        named.shutdown()
        python.shutdown()
    print(f"grid: {url}, {n} calls each, best of {args.repeat}")
    for name, seconds in rows.items():
        print(f"{name:>8}: {seconds:6.2f} s = {n / seconds:>8,.0f} calls/s")
    print(f"round trip: plain {plain_rtt:.1f} ms, Executor.submit {executor_rtt:.1f} ms (median)")


if __name__ == "__main__":
    main()
