"""Memoization of pickled Python calls: ``htcgrid.Executor(url, cache=True)`` answers a call
made before with the same callable and arguments without running it, in process and over
HTTP; another argument, or an executor without ``cache``, runs."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest
from agent_thread import running
from fastapi.testclient import TestClient
from procs import until
from sample_handlers_path import HERE

import htcgrid
from htcgrid import memo
from htcgrid.agent.agent import Agent
from htcgrid.agent.worker import WorkerConfig
from htcgrid.api import create_app
from htcgrid.backends import open_grid
from htcgrid.client.direct import DirectTransport
from htcgrid.client.executor import runtime_info
from htcgrid.client.http import HTTPTransport
from htcgrid.client.session import Client
from htcgrid.service import GridService
from htcgrid.settings import Settings
from htcgrid.store import TaskStore

cloudpickle.register_pickle_by_value(sys.modules[__name__])
FAST = Settings(heartbeat_seconds=0.2, lease_seconds=5.0)


def noted(path: str, x: int) -> int:
    """Square ``x``, leaving a line in ``path`` for each run."""
    with open(path, "a") as runs:
        runs.write(f"{x}\n")
    return x * x


@contextlib.contextmanager
def clients(kind: str, via: str, tmp_path: Path) -> Iterator[tuple[Client, TaskStore]]:
    url = "memory://" if kind == "memory" else f"sqlite://{tmp_path / 'grid.db'}"
    store, data = open_grid(url)
    service = GridService(store, data, FAST)
    worker = WorkerConfig("sample_handlers.echo", (HERE,))
    with running(Agent(store, data, FAST, worker, 2)):
        if via == "process":
            client = Client(DirectTransport.of(service))
            until(lambda: runtime_info(client)["agents"])
            yield client, store
        else:
            transport = HTTPTransport("http://testserver", retry_seconds=0)
            with TestClient(create_app(service)) as http:
                transport.http = http
                client = Client(transport)
                until(lambda: runtime_info(client)["agents"])
                yield client, store
    store.close()
    data.close()


@pytest.mark.parametrize(
    ("kind", "via"), [("memory", "process"), ("sqlite", "process"), ("memory", "http")]
)
def test_an_executor_with_cache_runs_each_call_once(kind: str, via: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    with clients(kind, via, tmp_path) as (client, store):
        with htcgrid.Executor(client=client, cache=True) as grid:
            assert list(grid.map(noted, [str(runs)] * 3, [1, 2, 3])) == [1, 4, 9]
        until(lambda: len(store.list_meta(memo.PREFIX)) >= 3)  # recorded once their results are
        with htcgrid.Executor(client=client, cache=True) as grid:
            assert grid.submit(noted, str(runs), 2).result(60) == 4
            assert list(grid.map(noted, [str(runs)] * 2, [3, 4])) == [9, 16]
        assert sorted(runs.read_text().split()) == ["1", "2", "3", "4"]
        with htcgrid.Executor(client=client) as grid:  # no cache: it runs
            assert grid.submit(noted, str(runs), 2).result(60) == 4
        assert sorted(runs.read_text().split()) == ["1", "2", "2", "3", "4"]
