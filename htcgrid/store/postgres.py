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
id order. Waiting uses ``LISTEN/NOTIFY`` through one listener thread per store (``_Listener``),
with a re-check every ``recheck_seconds`` should a notification never come.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from htcgrid.errors import Conflict, NotFound, ValidationError
from htcgrid.models import (
    CancelCounts,
    ExpiryReport,
    HeartbeatStatus,
    Lease,
    NewTask,
    Outcome,
    SessionInfo,
    SessionSpec,
    TaskRecord,
    TaskState,
    expired_error,
    split_task_id,
    task_id,
)
from htcgrid.store.base import TaskStore
from htcgrid.store.postgres_migrations import Target, parse_url, reachable, upgrade
from htcgrid.store.rows import (
    SESSION_COLUMNS,
    TASK_COLUMNS,
    lease_from_row,
    session_from_row,
    task_from_row,
)
from htcgrid.urls import redact

T = TypeVar("T")
Connection = psycopg.Connection[TupleRow]

RECHECK_SECONDS = 0.5  # a waiter looks again this often even if no notification arrives
LISTENER_POLL_SECONDS = 0.1  # how soon the listener thread notices close()

INSERT_SESSION = f"""
INSERT INTO sessions ({SESSION_COLUMNS})
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0, false)
ON CONFLICT (id) DO NOTHING RETURNING true
"""
COPY_TASKS = """
COPY tasks (session_id, idx, function, priority, state, max_attempts, timeout_seconds,
            retry_on_error, payload, payload_ref, submitted_at) FROM STDIN
"""

# The row versions locked by SKIP LOCKED cannot move before this statement ends, so their
# ctids address them directly (a TID scan, whatever the size of the table).
CLAIM = """
UPDATE tasks
SET state = 'processing', attempt = attempt + 1, owner = %(agent)s,
    lease_expires_at = %(expires)s, started_at = %(now)s
WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM tasks
    WHERE state = 'pending' {filter}
    ORDER BY priority DESC, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))
RETURNING session_id, idx, attempt, max_attempts, timeout_seconds, function, retry_on_error,
          lease_expires_at, payload, payload_ref, priority, seq
"""

HEARTBEAT = """
WITH req AS (
    SELECT * FROM unnest(%(sessions)s::text[], %(idxs)s::int[], %(attempts)s::int[])
        AS r(session_id, idx, attempt)
), mine AS MATERIALIZED (
    -- primary-key lookups, as in APPLY
    SELECT r.session_id, r.idx FROM (SELECT * FROM req ORDER BY session_id, idx) r
    CROSS JOIN LATERAL (
        SELECT 1 FROM tasks t
        WHERE t.session_id = r.session_id AND t.idx = r.idx
          AND t.state = 'processing' AND t.owner = %(agent)s AND t.attempt = r.attempt
        FOR UPDATE OF t
    ) owned
), extended AS (
    UPDATE tasks t SET lease_expires_at = %(expires)s FROM mine
    WHERE t.session_id = mine.session_id AND t.idx = mine.idx
    RETURNING t.session_id, t.idx
)
SELECT r.session_id, r.idx, e.idx IS NOT NULL, CASE WHEN e.idx IS NULL THEN (
    SELECT t.state FROM tasks t WHERE t.session_id = r.session_id AND t.idx = r.idx) END
FROM req r LEFT JOIN extended e USING (session_id, idx)
"""

# Records outcomes of tasks still processing under the given attempt (and agent, unless NULL:
# the TTL checker, which has locked them already). Terminal outcomes take the next numbers of
# their session, in request order; a NULL log keeps the task's log.
APPLY = """
WITH req AS (
    SELECT * FROM unnest(
        %(sessions)s::text[], %(idxs)s::int[], %(attempts)s::int[], %(states)s::text[],
        %(outputs)s::bytea[], %(output_refs)s::text[], %(errors)s::text[], %(logs)s::text[]
    ) WITH ORDINALITY AS r(session_id, idx, attempt, state, output, output_ref, error, log, ord)
), hit AS MATERIALIZED (
    -- one primary-key lookup per outcome, whatever the planner believes of the table: a join
    -- would scan every processing task of the grid when statistics are stale
    SELECT r.* FROM (SELECT * FROM req ORDER BY session_id, idx) r
    CROSS JOIN LATERAL (
        SELECT 1 FROM tasks t
        WHERE t.session_id = r.session_id AND t.idx = r.idx
          AND t.state = 'processing' AND t.attempt = r.attempt
          AND (%(agent)s::text IS NULL OR t.owner = %(agent)s)
        FOR UPDATE OF t
    ) owned
), finished AS (
    SELECT session_id, count(*) AS k FROM hit WHERE state <> 'pending' GROUP BY session_id
), counters AS MATERIALIZED (
    SELECT s.id FROM sessions s JOIN finished f ON f.session_id = s.id
    ORDER BY s.id
    FOR UPDATE OF s
), bumped AS (
    UPDATE sessions s SET done_count = s.done_count + f.k
    FROM finished f JOIN counters c ON c.id = f.session_id
    WHERE s.id = f.session_id
    RETURNING s.id, s.done_count - f.k AS base
), numbered AS (
    SELECT h.*, b.base + row_number() OVER (
        PARTITION BY h.session_id, h.state = 'pending' ORDER BY h.ord) AS done_seq
    FROM hit h LEFT JOIN bumped b ON b.id = h.session_id AND h.state <> 'pending'
), applied AS (
    UPDATE tasks t
    SET state = n.state, owner = NULL, lease_expires_at = NULL, output = n.output,
        output_ref = n.output_ref, error = n.error, log = coalesce(n.log, t.log),
        done_seq = n.done_seq,
        finished_at = CASE WHEN n.state = 'pending' THEN NULL ELSE %(now)s END
    FROM numbered n
    WHERE t.session_id = n.session_id AND t.idx = n.idx
    RETURNING n.ord, n.session_id, n.state
)
-- PostgreSQL delivers repeated (channel, payload) pairs of one transaction only once
SELECT ord, pg_notify(
    CASE WHEN state = 'pending' THEN %(tasks_channel)s ELSE %(sessions_channel)s END,
    CASE WHEN state = 'pending' THEN '' ELSE session_id END)
FROM applied
"""

LOCK_EXPIRED = """
SELECT session_id, idx, attempt, max_attempts FROM tasks
WHERE state = 'processing' AND lease_expires_at < %s
ORDER BY lease_expires_at
LIMIT %s
FOR UPDATE SKIP LOCKED
"""

CANCEL = """
WITH open AS MATERIALIZED (
    SELECT idx, state FROM tasks
    WHERE session_id = %(session)s AND state IN ('pending', 'processing')
    ORDER BY session_id, idx
    FOR UPDATE
), bumped AS (
    UPDATE sessions SET done_count = done_count + (SELECT count(*) FROM open), cancelled = true
    WHERE id = %(session)s
    RETURNING done_count - (SELECT count(*) FROM open) AS base
), cancelled AS (
    UPDATE tasks t
    SET state = 'cancelled', owner = NULL, lease_expires_at = NULL, finished_at = %(now)s,
        done_seq = b.base + o.rank
    FROM (SELECT idx, row_number() OVER (ORDER BY idx) AS rank FROM open) o, bumped b
    WHERE t.session_id = %(session)s AND t.idx = o.idx
)
SELECT (SELECT count(*) FROM bumped),
       (SELECT count(*) FROM open WHERE state = 'pending'),
       (SELECT count(*) FROM open WHERE state = 'processing'),
       pg_notify(%(channel)s, %(session)s)
"""

DELETE_SESSION = """
WITH doomed AS MATERIALIZED (
    SELECT idx FROM tasks WHERE session_id = %(session)s ORDER BY session_id, idx FOR UPDATE
), tasks_gone AS (
    DELETE FROM tasks t USING doomed d WHERE t.session_id = %(session)s AND t.idx = d.idx
)
DELETE FROM sessions WHERE id = %(session)s
RETURNING pg_notify(%(channel)s, id)  -- its waiters learn at once that it is gone
"""


def channel_names(schema: str) -> tuple[str, str]:
    """The (tasks, sessions) NOTIFY channels of a schema: stores in other schemas never hear
    them. Channel names are identifiers of at most 63 bytes, so long schemas are hashed."""
    stem = schema if len(schema) <= 48 else hashlib.sha256(schema.encode()).hexdigest()[:32]
    return f"{stem}.tasks", f"{stem}.sessions"


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


class _Listener:
    """One background connection LISTENing on a store's two channels, for all its waiters.

    A topic is ``"tasks"`` or ``"session:<id>"``; each watched topic has a generation that
    every matching notification moves. A waiter reads the generation, checks the database,
    then sleeps until the generation moves, so a notification that lands between its check
    and its sleep still wakes it. Reconnecting moves every generation, since notifications
    sent while nobody listened are lost.
    """

    def __init__(
        self, conninfo: str, tasks_channel: str, sessions_channel: str, recheck_seconds: float
    ) -> None:
        self._conninfo = conninfo
        self._recheck_seconds = recheck_seconds
        self._tasks_channel = tasks_channel
        self._sessions_channel = sessions_channel
        self._cond = threading.Condition()
        self._generations: dict[str, int] = {}
        self._watchers: Counter[str] = Counter()
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    def wait_until(
        self, topic: str, probe: Callable[[], T | None], timeout_seconds: float
    ) -> T | None:
        """Call ``probe`` until it returns something other than None or the timeout passes,
        again after every notification on ``topic`` and at least every ``recheck_seconds``."""
        self._start()
        deadline = time.monotonic() + timeout_seconds
        with self._watching(topic):
            while True:
                with self._cond:
                    seen = self._generations[topic]
                value = probe()
                remaining = deadline - time.monotonic()
                if value is not None or remaining <= 0:
                    return value
                self._sleep(topic, seen, min(remaining, self._recheck_seconds))

    def _sleep(self, topic: str, seen: int, timeout_seconds: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._generations[topic] != seen, timeout_seconds)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @contextmanager
    def _watching(self, topic: str) -> Iterator[None]:
        with self._cond:
            self._watchers[topic] += 1
            self._generations.setdefault(topic, 0)
        try:
            yield
        finally:
            with self._cond:
                self._watchers[topic] -= 1
                if not self._watchers[topic]:
                    del self._watchers[topic], self._generations[topic]

    def _start(self) -> None:
        """Start the listener thread once; wait (briefly) until it listens, so that the first
        check of a waiter is already covered by notifications."""
        with self._cond:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="htcgrid-pg-listener", daemon=True
                )
                self._thread.start()
        self._listening.wait(self._recheck_seconds)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg.Error:
                self._listening.clear()
                self._stop.wait(self._recheck_seconds)  # server away: waiters re-check meanwhile

    def _listen(self) -> None:
        with psycopg.connect(self._conninfo, autocommit=True) as conn:
            for channel in (self._tasks_channel, self._sessions_channel):
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self._listening.set()
            self._wake(None)
            while not self._stop.is_set():
                for note in conn.notifies(timeout=LISTENER_POLL_SECONDS):
                    tasks = note.channel == self._tasks_channel
                    self._wake("tasks" if tasks else f"session:{note.payload}")

    def _wake(self, topic: str | None) -> None:
        """Move ``topic``'s generation (every topic's for None) and wake the waiters."""
        with self._cond:
            for watched in [topic] if topic is not None else list(self._generations):
                if watched in self._generations:
                    self._generations[watched] += 1
            self._cond.notify_all()


class PostgresTaskStore(TaskStore):
    """``postgresql://user:password@host:port/db?schema=htcgrid&pool_max=10``.

    Construction applies any missing migrations (see ``postgres_migrations``). Raises
    ``BackendUnavailable`` (here and from every method) when the server cannot be reached.
    Waiters re-check the database every ``recheck_seconds`` if no notification wakes them.
    """

    def __init__(self, url: str, recheck_seconds: float = RECHECK_SECONDS) -> None:
        self.url = url
        self._target: Target = parse_url(url)
        upgrade(url)
        self._tasks_channel, self._sessions_channel = channel_names(self._target.schema)
        self._listener = _Listener(
            self._target.conninfo, self._tasks_channel, self._sessions_channel, recheck_seconds
        )
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            self._target.conninfo,
            min_size=self._target.pool_min,
            max_size=self._target.pool_max,
            timeout=self._target.pool_timeout_seconds,
            kwargs={"autocommit": True},
            num_workers=2,
            name=f"htcgrid-{self._target.schema}",
            open=True,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.url)!r})"

    # ---- connections --------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        with reachable(self._target), self._pool.connection() as conn:
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
        self._pool.close()

    # ---- clients ------------------------------------------------------------------------

    def create_session(self, spec: SessionSpec, tasks: Sequence[NewTask], now: float) -> bool:
        try:
            with self._transaction() as conn:
                if conn.execute(INSERT_SESSION, _session_params(spec, now)).fetchone() is None:
                    return self._resubmitted(conn, spec)
                with conn.cursor().copy(COPY_TASKS) as copy:
                    for row in _task_rows(spec, tasks, now):
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
            counts[TaskState(state)] = n
        return counts

    def results(self, session_id: str, after_seq: int = 0, limit: int = 1000) -> list[TaskRecord]:
        rows = self._rows(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE session_id = %s AND done_seq > %s "
            "ORDER BY done_seq LIMIT %s",
            (session_id, after_seq, limit),
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

    def cancel_session(self, session_id: str, now: float) -> CancelCounts:
        params = {"session": session_id, "now": now, "channel": self._sessions_channel}
        row = self._row(CANCEL, params)
        if row is None or not row[0]:
            raise NotFound(f"no session {session_id}")
        return CancelCounts(pending=row[1], processing=row[2])

    def delete_session(self, session_id: str) -> bool:
        with self._connection() as conn:
            params = {"session": session_id, "channel": self._sessions_channel}
            return conn.execute(DELETE_SESSION, params).rowcount > 0

    # ---- agents ------------------------------------------------------------------------

    def claim(
        self,
        agent_id: str,
        max_tasks: int,
        lease_seconds: float,
        now: float,
        functions: Sequence[str] | None = None,
    ) -> list[Lease]:
        if max_tasks <= 0:
            return []
        where = "" if functions is None else "AND function = ANY(%(functions)s::text[])"
        params = {
            "limit": max_tasks,
            "agent": agent_id,
            "expires": now + lease_seconds,
            "now": now,
            "functions": list(functions or []),
        }
        rows = self._rows(CLAIM.format(filter=where), params)
        rows.sort(key=lambda r: (-r[10], r[11]))
        return [lease_from_row(r) for r in rows]

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
            outcomes = [_expiry(task_id(s, i), attempt, most) for s, i, attempt, most in expired]
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

    def wait_for_session(self, session_id: str, after_seq: int, timeout_seconds: float) -> int:
        def probe() -> int | None:
            row = self._row("SELECT done_count FROM sessions WHERE id = %s", (session_id,))
            if row is None:
                raise NotFound(f"no session {session_id}")
            return int(row[0]) if row[0] > after_seq else None

        done = self._listener.wait_until(f"session:{session_id}", probe, timeout_seconds)
        return after_seq if done is None else done

    def queue_depth(self, functions: Sequence[str] | None = None) -> int:
        where = "" if functions is None else "AND function = ANY(%s::text[])"
        params = None if functions is None else (list(functions),)
        row = self._row(f"SELECT count(*) FROM tasks WHERE state = 'pending' {where}", params)
        return int(row[0]) if row else 0


def _expiry(tid: str, attempt: int, max_attempts: int) -> Outcome:
    """What the TTL checker records for an expired lease (design §2)."""
    if attempt < max_attempts:
        return Outcome(tid, attempt, TaskState.PENDING)
    return Outcome(tid, attempt, TaskState.FAILED, error=expired_error(attempt))


def _session_params(spec: SessionSpec, now: float) -> tuple[Any, ...]:
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


def _task_rows(
    spec: SessionSpec, tasks: Sequence[NewTask], now: float
) -> Iterator[tuple[Any, ...]]:
    for t in tasks:
        yield (
            spec.id,
            t.index,
            spec.function,
            t.priority,
            "pending",
            spec.max_attempts,
            spec.timeout_seconds,
            spec.retry_on_error,
            t.payload,
            t.payload_ref,
            now,
        )
