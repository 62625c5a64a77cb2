"""``aws://?region=…&tag=…&endpoint_url=…``: the task store on DynamoDB and SQS, laid out as
HTC-Grid's state table and priority queues (``aws_layout``), created by ``htcgrid aws create``.

- **claim**: receive from the queues highest first, then per message one conditional
  ``UpdateItem`` (``task_status == pending<p>``) that sets the owner, the lease and
  ``attempt + 1``; the message is deleted once tried, whatever the answer.
- **heartbeat**: ``UpdateItem`` conditional on state, owner and attempt; a failed condition
  returns the old item, which says CANCELLED or LOST without another read.
- **complete / expire / cancel**: terminal transitions go through ``aws_finish`` (one
  transaction with the session's completion counter); a requeue is a conditional write back
  to ``pending`` followed by a fresh message.
- **lost messages**: a pending row carries a re-send deadline in
  ``heartbeat_expiration_timestamp``; the TTL checker finds pending rows past it through
  ``gsi_ttl_index`` and sends a new message (60 s, then doubling up to an hour). Duplicates are
  harmless: the second claim finds the task taken and deletes its message.

Within one queue SQS standard queues keep FIFO order only as a best effort, and a requeued
task goes to the back of its queue; priorities are kept exactly with the default 10 queues.
Functions share the queues: an agent that serves only some looks at up to ``MAX_SCAN``
messages of others per queue and claim, and hands them back untouched.
Waiting is bounded polling: ``wait_for_tasks`` reads the queues' approximate counts and
``wait_for_session`` the session's counter, with growing pauses.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from htcgrid.models import (
    CancelCounts,
    ErrorInfo,
    ExpiryReport,
    HeartbeatStatus,
    Lease,
    NewTask,
    Outcome,
    SessionInfo,
    SessionSpec,
    TaskRecord,
    TaskState,
    split_task_id,
)
from htcgrid.store.aws_calls import AwsConfig, Calls, ConditionFailed
from htcgrid.store.aws_finish import Terminal, owned, update_args
from htcgrid.store.aws_grid import Grid, poll
from htcgrid.store.aws_held import Held
from htcgrid.store.aws_items import BOOL, B, N, S, lease_from_item, text
from htcgrid.store.aws_layout import state_of, status
from htcgrid.store.aws_meta import Meta
from htcgrid.store.aws_queue import Message
from htcgrid.store.aws_retry import Retries
from htcgrid.store.aws_sessions import Sessions
from htcgrid.store.aws_share import Census, choose, gather, session_of
from htcgrid.store.aws_states import tasks_in_state
from htcgrid.store.aws_ttl import Sweeper
from htcgrid.store.base import TaskStore

MAX_SCAN = 100  # messages of other functions looked at per queue in one claim
PARALLEL_WRITES = 16


class AwsTaskStore(TaskStore):
    def __init__(self, url: str, create: bool = True, calls: Calls | None = None) -> None:
        self.url = url
        self.grid = Grid.open(AwsConfig.from_url(url), calls or Calls())
        self.sessions = Sessions(self.grid)
        self.meta = Meta(self.grid)
        self.ttl = Sweeper(self.grid, self.sessions)
        self.retries = Retries(self.grid, self.sessions)
        # one conditional write per task: claims and heartbeats of a batch run side by side
        self._pool = ThreadPoolExecutor(PARALLEL_WRITES, thread_name_prefix="htcgrid-aws")
        self.held = Held(self.grid, self.sessions, self._pool.map)
        self.census = Census(self.grid, self.sessions)  # fair share (aws_share)

    # ---- clients ------------------------------------------------------------------------

    def create_session(self, spec: SessionSpec, tasks: Sequence[NewTask], now: float) -> bool:
        created = self.sessions.create(spec, tasks, now)
        self.census.created(spec.id, spec.owner)
        return created

    def get_session(self, session_id: str) -> SessionInfo | None:
        return self.sessions.get(session_id)

    def list_sessions(
        self, owner: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[SessionInfo]:
        return self.sessions.list_sessions(owner, limit, offset)

    def count_states(self, session_id: str) -> dict[TaskState, int]:
        return self.sessions.count_states(session_id)

    def results(self, session_id: str, cursor: int = 0, limit: int = 1000) -> list[TaskRecord]:
        return self.retries.results(session_id, cursor, limit)

    def tasks_in_state(
        self, session_id: str, state: TaskState, cursor: str | None = None, limit: int = 100
    ) -> tuple[list[TaskRecord], str | None]:
        return tasks_in_state(self.grid, session_id, state, cursor, limit)

    def get_task(self, task_id: str) -> TaskRecord | None:
        return self.sessions.get_task(task_id)

    def cancel_session(self, session_id: str, now: float) -> CancelCounts:
        return self.held.cancel(session_id, now, None)

    def cancel_tasks(self, session_id: str, indexes: Sequence[int], now: float) -> CancelCounts:
        return self.held.cancel(session_id, now, indexes)

    def release(self, session_id: str, indexes: Sequence[int], now: float) -> list[int]:
        return self.held.release(session_id, indexes, now)

    def fail_held(
        self, session_id: str, failures: Sequence[tuple[int, ErrorInfo]], now: float
    ) -> list[int]:
        return self.held.fail_held(session_id, failures, now)

    def retry(self, session_id: str, task_ids: Sequence[str] | None, now: float) -> list[str]:
        return self.retries.retry(session_id, task_ids, now)

    def delete_session(self, session_id: str) -> bool:
        return self.sessions.delete(session_id)

    # ---- agents ------------------------------------------------------------------------

    def claim(
        self,
        agent_id: str,
        max_tasks: int,
        lease_seconds: float,
        now: float,
        functions: Sequence[str] | None = None,
    ) -> list[Lease]:
        _, active = self.census.view()
        if self.census.plain(active):
            leases = self._claim_plain(agent_id, max_tasks, lease_seconds, now, functions)
        else:
            window, others = gather(self.grid.queues, functions, max_tasks, self.census, active)
            take, rest = choose(window, max_tasks, self.census)
            claimed = self._pool.map(
                lambda m: self._claim_one(m, agent_id, lease_seconds, now), take
            )
            leases = [lease for lease in claimed if lease is not None]
            self.grid.queues.delete(take)
            self.grid.queues.hand_back(rest + others)
        self.census.claimed(lease.session_id for lease in leases)
        return leases

    def _claim_plain(
        self,
        agent_id: str,
        max_tasks: int,
        lease_seconds: float,
        now: float,
        functions: Sequence[str] | None,
    ) -> list[Lease]:
        queues = self.grid.queues
        leases: list[Lease] = []
        held: list[Message] = []  # not ours: made visible again at the end
        for queue in reversed(range(queues.count)):
            scanned = 0
            while len(leases) < max_tasks and scanned < MAX_SCAN:
                messages = queues.receive(queue, max_tasks - len(leases))
                if not messages:
                    break
                scanned += len(messages)
                mine = [m for m in messages if functions is None or m.function in functions]
                held += [m for m in messages if m not in mine]
                claimed = self._pool.map(
                    lambda m: self._claim_one(m, agent_id, lease_seconds, now), mine
                )
                leases += [lease for lease in claimed if lease is not None]
                queues.delete(mine)
            if len(leases) >= max_tasks:
                break
        queues.release(held)
        return leases

    def _claim_one(
        self, m: Message, agent_id: str, lease_seconds: float, now: float
    ) -> Lease | None:
        try:
            session_id = split_task_id(m.task_id)[0]
        except ValueError:
            return None
        sets = {
            "task_status": S(status(TaskState.PROCESSING, session_id)),
            "task_owner": S(agent_id),
            "heartbeat_expiration_timestamp": N(float(now + lease_seconds)),
            "started_at": N(float(now)),
            "sqs_handler_id": S(m.receipt),
        }
        args = update_args(
            self.grid.tasks,
            {"task_id": S(m.task_id)},
            sets,
            "task_status = :c_status",
            {":c_status": S(status(TaskState.PENDING, session_id))},
            adds={"attempt": N(1)},
        )
        try:
            answer = self.grid.calls(
                self.grid.db.update_item,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **args,
            )
        except ConditionFailed as exc:
            # A retry after a reply lost in transit finds the task taken by this very claim
            # (the message's receipt handle is unique): the lease is ours, not a lost race.
            old = exc.item or {}
            ours = text(old, "task_owner") == agent_id and text(old, "sqs_handler_id") == m.receipt
            return lease_from_item(old) if ours else None
        return lease_from_item(answer["Attributes"])

    def heartbeat(
        self,
        agent_id: str,
        leases: Sequence[tuple[str, int]],
        lease_seconds: float,
        now: float,
    ) -> dict[str, HeartbeatStatus]:
        def beat(lease: tuple[str, int]) -> HeartbeatStatus:
            tid, attempt = lease
            try:
                session_id = split_task_id(tid)[0]
            except ValueError:
                return HeartbeatStatus.LOST
            condition, values = owned(session_id, agent_id, attempt)
            sets = {"heartbeat_expiration_timestamp": N(float(now + lease_seconds))}
            args = update_args(self.grid.tasks, {"task_id": S(tid)}, sets, condition, values)
            try:
                self.grid.calls(
                    self.grid.db.update_item, ReturnValuesOnConditionCheckFailure="ALL_OLD", **args
                )
                return HeartbeatStatus.OK
            except ConditionFailed as exc:
                old = text(exc.item or {}, "task_status")
                cancelled = old is not None and state_of(old) is TaskState.CANCELLED
                return HeartbeatStatus.CANCELLED if cancelled else HeartbeatStatus.LOST

        statuses = self._pool.map(beat, leases)
        return {tid: answer for (tid, _), answer in zip(leases, statuses, strict=True)}

    def complete(self, agent_id: str, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        applied = [False] * len(outcomes)
        terminal: dict[str, list[tuple[int, Terminal]]] = defaultdict(list)
        for i, o in enumerate(outcomes):
            try:
                session_id = split_task_id(o.task_id)[0]
            except ValueError:
                continue
            condition, values = owned(session_id, agent_id, o.attempt)
            if o.state is TaskState.PENDING:
                applied[i] = self.ttl.requeue(
                    o.task_id, session_id, condition, values, now, o.log, o.released, o.evidence
                )
                continue
            fields: dict[str, Any] = {"log": S(o.log)}
            if o.evidence:
                fields["evidence"] = S(o.evidence)
            if o.cached:
                fields["cached"] = BOOL(True)
            if o.output is not None:
                fields["output"] = B(o.output)
            if o.output_ref is not None:
                fields["output_ref"] = S(o.output_ref)
            if o.error is not None:
                fields["error"] = S(o.error.to_json())
            size = len(o.output or b"") + len(o.log) + len(o.evidence)
            size += len(fields.get("error", {}).get("S", ""))
            change = Terminal(o.task_id, session_id, o.state, condition, values, fields, size)
            terminal[session_id].append((i, change))
        for session_id, entries in terminal.items():
            done = self.grid.finisher.finish(session_id, [c for _, c in entries], now)
            for i, change in entries:
                applied[i] = change.task_id in done
        ended = [o.task_id for o, ok in zip(outcomes, applied, strict=True) if ok]
        self.census.ended(session_of(tid) for tid in ended)
        return applied

    # ---- TTL checker -------------------------------------------------------------------

    def expire_leases(self, now: float, limit: int = 1000) -> ExpiryReport:
        return self.ttl.expire(now, limit)

    def resend_lost(self, now: float) -> int:
        """See ``aws_ttl.Sweeper.resend_lost``."""
        return self.ttl.resend_lost(now)

    # ---- waiting and metrics ------------------------------------------------------------

    def wait_for_tasks(
        self, timeout_seconds: float, functions: Sequence[str] | None = None
    ) -> bool:
        return bool(poll(lambda: self.grid.queues.visible() > 0, timeout_seconds, 0.1))

    def wait_for_session(self, session_id: str, cursor: int, timeout_seconds: float) -> int:
        self.sessions.require(session_id)

        def done() -> int:
            count = self.grid.finisher.done_count(session_id) or 0
            return count if count > cursor else 0

        return int(poll(done, timeout_seconds, max_seconds=0.1)) or cursor

    def queue_depth(self, functions: Sequence[str] | None = None) -> int:
        return self.ttl.queue_depth(functions)

    # ---- grid metadata ------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        return self.meta.get(key)

    def set_meta_if_absent(self, key: str, value: str) -> str:
        return self.meta.set_if_absent(key, value)

    def put_meta(self, key: str, value: str) -> None:
        self.meta.put(key, value)

    def list_meta(self, prefix: str) -> dict[str, str]:
        return self.meta.list_prefix(prefix)

    def delete_meta(self, key: str) -> None:
        self.meta.delete(key)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
