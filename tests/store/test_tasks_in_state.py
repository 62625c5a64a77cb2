"""``TaskStore.tasks_in_state``: a session's tasks in one state, paged with an opaque cursor,
on every backend; each task listed once, errors with it, and the failed index kept in step
with retry, cancel and delete."""

from __future__ import annotations

import pytest
from test_store_contract import LEASE, NOW, finish, make_session

from htcgrid.errors import ValidationError
from htcgrid.models import ErrorInfo, Outcome, TaskRecord, TaskState, task_id
from htcgrid.store import TaskStore, redis_states, state_pages

FAILED = {3, 11, 17, 25}


def listing(
    store: TaskStore, sid: str, state: TaskState, limit: int = 2
) -> tuple[list[TaskRecord], int]:
    """Every task of ``state`` following the cursors, and how many pages that took."""
    found: list[TaskRecord] = []
    cursor: str | None = None
    for pages in range(1, 1000):
        page, cursor = store.tasks_in_state(sid, state, cursor, limit)
        assert len(page) <= limit
        found += page
        if cursor is None:
            return found, pages
    raise AssertionError("the cursor never ended")


def run_session(store: TaskStore, n: int = 30, left_running: int = 2) -> None:
    """Claim every task of ``s1``; fail those in FAILED, leave the last ``left_running``
    processing, finish the rest."""
    make_session(store, n=n, max_attempts=1)
    leases = store.claim("a1", n, LEASE, NOW)
    assert len(leases) == n
    outcomes = []
    for lease in leases[: n - left_running]:
        index = int(lease.task_id.rsplit("_", 1)[1])
        if index in FAILED:
            error = ErrorInfo("ValueError", f"bad {index}", "Traceback")
            outcomes.append(Outcome(lease.task_id, lease.attempt, TaskState.FAILED, error=error))
        else:
            outcomes.append(finish(lease.task_id, lease.attempt))
    assert all(store.complete("a1", outcomes, NOW + 1))


def test_failed_tasks_are_paged_each_once_with_their_error(store: TaskStore) -> None:
    run_session(store)
    failed, _ = listing(store, "s1", TaskState.FAILED)
    assert sorted(r.index for r in failed) == sorted(FAILED)
    assert len({r.task_id for r in failed}) == len(FAILED)
    record = next(r for r in failed if r.index == 11)
    assert record.state is TaskState.FAILED and record.task_id == task_id("s1", 11)
    assert record.error is not None and record.error.message == "bad 11"
    assert record.payload is None
    running, _ = listing(store, "s1", TaskState.PROCESSING, limit=10)
    assert sorted(r.index for r in running) == [28, 29]
    finished, _ = listing(store, "s1", TaskState.FINISHED, limit=7)
    assert sorted(r.index for r in finished) == sorted(set(range(28)) - FAILED)
    assert listing(store, "s1", TaskState.PENDING) == ([], 1)


def test_retry_and_cancel_move_tasks_between_listings(store: TaskStore) -> None:
    run_session(store)
    assert sorted(store.retry("s1", [task_id("s1", 3)], NOW + 2)) == [task_id("s1", 3)]
    failed, _ = listing(store, "s1", TaskState.FAILED)
    assert sorted(r.index for r in failed) == sorted(FAILED - {3})
    assert [r.index for r in listing(store, "s1", TaskState.PENDING)[0]] == [3]
    store.cancel_session("s1", NOW + 3)
    cancelled, _ = listing(store, "s1", TaskState.CANCELLED)
    assert sorted(r.index for r in cancelled) == [3, 28, 29]
    assert store.delete_session("s1")
    assert store.tasks_in_state("s1", TaskState.FAILED) == ([], None)


def test_an_unknown_session_is_an_empty_last_page_and_bad_input_is_refused(
    store: TaskStore,
) -> None:
    assert store.tasks_in_state("nope", TaskState.FAILED) == ([], None)
    make_session(store, n=2)
    with pytest.raises(ValidationError):
        store.tasks_in_state("s1", TaskState.FAILED, limit=0)
    for bad in ("not a cursor", "9" * 30, "-7"):
        with pytest.raises(ValidationError):
            store.tasks_in_state("s1", TaskState.FAILED, cursor=bad)


def test_a_scan_is_bounded_per_call_and_goes_on_from_where_it_stopped(
    store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a state has no index of its own (PostgreSQL and Redis: all but failed) one call
    reads a bounded window; empty pages carry the cursor on and nothing is missed."""
    monkeypatch.setattr(state_pages, "WINDOW", 4)
    monkeypatch.setattr(redis_states, "WINDOW", 4)
    run_session(store, left_running=0)
    finished, pages = listing(store, "s1", TaskState.FINISHED, limit=100)
    assert sorted(r.index for r in finished) == sorted(set(range(30)) - FAILED)
    failed, _ = listing(store, "s1", TaskState.FAILED, limit=100)
    assert sorted(r.index for r in failed) == sorted(FAILED)
    bounded = type(store).__name__ in {"PostgresTaskStore", "RedisTaskStore"}
    assert pages == (8 if bounded else 1)


def test_redis_lists_failed_tasks_of_a_grid_older_than_their_index(store: TaskStore) -> None:
    """Tasks that failed before ``P failed:<id>`` existed: the set does not hold every failed
    task the session counts, so the listing reads the session's states instead."""
    if type(store).__name__ != "RedisTaskStore":
        pytest.skip("the failed-task set is Redis's")
    run_session(store)
    store._client.delete(store.keys.prefix + "failed:s1")  # type: ignore[attr-defined]
    failed, _ = listing(store, "s1", TaskState.FAILED)
    assert sorted(r.index for r in failed) == sorted(FAILED)
