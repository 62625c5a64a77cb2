"""A poison task's evidence, end to end: each attempt that killed its worker is recorded with
the task (signal, peak RSS, the tail of what the worker wrote, the agent), shown by the task
detail and by ``htcgrid task``, and summed up in the PoisonTask message."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from agent_thread import running
from fastapi.testclient import TestClient
from poison_handlers import BALLAST_MB

import htcgrid
from htcgrid import evidence
from htcgrid.agent.agent import Agent
from htcgrid.agent.worker import WorkerConfig
from htcgrid.api import create_app
from htcgrid.backends import open_grid
from htcgrid.cli.output import task_text
from htcgrid.dataplane import open_data_plane
from htcgrid.models import after_infrastructure_failure
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import Settings
from htcgrid.store import open_store

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


@pytest.mark.filterwarnings("ignore::htcgrid.errors.NoAgentWarning")
def test_what_a_task_printed_before_it_killed_its_worker_is_in_its_evidence(
    tmp_path: Path,
) -> None:
    url = f"sqlite://{tmp_path / 'grid.db'}"
    store, data = open_grid(url)
    worker = WorkerConfig(handler="poison_handlers.print_then_exit", paths=(HERE,))
    agent = Agent(store, data, SETTINGS, worker, 1)
    try:
        with running(agent), htcgrid.connect(url) as client:
            session = client.submit([5], max_attempts=1, poison_after=1)
            (result,) = session.results(timeout=60)
            detail = client.task(result.task_id)
    finally:
        store.close()
        data.close()
    (death,) = detail["evidence"]
    assert death["kind"] == "WorkerCrashed" and death["exit_code"] == 3
    assert death["log_tail"] == "task 5 printed this\nthen wrote to fd 1\nand its last words"


def test_the_task_detail_shows_the_evidence_over_http() -> None:
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    sid = service.submit(SubmitRequest(tasks=[1], max_attempts=3, poison_after=1)).session_id
    (lease,) = service.store.claim("a1", 1, 30.0, time.time())
    death = evidence.entry(
        1, "WorkerCrashed", "killed", exit_code=-9, peak_rss_mb=12, agent="a1", host="h1", log="bye"
    )
    outcome = after_infrastructure_failure(
        lease, "WorkerCrashed", "killed", poison_after=1, evidence=evidence.append(None, death)
    )
    assert service.store.complete("a1", [outcome], time.time()) == [True]
    with TestClient(create_app(service)) as http:
        answer = http.get(f"/v1/tasks/{sid}_0")
    assert answer.status_code == 200
    body = answer.json()
    assert body["error"]["type"] == "PoisonTask"
    assert "attempt 1: WorkerCrashed, signal SIGKILL, peak RSS 12 MiB" in body["error"]["message"]
    (shown,) = body["evidence"]
    assert shown["signal"] == "SIGKILL" and shown["agent"] == "a1" and shown["log_tail"] == "bye"
