"""One grid across many processes sharing only a backend URL (issue 4): a server, three agents,
20,000 tasks, one agent SIGKILLed mid-run, and still exactly one result per task."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import backend_url
from procs import stop_all, until

import htcgrid
from htcgrid.models import TaskState

pytestmark = pytest.mark.slow
TASKS = 20_000
TIMING = ["--heartbeat-seconds", "0.5", "--lease-seconds", "2"]


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "htcgrid", *args], stdout=subprocess.PIPE, text=True
    )


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with backend_url(request.param, tmp_path) as url:
        yield url


def test_server_and_three_agents_survive_a_killed_agent(shared_url: str) -> None:
    server = spawn("server", "--url", shared_url, "--port", "0", *TIMING)
    agents = [
        spawn(
            "agent",
            "--url",
            shared_url,
            "--slots",
            "1",
            "--agent-id",
            f"agent-{i}",
            "--handler",
            "htcgrid.handlers.mock_compute",
            *TIMING,
        )
        for i in range(3)
    ]
    try:
        assert server.stdout is not None and server.stdout.readline().startswith("http://")
        with htcgrid.connect(shared_url) as grid:
            # 1 ms tasks keep every agent holding work, so the kill always strands some
            session = grid.submit([{"worker_arguments": ["1", "1", "1"]}] * TASKS)
            until(
                lambda: session.status()["done_count"] >= TASKS // 10, 120, "a tenth of the tasks"
            )
            agents[0].send_signal(signal.SIGKILL)
            agents[0].wait(timeout=10)
            results = session.results(timeout=300)
            status = session.status()
    finally:
        stop_all([*agents, server])
    assert len(results) == TASKS and len({r.task_id for r in results}) == TASKS
    assert all(r.state is TaskState.FINISHED for r in results)
    assert any(r.attempts == 2 for r in results), "the killed agent's tasks were not retried"
    assert [r.output for r in results] == [1] * TASKS
    assert status["done_count"] == TASKS and status["counts"]["finished"] == TASKS
