"""``TaskStore.tasks_in_state`` for the in-process and SQL stores: a session's tasks in one
state, a page at a time (Redis and AWS have theirs in ``redis_states`` and ``aws_states``).

- memory: the session's tasks in index order from the cursor, under the store's lock.
- SQLite: the ``tasks_by_state (session_id, state)`` index, whose entries within one state
  are in row order, so the cursor is the row number and a page is one index range.
- PostgreSQL: failed tasks through the partial index ``tasks_failed (session_id, idx) WHERE
  state = 'failed'`` (migration 7: it holds only failed tasks, so keeping it costs nothing on
  the hot path); other states read the primary key (session, index) a window of
  ``WINDOW`` indexes at a time, so one call's work stays bounded whatever the state.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from typing import Any

from htcgrid.errors import ValidationError
from htcgrid.models import TaskRecord, TaskState, task_id
from htcgrid.store.rows import HELD, TASK_COLUMNS, task_from_row

WINDOW = 20_000  # PostgreSQL: indexes read per call for a state without an index of its own
Page = tuple[list[TaskRecord], str | None]
# the values stored for each state in the SQL stores: a held task is pending to readers
STORED = {state: (state.value,) for state in TaskState} | {
    TaskState.PENDING: (TaskState.PENDING.value, HELD)
}


def after_of(cursor: str | None) -> int:
    """The number a cursor holds (what the last page ended at); -1 for the first page."""
    if cursor is None or cursor == "":
        return -1
    try:
        after = int(cursor)
    except ValueError:
        after = -2
    if not -1 <= after < 2**53:  # what the stores' integers and JSON carry exactly
        raise ValidationError(f"not a cursor of this listing: {cursor!r}")
    return after


def check_limit(limit: int) -> int:
    if limit < 1:
        raise ValidationError("limit must be at least 1")
    return limit


class MemoryStates:
    _cond: threading.Condition
    _tasks: dict[str, TaskRecord]
    _sessions: dict[str, Any]

    def tasks_in_state(
        self, session_id: str, state: TaskState, cursor: str | None = None, limit: int = 100
    ) -> Page:
        after, limit = after_of(cursor), check_limit(limit)
        found: list[TaskRecord] = []
        with self._cond:
            session = self._sessions.get(session_id)
            count = 0 if session is None else session.spec.task_count
            for index in range(after + 1, count):
                record = self._tasks[task_id(session_id, index)]
                if record.state is state:
                    found.append(replace(record, payload=None, payload_ref=None))
                    if len(found) == limit:
                        more = index + 1 < count
                        return found, str(index) if more else None
        return found, None


class SQLiteStates:
    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def tasks_in_state(
        self, session_id: str, state: TaskState, cursor: str | None = None, limit: int = 100
    ) -> Page:
        after, limit = after_of(cursor), check_limit(limit)
        rows: list[Any] = []
        for stored in STORED[state]:  # one index range each, merged by row number
            rows += self._conn().execute(
                f"SELECT seq, {TASK_COLUMNS} FROM tasks INDEXED BY tasks_by_state "
                "WHERE session_id = ? AND state = ? AND seq > ? ORDER BY seq LIMIT ?",
                (session_id, stored, after, limit),
            )
        rows = sorted(rows, key=lambda r: int(r[0]))[:limit]
        records = [task_from_row(r[1:]) for r in rows]
        return records, str(rows[-1][0]) if len(rows) == limit else None


class PostgresStates:
    def _rows(self, query: str, params: Any = None) -> list[Any]:
        raise NotImplementedError

    def tasks_in_state(
        self, session_id: str, state: TaskState, cursor: str | None = None, limit: int = 100
    ) -> Page:
        after, limit = after_of(cursor), check_limit(limit)
        # The state is written into the statement (an enum value, never caller text) so that
        # the planner matches the partial index's predicate whatever plan it caches.
        stored = ", ".join(f"'{value}'" for value in STORED[TaskState(state)])
        where = f"session_id = %s AND state IN ({stored}) AND idx > %s"
        params: tuple[Any, ...] = (session_id, after)
        if state is not TaskState.FAILED:
            where += " AND idx <= %s"
            params += (after + WINDOW,)
        rows = self._rows(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE {where} ORDER BY idx LIMIT %s",
            (*params, limit),
        )
        records = [task_from_row(r) for r in rows]
        if len(records) == limit:
            return records, str(records[-1].index)
        if state is TaskState.FAILED:
            return records, None
        found = self._rows("SELECT task_count FROM sessions WHERE id = %s", (session_id,))
        more = bool(found) and after + WINDOW + 1 < int(found[0][0])
        return records, str(after + WINDOW) if more else None
