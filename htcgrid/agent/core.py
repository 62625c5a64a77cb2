"""What every part of the agent shares: its state (see ``htcgrid.agent.agent`` for where a
task can be) and the few steps they all take: settling a task, crashing a worker, waking the
loop."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable

from htcgrid import evidence
from htcgrid.agent.completer import Completer
from htcgrid.agent.heartbeat import LoopWatch
from htcgrid.agent.inputs import AgentInputs
from htcgrid.agent.messages import Result
from htcgrid.agent.packages import PackageCache, pickled_config
from htcgrid.agent.pool import PoolSet, WorkerSlot
from htcgrid.agent.worker import WorkerConfig
from htcgrid.dataplane import DataPlane
from htcgrid.errors import GridError
from htcgrid.models import (
    ErrorInfo,
    HeartbeatStatus,
    Lease,
    Outcome,
    after_infrastructure_failure,
)
from htcgrid.pickled import PYTHON_FUNCTION
from htcgrid.retry import Retrier
from htcgrid.settings import Settings
from htcgrid.store import TaskStore

log = logging.getLogger("htcgrid.agent")
STOPPED = ("AgentStopped", "agent stopped")
MAX_DEPTH = 64


class AgentCore:
    """The agent's state, declared once; ``Agent`` sets it up."""

    store: TaskStore
    data: DataPlane
    settings: Settings
    agent_id: str
    worker: WorkerConfig
    functions: list[str] | None
    clock: Callable[[], float]
    observer: Callable[[Lease, Result, float | None], None] | None
    worker_memory_mb: int
    retry: Retrier
    packages: PackageCache | None
    graph_inputs: AgentInputs
    pools: PoolSet
    broken: dict[WorkerConfig, tuple[ErrorInfo, float]]
    reload_seconds: float
    backlog: deque[Lease]
    held: dict[str, Lease]
    doomed: set[str]
    outcomes: list[Outcome]
    first_outcome_at: float
    avg_task_seconds: float | None
    queue_empty: bool
    draining: bool
    drain_deadline: float
    watch: LoopWatch
    counts: Counter[str]
    completer: Completer
    _gone: deque[tuple[str, HeartbeatStatus]]
    _hungry: threading.Event  # set while the queue looked empty, until the waker sees work
    _wake_r: int
    _wake_w: int

    @property
    def slots(self) -> list[WorkerSlot]:
        return self.pools.slots

    def _slot_idle(self) -> bool:
        return any(slot.idle for slot in self.slots)

    def _depth(self) -> int:
        """Tasks in flight per worker: about ``prefetch_seconds`` of work, at least 1."""
        if self.avg_task_seconds is None:
            return 2
        extra = int(self.settings.prefetch_seconds / max(self.avg_task_seconds, 1e-6))
        return 1 + min(MAX_DEPTH - 1, extra)

    def _current_config(self, function: str) -> WorkerConfig:
        if function == PYTHON_FUNCTION:  # built in: pickled calls, nothing to fetch
            return pickled_config(self.worker)
        if self.packages is None:
            return self.worker
        self.watch.doing = f"fetching the package of function {function}"
        return self.packages.config_for(function) or self.worker

    def _settle(self, outcome: Outcome) -> None:
        """``outcome`` ends the agent's hold on its task; it is recorded soon, in a batch."""
        self.held.pop(outcome.task_id, None)
        if not self.outcomes:
            self.first_outcome_at = time.monotonic()
        self.outcomes.append(outcome)

    def _on_crash(self, slot: WorkerSlot) -> None:
        reason = slot.exit_reason()
        held = slot.restart()
        self.counts["crashed"] += 1
        log.warning("worker %d: %s", slot.number, reason)
        if held:
            self._fail_head(held, "WorkerCrashed", reason, slot)

    def _forget_doomed(self, task_id: str) -> bool:
        """Whether the task was cancelled or lost while in a worker; if so it is forgotten
        here (nothing is recorded for it)."""
        if task_id not in self.doomed:
            return False
        self.doomed.discard(task_id)
        self.held.pop(task_id, None)
        return True

    def _fail_head(
        self, held: list[Lease], kind: str, reason: str, dead: WorkerSlot | None = None
    ) -> None:
        """``dead``: the slot whose worker the head task killed (its ``last_exit`` is the
        task's evidence); None when the agent stopped the worker for another reason."""
        head, rest = held[0], held[1:]
        if not self._forget_doomed(head.task_id):
            poison = self._poison_after(head)
            if self.observer is not None:
                error = ErrorInfo(kind, reason)
                self.observer(head, Result(head.task_id, head.attempt, False, error=error), None)
            found = "" if dead is None else self._evidence(head, kind, reason, dead)
            outcome = after_infrastructure_failure(
                head, kind, reason, poison_after=poison, evidence=found
            )
            self._settle(outcome)
        for lease in rest:
            self._forget_doomed(lease.task_id)
        self.backlog.extendleft(reversed([le for le in rest if le.task_id in self.held]))

    def _evidence(self, lease: Lease, kind: str, reason: str, dead: WorkerSlot) -> str:
        """The task's stored evidence plus this attempt's death (htcgrid.evidence)."""
        try:
            record = self.store.get_task(lease.task_id)
        except GridError:
            record = None
        code, peak_mb, tail = dead.last_exit
        death = evidence.entry(
            lease.attempt,
            kind,
            reason,
            exit_code=code,
            peak_rss_mb=peak_mb,
            agent=self.agent_id,
            host=socket.gethostname(),
            log=tail,
        )
        return evidence.append(None if record is None else record.evidence, death)

    def _poison_after(self, lease: Lease) -> int:
        """The session's own ``poison_after``, else the agent's; read only when a worker died."""
        try:
            info = self.store.get_session(lease.session_id)
        except GridError:
            info = None
        own = None if info is None else info.spec.poison_after
        return self.settings.poison_after if own is None else own

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"!")
