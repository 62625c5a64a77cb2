"""A session's tasks in one state through the HTTP API (``GET /v1/sessions/{id}/tasks``) and
the Python client (``Session.tasks``), over HTTP and in process."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from htcgrid import Client
from htcgrid.api import create_app
from htcgrid.client.direct import DirectTransport
from htcgrid.client.http import HTTPTransport
from htcgrid.dataplane import open_data_plane
from htcgrid.models import ErrorInfo, Outcome, TaskState
from htcgrid.service import GridService
from htcgrid.store import open_store

NOW = 1_700_000_000.0
FAILED = (2, 7, 9)


def run(service: GridService, n: int) -> None:
    """Claim and end every task: those in FAILED fail with a ValueError, the rest finish."""
    for lease in service.store.claim("agent", n, 60, NOW):
        if lease.index in FAILED:
            error = ErrorInfo("ValueError", f"bad {lease.index}", "Traceback ...")
            outcome = Outcome(lease.task_id, lease.attempt, TaskState.FAILED, error=error)
        else:
            outcome = Outcome(lease.task_id, lease.attempt, TaskState.FINISHED, output=b"1")
        assert service.store.complete("agent", [outcome], NOW) == [True]


def test_failed_tasks_over_http_and_in_the_client() -> None:
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    transport = HTTPTransport("http://testserver", retry_seconds=0)
    with TestClient(create_app(service)) as http:
        transport.http = http
        session = Client(transport).submit(list(range(12)), max_attempts=1)
        run(service, 12)
        failed = list(session.tasks())
        assert [t.index for t in failed] == list(FAILED)
        assert all(t.state is TaskState.FAILED and t.error for t in failed)
        assert failed[1].error == {
            "type": "ValueError",
            "message": "bad 7",
            "traceback": "Traceback ...",
        }
        assert len(list(session.tasks("finished", page_size=2))) == 12 - len(FAILED)
        pages, cursor = [], None
        while True:
            params = {"state": "failed", "limit": 2, **({"cursor": cursor} if cursor else {})}
            answer = http.get(f"/v1/sessions/{session.id}/tasks", params=params)
            assert answer.status_code == 200, answer.text
            pages.append([t["index"] for t in answer.json()["tasks"]])
            cursor = answer.json()["cursor"]
            if cursor is None:
                break
        assert [i for page in pages for i in page] == list(FAILED) and len(pages[0]) == 2
        bad = http.get(f"/v1/sessions/{session.id}/tasks", params={"state": "lost"})
        assert bad.status_code in (400, 422)
        assert http.get("/v1/sessions/nope/tasks").status_code == 404


def test_failed_tasks_in_process(tmp_path: Path) -> None:
    transport = DirectTransport(f"sqlite://{tmp_path / 'grid.db'}")
    session = Client(transport).submit(list(range(12)), max_attempts=1)
    run(transport.service, 12)
    assert [t.index for t in session.tasks(page_size=1)] == list(FAILED)
    assert [t.index for t in session.tasks("pending")] == []
