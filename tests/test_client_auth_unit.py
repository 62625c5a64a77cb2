"""The client's auth flows against the API's real token routes (TestClient, a real
Authenticator on the memory data plane), with one clock the test moves: a password login on
the first call, a refresh shortly before expiry, a refresh and a retry after the grid says
``token_expired``, and what a refused login or an outdated saved login says to do.
``choose_auth``'s order of credentials is pinned last."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from htcgrid.api import create_app
from htcgrid.auth.principals import Authenticator
from htcgrid.client.auth import HeaderAuth, TokenAuth, choose_auth
from htcgrid.client.logins import REFRESH_MARGIN_SECONDS, LoginStore, Tokens
from htcgrid.dataplane import open_data_plane
from htcgrid.errors import AuthError
from htcgrid.service import GridService
from htcgrid.settings import SecurityConfig
from htcgrid.store import open_store

URL = "http://testserver"
PASSWORD = "a long enough password"
LIFETIME = 600.0  # seconds an access token lives
MARGIN = min(REFRESH_MARGIN_SECONDS, 0.2 * LIFETIME)  # renewed this long before it ends


@dataclass
class Grid:
    http: TestClient
    auth: Authenticator
    now: list[float] = field(default_factory=lambda: [1_700_000_000.0])
    updates: list[Tokens] = field(default_factory=list)

    def clock(self) -> float:
        return self.now[0]

    def login(self, password: str = PASSWORD, **options: object) -> TokenAuth:
        flow = TokenAuth(
            URL,
            username="alice",
            password=password,
            on_update=self.updates.append,
            clock=self.clock,
            **options,  # type: ignore[arg-type]
        )
        self.http.auth = flow
        return flow

    def whoami(self) -> httpx.Response:
        return self.http.get("/v1/auth/whoami")


@pytest.fixture(scope="module")
def hashed() -> Iterator[tuple[GridService, Authenticator, list[float]]]:
    """One grid for the module: a password hash is slow on purpose, so it is made once."""
    now = [1_700_000_000.0]
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    config = SecurityConfig(access_token_seconds=LIFETIME)
    auth = Authenticator(service.data, config, clock=lambda: now[0])
    auth.start()
    auth.add_user("alice", PASSWORD)
    yield service, auth, now


@pytest.fixture
def grid(hashed: tuple[GridService, Authenticator, list[float]]) -> Iterator[Grid]:
    service, auth, now = hashed
    now[0] = 1_700_000_000.0
    with TestClient(create_app(service, auth=auth)) as http:
        yield Grid(http, auth, now)


def test_the_first_call_logs_in_and_the_token_is_used_until_it_nears_its_end(grid: Grid) -> None:
    flow = grid.login()
    assert grid.whoami().json() == {"user": "alice", "role": "user", "via": "token"}
    assert len(grid.updates) == 1 and flow.tokens is grid.updates[0]
    first = flow.tokens.access_token
    grid.now[0] += LIFETIME - MARGIN - 1  # not yet within the margin: no new token
    assert grid.whoami().status_code == 200 and len(grid.updates) == 1
    grid.now[0] += 2  # now within it: refreshed before the call, which carries the new token
    assert grid.whoami().status_code == 200 and len(grid.updates) == 2
    assert flow.tokens is not None and flow.tokens.access_token != first
    assert flow.tokens.expires_at == grid.now[0] + LIFETIME


def test_a_token_the_grid_calls_expired_is_refreshed_and_the_call_sent_again(grid: Grid) -> None:
    flow = grid.login()
    assert grid.whoami().status_code == 200
    late = [grid.now[0]]  # the client's clock runs behind the grid's by a whole lifetime
    flow.clock = lambda: late[0]
    grid.now[0] += LIFETIME + 1
    answer = grid.whoami()
    assert answer.status_code == 200 and answer.json()["user"] == "alice"
    assert len(grid.updates) == 2  # logged in, then refreshed once


def test_a_refused_refresh_falls_back_to_the_password(grid: Grid) -> None:
    flow = grid.login()
    assert grid.whoami().status_code == 200
    assert flow.tokens is not None
    flow.tokens = Tokens("forged", "not-a-refresh-token", 0.0, "alice", 0.0)  # expired too
    assert grid.whoami().status_code == 200
    assert flow.tokens.access_token != "forged" and len(grid.updates) == 2


def test_a_wrong_password_says_the_grid_refused_the_login(grid: Grid) -> None:
    grid.login(password="not the password")
    with pytest.raises(AuthError, match=f"cannot log in to {URL}"):
        grid.whoami()


def test_a_saved_login_the_grid_refuses_says_to_log_in_again(grid: Grid) -> None:
    stale = Tokens("stale-access", "stale-refresh", grid.now[0] + 3600, "alice", grid.now[0])
    grid.http.auth = TokenAuth(URL, stale, clock=grid.clock, saved=True)
    with pytest.raises(AuthError, match="out of date") as refused:
        grid.whoami()
    assert f"htcgrid login --url {URL}" in str(refused.value)


def test_no_tokens_and_no_password_says_to_log_in(grid: Grid) -> None:
    grid.http.auth = TokenAuth(URL, clock=grid.clock)
    with pytest.raises(AuthError, match="not logged in"):
        grid.whoami()


def test_a_header_auth_sends_a_bearer_token_or_an_api_key(grid: Grid) -> None:
    _, secret = grid.auth.create_key("alice")
    grid.http.auth = HeaderAuth(api_key=secret)
    assert grid.whoami().json()["via"] == "api_key"
    request = httpx.Request("GET", URL)
    sent = next(HeaderAuth(token="t-1").auth_flow(request))
    assert sent.headers["Authorization"] == "Bearer t-1" and "x-api-key" not in sent.headers


# ---- choose_auth -------------------------------------------------------------------------------


def headers_of(auth: httpx.Auth | None) -> dict[str, str]:
    assert isinstance(auth, HeaderAuth)
    return auth.headers


def test_choose_auth_prefers_a_password_then_a_token_then_a_key_then_the_environment(
    tmp_path: Path,
) -> None:
    env = {"HTCGRID_CONFIG_DIR": str(tmp_path), "HTCGRID_TOKEN": "from-env"}
    chosen = choose_auth(URL, token="t", username="alice", password="p", environ=env)
    assert isinstance(chosen, TokenAuth) and (chosen.username, chosen.password) == ("alice", "p")
    assert headers_of(choose_auth(URL, token="t", api_key="k", environ=env)) == {
        "Authorization": "Bearer t",
        "x-api-key": "k",
    }
    assert headers_of(choose_auth(URL, api_key="k", environ=env)) == {"x-api-key": "k"}
    assert headers_of(choose_auth(URL, environ=env)) == {"Authorization": "Bearer from-env"}


def test_choose_auth_uses_a_saved_login_and_saves_its_refreshed_tokens(tmp_path: Path) -> None:
    env = {"HTCGRID_CONFIG_DIR": str(tmp_path), "HTCGRID_DATA_DIR": str(tmp_path / "data")}
    assert choose_auth(URL, environ=env) is None  # nothing saved, no local grid
    store = LoginStore(tmp_path)
    saved = Tokens("a", "r", 2_000_000_000.0, "alice", 1_999_990_000.0)
    store.put(URL, saved)
    chosen = choose_auth(URL + "/", environ=env)
    assert isinstance(chosen, TokenAuth) and chosen.saved and chosen.tokens == saved
    assert chosen.on_update is not None
    newer = Tokens("b", "r2", 2_000_003_600.0, "alice", 2_000_000_000.0)
    chosen.on_update(newer)
    assert LoginStore(tmp_path).get(URL) == newer
