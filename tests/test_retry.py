"""``retry`` end to end: failed tasks run again in place and the session's results show their
new outcome, in process, over HTTP and from the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from agent_thread import running
from grid_process import htcgrid_up

import htcgrid
from htcgrid.agent.agent import Agent
from htcgrid.agent.worker import WorkerConfig
from htcgrid.backends import open_grid
from htcgrid.errors import NotFound, TaskFailed
from htcgrid.settings import Settings

HERE = str(Path(__file__).parent)
FAST = Settings(heartbeat_seconds=0.2, lease_seconds=5.0)


def events(switch: Path, n: int = 4) -> list[dict[str, object]]:
    return [{"i": i, "switch": str(switch)} for i in range(n)]


def test_retried_tasks_succeed_in_place_in_process(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'grid.db'}"
    switch = tmp_path / "fixed"
    store, data = open_grid(url)
    worker = WorkerConfig(handler="retry_handlers.flaky", paths=(HERE,))
    with running(Agent(store, data, FAST, worker, 1)), htcgrid.connect(url) as client:
        session = client.submit(events(switch), max_attempts=1)
        first = session.results(timeout=60)
        assert [r.ok for r in first] == [True, False, True, False]
        with pytest.raises(TaskFailed):
            session.outputs(timeout=60)
        assert session.retry([0]) == []  # finished: not run again
        switch.touch()
        assert session.retry() == [f"{session.id}_1", f"{session.id}_3"]
        assert session.outputs(timeout=60) == [0, 10, 20, 30]
        status = session.status()
        assert status["done_count"] == 4 and status["counts"]["failed"] == 0
        with pytest.raises(NotFound):
            client.session("no-such-session", task_count=1).retry()
    store.close()
    data.close()


@pytest.mark.slow
def test_retry_over_http_and_from_the_cli(tmp_path: Path) -> None:
    switch = tmp_path / "fixed"
    handler = ["--path", HERE, "--handler", "retry_handlers.flaky"]
    with htcgrid_up(tmp_path / "grid", *handler) as grid, htcgrid.connect(grid.url) as client:
        session = client.submit(events(switch, 6), max_attempts=1)
        seen = list(session.as_completed(timeout=60))  # a client paging results
        assert sum(not r.ok for r in seen) == 3
        switch.touch()
        assert session.retry([f"{session.id}_1"]) == [f"{session.id}_1"]
        command = [sys.executable, "-m", "htcgrid", "retry", session.id, "--task", "3", "--task",
                   "5", "--url", grid.url, "--json"]  # fmt: skip
        answer = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
        assert json.loads(answer.stdout)["retried"] == [f"{session.id}_3", f"{session.id}_5"]
        later = list(session.as_completed(timeout=60, cursor=6))  # only the new outcomes
        assert sorted((r.index, r.output) for r in later) == [(1, 10), (3, 30), (5, 50)]
        assert session.outputs(timeout=60) == [0, 10, 20, 30, 40, 50]
