"""The httpx auth flows of the client: send a token or an API key, log in with a password,
refresh a token before it expires; ``choose_auth`` picks one for a grid URL."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Generator, Mapping

import httpx

from htcgrid.client.logins import (
    LoginStore,
    Tokens,
    config_dir,
    local_grid_api_key,
    normal_url,
)
from htcgrid.errors import AuthError


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase


class TokenAuth(httpx.Auth):
    """Bearer tokens that stay valid: logs in with a password when it has one, refreshes the
    access token shortly before it expires (and after a 401 ``token_expired``), and uses the
    new token on the very request that triggered the refresh."""

    requires_response_body = True

    def __init__(
        self,
        url: str,
        tokens: Tokens | None = None,
        username: str | None = None,
        password: str | None = None,
        on_update: Callable[[Tokens], None] | None = None,
        clock: Callable[[], float] = time.time,
        saved: bool = False,
    ) -> None:
        self.url = normal_url(url)
        self.saved = saved  # tokens from `htcgrid login`: a refusal means they are out of date
        self.tokens = tokens
        self.username, self.password = username, password
        self.on_update = on_update
        self.clock = clock
        self._lock = threading.Lock()

    # ---- the requests it sends on its own -----------------------------------------------

    def login_request(self) -> httpx.Request:
        body = {"username": self.username, "password": self.password}
        return httpx.Request("POST", f"{self.url}/v1/auth/token", json=body)

    def refresh_request(self) -> httpx.Request:
        assert self.tokens is not None
        body = {"refresh_token": self.tokens.refresh_token}
        return httpx.Request("POST", f"{self.url}/v1/auth/refresh", json=body)

    def out_of_date(self) -> AuthError:
        return AuthError(
            f"the saved login for {self.url} is out of date (the grid refused it); "
            f"log in again with: htcgrid login --url {self.url}"
        )

    def take(self, response: httpx.Response) -> None:
        if response.status_code != 200 and self.saved and self.password is None:
            raise self.out_of_date()
        if response.status_code != 200:
            raise AuthError(f"cannot log in to {self.url}: {_error_message(response)}")
        tokens = Tokens.from_answer(response.json(), self.clock())
        with self._lock:
            self.tokens = tokens
        if self.on_update is not None:
            self.on_update(tokens)

    def expiring(self) -> bool:
        return self.tokens is not None and self.clock() >= self.tokens.renew_at()

    # ---- the flow -----------------------------------------------------------------------

    def renew_flow(self) -> Generator[httpx.Request, httpx.Response, None]:
        """Refresh if there is a refresh token, else log in again; a refused refresh falls
        back to the password when there is one."""
        if self.tokens is not None:
            response = yield self.refresh_request()
            if response.status_code == 200 or self.password is None:
                self.take(response)
                return
        if self.password is None:
            raise AuthError(f"not logged in to {self.url}: run `htcgrid login --url {self.url}`")
        self.take((yield self.login_request()))

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.tokens is None or self.expiring():
            yield from self.renew_flow()
        assert self.tokens is not None
        request.headers["Authorization"] = f"Bearer {self.tokens.access_token}"
        response = yield request
        if response.status_code == 401 and _code(response) == "token_expired":
            yield from self.renew_flow()
            assert self.tokens is not None
            request.headers["Authorization"] = f"Bearer {self.tokens.access_token}"
            response = yield request
        if response.status_code == 401 and self.saved:
            raise self.out_of_date()


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


class HeaderAuth(httpx.Auth):
    """A fixed credential: a bearer token or an ``x-api-key``."""

    def __init__(self, token: str | None = None, api_key: str | None = None) -> None:
        self.headers: dict[str, str] = {}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        if api_key:
            self.headers["x-api-key"] = api_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(self.headers)
        yield request


def choose_auth(
    url: str,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
    api_key: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> httpx.Auth | None:
    """The credential for ``url``: a password login, else ``token``, else ``api_key``, else
    ``$HTCGRID_TOKEN``, else what ``htcgrid login`` stored for this URL, else the admin key
    of the local grid at that URL (``local_grid_api_key``), else none."""
    if username:
        return TokenAuth(url, username=username, password=password or "")
    if token or api_key:
        return HeaderAuth(token, api_key)
    if environ.get("HTCGRID_TOKEN"):
        return HeaderAuth(environ["HTCGRID_TOKEN"])
    store = LoginStore(config_dir(environ))
    stored = store.get(url)
    if stored is not None:
        return TokenAuth(url, stored, on_update=lambda t: store.put(url, t), saved=True)
    local_key = local_grid_api_key(url, environ)
    return HeaderAuth(local_key) if local_key else None
