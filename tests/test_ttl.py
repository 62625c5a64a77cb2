"""The TTL checker with an injected clock."""

from __future__ import annotations

import threading

from htcgrid.models import NewTask, SessionSpec, TaskState
from htcgrid.store import TaskStore
from htcgrid.ttl import TTLChecker


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def seed(store: TaskStore, n: int, max_attempts: int = 2) -> None:
    spec = SessionSpec("s", n, max_attempts=max_attempts, content_hash="h")
    store.create_session(spec, [NewTask(i, 0, b"0") for i in range(n)], 0)


def test_expired_leases_are_requeued_then_failed(store: TaskStore) -> None:
    clock = Clock(100.0)
    seed(store, 25)
    checker = TTLChecker(store, batch=10, clock=clock)
    store.claim("dead-agent", 25, 10, 100.0)
    assert checker.check_once().requeued == []
    clock.now = 111.0
    report = checker.check_once()  # three batches of at most 10
    assert len(report.requeued) == 25 and checker.requeued == 25
    store.claim("dead-again", 25, 10, 111.0)
    clock.now = 122.0
    assert len(checker.check_once().failed) == 25
    assert store.count_states("s")[TaskState.FAILED] == 25


def test_many_checkers_at_once_requeue_each_task_once(store: TaskStore) -> None:
    seed(store, 200, max_attempts=6)
    store.claim("dead", 200, 10, 0.0)
    checkers = [TTLChecker(store, batch=7, clock=Clock(50.0)) for _ in range(4)]
    threads = [threading.Thread(target=c.check_once) for c in checkers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(c.requeued for c in checkers) == 200
    assert store.count_states("s")[TaskState.PENDING] == 200
    assert {le.attempt for le in store.claim("alive", 200, 10, 50.0)} == {2}
