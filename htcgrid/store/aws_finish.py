"""Conditional writes of the AWS task store, and the one way a task becomes terminal.

A terminal transition (finished, failed, cancelled) must also give the task its session's
next completion number, with no gaps and in commit order. DynamoDB does it in one
``TransactWriteItems``: every task's own condition (owner, attempt, state) plus the session's
counter compared with the value read just before. A task whose condition fails lost its race
and is dropped; a moved counter means another completion won, so the counter is read again.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from htcgrid.errors import BackendUnavailable
from htcgrid.models import TaskState
from htcgrid.store.aws_calls import Calls, TransactionCancelled
from htcgrid.store.aws_items import BOOL, N, S, integer
from htcgrid.store.aws_layout import NONE, status

TX_ITEMS = 99  # a transaction holds 100 items: 99 tasks and their session
TX_BYTES = 3 * 1024 * 1024  # and 4 MB; keep room for keys and expressions
TX_ATTEMPTS = 50


def update_args(
    table: str,
    key: dict[str, Any],
    sets: dict[str, Any],
    condition: str | None = None,
    values: dict[str, Any] | None = None,
    adds: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``UpdateItem`` arguments: ``sets`` are attribute → value (names escaped, so reserved
    words are safe); ``condition`` refers to ``values`` by their ``:name``."""
    names = {f"#s{i}": name for i, name in enumerate(sets)}
    vals = {f":s{i}": value for i, value in enumerate(sets.values())}
    expression = "SET " + ", ".join(f"#s{i} = :s{i}" for i in range(len(sets)))
    for i, (name, value) in enumerate((adds or {}).items()):
        names[f"#a{i}"] = name
        vals[f":a{i}"] = value
        expression += f", #a{i} = #a{i} + :a{i}"
    args: dict[str, Any] = {
        "TableName": table,
        "Key": key,
        "UpdateExpression": expression,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": {**vals, **(values or {})},
    }
    if condition:
        args["ConditionExpression"] = condition
    return args


@dataclass(frozen=True)
class Terminal:
    """One task to move to a terminal ``state`` if ``condition`` (over ``values``) holds."""

    task_id: str
    session_id: str
    state: TaskState
    condition: str
    values: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)
    size_bytes: int = 0


def owned(session_id: str, agent_id: str, attempt: int) -> tuple[str, dict[str, Any]]:
    """The condition that the task is processing under ``agent_id``'s ``attempt``."""
    return (
        "task_status = :c_status AND task_owner = :c_owner AND attempt = :c_attempt",
        {
            ":c_status": S(status(TaskState.PROCESSING, session_id)),
            ":c_owner": S(agent_id),
            ":c_attempt": N(attempt),
        },
    )


class Finisher:
    def __init__(
        self,
        db: Any,
        calls: Calls,
        tasks_table: str,
        sessions_table: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.db = db
        self.calls = calls
        self.tasks_table = tasks_table
        self.sessions_table = sessions_table
        self.sleep = sleep

    def finish(
        self, session_id: str, changes: Sequence[Terminal], now: float, cancel: bool = False
    ) -> set[str]:
        """Apply the ``changes`` (all of one session) that still hold; returns their task ids.
        ``cancel`` also marks the session cancelled, in the same transactions."""
        applied: set[str] = set()
        chunk: list[Terminal] = []
        size = 0
        for change in changes:
            if chunk and (len(chunk) >= TX_ITEMS or size + change.size_bytes > TX_BYTES):
                applied |= self._chunk(session_id, chunk, now, cancel)
                chunk, size = [], 0
            chunk.append(change)
            size += change.size_bytes
        if chunk or cancel:
            applied |= self._chunk(session_id, chunk, now, cancel)
        return applied

    def done_count(self, session_id: str) -> int | None:
        answer = self.calls(
            self.db.get_item,
            TableName=self.sessions_table,
            Key={"session_id": S(session_id)},
            ConsistentRead=True,
            ProjectionExpression="done_count",
        )
        item = answer.get("Item")
        return None if item is None else integer(item, "done_count")

    def _chunk(self, session_id: str, chunk: list[Terminal], now: float, cancel: bool) -> set[str]:
        for attempt in range(TX_ATTEMPTS):
            count = self.done_count(session_id)
            if count is None:
                return set()
            items = [self._task_update(c, count + i + 1, now) for i, c in enumerate(chunk)]
            items.append(self._session_update(session_id, count, len(chunk), cancel))
            try:
                # one token for this transaction, kept by the retries of ``calls``: DynamoDB
                # answers a repeat of a committed transaction with success, so a reply lost
                # after the commit does not turn our own completion into a lost race
                self.calls(
                    self.db.transact_write_items,
                    TransactItems=items,
                    ClientRequestToken=uuid.uuid4().hex,
                )
                return {c.task_id for c in chunk}
            except TransactionCancelled as exc:
                lost = {
                    c.task_id
                    for c, reason in zip(chunk, exc.reasons, strict=False)
                    if reason == "ConditionalCheckFailed"
                }
                chunk = [c for c in chunk if c.task_id not in lost]
                if not chunk and not cancel:
                    return set()
                if not lost:  # the counter moved, or a conflicting write: back off a little
                    self.sleep(random.uniform(0, min(0.5, 0.005 * 2 ** min(attempt, 7))))
        raise BackendUnavailable(f"session {session_id}: too many concurrent completions")

    def _task_update(self, change: Terminal, seq: int, now: float) -> dict[str, Any]:
        sets = {
            "task_status": S(status(change.state, change.session_id)),
            "task_owner": S(NONE),
            "done_seq": N(seq),
            "finished_at": N(float(now)),
            "task_completion_timestamp": N(int(now * 1000)),
            **change.fields,
        }
        args = update_args(
            self.tasks_table, {"task_id": S(change.task_id)}, sets, change.condition, change.values
        )
        return {"Update": args}

    def _session_update(
        self, session_id: str, count: int, added: int, cancel: bool
    ) -> dict[str, Any]:
        sets: dict[str, Any] = {"done_count": N(count + added)}
        if cancel:
            sets["cancelled"] = BOOL(True)
        args = update_args(
            self.sessions_table,
            {"session_id": S(session_id)},
            sets,
            "done_count = :c_count",
            {":c_count": N(count)},
        )
        return {"Update": args}
