"""A submit that waits for its results (``POST /v1/sessions?wait=S``, ``submit(wait=S)``,
``Client.map``): a short session is one request, on both routes of the API, through the HTTP
client and in process; a wait that runs out answers with what there is, never an error."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from htcgrid.api import create_app
from htcgrid.client.direct import DirectTransport
from htcgrid.client.http import HTTPTransport
from htcgrid.client.session import Client
from htcgrid.dataplane import open_data_plane
from htcgrid.models import Outcome, TaskState
from htcgrid.service import GridService
from htcgrid.settings import SecurityConfig
from htcgrid.store import open_store


class EchoAgent:
    """Claims and finishes tasks with their payload as output, on a thread of the test (a
    stand-in for an agent process: what is under test is the waiting submit)."""

    def __init__(self, service: GridService) -> None:
        self.service = service
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        store = self.service.store
        while not self.stopping.is_set():
            leases = store.claim("echo-agent", 16, 60.0, self.service.clock())
            if not leases:
                self.stopping.wait(0.005)  # bounded by the test's own end
                continue
            done = [
                Outcome(x.task_id, x.attempt, TaskState.FINISHED, output=x.payload) for x in leases
            ]
            store.complete("echo-agent", done, self.service.clock())

    def __enter__(self) -> EchoAgent:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


@pytest.fixture
def service() -> GridService:
    return GridService(open_store("memory://"), open_data_plane("memory://"))


@pytest.fixture
def http(service: GridService) -> Iterator[TestClient]:
    with TestClient(create_app(service, security=SecurityConfig(auth=False))) as client:
        yield client


@pytest.mark.parametrize("wait", ["5", "05"])  # "05" is not the plain form: FastAPI's route
def test_a_waiting_submit_answers_with_its_results(
    service: GridService, http: TestClient, wait: str
) -> None:
    with EchoAgent(service):
        answer = http.post(f"/v1/sessions?wait={wait}", json={"tasks": [{"x": 1}]})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["created"] is True and body["task_count"] == 1
    page = body["results"]
    assert page["complete"] is True and page["cursor"] == 1
    assert [(r["index"], r["state"], r["output"]) for r in page["results"]] == [
        (0, "finished", {"x": 1})
    ]


def test_a_wait_that_runs_out_answers_with_what_there_is(http: TestClient) -> None:
    start = time.monotonic()
    answer = http.post("/v1/sessions?wait=0.2", json={"tasks": [1, 2]})
    assert answer.status_code == 201, answer.text
    page = answer.json()["results"]
    assert page == {"results": [], "cursor": 0, "next": 0, "complete": False}
    assert time.monotonic() - start >= 0.2  # it did wait, for no longer than asked (below)
    assert time.monotonic() - start < 10


def test_a_resubmit_that_waits_says_created_false(service: GridService, http: TestClient) -> None:
    body = {"tasks": [3], "session_id": "again"}
    with EchoAgent(service):
        first = http.post("/v1/sessions?wait=5", json=body)
        second = http.post("/v1/sessions?wait=5", json=body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["created"] is False
    assert second.json()["results"]["results"][0]["output"] == 3


@pytest.mark.parametrize("wait", ["61", "-1", "soon"])
def test_a_bad_wait_is_a_400(http: TestClient, wait: str) -> None:
    answer = http.post(f"/v1/sessions?wait={wait}", json={"tasks": [1]})
    assert answer.status_code == 400, answer.text
    assert "wait" in answer.json()["error"]["message"]


def _http_client(service: GridService, requests: list[str]) -> Client:
    transport = HTTPTransport("http://testserver", retry_seconds=0)
    transport.http = TestClient(create_app(service, security=SecurityConfig(auth=False)))
    send = transport.http.send

    def counting(request: Any, **kwargs: Any) -> Any:
        requests.append(f"{request.method} {request.url.path}")
        return send(request, **kwargs)

    transport.http.send = counting
    return Client(transport)


def test_over_http_a_short_session_that_waits_is_one_request(service: GridService) -> None:
    requests: list[str] = []
    grid = _http_client(service, requests)
    with EchoAgent(service):
        assert [r.output for r in grid.submit([{"i": 7}], wait=5).results()] == [{"i": 7}]
        assert requests == ["POST /v1/sessions"]
        requests.clear()
        assert [r.output for r in grid.submit([{"i": 8}]).results()] == [{"i": 8}]
        assert requests[0] == "POST /v1/sessions" and len(requests) >= 2  # then a results call
        requests.clear()
        assert grid.map(list(range(30))) == list(range(30))
        assert requests[0] == "POST /v1/sessions"


def test_in_process_the_first_page_comes_with_the_submit(
    service: GridService, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = Client(DirectTransport.of(service))
    calls: list[int] = []
    results = grid._t.results

    def counted(*args: Any) -> Any:
        calls.append(1)
        return results(*args)

    with EchoAgent(service):
        session = grid.submit(["a"], wait=5)
        monkeypatch.setattr(grid._t, "results", counted)
        assert session.outputs() == ["a"]
        assert calls == []  # the page the submit brought was the whole session
        assert grid.map(["b", "c"]) == ["b", "c"]


def test_a_session_bigger_than_the_first_page_reads_on(service: GridService) -> None:
    grid = Client(DirectTransport.of(service))
    with EchoAgent(service):
        session = grid.submit(list(range(2500)), wait=5)
        assert [r.output for r in session.results()] == list(range(2500))
