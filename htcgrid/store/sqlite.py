"""The embedded default task store: one SQLite file in WAL mode, shared by local processes.

Every write is one ``BEGIN IMMEDIATE`` transaction, so compare-and-set is simply "update where
the state still matches". Claims use ``UPDATE … RETURNING`` on a partial index of pending tasks.
Waiters are woken by the committer (``sqlite_wake``: a datagram to each waiter's unix socket),
and look at ``PRAGMA data_version``, which changes only when another connection commits and
costs no disk I/O, before they read anything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from htcgrid.errors import Conflict, NotFound
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
from htcgrid.store.rows import (
    NEW_TASK_COLUMNS,
    SESSION_COLUMNS,
    TASK_COLUMNS,
    own_options,
    session_from_row,
    session_row,
    state_of,
    task_from_row,
    task_rows,
)
from htcgrid.store.sqlite_db import SQLiteFile
from htcgrid.store.sqlite_held import SQLiteHeld
from htcgrid.store.sqlite_share import QUEUE, SQLiteShare
from htcgrid.store.sqlite_wake import DONE, WORK
from htcgrid.store.state_pages import SQLiteStates
from htcgrid.urls import local_path, query

# ?1 the default cutoff; ?3 now, or NULL when the sessions' own retention does not count
PURGEABLE = """
SELECT s.id FROM (
    SELECT *, coalesce(?3 - retention_seconds, ?1) AS cutoff FROM sessions
) s
WHERE s.created_at < s.cutoff AND s.done_count - s.retried >= s.task_count AND NOT EXISTS (
    SELECT 1 FROM tasks t
    WHERE t.session_id = s.id AND (t.finished_at IS NULL OR t.finished_at >= s.cutoff)
)
ORDER BY s.created_at LIMIT ?2
"""


class SQLiteTaskStore(SQLiteShare, SQLiteHeld, SQLiteFile, SQLiteStates, TaskStore):
    """``sqlite:///path/grid.db``; options ``?poll_ms=2`` (how often waiters look where push
    wake-ups cannot work: no unix sockets, or a path too long for one). With ``create``
    False a missing file raises NotFound instead of becoming a new, empty grid."""

    def __init__(self, url: str, poll_seconds: float | None = None, create: bool = True) -> None:
        self.url = url
        self.path = local_path(url)
        if not create and not self.path.is_file():
            raise NotFound(
                f"no grid at {self.path}: check --url, or start one with "
                f"`htcgrid up --data-dir {self.path.parent}`"
            )
        if poll_seconds is None:
            poll_seconds = float(query(url).get("poll_ms", 2)) / 1000
        super().__init__(self.path, poll_seconds)

    # ---- clients ------------------------------------------------------------------------

    def create_session(self, spec: SessionSpec, tasks: Sequence[NewTask], now: float) -> bool:
        with self._write() as db:
            row = db.execute(
                "SELECT content_hash FROM sessions WHERE id = ?", (spec.id,)
            ).fetchone()
            if row is not None:
                if row[0] != spec.content_hash:
                    raise Conflict(f"session {spec.id} exists with different content")
                return False
            db.execute(
                f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,0,0,0,?,?,?)",
                (*session_row(spec, now), *own_options(spec)),
            )
            db.executemany(
                f"INSERT INTO tasks ({NEW_TASK_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                task_rows(spec, tasks, now),
            )
        self.wakes.notify(WORK)
        return True

    def get_session(self, session_id: str) -> SessionInfo | None:
        row = (
            self._conn()
            .execute(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,))
            .fetchone()
        )
        return None if row is None else session_from_row(row)

    def list_sessions(
        self, owner: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[SessionInfo]:
        where, args = ("WHERE owner = ?", [owner]) if owner is not None else ("", [])
        rows = (
            self._conn()
            .execute(
                f"SELECT {SESSION_COLUMNS} FROM sessions {where} "
                "ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            )
            .fetchall()
        )
        return [session_from_row(r) for r in rows]

    def count_states(self, session_id: str) -> dict[TaskState, int]:
        counts = dict.fromkeys(TaskState, 0)
        rows = self._conn().execute(
            "SELECT state, count(*) FROM tasks WHERE session_id = ? GROUP BY state", (session_id,)
        )
        for state, n in rows:
            counts[state_of(state)] += n
        return counts

    def results(self, session_id: str, cursor: int = 0, limit: int = 1000) -> list[TaskRecord]:
        rows = self._conn().execute(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE session_id = ? AND done_seq > ? "
            "ORDER BY done_seq LIMIT ?",
            (session_id, cursor, limit),
        )
        return [task_from_row(r) for r in rows]

    def get_task(self, tid: str) -> TaskRecord | None:
        try:
            session_id, index = split_task_id(tid)
        except ValueError:
            return None
        row = (
            self._conn()
            .execute(
                f"SELECT {TASK_COLUMNS}, payload, payload_ref FROM tasks "
                "WHERE session_id = ? AND idx = ?",
                (session_id, index),
            )
            .fetchone()
        )
        return None if row is None else task_from_row(row[:-2], row[-2:])

    def retry(self, session_id: str, task_ids: Sequence[str] | None, now: float) -> list[str]:
        wanted = wanted_indexes(session_id, task_ids)
        with self._write() as db:
            if not db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone():
                raise NotFound(f"no session {session_id}")
            failed = db.execute(
                "SELECT idx FROM tasks WHERE session_id = ? AND state = 'failed' ORDER BY idx",
                (session_id,),
            )
            chosen = [i for (i,) in failed if wanted is None or i in wanted]
            db.executemany(
                "UPDATE tasks SET state = 'pending', attempt = 0, output = NULL, output_ref = NULL, "
                "error = NULL, log = NULL, done_seq = NULL, started_at = NULL, finished_at = NULL "
                "WHERE session_id = ? AND idx = ?",
                [(session_id, i) for i in chosen],
            )
            db.execute(
                "UPDATE sessions SET retried = retried + ? WHERE id = ?", (len(chosen), session_id)
            )
        if chosen:
            self.wakes.notify(WORK, DONE)
        return [task_id(session_id, i) for i in chosen]

    def delete_session(self, session_id: str) -> bool:
        with self._write() as db:
            db.execute("DELETE FROM tasks WHERE session_id = ?", (session_id,))
            return db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0

    def purge(self, before: float, limit: int = 100, now: float | None = None) -> list[str]:
        """As the ABC says; then gives the freed pages back to the file system (on a file
        made by an older htcgrid, only once ``htcgrid db vacuum`` has run)."""
        with self._write() as db:
            ids = [str(sid) for (sid,) in db.execute(PURGEABLE, (before, limit, now))]
            for sid in ids:
                db.execute("DELETE FROM tasks WHERE session_id = ?", (sid,))
                db.execute("DELETE FROM sessions WHERE id = ?", (sid,))
        if ids:
            # executescript, as execute frees a single page per call
            self._conn().executescript("PRAGMA incremental_vacuum")
        return ids

    # ---- agents ------------------------------------------------------------------------

    def heartbeat(
        self,
        agent_id: str,
        leases: Sequence[tuple[str, int]],
        lease_seconds: float,
        now: float,
    ) -> dict[str, HeartbeatStatus]:
        answers: dict[str, HeartbeatStatus] = {}
        with self._write() as db:
            for tid, attempt in leases:
                session_id, index = split_task_id(tid)
                extended = db.execute(
                    "UPDATE tasks SET lease_expires_at = ? WHERE session_id = ? AND idx = ? "
                    "AND state = 'processing' AND owner = ? AND attempt = ?",
                    (now + lease_seconds, session_id, index, agent_id, attempt),
                ).rowcount
                if extended:
                    answers[tid] = HeartbeatStatus.OK
                    continue
                row = db.execute(
                    "SELECT state FROM tasks WHERE session_id = ? AND idx = ?", (session_id, index)
                ).fetchone()
                cancelled = row is not None and row[0] == TaskState.CANCELLED
                answers[tid] = HeartbeatStatus.CANCELLED if cancelled else HeartbeatStatus.LOST
        return answers

    def complete(self, agent_id: str, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        applied: list[bool] = []
        with self._write() as db:
            for o in outcomes:
                session_id, index = split_task_id(o.task_id)
                match = (session_id, index, agent_id, o.attempt)
                if o.state is TaskState.PENDING:
                    n = db.execute(
                        "UPDATE tasks SET state = 'pending', owner = NULL, lease_expires_at = NULL, "
                        "log = ?, evidence = coalesce(?, evidence), attempt = attempt - ? "
                        "WHERE session_id = ? AND idx = ? "
                        "AND state = 'processing' AND owner = ? AND attempt = ?",
                        (o.log, o.evidence or None, int(o.released), *match),
                    ).rowcount
                else:
                    n = db.execute(
                        "UPDATE tasks SET state = :state, owner = NULL, lease_expires_at = NULL, "
                        "output = :output, output_ref = :ref, error = :error, log = :log, "
                        "finished_at = :now, evidence = coalesce(:evidence, evidence), cached = :cached, "
                        "done_seq = (SELECT done_count + 1 FROM sessions WHERE id = :session) "
                        "WHERE session_id = :session AND idx = :idx AND state = 'processing' "
                        "AND owner = :owner AND attempt = :attempt",
                        {
                            "state": o.state.value,
                            "output": o.output,
                            "ref": o.output_ref,
                            "error": o.error.to_json() if o.error else None,
                            "log": o.log,
                            "evidence": o.evidence or None,
                            "cached": int(o.cached),
                            "now": now,
                            "session": session_id,
                            "idx": index,
                            "owner": agent_id,
                            "attempt": o.attempt,
                        },
                    ).rowcount
                    if n:
                        db.execute(
                            "UPDATE sessions SET done_count = done_count + 1 WHERE id = ?",
                            (session_id,),
                        )
                applied.append(n == 1)
        requeued = any(o.state is TaskState.PENDING for o in outcomes)
        self.wakes.notify(*((DONE, WORK) if requeued else (DONE,)))
        return applied

    # ---- TTL checker -------------------------------------------------------------------

    def expire_leases(self, now: float, limit: int = 1000) -> ExpiryReport:
        report = ExpiryReport()
        with self._write() as db:
            rows = db.execute(
                "SELECT seq, session_id, idx, attempt, max_attempts FROM tasks "
                "WHERE state = 'processing' AND lease_expires_at < ? LIMIT ?",
                (now, limit),
            ).fetchall()
            for seq, session_id, index, attempt, max_attempts in rows:
                outcome = after_lease_expired(task_id(session_id, index), attempt, max_attempts)
                if outcome.state is TaskState.PENDING:
                    db.execute(
                        "UPDATE tasks SET state = 'pending', owner = NULL, lease_expires_at = NULL "
                        "WHERE seq = ?",
                        (seq,),
                    )
                    report.requeued.append(task_id(session_id, index))
                    continue
                db.execute(
                    "UPDATE tasks SET state = 'failed', owner = NULL, lease_expires_at = NULL, "
                    "error = ?, finished_at = ?, "
                    "done_seq = (SELECT done_count + 1 FROM sessions WHERE id = ?) WHERE seq = ?",
                    (outcome.error.to_json() if outcome.error else None, now, session_id, seq),
                )
                db.execute(
                    "UPDATE sessions SET done_count = done_count + 1 WHERE id = ?", (session_id,)
                )
                report.failed.append(task_id(session_id, index))
        if report.requeued or report.failed:
            self.wakes.notify(DONE, WORK)
        return report

    # ---- waiting and metrics ------------------------------------------------------------

    def wait_for_tasks(
        self, timeout_seconds: float, functions: Sequence[str] | None = None
    ) -> bool:
        where, args = self._function_filter(functions)
        sql = f"SELECT 1 FROM {QUEUE} WHERE state = 'pending' {where} LIMIT 1"

        def pending() -> object:
            return self._conn().execute(sql, args).fetchone()

        return bool(self._poll(pending, timeout_seconds, WORK))

    def wait_for_session(self, session_id: str, cursor: int, timeout_seconds: float) -> int:
        def done_count() -> int | None:
            info = self.get_session(session_id)
            if info is None:
                raise NotFound(f"no session {session_id}")
            return info.cursor if info.cursor > cursor else None

        value = self._poll(done_count, timeout_seconds, DONE)
        return value if value is not None else cursor

    def queue_depth(self, functions: Sequence[str] | None = None) -> int:
        where, args = self._function_filter(functions)
        row = (
            self._conn()
            .execute(f"SELECT count(*) FROM {QUEUE} WHERE state = 'pending' {where}", args)
            .fetchone()
        )
        return int(row[0])

    def task_counts(self, max_sessions: int = 10_000) -> dict[tuple[str, TaskState, int], int]:
        query = "SELECT function, state, priority, count(*) FROM tasks GROUP BY 1, 2, 3"
        found: Counter[tuple[str, TaskState, int]] = Counter()
        for f, state, p, n in self._conn().execute(query):
            found[f, state_of(state), int(p)] += int(n)
        return dict(found)
