"""What fair share costs a claim: the task store's claim and complete per task, with one owner
(the plain claim) next to two and ten owners sharing the grid (the rule at work).

    python benchmarks/share_bench.py                          # memory, sqlite, postgresql, redis
    python benchmarks/share_bench.py --backends sqlite --tasks 50000 --batch 32

Each scenario creates N tasks, split evenly between the owners (each owner its own session,
submitted in turn), then claims ``--batch`` at a time and completes each batch, as agents do,
until every task is done. It prints microseconds per task of this process's CPU time (which is
all of the work for memory and SQLite, the client's side only for PostgreSQL and Redis) and of
wall time, for the claims and the completions apart. PostgreSQL and Redis come from
HTCGRID_BENCH_POSTGRES_URL / HTCGRID_BENCH_REDIS_URL; each run uses a fresh schema or key
prefix and removes it after. Run it from a checkout of an older htcgrid (PYTHONPATH) for the
claim as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from backends_bench import backend

from htcgrid.models import NewTask, Outcome, SessionSpec, TaskState
from htcgrid.store import TaskStore, open_store

NOW = 1_000_000.0


@contextlib.contextmanager
def store_for(kind: str) -> Iterator[TaskStore]:
    if kind == "memory":
        store = open_store("memory://")
        yield store
        store.close()
        return
    with backend(kind) as url:
        store = open_store(url)
        try:
            yield store
        finally:
            store.close()


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    value = fn()
    return value, time.process_time() - cpu, time.perf_counter() - wall


def scenario(store: TaskStore, owners: int, tasks: int, batch: int) -> dict[str, float]:
    per_owner = tasks // owners
    for o in range(owners):
        spec = SessionSpec(
            id=f"bench-{o}", task_count=per_owner, owner=f"user{o}", content_hash=f"h{o}"
        )
        store.create_session(spec, [NewTask(i, 0, b"1") for i in range(per_owner)], NOW)
    spent = dict.fromkeys(("claim_cpu", "claim_wall", "complete_cpu", "complete_wall"), 0.0)
    done = 0
    while done < per_owner * owners:
        leases, cpu, wall = timed(lambda: store.claim("bench", batch, 600, NOW))
        spent["claim_cpu"] += cpu
        spent["claim_wall"] += wall
        if not leases:
            raise RuntimeError("the queue ran dry before every task was claimed")
        outcomes = [Outcome(x.task_id, x.attempt, TaskState.FINISHED, b"1") for x in leases]
        _, cpu, wall = timed(lambda o=outcomes: store.complete("bench", o, NOW))
        spent["complete_cpu"] += cpu
        spent["complete_wall"] += wall
        done += len(leases)
    return {name: seconds / done * 1e6 for name, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="memory,sqlite,postgresql,redis")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--owners", default="1,2,10")
    args = parser.parse_args()
    print(f"{args.tasks} tasks, claims of {args.batch}; microseconds per task")
    print(f"{'backend':<11}{'owners':>7}{'claim cpu':>11}{'claim wall':>12}"
          f"{'complete cpu':>14}{'complete wall':>15}")  # fmt: skip
    for kind in args.backends.split(","):
        for owners in (int(n) for n in args.owners.split(",")):
            with store_for(kind) as store:
                r = scenario(store, owners, args.tasks, args.batch)
            print(
                f"{kind:<11}{owners:>7}{r['claim_cpu']:>11.1f}{r['claim_wall']:>12.1f}"
                f"{r['complete_cpu']:>14.1f}{r['complete_wall']:>15.1f}"
            )


if __name__ == "__main__":
    main()
