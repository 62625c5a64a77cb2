"""Backend URLs: parsing, file paths, and a repr that never shows a password."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

from htcgrid.errors import ConfigurationError


def scheme_of(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    if not scheme:
        raise ConfigurationError(f"not a URL (no scheme): {redact(url)!r}")
    return scheme.split("+", 1)[0]


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def local_path(url: str) -> Path:
    """The path of a ``sqlite://`` or ``file://`` URL: everything after ``://``.

    ``sqlite:///var/grid.db`` is ``/var/grid.db``; ``sqlite://grid.db`` is relative to the
    working directory.
    """
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if rest.startswith("localhost/"):
        rest = rest[len("localhost") :]
    if not rest:
        raise ConfigurationError(f"{scheme_of(url)}:// URL needs a path: {url!r}")
    return Path(rest)


def query(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
