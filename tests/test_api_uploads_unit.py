"""A session sent in parts over the HTTP API (payloads, parts, commit) and the raw downloads,
through TestClient over the memory backends: the status of each route, and the submit rules
of tests/validation_cases.py on the commit, the third path a session takes into the grid."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from validation_cases import CASES, LIMITS, Case

from htcgrid.api import create_app
from htcgrid.dataplane import keys, open_data_plane
from htcgrid.errors import NotFound
from htcgrid.models import TaskState
from htcgrid.service import GridService
from htcgrid.settings import Settings
from htcgrid.store import open_store

NOW = 1_700_000_000.0


def memory_service(settings: Settings | None = None) -> GridService:
    return GridService(
        open_store("memory://"), open_data_plane("memory://"), settings, clock=lambda: NOW
    )


def error_of(answer: Any, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


@pytest.fixture
def service() -> GridService:
    return memory_service(Settings(max_tasks_per_submit=10, max_payload_bytes=1000))


@pytest.fixture
def http(service: GridService) -> Iterator[TestClient]:
    with TestClient(create_app(service)) as client:
        yield client


def part(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"tasks": list(entries)}


# ---- the commit follows the submit rules -------------------------------------------------------


def commit_cases() -> list[Any]:
    """The table's option rules (one task, no session id, no per-task priorities)."""
    out = []
    for case in CASES:
        if case.body.get("tasks") != [1] or {"session_id", "task_priorities"} & set(case.body):
            continue
        out.append(pytest.param(case, id=case.name))
    return out


@pytest.fixture(scope="module")
def limited() -> Iterator[tuple[GridService, TestClient]]:
    service = memory_service(LIMITS)
    with TestClient(create_app(service)) as client:
        yield service, client


@pytest.mark.parametrize("case", commit_cases())
def test_each_option_rule_refuses_a_commit_as_it_refuses_a_submit(
    limited: tuple[GridService, TestClient], case: Case
) -> None:
    service, http = limited
    sid = "c-" + hashlib.sha256(case.name.encode()).hexdigest()[:16]
    staged = http.put(f"/v1/sessions/{sid}/parts/0", json=part({"index": 0, "payload": 1}))
    assert staged.status_code == 200, staged.text
    options = {k: v for k, v in case.body.items() if k != "tasks"}
    answer = http.post(f"/v1/sessions/{sid}/commit", json={"task_count": 1, "parts": 1, **options})
    assert case.message in error_of(answer, case.error.status, case.error.code)  # the same words
    with pytest.raises(NotFound):
        service.session(sid)


def test_a_commit_over_the_task_limit_is_a_413_as_a_submit(
    limited: tuple[GridService, TestClient],
) -> None:
    service, http = limited
    entries = [{"index": i, "payload": i} for i in range(3)]
    assert http.put("/v1/sessions/many/parts/0", json=part(*entries)).status_code == 200
    assert http.put("/v1/sessions/many/parts/1", json=part(*entries)).status_code == 200
    answer = http.post("/v1/sessions/many/commit", json={"task_count": 4, "parts": 2})
    assert "at most 3 tasks per submit" in error_of(answer, 413, "payload_too_large")
    with pytest.raises(NotFound):
        service.session("many")


# ---- the upload, route by route ----------------------------------------------------------------


def test_a_session_uploaded_in_parts_appears_on_commit(
    http: TestClient, service: GridService
) -> None:
    big = json.dumps({"data": "x" * 500}).encode()
    staged = http.put("/v1/sessions/parts/payloads/1", content=big)
    assert staged.status_code == 200
    assert staged.json() == {
        "index": 1,
        "bytes": len(big),
        "sha256": hashlib.sha256(big).hexdigest(),
    }
    first = http.put(
        "/v1/sessions/parts/parts/0",
        json=part({"index": 0, "payload": "a"}, {"index": 1, "staged": True, "priority": 7}),
    )
    assert first.json() == {"part": 0, "tasks": 2}
    assert http.put("/v1/sessions/parts/parts/1", json=part({"index": 2})).json()["tasks"] == 1
    assert service.store.list_sessions() == []  # nothing is visible before the commit
    body = {"task_count": 3, "parts": 2, "priority": 2, "max_attempts": 4}
    committed = http.post("/v1/sessions/parts/commit", json=body)
    assert committed.status_code == 201
    assert {k: committed.json()[k] for k in ("session_id", "task_count", "created")} == {
        "session_id": "parts",
        "task_count": 3,
        "created": True,
    }
    status = http.get("/v1/sessions/parts").json()
    assert (status["priority"], status["max_attempts"], status["timeout_seconds"]) == (2, 4, 3600.0)
    assert status["counts"]["pending"] == 3
    error_of(http.get("/v1/sessions/parts/payloads/1"), 405, "method_not_allowed")
    assert http.get("/v1/tasks/parts_1/payload").content == big
    assert http.get("/v1/tasks/parts_0").json()["payload"] == "a"
    assert http.get("/v1/tasks/parts_2").json()["payload"] is None
    first_claimed = service.store.claim("agent", 1, 60, NOW)
    assert [le.index for le in first_claimed] == [1]  # its own priority 7 beats the session's 2


def test_a_commit_without_options_gets_the_servers_defaults() -> None:
    service = memory_service(Settings(max_attempts=2, task_timeout_seconds=45.0))
    with TestClient(create_app(service)) as http:
        http.put("/v1/sessions/dflt/parts/0", json=part({"index": 0, "payload": 0}))
        assert http.post("/v1/sessions/dflt/commit", json={"task_count": 1, "parts": 1}).json()[
            "created"
        ]
    spec = service.session("dflt").spec
    assert (spec.max_attempts, spec.timeout_seconds) == (2, 45.0)


@pytest.mark.parametrize(
    ("path", "content", "status", "code", "says"),
    [
        ("/v1/sessions/p/payloads/0", b'{"open": ', 400, "invalid_request", "not valid JSON"),
        ("/v1/sessions/p/payloads/0", b'"' + b"x" * 1000 + b'"', 413, "payload_too_large",
         "limit of 1000 bytes"),
        ("/v1/sessions/p/payloads/-1", b"1", 400, "invalid_request", "index"),
        ("/v1/sessions/a_b/payloads/0", b"1", 400, "invalid_request", "session_id"),
        ("/v1/sessions/p/payloads/0", b"", 400, "invalid_request", "not valid JSON"),
    ],
    ids=["not JSON", "over the payload limit", "negative index", "bad session id", "empty"],
)  # fmt: skip
def test_a_bad_payload_upload_is_refused(
    http: TestClient, service: GridService, path: str, content: bytes, status: int, code: str,
    says: str,
) -> None:  # fmt: skip
    assert says in error_of(http.put(path, content=content), status, code)
    with pytest.raises(NotFound):
        service.data.get(keys.task_input("p", 0))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (part(), "tasks"),
        ({"tasks": "x"}, "tasks"),
        (part({"index": 0, "payload": 1, "owner": "bob"}), "owner"),
        (part({"index": 0, "priority": 10, "payload": 1}), "priority"),
        (part({"index": -1, "payload": 1}), "index"),
        (part({"index": 0, "staged": "yes"}), "staged"),
        (part({"index": 10, "payload": 1}), "index"),
        (part({"index": 0, "payload": "x" * 1000}), "the limit is 1000"),
    ],
    ids=["empty", "not a list", "unknown field", "priority", "negative index", "staged",
         "index over the limit", "payload over the limit"],
)  # fmt: skip
def test_a_bad_part_is_refused(http: TestClient, body: dict[str, Any], says: str) -> None:
    answer = http.put("/v1/sessions/p/parts/0", json=body)
    assert answer.status_code in (400, 413), answer.text
    assert says in answer.json()["error"]["message"]
    nothing = http.post("/v1/sessions/p/commit", json={"task_count": 1, "parts": 1})
    assert "no upload" in error_of(nothing, 404, "not_found")


@pytest.mark.parametrize(
    ("entries", "commit", "status", "says"),
    [
        ([], {"task_count": 1, "parts": 1}, 404, "no upload of session"),
        ([{"index": 0, "payload": 1}], {"task_count": 2, "parts": 1}, 409, "missing"),
        ([{"index": 0, "payload": 1}], {"task_count": 1, "parts": 2}, 409, "part 1"),
        ([{"index": 0, "staged": True}], {"task_count": 1, "parts": 1}, 409, "not uploaded"),
        ([{"index": 0, "payload": 1}], {"task_count": 0, "parts": 1}, 400, "at least one task is needed"),
        ([{"index": 0, "payload": 1}], {"parts": 1}, 400, "task_count"),
        ([{"index": 0, "payload": 1}], {"task_count": 1, "parts": 1, "x": 1}, 400, "unknown field x"),
        ([{"index": 0, "payload": 1}], {"task_count": 1, "parts": 1, "tasks": [2]}, 400,
         "unknown field tasks: a commit's tasks are its parts"),
        ([{"index": 0, "payload": 1}], {"task_count": True, "parts": 1}, 400,
         "task_count must be an integer"),
        ([{"index": 0, "payload": 1}], {"task_count": 1, "parts": 1.5}, 400,
         "parts must be an integer"),
    ],
    ids=["nothing uploaded", "a task missing", "a part missing", "a payload not staged",
         "no tasks", "no count", "unknown field", "tasks in a commit", "a count that is a bool",
         "a fraction of a part"],
)  # fmt: skip
def test_a_commit_that_does_not_add_up_is_refused_and_creates_nothing(
    http: TestClient, service: GridService, entries: list[dict[str, Any]],
    commit: dict[str, Any], status: int, says: str,
) -> None:  # fmt: skip
    if entries:
        assert http.put("/v1/sessions/q/parts/0", json=part(*entries)).status_code == 200
    answer = http.post("/v1/sessions/q/commit", json=commit)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]["message"]
    assert service.store.list_sessions() == []


def test_a_commit_takes_whole_floats_as_integers(http: TestClient, service: GridService) -> None:
    assert (
        http.put("/v1/sessions/w/parts/0", json=part({"index": 0, "payload": 1})).status_code == 200
    )
    answer = http.post(
        "/v1/sessions/w/commit", json={"task_count": 1.0, "parts": 1.0, "priority": 2.0}
    )
    assert answer.status_code == 201, answer.text
    spec = service.session("w").spec
    assert (spec.task_count, spec.priority) == (1, 2) and type(spec.task_count) is int


def test_a_commit_of_a_session_that_exists_is_a_no_op_or_a_conflict(
    http: TestClient, service: GridService
) -> None:
    assert (
        http.post("/v1/sessions", json={"tasks": [1, 2], "session_id": "twice"}).status_code == 201
    )
    http.put(
        "/v1/sessions/twice/parts/0",
        json=part({"index": 0, "payload": 1}, {"index": 1, "payload": 2}),
    )
    again = http.post("/v1/sessions/twice/commit", json={"task_count": 2, "parts": 1})
    assert again.status_code == 200 and again.json()["created"] is False
    http.put(
        "/v1/sessions/twice/parts/0",
        json=part({"index": 0, "payload": 9}, {"index": 1, "payload": 2}),
    )
    other = http.post("/v1/sessions/twice/commit", json={"task_count": 2, "parts": 1})
    error_of(other, 409, "conflict")
    assert http.get("/v1/tasks/twice_0").json()["payload"] == 1


# ---- raw downloads -----------------------------------------------------------------------------


def test_outputs_and_payloads_download_as_their_stored_json(
    http: TestClient, service: GridService
) -> None:
    sid = http.post("/v1/sessions", json={"tasks": [{"k": [1, 2.5, None]}]}).json()["session_id"]
    payload = http.get(f"/v1/tasks/{sid}_0/payload")
    assert payload.status_code == 200 and payload.headers["content-type"] == "application/json"
    assert payload.content == b'{"k":[1,2.5,null]}'
    assert "has no output (pending)" in error_of(
        http.get(f"/v1/tasks/{sid}_0/output"), 404, "not_found"
    )
    service.cancel(sid)
    assert service.status(sid).counts[TaskState.CANCELLED] == 1
    error_of(http.get(f"/v1/tasks/{sid}_0/output"), 404, "not_found")
