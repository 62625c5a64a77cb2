"""Agents announce themselves in the task store, so a grid knows who serves it.

Each agent keeps one small record, metadata key ``agents/<agent_id>``, written when it starts
and again on its heartbeats (at most every ``min_interval_seconds``), and removed when it
stops. ``htcgrid agents`` and ``GET /v1/agents`` list them; a submit warns when no agent has
been seen for a while, instead of leaving its tasks pending without a word.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from htcgrid import __version__
from htcgrid.pickled import local_versions
from htcgrid.pickled_packages import installed_packages
from htcgrid.store.base import TaskStore
from htcgrid.urls import redact

log = logging.getLogger("htcgrid.presence")
PREFIX = "agents/"
QUIET_SECONDS = 30.0  # no agent seen for this long: a submit warns
FORGET_SECONDS = 86400.0  # records of agents silent for this long are removed when listed
WARNING_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class AgentInfo:
    agent_id: str
    host: str
    pid: int
    slots: int
    functions: tuple[str, ...] | None  # None: every function
    version: str
    started_at: float
    last_seen: float
    runtimes: dict[str, str] = field(default_factory=dict)  # e.g. python, cloudpickle versions
    running: int | None = None  # tasks it held (running or next in a worker) when it wrote this
    packages: dict[str, str] = field(default_factory=dict)  # installed distributions

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["functions"] = list(self.functions) if self.functions is not None else None
        return found

    @classmethod
    def from_json(cls, text: str) -> AgentInfo:
        raw = json.loads(text)
        functions = raw.get("functions")
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}  # a newer agent's
        return cls(**{**known, "functions": tuple(functions) if functions is not None else None})


class AgentPresence:
    """One agent's record. Call ``beat(now)`` at start and on each heartbeat, ``leave()`` on
    a clean stop; both are cheap and never raise for a record another process removed."""

    def __init__(
        self,
        store: TaskStore,
        agent_id: str,
        slots: int,
        functions: Sequence[str] | None = None,
        *,
        host: str | None = None,
        pid: int | None = None,
        min_interval_seconds: float = 1.0,
    ) -> None:
        self.store = store
        self.key = PREFIX + agent_id
        self.agent_id = agent_id
        self.slots = slots
        self.functions = tuple(functions) if functions is not None else None
        self.host = host or socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self.min_interval_seconds = min_interval_seconds
        self.started_at: float | None = None
        self.written_at: float | None = None

    def beat(self, now: float, running: int | None = None) -> bool:
        """Record that this agent is alive at ``now``, holding ``running`` tasks; returns
        whether it wrote the record."""
        if self.started_at is None:
            self.started_at = now
        elif self.written_at is not None and now - self.written_at < self.min_interval_seconds:
            return False
        info = AgentInfo(
            self.agent_id,
            self.host,
            self.pid,
            self.slots,
            self.functions,
            __version__,
            self.started_at,
            now,
            local_versions(),
            running,
            installed_packages(),
        )
        self.store.put_meta(self.key, json.dumps(info.as_dict(), sort_keys=True))
        self.written_at = now
        return True

    def leave(self) -> None:
        self.store.delete_meta(self.key)


def list_agents(store: TaskStore, now: float) -> list[AgentInfo]:
    """Every agent seen within ``FORGET_SECONDS``, most recently seen first; older records
    are removed on the way."""
    found = []
    for key, text in store.list_meta(PREFIX).items():
        try:
            info = AgentInfo.from_json(text)
        except (ValueError, TypeError):
            store.delete_meta(key)
            continue
        if now - info.last_seen > FORGET_SECONDS:
            store.delete_meta(key)
        else:
            found.append(info)
    return sorted(found, key=lambda a: a.last_seen, reverse=True)


def no_agent_warning(
    store: TaskStore, now: float, quiet_seconds: float = QUIET_SECONDS
) -> str | None:
    """The warning a submit should show when no agent has been seen for ``quiet_seconds``."""
    agents = list_agents(store, now)
    start = f"start one with `htcgrid agent --url {redact(store.url)}`"
    if not agents:
        return f"no agent has been seen on this grid; {start}"
    silent = now - agents[0].last_seen
    if silent <= quiet_seconds:
        return None
    return f"no agent has been seen on this grid for {silent:.0f} s; {start}"


class PresenceCheck:
    """``no_agent_warning`` remembered for a moment, so a busy submit path reads it rarely.

    For ``grace_seconds`` after it is made it stays silent: a server started together with
    its agents (``htcgrid up``) takes submits before they have started."""

    def __init__(
        self,
        store: TaskStore,
        clock: Callable[[], float] = time.time,
        grace_seconds: float = 0.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.quiet_until = clock() + grace_seconds
        self._checked_at = -WARNING_CACHE_SECONDS
        self._warning: str | None = None

    def warning(self) -> str | None:
        now = self.clock()
        if now < self.quiet_until:
            return None
        if now - self._checked_at >= WARNING_CACHE_SECONDS or now < self._checked_at:
            self._warning = no_agent_warning(self.store, now)
            self._checked_at = now
        return self._warning
