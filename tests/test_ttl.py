"""The TTL checker with an injected clock."""

from __future__ import annotations

import threading
from collections import Counter

from backends import threads_interleave_often

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
    """Four checkers sweep the same 200 overdue leases at once: every task is requeued by
    exactly one of them (counted once in all, its attempt rising by exactly one)."""
    seed(store, 200, max_attempts=6)
    claimed = 0
    for _ in range(200):  # a store may hand out fewer than asked per call (SQS: 10 at a time)
        claimed += len(store.claim("dead", 200 - claimed, 10, 0.0))
        if claimed == 200:
            break
    assert claimed == 200
    checkers = [TTLChecker(store, batch=7, clock=Clock(50.0)) for _ in range(4)]
    reported: Counter[str] = Counter()
    lock = threading.Lock()

    def check(checker: TTLChecker) -> None:
        requeued = checker.check_once().requeued
        with lock:
            reported.update(requeued)

    with threads_interleave_often():
        for _ in range(50):  # rounds: a checker may stop early where it lost races to the others
            before = sum(c.requeued for c in checkers)
            threads = [threading.Thread(target=check, args=(c,)) for c in checkers]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if sum(c.requeued for c in checkers) == before:
                break
    assert [tid for tid, n in reported.items() if n > 1] == []
    assert len(reported) == 200 and sum(c.requeued for c in checkers) == 200
    assert store.count_states("s")[TaskState.PENDING] == 200
    again: list[int] = []
    for _ in range(200):
        again += [le.attempt for le in store.claim("alive", 200 - len(again), 10, 50.0)]
        if len(again) == 200:
            break
    assert set(again) == {2} and len(again) == 200
