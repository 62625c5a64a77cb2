"""The PostgreSQL task store: any number of servers and agents share one database.

Every state change is one SQL statement (expiry: two, in one transaction), so a batch of any
size costs one round trip:

- **claim** picks pending tasks with ``FOR UPDATE SKIP LOCKED``, so concurrent claimers never
  wait for nor collide with each other, and updates them in the same statement;
- **heartbeat** and **complete** take their whole batch as parallel arrays (``unnest``);
- **completion numbers** come from the session's ``done_count``, bumped in the statement that
  records the outcomes. The session row stays locked until commit, so the completers of one
  session take turns and their numbers follow commit order with no gaps.

Deadlocks are ruled out by one lock order: task rows first, in key order, then session rows, in
id order. Waiting uses ``LISTEN/NOTIFY`` through one listener thread per store
(``postgres_listen.Listener``), with a re-check every ``recheck_seconds`` should a notification
never come. The statements themselves are in ``postgres_sql.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.rows import TupleRow

from htcgrid.errors import Conflict, NotFound, ValidationError
from htcgrid.models import (
    ExpiryReport,
    HeartbeatStatus,
    NewTask,
    Outcome,
    SessionInfo,
    SessionSpec,
    TaskRecord,
    TaskState,
    after_lease_expired,
    split_task_id,
    task_id,
)
from htcgrid.store.base import TaskStore, wanted_indexes
from htcgrid.store.postgres_held import PostgresHeld
from htcgrid.store.postgres_listen import RECHECK_SECONDS, Listener, channel_names
from htcgrid.store.postgres_migrations import Database
from htcgrid.store.postgres_share import PostgresShare
from htcgrid.store.postgres_sql import (
    APPLY,
    COPY_TASKS,
    DELETE_SESSION,
    HEARTBEAT,
    INSERT_SESSION,
    LOCK_EXPIRED,
    PURGEABLE,
    RETRY,
)
from htcgrid.store.rows import (
    SESSION_COLUMNS,
    TASK_COLUMNS,
    own_options,
    session_from_row,
    session_row,
    state_of,
    task_from_row,
    task_rows,
)
from htcgrid.store.state_pages import PostgresStates
from htcgrid.urls import redact

T = TypeVar("T")
Connection = psycopg.Connection[TupleRow]


def _keys(task_ids: Sequence[str]) -> list[tuple[str, int] | None]:
    """``(session_id, idx)`` per task id; None for an id that names no task."""
    keys: list[tuple[str, int] | None] = []
    for tid in task_ids:
        try:
            keys.append(split_task_id(tid))
        except ValueError:
            keys.append(None)
    return keys


def _distinct(outcomes: Sequence[Outcome]) -> list[tuple[int, tuple[str, int], Outcome]]:
    """``(position, key, outcome)`` of the outcomes worth sending: not those naming no task,
    nor a task's second outcome in one batch (refused, as it would be in the next batch; one
    statement cannot update a row twice)."""
    seen: set[str] = set()
    keyed = []
    for i, (key, o) in enumerate(zip(_keys([o.task_id for o in outcomes]), outcomes, strict=True)):
        if key is not None and o.task_id not in seen:
            seen.add(o.task_id)
            keyed.append((i, key, o))
    return keyed


class PostgresTaskStore(PostgresShare, PostgresHeld, PostgresStates, TaskStore):
    """``postgresql://user:password@host:port/db?schema=htcgrid&pool_max=10``.

    Construction applies any missing migrations (see ``postgres_migrations``). Raises
    ``BackendUnavailable`` (here and from every method) when the server cannot be reached.
    Waiters re-check the database every ``recheck_seconds`` if no notification wakes them.
    """

    def __init__(
        self, url: str, recheck_seconds: float = RECHECK_SECONDS, create: bool = True
    ) -> None:
        self.url = url
        self._db = Database(url, "htcgrid", workers=2)
        self._target = self._db.target
        self._tasks_channel, self._sessions_channel = channel_names(self._target.schema)
        self._listener = Listener(
            self._target.conninfo, self._tasks_channel, self._sessions_channel, recheck_seconds
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.url)!r})"

    # ---- connections --------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        with self._db.connection() as conn:
            yield conn

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self._connection() as conn, conn.transaction():
            yield conn

    def _rows(self, query: str, params: Any = None) -> list[TupleRow]:
        with self._connection() as conn:
            return conn.execute(query, params).fetchall()

    def _row(self, query: str, params: Any = None) -> TupleRow | None:
        with self._connection() as conn:
            return conn.execute(query, params).fetchone()

    def close(self) -> None:
        self._listener.close()
        self._db.close()

    # ---- clients ------------------------------------------------------------------------

    def create_session(self, spec: SessionSpec, tasks: Sequence[NewTask], now: float) -> bool:
        try:
            with self._transaction() as conn:
                values = (*session_row(spec, now), *own_options(spec))
                if conn.execute(INSERT_SESSION, values).fetchone() is None:
                    return self._resubmitted(conn, spec)
                with conn.cursor().copy(COPY_TASKS) as copy:
                    for row in task_rows(spec, tasks, now):
                        copy.write_row(row)
                conn.execute("SELECT pg_notify(%s, '')", (self._tasks_channel,))
        except psycopg.errors.UniqueViolation as exc:
            raise ValidationError(f"session {spec.id} repeats a task index") from exc
        return True

    @staticmethod
    def _resubmitted(conn: Connection, spec: SessionSpec) -> bool:
        row = conn.execute("SELECT content_hash FROM sessions WHERE id = %s", (spec.id,)).fetchone()
        if row is None or row[0] != spec.content_hash:
            raise Conflict(f"session {spec.id} exists with different content")
        return False

    def get_session(self, session_id: str) -> SessionInfo | None:
        row = self._row(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = %s", (session_id,))
        return None if row is None else session_from_row(row)

    def list_sessions(
        self, owner: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[SessionInfo]:
        where = "WHERE owner = %(owner)s" if owner is not None else ""
        rows = self._rows(
            f"SELECT {SESSION_COLUMNS} FROM sessions {where} "
            "ORDER BY created_at DESC, seq DESC LIMIT %(limit)s OFFSET %(offset)s",
            {"owner": owner, "limit": limit, "offset": offset},
        )
        return [session_from_row(r) for r in rows]

    def count_states(self, session_id: str) -> dict[TaskState, int]:
        counts = dict.fromkeys(TaskState, 0)
        rows = self._rows(
            "SELECT state, count(*) FROM tasks WHERE session_id = %s GROUP BY state", (session_id,)
        )
        for state, n in rows:
            counts[state_of(state)] += n
        return counts

    def results(self, session_id: str, cursor: int = 0, limit: int = 1000) -> list[TaskRecord]:
        rows = self._rows(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE session_id = %s AND done_seq > %s "
            "ORDER BY done_seq LIMIT %s",
            (session_id, cursor, limit),
        )
        return [task_from_row(r) for r in rows]

    def get_task(self, tid: str) -> TaskRecord | None:
        (key,) = _keys([tid])
        if key is None:
            return None
        row = self._row(
            f"SELECT {TASK_COLUMNS}, payload, payload_ref FROM tasks "
            "WHERE session_id = %s AND idx = %s",
            key,
        )
        return None if row is None else task_from_row(row[:-2], row[-2:])

    def retry(self, session_id: str, task_ids: Sequence[str] | None, now: float) -> list[str]:
        wanted = wanted_indexes(session_id, task_ids)
        params = {
            "session": session_id,
            "every": wanted is None,
            "idxs": sorted(wanted or ()),
            "tasks_channel": self._tasks_channel,
            "sessions_channel": self._sessions_channel,
        }
        row = self._row(RETRY, params)
        if row is None or not row[0]:
            raise NotFound(f"no session {session_id}")
        return [task_id(session_id, i) for i in row[1] or ()]

    def delete_session(self, session_id: str) -> bool:
        with self._connection() as conn:
            params = {"session": session_id, "channel": self._sessions_channel}
            return conn.execute(DELETE_SESSION, params).rowcount > 0

    def purge(self, before: float, limit: int = 100, now: float | None = None) -> list[str]:
        rows = self._rows(PURGEABLE, {"before": before, "limit": limit, "now": now})
        return [str(sid) for (sid,) in rows if self.delete_session(str(sid))]

    # ---- agents ------------------------------------------------------------------------

    def heartbeat(
        self,
        agent_id: str,
        leases: Sequence[tuple[str, int]],
        lease_seconds: float,
        now: float,
    ) -> dict[str, HeartbeatStatus]:
        answers = {tid: HeartbeatStatus.LOST for tid, _ in leases}
        keys = _keys([tid for tid, _ in leases])
        known = [(key, attempt) for key, (_, attempt) in zip(keys, leases, strict=True) if key]
        if not known:
            return answers
        rows = self._rows(
            HEARTBEAT,
            {
                "sessions": [key[0] for key, _ in known],
                "idxs": [key[1] for key, _ in known],
                "attempts": [attempt for _, attempt in known],
                "agent": agent_id,
                "expires": now + lease_seconds,
            },
        )
        for session_id, index, extended, state in rows:
            answer = HeartbeatStatus.CANCELLED if state == "cancelled" else HeartbeatStatus.LOST
            answers[task_id(session_id, index)] = HeartbeatStatus.OK if extended else answer
        return answers

    def complete(self, agent_id: str, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        with self._connection() as conn:
            applied = self._apply(conn, agent_id, outcomes, now)
        return [i in applied for i in range(len(outcomes))]

    def _apply(
        self, conn: Connection, agent_id: str | None, outcomes: Sequence[Outcome], now: float
    ) -> set[int]:
        """Run APPLY; returns the positions (0-based) of the outcomes that were recorded.
        ``agent_id`` None (the TTL checker) matches any owner and keeps the tasks' logs."""
        keyed = _distinct(outcomes)
        if not keyed:
            return set()
        params = {
            "sessions": [key[0] for _, key, _ in keyed],
            "idxs": [key[1] for _, key, _ in keyed],
            "attempts": [o.attempt for _, _, o in keyed],
            "states": [o.state.value for _, _, o in keyed],
            "outputs": [o.output for _, _, o in keyed],
            "output_refs": [o.output_ref for _, _, o in keyed],
            "errors": [o.error.to_json() if o.error else None for _, _, o in keyed],
            "logs": [o.log if agent_id is not None else None for _, _, o in keyed],
            "releases": [o.released for _, _, o in keyed],
            "evidences": [o.evidence or None for _, _, o in keyed],
            "cached": [o.cached for _, _, o in keyed],
            "agent": agent_id,
            "now": now,
            "tasks_channel": self._tasks_channel,
            "sessions_channel": self._sessions_channel,
        }
        rows = conn.execute(APPLY, params).fetchall()
        return {keyed[ord_ - 1][0] for ord_, _ in rows}

    # ---- TTL checker -------------------------------------------------------------------

    def expire_leases(self, now: float, limit: int = 1000) -> ExpiryReport:
        report = ExpiryReport()
        with self._transaction() as conn:
            expired = conn.execute(LOCK_EXPIRED, (now, limit)).fetchall()
            outcomes = [after_lease_expired(task_id(s, i), a, most) for s, i, a, most in expired]
            self._apply(conn, None, outcomes, now)
        for o in outcomes:
            (report.requeued if o.state is TaskState.PENDING else report.failed).append(o.task_id)
        return report

    # ---- waiting and metrics ------------------------------------------------------------

    def wait_for_tasks(
        self, timeout_seconds: float, functions: Sequence[str] | None = None
    ) -> bool:
        where = "" if functions is None else "AND function = ANY(%s::text[])"
        query = f"SELECT 1 FROM tasks WHERE state = 'pending' {where} LIMIT 1"
        params = None if functions is None else (list(functions),)

        def probe() -> bool | None:
            return True if self._row(query, params) else None

        return self._listener.wait_until("tasks", probe, timeout_seconds) or False

    def wait_for_session(self, session_id: str, cursor: int, timeout_seconds: float) -> int:
        def probe() -> int | None:
            row = self._row("SELECT done_count FROM sessions WHERE id = %s", (session_id,))
            if row is None:
                raise NotFound(f"no session {session_id}")
            return int(row[0]) if row[0] > cursor else None

        done = self._listener.wait_until(f"session:{session_id}", probe, timeout_seconds)
        return cursor if done is None else done

    def queue_depth(self, functions: Sequence[str] | None = None) -> int:
        where = "" if functions is None else "AND function = ANY(%s::text[])"
        params = None if functions is None else (list(functions),)
        row = self._row(f"SELECT count(*) FROM tasks WHERE state = 'pending' {where}", params)
        return int(row[0]) if row else 0

    def task_counts(self, max_sessions: int = 10_000) -> dict[tuple[str, TaskState, int], int]:
        query = "SELECT function, state, priority, count(*) FROM tasks GROUP BY 1, 2, 3"
        with self._connection() as conn:
            rows = conn.execute(query).fetchall()
        found: dict[tuple[str, TaskState, int], int] = {}
        for f, state, p, n in rows:
            key = (f, state_of(state), int(p))
            found[key] = found.get(key, 0) + int(n)
        return found

    # ---- grid metadata ------------------------------------------------------------------

    def _write(self, query: str, params: Any) -> None:
        with self._connection() as conn:
            conn.execute(query, params)

    def get_meta(self, key: str) -> str | None:
        row = self._row("SELECT value FROM meta WHERE key = %s", (key,))
        return None if row is None else str(row[0])

    def set_meta_if_absent(self, key: str, value: str) -> str:
        self._write("INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO NOTHING", (key, value))
        return self.get_meta(key) or value

    def put_meta(self, key: str, value: str) -> None:
        self._write(
            "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = %s",
            (key, value, value),
        )

    def list_meta(self, prefix: str) -> dict[str, str]:
        rows = self._rows("SELECT key, value FROM meta WHERE starts_with(key, %s)", (prefix,))
        return {str(k): str(v) for k, v in rows}

    def delete_meta(self, key: str) -> None:
        self._write("DELETE FROM meta WHERE key = %s", (key,))
