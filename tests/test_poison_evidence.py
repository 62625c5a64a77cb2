"""A poison task's evidence, end to end: each attempt that killed its worker is recorded with
the task (signal, peak RSS, the tail of what the worker wrote, the agent), shown by the task
detail and by ``htcgrid task``, and summed up in the PoisonTask message."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_thread import running
from poison_handlers import BALLAST_MB

import htcgrid
from htcgrid.agent.agent import Agent
from htcgrid.agent.worker import WorkerConfig
from htcgrid.backends import open_grid
from htcgrid.cli.output import task_text
from htcgrid.settings import Settings

HERE = str(Path(__file__).parent)
SETTINGS = Settings(heartbeat_seconds=0.2, lease_seconds=5.0, poison_after=3)


@pytest.mark.filterwarnings("ignore::htcgrid.errors.NoAgentWarning")
def test_each_death_of_a_poison_task_is_recorded_with_it(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'grid.db'}"
    store, data = open_grid(url)
    worker = WorkerConfig(handler="poison_handlers.die_loudly", paths=(HERE,))
    agent = Agent(store, data, SETTINGS, worker, 1)
    try:
        with running(agent), htcgrid.connect(url) as client:
            session = client.submit([7], max_attempts=6, poison_after=2)
            (result,) = session.results(timeout=60)
            detail = client.task(result.task_id)
    finally:
        store.close()
        data.close()
    assert result.error is not None and result.error["type"] == "PoisonTask"
    assert result.attempts == 2
    deaths = detail["evidence"]
    assert [d["attempt"] for d in deaths] == [1, 2]
    for death in deaths:
        assert death["kind"] == "WorkerCrashed"
        assert death["signal"] == "SIGKILL" and death["exit_code"] is None
        assert death["agent"] == agent.agent_id and death["host"]
        assert death["peak_rss_mb"] >= BALLAST_MB  # sampled while the task ran
        assert "task 7 holds" in death["log_tail"] and "about to die" in death["log_tail"]
    message = result.error["message"]
    assert "attempt 1: WorkerCrashed, signal SIGKILL" in message
    assert "attempt 2: WorkerCrashed, signal SIGKILL" in message
    assert f"on agent {agent.agent_id}" in message
    shown = task_text(detail)
    assert "worker deaths:" in shown and "last log line: task 7 holds" in shown
