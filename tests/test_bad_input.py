"""Bad input against a running `htcgrid up`: every case gets a clear 4xx (or the idempotent
answer), and afterwards the task store and the data plane are exactly as they were."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from grid_process import GridProcess, htcgrid_up

from htcgrid.auth.tokens import Claims, sign
from htcgrid.store import open_store

pytestmark = pytest.mark.slow
PASSWORD = "bad input, good password"
LIMITS = {
    "HTCGRID_MAX_TASKS_PER_SUBMIT": "100",
    "HTCGRID_MAX_PAYLOAD_BYTES": "10000",
    "HTCGRID_MAX_BODY_BYTES": "200000",
}


@dataclass
class World:
    grid: GridProcess
    http: httpx.Client
    alice: dict[str, str]
    bob: dict[str, str]
    admin: dict[str, str]
    finished: str  # alice's, complete
    bobs: str  # bob's
    bearer: dict[str, str] = field(default_factory=dict)  # special tokens by name


def login(http: httpx.Client, name: str) -> dict[str, str]:
    answer = http.post("/v1/auth/token", json={"username": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def submit(http: httpx.Client, headers: dict[str, str], body: dict[str, Any]) -> str:
    answer = http.post("/v1/sessions", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    sid: str = answer.json()["session_id"]
    done = http.get(f"/v1/sessions/{sid}", params={"wait": 30}, headers=headers).json()
    assert done["complete"], done
    return sid


def mint(grid: GridProcess, name: str, **changes: Any) -> str:
    """A token signed with the grid's own secret (read from its data plane)."""
    blobs = grid.data_dir / "blobs" / "auth"
    secret = changes.pop("secret", None) or bytes.fromhex((blobs / "secret").read_text())
    user = json.loads((blobs / "users" / f"{name}.json").read_text())
    claims = {"sub": name, "uid": user["uid"], "gen": user["generation"], "role": "user"}
    claims |= {"typ": "access", "iat": time.time(), "exp": time.time() + 60, **changes}
    return sign(Claims(**claims), secret)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with htcgrid_up(tmp_path_factory.mktemp("grid"), env=LIMITS, auth=True) as grid:
        http = httpx.Client(base_url=grid.url, timeout=60)
        admin = {"x-api-key": grid.credentials["api_key"]}
        for name in ("alice", "bob", "eve"):
            body = {"name": name, "password": PASSWORD}
            assert http.post("/v1/users", json=body, headers=admin).status_code == 201
        alice, bob, eve = login(http, "alice"), login(http, "bob"), login(http, "eve")
        task = {"worker_arguments": ["1", "1", "1"]}
        finished = submit(http, alice, {"tasks": [task, task], "session_id": "alice-finished"})
        bobs = submit(http, bob, {"tasks": [task]})
        key = http.post("/v1/keys", json={"user": "alice"}, headers=admin).json()
        assert http.delete(f"/v1/keys/{key['key_id']}", headers=admin).status_code == 204
        assert http.delete("/v1/users/eve", headers=admin).status_code == 204
        world = World(grid, http, alice, bob, admin, finished, bobs)
        world.bearer = {
            "revoked key": key["api_key"],
            "removed user": eve["Authorization"].split()[1],
            "expired": mint(grid, "alice", exp=time.time() - 1),
            "forged": mint(grid, "alice", secret=b"someone else's secret"),
            "forged admin": mint(grid, "alice", role="admin", secret=b"guess"),
            "refresh as access": mint(grid, "alice", typ="refresh"),
            "old generation": mint(grid, "alice", gen=0),
        }
        yield world
        http.close()


def snapshot(grid: GridProcess) -> dict[str, Any]:
    """Every session, task and blob of the grid, read straight from its backends."""
    store = open_store(f"sqlite://{grid.data_dir / 'grid.db'}")
    try:
        sessions = store.list_sessions(None, 1000)
        tasks = {
            info.id: [store.get_task(f"{info.id}_{i}") for i in range(info.spec.task_count)]
            for info in sessions
        }
        counts = {info.id: store.count_states(info.id) for info in sessions}
    finally:
        store.close()
    blobs = grid.data_dir / "blobs"
    files = {
        str(p.relative_to(blobs)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(blobs.rglob("*"))
        if p.is_file()
    }
    return {"sessions": sessions, "tasks": tasks, "counts": counts, "blobs": files}


T = {"worker_arguments": ["1", "1", "1"]}
UNKNOWN = str(uuid.uuid4())
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    status: int
    says: str = ""  # a piece of the error message (or of the answer)
    json: Any = None
    content: bytes | None = None
    params: dict[str, Any] | None = None
    who: str = "alice"  # alice, bob, admin, nobody, or a key of World.bearer
    headers: dict[str, str] | None = None


def submit_case(name: str, body: Any, status: int = 400, says: str = "") -> Case:
    return Case(name, "POST", "/v1/sessions", status, says, json=body)


CASES = [
    Case("malformed JSON", "POST", "/v1/sessions", 400, "JSON", content=b'{"tasks": [1,', headers=JSON),
    Case("JSON that is not an object", "POST", "/v1/sessions", 400, content=b"[1, 2]", headers=JSON),
    Case("not JSON at all", "POST", "/v1/sessions", 400, content=b"tasks=1"),
    Case("no body", "POST", "/v1/sessions", 400, "body"),
    submit_case("tasks: a string", {"tasks": "abc"}, says="tasks"),
    submit_case("tasks: an object", {"tasks": {"a": 1}}, says="tasks"),
    submit_case("tasks: missing", {"priority": 1}, says="tasks"),
    submit_case("empty task list", {"tasks": []}, says="tasks: at least one task is needed"),
    submit_case("session_id: a number", {"tasks": [T], "session_id": 5}, says="session_id"),
    submit_case("session_id: traversal", {"tasks": [T], "session_id": "../../etc"}),
    submit_case("session_id: too long", {"tasks": [T], "session_id": "a" * 65}),
    submit_case("priority: a string", {"tasks": [T], "priority": "5"}, says="priority"),
    submit_case("priority: a float", {"tasks": [T], "priority": 1.5}, says="priority"),
    submit_case("priority: out of range", {"tasks": [T], "priority": 10}, says="priority must be between 0 and 9, not 10"),
    submit_case("priority: a bool", {"tasks": [T], "priority": True}, says="priority"),
    submit_case("task_priorities: a string", {"tasks": [T], "task_priorities": "9"}),
    submit_case("task_priorities: wrong length", {"tasks": [T], "task_priorities": [1, 2]}),
    submit_case("task_priorities: out of range", {"tasks": [T], "task_priorities": [-1]}),
    submit_case("function: a number", {"tasks": [T], "function": 5}, says="function"),
    submit_case("function: traversal", {"tasks": [T], "function": "../../etc/passwd"}),
    submit_case("max_attempts: a string", {"tasks": [T], "max_attempts": "3"}),
    submit_case("max_attempts: too many", {"tasks": [T], "max_attempts": 1000}),
    submit_case("timeout_seconds: a string", {"tasks": [T], "timeout_seconds": "10"}),
    submit_case("timeout_seconds: negative", {"tasks": [T], "timeout_seconds": -1}),
    submit_case("timeout_seconds: a year", {"tasks": [T], "timeout_seconds": 3.2e7}),
    submit_case("retry_on_error: a string", {"tasks": [T], "retry_on_error": "yes"}),
    submit_case("an unknown field", {"tasks": [T], "owner": "bob"}, says="owner"),
    submit_case("too many tasks", {"tasks": [T] * 101}, 413, "at most 100 tasks per submit"),
    submit_case("task over the payload limit", {"tasks": ["x" * 10_001]}, 413, "limit is 10000"),
    submit_case("body over the limit", {"tasks": ["x" * 9000] * 25}, 413, "over the limit"),
    submit_case(
        "duplicate session id, other content",
        {"tasks": [T], "session_id": "alice-finished"},
        409,
        "different",
    ),
    submit_case(
        "duplicate session id, same content: a no-op",
        {"tasks": [T, T], "session_id": "alice-finished"},
        200,
        '"created":false',
    ),
    Case("unknown session", "GET", f"/v1/sessions/{UNKNOWN}", 404, "no session"),
    Case("unknown session: results", "GET", f"/v1/sessions/{UNKNOWN}/results", 404),
    Case("unknown session: cancel", "POST", f"/v1/sessions/{UNKNOWN}/cancel", 404),
    Case("unknown session: delete", "DELETE", f"/v1/sessions/{UNKNOWN}", 404),
    Case("unknown task index", "GET", "/v1/tasks/alice-finished_7", 404, "no task"),
    Case("not a task id", "GET", "/v1/tasks/nonsense", 404),
    Case("traversal in a session id", "GET", "/v1/sessions/..%2F..%2Fetc%2Fpasswd", 404),
    Case("traversal in a task id", "GET", "/v1/tasks/..%2Fblobs_1", 404),
    Case("traversal in a results path", "GET", "/v1/sessions/../../etc/passwd", 404),
    Case("bad query: limit", "GET", "/v1/sessions", 400, "limit", params={"limit": "many"}),
    Case("bad query: wait", "GET", "/v1/sessions/alice-finished", 400, params={"wait": -1}),
    Case("bad query: after", "GET", "/v1/sessions/alice-finished/results", 400, params={"after": -5}),
    Case(
        "cancel a finished session: idempotent",
        "POST",
        "/v1/sessions/alice-finished/cancel",
        200,
        '"total_cancelled_tasks":0',
    ),
    Case("another user's session", "GET", "/v1/sessions/{bobs}", 404, "no session"),
    Case("another user's results", "GET", "/v1/sessions/{bobs}/results", 404),
    Case("another user's cancel", "POST", "/v1/sessions/{bobs}/cancel", 404),
    Case("another user's delete", "DELETE", "/v1/sessions/{bobs}", 404),
    Case("another user's task", "GET", "/v1/tasks/{bobs}_0", 404),
    Case("another user's session id", "POST", "/v1/sessions", 409, json={"tasks": [T], "session_id": "{bobs}"}),
    Case("missing token", "GET", "/v1/sessions", 401, "authentication required", who="nobody"),
    Case("wrong scheme", "GET", "/v1/sessions", 401, who="nobody", headers={"Authorization": "Basic YTpi"}),
    Case("garbage key", "GET", "/v1/sessions", 401, "invalid API key", who="nobody", headers={"x-api-key": "htcgrid_x_y"}),
    Case("expired token", "GET", "/v1/sessions", 401, "expired", who="expired"),
    Case("forged token", "GET", "/v1/sessions", 401, "invalid token", who="forged"),
    Case("forged admin token", "GET", "/v1/users", 401, "invalid token", who="forged admin"),
    Case("refresh token as access", "GET", "/v1/sessions", 401, who="refresh as access"),
    Case("token of an older generation", "GET", "/v1/sessions", 401, "revoked", who="old generation"),
    Case("revoked API key", "GET", "/v1/sessions", 401, "invalid API key", who="revoked key"),
    Case("token of a removed user", "GET", "/v1/sessions", 401, "revoked", who="removed user"),
    Case("a user on admin routes", "GET", "/v1/users", 403, "admin role"),
    Case("a user making keys", "POST", "/v1/keys", 403, json={"user": "alice"}),
    Case("refresh with garbage", "POST", "/v1/auth/refresh", 401, json={"refresh_token": "x.y"}, who="nobody"),
    Case("login: wrong types", "POST", "/v1/auth/token", 400, json={"username": 1, "password": 2}, who="nobody"),
    Case("new user: traversal", "POST", "/v1/users", 400, "name: must be 1-64 letters", json={"name": "../admin", "password": PASSWORD}, who="admin"),
    Case("new user: bad role", "POST", "/v1/users", 400, "role", json={"name": "zed", "password": PASSWORD, "role": "root"}, who="admin"),
    Case("new user: short password", "POST", "/v1/users", 400, "password", json={"name": "zed", "password": "x"}, who="admin"),
    Case("new user: exists", "POST", "/v1/users", 409, "exists", json={"name": "bob", "password": PASSWORD}, who="admin"),
    Case("remove user: traversal", "DELETE", "/v1/users/..%2Fadmin", 404, who="admin"),
    Case("remove user: dots", "DELETE", "/v1/users/..", 404, who="admin"),
    Case("remove user: a bad name", "DELETE", "/v1/users/.admin", 400, "must be 1-64 letters", who="admin"),
    Case("remove user: unknown", "DELETE", "/v1/users/nobody", 404, who="admin"),
    Case("revoke key: traversal", "DELETE", "/v1/keys/..%2F..%2Fsecret", 404, who="admin"),
    Case("key for an unknown user", "POST", "/v1/keys", 404, json={"user": "nobody"}, who="admin"),
    Case("unknown route", "GET", "/v1/nothing", 404, who="nobody"),
    Case("wrong method", "PUT", "/v1/sessions", 405),
]  # fmt: skip


def headers_for(world: World, case: Case) -> dict[str, str]:
    found = {"alice": world.alice, "bob": world.bob, "admin": world.admin, "nobody": {}}
    chosen = found.get(case.who)
    if chosen is None:
        token = world.bearer[case.who]
        chosen = (
            {"x-api-key": token}
            if token.startswith("htcgrid_")
            else {"Authorization": f"Bearer {token}"}
        )
    return {**chosen, **(case.headers or {})}


def run(world: World, case: Case) -> httpx.Response:
    fill = {"bobs": world.bobs}
    body = json.loads(json.dumps(case.json).replace("{bobs}", world.bobs)) if case.json else None
    return world.http.request(
        case.method,
        case.path.format(**fill),
        json=body,
        content=case.content,
        params=case.params,
        headers=headers_for(world, case),
    )


def test_bad_input_changes_nothing(world: World) -> None:
    before = snapshot(world.grid)
    failures = []
    for case in CASES:
        answer = run(world, case)
        text = answer.text
        ok = answer.status_code == case.status and case.says.lower() in text.lower()
        if answer.status_code >= 400:
            error = answer.json().get("error", {})
            ok = ok and set(error) == {"code", "message"} and bool(error["message"])
        if not ok:
            failures.append(f"{case.name}: {answer.status_code} {text[:200]}")
    assert not failures, "\n".join(failures)
    assert snapshot(world.grid) == before
    assert world.http.get("/healthz").json() == {"status": "ok"}


def test_wrong_passwords_are_slowed_down_and_change_nothing(world: World) -> None:
    before = snapshot(world.grid)
    wrong = {"username": "bob", "password": "a wrong password"}
    answers = [world.http.post("/v1/auth/token", json=wrong) for _ in range(5)]
    assert [a.status_code for a in answers] == [401, 401, 401, 401, 429]
    assert {a.json()["error"]["code"] for a in answers} == {"unauthorized", "too_many_attempts"}
    assert int(answers[-1].headers["retry-after"]) >= 1
    right = {"username": "bob", "password": PASSWORD}
    assert world.http.post("/v1/auth/token", json=right).status_code == 429  # held, unchecked
    unknown = {"username": "nobody-at-all", "password": "whatever it is"}
    assert world.http.post("/v1/auth/token", json=unknown).status_code == 401
    assert snapshot(world.grid) == before
