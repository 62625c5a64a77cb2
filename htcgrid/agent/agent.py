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
outcomes (and wakes the loop only when unrecorded outcomes held its claims back). Dispatch is
work-conserving: a task goes to an idle slot of its function first, waits behind a running
task only while tasks are short (``prefetch_seconds`` of work), and is taken back from a
worker's queue as soon as another slot of its function is idle.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from htcgrid.agent.completer import Completer
from htcgrid.agent.dispatch import Dispatch
from htcgrid.agent.events import FLUSH_SECONDS, Events
from htcgrid.agent.heartbeat import Heartbeat, LoopWatch
from htcgrid.agent.inputs import AgentInputs
from htcgrid.agent.memo import MemoDesk
from htcgrid.agent.messages import Result
from htcgrid.agent.packages import PackageCache
from htcgrid.agent.pool import PoolSet, wait_deadline
from htcgrid.agent.scaler import SlotScaler
from htcgrid.agent.worker import WorkerConfig
from htcgrid.dataplane import DataPlane
from htcgrid.models import (
    ErrorInfo,
    HeartbeatStatus,
    Lease,
    Outcome,
    released,
)
from htcgrid.presence import AgentPresence
from htcgrid.retry import Retrier
from htcgrid.scaling import ScalingPolicy
from htcgrid.settings import Settings
from htcgrid.store import TaskStore

log = logging.getLogger("htcgrid.agent")

RELOAD_SECONDS = 5.0  # how long a handler that failed to load is left alone before a retry
MEMORY_CHECK_SECONDS = 0.1  # how often a busy worker's memory is held against its limit


def new_agent_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _shared(data: DataPlane) -> str | None:
    """The data plane's URL if worker processes can open it themselves."""
    return data.url if data.url and not data.url.startswith("memory:") else None


class Agent(Dispatch, Events):
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
        observer: Callable[[Lease, Result, float | None], None] | None = None,
    ) -> None:
        """``slots`` worker processes, or with ``autoscale`` between its min and max (at
        most ``slots``), following the backlog: idle workers are retired, busy ones never.
        ``observer`` is called with each attempt a worker ended and its run seconds, and with
        each attempt ended by killing or losing its worker (run seconds None) (metrics)."""
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
        self.graph_inputs = AgentInputs(store, data, self.worker.data_url is not None)
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
        self._throttled = False  # the last claim was cut short by unrecorded outcomes
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
        self.memo = MemoDesk(store, data, clock, self._wake)  # sessions submitted with cache
        self._selector = selectors.DefaultSelector()
        self._selected: list[Any] = []
        os.set_blocking(self._wake_w, False)

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
            self._recorded,
            self.settings.inline_limit_bytes,
        )
        self.counts = self.completer.counts
        self.completer.on_applied = self.memo.recorded
        self.heartbeat.start()
        try:
            while not self._step(should_stop):
                pass
        finally:
            self._stopping.set()
            self._flush()
            self.heartbeat.stop()
            self.completer.close(self.settings.grace_seconds)
            self.memo.close(self.settings.grace_seconds)
            self.pools.stop_all()
            waker.join(timeout=2)
            self._selector.close()
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
        if self.memo.asked:
            self._take_memo_answers()
        self._apply_gone()
        self._dispatch(now)
        ready = self._ready(self._timeout(now))
        now = time.monotonic()
        self._collect(ready, now)
        self._enforce_deadlines(now)
        if self.outcomes and self._flush_due(now):
            self._flush()
        return False

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
        self._throttled = unrecorded > 4 * capacity
        wanted = capacity - len(self.held) - max(0, unrecorded - 4 * capacity)
        wanted += self.memo.room  # tasks of memoized sessions: looked up before a slot
        # Claims come in batches: topping up after every finished task was a write
        # transaction per task. The agent claims once half its capacity is free, or at once
        # when a slot is idle (work conservation: an idle slot never waits for the batch).
        if wanted <= 0 or (wanted < capacity // 2 and not self._slot_idle()):
            return
        self.watch.doing = "claiming tasks from the task store"
        leases = self.retry(
            lambda: self.store.claim(
                self.agent_id, wanted, self.settings.lease_seconds, self.clock(), self.functions
            )
        )
        for lease in leases:
            self.held[lease.task_id] = lease
            if not self.memo.takes(lease, self._current_config):
                self.backlog.append(lease)
        if len(leases) < wanted:
            self.queue_empty = True
            self._hungry.set()

    def _recorded(self) -> None:
        """Called on the Completer's thread after each batch: the loop need only hear of it
        when unrecorded outcomes held its claims back (a wake for every recorded outcome
        was a turn of the loop and a pipe's write and read per task that changed nothing)."""
        if self._throttled:
            self._wake()

    def _take_memo_answers(self) -> None:
        """Tasks of memoized sessions back from their lookup: answered, or to run."""
        for lease, outcome in self.memo.answers():
            if lease.task_id not in self.held:  # cancelled or lost meanwhile
                if outcome is not None and outcome.output_ref:
                    self.completer.discard(outcome.output_ref)
            elif outcome is not None:
                self._settle(outcome)
            elif self.draining:
                self._settle(released(lease))
            else:
                self.backlog.append(lease)

    def _waitables(self) -> list[Any]:
        items: list[Any] = [self._wake_r]
        for slot in self.slots:
            items += [slot.conn, slot.sentinel]
        return items

    def _ready(self, timeout_seconds: float) -> list[Any]:
        """Which of ``_waitables`` can be read within ``timeout_seconds``. One selector is
        kept while the slots stay the same: building one each turn, as ``multiprocessing``'s
        ``wait`` does, was a tenth of the agent's time on short tasks."""
        items = self._waitables()
        if items != self._selected:
            self._selector.close()
            self._selector = selectors.DefaultSelector()
            for item in items:
                self._selector.register(item, selectors.EVENT_READ)
            self._selected = items
        return [key.fileobj for key, _ in self._selector.select(timeout_seconds)]

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
                if (
                    len(slot.inflight) > 1
                    and now - slot.head_started < self.settings.prefetch_seconds
                ):
                    deadlines.append(slot.head_started + self.settings.prefetch_seconds)
                if slot.config.memory_mb or self.worker_memory_mb:
                    deadlines.append(now + MEMORY_CHECK_SECONDS)
        return wait_deadline(now, *deadlines)

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
