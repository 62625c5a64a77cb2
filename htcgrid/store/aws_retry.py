"""``retry`` on the AWS task store, and paging results past the numbers retried tasks gave up.

A failed task goes back to ``pending`` in one ``TransactWriteItems`` with its session: the
task's condition (still failed, with the completion number just read) and, on the session,
``retried + 1`` and that number added to ``given_up`` (a number set). Then the task gets a
fresh message. ``gsi_done_index`` pages stop at a missing number (the index may not have
caught up yet); ``Retries.results`` carries on past the numbers in ``given_up``, which are
missing for good.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from htcgrid.models import TaskRecord, TaskState
from htcgrid.store.aws_calls import TransactionCancelled
from htcgrid.store.aws_grid import Grid
from htcgrid.store.aws_items import N, S
from htcgrid.store.aws_layout import NONE, queue_of, status
from htcgrid.store.aws_sessions import RESEND_FIRST_SECONDS, Sessions
from htcgrid.store.base import wanted_indexes

CLEARED = ("output", "output_ref", "error", "done_seq", "finished_at", "task_completion_timestamp")


class Retries:
    def __init__(self, grid: Grid, sessions: Sessions) -> None:
        self.grid = grid
        self.sessions = sessions

    def retry(self, session_id: str, task_ids: Sequence[str] | None, now: float) -> list[str]:
        info = self.sessions.require(session_id)
        wanted = wanted_indexes(session_id, task_ids)
        chosen = [
            r
            for r in self._terminal(session_id)
            if r.state is TaskState.FAILED and (wanted is None or r.index in wanted)
        ]
        sent = [r for r in chosen if self._send_back(r, now)]
        queues = self.grid.queues
        queues.send(
            (queue_of(r.priority, queues.count), r.task_id, info.spec.function) for r in sent
        )
        return [r.task_id for r in sorted(sent, key=lambda r: r.index)]

    def results(self, session_id: str, cursor: int, limit: int) -> list[TaskRecord]:
        found = self.sessions.results(session_id, cursor, limit)
        given_up: set[int] | None = None
        while len(found) < limit:
            last = found[-1].cursor or cursor if found else cursor
            if given_up is None:
                given_up = self._given_up(session_id)
            if last + 1 not in given_up:
                break
            while last + 1 in given_up:
                last += 1
            more = self.sessions.results(session_id, last, limit - len(found))
            if not more:
                break
            found += more
        return found

    def _terminal(self, session_id: str) -> Iterator[TaskRecord]:
        cursor = 0
        while page := self.results(session_id, cursor, 1000):
            yield from page
            cursor = page[-1].cursor or cursor

    def _given_up(self, session_id: str) -> set[int]:
        item = self.grid.get(self.grid.sessions, {"session_id": S(session_id)}, "given_up")
        return {int(n) for n in (item or {}).get("given_up", {}).get("NS", [])}

    def _send_back(self, record: TaskRecord, now: float) -> bool:
        sid, seq = record.session_id, record.cursor or 0
        sets = {
            "task_status": S(status(TaskState.PENDING, sid)),
            "task_owner": S(NONE),
            "sqs_handler_id": S(NONE),
            "heartbeat_expiration_timestamp": N(float(now + RESEND_FIRST_SECONDS)),
            "resends": N(0),
            "attempt": N(0),
            "log": S(""),
        }
        names = {f"#s{i}": name for i, name in enumerate(sets)}
        names.update({f"#r{i}": name for i, name in enumerate(CLEARED)})
        names.update({"#c_status": "task_status", "#c_seq": "done_seq"})
        task: dict[str, Any] = {
            "TableName": self.grid.tasks,
            "Key": {"task_id": S(record.task_id)},
            "UpdateExpression": "SET "
            + ", ".join(f"#s{i} = :s{i}" for i in range(len(sets)))
            + " REMOVE "
            + ", ".join(f"#r{i}" for i in range(len(CLEARED))),
            "ConditionExpression": "#c_status = :c_status AND #c_seq = :c_seq",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {
                **{f":s{i}": value for i, value in enumerate(sets.values())},
                ":c_status": S(status(TaskState.FAILED, sid)),
                ":c_seq": N(seq),
            },
        }
        session = {
            "TableName": self.grid.sessions,
            "Key": {"session_id": S(sid)},
            "UpdateExpression": "ADD retried :one, given_up :seq",
            "ExpressionAttributeValues": {":one": N(1), ":seq": {"NS": [str(seq)]}},
        }
        try:
            self.grid.calls(
                self.grid.db.transact_write_items,
                TransactItems=[{"Update": task}, {"Update": session}],
            )
        except TransactionCancelled:
            return False  # retried by someone else meanwhile
        return True
