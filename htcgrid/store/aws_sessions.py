"""The client side of the AWS task store: submit, read, page results, delete (cancels are
``aws_held``'s).

Submission never leaves a half-visible session (HTC-Grid's §8.2 #5): the session item is
written first as ``creating`` (conditional: the id check), then every task row, then the
session is opened with one conditional write, and only then are messages sent. Readers see a
``creating`` session as absent, so all tasks appear together. A re-submit of the same id and
content finishes a creation that crashed half-way; a message that is never sent is re-sent by
the TTL checker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from htcgrid.errors import Conflict, NotFound
from htcgrid.models import (
    TERMINAL_STATES,
    NewTask,
    SessionInfo,
    SessionSpec,
    TaskRecord,
    TaskState,
    task_id,
)
from htcgrid.store.aws_calls import ConditionFailed
from htcgrid.store.aws_finish import update_args
from htcgrid.store.aws_grid import Grid
from htcgrid.store.aws_items import (
    N,
    S,
    integer,
    session_from_item,
    session_item,
    task_from_item,
    task_item,
    text,
)
from htcgrid.store.aws_layout import queue_of, status

RESEND_FIRST_SECONDS = 60.0  # a pending task not claimed by then gets a fresh message
OPEN = "open"
RESULT_FIELDS = [
    "task_id", "session_id", "idx", "task_status", "attempt", "max_attempts", "priority",
    "task_owner", "output", "output_ref", "error", "log", "done_seq", "submitted_at",
    "started_at", "finished_at", "heartbeat_expiration_timestamp", "evidence", "cached",
]  # fmt: skip


class Sessions:
    def __init__(self, grid: Grid) -> None:
        self.grid = grid

    def _key(self, session_id: str) -> dict[str, Any]:
        return {"session_id": S(session_id)}

    def create(self, spec: SessionSpec, tasks: Sequence[NewTask], now: float) -> bool:
        g = self.grid
        try:
            g.calls(
                g.db.put_item,
                TableName=g.sessions,
                Item=session_item(spec, now),
                ConditionExpression="attribute_not_exists(session_id)",
            )
        except ConditionFailed:
            existing = g.get(g.sessions, self._key(spec.id))
            if existing is None:
                return self.create(spec, tasks, now)  # deleted meanwhile: start again
            if text(existing, "content_hash") != spec.content_hash:
                raise Conflict(f"session {spec.id} exists with different content") from None
            if text(existing, "status") == OPEN:
                return False
        queues = g.queues.count
        resend_at = now + RESEND_FIRST_SECONDS
        rows = [{"PutRequest": {"Item": task_item(spec, t, now, queues, resend_at)}} for t in tasks]
        g.batch_write(g.tasks, rows)
        opening = update_args(
            g.sessions,
            self._key(spec.id),
            {"status": S(OPEN), "listing": S("all")},
            "#s0 <> :c_open",
            {":c_open": S(OPEN)},
        )
        try:
            g.calls(g.db.update_item, **opening)
        except ConditionFailed:
            return False  # a concurrent identical submit opened it (and sends the messages)
        g.queues.send(
            (queue_of(t.priority, queues), task_id(spec.id, t.index), spec.function)
            for t in tasks
            if not t.held  # its message is sent when it is released (``aws_held``)
        )
        return True

    def get(self, session_id: str) -> SessionInfo | None:
        item = self.grid.get(self.grid.sessions, self._key(session_id))
        if item is None or text(item, "status") != OPEN:
            return None
        return session_from_item(item)

    def require(self, session_id: str) -> SessionInfo:
        info = self.get(session_id)
        if info is None:
            raise NotFound(f"no session {session_id}")
        return info

    def list_sessions(self, owner: str | None, limit: int, offset: int) -> list[SessionInfo]:
        g = self.grid
        keys = g.query(
            TableName=g.sessions,
            IndexName="gsi_created_index",
            KeyConditionExpression="listing = :all",
            ExpressionAttributeValues={":all": S("all")},
            ScanIndexForward=False,
        )
        chosen: list[SessionInfo] = []
        batch: list[dict[str, Any]] = []
        for key in keys:
            batch.append(self._key(str(text(key, "session_id"))))
            if len(batch) >= 100:
                chosen += self._sessions(batch, owner)
                batch = []
            if len(chosen) >= offset + limit:
                break
        chosen += self._sessions(batch, owner)
        chosen.sort(key=lambda s: s.spec.created_at, reverse=True)
        return chosen[offset : offset + limit]

    def _sessions(self, keys: list[dict[str, Any]], owner: str | None) -> list[SessionInfo]:
        found = [session_from_item(i) for i in self.grid.batch_get(self.grid.sessions, keys)]
        return [s for s in found if owner is None or s.spec.owner == owner]

    def count_states(self, session_id: str) -> dict[TaskState, int]:
        """Exact once a session is visible; the split between states comes from an index,
        which on AWS may lag a write by a moment (pending is what the others leave)."""
        counts = dict.fromkeys(TaskState, 0)
        info = self.get(session_id)
        if info is None:
            return counts
        g = self.grid
        for state in (TaskState.PROCESSING, *TERMINAL_STATES):
            counts[state] = g.count(
                TableName=g.tasks,
                IndexName="gsi_session_index",
                KeyConditionExpression="session_id = :s AND task_status = :t",
                ExpressionAttributeValues={
                    ":s": S(session_id),
                    ":t": S(status(state, session_id)),
                },
            )
        counts[TaskState.PENDING] = max(0, info.spec.task_count - sum(counts.values()))
        return counts

    def results(self, session_id: str, cursor: int, limit: int) -> list[TaskRecord]:
        """Completion order from ``gsi_done_index``; the page stops at the first number the
        index has not caught up with yet, so paging never skips a task."""
        g = self.grid
        keys = g.calls(
            g.db.query,
            TableName=g.tasks,
            IndexName="gsi_done_index",
            KeyConditionExpression="session_id = :s AND done_seq > :after",
            ExpressionAttributeValues={":s": S(session_id), ":after": N(cursor)},
            Limit=max(1, limit),
        ).get("Items", [])
        wanted: list[str] = []
        for expected, key in enumerate(keys, start=cursor + 1):
            if integer(key, "done_seq") != expected:
                break
            wanted.append(str(text(key, "task_id")))
        items = g.batch_get(g.tasks, [{"task_id": S(t)} for t in wanted], RESULT_FIELDS)
        records = [task_from_item(i, with_payload=False) for i in items]
        return sorted(records, key=lambda r: r.cursor or 0)[:limit]

    def get_task(self, tid: str) -> TaskRecord | None:
        item = self.grid.get(self.grid.tasks, {"task_id": S(tid)})
        return None if item is None else task_from_item(item)

    def delete(self, session_id: str) -> bool:
        g = self.grid
        item = g.get(g.sessions, self._key(session_id))
        if item is None:
            return False
        count = integer(item, "task_count")
        deletes = [
            {"DeleteRequest": {"Key": {"task_id": S(task_id(session_id, i))}}} for i in range(count)
        ]
        g.batch_write(g.tasks, deletes)
        g.calls(g.db.delete_item, TableName=g.sessions, Key=self._key(session_id))
        return True
