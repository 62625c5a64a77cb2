"""The client's side of authentication: where ``htcgrid login`` keeps tokens, and the httpx
auth flows that send a token, log in, and refresh a token before it expires.

Stored logins live in ``$HTCGRID_CONFIG_DIR`` (default ``$XDG_CONFIG_HOME/htcgrid``, i.e.
``~/.config/htcgrid``) as ``logins.json``, one entry per grid URL, readable by the user only.
Beside it, ``grids.json`` maps the URL of each grid ``htcgrid up`` started to its data dir, so
the CLI finds that grid's admin credentials from any directory. URLs are compared by
``url_key``: ``localhost``, ``127.0.0.1`` and ``::1`` name the same host.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from htcgrid.errors import AuthError

REFRESH_MARGIN_SECONDS = 60.0  # refresh this long before the access token expires
ADMIN_CREDENTIALS = "admin-credentials.json"  # written by `htcgrid up` in its data dir
GRIDS = "grids.json"  # grid URL -> data dir of the grids `htcgrid up` started
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def config_dir(environ: Mapping[str, str] = os.environ) -> Path:
    if environ.get("HTCGRID_CONFIG_DIR"):
        return Path(environ["HTCGRID_CONFIG_DIR"])
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "htcgrid"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable and writable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def normal_url(url: str) -> str:
    return url.rstrip("/")


def url_key(url: str) -> str:
    """``url`` as a lookup key: lower-case scheme and host, the port spelled out, and every
    loopback name (``localhost``, ``127.0.0.1``, ``::1``) the same host."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower(), 0)
    except ValueError:
        return normal_url(url)
    host = "localhost" if host in LOOPBACK_NAMES else host
    return f"{parts.scheme.lower()}://{host}:{port}{parts.path.rstrip('/')}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember_grid(url: str, data_dir: Path, environ: Mapping[str, str] = os.environ) -> None:
    """Record that the grid at ``url`` keeps its data in ``data_dir``, forgetting grids whose
    data dir is gone (best effort: a config dir that cannot be written only means the CLI will
    not find the grid by itself)."""
    path = config_dir(environ) / GRIDS
    grids = {
        k: v
        for k, v in _read_json(path).items()
        if url_key(k) != url_key(url) and Path(str(v)).is_dir()
    }
    grids[normal_url(url)] = str(data_dir.resolve())
    with contextlib.suppress(OSError):
        write_private(path, json.dumps(grids, indent=2, sort_keys=True) + "\n")


def _grid_data_dirs(url: str, environ: Mapping[str, str]) -> list[Path]:
    recorded = _read_json(config_dir(environ) / GRIDS)
    found = [Path(str(d)) for u, d in recorded.items() if url_key(u) == url_key(url)]
    return [*found, Path(environ.get("HTCGRID_DATA_DIR") or ".htcgrid")]


def read_admin_credentials(path: Path) -> dict[str, str]:
    """What ``htcgrid up`` wrote on first start: url, user, password and api_key."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a credentials file")
    return {str(k): str(v) for k, v in data.items()}


def local_grid_api_key(url: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The admin API key of the grid at ``url`` that ``htcgrid up`` started: found through the
    data dir it recorded (``remember_grid``), else in ``$HTCGRID_DATA_DIR`` (default
    ``.htcgrid``); None when none of them is the grid at ``url``."""
    for data_dir in _grid_data_dirs(url, environ):
        try:
            found = read_admin_credentials(data_dir / ADMIN_CREDENTIALS)
        except (OSError, ValueError):
            continue
        if url_key(found.get("url", "")) == url_key(url) and found.get("api_key"):
            return found["api_key"]
    return None


@dataclass
class Tokens:
    access_token: str
    refresh_token: str
    expires_at: float  # epoch seconds
    user: str = ""
    issued_at: float = 0.0

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any], now: float) -> Tokens:
        return cls(
            answer["access_token"],
            answer["refresh_token"],
            now + float(answer["expires_in"]),
            answer.get("user", ""),
            now,
        )

    def renew_at(self) -> float:
        """When to refresh: a minute before expiry, or sooner for short-lived tokens."""
        lifetime = self.expires_at - self.issued_at if self.issued_at else float("inf")
        return self.expires_at - min(REFRESH_MARGIN_SECONDS, 0.2 * lifetime)


class LoginStore:
    """Tokens saved by ``htcgrid login``, by grid URL."""

    def __init__(self, directory: Path | None = None) -> None:
        self.path = (directory or config_dir()) / "logins.json"
        self._lock = threading.Lock()

    def _all(self) -> dict[str, Any]:
        return _read_json(self.path)

    def get(self, url: str) -> Tokens | None:
        """The tokens saved for ``url`` or any URL with the same ``url_key``."""
        entry = next((v for k, v in self._all().items() if url_key(k) == url_key(url)), None)
        try:
            return Tokens(**entry) if isinstance(entry, dict) else None
        except TypeError:
            return None

    def put(self, url: str, tokens: Tokens) -> None:
        with self._lock:
            data = {k: v for k, v in self._all().items() if url_key(k) != url_key(url)}
            data[normal_url(url)] = asdict(tokens)
            write_private(self.path, json.dumps(data, indent=2, sort_keys=True))

    def remove(self, url: str) -> bool:
        with self._lock:
            everything = self._all()
            data = {k: v for k, v in everything.items() if url_key(k) != url_key(url)}
            found = len(data) < len(everything)
            if found:
                write_private(self.path, json.dumps(data, indent=2, sort_keys=True))
            return found


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
