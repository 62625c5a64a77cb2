"""The agent loop: claim → dispatch to worker processes → heartbeat → record outcomes.

One thread drives everything; a second one only waits on the task store for new work while
the queue looks empty. Claims, heartbeats and completions are batched: under load an agent
makes a few store calls per hundred tasks, and when idle a new task starts within a couple
of milliseconds of its submission.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from multiprocessing.connection import wait
from typing import Any

from htcgrid.agent.completer import Completer
from htcgrid.agent.packages import PackageCache, PoolSet, demand_of
from htcgrid.agent.pool import WorkerSlot, wait_deadline
from htcgrid.agent.worker import WorkerConfig
from htcgrid.dataplane import DataPlane, keys
from htcgrid.errors import GridError
from htcgrid.models import (
    ErrorInfo,
    HeartbeatStatus,
    Lease,
    Outcome,
    TaskState,
    after_handler_error,
    after_infrastructure_failure,
)
from htcgrid.retry import Retrier
from htcgrid.settings import Settings
from htcgrid.store import TaskStore

log = logging.getLogger("htcgrid.agent")

FLUSH_SECONDS = 0.005  # how long a finished task's outcome may wait to share a batch
FLUSH_BATCH = 256
MAX_DEPTH = 64


class HandlerImportError(GridError):
    """The worker processes cannot import the handler: the agent cannot run anything."""


def _within(lease: Lease, config: WorkerConfig) -> Lease:
    """``lease`` with the function's own timeout, when that is the shorter of the two."""
    limit = config.timeout_seconds
    if limit is None or limit >= lease.timeout_seconds:
        return lease
    return replace(lease, timeout_seconds=limit)


def new_agent_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Agent:
    def __init__(
        self,
        store: TaskStore,
        data: DataPlane,
        settings: Settings,
        worker: WorkerConfig,
        slots: int,
        functions: Sequence[str] | None = None,
        agent_id: str | None = None,
        clock: Callable[[], float] = time.time,
        packages: PackageCache | None = None,
    ) -> None:
        self.store = store
        self.data = data
        self.settings = settings
        self.agent_id = agent_id or new_agent_id()
        self.worker = WorkerConfig(**{**worker.__dict__, "agent_id": self.agent_id})
        self.slot_count = slots
        self.functions = list(functions) if functions is not None else None
        self.clock = clock
        self.retry = Retrier(log)
        self.slots: list[WorkerSlot] = []
        self.packages = packages
        if packages is not None:
            packages.base = self.worker
        self.pools = PoolSet(self.slots, slots)
        self.broken: dict[WorkerConfig, ErrorInfo] = {}
        self.backlog: deque[Lease] = deque()
        self.held: dict[str, Lease] = {}
        self.doomed: set[str] = set()
        self.outcomes: list[Outcome] = []
        self.first_outcome_at = 0.0
        self.next_heartbeat = 0.0
        self.avg_task_seconds: float | None = None
        self.queue_empty = False
        self.draining = False
        self.drain_deadline = 0.0
        self.counts: Counter[str] = Counter()  # finished, failed, retried, refused, crashed
        self.completer: Completer  # started by run()
        self._hungry = threading.Event()
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    # ---- public ------------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Run until ``stop()`` (or ``should_stop()``) and every held task is settled."""
        self.slots[:] = [WorkerSlot(i, self.worker) for i in range(self.slot_count)]
        self.pools = PoolSet(self.slots, self.slot_count)
        waker = threading.Thread(target=self._wait_for_work, name="htcgrid-waker", daemon=True)
        waker.start()
        self.next_heartbeat = time.monotonic() + self.settings.heartbeat_seconds
        self.completer = Completer(self.agent_id, self.store, self.data, self.clock, self._wake)
        self.counts = self.completer.counts
        try:
            while not self._step(should_stop):
                pass
        finally:
            self._stopping.set()
            self._flush()
            self.completer.close()
            for slot in self.slots:
                slot.stop()
            waker.join(timeout=2)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def stop(self) -> None:
        """Claim nothing more; finish held tasks within the grace period, then return."""
        if not self.draining:
            self.draining = True
            self.drain_deadline = time.monotonic() + self.settings.grace_seconds
        self._wake()

    # ---- one turn of the loop ----------------------------------------------------------

    def _step(self, should_stop: Callable[[], bool]) -> bool:
        """One turn; True when the agent is done."""
        if should_stop():
            self.stop()
        now = time.monotonic()
        if self.draining:
            if not self.held and not self.outcomes:
                return True
            if now >= self.drain_deadline:
                self._abandon_held()
                return True
        else:
            self._refill()
        self._dispatch(now)
        ready = wait(self._waitables(), self._timeout(now))
        now = time.monotonic()
        self._collect(ready, now)
        self._enforce_deadlines(now)
        if self.outcomes and self._flush_due(now):
            self._flush()
        if now >= self.next_heartbeat:
            self._heartbeat()
            self.next_heartbeat = now + self.settings.heartbeat_seconds
        return False

    def _depth(self) -> int:
        """Tasks sent ahead to each worker: about ``prefetch_seconds`` of work, at least 1."""
        if self.avg_task_seconds is None:
            return 2
        extra = int(self.settings.prefetch_seconds / max(self.avg_task_seconds, 1e-6))
        return 1 + min(MAX_DEPTH - 1, extra)

    def _refill(self) -> None:
        capacity = self.slot_count * self._depth()
        if self.queue_empty or len(self.backlog) > capacity // 2:
            return
        # Outcomes not yet recorded still count as processing in the store. Up to four
        # capacities of them may be on their way (so claims overlap with slow completions);
        # beyond that a slow store slows the claims instead of letting them pile up.
        unrecorded = len(self.outcomes) + self.completer.unrecorded
        wanted = capacity - len(self.held) - max(0, unrecorded - 4 * capacity)
        if wanted <= 0:
            return
        leases = self.retry(
            lambda: self.store.claim(
                self.agent_id, wanted, self.settings.lease_seconds, self.clock(), self.functions
            )
        )
        for lease in leases:
            self.held[lease.task_id] = lease
            self.backlog.append(lease)
        if len(leases) < wanted:
            self.queue_empty = True
            self._hungry.set()

    def _dispatch(self, now: float) -> None:
        if self.packages is not None:
            self._dispatch_by_function(now)
            return
        depth = self._depth()
        for slot in self.slots:
            while slot.ready and self.backlog and len(slot.inflight) < depth:
                lease = self.backlog.popleft()
                try:
                    slot.send(lease, self._payload(lease), now)
                except OSError:  # the worker died under us: its sentinel tells the rest
                    self._on_crash(slot)
                    break

    def _dispatch_by_function(self, now: float) -> None:
        """Each task goes to a slot running its function's current package (or the agent's
        own handler); slots are started, replaced and retired to follow the demand."""
        assert self.packages is not None
        depth = self._depth()
        pending = list(self.backlog)
        self.backlog.clear()
        routed = [(le, c) for le in pending if (c := self._config_for(le)) is not None]
        self.pools.retire_idle(self.packages.is_current)
        self.pools.balance(demand_of(c for _, c in routed), depth)
        waiting: list[Lease] = []
        for lease, config in routed:
            slot = self.pools.ready_slot(config, depth)
            if slot is None:
                waiting.append(lease)
                continue
            try:
                slot.send(_within(lease, config), self._payload(lease), now)
            except OSError:
                self._on_crash(slot)
        self.backlog.extend(waiting)

    def _config_for(self, lease: Lease) -> WorkerConfig | None:
        """The config to run ``lease`` with; None when it was settled here instead."""
        assert self.packages is not None
        try:
            config = self.packages.config_for(lease.function) or self.worker
        except GridError as exc:
            log.error("function %s: %s", lease.function, exc)
            self.held.pop(lease.task_id, None)
            self._add(after_infrastructure_failure(lease, type(exc).__name__, str(exc)))
            return None
        if config in self.broken:
            self.held.pop(lease.task_id, None)
            self._add(after_handler_error(lease, self.broken[config]))
            return None
        return config

    def _payload(self, lease: Lease) -> bytes:
        if lease.payload is not None:
            return lease.payload
        assert lease.payload_ref is not None
        return self.retry(lambda: self.data.get(lease.payload_ref or ""))

    def _waitables(self) -> list[Any]:
        items: list[Any] = [self._wake_r]
        for slot in self.slots:
            items += [slot.conn, slot.sentinel]
        return items

    def _timeout(self, now: float) -> float:
        deadlines: list[float | None] = [self.next_heartbeat]
        if self.outcomes:
            deadlines.append(self.first_outcome_at + FLUSH_SECONDS)
        if self.draining:
            deadlines.append(self.drain_deadline)
        for slot in self.slots:
            if slot.inflight:
                deadlines.append(slot.head_started + slot.inflight[0].timeout_seconds)
        return min(wait_deadline(now, *deadlines), 0.5)

    # ---- results, crashes and deadlines ------------------------------------------------

    def _collect(self, ready: list[Any], now: float) -> None:
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)
            self.queue_empty = False
        for slot in list(self.slots):
            if slot.conn not in ready and slot.sentinel not in ready:
                continue
            for message in slot.receive():
                self._on_message(slot, message, now)
            if slot in self.slots and not slot.alive():
                self._on_crash(slot)

    def _on_message(self, slot: WorkerSlot, message: tuple[Any, ...], now: float) -> None:
        if message[0] == "ready":
            slot.ready = True
        elif message[0] == "init_error":
            error: ErrorInfo = message[1]
            if slot.config == self.worker:
                raise HandlerImportError(
                    f"cannot load handler {self.worker.handler!r}: {error.type}: "
                    f"{error.message}\n{error.traceback}"
                )
            log.error("function %s: cannot load its handler: %s", slot.config.function_name, error)
            self.broken[slot.config] = error
            self.pools.remove(slot)
        else:
            duration = now - slot.head_started
            lease = slot.head_done(now)
            self._learn_duration(duration)
            self._on_result(lease, *message[2:])

    def _learn_duration(self, seconds: float) -> None:
        avg = self.avg_task_seconds
        self.avg_task_seconds = seconds if avg is None else 0.8 * avg + 0.2 * seconds

    def _on_result(self, lease: Lease, ok: bool, result: Any, task_log: str) -> None:
        self.held.pop(lease.task_id, None)
        if lease.task_id in self.doomed:
            self.doomed.discard(lease.task_id)
            return
        if ok:
            self._add(self._finished(lease, result, task_log))
        else:
            self._add(after_handler_error(lease, result, task_log))

    def _finished(self, lease: Lease, output: bytes, task_log: str) -> Outcome:
        if len(output) <= self.settings.inline_limit_bytes:
            return Outcome(
                lease.task_id, lease.attempt, TaskState.FINISHED, output=output, log=task_log
            )
        key = keys.task_output(lease.session_id, lease.index, lease.attempt)
        self.retry(lambda: self.data.put(key, output))
        return Outcome(
            lease.task_id, lease.attempt, TaskState.FINISHED, output_ref=key, log=task_log
        )

    def _on_crash(self, slot: WorkerSlot) -> None:
        reason = slot.exit_reason()
        held = slot.restart()
        self.counts["crashed"] += 1
        log.warning("worker %d: %s", slot.number, reason)
        if held:
            self._fail_head(held, "WorkerCrashed", reason)

    def _fail_head(self, held: list[Lease], kind: str, reason: str) -> None:
        head, rest = held[0], held[1:]
        self.held.pop(head.task_id, None)
        if head.task_id in self.doomed:
            self.doomed.discard(head.task_id)
        else:
            self._add(after_infrastructure_failure(head, kind, reason))
        self.backlog.extendleft(reversed([le for le in rest if le.task_id not in self.doomed]))

    def _enforce_deadlines(self, now: float) -> None:
        for slot in self.slots:
            if not slot.inflight:
                continue
            head = slot.inflight[0]
            if head.task_id in self.doomed:
                log.info("killing worker %d: task %s was cancelled", slot.number, head.task_id)
                self._fail_head(slot.restart(), "Cancelled", "cancelled")
            elif now - slot.head_started > head.timeout_seconds:
                reason = f"task timed out after {head.timeout_seconds:g} s"
                log.warning("killing worker %d: %s %s", slot.number, head.task_id, reason)
                self._fail_head(slot.restart(), "TaskTimeout", reason)

    # ---- store calls -------------------------------------------------------------------

    def _add(self, outcome: Outcome) -> None:
        if not self.outcomes:
            self.first_outcome_at = time.monotonic()
        self.outcomes.append(outcome)

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

    def _heartbeat(self) -> None:
        if not self.held:
            return
        leases = [(le.task_id, le.attempt) for le in self.held.values()]
        answers = self.retry(
            lambda: self.store.heartbeat(
                self.agent_id, leases, self.settings.lease_seconds, self.clock()
            )
        )
        gone = {tid for tid, status in answers.items() if status is not HeartbeatStatus.OK}
        if not gone:
            return
        log.info("%d task(s) cancelled or lost; dropping them", len(gone))
        for tid in gone:
            self.held.pop(tid, None)
        self.doomed |= {
            tid for tid in gone if any(tid == le.task_id for s in self.slots for le in s.inflight)
        }
        self.backlog = deque(le for le in self.backlog if le.task_id not in gone)
        self._enforce_deadlines(time.monotonic())

    def _abandon_held(self) -> None:
        """The grace period is over: stop the workers and give their tasks back."""
        log.warning("grace period over: stopping %d running task(s)", len(self.held))
        for slot in self.slots:
            held = list(slot.inflight)
            slot.inflight.clear()
            slot.kill()
            for lease in held:
                if lease.task_id in self.held:
                    self._add(after_infrastructure_failure(lease, "AgentStopped", "agent stopped"))
        for lease in self.backlog:
            self._add(after_infrastructure_failure(lease, "AgentStopped", "agent stopped"))
        self.backlog.clear()
        self.held.clear()

    # ---- waking up ---------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"!")

    def _wait_for_work(self) -> None:
        while not self._stopping.is_set():
            if not self._hungry.wait(0.2):
                continue
            try:
                found = self.store.wait_for_tasks(0.5, self.functions)
            except Exception:
                time.sleep(0.5)
                continue
            if found:
                self._hungry.clear()
                self._wake()
