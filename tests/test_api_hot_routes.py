"""The routes every round trip uses (submit, status, results) authenticate and work in one
worker thread: a sync dependency would cost a thread hop of its own. They still refuse a
caller without credentials before looking at anything else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio.to_thread
import pytest
import starlette.routing
from fastapi.testclient import TestClient

from htcgrid.api import create_app
from htcgrid.auth.principals import Authenticator
from htcgrid.dataplane import open_data_plane
from htcgrid.errors import ValidationError
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import SecurityConfig
from htcgrid.store import open_store


@pytest.fixture
def grid() -> Iterator[tuple[TestClient, dict[str, str], list[int]]]:
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    auth = Authenticator(service.data)
    auth.add_user("alice", "a password long enough", "user")
    _, key = auth.create_key("alice")
    hops: list[int] = []
    real = anyio.to_thread.run_sync

    async def counting(*args: Any, **kwargs: Any) -> Any:
        hops.append(1)
        return await real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch, TestClient(create_app(service, auth=auth)) as http:
        patch.setattr(anyio.to_thread, "run_sync", counting)
        yield http, {"Authorization": f"Bearer {key}"}, hops


def test_a_round_trip_takes_one_thread_hop_per_request(
    grid: tuple[TestClient, dict[str, str], list[int]],
) -> None:
    http, headers, hops = grid
    answer = http.post("/v1/sessions", json={"tasks": [1]}, headers=headers)
    assert answer.status_code == 201 and len(hops) == 1
    sid = answer.json()["session_id"]
    for path in (f"/v1/sessions/{sid}", f"/v1/sessions/{sid}/results"):
        hops.clear()
        assert http.get(path, headers=headers).status_code == 200
        assert len(hops) == 1, path


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/sessions", b"not json"),
        ("GET", "/v1/sessions/s1?wait=0", None),
        ("GET", "/v1/sessions/s1/results?cursor=1&after=2", None),
    ],
)
def test_without_credentials_the_answer_is_401_whatever_else_is_wrong(
    grid: tuple[TestClient, dict[str, str], list[int]], method: str, path: str, body: Any
) -> None:
    http, _, _ = grid
    answer = http.request(method, path, content=body)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"


# ---- the plain ASGI answers (htcgrid.api.hot) ----------------------------------------------
# A query parameter in a form the plain path does not read (a leading zero, say) sends the
# request through FastAPI's route: the same request both ways must get the same answer.


@pytest.fixture
def routed() -> Iterator[list[str]]:
    """The paths that reached FastAPI's router."""
    seen: list[str] = []
    real = starlette.routing.Router.__call__

    async def counting(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(scope["path"])
        await real(self, scope, receive, send)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(starlette.routing.Router, "__call__", counting)
        yield seen


def _submit(http: TestClient, headers: dict[str, str], body: Any) -> str:
    answer = http.post("/v1/sessions", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["session_id"])


def test_the_hot_routes_never_reach_fastapis_router(
    grid: tuple[TestClient, dict[str, str], list[int]], routed: list[str]
) -> None:
    http, headers, _ = grid
    sid = _submit(http, headers, {"tasks": [1, 2]})
    for path in (f"/v1/sessions/{sid}?wait=0", f"/v1/sessions/{sid}/results?limit=5&cursor=0"):
        assert http.get(path, headers=headers).status_code == 200
    assert routed == []
    http.get(f"/v1/sessions/{sid}/tasks", headers=headers)  # not a hot route
    assert routed == [f"/v1/sessions/{sid}/tasks"]


@pytest.mark.parametrize(
    ("plain", "through_fastapi"),
    [
        ("/v1/sessions/{sid}", "/v1/sessions/{sid}?wait=00"),
        ("/v1/sessions/{sid}/results", "/v1/sessions/{sid}/results?limit=01000"),
        ("/v1/sessions/{sid}/results?cursor=1", "/v1/sessions/{sid}/results?cursor=01"),
        (
            "/v1/sessions/{sid}/results?cursor=1&after=2",
            "/v1/sessions/{sid}/results?after=02&cursor=1",
        ),
        ("/v1/sessions/{sid}/results?cursor=-1", "/v1/sessions/{sid}/results?cursor=-01"),
        ("/v1/sessions/nope/results", "/v1/sessions/nope/results?limit=01"),
        ("/v1/sessions/nope", "/v1/sessions/nope?wait=0.0000000000"),
    ],
)
def test_a_plain_answer_is_the_one_fastapis_route_gives(
    grid: tuple[TestClient, dict[str, str], list[int]],
    routed: list[str],
    plain: str,
    through_fastapi: str,
) -> None:
    http, headers, _ = grid
    sid = _submit(http, headers, {"tasks": [{"a": 1}, "two", [3]], "priority": 4})
    fast = http.get(plain.format(sid=sid), headers=headers)
    assert routed == []
    slow = http.get(through_fastapi.format(sid=sid), headers=headers)
    assert len(routed) == 1
    assert (fast.status_code, fast.json()) == (slow.status_code, slow.json())
    assert fast.headers["content-type"] == slow.headers["content-type"]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("limit=0", "query.limit: Input should be greater than or equal to 1"),
        ("limit=10001", "query.limit: Input should be less than or equal to 10000"),
        ("wait=61", "query.wait: Input should be less than or equal to 60"),
        (
            "cursor=x",
            "query.cursor: Input should be a valid integer, unable to parse string as an integer",
        ),
    ],
)
def test_a_parameter_out_of_bounds_gets_fastapis_400(
    grid: tuple[TestClient, dict[str, str], list[int]], query: str, words: str
) -> None:
    http, headers, _ = grid
    sid = _submit(http, headers, {"tasks": [1]})
    answer = http.get(f"/v1/sessions/{sid}/results?{query}", headers=headers)
    assert answer.status_code == 400
    assert answer.json()["error"] == {"code": "invalid_request", "message": words}


@pytest.mark.parametrize(
    "body",
    [
        b'{"tasks": []}',
        b'{"tasks": [1], "priority": 99}',
        b'{"tasks": [1], "colour": "red"}',
        b'{"tasks": [1], "session_id": "no spaces"}',
    ],
)
def test_a_bad_submit_is_refused_with_the_words_the_service_says_in_process(
    grid: tuple[TestClient, dict[str, str], list[int]], routed: list[str], body: bytes
) -> None:
    http, headers, _ = grid
    answer = http.post("/v1/sessions", content=body, headers=headers)
    assert answer.status_code == 400 and routed == []
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    with pytest.raises(ValidationError) as in_process:
        service.submit(SubmitRequest.from_json(json.loads(body)))
    assert answer.json()["error"] == {"code": "invalid_request", "message": str(in_process.value)}


def test_a_submit_that_is_not_json_is_a_400(
    grid: tuple[TestClient, dict[str, str], list[int]],
) -> None:
    http, headers, _ = grid
    answer = http.post("/v1/sessions", content=b"not json", headers=headers)
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "code": "invalid_request",
        "message": "body: JSON decode error",
    }


def test_a_resubmit_answers_200_and_someone_elses_id_409(
    grid: tuple[TestClient, dict[str, str], list[int]],
) -> None:
    http, headers, _ = grid
    body = {"tasks": [1], "session_id": "mine-1"}
    assert http.post("/v1/sessions", json=body, headers=headers).status_code == 201
    again = http.post("/v1/sessions", json=body, headers=headers)
    assert again.status_code == 200 and again.json()["created"] is False
    other = http.post("/v1/sessions", json={**body, "tasks": [2]}, headers=headers)
    assert other.status_code == 409 and other.json()["error"]["code"] == "conflict"


def test_hot_routes_are_timed_by_route_and_count_submitted_tasks(
    grid: tuple[TestClient, dict[str, str], list[int]],
) -> None:
    http, headers, _ = grid
    sid = _submit(http, headers, {"tasks": [1, 2, 3]})
    http.get(f"/v1/sessions/{sid}/results", headers=headers)
    scraped = http.get("/metrics", headers=headers).text
    assert "htcgrid_tasks_submitted_total 3.0" in scraped
    for route in ("/v1/sessions", "/v1/sessions/{session_id}/results"):
        assert f'route="{route}"' in scraped, route


def test_the_body_and_rate_limits_still_apply_to_hot_routes() -> None:
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    security = SecurityConfig(max_body_bytes=1000, rate_limit_per_second=1, rate_limit_burst=2)
    with TestClient(create_app(service, security=security)) as http:
        big = http.post("/v1/sessions", json={"tasks": ["x" * 2000]})
        assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
        answers = [http.get("/v1/sessions/s1/results").status_code for _ in range(3)]
        assert answers[-1] == 429


def test_a_crash_in_a_hot_route_is_a_500_that_names_it(
    grid: tuple[TestClient, dict[str, str], list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    http, headers, _ = grid

    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(GridService, "results", broken)
    answer = http.get("/v1/sessions/s1/results", headers=headers)
    assert answer.status_code == 500
    assert answer.json()["error"] == {"code": "internal", "message": "internal error: KeyError"}
