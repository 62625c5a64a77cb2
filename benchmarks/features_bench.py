"""What each feature of issue 17 costs a task, next to a plain task, on one grid.

    python benchmarks/features_bench.py                          # `htcgrid up` on SQLite
    python benchmarks/features_bench.py --tasks 2000 --repeat 3 --json features.jsonl
    python benchmarks/features_bench.py --url postgresql://127.0.0.1:5432/test   # or redis://…

Every row runs the same N no-op tasks (``--tasks``) on ``--slots`` workers, submit → every
result collected over HTTP with an API key:
  plain         one session
  deps          each task depends on one task of an earlier, finished session
  fan-in 8      the first ninth are roots; every other task depends on 8 of them
  common 1 MiB  one session with 1 MiB of common data, which every task reads
  fair share    two users at once (shares 1:1), N/2 tasks each: total throughput, and each
                user's part of the tasks finished while both had work
  memo miss     cache=True, new inputs (each looked up, run, its answer recorded)
  memo hit      the same inputs again (each answered from the cache, no worker)
  map chunk 1   Executor.map of a pickled Python function, one call a task
  map chunk 64  the same with chunksize=64
Each figure is the median of ``--repeat`` runs (min and max beside it): wall time and the CPU
time of the whole process tree (this client, the server, agents and workers) per task. Rows
run in turn within each repeat, so the machine's load falls on all of them alike; CPU per task
moves less with the load than wall time. ``--url`` starts `htcgrid server` and `htcgrid agent`
on a running PostgreSQL or Redis, in a fresh schema or key prefix removed after (its own
database server's CPU is not counted).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import backends_bench
import httpx
from features_handlers import nap, noop
from grid_bench import CLOCK_TICKS, Run, _stat, local_grid, tree

import htcgrid

HERE = Path(__file__).resolve().parent
HANDLER = ["--handler", "features_handlers.work", "--path", str(HERE)]
PASSWORD = "features bench password"
SETTLE = 500  # no-op tasks after a warm-up's naps: the agent's estimate of a task's length
ROWS = [
    "plain", "deps", "fan-in 8", "common 1 MiB", "fair share",
    "memo miss", "memo hit", "map chunk 1", "map chunk 64",
]  # fmt: skip


def events(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"i": i, **extra} for i in range(n)]


def fan_in(n: int) -> list[list[int] | None]:
    roots = max(8, n // 9)
    return [None] * roots + [[(i + k) % roots for k in range(8)] for i in range(n - roots)]


def collect(session: htcgrid.Session, n: int, cached: int | None = None) -> None:
    results = session.results(timeout=3600)
    assert len(results) == n and all(r.ok for r in results), "not every task finished"
    if cached is not None:
        got = sum(r.cached for r in results)
        assert got == cached, f"{got} of {n} tasks answered from the cache, not {cached}"


class Bench:
    """The rows, each a set-up (not timed) that returns the work to time."""

    def __init__(self, url: str, key: str, n: int, slots: int) -> None:
        self.url, self.key, self.n, self.slots = url, key, n, slots
        self.grid = htcgrid.connect(url, api_key=key)
        self.users = [self.add_user(name) for name in ("alice", "bob")]
        self.executor = htcgrid.Executor(client=self.grid)
        self.salt = ""

    def add_user(self, name: str) -> htcgrid.Client:
        heads = {"x-api-key": self.key}
        body = {"name": name, "password": PASSWORD, "role": "user"}
        httpx.post(f"{self.url}/v1/users", json=body, headers=heads).raise_for_status()
        share = httpx.put(f"{self.url}/v1/users/{name}/share", json={"share": 1}, headers=heads)
        share.raise_for_status()
        made = httpx.post(f"{self.url}/v1/keys", json={"user": name}, headers=heads)
        made.raise_for_status()
        return htcgrid.connect(self.url, api_key=made.json()["api_key"])

    def close(self) -> None:
        self.executor.shutdown()
        for client in (self.grid, *self.users):
            client.close()

    def work(self, row: str) -> Callable[[], Any]:
        g, n = self.grid, self.n
        if row == "plain":  # after the Executor rows: the slots' workers run the handler again
            self.warm(
                lambda k: g.submit(events(k, nap_ms=20)).outputs(timeout=600),
                lambda: collect(g.submit(events(SETTLE)), SETTLE),
            )
            return lambda: collect(g.submit(events(n)), n)
        if row == "deps":
            earlier = g.submit(events(n))
            collect(earlier, n)
            deps = [[task_id] for task_id in earlier.task_ids]
            return lambda: collect(g.submit(events(n), deps=deps), n)
        if row == "fan-in 8":
            return lambda: collect(g.submit(events(n), deps=fan_in(n)), n)
        if row == "common 1 MiB":
            blob = os.urandom(2**20)
            return lambda: collect(g.submit(events(n, common=True), common=blob), n)
        if row == "fair share":
            return self.fair_share
        if row == "memo miss":
            self.salt = uuid.uuid4().hex  # new inputs each repeat: a miss, then hits
            return lambda: collect(g.submit(events(n, salt=self.salt), cache=True), n, 0)
        if row == "memo hit":
            return lambda: collect(g.submit(events(n, salt=self.salt), cache=True), n, n)
        if row.startswith("map chunk "):
            chunk = int(row.rsplit(" ", 1)[1])
            self.warm(
                lambda k: list(self.executor.map(nap, range(k), timeout=600)),
                lambda: list(self.executor.map(noop, range(SETTLE), timeout=600)),
            )
            return lambda: self.mapped(chunk)
        raise ValueError(f"unknown row {row!r}")

    def warm(self, run: Callable[[int], list[int]], settle: Callable[[], object]) -> None:
        """Run tasks that answer their worker's pid until every slot's worker has answered:
        the Executor rows' pickled runtime and the handler need workers of their own. Then
        ``settle`` runs no-op tasks, so the agent's prefetch depth is a no-op task's again."""
        for size in (8, 32, 128):
            if len(set(run(size * self.slots))) >= self.slots:
                break
        settle()

    def mapped(self, chunk: int) -> None:
        outputs = list(self.executor.map(noop, range(self.n), chunksize=chunk, timeout=3600))
        assert outputs == list(range(self.n)), "Executor.map answered wrong values"

    def fair_share(self) -> dict[str, float]:
        """Both users submit N/2 at once; each one's part of the tasks that finished before
        the first of them was done (while both had work), seen as results reach the client."""
        times: list[list[float]] = [[], []]

        def run(user: int) -> None:
            session = self.users[user].submit(events(self.n // 2, user=user))
            times[user] = [time.perf_counter() for r in session.as_completed(3600) if r.ok]

        threads = [threading.Thread(target=run, args=(u,)) for u in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(len(t) == self.n // 2 for t in times), "not every task finished"
        both_busy = min(max(t) for t in times)
        parts = [sum(1 for s in t if s <= both_busy) for t in times]
        return {"alice": parts[0] / sum(parts), "bob": parts[1] / sum(parts)}


def tree_cpu_seconds() -> float:
    """CPU time of this process and every process below it, with that of the children they
    have reaped (a worker replaced while timing still counts; none counts twice)."""
    ticks = 0
    for pid in tree(os.getpid()):
        with contextlib.suppress(OSError, IndexError):
            ticks += sum(int(field) for field in _stat(pid)[11:15])  # u, s, cu, cs time
    return ticks / CLOCK_TICKS


def timed(work: Callable[[], Any]) -> Run:
    cpu, start = tree_cpu_seconds(), time.perf_counter()
    extra = work()
    seconds = time.perf_counter() - start
    return Run(seconds, tree_cpu_seconds() - cpu, os.getloadavg()[0], extra)


# ---- grids --------------------------------------------------------------------------------


def run_cli(*args: str) -> str:
    command = [sys.executable, "-m", "htcgrid", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


@contextlib.contextmanager
def grid_on(url: str, slots: int) -> Iterator[tuple[str, str]]:
    """`htcgrid server` (auth on) and `htcgrid agent` on a fresh schema or key prefix of the
    PostgreSQL or Redis at ``url``, and an admin's API key."""
    kind = url.split(":", 1)[0].split("+", 1)[0]
    kind = "postgresql" if kind == "postgres" else kind
    if kind not in ("postgresql", "redis"):
        raise SystemExit(f"--url: a postgresql:// or redis:// URL, not {url!r}")
    setattr(backends_bench, "POSTGRES" if kind == "postgresql" else "REDIS", url)
    with backends_bench.backend(kind) as store:
        run_cli("user", "add", "admin", "--admin", "--password", PASSWORD, "--url", store)
        key = run_cli("key", "create", "--user", "admin", "--url", store).split()[-1]
        htcgrid_cmd = [sys.executable, "-m", "htcgrid"]
        server = subprocess.Popen(
            [*htcgrid_cmd, "server", "--url", store, "--port", "0"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        agent_cmd = [*htcgrid_cmd, "agent", "--url", store, "--slots", str(slots), *HANDLER]
        agent = subprocess.Popen(agent_cmd)
        try:
            assert server.stdout is not None
            yield server.stdout.readline().strip(), key
        finally:
            for proc in (agent, server):
                proc.terminate()
            for proc in (agent, server):
                proc.wait(timeout=60)


def a_grid(url: str | None, slots: int) -> contextlib.AbstractContextManager[tuple[str, str]]:
    return grid_on(url, slots) if url else local_grid(slots, 1, HANDLER)


# ---- the report ---------------------------------------------------------------------------


def summary(row: str, n: int, runs: list[Run], backend: str) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    line: dict[str, Any] = {
        "row": row, "backend": backend, "tasks": n, "repeat": len(runs),
        "tasks_per_second": stats([n / r.seconds for r in runs]),
        "wall_ms_per_task": stats([r.seconds / n * 1e3 for r in runs]),
        "cpu_ms_per_task": stats([r.cpu_seconds / n * 1e3 for r in runs]),
        "load": stats([r.load for r in runs]),
    }  # fmt: skip
    if row == "fair share":
        line["share"] = {u: stats([r.extra[u] for r in runs]) for u in ("alice", "bob")}
    return line


def spread(s: dict[str, float], fmt: str) -> str:
    return f"{fmt.format(s['median'])} [{fmt.format(s['min'])}-{fmt.format(s['max'])}]"


def table(lines: list[dict[str, Any]]) -> str:
    plain = lines[0]
    out = [
        "| row | tasks/s | wall ms/task | CPU ms/task | wall vs plain | CPU vs plain |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for line in lines:
        wall, cpu = line["wall_ms_per_task"], line["cpu_ms_per_task"]
        name = line["row"]
        if "share" in line:
            parts = (f"{user} {spread(s, '{:.2f}')}" for user, s in line["share"].items())
            name += f" ({', '.join(parts)})"
        out.append(
            f"| {name} | {spread(line['tasks_per_second'], '{:,.0f}')} | {spread(wall, '{:.3f}')}"
            f" | {spread(cpu, '{:.3f}')} | {wall['median'] / plain['wall_ms_per_task']['median']:.2f}x"
            f" | {cpu['median'] / plain['cpu_ms_per_task']['median']:.2f}x |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running PostgreSQL or Redis (default: `htcgrid up`)")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="write one JSON line per row to this file")
    args = parser.parse_args(argv)
    if args.url and args.url.startswith("redis") and args.tasks > 100_000:
        raise SystemExit("--tasks: at most 100,000 on a shared Redis")
    backend = args.url.split(":", 1)[0] if args.url else "sqlite"
    runs: dict[str, list[Run]] = {row: [] for row in ROWS}
    with a_grid(args.url, args.slots) as (url, key):
        bench = Bench(url, key, args.tasks, args.slots)
        try:
            for _ in range(args.repeat):
                for row in ROWS:
                    runs[row].append(timed(bench.work(row)))
        finally:
            bench.close()
    lines = [summary(row, args.tasks, runs[row], backend) for row in ROWS]
    if args.json:
        Path(args.json).write_text("".join(json.dumps(line) + "\n" for line in lines))
    print(
        f"# {args.tasks} no-op tasks, {args.slots} slots, {backend}; median [min-max] of "
        f"{args.repeat}; CPU of client, server, agents and workers; "
        f"load {statistics.median(r.load for rs in runs.values() for r in rs):.1f}"
    )
    print(table(lines), flush=True)


if __name__ == "__main__":
    main()
