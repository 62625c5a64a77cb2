"""The HTTP API driven in process through Starlette's TestClient, over the memory backends:
status codes and the JSON error shape of every route, authentication and ownership, the body
limit, and the submit rules of tests/validation_cases.py giving the service's answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from validation_cases import CASES, LIMITS, Case, params, request_body

from htcgrid.api import create_app
from htcgrid.dataplane import keys, open_data_plane
from htcgrid.functions import FunctionRegistry
from htcgrid.models import Outcome, TaskState
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import Settings
from htcgrid.store import open_store

JSON = {"content-type": "application/json"}
NOW = 1_700_000_000.0


def security_config(**changes: Any) -> Any:
    """SecurityConfig, wherever the package keeps it."""
    try:
        from htcgrid.settings import SecurityConfig  # type: ignore[attr-defined]
    except ImportError:
        from htcgrid.limits import SecurityConfig  # type: ignore[import-not-found,no-redef]
    return SecurityConfig(**changes)


def authenticator(data: Any) -> Any:
    """A real Authenticator on ``data``, wherever the package keeps it."""
    try:
        from htcgrid.auth import Authenticator  # type: ignore[attr-defined]
    except ImportError:
        from htcgrid.auth.principals import Authenticator  # type: ignore[import-not-found]
    return Authenticator(data, security_config())


def memory_service(settings: Settings | None = None) -> GridService:
    return GridService(
        open_store("memory://"), open_data_plane("memory://"), settings, clock=lambda: NOW
    )


def error_of(answer: Any, status: int, code: str) -> str:
    """Check ``answer`` is the API's error shape with ``status`` and ``code``; its message."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    return message


def finish_all(service: GridService, n: int, big_output: bool = False) -> None:
    for lease in service.store.claim("agent", n, 60, NOW):
        output = json.dumps({"i": lease.index}).encode()
        if big_output:
            key = keys.task_output(lease.session_id, lease.index, lease.attempt)
            service.data.put(key, output)
            outcome = Outcome(lease.task_id, lease.attempt, TaskState.FINISHED, output_ref=key)
        else:
            outcome = Outcome(lease.task_id, lease.attempt, TaskState.FINISHED, output=output)
        assert service.store.complete("agent", [outcome], NOW) == [True]


@pytest.fixture
def service() -> GridService:
    return memory_service(Settings(inline_limit_bytes=50))


@pytest.fixture
def http(service: GridService) -> Iterator[TestClient]:
    with TestClient(create_app(service)) as client:
        yield client


# ---- the submit rules, as the service gives them ---------------------------------------------


@pytest.fixture(scope="module")
def limited() -> Iterator[tuple[GridService, TestClient]]:
    service = memory_service(LIMITS)
    with TestClient(create_app(service)) as client:
        yield service, client


def post_case(http: TestClient, case: Case) -> Any:
    body = json.dumps(request_body(case)).encode()  # lone surrogates go as \ud800 escapes
    return http.post("/v1/sessions", content=body, headers=JSON)


@pytest.mark.parametrize("case", params(CASES))
def test_each_submit_rule_is_refused_with_the_services_status_and_code(
    limited: tuple[GridService, TestClient], case: Case
) -> None:
    service, http = limited
    message = error_of(post_case(http, case), case.error.status, case.error.code)
    assert case.names in message
    assert service.store.list_sessions() == []


@pytest.mark.parametrize("case", params(CASES))
def test_each_submit_rule_says_what_the_service_says(
    limited: tuple[GridService, TestClient], case: Case
) -> None:
    _, http = limited
    message = post_case(http, case).json()["error"]["message"]
    assert case.message in message


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"tasks": [1,', "JSON"),
        (b"[1, 2]", "body"),
        (b"", "body"),
        (b'{"tasks": [1], "owner": "bob"}', "owner"),
        (b'{"priority": 1}', "tasks"),
    ],
    ids=["malformed", "not an object", "empty", "unknown field", "no tasks"],
)
def test_a_body_that_is_not_a_submission_is_a_400(
    http: TestClient, service: GridService, content: bytes, says: str
) -> None:
    message = error_of(
        http.post("/v1/sessions", content=content, headers=JSON), 400, "invalid_request"
    )
    assert says.lower() in message.lower()
    assert service.store.list_sessions() == []


def test_json_nested_too_deeply_is_an_invalid_request(http: TestClient) -> None:
    body = b'{"tasks": [' + b"[" * 5000 + b"]" * 5000 + b"]}"
    error_of(http.post("/v1/sessions", content=body, headers=JSON), 400, "invalid_request")


# ---- sessions --------------------------------------------------------------------------------


def test_a_whole_float_is_an_integer_as_json_and_the_schema_say(
    http: TestClient, service: GridService
) -> None:
    body = {"tasks": [1, 2], "priority": 3.0, "max_attempts": 2.0, "task_priorities": [1.0, 9.0]}
    answer = http.post("/v1/sessions", json=body)
    assert answer.status_code == 201, answer.text
    spec = service.session(answer.json()["session_id"]).spec
    assert (spec.priority, spec.max_attempts) == (3, 2) and type(spec.priority) is int
    second = service.store.get_task(f"{spec.id}_1")
    assert second is not None and second.priority == 9
    fraction = http.post("/v1/sessions", json={**body, "priority": 3.5})
    assert error_of(fraction, 400, "invalid_request") == "priority must be an integer"


def test_submit_creates_then_is_a_no_op_then_conflicts(http: TestClient) -> None:
    body = {"tasks": [1, 2], "session_id": "s1", "priority": 3}
    first = http.post("/v1/sessions", json=body)
    assert first.status_code == 201
    assert {k: v for k, v in first.json().items() if k != "warning"} == {
        "session_id": "s1",
        "task_count": 2,
        "created": True,
    }
    again = http.post("/v1/sessions", json=body)
    assert again.status_code == 200 and again.json()["created"] is False
    other = http.post("/v1/sessions", json={**body, "priority": 4})
    assert "s1" in error_of(other, 409, "conflict")


def test_a_submit_without_options_gets_the_servers_defaults() -> None:
    service = memory_service(Settings(max_attempts=2, task_timeout_seconds=90.0))
    with TestClient(create_app(service)) as http:
        sid = http.post("/v1/sessions", json={"tasks": [1]}).json()["session_id"]
        status = http.get(f"/v1/sessions/{sid}").json()
    assert (status["max_attempts"], status["timeout_seconds"]) == (2, 90.0)


def test_the_python_client_leaves_the_defaults_to_the_server() -> None:
    from htcgrid import Client

    try:
        from htcgrid.client.http import HTTPTransport  # type: ignore[import-not-found]
    except ImportError:
        from htcgrid.client import HTTPTransport  # type: ignore[attr-defined,no-redef]

    service = memory_service(Settings(max_attempts=2, task_timeout_seconds=90.0))
    transport = HTTPTransport("http://testserver", retry_seconds=0)
    with TestClient(create_app(service)) as http:
        transport.http = http
        session = Client(transport).submit([1])
        spec = service.session(session.id).spec
    assert (spec.max_attempts, spec.timeout_seconds) == (2, 90.0)


def test_a_session_reads_as_the_service_reports_it(http: TestClient, service: GridService) -> None:
    sid = http.post("/v1/sessions", json={"tasks": [1, 2, 3], "priority": 5}).json()["session_id"]
    finish_all(service, 1)
    answer = http.get(f"/v1/sessions/{sid}")
    assert answer.status_code == 200
    assert answer.json() == service.status(sid).as_dict()
    assert answer.json()["counts"] == {
        "pending": 2,
        "processing": 0,
        "finished": 1,
        "failed": 0,
        "cancelled": 0,
    }
    finish_all(service, 2)
    done = http.get(f"/v1/sessions/{sid}", params={"wait": 60})  # complete: answers at once
    assert (done.json()["done_count"], done.json()["complete"]) == (3, True)


def test_sessions_are_listed_and_their_query_is_checked(
    http: TestClient, service: GridService
) -> None:
    made = [http.post("/v1/sessions", json={"tasks": [i]}).json()["session_id"] for i in range(3)]
    listed = http.get("/v1/sessions").json()["sessions"]
    assert {s["session_id"] for s in listed} == set(made)
    assert len(http.get("/v1/sessions", params={"limit": 2}).json()["sessions"]) == 2
    assert len(http.get("/v1/sessions", params={"offset": 2}).json()["sessions"]) == 1
    for query, names in [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"),
                         ({"offset": -1}, "offset"), ({"limit": "many"}, "limit")]:  # fmt: skip
        assert names in error_of(http.get("/v1/sessions", params=query), 400, "invalid_request")


def test_results_page_with_a_cursor_and_point_at_big_outputs(
    http: TestClient, service: GridService
) -> None:
    sid = http.post("/v1/sessions", json={"tasks": [0, 1, 2]}).json()["session_id"]
    finish_all(service, 3, big_output=True)
    first = http.get(f"/v1/sessions/{sid}/results", params={"limit": 2})
    assert first.status_code == 200 and first.headers["content-type"] == "application/json"
    page = first.json()
    assert (page["cursor"], page["complete"]) == (2, False)
    assert page["results"][0] == {
        "task_id": f"{sid}_0",
        "index": 0,
        "state": "finished",
        "attempts": 1,
        "output": {"i": 0},
        "error": None,
    }
    rest = http.get(f"/v1/sessions/{sid}/results", params={"cursor": page["cursor"]}).json()
    assert [r["index"] for r in rest["results"]] == [2] and rest["complete"] is True
    end = http.get(f"/v1/sessions/{sid}/results", params={"cursor": 3}).json()
    assert (rest["cursor"], end) == (3, {"results": [], "cursor": 3, "next": 3, "complete": True})


def test_results_keep_the_old_names_after_and_next(http: TestClient, service: GridService) -> None:
    """Clients written before the cursor had one name send ``after`` and read ``next``."""
    sid = http.post("/v1/sessions", json={"tasks": [0, 1, 2]}).json()["session_id"]
    finish_all(service, 3)
    url = f"/v1/sessions/{sid}/results"
    page = http.get(url, params={"after": 1, "limit": 1}).json()
    assert ([r["index"] for r in page["results"]], page["next"], page["cursor"]) == ([1], 2, 2)
    both = http.get(url, params={"after": 2, "cursor": 2}).json()
    assert [r["index"] for r in both["results"]] == [2]
    assert "disagree" in error_of(
        http.get(url, params={"after": 1, "cursor": 2}), 400, "invalid_request"
    )
    for query in ({"cursor": -1}, {"after": -1}):
        assert "cursor" in error_of(http.get(url, params=query), 400, "invalid_request")


def test_results_carry_an_output_url_when_the_output_stays_behind() -> None:
    from htcgrid.service import PAGE_BYTES

    service = memory_service()
    sid = service.submit(SubmitRequest([0])).session_id
    lease = service.store.claim("agent", 1, 60, NOW)[0]
    key = keys.task_output(sid, 0, 1)
    huge = json.dumps("x" * PAGE_BYTES).encode()
    service.data.put(key, huge)
    outcome = Outcome(lease.task_id, 1, TaskState.FINISHED, output_ref=key)
    assert service.store.complete("agent", [outcome], NOW) == [True]
    with TestClient(create_app(service)) as http:
        result = http.get(f"/v1/sessions/{sid}/results").json()["results"][0]
        assert result["output"] is None
        assert result["output_url"] == f"/v1/tasks/{sid}_0/output"
        fetched = http.get(result["output_url"])
    assert fetched.status_code == 200 and fetched.content == huge


@pytest.mark.parametrize(
    ("query", "names"),
    [({"cursor": -1}, "cursor"), ({"limit": 0}, "limit"), ({"limit": 10_001}, "limit"),
     ({"wait": -1}, "wait"), ({"wait": 61}, "wait")],
)  # fmt: skip
def test_a_bad_results_query_is_a_400(http: TestClient, query: dict[str, Any], names: str) -> None:
    sid = http.post("/v1/sessions", json={"tasks": [1]}).json()["session_id"]
    answer = http.get(f"/v1/sessions/{sid}/results", params=query)
    assert names in error_of(answer, 400, "invalid_request")


def test_cancel_answers_htc_grids_counts_and_is_idempotent(
    http: TestClient, service: GridService
) -> None:
    sid = http.post("/v1/sessions", json={"tasks": [1, 2, 3]}).json()["session_id"]
    service.store.claim("agent", 1, 60, NOW)
    answer = http.post(f"/v1/sessions/{sid}/cancel")
    assert answer.status_code == 200
    assert answer.json() == {
        "session_id": sid,
        "cancelled_pending": 2,
        "cancelled_processing": 1,
        "total_cancelled_tasks": 3,
    }
    again = http.post(f"/v1/sessions/{sid}/cancel").json()
    assert again["total_cancelled_tasks"] == 0
    assert http.get(f"/v1/sessions/{sid}").json()["cancelled"] is True


def test_delete_answers_204_and_the_session_is_gone(http: TestClient, service: GridService) -> None:
    sid = http.post("/v1/sessions", json={"tasks": ["x" * 100]}).json()["session_id"]
    answer = http.delete(f"/v1/sessions/{sid}")
    assert answer.status_code == 204 and answer.content == b""
    error_of(http.get(f"/v1/sessions/{sid}"), 404, "not_found")
    error_of(http.delete(f"/v1/sessions/{sid}"), 404, "not_found")
    assert service.store.list_sessions() == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/sessions/{u}"), ("GET", "/v1/sessions/{u}/results"),
     ("POST", "/v1/sessions/{u}/cancel"), ("DELETE", "/v1/sessions/{u}"),
     ("GET", "/v1/tasks/{u}_0"), ("GET", "/v1/tasks/{u}_0/output"),
     ("GET", "/v1/tasks/{u}_0/payload"), ("GET", "/v1/tasks/nonsense"),
     ("GET", "/v1/sessions/a_b"), ("GET", "/v1/nothing")],
)  # fmt: skip
def test_an_unknown_thing_is_a_404_in_the_error_shape(
    limited: tuple[GridService, TestClient], method: str, path: str
) -> None:
    _, http = limited
    error_of(http.request(method, path.format(u="no-such-session")), 404, "not_found")


def test_a_wrong_method_is_a_405_in_the_error_shape(
    limited: tuple[GridService, TestClient],
) -> None:
    error_of(limited[1].put("/v1/sessions"), 405, "method_not_allowed")


# ---- tasks, functions, health, schema -------------------------------------------------------


def test_a_task_reads_in_full_and_a_big_payload_by_its_url(
    http: TestClient, service: GridService
) -> None:
    big = "y" * 100
    sid = http.post("/v1/sessions", json={"tasks": [{"a": 1}, big]}).json()["session_id"]
    small = http.get(f"/v1/tasks/{sid}_0").json()
    assert small == {
        "task_id": f"{sid}_0",
        "index": 0,
        "state": "pending",
        "attempts": 0,
        "output": None,
        "output_url": None,
        "error": None,
        "session_id": sid,
        "payload": {"a": 1},
        "payload_url": None,
        "log": "",
        "owner": None,
        "submitted_at": NOW,
        "started_at": None,
        "finished_at": None,
        "evidence": [],
        "cached": False,
    }
    large = http.get(f"/v1/tasks/{sid}_1").json()
    assert large["payload"] is None and large["payload_url"] == f"/v1/tasks/{sid}_1/payload"
    assert http.get(large["payload_url"]).content == json.dumps(big).encode()
    assert "has no output" in error_of(http.get(f"/v1/tasks/{sid}_0/output"), 404, "not_found")
    error_of(http.get(f"/v1/tasks/{sid}_2"), 404, "not_found")


def test_functions_are_listed(http: TestClient, service: GridService) -> None:
    assert http.get("/v1/functions").json() == {"functions": []}
    FunctionRegistry(service.data).deploy("pricing", b"zip", "m.f")
    listed = http.get("/v1/functions").json()["functions"]
    assert [(f["name"], f["current"]) for f in listed] == [("pricing", 1)]
    assert listed[0]["versions"][0]["handler"] == "m.f"
    error_of(http.get("/v1/functions/nosuch"), 404, "not_found")


def test_health_and_the_openapi_document(http: TestClient) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    document = http.get("/openapi.json").json()
    assert document["info"]["title"] == "htcgrid"
    for path in ("/v1/sessions", "/v1/sessions/{session_id}", "/v1/sessions/{session_id}/results",
                 "/v1/sessions/{session_id}/cancel", "/v1/tasks/{task_id}", "/v1/functions",
                 "/healthz"):  # fmt: skip
        assert path in document["paths"], path
    submit = document["paths"]["/v1/sessions"]["post"]["responses"]
    assert {"200", "201", "400", "409", "413"} <= set(submit)  # 200: an identical resubmit
    assert submit["404"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorAnswer")


# ---- limits ----------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_a_413_declared_or_streamed(service: GridService) -> None:
    app = create_app(service, security=security_config(auth=False, max_body_bytes=1000))
    with TestClient(app) as http:
        declared = http.post("/v1/sessions", json={"tasks": ["x" * 1000]})
        says = error_of(declared, 413, "payload_too_large")
        assert says == "request body over the limit of 1000 bytes"
        streamed = http.post(
            "/v1/sessions", content=(b"[" + b"1," * 300 for _ in range(3)), headers=JSON
        )
        error_of(streamed, 413, "payload_too_large")
        assert http.post("/v1/sessions", json={"tasks": ["x" * 900]}).status_code == 201
    assert len(service.store.list_sessions()) == 1


def test_requests_over_the_rate_are_a_429_with_retry_after(service: GridService) -> None:
    config = security_config(auth=False, rate_limit_per_second=0.001, rate_limit_burst=2)
    with TestClient(create_app(service, security=config)) as http:
        assert [http.get("/v1/sessions").status_code for _ in range(2)] == [200, 200]
        limited = http.get("/v1/sessions")
        error_of(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
        assert http.get("/healthz").status_code == 200


# ---- authentication and ownership ------------------------------------------------------------


@pytest.fixture
def authed() -> Iterator[tuple[GridService, TestClient, dict[str, dict[str, str]]]]:
    service = memory_service()
    auth = authenticator(service.data)
    auth.start()
    keys_by_user = {}
    for name, role in (("alice", "user"), ("bob", "user"), ("root", "admin")):
        auth.records.put_user(_user(name, role))
        keys_by_user[name] = {"x-api-key": auth.create_key(name)[1]}
    with TestClient(create_app(service, auth=auth)) as client:
        yield service, client, keys_by_user


def _user(name: str, role: str) -> Any:
    """A user record without a password (API keys only), so no slow hash is computed."""
    try:
        from htcgrid.auth.records import User  # type: ignore[import-not-found]
    except ImportError:
        from htcgrid.authstore import User  # type: ignore[import-not-found,no-redef]
    return User(name, role, "", f"uid-{name}", 1, NOW)


ROUTES = [
    ("POST", "/v1/sessions"),
    ("GET", "/v1/sessions"),
    ("GET", "/v1/sessions/{sid}"),
    ("GET", "/v1/sessions/{sid}/results"),
    ("POST", "/v1/sessions/{sid}/cancel"),
    ("DELETE", "/v1/sessions/{sid}"),
    ("GET", "/v1/tasks/{sid}_0"),
    ("GET", "/v1/tasks/{sid}_0/payload"),
    ("GET", "/v1/functions"),
]


def test_every_route_but_health_needs_a_credential(authed: Any) -> None:
    service, http, _ = authed
    sid = service.submit(SubmitRequest([1]), owner="alice").session_id
    for method, path in ROUTES:
        body = {"tasks": [1]} if method == "POST" and path == "/v1/sessions" else None
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"x-api-key": "htcgrid_x_y"}):
            answer = http.request(method, path.format(sid=sid), json=body, headers=headers)
            error_of(answer, 401, "unauthorized")
            if not headers:
                assert answer.headers["www-authenticate"] == "Bearer"
    assert http.get("/healthz").status_code == 200
    assert service.status(sid).counts[TaskState.PENDING] == 1
    assert len(service.store.list_sessions()) == 1


def test_another_users_session_is_a_404_and_an_admin_sees_all(authed: Any) -> None:
    service, http, creds = authed
    sid = http.post("/v1/sessions", json={"tasks": [1]}, headers=creds["alice"]).json()
    sid = sid["session_id"]
    assert service.session(sid).spec.owner == "alice"
    for method, path in ROUTES[2:8]:
        answer = http.request(method, path.format(sid=sid), headers=creds["bob"])
        assert f"no session {sid}" in error_of(answer, 404, "not_found")
    taken = http.post("/v1/sessions", json={"tasks": [1], "session_id": sid}, headers=creds["bob"])
    error_of(taken, 409, "conflict")
    assert http.get("/v1/sessions", headers=creds["bob"]).json() == {"sessions": [], "cursor": None}
    assert [s["session_id"] for s in http.get("/v1/sessions", headers=creds["alice"]).json()[
        "sessions"
    ]] == [sid]  # fmt: skip
    assert http.get(f"/v1/sessions/{sid}", headers=creds["root"]).json()["owner"] == "alice"
    assert http.post(f"/v1/sessions/{sid}/cancel", headers=creds["alice"]).status_code == 200


def test_a_token_from_a_login_opens_the_api() -> None:
    service = memory_service()
    auth = authenticator(service.data)
    auth.add_user("carol", "a long enough password")
    with TestClient(create_app(service, auth=auth)) as http:
        wrong = http.post("/v1/auth/token", json={"username": "carol", "password": "not it!!"})
        error_of(wrong, 401, "unauthorized")
        pair = http.post(
            "/v1/auth/token", json={"username": "carol", "password": "a long enough password"}
        ).json()
        bearer = {"Authorization": f"Bearer {pair['access_token']}"}
        assert http.post("/v1/sessions", json={"tasks": [1]}, headers=bearer).status_code == 201
        assert http.get("/v1/sessions", headers=bearer).json()["sessions"][0]["owner"] == "carol"
