"""Backend URLs for the contract suites, each isolated per test and cleaned up afterwards.

PostgreSQL and Redis come from ``HTCGRID_TEST_POSTGRES_URL`` / ``HTCGRID_TEST_REDIS_URL``
(defaulting to the loopback servers). A missing server skips the test locally and fails it
when ``CI`` is set, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get(
    "HTCGRID_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("HTCGRID_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

STORE_KINDS = ["memory", "sqlite", "postgresql", "redis"]
DATA_KINDS = ["memory", "file", "sqlite", "postgresql", "redis"]
SHARED_KINDS = {"sqlite", "file", "postgresql", "redis"}  # reachable from other processes


def require_service(url: str) -> None:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 1).close()
    except OSError:
        message = f"service not reachable at {parts.hostname}:{parts.port}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run every backend)")
        pytest.skip(message)


def require_module(name: str) -> None:
    try:
        __import__(name)
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not importable in CI: {exc}")
        pytest.skip(f"{name} not available: {exc}")


def _with_query(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={v}" for k, v in params.items())


@contextmanager
def backend_url(kind: str, tmp_path: Path, role: str = "store") -> Iterator[str]:
    tag = uuid.uuid4().hex[:10]
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        yield f"sqlite://{tmp_path / 'grid.db'}"
    elif kind == "file":
        yield f"file://{tmp_path / 'blobs'}"
    elif kind == "postgresql":
        require_service(POSTGRES_URL)
        require_module(f"htcgrid.{'store' if role == 'store' else 'dataplane'}.postgres")
        schema = f"htcgrid_test_{tag}"
        yield _with_query(POSTGRES_URL, schema=schema)
        drop_postgres_schema(schema)
    elif kind == "redis":
        require_service(REDIS_URL)
        require_module(f"htcgrid.{'store' if role == 'store' else 'dataplane'}.redis")
        prefix = f"htcgrid-test-{tag}:"
        yield _with_query(REDIS_URL, prefix=prefix)
        delete_redis_prefix(prefix)
    else:
        raise ValueError(kind)


def drop_postgres_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def delete_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])
    client.close()
