"""The API's users, keys and tokens routes through TestClient, over a real Authenticator on the
memory data plane (design §6): who may call what, and the status and error shape of each
refusal. tests/test_auth.py has the Authenticator's own rules and a server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from htcgrid.api import create_app
from htcgrid.dataplane import open_data_plane
from htcgrid.service import GridService
from htcgrid.store import open_store

NOW = 1_700_000_000.0
PASSWORD = "a long enough password"


def authenticator(data: Any) -> Any:
    """A real Authenticator on ``data``, wherever the package keeps it."""
    try:
        from htcgrid.auth import Authenticator  # type: ignore[attr-defined]
    except ImportError:
        from htcgrid.auth.principals import Authenticator  # type: ignore[import-not-found]
    return Authenticator(data, clock=lambda: NOW)


def user_record(name: str, role: str) -> Any:
    """A user without a password (API keys only), so no slow hash is computed."""
    try:
        from htcgrid.auth.records import User  # type: ignore[import-not-found]
    except ImportError:
        from htcgrid.authstore import User  # type: ignore[import-not-found,no-redef]
    return User(name, role, "", f"uid-{name}", 1, NOW)


def error_of(answer: Any, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


@dataclass
class Grid:
    http: TestClient
    auth: Any
    alice: dict[str, str]
    admin: dict[str, str]


@pytest.fixture
def grid() -> Iterator[Grid]:
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    auth = authenticator(service.data)
    auth.start()
    heads = {}
    for name, role in (("alice", "user"), ("bob", "user"), ("root", "admin")):
        auth.records.put_user(user_record(name, role))
        heads[name] = {"x-api-key": auth.create_key(name)[1]}
    with TestClient(create_app(service, auth=auth)) as http:
        yield Grid(http, auth, heads["alice"], heads["root"])


def test_whoami_names_the_caller_and_how_they_came(grid: Grid) -> None:
    assert grid.http.get("/v1/auth/whoami", headers=grid.alice).json() == {
        "user": "alice",
        "role": "user",
        "via": "api_key",
    }
    assert grid.http.get("/v1/auth/whoami", headers=grid.admin).json()["role"] == "admin"
    error_of(grid.http.get("/v1/auth/whoami"), 401, "unauthorized")


ADMIN_ROUTES = [
    ("GET", "/v1/users", None),
    ("POST", "/v1/users", {"name": "zed", "password": PASSWORD}),
    ("DELETE", "/v1/users/bob", None),
    ("PUT", "/v1/users/bob/password", {"password": PASSWORD}),
    ("GET", "/v1/keys", None),
    ("POST", "/v1/keys", {"user": "alice"}),
    ("POST", "/v1/keys", {}),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_a_user_is_forbidden_the_admin_routes_and_changes_nothing(
    grid: Grid, method: str, path: str, body: Any
) -> None:
    before = (sorted(u.name for u in grid.auth.users()), len(grid.auth.api_keys()))
    answer = grid.http.request(method, path, json=body, headers=grid.alice)
    assert "admin role" in error_of(answer, 403, "forbidden")
    assert (sorted(u.name for u in grid.auth.users()), len(grid.auth.api_keys())) == before


def test_a_user_may_not_revoke_a_key(grid: Grid) -> None:
    kid = grid.auth.api_keys("bob")[0].key_id
    error_of(grid.http.delete(f"/v1/keys/{kid}", headers=grid.alice), 403, "forbidden")
    assert [k.key_id for k in grid.auth.api_keys("bob")] == [kid]


def test_an_admin_adds_lists_and_removes_users(grid: Grid) -> None:
    http, admin = grid.http, grid.admin
    added = http.post("/v1/users", json={"name": "Zed", "password": PASSWORD}, headers=admin)
    assert added.status_code == 201
    assert added.json() == {"name": "zed", "role": "user", "created_at": NOW}  # folded
    listed = http.get("/v1/users", headers=admin).json()["users"]
    assert [u["name"] for u in listed] == ["alice", "bob", "root", "zed"]
    assert all(set(u) == {"name", "role", "created_at"} for u in listed)  # never a hash
    again = http.post("/v1/users", json={"name": "zed", "password": PASSWORD}, headers=admin)
    assert "exists" in error_of(again, 409, "conflict")
    assert http.delete("/v1/users/zed", headers=admin).status_code == 204
    error_of(http.delete("/v1/users/zed", headers=admin), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"name": "../admin", "password": PASSWORD}, "name: must be 1-64 letters"),
        ({"name": "zed", "password": PASSWORD, "role": "root"}, "role"),
        ({"name": "zed", "password": "short"}, "password"),
        ({"name": "zed", "password": 12345678901}, "password"),
        ({"name": "zed"}, "password"),
        ({"name": "zed", "password": PASSWORD, "uid": "x"}, "uid"),
    ],
    ids=["traversal", "role", "short password", "number", "no password", "unknown field"],
)
def test_a_bad_new_user_is_a_400(grid: Grid, body: dict[str, Any], says: str) -> None:
    answer = grid.http.post("/v1/users", json=body, headers=grid.admin)
    assert says in error_of(answer, 400, "invalid_request")
    assert "zed" not in [u.name for u in grid.auth.users()]


@pytest.mark.parametrize(
    ("path", "status"),
    [("/v1/users/..%2Froot", 404), ("/v1/users/.root", 400), ("/v1/users/nobody", 404)],
)
def test_removing_a_user_by_a_bad_or_unknown_name_changes_nothing(
    grid: Grid, path: str, status: int
) -> None:
    answer = grid.http.delete(path, headers=grid.admin)
    assert answer.status_code == status
    assert sorted(u.name for u in grid.auth.users()) == ["alice", "bob", "root"]


def test_an_admin_makes_a_key_that_works_until_revoked(grid: Grid) -> None:
    http, admin = grid.http, grid.admin
    made = http.post("/v1/keys", json={"user": "bob", "label": "ci"}, headers=admin)
    assert made.status_code == 201
    key = made.json()
    assert (key["user"], key["label"], key["created_at"]) == ("bob", "ci", NOW)
    assert key["api_key"].startswith(f"htcgrid_{key['key_id']}_")
    bob = {"x-api-key": key["api_key"]}
    assert http.get("/v1/auth/whoami", headers=bob).json()["user"] == "bob"
    listed = http.get("/v1/keys", headers=admin).json()["keys"]
    assert key["key_id"] in [k["key_id"] for k in listed]
    assert all("api_key" not in k and "secret_sha256" not in k for k in listed)
    assert http.delete(f"/v1/keys/{key['key_id']}", headers=admin).status_code == 204
    error_of(http.get("/v1/auth/whoami", headers=bob), 401, "unauthorized")
    error_of(http.delete(f"/v1/keys/{key['key_id']}", headers=admin), 404, "not_found")


def test_a_key_for_the_caller_or_an_unknown_user(grid: Grid) -> None:
    own = grid.http.post("/v1/keys", json={}, headers=grid.admin).json()
    assert own["user"] == "root"
    nobody = grid.http.post("/v1/keys", json={"user": "nobody"}, headers=grid.admin)
    error_of(nobody, 404, "not_found")
    bad = grid.http.delete("/v1/keys/not-a-key-id", headers=grid.admin)
    assert "API key id" in error_of(bad, 400, "invalid_request")


def test_removing_a_user_stops_their_keys_at_once(grid: Grid) -> None:
    assert grid.http.get("/v1/sessions", headers=grid.alice).status_code == 200
    assert grid.http.delete("/v1/users/alice", headers=grid.admin).status_code == 204
    error_of(grid.http.get("/v1/sessions", headers=grid.alice), 401, "unauthorized")


@pytest.mark.parametrize(
    "headers",
    [{"x-api-key": "htcgrid_0123456789abcdef_wrong"}, {"x-api-key": "not-a-key"},
     {"Authorization": "Bearer a.b"}, {"Authorization": "Basic YTpi"}],
    ids=["unknown key", "not a key", "forged token", "basic"],
)  # fmt: skip
def test_a_bad_credential_is_a_401(grid: Grid, headers: dict[str, str]) -> None:
    answer = grid.http.get("/v1/sessions", headers=headers)
    error_of(answer, 401, "unauthorized")


def test_login_refresh_and_a_new_password(grid: Grid) -> None:
    http = grid.http
    grid.auth.add_user("carol", PASSWORD)
    wrong = http.post("/v1/auth/token", json={"username": "carol", "password": "not it at all"})
    error_of(wrong, 401, "unauthorized")
    error_of(
        http.post("/v1/auth/token", json={"username": 1, "password": 2}), 400, "invalid_request"
    )
    pair = http.post("/v1/auth/token", json={"username": "Carol", "password": PASSWORD}).json()
    assert (pair["token_type"], pair["user"], pair["role"]) == ("bearer", "carol", "user")
    assert pair["expires_in"] == 3600.0
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    assert http.get("/v1/auth/whoami", headers=bearer).json()["via"] == "token"
    refreshed = http.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200 and refreshed.json()["user"] == "carol"
    error_of(http.post("/v1/auth/refresh", json={"refresh_token": "x.y"}), 401, "unauthorized")
    error_of(
        http.post("/v1/auth/refresh", json={"refresh_token": pair["access_token"]}),
        401,
        "unauthorized",
    )
    changed = http.put(
        "/v1/users/carol/password", json={"password": "another long password"}, headers=bearer
    )
    assert changed.status_code == 200 and changed.json()["name"] == "carol"
    error_of(http.get("/v1/auth/whoami", headers=bearer), 401, "unauthorized")  # older tokens
