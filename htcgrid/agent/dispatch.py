"""Dispatch: each claimed task to the least loaded worker of its function, idle ones first,
and back from a busy worker's queue as soon as another worker of its function is idle."""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from dataclasses import replace

from htcgrid.agent.core import AgentCore
from htcgrid.agent.inputs import NotReady
from htcgrid.agent.messages import Task
from htcgrid.agent.pool import WorkerSlot, demand_of
from htcgrid.agent.worker import WorkerConfig
from htcgrid.dataplane import keys
from htcgrid.errors import BackendUnavailable, GridError
from htcgrid.models import (
    Lease,
    Outcome,
    TaskState,
    after_handler_error,
    after_infrastructure_failure,
    released,
)

log = logging.getLogger("htcgrid.agent")
QUEUE_BUDGET_BYTES = 128 * 1024  # inline payload bytes that may wait behind a running task


def _within(lease: Lease, config: WorkerConfig) -> Lease:
    """``lease`` with the function's own timeout, when that is the shorter of the two."""
    limit = config.timeout_seconds
    if limit is None or limit >= lease.timeout_seconds:
        return lease
    return replace(lease, timeout_seconds=limit)


class Dispatch(AgentCore):
    def _dispatch(self, now: float) -> None:
        """Each task goes to the least loaded slot running its function's current package
        (or the agent's own handler); slots follow the demand; idle slots take work back
        from busy ones."""
        long_since = now - self.settings.prefetch_seconds  # a task running since: long
        if not self.backlog and not self._could_take_back(long_since):
            return  # the common turn: nothing to place, nothing to move (a fifth of the loop)
        depth = self._depth()
        routed: list[tuple[Lease, WorkerConfig]] = []
        waiting: deque[Lease] = deque()
        # A send below may find its worker dead: the crash hands that worker's tasks back to
        # a fresh backlog, which must keep them (they were lost, held forever, when it was
        # overwritten by the tasks left waiting here).
        pending, self.backlog = self.backlog, deque()
        for lease in pending:
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
            slot = self.pools.best_slot(config, depth, QUEUE_BUDGET_BYTES, long_since)
            if slot is None:
                waiting.append(lease)
            else:
                self._send(slot, _within(lease, config), now)
        self._flush_sends()
        self.backlog.extend(waiting)
        self._take_back_for_idle()
        self._take_back_from_long(long_since)

    def _flush_sends(self) -> None:
        for slot in list(self.slots):
            try:
                slot.flush()
            except OSError:  # the worker died under us: its tasks go back to the backlog
                self._on_crash(slot)

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

    def _send(self, slot: WorkerSlot, lease: Lease, now: float) -> None:
        payload = lease.payload
        if payload is None and self.worker.data_url is None:
            # a data plane only this process can read (memory://): the payload goes inline
            self.watch.doing = f"reading the payload of {lease.task_id}"
            payload = self.retry(lambda: self.data.get(lease.payload_ref or ""))
        try:
            inputs, inputs_ref = self.graph_inputs.for_lease(lease)
        except NotReady as exc:  # never run without its inputs
            self._settle(Outcome(lease.task_id, lease.attempt, TaskState.FAILED, error=exc.error()))
            return
        except GridError as exc:
            self._settle(after_infrastructure_failure(lease, type(exc).__name__, str(exc)))
            return
        task = Task(
            lease.task_id,
            lease.session_id,
            lease.attempt,
            lease.timeout_seconds,
            keys.task_output(lease.session_id, lease.index, lease.attempt),
            payload=payload,
            payload_ref=None if payload is not None else lease.payload_ref,
            inputs=inputs,
            inputs_ref=inputs_ref,
        )
        slot.send(lease, task, now)

    def _could_take_back(self, long_since: float) -> bool:
        """Whether a slot is idle while another has a task queued behind its running one, or
        a task waits behind one that has turned out long."""
        queuing = [s for s in self.slots if len(s.inflight) > 1]
        if not queuing:
            return False
        return self._slot_idle() or any(
            s.running_since_before(long_since) and s.queued() for s in queuing
        )

    def _take_back_from_long(self, long_since: float) -> None:
        """Tasks were queued behind a running one for ``prefetch_seconds`` of work; once it
        has run longer than that, they go back to the backlog, for the next slot that frees
        up (a long task must not hold up the ones behind it, nor another long one)."""
        for slot in self.slots:
            if slot.running_since_before(long_since):
                # the last first: each comes back to the front of the backlog, in queue order
                for lease in reversed(slot.queued()):
                    with contextlib.suppress(OSError):
                        slot.withdraw(lease)

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
