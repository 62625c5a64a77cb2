"""What the PostgreSQL data plane promises beyond the shared contract."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import backend_url

if not os.environ.get("CI"):  # CI must run every backend: there, a missing driver fails
    pytest.importorskip("psycopg")

from htcgrid.dataplane.postgres import PostgresDataPlane
from htcgrid.errors import BackendUnavailable, NotFound
from htcgrid.store.postgres import PostgresTaskStore


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with backend_url("postgresql", tmp_path, "data") as u:
        yield u


@pytest.fixture
def data(url: str) -> Iterator[PostgresDataPlane]:
    d = PostgresDataPlane(url)
    yield d
    d.close()


def test_delete_prefix_takes_underscore_and_percent_literally(data: PostgresDataPlane) -> None:
    keys = ["sessions/a_b/x", "sessions/aXb/x", "sessions/100%/x", "sessions/1000/x"]
    for key in keys:
        data.put(key, b"v")
    assert data.delete_prefix("sessions/a_b/") == 1
    assert data.delete_prefix("sessions/100%/") == 1
    assert data.get("sessions/aXb/x") == b"v" and data.get("sessions/1000/x") == b"v"
    with pytest.raises(NotFound):
        data.get("sessions/a_b/x")


def test_delete_prefix_is_byte_wise(data: PostgresDataPlane) -> None:
    for key in ["p/é/1", "p/é/2", "p/f/1", "p/e/1", "p/\U0010ffff/1"]:
        data.put(key, b"v")
    assert data.delete_prefix("p/é/") == 2
    assert data.delete_prefix("p/\U0010ffff") == 1
    assert data.delete_prefix("p/") == 2


def test_the_whole_plane_is_never_deleted_by_prefix(data: PostgresDataPlane) -> None:
    with pytest.raises(ValueError):
        data.delete_prefix("")


def test_a_store_and_a_data_plane_share_one_schema(url: str) -> None:
    data = PostgresDataPlane(url)
    data.put("functions/f/1.zip", b"zip")
    data.close()
    store = PostgresTaskStore(url)  # opened second: finds the schema migrated
    again = PostgresDataPlane(url)
    try:
        assert store.queue_depth() == 0
        assert again.get("functions/f/1.zip") == b"zip"
    finally:
        store.close()
        again.close()


def test_an_unreachable_server_is_backend_unavailable_without_the_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendUnavailable) as exc:
        PostgresDataPlane(f"postgresql://u:hunter2@127.0.0.1:{port}/db")
    assert "hunter2" not in str(exc.value)


def test_repr_hides_the_password(url: str) -> None:
    d = PostgresDataPlane(url.replace("postgresql://postgres@", "postgresql://postgres:pw9@"))
    try:
        assert "pw9" not in repr(d) and "***" in repr(d)
    finally:
        d.close()
