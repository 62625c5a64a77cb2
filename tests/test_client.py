"""The Python client on a backend URL (in process), with an agent running beside it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sample_handlers_path import HERE

import htcgrid
from htcgrid.agent.agent import Agent
from htcgrid.agent.worker import WorkerConfig
from htcgrid.client.session import Client
from htcgrid.errors import TaskFailed
from htcgrid.models import TaskState
from htcgrid.settings import Settings

FAST = Settings(heartbeat_seconds=0.2, lease_seconds=2.0)


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[Client]:
    url = f"sqlite://{tmp_path / 'grid.db'}"
    client = htcgrid.connect(url)
    t = client._t  # the direct transport's service: share its backends with the agent
    runner = Agent(t.service.store, t.service.data, FAST,  # type: ignore[attr-defined]
                   WorkerConfig("sample_handlers.echo", (HERE,)), 2)  # fmt: skip
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    yield client
    runner.stop()
    thread.join(timeout=30)
    client.close()


def test_submit_wait_and_results_in_order(grid: Client) -> None:
    session = grid.submit([{"i": i} for i in range(200)], priority=3)
    assert session.task_ids[:2] == [f"{session.id}_0", f"{session.id}_1"]
    status = session.wait(timeout=60)
    assert status["complete"] and status["counts"]["finished"] == 200
    results = session.results()
    assert [r.output for r in results] == [{"i": i} for i in range(200)]
    assert all(r.ok and r.attempts == 1 and r.state is TaskState.FINISHED for r in results)


def test_as_completed_yields_each_task_once(grid: Client) -> None:
    session = grid.submit(list(range(100)))
    seen = [r.index for r in session.as_completed(timeout=60)]
    assert sorted(seen) == list(range(100))


def test_map_and_failures(grid: Client) -> None:
    assert grid.map([1, "two", [3]]) == [1, "two", [3]]


def test_resubmitting_a_session_id_is_idempotent(grid: Client) -> None:
    first = grid.submit([1, 2], session_id="fixed-id")
    again = grid.submit([1, 2], session_id="fixed-id")
    assert first.id == again.id == "fixed-id"
    assert len(grid.session("fixed-id").results(timeout=60)) == 2
    with pytest.raises(htcgrid.Conflict):
        grid.submit([1, 2, 3], session_id="fixed-id")


def test_sessions_and_task_detail(grid: Client) -> None:
    session = grid.submit(["hello"])
    session.wait(timeout=60)
    assert grid.sessions()[0]["session_id"] == session.id
    detail = grid.task(f"{session.id}_0")
    assert detail["payload"] == "hello" and detail["output"] == "hello"
    assert "echo 'hello'" in detail["log"]


def test_bad_input_is_refused(grid: Client) -> None:
    for bad in ([], "not a list"):
        with pytest.raises(htcgrid.ValidationError):
            grid.submit(bad)  # type: ignore[arg-type]
    with pytest.raises(htcgrid.ValidationError, match="priority"):
        grid.submit([1], priority=10)
    with pytest.raises(htcgrid.ValidationError, match="JSON"):
        grid.submit([object()])
    with pytest.raises(htcgrid.NotFound):
        grid.session("missing")
    assert grid.sessions() == []


def test_wait_times_out(tmp_path: Path) -> None:
    with htcgrid.connect(f"sqlite://{tmp_path / 'idle.db'}") as idle:
        session = idle.submit([1])
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            session.wait(timeout=0.3)
        assert time.monotonic() - started < 5
        assert session.cancel()["cancelled_pending"] == 1
        with pytest.raises(TaskFailed):
            session.outputs()


def test_a_large_session_submits_in_one_call_and_pages_its_results(tmp_path: Path) -> None:
    n = 100_000
    with htcgrid.connect(f"sqlite://{tmp_path / 'big.db'}") as client:
        session = client.submit(list(range(n)))
        store = client._t.service.store  # type: ignore[attr-defined]
        while leases := store.claim("bulk", 5000, 60, time.time()):
            from htcgrid.models import Outcome

            outcomes = [
                Outcome(le.task_id, 1, TaskState.FINISHED, output=le.payload) for le in leases
            ]
            store.complete("bulk", outcomes, time.time())
        results = session.results(timeout=60)
    assert len(results) == n and [r.output for r in results[:3]] == [0, 1, 2]
    assert results[-1].output == n - 1
