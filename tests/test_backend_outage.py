"""A backend that goes away and comes back costs no task (issue 4).

The test runs its own Redis server (append-only file, so a restart keeps the data) or its own
PostgreSQL cluster on a free loopback port, stops it in the middle of a run, starts it again,
and checks that the agent and the server rode out the outage and every task finished once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from own_servers import OwnPostgres, OwnRedis
from own_servers import own_server as started
from procs import pid_alive, until

import htcgrid
from htcgrid.models import TaskState

pytestmark = pytest.mark.slow
TASKS = 3000


@pytest.fixture(params=["redis", "postgresql"])
def own_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OwnRedis | OwnPostgres]:
    with started(request.param, tmp_path) as server:
        yield server


def test_a_backend_restart_costs_no_task(own_server: OwnRedis | OwnPostgres) -> None:
    url = own_server.url
    timing = ["--heartbeat-seconds", "0.5", "--lease-seconds", "5"]
    server = subprocess.Popen([sys.executable, "-m", "htcgrid", "server", "--url", url, "--port", "0", "--no-auth", *timing],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    agent = subprocess.Popen(
        [sys.executable, "-m", "htcgrid", "agent", "--url", url, "--slots", "2", "--handler",
         "htcgrid.handlers.mock_compute", *timing],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with htcgrid.connect(url) as grid:
            session = grid.submit([{"worker_arguments": ["1", "1", "1"]}] * TASKS)
            until(lambda: session.status()["done_count"] >= TASKS // 5, 120, "a fifth of the tasks")
        own_server.stop()
        assert pid_alive(agent.pid) and server.poll() is None
        own_server.start()
        with htcgrid.connect(url) as grid:
            results = grid.session(session.id).results(timeout=180)
    finally:
        for proc in (agent, server):
            proc.send_signal(signal.SIGTERM)
        agent_log = agent.communicate(timeout=30)[1]
        server.communicate(timeout=30)
    assert len(results) == TASKS and all(r.state is TaskState.FINISHED for r in results)
    assert len({r.task_id for r in results}) == TASKS
    assert agent_log.count("backend unavailable") >= 1
    assert agent_log.count("backend unavailable") <= 3, "an outage is logged once, not per retry"
