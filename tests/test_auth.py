"""Users, passwords, tokens, API keys and roles: the Authenticator on a real data plane, and the
API that uses it served on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from backends import DATA_KINDS, backend_url

import htcgrid
from htcgrid.api.middleware import TokenBuckets
from htcgrid.api.server import APIServer, bind
from htcgrid.auth.passwords import LoginThrottle
from htcgrid.auth.principals import Authenticator
from htcgrid.auth.tokens import Claims, TokenExpired, sign
from htcgrid.dataplane import DataPlane, open_data_plane
from htcgrid.errors import (
    AuthError,
    Conflict,
    Forbidden,
    NotFound,
    TooManyAttempts,
    ValidationError,
)
from htcgrid.settings import SecurityConfig, Settings

PASSWORD = "correct horse battery"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=DATA_KINDS)
def data(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DataPlane]:
    """Users and keys live on the data plane: every backend of it must carry them."""
    with backend_url(request.param, tmp_path, "data") as url:
        plane = open_data_plane(url)
        yield plane
        plane.close()


def test_users_passwords_and_roles(data: DataPlane) -> None:
    auth = Authenticator(data)
    alice = auth.add_user("Alice", PASSWORD)
    assert (alice.name, alice.role) == ("alice", "user")
    assert (
        alice.password_hash.startswith("$argon2id$")
        and PASSWORD not in data.get("auth/users/alice.json").decode()
    )
    auth.add_user("root", PASSWORD, "admin")
    assert [(u.name, u.role) for u in auth.users()] == [("alice", "user"), ("root", "admin")]
    with pytest.raises(Conflict):
        auth.add_user("alice", PASSWORD)
    for bad in ("../etc", "a/b", "", "x" * 65, ".hidden"):
        with pytest.raises(ValidationError):
            auth.add_user(bad, PASSWORD)
    with pytest.raises(ValidationError, match="8 to 1024"):
        auth.add_user("bob", "short")
    with pytest.raises(ValidationError, match="role"):
        auth.add_user("bob", PASSWORD, "root")
    auth.remove_user("alice")
    assert [u.name for u in auth.users()] == ["root"]
    with pytest.raises(NotFound):
        auth.remove_user("alice")


def test_tokens_expire_refresh_and_die_with_their_user(data: DataPlane) -> None:
    clock = Clock()
    auth = Authenticator(data, SecurityConfig(access_token_seconds=60), clock=clock)
    auth.add_user("alice", PASSWORD)
    pair = auth.login("alice", PASSWORD)
    assert auth.authenticate(pair.access_token).name == "alice"
    with pytest.raises(AuthError, match="not an access token"):
        auth.authenticate(pair.refresh_token)
    clock.now += 61
    with pytest.raises(TokenExpired):
        auth.authenticate(pair.access_token)
    fresh = auth.refresh(pair.refresh_token)
    assert auth.authenticate(fresh.access_token).role == "user"
    auth.set_password("alice", "another password")  # every earlier token dies at once
    with pytest.raises(AuthError, match="revoked"):
        auth.authenticate(fresh.access_token)
    with pytest.raises(AuthError, match="revoked"):
        auth.refresh(pair.refresh_token)
    again = auth.login("alice", "another password")
    auth.remove_user("alice")
    auth.add_user("alice", "another password")  # same name, a different user
    with pytest.raises(AuthError, match="revoked"):
        auth.authenticate(again.access_token)


def test_forged_and_tampered_tokens_are_refused(data: DataPlane) -> None:
    auth = Authenticator(data)
    user = auth.add_user("alice", PASSWORD)
    token = auth.login("alice", PASSWORD).access_token
    body, signature = token.split(".")
    as_admin = Claims(user.name, user.uid, user.generation, "admin", "access", 0, 2e9)
    attempts = [
        sign(as_admin, b"not the grid's secret"),
        f"{sign(as_admin, b'x').split('.')[0]}.{signature}",
        f"{body}.{signature[:-2]}AA",
        "not-a-token",
        "a.b",
        "",
    ]
    for forged in attempts:
        with pytest.raises(AuthError):
            auth.authenticate(forged or None)


def test_api_keys_work_until_revoked(data: DataPlane) -> None:
    auth = Authenticator(data)
    auth.add_user("robot", PASSWORD)
    record, secret = auth.create_key("robot", "nightly runs")
    key_secret = secret.removeprefix(f"htcgrid_{record.key_id}_")
    assert len(key_secret) >= 40
    assert key_secret not in data.get(f"auth/keys/{record.key_id}.json").decode()
    assert auth.authenticate(api_key=secret).name == "robot"
    assert auth.authenticate(bearer=secret).via == "api_key"  # a key also works as a bearer
    with pytest.raises(AuthError):
        auth.authenticate(api_key=secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    auth.revoke_key(record.key_id)
    with pytest.raises(AuthError):
        auth.authenticate(api_key=secret)
    _, second = auth.create_key("robot")
    auth.remove_user("robot")  # takes its keys along
    assert auth.api_keys() == []
    with pytest.raises(AuthError):
        auth.authenticate(api_key=second)


def test_wrong_passwords_slow_down_the_next_tries() -> None:
    clock = Clock()
    throttle = LoginThrottle(free_attempts=2, max_delay_seconds=8, clock=clock)
    for _ in range(2):
        throttle.check("alice|1.2.3.4")
        throttle.failed("alice|1.2.3.4")
    throttle.check("alice|1.2.3.4")  # the free attempts are used up, but no wait yet
    throttle.failed("alice|1.2.3.4")
    delays = []
    for _ in range(5):
        with pytest.raises(TooManyAttempts) as refused:
            throttle.check("alice|1.2.3.4")
        delays.append(refused.value.retry_after_seconds)
        clock.now += refused.value.retry_after_seconds
        throttle.check("alice|1.2.3.4")
        throttle.failed("alice|1.2.3.4")
    assert delays == [1, 2, 4, 8, 8]
    throttle.check("bob|1.2.3.4")  # other users are not held up
    clock.now += 8
    throttle.succeeded("alice|1.2.3.4")
    throttle.check("alice|1.2.3.4")


def test_token_buckets() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2, burst=3, max_keys=2, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("a") == 0
    assert buckets.take("b") == 0 and buckets.take("c") == 0  # "a" is forgotten
    assert buckets.take("a") == 0


def test_the_signing_secret_is_created_once_and_shared(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'blobs'}"
    first, second = Authenticator(open_data_plane(url)), Authenticator(open_data_plane(url))
    first.start()
    first.add_user("alice", PASSWORD)
    token = first.login("alice", PASSWORD).access_token
    assert second.authenticate(token).name == "alice"  # another server of the same grid
    secret_file = tmp_path / "blobs" / "auth" / "secret"
    assert secret_file.stat().st_mode & 0o077 == 0


# ---- through the API -------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[APIServer]:
    server = APIServer(
        f"sqlite://{tmp_path / 'grid.db'}",
        f"file://{tmp_path / 'blobs'}",
        Settings(max_tasks_per_submit=5, max_payload_bytes=1000),
        bind("127.0.0.1", 0),
        SecurityConfig(max_body_bytes=20_000),
    )
    assert server.auth is not None
    server.auth.add_user("admin", PASSWORD, "admin")
    server.auth.add_user("alice", PASSWORD)
    server.auth.add_user("bob", PASSWORD)
    server.start()
    yield server
    server.stop()


def test_each_user_sees_only_their_own_sessions(api: APIServer) -> None:
    with (
        htcgrid.connect(api.url, username="alice", password=PASSWORD) as alice,
        htcgrid.connect(api.url, username="bob", password=PASSWORD) as bob,
        htcgrid.connect(api.url, username="admin", password=PASSWORD) as admin,
    ):
        mine = alice.submit([1, 2])
        theirs = bob.submit([3])
        assert [s["session_id"] for s in alice.sessions()] == [mine.id]
        assert {s["session_id"] for s in admin.sessions()} == {mine.id, theirs.id}
        for call in (
            lambda: bob.session(mine.id),
            lambda: bob.task(f"{mine.id}_0"),
            lambda: bob._t.cancel(mine.id),
            lambda: bob._t.results(mine.id, 0, 10, 0),
            lambda: bob._t.delete(mine.id),
            lambda: bob.submit([1, 2], session_id=mine.id),
        ):
            with pytest.raises((NotFound, Conflict)):
                call()
        assert admin.session(mine.id).status()["owner"] == "alice"
        assert admin.session(mine.id).cancel()["total_cancelled_tasks"] == 2
        with pytest.raises(Forbidden):
            alice._t.call("GET", "/v1/users")  # type: ignore[attr-defined]


def test_login_refresh_and_revocation_over_http(api: APIServer) -> None:
    http = httpx.Client(base_url=api.url)
    assert http.get("/healthz").status_code == 200
    refused = http.get("/v1/sessions")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["error"]["code"] == "unauthorized"
    pair = http.post("/v1/auth/token", json={"username": "alice", "password": PASSWORD}).json()
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 3600
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    assert http.get("/v1/auth/whoami", headers=bearer).json() == {
        "user": "alice",
        "role": "user",
        "via": "token",
    }
    again = http.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert again.status_code == 200
    admin = {"x-api-key": api.auth.create_key("admin")[1]}  # type: ignore[union-attr]
    key = http.post("/v1/keys", json={"user": "alice", "label": "ci"}, headers=admin).json()
    assert http.get("/v1/sessions", headers={"x-api-key": key["api_key"]}).status_code == 200
    assert http.delete(f"/v1/keys/{key['key_id']}", headers=admin).status_code == 204
    assert http.get("/v1/sessions", headers={"x-api-key": key["api_key"]}).status_code == 401
    assert http.delete("/v1/users/alice", headers=admin).status_code == 204
    assert http.get("/v1/sessions", headers=bearer).status_code == 401  # at once
    http.close()


def test_limits_answer_clearly(api: APIServer) -> None:
    key = api.auth.create_key("alice")[1]  # type: ignore[union-attr]
    http = httpx.Client(base_url=api.url, headers={"x-api-key": key})
    cases = [
        ({"tasks": list(range(6))}, 413, "at most 5 tasks per submit"),
        ({"tasks": ["x" * 1500]}, 413, "the limit is 1000"),
        ({"tasks": ["x" * 900] * 30}, 413, "request body over the limit of 20000 bytes"),
    ]
    for body, status, message in cases:
        answer = http.post("/v1/sessions", json=body)
        assert answer.status_code == status and message in answer.json()["error"]["message"]
    chunks = (b"x" * 5000 for _ in range(5))  # streamed, no Content-Length
    streamed = http.post("/v1/sessions", content=chunks)
    assert streamed.status_code == 413
    http.close()


def test_rate_limit(tmp_path: Path) -> None:
    server = APIServer(
        "memory://",
        "memory://",
        Settings(),
        bind("127.0.0.1", 0),
        SecurityConfig(rate_limit_per_second=1, rate_limit_burst=3),
    )
    server.start()
    try:
        with httpx.Client(base_url=server.url) as http:
            codes = [http.get("/v1/sessions").status_code for _ in range(5)]
            assert codes == [401, 401, 401, 429, 429]
            limited = http.get("/v1/sessions")
            assert limited.headers["retry-after"] == "1"
            assert limited.json()["error"]["code"] == "rate_limited"
            assert http.get("/healthz").status_code == 200  # probes are never limited
    finally:
        server.stop()


def test_repeated_wrong_passwords_over_http(api: APIServer) -> None:
    http = httpx.Client(base_url=api.url)
    wrong = {"username": "bob", "password": "not bob's password"}
    codes = [http.post("/v1/auth/token", json=wrong).status_code for _ in range(5)]
    assert codes == [401, 401, 401, 401, 429]
    held = http.post("/v1/auth/token", json={"username": "bob", "password": PASSWORD})
    assert held.status_code == 429 and int(held.headers["retry-after"]) >= 1
    assert held.json()["error"]["code"] == "too_many_attempts"
    other = http.post("/v1/auth/token", json={"username": "alice", "password": PASSWORD})
    assert other.status_code == 200
    http.close()
