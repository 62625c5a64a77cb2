"""Chaos in the workers: crashes, memory over the limit, hangs past the timeout, megabytes of
output and forked children; and agents whose clocks run ahead or behind. Every scenario ends
with ``harness.check`` on SQLite, PostgreSQL and Redis; the misbehaving workers on AWS (moto)
too."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from multiprocessing import resource_tracker
from pathlib import Path

import pytest
from harness import HANDLER, LONG, Row, check, done, events, grid, kind, progress, scale
from procs import until

import htcgrid
from htcgrid.agent.agent import Agent
from htcgrid.agent.worker import WorkerConfig
from htcgrid.dataplane import open_data_plane
from htcgrid.settings import Settings
from htcgrid.store import open_store

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::htcgrid.errors.NoAgentWarning"),
]
TIMING = ["--heartbeat-seconds", "0.5", "--lease-seconds", "2"]


FAULTS = ["crash", "memory", "hang", "spew", "fork"]


def test_workers_that_misbehave(
    url_with_aws: str, tmp_path: Path, report: Callable[[Row], None]
) -> None:
    url = url_with_aws
    per_fault = scale(1, 6)
    row = Row("workers crash, exceed memory, hang, print MiBs, fork children", kind(url))
    with grid(url, tmp_path, TIMING) as g:
        g.start_agent("--worker-memory-mb", "300")
        faulty = [f for f in FAULTS for _ in range(per_fault)]
        tasks = events(g.runs, len(faulty) * 2)
        for event, fault in zip(tasks, faulty, strict=False):
            event["fault"] = fault
        with htcgrid.connect(url) as client:
            session = client.submit(tasks, timeout_seconds=3)
            row.faults = len(faulty)
            until(lambda: progress(session) >= len(tasks), 300, "every task", 0.25)
        report(check(g, [session.id], row))


@pytest.mark.skipif(not LONG, reason="a long run: make chaos")
@pytest.mark.parametrize("skew_seconds", [5.0, -5.0])
def test_agent_clock_off(
    url: str, tmp_path: Path, skew_seconds: float, report: Callable[[Row], None]
) -> None:
    """An agent whose clock runs ahead or behind neither steals nor loses leases."""
    tasks = scale(60, 500)
    row = Row(f"agent clock {skew_seconds:+.0f} s", kind(url))
    settings = Settings(heartbeat_seconds=0.5, lease_seconds=10.0)
    with grid(url, tmp_path, ["--heartbeat-seconds", "0.5", "--lease-seconds", "10"]) as g:
        g.start_agent()  # an honest agent beside the skewed one
        resource_tracker.ensure_running()  # the test's own helper, started before the tag
        os.environ["HTCGRID_CHAOS_TAG"] = g.tag  # the skewed agent's workers are the grid's too
        store, data = open_store(url), open_data_plane(url)
        worker = WorkerConfig(handler=HANDLER[-1], paths=(HANDLER[1],))
        skewed = Agent(store, data, settings, worker, 2, clock=lambda: time.time() + skew_seconds)
        try:
            thread = _run(skewed)
            with htcgrid.connect(url) as client:
                session = client.submit(events(g.runs, tasks, sleep_ms=50))
                until(lambda: done(url, session.id) >= tasks, 300, "every task")
        finally:
            skewed.stop()
            thread.join(timeout=30)
            os.environ.pop("HTCGRID_CHAOS_TAG", None)
            store.close()
            data.close()
        row.faults = 1
        report(check(g, [session.id], row, max_attempts=1))


def _run(agent: Agent) -> threading.Thread:
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    return thread
