"""Fair share replayed against a real task store with a simulated clock: agents claim into
their free slots and complete tasks when their run time has passed, tick by tick, no sleeps.
Tenants submit at different times with different shares and task lengths; each simulated
second the achieved share of the slots is printed (``pytest -s``) and must converge to the
weights within a few seconds of a tenant's arrival."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from backends import backend_url

from htcgrid.models import NewTask, Outcome, SessionSpec, TaskState
from htcgrid.store import TaskStore, open_store
from htcgrid.store.share import Share, share_key

START = 1_000_000.0
TICK = 0.25
AGENTS, SLOTS = 3, 4  # 12 slots in all
LEASE = 600.0


@dataclass(frozen=True)
class Tenant:
    name: str
    share: float
    arrives: float  # simulated seconds
    tasks: int
    run_seconds: float  # how long each of its tasks runs


@pytest.fixture(params=["memory", "sqlite", "postgresql", "redis"])
def sim_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskStore]:
    with backend_url(request.param, tmp_path, "store") as url:
        store = open_store(url)
        yield store
        store.close()


def simulate(store: TaskStore, tenants: list[Tenant], seconds: float) -> list[dict[str, float]]:
    """Run the grid for ``seconds``; returns, per simulated second, each tenant's mean
    fraction of the busy slots."""
    for t in tenants:
        if t.share != 1:
            store.put_meta(share_key(t.name), Share(t.share).to_json())
    ends: list[tuple[float, str, str, int, str]] = []  # (end, agent, task, attempt, tenant)
    busy = dict.fromkeys(range(AGENTS), 0)
    arrived: set[str] = set()
    samples: list[Counter[str]] = []
    step = 0
    while step * TICK < seconds:
        now = step * TICK
        for t in tenants:
            if t.name not in arrived and now >= t.arrives:
                arrived.add(t.name)
                submit(store, t, START + now)
        while ends and ends[0][0] <= now:
            _, agent, tid, attempt, _ = heapq.heappop(ends)
            done = Outcome(tid, attempt, TaskState.FINISHED, output=b"1")
            assert store.complete(agent, [done], START + now) == [True]
            busy[int(agent)] -= 1
        for a in range(AGENTS):
            free = SLOTS - busy[a]
            if free:
                for lease in store.claim(str(a), free, LEASE, START + now):
                    tenant = lease.session_id
                    run = next(t.run_seconds for t in tenants if t.name == tenant)
                    heapq.heappush(ends, (now + run, str(a), lease.task_id, lease.attempt, tenant))
                    busy[a] += 1
        samples.append(Counter(e[4] for e in ends))
        step += 1
    per_second = int(1 / TICK)
    report = []
    for i in range(0, len(samples), per_second):
        window = samples[i : i + per_second]
        total = sum(sum(c.values()) for c in window) or 1
        report.append({t.name: sum(c[t.name] for c in window) / total for t in tenants})
    return report


def submit(store: TaskStore, t: Tenant, now: float) -> None:
    spec = SessionSpec(id=t.name, task_count=t.tasks, owner=t.name, content_hash=t.name)
    tasks = [NewTask(i, 0, payload=b"1") for i in range(t.tasks)]
    assert store.create_session(spec, tasks, now)


def show(title: str, report: list[dict[str, float]]) -> None:
    print(f"\n{title}: achieved share of the slots per simulated second")
    for second, shares in enumerate(report):
        cells = "  ".join(f"{name} {value:4.0%}" for name, value in shares.items())
        print(f"  t={second:2d}s  {cells}")


def assert_converges(
    report: list[dict[str, float]], weights: dict[str, float], seconds: range
) -> None:
    total = sum(weights.values())
    for second in seconds:
        for name, weight in weights.items():
            got = report[second][name]
            assert abs(got - weight / total) <= 0.1, (second, name, got, report[second])


def test_two_tenants_one_to_one_however_much_the_first_queued(sim_store: TaskStore) -> None:
    tenants = [
        Tenant("alice", 1, arrives=0, tasks=2000, run_seconds=2.5),  # long tasks
        Tenant("bob", 1, arrives=3, tasks=2000, run_seconds=0.5),  # shorter tasks
    ]
    report = simulate(sim_store, tenants, 14)
    show("alice and bob, 1:1", report)
    assert report[1]["alice"] == 1.0  # alone, alice takes every slot
    assert_converges(report, {"alice": 1, "bob": 1}, range(6, 14))


def test_three_tenants_three_two_one_with_one_joining_late(sim_store: TaskStore) -> None:
    tenants = [
        Tenant("alice", 3, arrives=0, tasks=3000, run_seconds=0.5),
        Tenant("bob", 2, arrives=0, tasks=3000, run_seconds=1.0),
        Tenant("carol", 1, arrives=6, tasks=3000, run_seconds=0.75),
    ]
    report = simulate(sim_store, tenants, 16)
    show("alice 3, bob 2, carol 1 (from t=6s)", report)
    assert_converges(report, {"alice": 3, "bob": 2}, range(2, 6))
    assert_converges(report, {"alice": 3, "bob": 2, "carol": 1}, range(9, 16))
