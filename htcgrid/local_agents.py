"""The agent processes of ``htcgrid up``: started, restarted with backoff, retired by draining,
and scaled with the backlog.

Each agent runs in its own session (process group), so a signal to the grid reaches only the
supervisor, which stops its agents in order. An agent that exits on its own is started again
after ``restart_delay``: at once after a long run, then 1, 2, 4 … up to 30 s while it keeps
dying young. Scale-in never kills: a retired agent gets SIGTERM and drains (it claims nothing
more and finishes what it runs within the grace period); only an agent still alive after that
is killed with its group.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from htcgrid.errors import GridError
from htcgrid.scaling import ScalingPolicy, desired_capacity, running_tasks
from htcgrid.store.base import TaskStore

log = logging.getLogger("htcgrid.up")
FIRST_RESTART_SECONDS = 1.0
MAX_RESTART_SECONDS = 30.0
STABLE_SECONDS = 30.0  # an agent that ran this long was healthy: its next restart is immediate
KILL_MARGIN_SECONDS = 5.0  # past the grace period, before a draining agent is killed
Command = Callable[[int], list[str]]


def restart_delay(failures: int) -> float:
    """Seconds before restarting an agent that died young ``failures`` times in a row."""
    if failures <= 0:
        return 0.0
    return min(MAX_RESTART_SECONDS, FIRST_RESTART_SECONDS * 2.0 ** (failures - 1))


@dataclass
class _Agent:
    number: int
    proc: subprocess.Popen[bytes] | None
    started_at: float
    failures: int = 0
    restart_at: float | None = None


class AgentPool:
    """Agent processes made by ``command(number)``; ``clock`` is monotonic seconds."""

    def __init__(
        self,
        command: Command,
        grace_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.command = command
        self.grace_seconds = grace_seconds
        self.clock = clock
        self.serving: list[_Agent] = []
        self.retiring: list[tuple[subprocess.Popen[bytes], float]] = []  # process, kill deadline
        self._numbers = 0

    def size(self) -> int:
        """Agents serving (running, or waiting to be restarted); draining ones do not count."""
        return len(self.serving)

    def pids(self) -> list[int]:
        return [a.proc.pid for a in self.serving if a.proc is not None]

    def grow(self, count: int) -> None:
        for _ in range(count):
            self.serving.append(_Agent(self._numbers, self._spawn(self._numbers), self.clock()))
            self._numbers += 1

    def shrink(self, count: int) -> None:
        """Retire ``count`` agents: those waiting for a restart first, then the newest, each by
        SIGTERM (it drains)."""
        order = sorted(self.serving, key=lambda a: (a.proc is not None, a.started_at))
        for agent in order[:count]:
            self.serving.remove(agent)
            if agent.proc is not None and agent.proc.poll() is None:
                agent.proc.send_signal(signal.SIGTERM)
                deadline = self.clock() + self.grace_seconds + KILL_MARGIN_SECONDS
                self.retiring.append((agent.proc, deadline))

    def check(self) -> None:
        """Restart agents that died (with backoff), forget drained ones, kill overdue ones."""
        now = self.clock()
        for agent in self.serving:
            if agent.proc is not None and (code := agent.proc.poll()) is not None:
                self._schedule_restart(agent, code, now)
            if agent.proc is None and agent.restart_at is not None and now >= agent.restart_at:
                agent.proc, agent.started_at, agent.restart_at = (
                    self._spawn(agent.number),
                    now,
                    None,
                )
        for proc, deadline in list(self.retiring):
            if proc.poll() is None and now < deadline:
                continue
            if proc.poll() is None:
                log.warning(
                    "agent pid %d did not drain within the grace period: killing it", proc.pid
                )
            _kill_group(proc)
            self.retiring.remove((proc, deadline))

    def _schedule_restart(self, agent: _Agent, code: int, now: float) -> None:
        lived = now - agent.started_at
        agent.failures = 0 if lived >= STABLE_SECONDS else agent.failures + 1
        delay = restart_delay(agent.failures)
        log.warning(
            "agent %d exited with code %s after %.1f s; restarting it in %.1f s",
            agent.number,
            code,
            lived,
            delay,
        )
        _kill_group(agent.proc)  # whatever its workers left behind
        agent.proc, agent.restart_at = None, now + delay

    def _spawn(self, number: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command(number), start_new_session=True)

    def _all(self) -> list[subprocess.Popen[bytes]]:
        return [a.proc for a in self.serving if a.proc is not None] + [p for p, _ in self.retiring]

    def kill(self) -> None:
        """Kill every agent with its group at once (a second Ctrl-C)."""
        for proc in self._all():
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Agents get the grace period to finish what they run; then each is killed with its
        process group (its workers and whatever their handlers started)."""
        procs = self._all()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = self.clock() + self.grace_seconds
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "agent pid %d did not stop within the grace period: killing it", proc.pid
                )
            _kill_group(proc)
        self.serving, self.retiring = [], []


def _kill_group(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)  # its own group, started by us
    proc.wait()


class PoolScaler:
    """Resizes an ``AgentPool`` to ``desired_capacity`` for the store's backlog; call ``tick``
    every ``poll_seconds``. The running tasks are read only when the pool might shrink."""

    def __init__(
        self,
        pool: AgentPool,
        store: TaskStore,
        policy: ScalingPolicy,
        clock: Callable[[], float] = time.monotonic,
        announce: Callable[[str], None] = log.info,
    ) -> None:
        self.pool, self.store, self.policy, self.clock = pool, store, policy, clock
        self.announce = announce
        self.changed_at = clock()
        self._failing = False

    def tick(self) -> None:
        try:
            want, backlog, running = self._decide()
        except GridError as exc:
            if not self._failing:
                log.warning("cannot read the backlog to scale agents (retrying): %s", exc)
            self._failing = True
            return
        self._failing = False
        have = self.pool.size()
        if want == have:
            return
        self.announce(f"agents {have} -> {want} (backlog {backlog}, running {running})")
        if want > have:
            self.pool.grow(want - have)
        else:
            self.pool.shrink(have - want)
        self.changed_at = self.clock()

    def _decide(self) -> tuple[int, int, int]:
        backlog, have = self.store.queue_depth(), self.pool.size()
        since = self.clock() - self.changed_at
        want = desired_capacity(self.policy, backlog, 0, have, since)
        if want >= have:
            return want, backlog, 0
        running = running_tasks(self.store)
        return desired_capacity(self.policy, backlog, running, have, since), backlog, running
