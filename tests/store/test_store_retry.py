"""``TaskStore.retry``, on every backend: failed tasks run again in place, and the session's
completion numbers go on so that a client paging results sees their new outcome."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_store_contract import LEASE, NOW, finish, make_session

from htcgrid.errors import NotFound
from htcgrid.models import ErrorInfo, NewTask, Outcome, SessionSpec, TaskState, task_id
from htcgrid.store import TaskStore, open_store

BOOM = ErrorInfo("ValueError", "bad input")
DAY = 86400.0


def failed(tid: str, attempt: int) -> Outcome:
    return Outcome(tid, attempt, TaskState.FAILED, error=BOOM, log="it went wrong")


def run_all(store: TaskStore, fail: set[int], agent: str = "a1", now: float = NOW) -> None:
    leases = store.claim(agent, 100, LEASE, now)
    outcomes = [
        failed(lease.task_id, lease.attempt)
        if lease.index in fail
        else finish(lease.task_id, lease.attempt, b'"ok"')
        for lease in leases
    ]
    assert all(store.complete(agent, outcomes, now))


def test_retry_reruns_failed_tasks_with_new_completion_numbers(store: TaskStore) -> None:
    make_session(store, n=4, max_attempts=1)
    run_all(store, fail={1, 3})
    first = store.results("s1")
    assert [r.cursor for r in first] == [1, 2, 3, 4]
    before = store.get_session("s1")
    assert before is not None and before.complete and before.cursor == 4

    sent = store.retry("s1", None, NOW + 1)

    assert sent == [task_id("s1", 1), task_id("s1", 3)]
    info = store.get_session("s1")
    assert info is not None and info.done_count == 2 and info.retried == 2
    assert not info.complete and info.cursor == 4
    counts = store.count_states("s1")
    assert counts[TaskState.PENDING] == 2 and counts[TaskState.FAILED] == 0
    again = store.get_task(task_id("s1", 1))
    assert again is not None and again.state is TaskState.PENDING and again.attempt == 0
    assert again.error is None and again.cursor is None and again.log == ""
    assert [r.index for r in store.results("s1")] == [0, 2]  # the old failures are gone

    run_all(store, fail=set(), agent="a2", now=NOW + 2)  # a fresh attempt 1 for each
    info = store.get_session("s1")
    assert info is not None and info.complete and info.done_count == 4 and info.cursor == 6
    newer = store.results("s1", 4)
    assert [(r.index, r.cursor, r.state, r.attempt) for r in newer] == [
        (1, 5, TaskState.FINISHED, 1),
        (3, 6, TaskState.FINISHED, 1),
    ]
    assert store.wait_for_session("s1", 5, 0.01) == 6


def test_retry_takes_only_the_named_failed_tasks(store: TaskStore) -> None:
    make_session(store, n=3, max_attempts=1)
    run_all(store, fail={0, 1})
    named = [task_id("s1", 1), task_id("s1", 2), "s1_99", "other_0"]
    assert store.retry("s1", named, NOW) == [task_id("s1", 1)]  # 2 finished: left alone
    assert store.retry("s1", [], NOW) == []
    states = {r.index: r.state for r in store.results("s1")}
    assert states == {0: TaskState.FAILED, 2: TaskState.FINISHED}
    leases = store.claim("a1", 10, LEASE, NOW)
    assert [lease.index for lease in leases] == [1] and leases[0].attempt == 1


def test_retry_leaves_cancelled_and_running_tasks_alone(store: TaskStore) -> None:
    make_session(store, n=2)
    store.claim("a1", 1, LEASE, NOW)
    assert store.retry("s1", None, NOW) == []
    store.cancel_session("s1", NOW)
    assert store.retry("s1", None, NOW) == []
    info = store.get_session("s1")
    assert info is not None and info.complete and info.retried == 0


def test_a_zombie_of_the_old_run_cannot_record_after_a_retry(store: TaskStore) -> None:
    make_session(store, n=1, max_attempts=1)
    (lease,) = store.claim("a1", 1, LEASE, NOW)
    store.expire_leases(NOW + LEASE + 1)  # attempts exhausted: failed
    store.retry("s1", None, NOW + 20)
    (new,) = store.claim("a2", 1, LEASE, NOW + 21)
    assert new.attempt == 1
    assert store.complete("a1", [finish(lease.task_id, lease.attempt)], NOW + 22) == [False]
    assert store.complete("a2", [finish(new.task_id, new.attempt, b"2")], NOW + 22) == [True]
    (only,) = store.results("s1")
    assert only.output == b"2" and only.cursor == 2


def test_retry_of_an_unknown_session(store: TaskStore) -> None:
    with pytest.raises(NotFound):
        store.retry("nope", None, NOW)


def test_a_retried_session_is_purged_only_once_it_ends_again(store: TaskStore) -> None:
    make_session(store, n=2, max_attempts=1)
    run_all(store, fail={0})
    store.retry("s1", None, NOW + 1)
    assert store.purge(NOW + 10_000) == []
    run_all(store, fail=set(), now=NOW + 2)
    assert store.purge(NOW + 10_000) == ["s1"]


def test_a_grid_file_made_before_retry_gains_its_column(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'grid.db'}"
    old = open_store(url)
    make_session(old, n=1)
    old.close()
    with sqlite3.connect(tmp_path / "grid.db") as db:
        db.execute("ALTER TABLE sessions DROP COLUMN retried")
    store = open_store(url)
    try:
        info = store.get_session("s1")
        assert info is not None and info.retried == 0 and info.done_count == 0
    finally:
        store.close()


def test_a_session_keeps_its_own_retention(store: TaskStore) -> None:
    short = SessionSpec(
        id="short", task_count=1, content_hash="h", retention_seconds=60.0, poison_after=2
    )
    kept = SessionSpec(id="kept", task_count=1, content_hash="k", retention_seconds=10 * DAY)
    plain = SessionSpec(id="plain", task_count=1, content_hash="p")
    for spec in (short, kept, plain):
        assert store.create_session(spec, [NewTask(0, 0, b"0")], NOW)
    run_all(store, fail=set())
    info = store.get_session("short")
    assert info is not None and info.spec.retention_seconds == 60.0
    assert info.spec.poison_after == 2
    plain_info = store.get_session("plain")
    assert plain_info is not None and plain_info.spec.retention_seconds is None
    assert plain_info.spec.poison_after is None
    later = NOW + 2 * DAY  # the server's retention (7 days) has not passed yet
    assert store.purge(later - 7 * DAY, 100, now=later) == ["short"]
    assert store.purge(later - 7 * DAY, 100) == []  # without now: one cutoff for all
    much_later = NOW + 8 * DAY
    assert store.purge(much_later - 7 * DAY, 100, now=much_later) == ["plain"]
    assert store.purge(much_later, 100) == ["kept"]  # an explicit purge takes every session
