"""The Python client in milliseconds: ``Client`` and ``Session`` over both transports, the
HTTP one through Starlette's TestClient and the in-process one over the same memory service,
so that each behaviour is checked on both paths and a difference between them shows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import htcgrid.client.upload as upload
from htcgrid.api import create_app
from htcgrid.client import Client, TaskFailed
from htcgrid.client.direct import DirectTransport
from htcgrid.client.http import HTTPTransport
from htcgrid.dataplane import keys, open_data_plane
from htcgrid.errors import (
    BackendUnavailable,
    Conflict,
    NotFound,
    PayloadTooLarge,
    RemoteError,
    TooManyAttempts,
    TooManyRequests,
    ValidationError,
)
from htcgrid.models import ErrorInfo, Outcome, TaskState
from htcgrid.service import GridService
from htcgrid.settings import Settings
from htcgrid.store import open_store

NOW = 1_000_000.0
pytestmark = pytest.mark.filterwarnings("ignore:no agent has been seen")


@pytest.fixture
def service() -> GridService:
    settings = Settings(inline_limit_bytes=64, max_tasks_per_submit=1000)
    return GridService(open_store("memory://"), open_data_plane("memory://"), settings)


@pytest.fixture(params=["http", "direct"])
def client(request: pytest.FixtureRequest, service: GridService) -> Iterator[Client]:
    if request.param == "direct":
        yield Client(DirectTransport.of(service))
        return
    transport = HTTPTransport("http://testserver", retry_seconds=0)
    with TestClient(create_app(service)) as http:
        transport.http = http
        yield Client(transport)


def run(service: GridService, outcome: Any = None, order: list[int] | None = None) -> None:
    """Claim every pending task and end it: ``outcome(index)`` -> (state, output); by default
    each finishes with ``{"i": index}``. ``order`` is the order of completion by index."""
    leases = {lease.index: lease for lease in service.store.claim("agent", 1000, 60, NOW)}
    for index in order or sorted(leases):
        lease = leases[index]
        state, output = outcome(index) if outcome else (TaskState.FINISHED, {"i": index})
        error = None if state is TaskState.FINISHED else ErrorInfo("ValueError", "bad", "tb")
        body = None if output is None else json.dumps(output).encode()
        done = Outcome(lease.task_id, lease.attempt, state, output=body, error=error)
        assert service.store.complete("agent", [done], NOW) == [True]


def test_results_come_in_submission_order_and_as_completed_in_completion_order(
    client: Client, service: GridService
) -> None:
    session = client.submit([{"x": i} for i in range(5)], priority=3)
    assert session.task_count == 5 and session.task_ids[0] == f"{session.id}_0"
    assert session.status()["counts"]["pending"] == 5
    run(service, order=[4, 2, 0, 1, 3])
    assert [r.index for r in session.as_completed(timeout=5)] == [4, 2, 0, 1, 3]
    results = session.results(timeout=5)
    assert [(r.index, r.output, r.ok) for r in results] == [(i, {"i": i}, True) for i in range(5)]
    assert session.wait(timeout=5)["complete"] is True
    assert service.session(session.id).spec.priority == 3


def test_as_completed_resumes_after_a_cursor(client: Client, service: GridService) -> None:
    session = client.submit([0, 1, 2])
    run(service, order=[2, 1, 0])
    assert [r.index for r in session.as_completed(timeout=5, cursor=2)] == [0]
    assert list(session.as_completed(timeout=5, cursor=3)) == []


def test_outputs_raise_task_failed_with_the_failed_results(
    client: Client, service: GridService
) -> None:
    session = client.submit([0, 1, 2])
    run(service, lambda i: (TaskState.FAILED, None) if i == 1 else (TaskState.FINISHED, i))
    with pytest.raises(TaskFailed) as failed:
        session.outputs(timeout=5)
    (bad,) = failed.value.failures
    assert (bad.index, bad.state, bad.ok) == (1, TaskState.FAILED, False)
    assert bad.error is not None and bad.error["message"] == "bad"
    assert "1 task(s) did not finish" in str(failed.value) and f"{session.id}_1" in str(
        failed.value
    )


def test_wait_gives_up_after_its_timeout(client: Client) -> None:
    session = client.submit([1])
    with pytest.raises(TimeoutError, match=session.id):
        session.wait(timeout=0.05)
    with pytest.raises(TimeoutError):
        list(session.as_completed(timeout=0.05))


def test_a_session_handle_asks_the_grid_for_its_size(client: Client, service: GridService) -> None:
    submitted = client.submit([1, 2, 3], session_id="known")
    handle = client.session("known")
    assert (handle.id, handle.task_count, repr(handle)) == ("known", 3, "<Session known (3 tasks)>")
    assert client.session("known", task_count=7).task_count == 7  # taken as given, not asked
    assert [s["session_id"] for s in client.sessions()] == [submitted.id]
    with pytest.raises(NotFound):
        client.session("unknown")


def test_submitting_a_session_id_again_is_a_no_op_and_other_content_a_conflict(
    client: Client, service: GridService
) -> None:
    first = client.submit([1, 2], session_id="again")
    again = client.submit([1, 2], session_id="again")
    assert (again.id, again.task_count) == (first.id, 2)
    assert len(service.store.list_sessions()) == 1
    with pytest.raises(Conflict):
        client.submit([1, 2, 3], session_id="again")


def test_cancel_then_delete(client: Client, service: GridService) -> None:
    session = client.submit([1, 2, 3])
    service.store.claim("agent", 1, 60, NOW)
    answer = session.cancel()
    assert (answer["cancelled_pending"], answer["cancelled_processing"]) == (2, 1)
    assert session.status()["counts"]["cancelled"] == 3  # the running one too, for its agent
    client.delete(session.id)
    with pytest.raises(NotFound):
        session.status()


def test_task_detail_fetches_a_payload_and_output_kept_in_the_data_plane(
    client: Client, service: GridService
) -> None:
    big = {"data": "x" * 500}  # over the grid's inline limit of 64 bytes
    session = client.submit([big, 1])
    stored = service.store.get_task(session.task_ids[0])
    assert stored is not None and stored.payload_ref is not None  # kept aside, not inline
    (lease, other) = service.store.claim("agent", 2, 60, NOW)
    key = keys.task_output(lease.session_id, lease.index, lease.attempt)
    service.data.put(key, json.dumps(big).encode())
    done = Outcome(lease.task_id, lease.attempt, TaskState.FINISHED, output_ref=key)
    rest = Outcome(other.task_id, other.attempt, TaskState.FINISHED, output=b"2")
    assert service.store.complete("agent", [done, rest], NOW) == [True, True]
    found = client.task(session.task_ids[0])
    assert (found["payload"], found["output"], found["state"]) == (big, big, "finished")
    assert "payload_url" not in found and "output_url" not in found
    assert session.outputs(timeout=5) == [big, 2]


def test_each_rule_answers_the_same_on_both_transports(client: Client) -> None:
    with pytest.raises(ValidationError, match=r"^priority must be between 0 and 9, not 10$"):
        client.submit([1], priority=10)
    with pytest.raises(ValidationError, match="timeout_seconds must be a number of seconds"):
        client.submit([1], timeout_seconds=-1)
    with pytest.raises(ValidationError, match="function must be 1-64 letters"):
        client.submit([1], function="../etc")
    with pytest.raises(ValidationError, match="task_priorities needs one entry per task"):
        client.submit([1, 2], task_priorities=[1])
    with pytest.raises(ValidationError, match="tasks must be a list"):
        client.submit("abc")
    with pytest.raises(ValidationError, match="tasks: at least one task is needed"):
        client.submit([])


def test_the_grids_defaults_apply_when_the_client_names_none(
    client: Client, service: GridService
) -> None:
    service.settings = Settings(max_attempts=2, task_timeout_seconds=90.0)
    session = client.submit([1], max_attempts=None)
    spec = service.session(session.id).spec
    assert (spec.max_attempts, spec.timeout_seconds) == (2, 90.0)
    named = client.submit([1], max_attempts=5, timeout_seconds=30, retry_on_error=True)
    spec = service.session(named.id).spec
    assert (spec.max_attempts, spec.timeout_seconds, spec.retry_on_error) == (5, 30.0, True)


@pytest.fixture
def small_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests a few hundred bytes long, so that a session of 30 small tasks is uploaded."""
    monkeypatch.setattr(upload, "SINGLE_REQUEST_BYTES", 200)
    monkeypatch.setattr(upload, "PART_BYTES", 150)
    monkeypatch.setattr(upload, "STAGE_ALONE_BYTES", 100)


def test_a_session_too_big_for_one_request_is_uploaded_and_appears_whole(
    client: Client, service: GridService, small_requests: None
) -> None:
    def tasks() -> Iterator[Any]:  # a generator: read once, one task at a time
        for i in range(30):
            yield {"i": i, "pad": "p" * (300 if i == 7 else 10)}  # task 7 travels alone

    session = client.submit(tasks(), task_priorities=iter([i % 10 for i in range(30)]))
    assert session.task_count == 30
    run(service)
    outputs = session.outputs(timeout=5)
    assert outputs == [{"i": i} for i in range(30)]
    detail = client.task(session.task_ids[7])
    assert detail["payload"] == {"i": 7, "pad": "p" * 300}
    records = {r.index: r for r in service.store.results(session.id, 0, 100)}
    assert [records[i].priority for i in range(30)] == [i % 10 for i in range(30)]
    assert service.data.delete_prefix(keys.upload_prefix(session.id)) == 0  # swept on commit


def test_an_upload_refuses_a_short_priority_list_before_sending_anything(
    client: Client, service: GridService, small_requests: None
) -> None:
    with pytest.raises(ValidationError, match="task_priorities needs one entry per task"):
        client.submit(({"i": i, "pad": "p" * 20} for i in range(30)), task_priorities=[1, 2])
    assert service.store.list_sessions() == []


def test_a_task_that_is_not_json_is_named(client: Client) -> None:
    with pytest.raises(ValidationError, match="task 1"):
        client.submit([1, {1, 2}])


# ---- the HTTP transport's answers to what a grid says ----------------------------------------


def answering(status: int, body: Any, headers: dict[str, str] | None = None) -> HTTPTransport:
    """An HTTP transport whose every request gets this answer (a stand-in for a server)."""
    transport = HTTPTransport("http://grid.test", retry_seconds=0)
    content = json.dumps(body).encode() if body is not None else b"not json"

    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers=headers)

    transport.http = httpx.Client(base_url="http://grid.test", transport=httpx.MockTransport(reply))
    return transport


def error(code: str, message: str = "said the grid") -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@pytest.mark.parametrize(
    ("status", "body", "raised"),
    [
        (400, error("invalid_request"), ValidationError),
        (404, error("not_found"), NotFound),
        (409, error("conflict"), Conflict),
        (413, error("payload_too_large"), PayloadTooLarge),
        (503, error("backend_unavailable"), BackendUnavailable),
        (404, None, NotFound),  # no error body: the status decides
    ],
)
def test_an_error_answer_is_raised_as_its_class(status: int, body: Any, raised: type) -> None:
    with pytest.raises(raised):
        answering(status, body).status("s", 0)


def test_an_unknown_error_is_a_remote_error_with_its_status_and_code() -> None:
    with pytest.raises(RemoteError) as caught:
        answering(418, error("teapot", "short and stout")).status("s", 0)
    assert (caught.value.status, caught.value.code, str(caught.value)) == (
        418,
        "teapot",
        "short and stout",
    )
    with pytest.raises(RemoteError) as bare:
        answering(502, None).status("s", 0)
    assert bare.value.status == 502 and "not json" in str(bare.value)


def test_a_429_carries_its_retry_after_and_tells_a_lockout_apart() -> None:
    with pytest.raises(TooManyRequests) as busy:
        answering(429, error("rate_limited"), {"Retry-After": "7"}).status("s", 0)
    assert busy.value.retry_after_seconds == 7 and not isinstance(busy.value, TooManyAttempts)
    with pytest.raises(TooManyAttempts):
        answering(429, error("too_many_attempts"), {"Retry-After": "60"}).status("s", 0)


def test_an_unreachable_grid_is_backend_unavailable_naming_its_url() -> None:
    transport = HTTPTransport("http://grid.test", retry_seconds=0)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    transport.http = httpx.Client(
        base_url="http://grid.test", transport=httpx.MockTransport(refuse)
    )
    with pytest.raises(BackendUnavailable, match=r"cannot reach the grid at http://grid\.test"):
        transport.status("s", 0)
