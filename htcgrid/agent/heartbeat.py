"""Heartbeats on a thread of their own, and a watch on the agent's loop.

The loop may wait on the store, on a package download or on a slow worker; none of that may
starve the heartbeat, or live tasks would lose their leases and run twice. The same thread
notices when the loop has not turned for longer than a heartbeat and says why, once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence

from htcgrid.errors import GridError
from htcgrid.models import HeartbeatStatus
from htcgrid.presence import AgentPresence
from htcgrid.retry import Retrier
from htcgrid.settings import Settings
from htcgrid.store import TaskStore

log = logging.getLogger("htcgrid.agent")


class LoopWatch:
    """Where the agent's loop is: the time of its last turn and what it is doing now."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.turned_at = clock()
        self.doing = "starting"
        self._reported = False

    def turn(self) -> None:
        self.turned_at = self.clock()
        self.doing = "waiting for workers and new tasks"
        self._reported = False

    def stalled_for(self) -> float:
        return self.clock() - self.turned_at

    def report(self, limit_seconds: float) -> str | None:
        """A line saying why the loop is stuck, once per stall; None while it turns."""
        stalled = self.stalled_for()
        if stalled <= limit_seconds:
            self._reported = False
            return None
        if self._reported:
            return None
        self._reported = True
        return f"agent loop has not turned for {stalled:.1f} s: {self.doing}"


class Heartbeat:
    """Every ``heartbeat_seconds``, extends the leases ``leases()`` returns, hands the tasks
    that were cancelled or lost to ``on_gone``, and tells ``presence`` the agent is alive."""

    def __init__(
        self,
        agent_id: str,
        store: TaskStore,
        settings: Settings,
        leases: Callable[[], Sequence[tuple[str, int]]],
        on_gone: Callable[[dict[str, HeartbeatStatus]], None],
        watch: LoopWatch,
        clock: Callable[[], float] = time.time,
        presence: AgentPresence | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.store = store
        self.settings = settings
        self.leases = leases
        self.on_gone = on_gone
        self.watch = watch
        self.clock = clock
        self.presence = presence
        self.beats = 0
        self._stop = threading.Event()
        self._retry = Retrier(log, give_up=self._stop.is_set)
        self._thread = threading.Thread(target=self._run, name="htcgrid-heartbeat", daemon=True)

    def start(self) -> None:
        self._announce()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.settings.heartbeat_seconds + 1)
        if self.presence is not None:
            with contextlib.suppress(GridError):
                self.presence.leave()

    def _announce(self) -> None:
        if self.presence is None:
            return
        try:
            self.presence.beat(self.clock(), running=len(self.leases()))
        except GridError as exc:  # the next heartbeat tries again
            log.debug("could not announce the agent: %s", exc)
        except Exception:  # never let the presence record stop the leases' heartbeat
            if not self._stop.is_set():
                log.exception("could not announce the agent")

    def beat(self) -> None:
        """One heartbeat now (the thread calls this; tests may too)."""
        leases = self.leases()
        if not leases:
            return
        answers = self._retry(
            lambda: self.store.heartbeat(
                self.agent_id, leases, self.settings.lease_seconds, self.clock()
            )
        )
        self.beats += 1
        gone: dict[str, HeartbeatStatus] = {
            tid: s for tid, s in answers.items() if s is not HeartbeatStatus.OK
        }
        if gone:
            self.on_gone(gone)

    def _run(self) -> None:
        period = self.settings.heartbeat_seconds
        next_beat = time.monotonic() + period
        while not self._stop.wait(min(period / 2, 0.5)):
            if line := self.watch.report(period):
                log.warning("%s", line)
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + period
                self._announce()
                try:
                    self.beat()
                except Exception:  # the store gave up or broke: the next beat tries again
                    if not self._stop.is_set():
                        log.exception("heartbeat failed")
