"""Per-task cancel end to end: ``POST /v1/sessions/{id}/cancel`` with ``{"tasks": [...]}``,
``Session.cancel(tasks=...)`` in process, ``htcgrid cancel --task``, and ``Future.cancel()``
of an ``htcgrid.Executor`` call already on the grid, which cancels that task alone (the rest
of its session runs on). Over HTTP with a real server: ``test_task_cancel_http``."""

from __future__ import annotations

import concurrent.futures as cf
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import backend_url
from click.testing import CliRunner
from fastapi.testclient import TestClient
from test_api_unit import error_of, memory_service
from test_executor import nap, start_agent, until

import htcgrid
from htcgrid.api import create_app
from htcgrid.cli import main
from htcgrid.client.session import Client
from htcgrid.errors import NotFound, ValidationError
from htcgrid.models import HeartbeatStatus, TaskState
from htcgrid.service import GridService

NOW = 1_000_000.0


@pytest.fixture
def service() -> GridService:
    return memory_service()


@pytest.fixture
def http(service: GridService) -> Iterator[TestClient]:
    with TestClient(create_app(service)) as client:
        yield client


def test_cancel_of_some_tasks_over_http(http: TestClient, service: GridService) -> None:
    sid = http.post("/v1/sessions", json={"tasks": [0, 1, 2, 3, 4]}).json()["session_id"]
    (lease,) = service.store.claim("agent", 1, 60, NOW)  # task 0 runs

    answer = http.post(f"/v1/sessions/{sid}/cancel", json={"tasks": [0, f"{sid}_2", "3", 3]})

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "session_id": sid,
        "cancelled_pending": 2,
        "cancelled_processing": 1,
        "total_cancelled_tasks": 3,
    }
    status = http.get(f"/v1/sessions/{sid}").json()
    assert status["counts"]["cancelled"] == 3 and status["counts"]["pending"] == 2
    assert status["cancelled"] is False  # the session goes on
    beat = service.store.heartbeat("agent", [(lease.task_id, lease.attempt)], 60, NOW)
    assert beat[lease.task_id] is HeartbeatStatus.CANCELLED  # its agent stops it
    again = http.post(f"/v1/sessions/{sid}/cancel", json={"tasks": [0, 2, 3]}).json()
    assert again["total_cancelled_tasks"] == 0
    left = service.store.claim("agent", 10, 60, NOW)
    assert sorted(x.index for x in left) == [1, 4]


@pytest.mark.parametrize(
    ("tasks", "words"),
    [
        ([5], "5"),
        (["other_1"], "other_1"),
        (["s_x"], "s_x"),
        ([-1], "-1"),
        ([True], "True is not a task"),
    ],
)
def test_cancel_refuses_what_is_not_a_task_of_the_session(
    http: TestClient, service: GridService, tasks: list[object], words: str
) -> None:
    sid = http.post("/v1/sessions", json={"tasks": [0, 1]}).json()["session_id"]
    message = error_of(
        http.post(f"/v1/sessions/{sid}/cancel", json={"tasks": tasks}), 400, "invalid_request"
    )
    assert words in message
    assert service.store.count_states(sid)[TaskState.PENDING] == 2  # nothing cancelled
    unknown = http.post("/v1/sessions/no-such/cancel", json={"tasks": [0]})
    error_of(unknown, 404, "not_found")


@pytest.mark.filterwarnings("ignore::htcgrid.NoAgentWarning")
def test_cancel_of_some_tasks_in_process(tmp_path: Path) -> None:
    with backend_url("sqlite", tmp_path) as url, htcgrid.connect(url) as client:
        session = client.submit([{"i": i} for i in range(4)])
        service: GridService = client._t.service  # type: ignore[attr-defined]
        service.store.claim("agent", 1, 60, NOW)
        done = session.cancel(tasks=[0, f"{session.id}_1"])
        assert (done["cancelled_pending"], done["cancelled_processing"]) == (1, 1)
        counts = session.status()["counts"]
        assert counts["cancelled"] == 2 and counts["pending"] == 2
        with pytest.raises(ValidationError, match=f"'7' is not a task of session {session.id}"):
            session.cancel(tasks=["7"])
        with pytest.raises(NotFound):
            client.session("no-such", 1).cancel(tasks=[0])
        assert session.cancel()["total_cancelled_tasks"] == 2  # the rest, and the session
        assert session.status()["cancelled"] is True


@pytest.mark.filterwarnings("ignore::htcgrid.NoAgentWarning")
def test_the_cancel_command_cancels_the_tasks_named(tmp_path: Path) -> None:
    with backend_url("sqlite", tmp_path) as url, htcgrid.connect(url) as client:
        sid = client.submit([{"i": i} for i in range(4)]).id
        run = CliRunner().invoke
        args = ["cancel", sid, "--task", "1", "--task", f"{sid}_2", "--url", url, "--json"]
        done = run(main, args, catch_exceptions=False)
        assert done.exit_code == 0, done.output
        assert json.loads(done.output)["total_cancelled_tasks"] == 2
        refused = run(main, ["cancel", sid, "--task", "4", "--url", url])
        assert refused.exit_code != 0 and f"'4' is not a task of session {sid}" in refused.output
        counts = client.session(sid, 4).status()["counts"]
        assert (counts["cancelled"], counts["pending"]) == (2, 2)


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with backend_url("sqlite", tmp_path_factory.mktemp("grid")) as url:
        client = htcgrid.connect(url)
        stop = start_agent(client)
        yield client
        stop()
        client.close()


def test_future_cancel_cancels_its_task_alone_on_the_grid(grid: Client) -> None:
    with htcgrid.Executor(client=grid, batch_seconds=1.0) as executor:
        executor.submit(nap, 0.0).result(60)  # the sender is busy now: the next calls gather
        slow, quick = executor.submit(nap, 60), executor.submit(nap, 0.05)
        until(lambda: slow.session_id is not None)  # type: ignore[attr-defined]
        assert slow.session_id == quick.session_id  # type: ignore[attr-defined]
        session = grid.session(slow.session_id, 2)  # type: ignore[attr-defined]
        until(lambda: session.status()["counts"]["processing"] == 2)
        assert slow.cancel() and slow.cancelled()
        assert quick.result(60) == 0.05  # the rest of its session runs on
        until(lambda: session.status()["complete"], seconds=20)  # its run stopped, not waited
        counts = session.status()["counts"]
        assert (counts["cancelled"], counts["finished"]) == (1, 1)
        assert session.status()["cancelled"] is False
        assert cf.wait([slow], timeout=1).done == {slow}
