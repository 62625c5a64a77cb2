"""Held tasks (the store's primitives for task graphs) and per-task cancel, on every backend:
``create_session`` with ``held`` tasks, ``release``, ``fail_held`` and ``cancel_tasks``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from backends import SHARED_KINDS
from test_store_contract import LEASE, NOW, finish
from test_store_purge import raw_count

from htcgrid.errors import NotFound
from htcgrid.models import (
    ErrorInfo,
    HeartbeatStatus,
    NewTask,
    SessionSpec,
    TaskState,
    task_id,
)
from htcgrid.store import TaskStore, open_store

UPSTREAM = ErrorInfo("DependencyFailed", "dependency s1_0 failed")


def make_held(
    store: TaskStore,
    held: set[int],
    n: int = 4,
    sid: str = "s1",
    priorities: list[int] | None = None,
) -> None:
    spec = SessionSpec(id=sid, task_count=n, content_hash="h", owner="alice")
    tasks = [
        NewTask(i, priorities[i] if priorities else 0, payload=b'{"i":%d}' % i, held=i in held)
        for i in range(n)
    ]
    assert store.create_session(spec, tasks, NOW) is True


def claimed(store: TaskStore, n: int = 100, agent: str = "a1") -> list[int]:
    return [lease.index for lease in store.claim(agent, n, LEASE, NOW)]


def state(store: TaskStore, index: int, sid: str = "s1") -> TaskState:
    record = store.get_task(task_id(sid, index))
    assert record is not None
    return record.state


def pending_listed(store: TaskStore, sid: str = "s1") -> list[int]:
    found: list[int] = []
    cursor: str | None = None
    while True:
        page, cursor = store.tasks_in_state(sid, TaskState.PENDING, cursor, 2)
        found += [t.index for t in page]
        if cursor is None:
            return sorted(found)


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    return thread, out


def test_held_tasks_are_pending_but_never_claimed(store: TaskStore) -> None:
    make_held(store, held={1, 3}, n=5)
    counts = store.count_states("s1")
    assert counts[TaskState.PENDING] == 5 and sum(counts.values()) == 5
    assert pending_listed(store) == [0, 1, 2, 3, 4]
    assert state(store, 1) is TaskState.PENDING
    assert store.queue_depth() == 3
    assert claimed(store) == [0, 2, 4]
    assert claimed(store) == []
    report = store.expire_leases(NOW + 3 * LEASE)  # a held task has no lease to expire
    assert sorted(report.requeued) == [task_id("s1", i) for i in (0, 2, 4)]
    assert report.failed == [] and claimed(store) == [0, 2, 4]


def test_release_makes_held_tasks_claimable_at_their_queue_place(store: TaskStore) -> None:
    make_held(store, held={0, 1, 2, 3, 4, 5}, n=6, priorities=[0, 5, 0, 5, 0, 0])
    assert claimed(store) == []
    assert store.release("s1", [4, 3, 0, 1], NOW) == [0, 1, 3, 4]
    assert store.queue_depth() == 4
    assert pending_listed(store) == [0, 1, 2, 3, 4, 5]
    assert claimed(store) == [1, 3, 0, 4]  # priority first, then FIFO by index
    assert store.release("s1", [2], NOW) == [2]
    assert claimed(store) == [2]


def test_release_and_fail_held_are_idempotent(store: TaskStore) -> None:
    make_held(store, held={1, 2, 3}, n=4)
    assert store.release("s1", [1, 1], NOW) == [1]
    assert store.release("s1", [1], NOW) == []  # released already
    assert store.release("s1", [0, 99, -1], NOW) == []  # never held, unknown
    assert store.release("unknown", [0], NOW) == []
    assert store.fail_held("s1", [(1, UPSTREAM), (2, UPSTREAM)], NOW) == [2]  # 1 is not held
    assert store.fail_held("s1", [(2, UPSTREAM)], NOW) == []
    assert store.release("s1", [2], NOW) == []  # failed: stays failed
    info = store.get_session("s1")
    assert info is not None and info.done_count == 1 and info.cursor == 1
    assert sorted(claimed(store)) == [0, 1]


def test_racing_releases_release_each_task_once(store: TaskStore, store_url: str) -> None:
    n = 60
    make_held(store, held=set(range(n)), n=n)
    other = open_store(store_url) if store_url.split(":")[0] in SHARED_KINDS else store
    indexes = list(range(n))
    try:
        a, got_a = in_thread(lambda: store.release("s1", indexes, NOW))
        b, got_b = in_thread(lambda: other.release("s1", indexes[::-1], NOW))
        a.join(60)
        b.join(60)
    finally:
        if other is not store:
            other.close()
    assert len(got_a) == len(got_b) == 1
    assert sorted(got_a[0] + got_b[0]) == indexes  # each released exactly once
    assert sorted(claimed(store)) == indexes


def test_a_release_racing_a_fail_held_settles_each_task_once(
    store: TaskStore, store_url: str
) -> None:
    n = 40
    make_held(store, held=set(range(n)), n=n)
    other = open_store(store_url) if store_url.split(":")[0] in SHARED_KINDS else store
    indexes = list(range(n))
    try:
        a, released = in_thread(lambda: store.release("s1", indexes, NOW))
        b, failed = in_thread(lambda: other.fail_held("s1", [(i, UPSTREAM) for i in indexes], NOW))
        a.join(60)
        b.join(60)
    finally:
        if other is not store:
            other.close()
    assert sorted(released[0] + failed[0]) == indexes  # each task released or failed, once
    counts = store.count_states("s1")
    assert counts[TaskState.FAILED] == len(failed[0])
    assert counts[TaskState.PENDING] == len(released[0])
    assert sorted(claimed(store)) == released[0]
    info = store.get_session("s1")
    assert info is not None and info.cursor == len(failed[0])


def test_fail_held_gives_completion_numbers_and_wakes_waiters(store: TaskStore) -> None:
    make_held(store, held={1, 2, 3}, n=4)
    assert [lease.index for lease in store.claim("a1", 1, LEASE, NOW)] == [0]
    waiter, woke = in_thread(lambda: store.wait_for_session("s1", 0, 30.0))
    errors = [(3, ErrorInfo("DependencyFailed", "dependency s1_0 failed")), (2, UPSTREAM)]
    assert store.fail_held("s1", errors, NOW + 1) == [2, 3]
    waiter.join(30)
    assert woke and woke[0] >= 2
    results = store.results("s1")
    assert [(r.index, r.cursor, r.state, r.attempt) for r in results] == [
        (2, 1, TaskState.FAILED, 0),
        (3, 2, TaskState.FAILED, 0),
    ]
    record = store.get_task(task_id("s1", 3))
    assert record is not None and record.error is not None
    assert record.error.message == "dependency s1_0 failed" and record.finished_at == NOW + 1
    counts = store.count_states("s1")
    assert counts[TaskState.FAILED] == 2 and counts[TaskState.PENDING] == 1
    assert counts[TaskState.PROCESSING] == 1
    info = store.get_session("s1")
    assert info is not None and info.done_count == 2 and not info.complete


def test_retry_brings_a_fail_held_task_back_claimable(store: TaskStore) -> None:
    make_held(store, held={0, 1}, n=2)
    assert store.fail_held("s1", [(0, UPSTREAM)], NOW) == [0]
    assert store.retry("s1", None, NOW) == [task_id("s1", 0)]
    leases = store.claim("a1", 10, LEASE, NOW)
    assert [(x.index, x.attempt) for x in leases] == [(0, 1)]  # 1 stays held
    assert store.complete("a1", [finish(leases[0].task_id, 1)], NOW) == [True]
    assert [r.cursor for r in store.results("s1")] == [2]


def test_cancel_tasks_cancels_pending_held_and_running_tasks_only(store: TaskStore) -> None:
    make_held(store, held={2}, n=5)
    leases = store.claim("a1", 2, LEASE, NOW)
    assert [x.index for x in leases] == [0, 1]
    assert store.complete("a1", [finish(leases[0].task_id, 1)], NOW) == [True]

    counts = store.cancel_tasks("s1", [0, 1, 2, 3, 99], NOW + 1)

    assert (counts.pending, counts.processing) == (2, 1)  # 0 finished: untouched
    assert [state(store, i) for i in range(5)] == [
        TaskState.FINISHED,
        TaskState.CANCELLED,
        TaskState.CANCELLED,
        TaskState.CANCELLED,
        TaskState.PENDING,
    ]
    beat = store.heartbeat("a1", [(leases[1].task_id, 1)], LEASE, NOW + 1)
    assert beat[leases[1].task_id] is HeartbeatStatus.CANCELLED
    assert store.complete("a1", [finish(leases[1].task_id, 1)], NOW + 1) == [False]
    assert store.cancel_tasks("s1", [1, 2, 3], NOW + 2).total == 0  # idempotent
    assert store.release("s1", [2], NOW) == []  # a cancelled held task stays cancelled
    info = store.get_session("s1")
    assert info is not None and info.done_count == 4 and not info.cancelled
    assert [r.cursor for r in store.results("s1")] == [1, 2, 3, 4]
    assert claimed(store) == [4]
    with pytest.raises(NotFound):
        store.cancel_tasks("unknown", [0], NOW)


def test_cancel_session_cancels_held_tasks(store: TaskStore) -> None:
    make_held(store, held={1, 2}, n=3)
    counts = store.cancel_session("s1", NOW)
    assert (counts.pending, counts.processing) == (3, 0)
    assert store.count_states("s1")[TaskState.CANCELLED] == 3
    assert store.release("s1", [1, 2], NOW) == [] and claimed(store) == []
    info = store.get_session("s1")
    assert info is not None and info.complete and info.cancelled


def test_release_wakes_a_waiting_agent(store: TaskStore) -> None:
    make_held(store, held={0}, n=1)
    assert store.wait_for_tasks(0.05) is False  # a held task is no work for an agent
    waiter, woke = in_thread(lambda: store.wait_for_tasks(30.0))
    assert store.release("s1", [0], NOW) == [0]
    waiter.join(30)
    assert woke == [True]
    assert claimed(store) == [0]


def test_delete_leaves_nothing_of_held_tasks(store: TaskStore) -> None:
    make_held(store, held=set(), n=1, sid="keep")
    before = raw_count(store)
    make_held(store, held={0, 1, 2}, n=4)
    store.release("s1", [1], NOW)
    store.fail_held("s1", [(2, UPSTREAM)], NOW)
    assert store.delete_session("s1") is True
    assert raw_count(store) == before
    assert store.release("s1", [0], NOW) == [] and store.get_task(task_id("s1", 0)) is None
    assert claimed(store) == [0]  # only the kept session's task is left in the queue
    assert store.queue_depth() == 0
