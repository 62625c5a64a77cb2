"""``htcgrid agent --slots MIN:MAX``: the agent's own worker count follows the backlog.

The decision is ``htcgrid.scaling.desired_capacity`` with a slot as the unit. The backlog is
the grid's pending tasks of the functions this agent serves plus the tasks it holds that no
worker runs yet; the store is asked at most once per ``poll_seconds``, so a busy agent adds
one cheap count query a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from htcgrid.errors import GridError
from htcgrid.scaling import ScalingPolicy, desired_capacity
from htcgrid.store import TaskStore

log = logging.getLogger("htcgrid.agent")


class SlotScaler:
    def __init__(
        self,
        policy: ScalingPolicy,
        store: TaskStore,
        functions: Sequence[str] | None,
        poll_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.store = store
        self.functions = list(functions) if functions is not None else None
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.pending = 0
        self._asked_at = float("-inf")
        self._changed_at = clock()

    def limit(self, held_unstarted: int, busy: int, current: int, now: float) -> int:
        """The slot count to run now (``now`` on this scaler's clock)."""
        if now - self._asked_at >= self.poll_seconds:
            self._asked_at = now
            try:
                self.pending = self.store.queue_depth(self.functions)
            except GridError as exc:  # keep the last count: an outage is no reason to scale
                log.debug("queue depth unavailable: %s", exc)
        wanted = desired_capacity(
            self.policy, self.pending + held_unstarted, busy, current, now - self._changed_at
        )
        if wanted != current:
            self._changed_at = now
        return wanted
