"""Rows of the SQL task stores (SQLite, PostgreSQL) and the records built from them.

Both stores select these columns in this order, so one function per record reads either.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from htcgrid.models import (
    ErrorInfo,
    Lease,
    NewTask,
    SessionInfo,
    SessionSpec,
    TaskRecord,
    TaskState,
    task_id,
)

SESSION_COLUMNS = (
    "id, owner, function, priority, max_attempts, timeout_seconds, retry_on_error, "
    "task_count, content_hash, created_at, done_count, cancelled, retried, retention_seconds, "
    "poison_after, cache_seconds"
)
TASK_COLUMNS = (
    "session_id, idx, state, attempt, max_attempts, priority, owner, output, output_ref, error, "
    "log, done_seq, submitted_at, started_at, finished_at, lease_expires_at, evidence, cached"
)
NEW_TASK_COLUMNS = (
    "session_id, idx, function, priority, state, max_attempts, timeout_seconds, "
    "retry_on_error, payload, payload_ref, submitted_at, tenant"
)
LEASE_COLUMNS = (
    "session_id, idx, attempt, max_attempts, timeout_seconds, function, retry_on_error, "
    "lease_expires_at, payload, payload_ref, priority, seq, submitted_at"
)

Row = Sequence[Any]
HELD = "held"  # the stored state of a held task: reported as pending, never claimed


def state_of(value: str) -> TaskState:
    """The state a stored state value reports (a held task is pending to every reader)."""
    return TaskState.PENDING if value == HELD else TaskState(value)


def session_from_row(row: Row) -> SessionInfo:
    spec = SessionSpec(
        id=row[0],
        owner=row[1],
        function=row[2],
        priority=row[3],
        max_attempts=row[4],
        timeout_seconds=row[5],
        retry_on_error=bool(row[6]),
        task_count=row[7],
        content_hash=row[8],
        created_at=row[9],
        retention_seconds=row[13],
        poison_after=row[14],
        cache_seconds=row[15],
    )
    # done_count counts the completion numbers given; ``retried`` of them were given up
    return SessionInfo(spec, row[10] - row[12], bool(row[11]), retried=row[12])


def task_from_row(row: Row, payload: Row = (None, None)) -> TaskRecord:
    return TaskRecord(
        task_id=task_id(row[0], row[1]),
        session_id=row[0],
        index=row[1],
        state=state_of(row[2]),
        attempt=row[3],
        max_attempts=row[4],
        priority=row[5],
        owner=row[6],
        output=None if row[7] is None else bytes(row[7]),
        output_ref=row[8],
        error=ErrorInfo.from_json(row[9]),
        log=row[10] or "",
        cursor=row[11],
        submitted_at=row[12],
        started_at=row[13],
        finished_at=row[14],
        lease_expires_at=row[15],
        evidence=row[16] or "",
        cached=bool(row[17]),
        payload=None if payload[0] is None else bytes(payload[0]),
        payload_ref=payload[1],
    )


def lease_from_row(row: Row) -> Lease:
    return Lease(
        task_id=task_id(row[0], row[1]),
        session_id=row[0],
        index=row[1],
        attempt=row[2],
        max_attempts=row[3],
        timeout_seconds=row[4],
        function=row[5],
        retry_on_error=bool(row[6]),
        expires_at=row[7],
        payload=None if row[8] is None else bytes(row[8]),
        payload_ref=row[9],
        submitted_at=row[12],
    )


def session_row(spec: SessionSpec, now: float) -> tuple[Any, ...]:
    """A new session's values for the first ten of ``SESSION_COLUMNS``; its counters start at
    zero, then come ``spec.retention_seconds``, ``poison_after`` and ``cache_seconds``."""
    return (
        spec.id,
        spec.owner,
        spec.function,
        spec.priority,
        spec.max_attempts,
        spec.timeout_seconds,
        spec.retry_on_error,
        spec.task_count,
        spec.content_hash,
        spec.created_at or now,
    )


def own_options(spec: SessionSpec) -> tuple[Any, ...]:
    """The last of ``SESSION_COLUMNS``: the session's own settings, None where it has none."""
    return (spec.retention_seconds, spec.poison_after, spec.cache_seconds)


def task_rows(spec: SessionSpec, tasks: Sequence[NewTask], now: float) -> Iterator[tuple[Any, ...]]:
    """New tasks' values for ``NEW_TASK_COLUMNS``."""
    for t in tasks:
        yield (
            spec.id,
            t.index,
            spec.function,
            t.priority,
            HELD if t.held else "pending",
            spec.max_attempts,
            spec.timeout_seconds,
            spec.retry_on_error,
            t.payload,
            t.payload_ref,
            now,
            spec.owner,  # the tenant: whose share the task's claims count against
        )
