"""The queue and the claim of the in-process store (``memory://``), shared fairly between
owners (``htcgrid.store.share``).

Each owner has its own heap of ``(-priority, FIFO position, task_id)``; ``_enqueue`` is the
one way into it (create, retry, release and every requeue). Entries are dropped lazily: a
popped entry whose task is no longer pending is stale. ``_leased`` remembers, per owner, the
tasks claimed; those no longer ``processing`` are pruned when running counts are needed.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from htcgrid.models import Lease, TaskRecord, TaskState
from htcgrid.store.share import ShareBook, fair_claim, one_by_one

Entry = tuple[int, int, str]
PRUNE_AT = 1024  # then at every power of two a set of leased tasks reaches


class MemoryShare:
    _cond: threading.Condition
    _sessions: dict[str, Any]
    _tasks: dict[str, TaskRecord]
    _order: dict[str, int]
    _meta: dict[str, str]

    def _share_init(self) -> None:
        self._queues: dict[str, list[Entry]] = {}
        self._leased: dict[str, set[str]] = {}
        self._book = ShareBook(
            lambda: {k: v for k, v in self._meta.items() if k.startswith("share/")}
        )

    def _enqueue(self, record: TaskRecord) -> None:
        """Put a pending task in its owner's queue at its original place."""
        owner = self._sessions[record.session_id].spec.owner
        entry = (-record.priority, self._order[record.task_id], record.task_id)
        heapq.heappush(self._queues.setdefault(owner, []), entry)

    def _running(self, owners: Sequence[str]) -> dict[str, int]:
        return {owner: len(self._prune(owner)) for owner in owners}

    def _prune(self, owner: str) -> set[str]:
        leased = self._leased.setdefault(owner, set())
        leased -= {t for t in leased if not self._processing(t)}
        return leased

    def _processing(self, tid: str) -> bool:
        t = self._tasks.get(tid)
        return t is not None and t.state is TaskState.PROCESSING

    def claim(
        self,
        agent_id: str,
        max_tasks: int,
        lease_seconds: float,
        now: float,
        functions: Sequence[str] | None = None,
    ) -> list[Lease]:
        leases: list[Lease] = []

        def take(owner: str, n: int) -> int:
            got = self._claim_owner(owner, n, agent_id, now + lease_seconds, now, functions)
            leases.extend(got)
            return len(got)

        with self._cond:
            owners = [o for o, queue in self._queues.items() if queue]
            if self._book.plain(owners, now):
                take(owners[0], max_tasks)
            elif owners:
                shares = self._book.shares(now)
                fair_claim(max_tasks, owners, self._running(owners), shares, one_by_one(take))
        return leases

    def _claim_owner(
        self,
        owner: str,
        n: int,
        agent_id: str,
        expires: float,
        now: float,
        functions: Sequence[str] | None,
    ) -> list[Lease]:
        queue = self._queues[owner]
        leases: list[Lease] = []
        skipped: list[Entry] = []
        while queue and len(leases) < n:
            entry = heapq.heappop(queue)
            t = self._tasks.get(entry[2])
            if t is None or t.state is not TaskState.PENDING:
                continue  # stale entry: cancelled, deleted or already requeued
            spec = self._sessions[t.session_id].spec
            if functions is not None and spec.function not in functions:
                skipped.append(entry)
                continue
            claimed = replace(
                t,
                state=TaskState.PROCESSING,
                attempt=t.attempt + 1,
                owner=agent_id,
                lease_expires_at=expires,
                started_at=now,
            )
            self._tasks[t.task_id] = claimed
            leased = self._leased.setdefault(owner, set())
            leased.add(t.task_id)
            if len(leased) >= PRUNE_AT and len(leased).bit_count() == 1:
                self._prune(owner)  # one owner alone never needs the counts: keep it small
            leases.append(
                Lease(
                    task_id=t.task_id,
                    session_id=t.session_id,
                    index=t.index,
                    attempt=claimed.attempt,
                    max_attempts=t.max_attempts,
                    timeout_seconds=spec.timeout_seconds,
                    function=spec.function,
                    retry_on_error=spec.retry_on_error,
                    expires_at=expires,
                    payload=t.payload,
                    payload_ref=t.payload_ref,
                    submitted_at=t.submitted_at,
                )
            )
        for entry in skipped:
            heapq.heappush(queue, entry)
        return leases
