"""Where ``htcgrid login`` keeps tokens, and where the CLI finds a local grid's credentials
(``htcgrid.client.auth`` sends them).

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
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
