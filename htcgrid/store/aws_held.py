"""Held tasks and cancels of the AWS task store: ``release``, ``fail_held``, ``cancel_tasks``
and ``cancel_session``.

A held task's row has ``task_status = held<p>`` (``aws_layout.held_status``) and no message:
every reader reports it as pending (``aws_layout.state_of``), a claim's condition
(``pending<p>``) never takes it, and neither the lost-message sweep nor ``queue_depth``, which
look at ``pending<p>``, see it. ``release`` is one conditional write per task (still held)
carrying a token of its own, so a retry after a lost reply still knows the release was ours
(as ``aws_ttl.Sweeper.requeue`` does), then the task gets its message as a retried one does.
``fail_held`` and the cancels are terminal transitions through ``aws_finish``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from htcgrid.models import CancelCounts, ErrorInfo, TaskState, task_id
from htcgrid.store.aws_calls import ConditionFailed
from htcgrid.store.aws_finish import Terminal, update_args
from htcgrid.store.aws_grid import Grid
from htcgrid.store.aws_items import N, S, integer, text
from htcgrid.store.aws_layout import held_status, state_of, status
from htcgrid.store.aws_sessions import RESEND_FIRST_SECONDS, Sessions

CANCEL_ROUNDS = 20
Mapper = Callable[[Callable[[str], Any], Iterable[str]], Iterator[Any]]


class Held:
    def __init__(self, grid: Grid, sessions: Sessions, mapper: Mapper = map) -> None:
        self.grid = grid
        self.sessions = sessions
        self.mapper = mapper  # runs one conditional write per task, side by side

    def release(self, session_id: str, indexes: Sequence[int], now: float) -> list[int]:
        ids = [task_id(session_id, i) for i in sorted({i for i in indexes if i >= 0})]
        items = [i for i in self.mapper(lambda t: self._release(t, session_id, now), ids) if i]
        self.grid.queues.send(
            (integer(i, "task_priority"), str(text(i, "task_id")), str(text(i, "function")))
            for i in items
        )
        return sorted(integer(i, "idx") for i in items)

    def _release(self, tid: str, session_id: str, now: float) -> dict[str, Any] | None:
        token = uuid.uuid4().hex
        sets = {
            "task_status": S(status(TaskState.PENDING, session_id)),
            "heartbeat_expiration_timestamp": N(float(now + RESEND_FIRST_SECONDS)),
            "resends": N(0),
            "requeue_token": S(token),
        }
        condition = "task_status = :c_status"
        values = {":c_status": S(held_status(session_id))}
        args = update_args(self.grid.tasks, {"task_id": S(tid)}, sets, condition, values)
        try:
            answer = self.grid.calls(
                self.grid.db.update_item,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **args,
            )
        except ConditionFailed as exc:
            old = exc.item or {}
            return old if text(old, "requeue_token") == token else None  # ours, reply lost
        return dict(answer["Attributes"])

    def fail_held(
        self, session_id: str, failures: Sequence[tuple[int, ErrorInfo]], now: float
    ) -> list[int]:
        errors = {i: e for i, e in failures if i >= 0}
        held = {":c_status": S(held_status(session_id))}
        changes = [
            Terminal(
                task_id(session_id, i),
                session_id,
                TaskState.FAILED,
                "task_status = :c_status",
                held,
                {"error": S(errors[i].to_json())},
            )
            for i in sorted(errors)
        ]
        done = self.grid.finisher.finish(session_id, changes, now)
        return sorted(i for i in errors if task_id(session_id, i) in done)

    def cancel(self, session_id: str, now: float, indexes: Sequence[int] | None) -> CancelCounts:
        """Cancel the live tasks of ``indexes`` (None: every task, and mark the session)."""
        info = self.sessions.require(session_id)
        count = info.spec.task_count
        chosen = range(count) if indexes is None else sorted({i for i in indexes if 0 <= i < count})
        ids = [task_id(session_id, i) for i in chosen]
        pending = processing = 0
        for _ in range(CANCEL_ROUNDS):
            live = self._live(ids)
            changes = [
                Terminal(
                    tid,
                    session_id,
                    TaskState.CANCELLED,
                    "task_status = :c_status",
                    {":c_status": S(stored)},
                )
                for tid, stored in live.items()
            ]
            whole = indexes is None
            applied = self.grid.finisher.finish(session_id, changes, now, cancel=whole)
            running = {t for t in applied if state_of(live[t]) is TaskState.PROCESSING}
            processing += len(running)
            pending += len(applied) - len(running)
            ids = [t for t in live if t not in applied]
            if not ids:
                break
        return CancelCounts(pending, processing)

    def _live(self, ids: list[str]) -> dict[str, str]:
        """The tasks among ``ids`` that are not terminal yet, with their stored status."""
        keys = [{"task_id": S(t)} for t in ids]
        items = self.grid.batch_get(self.grid.tasks, keys, ["task_id", "task_status"])
        found = {str(text(i, "task_id")): str(text(i, "task_status")) for i in items}
        return {t: found[t] for t in ids if t in found and not state_of(found[t]).terminal}
