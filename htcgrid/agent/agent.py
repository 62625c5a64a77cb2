"""The agent loop: claim → dispatch to worker processes → record outcomes.

Where a claimed task can be, and who moves it::

    store ─claim─▶ backlog ─send─▶ slot.inflight ─Result─▶ outcomes ─flush─▶ Completer ─▶ store
                      ▲           (head runs; the rest   │
                      └─Withdrawn─ wait in the worker) ◀─┘ Withdraw (a slot of its config is idle)

``held`` is every claimed task not yet settled (backlog and in flight): the Heartbeat thread
extends their leases. ``doomed`` are tasks cancelled or lost while in a worker: their result
is dropped, and their worker is killed if they are running.

One thread runs the loop; the Heartbeat thread extends leases and watches the loop; a waker
thread waits on the store for new work while the queue looks empty; the Completer records
outcomes. Dispatch is work-conserving: a task goes to an idle slot of its function first,
waits behind a running task only while tasks are short (``prefetch_seconds`` of work), and is
taken back from a worker's queue as soon as another slot of its function is idle.
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
from htcgrid.agent.heartbeat import Heartbeat, LoopWatch
from htcgrid.agent.messages import InitError, Ready, Result, Task, ToAgent, Withdrawn
from htcgrid.agent.packages import PackageCache
from htcgrid.agent.pool import PoolSet, WorkerSlot, demand_of, wait_deadline
from htcgrid.agent.scaler import SlotScaler
from htcgrid.agent.worker import WorkerConfig
from htcgrid.dataplane import DataPlane, keys
from htcgrid.errors import BackendUnavailable, GridError
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
from htcgrid.presence import AgentPresence
from htcgrid.retry import Retrier
from htcgrid.scaling import ScalingPolicy
from htcgrid.settings import Settings
from htcgrid.store import TaskStore

log = logging.getLogger("htcgrid.agent")

FLUSH_SECONDS = 0.005  # how long a finished task's outcome may wait to share a batch
FLUSH_BATCH = 256
MAX_DEPTH = 64
QUEUE_BUDGET_BYTES = 128 * 1024  # inline payload bytes that may wait behind a running task
STOPPED = ("AgentStopped", "agent stopped")
RELOAD_SECONDS = 5.0  # how long a handler that failed to load is left alone before a retry
MEMORY_CHECK_SECONDS = 0.1  # how often a busy worker's memory is held against its limit


def new_agent_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _within(lease: Lease, config: WorkerConfig) -> Lease:
    """``lease`` with the function's own timeout, when that is the shorter of the two."""
    limit = config.timeout_seconds
    if limit is None or limit >= lease.timeout_seconds:
        return lease
    return replace(lease, timeout_seconds=limit)


def _shared(data: DataPlane) -> str | None:
    """The data plane's URL if worker processes can open it themselves."""
    return data.url if data.url and not data.url.startswith("memory:") else None


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
        autoscale: ScalingPolicy | None = None,
        worker_memory_mb: int = 0,
        observer: Callable[[Lease, Result, float], None] | None = None,
    ) -> None:
        """``slots`` worker processes, or with ``autoscale`` between its min and max (at
        most ``slots``), following the backlog: idle workers are retired, busy ones never.
        ``observer`` is called with each attempt a worker ended and its run seconds (metrics)."""
        self.store = store
        self.data = data
        self.settings = settings
        self.agent_id = agent_id or new_agent_id()
        self.worker = replace(
            worker,
            agent_id=self.agent_id,
            data_url=_shared(data),
            inline_limit_bytes=settings.inline_limit_bytes,
        )
        self.functions = list(functions) if functions is not None else None
        self.scaler = SlotScaler(autoscale, store, self.functions) if autoscale else None
        self.clock = clock
        self.observer = observer
        self.worker_memory_mb = worker_memory_mb  # a function deployed with --memory-mb has its own
        self.retry = Retrier(log)
        self.packages = packages
        if packages is not None:
            packages.base = self.worker
        self.pools = PoolSet(autoscale.min_capacity if autoscale else slots)
        self.broken: dict[WorkerConfig, tuple[ErrorInfo, float]] = {}
        self.reload_seconds = RELOAD_SECONDS
        self.backlog: deque[Lease] = deque()
        self.held: dict[str, Lease] = {}
        self.doomed: set[str] = set()
        self.outcomes: list[Outcome] = []
        self.first_outcome_at = 0.0
        self.avg_task_seconds: float | None = None
        self.queue_empty = False
        self.draining = False
        self.drain_deadline = 0.0
        self.watch = LoopWatch()
        self.heartbeat = Heartbeat(
            self.agent_id,
            store,
            settings,
            self._lease_list,
            self._on_gone,
            self.watch,
            clock,
            AgentPresence(store, self.agent_id, slots, self.functions),
        )
        self.counts: Counter[str] = Counter()  # finished, failed, retried, refused, crashed
        self.completer: Completer  # started by run()
        self._gone: deque[tuple[str, HeartbeatStatus]] = deque()
        self._hungry = threading.Event()
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    @property
    def slots(self) -> list[WorkerSlot]:
        return self.pools.slots

    # ---- public ------------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Run until ``stop()`` (or ``should_stop()``) and every held task is settled."""
        self.pools.start(self.worker)
        waker = threading.Thread(target=self._wait_for_work, name="htcgrid-waker", daemon=True)
        waker.start()
        self.completer = Completer(
            self.agent_id,
            self.store,
            self.data,
            self.clock,
            self._wake,
            self.settings.inline_limit_bytes,
        )
        self.counts = self.completer.counts
        self.heartbeat.start()
        try:
            while not self._step(should_stop):
                pass
        finally:
            self._stopping.set()
            self._flush()
            self.heartbeat.stop()
            self.completer.close(self.settings.grace_seconds)
            self.pools.stop_all()
            waker.join(timeout=2)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def stop(self) -> None:
        """Claim nothing more; finish held tasks within the grace period, then return."""
        self._drain(self.settings.grace_seconds)

    def abort(self) -> None:
        """Stop at once: kill the workers, hand every held task back, return."""
        self._drain(0.0)

    def _drain(self, grace_seconds: float) -> None:
        deadline = time.monotonic() + grace_seconds
        if not self.draining or deadline < self.drain_deadline:
            self.drain_deadline = deadline
        self.draining = True
        self._wake()

    # ---- one turn of the loop ----------------------------------------------------------

    def _step(self, should_stop: Callable[[], bool]) -> bool:
        """One turn; True when the agent is done."""
        self.watch.turn()
        if should_stop():
            self.stop()
        now = time.monotonic()
        if self.draining:
            self._hand_back_unstarted()
            if not self.held and not self.outcomes:
                return True
            if now >= self.drain_deadline:
                self._abandon_held()
                return True
        else:
            self._scale(now)
            self._refill()
        self._apply_gone()
        self._dispatch(now)
        ready = wait(self._waitables(), self._timeout(now))
        now = time.monotonic()
        self._collect(ready, now)
        self._enforce_deadlines(now)
        if self.outcomes and self._flush_due(now):
            self._flush()
        return False

    def _depth(self) -> int:
        """Tasks in flight per worker: about ``prefetch_seconds`` of work, at least 1."""
        if self.avg_task_seconds is None:
            return 2
        extra = int(self.settings.prefetch_seconds / max(self.avg_task_seconds, 1e-6))
        return 1 + min(MAX_DEPTH - 1, extra)

    def _scale(self, now: float) -> None:
        if self.scaler is None:
            return
        busy = sum(1 for s in self.slots if s.inflight)
        limit = self.scaler.limit(len(self.backlog), busy, self.pools.limit, now)
        if limit != self.pools.limit:
            log.info("worker slots: %d -> %d", self.pools.limit, limit)
            self.pools.resize(limit)

    def _refill(self) -> None:
        capacity = max(1, self.pools.limit) * self._depth()
        if self.queue_empty or len(self.backlog) > capacity // 2:
            return
        # Outcomes not yet recorded still count as processing in the store. Up to four
        # capacities of them may be on their way (so claims overlap with slow completions);
        # beyond that a slow store slows the claims instead of letting them pile up.
        unrecorded = len(self.outcomes) + self.completer.unrecorded
        wanted = capacity - len(self.held) - max(0, unrecorded - 4 * capacity)
        if wanted <= 0:
            return
        self.watch.doing = "claiming tasks from the task store"
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

    # ---- dispatch ----------------------------------------------------------------------

    def _dispatch(self, now: float) -> None:
        """Each task goes to the least loaded slot running its function's current package
        (or the agent's own handler); slots follow the demand; idle slots take work back
        from busy ones."""
        if not self.backlog and not any(s.idle for s in self.slots):
            return
        depth = self._depth()
        routed: list[tuple[Lease, WorkerConfig]] = []
        waiting: deque[Lease] = deque()
        for lease in self.backlog:
            try:
                config = self._config_for(lease)
            except BackendUnavailable as exc:  # the packages' data plane is down: wait
                self.watch.doing = f"looking up function {lease.function}: {exc}"
                waiting.append(lease)
                continue
            if config is not None:
                routed.append((lease, config))
        if self.packages is not None:
            self.pools.retire_idle(self.packages.is_current)
        self.pools.balance(demand_of(c for _, c in routed), depth)
        for lease, config in routed:
            slot = self.pools.best_slot(config, depth, QUEUE_BUDGET_BYTES)
            if slot is None:
                waiting.append(lease)
            else:
                self._send(slot, _within(lease, config), now)
        self.backlog = waiting
        self._take_back_for_idle()

    def _config_for(self, lease: Lease) -> WorkerConfig | None:
        """The config to run ``lease`` with; None when it was settled here instead.
        Raises BackendUnavailable when the package cannot be looked up now."""
        try:
            config = self._current_config(lease.function)
        except BackendUnavailable:
            raise
        except GridError as exc:
            log.error("function %s: %s", lease.function, exc)
            self._settle(after_infrastructure_failure(lease, type(exc).__name__, str(exc)))
            return None
        broken = self.broken.get(config)
        if broken is not None:
            if time.monotonic() < broken[1]:
                self._settle(after_handler_error(lease, broken[0]))
                return None
            del self.broken[config]  # try loading it again: it may have been fixed
        return config

    def _current_config(self, function: str) -> WorkerConfig:
        if self.packages is None:
            return self.worker
        self.watch.doing = f"fetching the package of function {function}"
        return self.packages.config_for(function) or self.worker

    def _send(self, slot: WorkerSlot, lease: Lease, now: float) -> None:
        payload = lease.payload
        if payload is None and self.worker.data_url is None:
            # a data plane only this process can read (memory://): the payload goes inline
            self.watch.doing = f"reading the payload of {lease.task_id}"
            payload = self.retry(lambda: self.data.get(lease.payload_ref or ""))
        task = Task(
            lease.task_id,
            lease.session_id,
            lease.attempt,
            lease.timeout_seconds,
            keys.task_output(lease.session_id, lease.index, lease.attempt),
            payload=payload,
            payload_ref=None if payload is not None else lease.payload_ref,
        )
        try:
            slot.send(lease, task, now)
        except OSError:  # the worker died under us: its sentinel tells the rest
            self._on_crash(slot)

    def _take_back_for_idle(self) -> None:
        """Ask busy workers to give back queued tasks that an idle slot of the same config
        could start now (one per idle slot at a time)."""
        for slot in self.slots:
            if not slot.idle:
                continue
            peers = [s for s in self.slots if s.config == slot.config]
            idle = sum(1 for s in peers if s.idle)
            asked = sum(len(s.withdrawing) for s in peers)
            donors = [s for s in peers if s.queued()]
            if asked >= idle or not donors:
                continue
            donor = max(donors, key=lambda s: len(s.queued()))
            with contextlib.suppress(OSError):
                donor.withdraw(donor.queued()[-1])

    def _waitables(self) -> list[Any]:
        items: list[Any] = [self._wake_r]
        for slot in self.slots:
            items += [slot.conn, slot.sentinel]
        return items

    def _timeout(self, now: float) -> float:
        deadlines: list[float | None] = [now + min(0.5, self.settings.heartbeat_seconds / 2)]
        if self.outcomes:
            deadlines.append(self.first_outcome_at + FLUSH_SECONDS)
        if self.draining:
            deadlines.append(self.drain_deadline)
        if self.broken:
            deadlines.append(min(until for _, until in self.broken.values()))
        for slot in self.slots:
            if slot.inflight:
                deadlines.append(slot.head_started + slot.inflight[0].timeout_seconds)
                if slot.config.memory_mb or self.worker_memory_mb:
                    deadlines.append(now + MEMORY_CHECK_SECONDS)
        return wait_deadline(now, *deadlines)

    # ---- messages, crashes and deadlines ----------------------------------------------

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

    def _on_message(self, slot: WorkerSlot, message: ToAgent, now: float) -> None:
        if isinstance(message, Ready):
            slot.ready = True
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
        if lease is None:
            return
        if lease.task_id in self.doomed:
            self.doomed.discard(lease.task_id)
        elif self.draining:
            self._settle(released(lease))
        else:
            self.backlog.appendleft(lease)

    def _learn_duration(self, seconds: float) -> None:
        avg = self.avg_task_seconds
        self.avg_task_seconds = seconds if avg is None else 0.8 * avg + 0.2 * seconds

    def _on_result(self, lease: Lease, result: Result) -> None:
        if lease.task_id in self.doomed:
            self.doomed.discard(lease.task_id)
            self.held.pop(lease.task_id, None)
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

    def _on_crash(self, slot: WorkerSlot) -> None:
        reason = slot.exit_reason()
        held = slot.restart()
        self.counts["crashed"] += 1
        log.warning("worker %d: %s", slot.number, reason)
        if held:
            self._fail_head(held, "WorkerCrashed", reason)

    def _fail_head(self, held: list[Lease], kind: str, reason: str) -> None:
        head, rest = held[0], held[1:]
        if head.task_id in self.doomed:
            self.doomed.discard(head.task_id)
            self.held.pop(head.task_id, None)
        else:
            poison = self.settings.poison_after
            self._settle(after_infrastructure_failure(head, kind, reason, poison_after=poison))
        for lease in rest:
            if lease.task_id in self.doomed:
                self.doomed.discard(lease.task_id)
                self.held.pop(lease.task_id, None)
        self.backlog.extendleft(reversed([le for le in rest if le.task_id in self.held]))

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
            elif (limit := slot.config.memory_mb or self.worker_memory_mb) and (
                used := slot.rss_mb()
            ) > limit:
                reason = f"the worker used {used} MiB, over its limit of {limit} MiB"
                log.warning("killing worker %d: %s %s", slot.number, head.task_id, reason)
                self._fail_head(slot.restart(), "MemoryLimitExceeded", reason)

    # ---- outcomes and leases -----------------------------------------------------------

    def _settle(self, outcome: Outcome) -> None:
        """``outcome`` ends the agent's hold on its task; it is recorded soon, in a batch."""
        self.held.pop(outcome.task_id, None)
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

    def _hand_back_unstarted(self) -> None:
        """Draining: tasks not started yet go back to the queue at once, for other agents,
        without using an attempt; queued ones are withdrawn from their workers first."""
        for lease in self.backlog:
            self._settle(released(lease))
        self.backlog.clear()
        for slot in self.slots:
            for lease in slot.queued():
                with contextlib.suppress(OSError):
                    slot.withdraw(lease)

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
                self._stopping.wait(0.5)
                continue
            if found:
                self._hungry.clear()
                self._wake()
