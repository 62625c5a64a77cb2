"""The TTL checker with an injected clock."""

from __future__ import annotations

import threading

import pytest

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


def test_many_checkers_at_once_requeue_each_task_once(
    store: TaskStore, request: pytest.FixtureRequest
) -> None:
    if "aws" in request.node.name:
        request.applymarker(
            pytest.mark.xfail(
                reason="open bug: on the AWS store, concurrent checkers report a few tasks "
                "requeued twice (moto's conditional update_item itself is atomic)",
                strict=False,
            )
        )
    seed(store, 200, max_attempts=6)
    claimed = 0
    for _ in range(200):  # a store may hand out fewer than asked per call (SQS: 10 at a time)
        claimed += len(store.claim("dead", 200 - claimed, 10, 0.0))
        if claimed == 200:
            break
    assert claimed == 200
    checkers = [TTLChecker(store, batch=7, clock=Clock(50.0)) for _ in range(4)]
    for _ in range(50):  # rounds: a checker may stop early where it lost races to the others
        before = sum(c.requeued for c in checkers)
        threads = [threading.Thread(target=c.check_once) for c in checkers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if sum(c.requeued for c in checkers) == before:
            break
    assert sum(c.requeued for c in checkers) == 200
    assert store.count_states("s")[TaskState.PENDING] == 200
    again: list[int] = []
    for _ in range(200):
        again += [le.attempt for le in store.claim("alive", 200 - len(again), 10, 50.0)]
        if len(again) == 200:
            break
    assert set(again) == {2} and len(again) == 200
