"""What comes back from workers and from the heartbeat: results, withdrawals, crashes,
timeouts, memory limits, cancels and lost leases, each turned into the task's outcome."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from typing import Any

from htcgrid.agent.core import STOPPED, AgentCore
from htcgrid.agent.messages import InitError, Ready, Result, ToAgent, Withdrawn
from htcgrid.agent.pool import WorkerSlot
from htcgrid.errors import GridError
from htcgrid.models import (
    ErrorInfo,
    HeartbeatStatus,
    Lease,
    Outcome,
    TaskState,
    after_handler_error,
    after_infrastructure_failure,
    released,
)

log = logging.getLogger("htcgrid.agent")
FLUSH_SECONDS = 0.02  # how long a finished task's outcome may wait to share a batch
FLUSH_BATCH = 256


class Events(AgentCore):
    def _collect(self, ready: list[Any], now: float) -> None:
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)
            # Only the waker's news (it clears ``_hungry`` when it found work) makes the store
            # worth asking again: a wake for a recorded outcome, a cancel or a memo answer put
            # no task in the queue, and claiming after each cost a claim that found nothing
            # per task on a quiet grid.
            if not self._hungry.is_set():
                self.queue_empty = False
        for slot in list(self.slots):
            if slot.conn not in ready and slot.sentinel not in ready:
                continue
            for message in slot.receive():
                self._on_message(slot, message, now)
            if slot in self.slots and not slot.alive():
                self._on_crash(slot)

    def _on_message(self, slot: WorkerSlot, message: ToAgent, now: float) -> None:
        if isinstance(message, Ready):
            slot.ready = True
            slot.watch_output()  # so a task that kills the worker at once leaves its log
        elif isinstance(message, InitError):
            self._on_init_error(slot, message.error)
        elif isinstance(message, Withdrawn):
            self._on_withdrawn(slot, message, now)
        else:
            started = slot.head_started
            lease = slot.take(message.task_id, now)
            if lease is not None:
                self._learn_duration(now - started)
                if self.observer is not None:
                    self.observer(lease, message, now - started)
                self._on_result(lease, message)

    def _on_init_error(self, slot: WorkerSlot, error: ErrorInfo) -> None:
        """The slot's handler cannot be loaded: fail the tasks waiting for it with the load
        error, and those that come for the next ``reload_seconds``; then try again."""
        config = slot.config
        what = f"handler {config.handler}" if config == self.worker else config.function_name
        log.error("%s cannot be loaded: %s: %s", what, error.type, error.message)
        self.broken[config] = (error, time.monotonic() + self.reload_seconds)
        self.pools.remove(slot)
        waiting: deque[Lease] = deque()
        for lease in self.backlog:
            try:
                same = self._current_config(lease.function) == config
            except GridError:
                same = False
            if same:
                self._settle(after_handler_error(lease, error))
            else:
                waiting.append(lease)
        self.backlog = waiting

    def _on_withdrawn(self, slot: WorkerSlot, message: Withdrawn, now: float) -> None:
        if not message.withdrawn:
            slot.withdrawing.discard(message.task_id)
            return
        lease = slot.take(message.task_id, now)
        if lease is None or self._forget_doomed(lease.task_id):
            return
        if self.draining:
            self._settle(released(lease))
        else:
            self.backlog.appendleft(lease)

    def _learn_duration(self, seconds: float) -> None:
        avg = self.avg_task_seconds
        self.avg_task_seconds = seconds if avg is None else 0.8 * avg + 0.2 * seconds

    def _on_result(self, lease: Lease, result: Result) -> None:
        if self._forget_doomed(lease.task_id):
            if result.output_ref:
                self.completer.discard(result.output_ref)
            return
        if result.ok:
            outcome = Outcome(
                lease.task_id,
                lease.attempt,
                TaskState.FINISHED,
                output=result.output,
                output_ref=result.output_ref,
                log=result.log,
            )
        elif result.infrastructure:
            assert result.error is not None
            error = result.error
            log.warning("task %s: %s", lease.task_id, error.message)
            outcome = after_infrastructure_failure(lease, error.type, error.message, result.log)
        else:
            assert result.error is not None
            outcome = after_handler_error(lease, result.error, result.log)
        self._settle(outcome)

    def _enforce_deadlines(self, now: float) -> None:
        for slot in self.slots:
            if not slot.inflight:
                continue
            head = slot.inflight[0]
            used = slot.sample_rss()  # kept as the slot's peak: poison evidence
            if head.task_id in self.doomed:
                log.info("killing worker %d: task %s was cancelled", slot.number, head.task_id)
                self._fail_head(slot.restart(), "Cancelled", "cancelled")
            elif now - slot.head_started > head.timeout_seconds:
                reason = f"task timed out after {head.timeout_seconds:g} s"
                log.warning("killing worker %d: %s %s", slot.number, head.task_id, reason)
                self._fail_head(slot.restart(), "TaskTimeout", reason, slot)
            elif (limit := slot.config.memory_mb or self.worker_memory_mb) and used > limit:
                reason = f"the worker used {used} MiB, over its limit of {limit} MiB"
                log.warning("killing worker %d: %s %s", slot.number, head.task_id, reason)
                self._fail_head(slot.restart(), "MemoryLimitExceeded", reason, slot)

    def _flush_due(self, now: float) -> bool:
        busy = any(slot.inflight for slot in self.slots)
        return (
            len(self.outcomes) >= FLUSH_BATCH
            or not busy
            or now - self.first_outcome_at >= FLUSH_SECONDS
        )

    def _flush(self) -> None:
        if self.outcomes:
            batch, self.outcomes = self.outcomes, []
            self.completer.submit(batch)

    def _lease_list(self) -> list[tuple[str, int]]:
        # list() of a dict view runs without releasing the GIL: a consistent snapshot
        return [(le.task_id, le.attempt) for le in list(self.held.values())]

    def _on_gone(self, answers: dict[str, HeartbeatStatus]) -> None:
        """Called on the heartbeat thread: the loop acts on it at its next turn."""
        self._gone.extend(answers.items())
        self._wake()

    def _apply_gone(self) -> None:
        if not self._gone:
            return
        status: dict[str, HeartbeatStatus] = {}
        while self._gone:
            tid, why = self._gone.popleft()
            status[tid] = why
        gone = set(status) & set(self.held)
        if not gone:
            return
        lost = sorted(t for t in gone if status[t] is HeartbeatStatus.LOST)
        if lost:
            log.warning(
                "%d lease(s) lost (expired and given to another agent, e.g. %s): "
                "stopping that work, its result would be refused",
                len(lost),
                lost[0],
            )
        if len(lost) < len(gone):
            log.info("%d task(s) cancelled: stopping them", len(gone) - len(lost))
        for tid in gone:
            self.held.pop(tid, None)
        for slot in self.slots:
            for lease in slot.inflight:
                if lease.task_id in gone:
                    self.doomed.add(lease.task_id)
            for lease in slot.queued():
                if lease.task_id in gone:
                    with contextlib.suppress(OSError):
                        slot.withdraw(lease)
        self.backlog = deque(le for le in self.backlog if le.task_id not in gone)
        self._enforce_deadlines(time.monotonic())

    def _abandon_held(self) -> None:
        """The grace period is over: stop the workers and give their tasks back (a running
        one as an infrastructure failure, one that never started as released)."""
        if self.held:
            log.warning("stopping with %d task(s) unfinished: handing them back", len(self.held))
        for slot in self.slots:
            held = list(slot.inflight)
            slot.inflight.clear()
            slot.kill()
            for i, lease in enumerate(held):
                if lease.task_id in self.held:
                    self._settle(
                        after_infrastructure_failure(lease, *STOPPED) if i == 0 else released(lease)
                    )
        for lease in list(self.backlog):
            self._settle(released(lease))
        self.backlog.clear()
        self.held.clear()
