"""Retention (issue 12, found 5) above the store: the service purges ended sessions with their
data-plane objects, the TTL checker does it by itself, and the API and the CLI offer it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import htcgrid
from htcgrid.api import create_app
from htcgrid.cli import main
from htcgrid.cli.retention import seconds_of
from htcgrid.dataplane import open_data_plane
from htcgrid.models import Outcome, TaskState
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import Settings
from htcgrid.store import open_store
from htcgrid.ttl import TTLChecker

DAY = 86400.0
BIG = "x" * 200  # over the inline limit below: each payload is a data-plane object


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def grid(tmp_path: Path, clock: Clock) -> Iterator[GridService]:
    store = open_store(f"sqlite://{tmp_path / 'grid.db'}")
    data = open_data_plane(f"file://{tmp_path / 'blobs'}")
    settings = Settings(inline_limit_bytes=50, retention_seconds=DAY)
    yield GridService(store, data, settings, clock=clock)
    store.close()


def files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def run_all(grid: GridService, now: float, finish: bool = True) -> None:
    leases = grid.store.claim("agent", 1000, 60.0, now)
    if finish:
        done = [Outcome(x.task_id, x.attempt, TaskState.FINISHED, output=b"1") for x in leases]
        assert all(grid.store.complete("agent", done, now))


def submit(grid: GridService, n: int) -> str:
    return grid.submit(SubmitRequest(tasks=[{"i": i, "pad": BIG} for i in range(n)])).session_id


def test_the_service_purges_ended_sessions_with_their_data(
    grid: GridService, clock: Clock, tmp_path: Path
) -> None:
    running = submit(grid, 2)
    run_all(grid, clock.now, finish=False)
    kept = files(tmp_path / "blobs")
    old = submit(grid, 3)
    run_all(grid, clock.now)
    assert files(tmp_path / "blobs") == kept + 3

    clock.now += DAY / 2
    assert grid.purge() == []  # within the retention
    clock.now += DAY
    assert grid.purge() == [old]
    assert grid.store.get_session(old) is None
    assert files(tmp_path / "blobs") == kept
    assert grid.store.get_session(running) is not None
    assert grid.purge(older_than_seconds=0) == []  # still running: never


def test_the_ttl_checker_purges_at_most_every_interval(grid: GridService, clock: Clock) -> None:
    old = submit(grid, 1)
    run_all(grid, clock.now)
    clock.now += 2 * DAY
    ttl = TTLChecker(grid.store, purge=grid.purge, purge_every_seconds=3600)
    assert ttl.purge_if_due() == 1 and grid.store.get_session(old) is None
    newer = submit(grid, 1)
    run_all(grid, clock.now - 2 * DAY)
    assert ttl.purge_if_due() == 0  # not due yet
    assert grid.store.get_session(newer) is not None


def test_the_api_purges_for_an_admin(grid: GridService, clock: Clock) -> None:
    old = submit(grid, 1)
    run_all(grid, clock.now)
    clock.now += 100
    with TestClient(create_app(grid)) as http:
        assert http.post("/v1/purge", params={"older_than": 200}).json() == {"purged": []}
        assert http.post("/v1/purge", params={"older_than": 50}).json() == {"purged": [old]}
        assert http.post("/v1/purge", params={"older_than": -1}).status_code == 400


def test_the_cli_deletes_purges_and_vacuums(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'grid.db'}"
    store = open_store(url)
    data = open_data_plane(f"file://{tmp_path / 'blobs'}")
    grid = GridService(store, data, Settings(), clock=lambda: 1.0)  # long ago
    first, second = submit(grid, 2), submit(grid, 2)
    run_all(grid, 1.0)
    store.close()

    invoke = CliRunner().invoke
    done = invoke(main, ["delete", first, "--url", url])
    assert done.exit_code == 0 and f"deleted {first}" in done.output, done.output
    done = invoke(main, ["purge", "--older-than", "7d", "--url", url, "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == {"purged": [second]}
    done = invoke(main, ["db", "vacuum", "--url", url])
    assert done.exit_code == 0 and "KiB" in done.output, done.output
    bad = invoke(main, ["purge", "--older-than", "soon", "--url", url])
    assert bad.exit_code != 0 and "not a duration" in bad.output


def test_durations() -> None:
    assert seconds_of("7d") == 7 * DAY
    assert seconds_of("12h") == 12 * 3600
    assert seconds_of("1.5m") == 90
    assert seconds_of("90") == 90


@pytest.mark.filterwarnings("ignore::htcgrid.errors.NoAgentWarning")
def test_a_session_sets_its_own_retention_on_every_path(
    grid: GridService, clock: Clock, tmp_path: Path
) -> None:
    """Over HTTP, in process and from the CLI; the server's purge honours it, an explicit
    purge --older-than applies to every session alike."""
    url = f"sqlite://{tmp_path / 'grid.db'}"
    clock.now = time.time()  # the client and the CLI stamp sessions with the real clock
    with TestClient(create_app(grid)) as http:
        body = {"tasks": [1], "retention_seconds": 3600}
        answer = http.post("/v1/sessions", json=body)
        assert answer.status_code == 201, answer.text
        over_http = answer.json()["session_id"]
        bad = http.post("/v1/sessions", json={"tasks": [1], "retention_seconds": -1})
        assert bad.status_code == 400 and "retention_seconds" in bad.text
    with htcgrid.connect(url) as client:
        in_process = client.submit([1], retention_seconds=2 * DAY).id
        plain = client.submit([1]).id
    done = CliRunner().invoke(
        main, ["submit", "--url", url, "--retention", "2h", "--json"], input="[1]"
    )
    assert done.exit_code == 0, done.output
    from_cli = json.loads(done.output)["session_id"]
    info = grid.store.get_session(from_cli)
    assert info is not None and info.spec.retention_seconds == 7200
    run_all(grid, clock.now)

    clock.now += 3 * 3600  # past the hour and the two hours, within the server's day
    assert sorted(grid.purge()) == sorted([over_http, from_cli])
    clock.now += DAY  # past the server's retention, within the session's two days
    assert grid.purge() == [plain]
    assert grid.purge(older_than_seconds=0) == [in_process]
