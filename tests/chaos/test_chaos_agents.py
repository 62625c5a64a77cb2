"""Chaos among the agents: SIGKILLed every few seconds (and replaced), or frozen with their
workers past the lease and thawed. Every scenario ends with ``harness.check`` on SQLite,
PostgreSQL and Redis; the kills on AWS (moto) too."""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import Grid, Row, check, done, events, grid, kind, progress, scale
from procs import descendants, signal_each, until

import htcgrid

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::htcgrid.errors.NoAgentWarning"),
]
TIMING = ["--heartbeat-seconds", "0.5", "--lease-seconds", "2"]
LOOK = 0.25  # seconds between looks at a session's progress: each is requests to the store


def test_agents_sigkilled_and_replaced(
    url_with_aws: str, tmp_path: Path, report: Callable[[Row], None]
) -> None:
    url = url_with_aws
    tasks, kills = scale(400, 5000), scale(3, 8)
    if kind(url) == "aws":  # moto answers in the test's process: 2-3 tasks/s on a loaded machine
        tasks, kills = scale(100, 600), scale(2, 4)
    row = Row("agents SIGKILLed every few seconds, new ones started", kind(url))
    with grid(url, tmp_path, TIMING) as g:
        for _ in range(3):
            g.start_agent()
        with htcgrid.connect(url) as client:  # one client: opening one per look costs on AWS
            session = client.submit(events(g.runs, tasks, sleep_ms=scale(20, 5)))
            for k in range(1, kills + 1):
                step = tasks * k // (kills + 2)
                until(lambda step=step: progress(session) >= step, 120, "progress", LOOK)
                victim = random.choice(g.live_agents())
                victim.send_signal(signal.SIGKILL)
                victim.wait(timeout=10)
                row.faults += 1
                g.start_agent()
            until(lambda: progress(session) >= tasks, 300, "every task", LOOK)
        report(check(g, [session.id], row))


def test_agent_frozen_past_its_lease(
    url: str, tmp_path: Path, report: Callable[[Row], None]
) -> None:
    """The agent and its workers freeze together (a paused VM); the tasks they held are run
    elsewhere once their leases expire, and what the thawed workers then finish is refused."""
    tasks = scale(40, 400)
    row = Row("agent and its workers SIGSTOPped past the lease, then SIGCONT", kind(url))
    with grid(url, tmp_path, TIMING) as g:
        frozen, other = g.start_agent(), g.start_agent()
        with htcgrid.connect(url) as client:
            session = client.submit(events(g.runs, tasks, sleep_ms=500))
            until(lambda: running_in(g, frozen.pid), 60, "the agent to run tasks")
            stopped = [frozen.pid, *descendants(frozen.pid)]
            signal_each(stopped, signal.SIGSTOP)
            row.faults += 1
            until(lambda: done(url, session.id) >= tasks, 300, "the other agent to finish all")
            # the workers before the agent, which may reap one as it wakes
            signal_each(reversed(stopped), signal.SIGCONT)
            other.send_signal(signal.SIGTERM)
            other.wait(timeout=30)
            # the thawed agent alone runs the next session: it recovered
            again = client.submit(events(g.runs, 10))
            until(lambda: done(url, again.id) >= 10, 60, "the thawed agent to run tasks")
        report(check(g, [session.id, again.id], row))
    thawed_log = g.runs.with_name("agent-0.log").read_text()
    assert "refused" in thawed_log, "the thawed agent neither dropped nor had refused its work"


def running_in(g: Grid, agent_pid: int) -> bool:
    """Whether a worker of that agent has started a task (the runs file names its pid)."""
    workers = {str(pid) for pid in descendants(agent_pid)}
    text = g.runs.read_text() if g.runs.exists() else ""
    return any(line.rsplit(" ", 1)[-1] in workers for line in text.splitlines())
