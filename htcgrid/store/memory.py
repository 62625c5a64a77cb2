"""An in-process task store (``memory://``): the reference implementation of the contract.

One lock guards everything; a condition variable wakes waiters on every change. Useful for
tests and for a client that wants a grid inside one Python process.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

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
    task_id,
)
from htcgrid.store.base import TaskStore, purge_cutoff
from htcgrid.store.memory_held import MemoryHeld
from htcgrid.store.memory_meta import MemoryMeta
from htcgrid.store.memory_share import MemoryShare
from htcgrid.store.state_pages import MemoryStates

T = TypeVar("T")


@dataclass
class _Session:
    spec: SessionSpec
    done_count: int = 0  # completion numbers given: terminal tasks + ``retried``
    cancelled: bool = False
    order: int = 0
    retried: int = 0

    def info(self) -> SessionInfo:
        return SessionInfo(self.spec, self.done_count - self.retried, self.cancelled, self.retried)


class MemoryTaskStore(MemoryShare, MemoryHeld, MemoryMeta, MemoryStates, TaskStore):
    def __init__(self, url: str = "memory://", create: bool = True) -> None:
        self.url = url
        self._cond = threading.Condition()
        self._sessions: dict[str, _Session] = {}
        self._tasks: dict[str, TaskRecord] = {}
        self._specs: dict[str, SessionSpec] = {}
        self._share_init()  # the queue: one heap per owner (memory_share)
        self._order: dict[str, int] = {}  # task_id -> its FIFO position, kept across requeues
        self._held: set[str] = set()  # pending tasks kept out of the queue until released
        self._seq = itertools.count()
        self._meta: dict[str, str] = {}

    # ---- helpers ------------------------------------------------------------------------

    def _finish(self, record: TaskRecord, now: float, **changes: object) -> TaskRecord:
        session = self._sessions[record.session_id]
        session.done_count += 1
        self._held.discard(record.task_id)
        done = replace(
            record,
            owner=None,
            lease_expires_at=None,
            finished_at=now,
            cursor=session.done_count,
            **changes,  # type: ignore[arg-type]
        )
        self._tasks[record.task_id] = done
        return done

    def _requeue(self, record: TaskRecord, **changes: object) -> None:
        self._tasks[record.task_id] = replace(
            record,
            state=TaskState.PENDING,
            owner=None,
            lease_expires_at=None,
            **changes,  # type: ignore[arg-type]
        )
        self._enqueue(self._tasks[record.task_id])

    def _changed(self, fn: Callable[[], T]) -> T:
        with self._cond:
            result = fn()
            self._cond.notify_all()
            return result

    # ---- clients ------------------------------------------------------------------------

    def create_session(self, spec: SessionSpec, tasks: Sequence[NewTask], now: float) -> bool:
        def create() -> bool:
            existing = self._sessions.get(spec.id)
            if existing is not None:
                if existing.spec.content_hash != spec.content_hash:
                    raise Conflict(f"session {spec.id} exists with different content")
                return False
            stored = replace(spec, created_at=spec.created_at or now)
            self._sessions[spec.id] = _Session(stored, order=next(self._seq))
            for t in tasks:
                tid = task_id(spec.id, t.index)
                self._tasks[tid] = TaskRecord(
                    task_id=tid,
                    session_id=spec.id,
                    index=t.index,
                    state=TaskState.PENDING,
                    attempt=0,
                    max_attempts=spec.max_attempts,
                    priority=t.priority,
                    submitted_at=now,
                    payload=t.payload,
                    payload_ref=t.payload_ref,
                )
                self._order[tid] = next(self._seq)
                if t.held:
                    self._held.add(tid)
                else:
                    self._enqueue(self._tasks[tid])
            return True

        return self._changed(create)

    def get_session(self, session_id: str) -> SessionInfo | None:
        with self._cond:
            s = self._sessions.get(session_id)
            return None if s is None else s.info()

    def list_sessions(
        self, owner: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[SessionInfo]:
        with self._cond:
            chosen = [s for s in self._sessions.values() if owner is None or s.spec.owner == owner]
            chosen.sort(key=lambda s: (s.spec.created_at, s.order), reverse=True)
            return [s.info() for s in chosen[offset : offset + limit]]

    def _session_tasks(self, session_id: str) -> list[TaskRecord]:
        s = self._sessions.get(session_id)
        if s is None:
            return []
        return [self._tasks[task_id(session_id, i)] for i in range(s.spec.task_count)]

    def count_states(self, session_id: str) -> dict[TaskState, int]:
        counts = dict.fromkeys(TaskState, 0)
        with self._cond:
            for t in self._session_tasks(session_id):
                counts[t.state] += 1
        return counts

    def results(self, session_id: str, cursor: int = 0, limit: int = 1000) -> list[TaskRecord]:
        with self._cond:
            done = [
                replace(t, payload=None, payload_ref=None)
                for t in self._session_tasks(session_id)
                if t.cursor is not None and t.cursor > cursor
            ]
        done.sort(key=lambda t: t.cursor or 0)
        return done[:limit]

    def get_task(self, tid: str) -> TaskRecord | None:
        with self._cond:
            return self._tasks.get(tid)

    def retry(self, session_id: str, task_ids: Sequence[str] | None, now: float) -> list[str]:
        def send_back() -> list[str]:
            session = self._sessions.get(session_id)
            if session is None:
                raise NotFound(f"no session {session_id}")
            wanted = None if task_ids is None else set(task_ids)
            chosen = [
                t
                for t in self._session_tasks(session_id)
                if t.state is TaskState.FAILED and (wanted is None or t.task_id in wanted)
            ]
            for t in chosen:
                fresh = dict(attempt=0, output=None, output_ref=None, error=None, log="")
                self._requeue(t, cursor=None, started_at=None, finished_at=None, **fresh)
            session.retried += len(chosen)
            return [t.task_id for t in chosen]

        return self._changed(send_back)

    def delete_session(self, session_id: str) -> bool:
        def delete() -> bool:
            tasks = self._session_tasks(session_id)
            for t in tasks:
                del self._tasks[t.task_id]
                self._held.discard(t.task_id)
            return self._sessions.pop(session_id, None) is not None

        return self._changed(delete)

    def purge(self, before: float, limit: int = 100, now: float | None = None) -> list[str]:
        with self._cond:
            ended: dict[str, float] = {}
            for t in self._tasks.values():
                end = t.finished_at if t.state.terminal and t.finished_at is not None else math.inf
                ended[t.session_id] = max(ended.get(t.session_id, end), end)
            old = [
                s
                for sid, s in self._sessions.items()
                if s.spec.created_at < (cutoff := purge_cutoff(s.spec, before, now))
                and ended.get(sid, 0.0) < cutoff
                and s.info().complete
            ]
        old.sort(key=lambda s: s.spec.created_at)
        return [s.spec.id for s in old[:limit] if self.delete_session(s.spec.id)]

    # ---- agents ------------------------------------------------------------------------

    def _owned(self, tid: str, agent_id: str, attempt: int) -> TaskRecord | None:
        t = self._tasks.get(tid)
        if (
            t is None
            or t.state is not TaskState.PROCESSING
            or t.owner != agent_id
            or t.attempt != attempt
        ):
            return None
        return t

    def heartbeat(
        self,
        agent_id: str,
        leases: Sequence[tuple[str, int]],
        lease_seconds: float,
        now: float,
    ) -> dict[str, HeartbeatStatus]:
        answers: dict[str, HeartbeatStatus] = {}
        with self._cond:
            for tid, attempt in leases:
                t = self._owned(tid, agent_id, attempt)
                if t is not None:
                    self._tasks[tid] = replace(t, lease_expires_at=now + lease_seconds)
                    answers[tid] = HeartbeatStatus.OK
                    continue
                current = self._tasks.get(tid)
                cancelled = current is not None and current.state is TaskState.CANCELLED
                answers[tid] = HeartbeatStatus.CANCELLED if cancelled else HeartbeatStatus.LOST
        return answers

    def complete(self, agent_id: str, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        def apply() -> list[bool]:
            applied = []
            for o in outcomes:
                t = self._owned(o.task_id, agent_id, o.attempt)
                applied.append(t is not None)
                if t is None:
                    continue
                t = replace(t, evidence=o.evidence or t.evidence)  # "": the task keeps its own
                if o.state is TaskState.PENDING:
                    self._requeue(t, log=o.log, attempt=t.attempt - int(o.released))
                else:
                    self._finish(
                        t,
                        now,
                        state=o.state,
                        output=o.output,
                        output_ref=o.output_ref,
                        error=o.error,
                        log=o.log,
                        cached=o.cached,
                    )
            return applied

        return self._changed(apply)

    # ---- TTL checker -------------------------------------------------------------------

    def expire_leases(self, now: float, limit: int = 1000) -> ExpiryReport:
        def expire() -> ExpiryReport:
            report = ExpiryReport()
            expired = [
                t
                for t in self._tasks.values()
                if t.state is TaskState.PROCESSING and (t.lease_expires_at or 0) < now
            ][:limit]
            for t in expired:
                outcome = after_lease_expired(t.task_id, t.attempt, t.max_attempts)
                if outcome.state is TaskState.PENDING:
                    self._requeue(t)
                    report.requeued.append(t.task_id)
                else:
                    self._finish(t, now, state=outcome.state, error=outcome.error)
                    report.failed.append(t.task_id)
            return report

        return self._changed(expire)

    # ---- waiting and metrics ------------------------------------------------------------

    def _wait(self, ready: Callable[[], T], timeout_seconds: float) -> T:
        deadline = time.monotonic() + timeout_seconds
        with self._cond:
            while True:
                value = ready()
                remaining = deadline - time.monotonic()
                if value or remaining <= 0:
                    return value
                self._cond.wait(remaining)

    def wait_for_tasks(
        self, timeout_seconds: float, functions: Sequence[str] | None = None
    ) -> bool:
        return self._wait(lambda: self._depth(functions) > 0, timeout_seconds)

    def wait_for_session(self, session_id: str, cursor: int, timeout_seconds: float) -> int:
        def done() -> int:
            session = self._sessions.get(session_id)
            if session is None:
                raise NotFound(f"no session {session_id}")
            return session.done_count if session.done_count > cursor else 0

        return self._wait(done, timeout_seconds) or cursor

    def _depth(self, functions: Sequence[str] | None) -> int:
        return sum(
            1
            for t in self._tasks.values()
            if t.state is TaskState.PENDING
            and t.task_id not in self._held
            and (functions is None or self._sessions[t.session_id].spec.function in functions)
        )

    def queue_depth(self, functions: Sequence[str] | None = None) -> int:
        with self._cond:
            return self._depth(functions)

    def task_counts(self, max_sessions: int = 10_000) -> dict[tuple[str, TaskState, int], int]:
        found: Counter[tuple[str, TaskState, int]] = Counter()
        with self._cond:
            for t in self._tasks.values():
                found[self._sessions[t.session_id].spec.function, t.state, t.priority] += 1
        return dict(found)
