"""What the task store's primitives for task graphs cost, and that they follow the batch, not
the session: ``release``, ``fail_held`` and ``cancel_tasks`` of a batch of K tasks in a session
whose every task is held, at two session sizes.

    python benchmarks/held_bench.py                     # memory, sqlite, postgresql, redis
    python benchmarks/held_bench.py --backends sqlite postgresql --sizes 10000 1000000

For each backend and size it creates one session of N held tasks, then releases K of them
(spread over the session), fails K others with ``fail_held`` and cancels K more with
``cancel_tasks``, each as ``--rounds`` calls of K/rounds indexes, and prints microseconds per
task of this process's CPU time (all of the work for memory and SQLite, the client's side only
for PostgreSQL and Redis) and of wall time. The same figures at both sizes mean a call costs
in proportion to its batch. Redis is capped at 100,000 tasks (a shared server is blocked
while a bigger session is written). PostgreSQL and Redis come from HTCGRID_BENCH_POSTGRES_URL /
HTCGRID_BENCH_REDIS_URL; each run uses a fresh schema or key prefix and removes it after.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from share_bench import store_for

from htcgrid.models import ErrorInfo, NewTask, SessionSpec, TaskState
from htcgrid.store import TaskStore

NOW = 1_000_000.0
REDIS_MAX_TASKS = 100_000
UPSTREAM = ErrorInfo("DependencyFailed", "dependency bench_0 failed")


def timed(call: Callable[[list[int]], Any], chosen: list[list[int]]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for batch in chosen:
        call(batch)
    return time.process_time() - cpu, time.perf_counter() - wall


def make(store: TaskStore, n: int) -> None:
    spec = SessionSpec(id="bench", task_count=n, owner="bench", content_hash="h")
    tasks = [NewTask(i, 0, b"1", held=True) for i in range(n)]
    assert store.create_session(spec, tasks, NOW)


def batches(n: int, k: int, rounds: int, offset: int) -> list[list[int]]:
    """``k`` indexes spread over the session (every ``n // k``-th, from ``offset``), in
    ``rounds`` calls."""
    step = max(3, n // k)
    chosen = [i for i in range(offset, n, step)][:k]
    size = max(1, len(chosen) // rounds)
    return [chosen[i : i + size] for i in range(0, len(chosen), size)]


def run(store: TaskStore, n: int, k: int, rounds: int) -> dict[str, tuple[float, float]]:
    make(store, n)
    figures: dict[str, tuple[float, float]] = {}
    calls: dict[str, Callable[[list[int]], Any]] = {
        "release": lambda b: store.release("bench", b, NOW),
        "fail_held": lambda b: store.fail_held("bench", [(i, UPSTREAM) for i in b], NOW),
        "cancel_tasks": lambda b: store.cancel_tasks("bench", b, NOW),
    }
    for offset, (name, call) in enumerate(calls.items()):
        chosen = batches(n, k, rounds, offset)
        cpu, wall = timed(call, chosen)
        done = sum(len(b) for b in chosen)
        figures[name] = (cpu / done * 1e6, wall / done * 1e6)
    counts = store.count_states("bench")
    for state, offset in ((TaskState.FAILED, 1), (TaskState.CANCELLED, 2)):
        assert counts[state] == sum(map(len, batches(n, k, rounds, offset))), counts
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends", nargs="+", default=["memory", "sqlite", "postgresql", "redis"]
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 1_000_000])
    parser.add_argument("--batch", type=int, default=1000, help="K: tasks per primitive")
    parser.add_argument("--rounds", type=int, default=10, help="calls the K tasks are split into")
    args = parser.parse_args()
    print(f"{'backend':<11}{'tasks':>10}  {'primitive':<13}{'us/task CPU':>12}{'us/task wall':>13}")
    for kind in args.backends:
        for n in args.sizes:
            if kind == "redis" and n > REDIS_MAX_TASKS:
                print(f"{kind:<11}{n:>10}  skipped: above {REDIS_MAX_TASKS} tasks on Redis")
                continue
            with store_for(kind) as store:
                figures = run(store, n, args.batch, args.rounds)
            for name, (cpu, wall) in figures.items():
                print(f"{kind:<11}{n:>10}  {name:<13}{cpu:>12.1f}{wall:>13.1f}")


if __name__ == "__main__":
    main()
