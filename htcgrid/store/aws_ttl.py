"""The AWS task store's sweeps: leases that expired, and pending tasks whose message was lost.

- **expired leases**: ``gsi_ttl_index`` is queried per partition for ``processing<p>`` rows
  whose ``heartbeat_expiration_timestamp`` passed; each goes back to ``pending`` (a conditional
  write on state, attempt and deadline, then a fresh message) or, with no attempts left, to
  ``failed`` through ``aws_finish``, as ``models.after_lease_expired`` decides.
- **lost messages**: a pending row carries a re-send deadline in the same attribute; rows past it
  (the message was lost, dead-lettered, never sent by a crashed submitter, or the task waits in
  a deep backlog) get a fresh message, and the next deadline doubles from 60 s up to an hour.
  A duplicate is harmless: the claim that finds its task taken deletes it.
Safe from many servers at once: every write is conditional.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from htcgrid.models import ExpiryReport, TaskState, after_lease_expired, split_task_id
from htcgrid.store.aws_calls import ConditionFailed
from htcgrid.store.aws_finish import Terminal, update_args
from htcgrid.store.aws_grid import Grid
from htcgrid.store.aws_items import N, S, integer, num, text
from htcgrid.store.aws_layout import MAX_STATE_PARTITIONS, NONE, status
from htcgrid.store.aws_sessions import RESEND_FIRST_SECONDS, Sessions

RESEND_MAX_SECONDS = 3600.0
RESEND_CHECK_SECONDS = 30.0


class Sweeper:
    def __init__(self, grid: Grid, sessions: Sessions) -> None:
        self.grid = grid
        self.sessions = sessions
        self._resend_due = -math.inf

    def requeue(
        self,
        tid: str,
        session_id: str,
        condition: str,
        values: dict[str, Any],
        now: float,
        log: str | None = None,
        released: bool = False,
        evidence: str = "",
    ) -> bool:
        """Back to ``pending`` if ``condition`` holds, then a fresh message. A ``released``
        task never started: its claim is undone (attempt - 1) instead of counted as a retry.

        The write carries a token of its own (``requeue_token``): when its reply is lost and
        the retry finds the condition failed, the token tells our own requeue (count it, send
        the message) from another checker's (theirs to count and send)."""
        token = uuid.uuid4().hex
        sets = {
            "task_status": S(status(TaskState.PENDING, session_id)),
            "task_owner": S(NONE),
            "sqs_handler_id": S(NONE),
            "heartbeat_expiration_timestamp": N(float(now + RESEND_FIRST_SECONDS)),
            "resends": N(0),
            "requeue_token": S(token),
        }
        if log is not None:
            sets["log"] = S(log)
        if evidence:  # poison evidence, the task's whole new list; "" keeps what it has
            sets["evidence"] = S(evidence)
        adds = {"attempt": N(-1)} if released else {"retries": N(1)}
        args = update_args(self.grid.tasks, {"task_id": S(tid)}, sets, condition, values, adds=adds)
        try:
            answer = self.grid.calls(
                self.grid.db.update_item,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **args,
            )
            item = answer["Attributes"]
        except ConditionFailed as exc:
            item = exc.item or {}
            if text(item, "requeue_token") != token:
                return False
        self.grid.queues.send([(integer(item, "task_priority"), tid, str(text(item, "function")))])
        return True

    def _overdue(self, state: TaskState, p: int, now: float, limit: int | None) -> list[Any]:
        args: dict[str, Any] = {
            "TableName": self.grid.tasks,
            "IndexName": "gsi_ttl_index",
            "KeyConditionExpression": "task_status = :t AND heartbeat_expiration_timestamp < :now",
            "ExpressionAttributeValues": {":t": S(f"{state.value}{p}"), ":now": N(float(now))},
        }
        if limit is not None:
            args["Limit"] = limit
            return list(self.grid.calls(self.grid.db.query, **args).get("Items", []))
        return list(self.grid.query(**args))

    def expire(self, now: float, limit: int = 1000) -> ExpiryReport:
        report = ExpiryReport()
        failing: dict[str, list[Terminal]] = defaultdict(list)
        taken = 0
        for p in range(MAX_STATE_PARTITIONS):
            if taken >= limit:
                break
            for item in self._overdue(TaskState.PROCESSING, p, now, limit - taken):
                taken += 1
                tid = str(text(item, "task_id"))
                session_id = split_task_id(tid)[0]
                attempt = integer(item, "attempt")
                condition = (
                    "task_status = :c_status AND attempt = :c_attempt"
                    " AND heartbeat_expiration_timestamp < :c_now"
                )
                values = {
                    ":c_status": S(status(TaskState.PROCESSING, session_id)),
                    ":c_attempt": N(attempt),
                    ":c_now": N(float(now)),
                }
                outcome = after_lease_expired(tid, attempt, integer(item, "max_attempts"))
                if outcome.state is TaskState.PENDING:
                    if self.requeue(tid, session_id, condition, values, now):
                        report.requeued.append(tid)
                    continue
                error = {"error": S(outcome.error.to_json() if outcome.error else "")}
                change = Terminal(tid, session_id, outcome.state, condition, values, error)
                failing[session_id].append(change)
        for session_id, changes in failing.items():
            done = self.grid.finisher.finish(session_id, changes, now)
            report.failed.extend(c.task_id for c in changes if c.task_id in done)
        if now >= self._resend_due:
            self._resend_due = now + RESEND_CHECK_SECONDS
            self.resend_lost(now)
        return report

    def resend_lost(self, now: float) -> int:
        """Send a fresh message for every visible pending task past its re-send deadline
        (its message was lost, dead-lettered, or it waits in a deep backlog); returns how
        many were sent."""
        is_open: dict[str, bool] = {}
        sent = []
        for p in range(MAX_STATE_PARTITIONS):
            for item in self._overdue(TaskState.PENDING, p, now, None):
                tid = str(text(item, "task_id"))
                session_id = split_task_id(tid)[0]
                if session_id not in is_open:
                    is_open[session_id] = self.sessions.get(session_id) is not None
                resends = integer(item, "resends")
                wait = min(RESEND_MAX_SECONDS, RESEND_FIRST_SECONDS * 2 ** (resends + 1))
                sets = {"heartbeat_expiration_timestamp": N(float(now + wait))}
                old = N(num(item, "heartbeat_expiration_timestamp") or 0.0)
                args = update_args(
                    self.grid.tasks,
                    {"task_id": S(tid)},
                    sets,
                    "task_status = :c_status AND heartbeat_expiration_timestamp = :c_old",
                    {":c_status": S(f"pending{p}"), ":c_old": old},
                    adds={"resends": N(1)},
                )
                try:
                    self.grid.calls(self.grid.db.update_item, **args)
                except ConditionFailed:
                    continue
                if is_open[session_id]:
                    sent.append((integer(item, "task_priority"), tid, str(text(item, "function"))))
        self.grid.queues.send(sent)
        return len(sent)

    def queue_depth(self, functions: Sequence[str] | None = None) -> int:
        total = 0
        for p in range(MAX_STATE_PARTITIONS):
            args: dict[str, Any] = {
                "TableName": self.grid.tasks,
                "IndexName": "gsi_ttl_index",
                "KeyConditionExpression": "task_status = :t",
                "ExpressionAttributeValues": {":t": S(f"pending{p}")},
            }
            if functions is not None:
                names = [f":f{i}" for i in range(len(functions))] or [":none"]
                values = [S(f) for f in functions] or [S("")]
                args["FilterExpression"] = f"#fn IN ({', '.join(names)})"
                args["ExpressionAttributeNames"] = {"#fn": "function"}
                args["ExpressionAttributeValues"].update(zip(names, values, strict=True))
            total += self.grid.count(**args)
        return total
