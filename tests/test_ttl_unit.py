"""The TTL checker's own rules over the memory store, with an injected clock; tests/test_ttl.py
runs its batches and concurrent checkers over every store."""

from __future__ import annotations

from htcgrid.models import HeartbeatStatus, NewTask, SessionSpec, TaskState, expired_error
from htcgrid.store import TaskStore, open_store
from htcgrid.ttl import TTLChecker


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def seeded(n: int, max_attempts: int = 2) -> TaskStore:
    store = open_store("memory://")
    spec = SessionSpec("s", n, max_attempts=max_attempts, content_hash="h")
    store.create_session(spec, [NewTask(i, 0, b"0") for i in range(n)], 0.0)
    return store


def test_nothing_to_expire_reports_nothing() -> None:
    checker = TTLChecker(seeded(3), clock=Clock(1e9))
    report = checker.check_once()
    assert (report.requeued, report.failed, checker.requeued, checker.failed) == ([], [], 0, 0)


def test_a_lease_expires_only_after_its_time() -> None:
    store = seeded(1)
    store.claim("agent", 1, 10.0, 100.0)
    clock = Clock(109.9)
    checker = TTLChecker(store, clock=clock)
    assert checker.check_once().requeued == []
    clock.now = 110.1
    assert checker.check_once().requeued == ["s_0"]


def test_a_heartbeat_keeps_the_lease_and_a_requeued_task_is_lost_to_its_old_agent() -> None:
    store = seeded(1, max_attempts=3)
    store.claim("agent", 1, 10.0, 0.0)
    clock = Clock(8.0)
    assert store.heartbeat("agent", [("s_0", 1)], 10.0, clock.now) == {"s_0": HeartbeatStatus.OK}
    checker = TTLChecker(store, clock=clock)
    clock.now = 15.0  # past the first lease, within the extended one
    assert checker.check_once().requeued == []
    clock.now = 18.5
    assert checker.check_once().requeued == ["s_0"]
    assert store.heartbeat("agent", [("s_0", 1)], 10.0, clock.now) == {"s_0": HeartbeatStatus.LOST}
    assert [lease.attempt for lease in store.claim("other", 1, 10.0, clock.now)] == [2]


def test_the_last_attempt_fails_with_the_reason_and_is_counted() -> None:
    store = seeded(3, max_attempts=1)
    store.claim("dead", 3, 10.0, 0.0)
    checker = TTLChecker(store, batch=2, clock=Clock(11.0))
    report = checker.check_once()
    assert sorted(report.failed) == ["s_0", "s_1", "s_2"] and report.requeued == []
    assert (checker.failed, checker.requeued) == (3, 0)
    task = store.get_task("s_1")
    assert task is not None and task.state is TaskState.FAILED
    assert task.error == expired_error(1)
    info = store.get_session("s")
    assert info is not None and info.complete
    assert checker.check_once().failed == [] and checker.failed == 3


def test_a_batch_that_comes_back_full_is_followed_by_another() -> None:
    store = seeded(20)
    store.claim("dead", 20, 10.0, 0.0)
    checker = TTLChecker(store, batch=10, clock=Clock(11.0))
    assert len(checker.check_once().requeued) == 20
    assert store.count_states("s")[TaskState.PENDING] == 20


def test_a_cancelled_task_is_not_requeued() -> None:
    store = seeded(2)
    store.claim("agent", 2, 10.0, 0.0)
    store.cancel_session("s", 1.0)
    checker = TTLChecker(store, clock=Clock(50.0))
    report = checker.check_once()
    assert (report.requeued, report.failed) == ([], [])
    assert store.count_states("s")[TaskState.CANCELLED] == 2


def test_a_stopped_checker_runs_no_more_checks() -> None:
    store = seeded(1)
    store.claim("dead", 1, 10.0, 0.0)
    checker = TTLChecker(store, interval_seconds=0.0, clock=Clock(50.0))
    checker.stop()
    checker.run()  # returns at once: the stop is seen before the first check
    assert checker.requeued == 0
    assert store.count_states("s")[TaskState.PROCESSING] == 1
