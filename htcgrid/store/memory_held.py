"""Held tasks and cancels of the in-process store (``memory://``): ``release``, ``fail_held``,
``cancel_tasks`` and ``cancel_session``.

A held task is ``pending`` with its id in ``_held`` and no entry in the queue; ``release``
puts it in the queue through ``_requeue``, the path every other re-queue takes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from htcgrid.errors import NotFound
from htcgrid.models import CancelCounts, ErrorInfo, TaskRecord, TaskState, task_id

T = TypeVar("T")
_LIVE = (TaskState.PENDING, TaskState.PROCESSING)


class MemoryHeld:
    _cond: threading.Condition
    _sessions: dict[str, Any]
    _tasks: dict[str, TaskRecord]
    _held: set[str]

    def _changed(self, fn: Callable[[], T]) -> T:
        raise NotImplementedError

    def _finish(self, record: TaskRecord, now: float, **changes: object) -> TaskRecord:
        raise NotImplementedError

    def _requeue(self, record: TaskRecord, **changes: object) -> None:
        raise NotImplementedError

    def _session_tasks(self, session_id: str) -> list[TaskRecord]:
        raise NotImplementedError

    def _held_ids(self, session_id: str, indexes: Iterable[int]) -> list[tuple[int, str]]:
        tids = {i: task_id(session_id, i) for i in indexes}
        return sorted((i, tid) for i, tid in tids.items() if tid in self._held)

    def release(self, session_id: str, indexes: Sequence[int], now: float) -> list[int]:
        def release() -> list[int]:
            chosen = self._held_ids(session_id, indexes)
            for _, tid in chosen:
                self._held.discard(tid)
                self._requeue(self._tasks[tid])
            return [i for i, _ in chosen]

        return self._changed(release)

    def fail_held(
        self, session_id: str, failures: Sequence[tuple[int, ErrorInfo]], now: float
    ) -> list[int]:
        def fail() -> list[int]:
            errors = dict(failures)
            chosen = self._held_ids(session_id, errors)
            for index, tid in chosen:
                self._finish(self._tasks[tid], now, state=TaskState.FAILED, error=errors[index])
            return [i for i, _ in chosen]

        return self._changed(fail)

    def _cancel(self, tasks: Iterable[TaskRecord], now: float) -> CancelCounts:
        pending = processing = 0
        for t in tasks:
            if t.state in _LIVE:
                pending += t.state is TaskState.PENDING
                processing += t.state is TaskState.PROCESSING
                self._finish(t, now, state=TaskState.CANCELLED)
        return CancelCounts(pending, processing)

    def _session(self, session_id: str) -> Any:
        session = self._sessions.get(session_id)
        if session is None:
            raise NotFound(f"no session {session_id}")
        return session

    def cancel_session(self, session_id: str, now: float) -> CancelCounts:
        def cancel() -> CancelCounts:
            self._session(session_id).cancelled = True
            return self._cancel(self._session_tasks(session_id), now)

        return self._changed(cancel)

    def cancel_tasks(self, session_id: str, indexes: Sequence[int], now: float) -> CancelCounts:
        def cancel() -> CancelCounts:
            self._session(session_id)
            tids = [task_id(session_id, i) for i in sorted(set(indexes))]
            return self._cancel([self._tasks[t] for t in tids if t in self._tasks], now)

        return self._changed(cancel)
