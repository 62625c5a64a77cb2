"""The scaling decision: how much capacity a grid should run for its backlog.

One pure function, ``desired_capacity``, used by ``htcgrid up --agents MIN:MAX`` (capacity in
agents), by ``GET /v1/scaling`` (the signal KEDA scales agent pods on) and by the simulation in
``scripts/autoscale_simulation.py``. The rule is HTC-Grid's, with two guards:

- desired = ceil(backlog / (target_backlog x slots_per_unit)), clamped to min..max
  (HTC-Grid: ceil(pending / ``htc_agent_target_value``) pods, clamped to
  ``min_htc_agents``..``max_htc_agents``);
- never below the units busy with running tasks, so a nearly empty queue does not shrink the
  grid under long tasks (HTC-Grid's KEDA counted only queued messages, and its scale-in killed
  running work);
- scale-out is immediate (a backlog waits for no one); scale-in only once ``cooldown_seconds``
  have passed since the last change, so a capacity that just changed does not flap back.

``running_tasks`` reads the running count from any task store.

Scale-in itself never interrupts a task: whoever applies the decision retires a unit by asking
it to drain (``htcgrid agent`` on SIGTERM claims nothing more and finishes what it runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from htcgrid.errors import ConfigurationError
from htcgrid.models import TaskState
from htcgrid.store.base import TaskStore

DEFAULT_TARGET_BACKLOG = 2.0  # pending tasks per slot: HTC-Grid's htc_agent_target_value
DEFAULT_COOLDOWN_SECONDS = 30.0
SESSIONS_SCANNED = 10_000  # running tasks are counted over the newest sessions this many
_PAGE = 1000


@dataclass(frozen=True)
class ScalingPolicy:
    """The bounds and knobs of one autoscaled pool. A unit (an agent, a pod, a slot) runs
    ``slots_per_unit`` tasks at once."""

    min_capacity: int = 1
    max_capacity: int = 100
    target_backlog: float = DEFAULT_TARGET_BACKLOG
    slots_per_unit: int = 1
    cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS

    def __post_init__(self) -> None:
        if not 0 <= self.min_capacity <= self.max_capacity:
            raise ConfigurationError(
                f"capacity bounds {self.min_capacity}:{self.max_capacity} need 0 <= MIN <= MAX"
            )
        if self.max_capacity < 1:
            raise ConfigurationError("the maximum capacity must be at least 1")
        if not self.target_backlog > 0:
            raise ConfigurationError(f"target backlog must be positive, not {self.target_backlog}")
        if self.slots_per_unit < 1:
            raise ConfigurationError(
                f"slots per unit must be at least 1, not {self.slots_per_unit}"
            )
        if self.cooldown_seconds < 0:
            raise ConfigurationError("the cool-down cannot be negative")


def desired_capacity(
    policy: ScalingPolicy,
    backlog: int,
    running: int,
    current: int,
    seconds_since_change: float,
) -> int:
    """The capacity to run now, in units, given ``backlog`` pending tasks, ``running`` tasks,
    ``current`` units and the seconds since capacity last changed.

    Always within ``min_capacity..max_capacity``; above ``current`` only when the backlog or the
    running tasks ask for it; below ``current`` only after the cool-down and never below the
    units the running tasks occupy.
    """
    per_unit = policy.target_backlog * policy.slots_per_unit
    wanted = math.ceil(max(backlog, 0) / per_unit)
    busy = math.ceil(max(running, 0) / policy.slots_per_unit)
    target = _clamp(max(wanted, busy), policy.min_capacity, policy.max_capacity)
    if target < current and seconds_since_change < policy.cooldown_seconds:
        return _clamp(current, policy.min_capacity, policy.max_capacity)
    return target


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def parse_range(text: str) -> tuple[int, int]:
    """``"MIN:MAX"`` (or ``"N"``, meaning ``N:N``) as two whole numbers, 0 <= MIN <= MAX;
    a ``ConfigurationError`` in one line otherwise."""
    low_text, sep, high_text = text.partition(":")
    try:
        low = int(low_text)
        high = int(high_text) if sep else low
    except ValueError:
        raise ConfigurationError(f"{text!r} is not MIN:MAX (two whole numbers, e.g. 1:8)") from None
    if not 0 <= low <= high:
        raise ConfigurationError(f"{text!r} needs 0 <= MIN <= MAX")
    return low, high


def running_tasks(store: TaskStore, max_sessions: int = SESSIONS_SCANNED) -> int:
    """Tasks in ``processing`` over the newest ``max_sessions`` sessions that are not complete
    (a complete session runs nothing, so it costs no count)."""
    running, offset = 0, 0
    while offset < max_sessions:
        page = store.list_sessions(limit=min(_PAGE, max_sessions - offset), offset=offset)
        for session in page:
            if not session.complete:
                running += store.count_states(session.id)[TaskState.PROCESSING]
        if len(page) < _PAGE:
            break
        offset += len(page)
    return running
