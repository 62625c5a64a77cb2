"""The same throughput and round-trip figures as grid_bench.py, for each backend side by side.

    python benchmarks/backends_bench.py                    # sqlite, postgresql, redis
    python benchmarks/backends_bench.py --backends redis --tasks 20000
    python benchmarks/backends_bench.py --backends aws --tasks 1000   # DynamoDB+SQS+S3 on moto

For each backend it starts `htcgrid server` (loopback, --no-auth) and `htcgrid agent` as separate
processes sharing only the backend URL, as they would on separate machines, then measures over
HTTP: one session of N no-op tasks (submit → every result collected) and sequential single-task
round trips. PostgreSQL and Redis come from HTCGRID_BENCH_POSTGRES_URL / HTCGRID_BENCH_REDIS_URL
(default: the loopback servers); each run uses a fresh schema or key prefix and removes it after.
``aws`` starts moto's server in this process on loopback, creates a grid (`htcgrid aws create`'s
code, HTCGRID_BENCH_AWS_QUEUES priority queues, default 10) with an S3 bucket as its data plane,
and gives the processes dummy credentials.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from grid_bench import cpu_seconds, round_trips, throughput, tree

import htcgrid

POSTGRES = os.environ.get("HTCGRID_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("HTCGRID_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@contextlib.contextmanager
def backend(kind: str) -> Iterator[str]:
    tag = uuid.uuid4().hex[:8]
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite://{tmp}/grid.db"
    elif kind == "postgresql":
        import psycopg

        schema = f"htcgrid_bench_{tag}"
        yield f"{POSTGRES}?schema={schema}"
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    elif kind == "redis":
        import redis

        prefix = f"htcgrid-bench-{tag}:"
        yield f"{REDIS}?prefix={prefix}"
        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.unlink(key)
    elif kind == "aws":
        with moto_grid(tag) as url:
            yield url
    else:
        raise SystemExit(f"unknown backend {kind!r}")


DATA_URLS: dict[str, str] = {}  # task store URL -> its data plane, where not the same URL


@contextlib.contextmanager
def moto_grid(tag: str) -> Iterator[str]:
    """A grid on moto's server (the tests' one: loopback, dummy credentials for this run)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from backends import AWS_REGION, AWS_TEST_ENV, aws_grid, moto_endpoint

    os.environ.update(AWS_TEST_ENV)
    bucket = f"htcgrid-bench-{tag}"
    queues = int(os.environ.get("HTCGRID_BENCH_AWS_QUEUES", "10"))
    with aws_grid(tag, queues, bucket) as url:
        query = f"region={AWS_REGION}&endpoint_url={moto_endpoint()}"
        DATA_URLS[url] = f"s3://{bucket}/grid?{query}"
        yield url


@contextlib.contextmanager
def grid_on(url: str, slots: int) -> Iterator[str]:
    htcgrid_cmd = [sys.executable, "-m", "htcgrid"]
    where = ["--url", url] + (["--data-url", DATA_URLS[url]] if url in DATA_URLS else [])
    server = subprocess.Popen(
        [*htcgrid_cmd, "server", *where, "--port", "0", "--no-auth"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    agent = subprocess.Popen([*htcgrid_cmd, "agent", *where, "--slots", str(slots)])
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip()
    finally:
        for proc in (agent, server):
            proc.terminate()
        for proc in (agent, server):
            proc.wait(timeout=60)


def measure(kind: str, tasks: int, trips: int, repeat: int, slots: int) -> list[float]:
    """W1 tasks/s (median of ``repeat``), W5 p50 and p99 in ms, and the CPU of this process,
    the server, the agent and its workers per W1 task and per W5 round trip, in ms (the
    database server's own CPU is not counted: other clients may share it)."""
    with backend(kind) as url, grid_on(url, slots) as api, htcgrid.connect(api) as grid:
        round_trips(grid, 5)
        pids = tree(os.getpid())
        cpu0 = cpu_seconds(pids)
        w1 = statistics.median(throughput(grid, tasks) for _ in range(repeat))
        cpu1 = cpu_seconds(pids)
        rtt = sorted(round_trips(grid, trips))
        cpu2 = cpu_seconds(pids)
    return [
        tasks / w1,
        statistics.median(rtt) * 1000,
        rtt[int(len(rtt) * 0.99) - 1] * 1000,
        (cpu1 - cpu0) / (tasks * repeat) * 1000,
        (cpu2 - cpu1) / trips * 1000,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="sqlite,postgresql,redis")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="W1 runs (median)")
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    rows = []
    for kind in args.backends.split(","):
        rate, p50, p99, cpu_task, cpu_trip = measure(
            kind, args.tasks, args.round_trips, args.repeat, args.slots
        )
        rows.append((kind, rate, p50, p99, cpu_task, cpu_trip))
        print(
            f"{kind}: {rate:,.0f} tasks/s ({cpu_task:.3f} ms CPU a task), round trip median "
            f"{p50:.1f} ms, p99 {p99:.1f} ms ({cpu_trip:.2f} ms CPU); load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    base = rows[0]
    print(
        f"\n{'backend':<12}{'tasks/s':>10}{'vs ' + base[0]:>12}{'CPU/task':>10}"
        f"{'rtt p50 ms':>12}{'vs ' + base[0]:>12}{'rtt p99 ms':>12}{'CPU/rtt':>9}"
    )
    for kind, rate, p50, p99, cpu_task, cpu_trip in rows:
        print(
            f"{kind:<12}{rate:>10,.0f}{rate / base[1]:>11.2f}x{cpu_task:>10.3f}"
            f"{p50:>12.1f}{p50 / base[2]:>11.2f}x{p99:>12.1f}{cpu_trip:>9.2f}"
        )


if __name__ == "__main__":
    main()
