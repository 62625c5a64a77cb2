"""W1-W8 of issue 16. Each runs one repetition against a started system and returns its
figures; ``measure`` times the block and takes the CPU of the whole process tree around it."""

from __future__ import annotations

import base64
import heapq
import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from peers.base import System
from peers.cputree import PeakRss, Tree, cpu_between

Figures = dict[str, float]


@dataclass
class Workload:
    key: str
    title: str
    workers: int
    run: Callable[[System, Tree, dict[str, Any]], Figures]
    full: dict[str, Any]
    quick: dict[str, Any]
    per_size: bool = False  # W6: one row per session size
    extra: dict[str, Any] = field(default_factory=dict)


def measure(tree: Tree, block: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds of the whole tree, and what ``block`` returned."""
    before = tree.snapshot()
    start = time.perf_counter()
    out = block()
    wall = time.perf_counter() - start
    return wall, cpu_between(before, tree.snapshot()), out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _batch(system: System, tree: Tree, fn: str, args: list[Any]) -> tuple[float, float]:
    wall, cpu, outputs = measure(tree, lambda: system.map(fn, args))
    if len(outputs) != len(args):
        raise RuntimeError(f"{len(outputs)} results for {len(args)} tasks")
    return wall, cpu


def w1_noop(system: System, tree: Tree, p: dict[str, Any]) -> Figures:
    n = p["tasks"]
    wall, cpu = _batch(system, tree, "noop", [None] * n)
    return {"tasks_per_second": n / wall, "cpu_ms_per_task": cpu * 1000 / n, "wall_seconds": wall}


def _efficiency(system: System, tree: Tree, fn: str, lengths_ms: list[float]) -> Figures:
    wall, cpu = _batch(system, tree, fn, lengths_ms)
    ideal = lpt_makespan(lengths_ms, system.workers) / 1000
    n = len(lengths_ms)
    return {"efficiency": ideal / wall, "cpu_ms_per_task": cpu * 1000 / n, "wall_seconds": wall}


def w2_cpu(system: System, tree: Tree, p: dict[str, Any]) -> Figures:
    return _efficiency(system, tree, "spin", [p["ms"]] * p["tasks"])


def w3_sleep(system: System, tree: Tree, p: dict[str, Any]) -> Figures:
    return _efficiency(system, tree, "nap", [p["ms"]] * p["tasks"])


def w4_payloads(system: System, tree: Tree, p: dict[str, Any]) -> Figures:
    n, kib = p["tasks"], p["kib"]
    # as benchmarks/grid_bench.py: distinct base64 texts of kib KiB of random bytes, the raw
    # bytes counted both ways
    data = [base64.b64encode(os.urandom(kib * 1024)).decode() for _ in range(n)]
    wall, cpu, outputs = measure(tree, lambda: system.map("echo", data))
    if outputs != data:
        raise RuntimeError("an output differs from its input")
    system.forget()  # each repeat starts from the same state, on every system
    moved = 2 * n * kib * 1024 / 1e6
    return {"mb_per_second": moved / wall, "cpu_ms_per_task": cpu * 1000 / n, "wall_seconds": wall}


def w5_round_trip(system: System, tree: Tree, p: dict[str, Any]) -> Figures:
    times: list[float] = []

    def trips() -> None:
        for i in range(p["round_trips"]):
            start = time.perf_counter()
            if system.call("echo", i) != i:
                raise RuntimeError("a round trip returned another value")
            times.append(time.perf_counter() - start)

    _, cpu, _ = measure(tree, trips)
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": percentile(times, 0.99) * 1000,
        "cpu_ms_per_round_trip": cpu * 1000 / len(times),
    }


def w6_scale(system: System, tree: Tree, p: dict[str, Any]) -> Figures:
    n = p["size"]
    with PeakRss(tree) as rss:
        wall, cpu = _batch(system, tree, "noop", [None] * n)
    return {
        "us_per_task": wall * 1e6 / n,
        "cpu_ms_per_task": cpu * 1000 / n,
        "rss_peak_mb": rss.peak / 2**20,
        "wall_seconds": wall,
    }


def long_tailed_ms(n: int, seed: int = 16) -> list[float]:
    """Most tasks 1-10 ms, 1 % of them 1-3 s (at least one), in a random order."""
    rng = random.Random(seed)
    long_count = max(1, n // 100)
    lengths = [rng.uniform(1000, 3000) for _ in range(long_count)]
    lengths += [rng.uniform(1, 10) for _ in range(n - long_count)]
    rng.shuffle(lengths)
    return lengths


def lpt_makespan(lengths: list[float], workers: int) -> float:
    """The longest-processing-time-first schedule's makespan, never below max(sum/workers, longest)."""
    slots = [0.0] * workers
    for length in sorted(lengths, reverse=True):
        heapq.heappush(slots, heapq.heappop(slots) + length)
    return max(slots)


def w7_mixed(system: System, tree: Tree, p: dict[str, Any]) -> Figures:
    return _efficiency(system, tree, "nap", long_tailed_ms(p["tasks"]))


def w8_clients(system: System, tree: Tree, p: dict[str, Any]) -> Figures:
    trips: list[float] = []
    sessions: list[float] = []
    errors: list[BaseException] = []
    clients = [system.client() for _ in range(p["clients"])]
    barrier = threading.Barrier(len(clients))

    def one(client: System) -> None:
        barrier.wait()
        for i in range(p["rounds"]):
            try:
                start = time.perf_counter()
                if client.call("echo", i) != i:
                    raise RuntimeError("a round trip returned another value")
                trips.append(time.perf_counter() - start)
                start = time.perf_counter()
                if len(client.map("noop", [None] * p["session_tasks"])) != p["session_tasks"]:
                    raise RuntimeError("a session lost results")
                sessions.append(time.perf_counter() - start)
            except Exception as exc:
                errors.append(exc)

    def run_all() -> None:
        threads = [threading.Thread(target=one, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    try:
        wall, cpu, _ = measure(tree, run_all)
    finally:
        for client in clients:
            if client is not system:
                client.close_client()
    done = len(trips) + len(sessions)
    return {
        "round_trip_p50_ms": statistics.median(trips) * 1000 if trips else float("nan"),
        "round_trip_p99_ms": percentile(trips, 0.99) * 1000 if trips else float("nan"),
        "session_p50_ms": statistics.median(sessions) * 1000 if sessions else float("nan"),
        "session_p99_ms": percentile(sessions, 0.99) * 1000 if sessions else float("nan"),
        "errors": float(len(errors)),
        "operations_per_second": done / wall,
        "cpu_ms_per_operation": cpu * 1000 / max(done, 1),
    }


WORKLOADS = [
    Workload("W1", "10,000 no-op tasks", 2, w1_noop, {"tasks": 10_000}, {"tasks": 200}),
    Workload("W2", "2,000 x 5 ms CPU", 2, w2_cpu, {"tasks": 2000, "ms": 5}, {"tasks": 40, "ms": 5}),
    Workload("W3", "1,000 x 50 ms sleep", 16, w3_sleep, {"tasks": 1000, "ms": 50}, {"tasks": 32, "ms": 50}),
    Workload("W4", "500 x 100 KiB in and out", 2, w4_payloads,
             {"tasks": 500, "kib": 100}, {"tasks": 10, "kib": 100}),
    Workload("W5", "single-task round trips", 2, w5_round_trip, {"round_trips": 200}, {"round_trips": 20}),
    Workload("W6", "sessions of no-op tasks", 2, w6_scale,
             {"sizes": [1000, 10_000, 100_000]}, {"sizes": [100, 1000]}, per_size=True),
    Workload("W7", "2,000 long-tailed sleeps", 4, w7_mixed, {"tasks": 2000}, {"tasks": 100}),
    Workload("W8", "20 concurrent clients", 4, w8_clients,
             {"clients": 20, "rounds": 10, "session_tasks": 10},
             {"clients": 20, "rounds": 2, "session_tasks": 10}),
]  # fmt: skip
