"""Mixing roles by URL (issue 4): a PostgreSQL task store with a Redis, file or S3 data plane."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import backend_url
from sample_handlers_path import HERE

import htcgrid
from htcgrid.agent.agent import Agent
from htcgrid.agent.worker import WorkerConfig
from htcgrid.dataplane import open_data_plane
from htcgrid.settings import Settings
from htcgrid.store import open_store


@pytest.fixture(params=["redis", "file", "s3"])
def mixed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    with (
        backend_url("postgresql", tmp_path) as store_url,
        backend_url(request.param, tmp_path, "data") as data_url,
    ):
        yield store_url, data_url


def test_postgres_store_with_another_data_plane(mixed: tuple[str, str]) -> None:
    store_url, data_url = mixed
    big = {"blob": "z" * (Settings().inline_limit_bytes + 1)}
    store, data = open_store(store_url), open_data_plane(data_url)
    runner = Agent(store, data, Settings(), WorkerConfig("sample_handlers.echo", (HERE,)), 1)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        with htcgrid.connect(store_url, data_url=data_url) as grid:
            session = grid.submit([big, {"small": 1}])
            results = session.results(timeout=60)
            assert [r.output for r in results] == [big, {"small": 1}]
            stored = store.get_task(f"{session.id}_0")
            assert stored is not None and stored.payload is None and stored.output is None
            assert stored.payload_ref is not None and stored.output_ref is not None
            assert data.get(stored.payload_ref) == htcgrid.models.json_dumps(big)
            assert data.get(stored.output_ref).startswith(b'{"blob":"zzz')
    finally:
        runner.stop()
        thread.join(timeout=30)
        store.close()
        data.close()
