"""A full disk under the SQLite task store (issue 12, found 1), on a real small file system.

Each test mounts its own tmpfs of a few MiB (the tests run as root; where mounting is not
permitted they skip, saying so) and fills it with a file, so SQLite meets a real ``ENOSPC``.
A submit that does not fit is refused whole with ``StorageFull`` (507 over HTTP), agents back
off instead of dying, and work goes on as soon as the file is removed.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_thread import running
from fastapi.testclient import TestClient
from procs import until
from sample_handlers_path import HERE

from htcgrid.agent.agent import Agent
from htcgrid.agent.worker import WorkerConfig
from htcgrid.api import create_app
from htcgrid.dataplane import open_data_plane
from htcgrid.errors import BackendUnavailable, StorageFull
from htcgrid.models import TaskState
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import Settings
from htcgrid.store import sqlite_errors

FAST = Settings(heartbeat_seconds=0.2, lease_seconds=2.0, ttl_check_seconds=0.2, grace_seconds=5)
JSON = {"content-type": "application/json"}
BIG = [{"i": i, "pad": "x" * 2000} for i in range(2000)]  # about 4 MiB: never fits


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "small"
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(folder)]
    done = subprocess.run(mount, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)
            pytest.fail(f"a file of the grid was still open on {folder}")


@pytest.fixture
def grid(small_fs: Path, tmp_path: Path) -> Iterator[GridService]:
    from htcgrid.store import open_store

    store = open_store(f"sqlite://{small_fs / 'grid.db'}")
    data = open_data_plane(f"file://{tmp_path / 'blobs'}")
    try:
        yield GridService(store, data, FAST)
    finally:
        store.close()


def fill(folder: Path) -> Path:
    """Write a file into ``folder`` until its file system is full; the file, to free it."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def counts(grid: GridService) -> tuple[int, int]:
    sessions = grid.store.list_sessions(limit=1000)
    tasks = sum(sum(grid.store.count_states(s.id).values()) for s in sessions)
    return len(sessions), tasks


def submit(grid: GridService, tasks: list[Any]) -> str:
    return grid.submit(SubmitRequest(tasks=tasks)).session_id


def test_a_submit_that_does_not_fit_is_refused_whole_in_one_line(
    grid: GridService, small_fs: Path
) -> None:
    submit(grid, [{"i": 1}])
    filler = fill(small_fs)
    before = counts(grid)
    with pytest.raises(StorageFull) as refused:
        submit(grid, BIG)
    message = str(refused.value)
    assert "\n" not in message
    assert str(small_fs / "grid.db") in message and f"file system {small_fs} " in message
    assert "free space on it" in message
    assert isinstance(refused.value, BackendUnavailable)  # so agents back off and retry
    assert counts(grid) == before

    filler.unlink()
    sid = submit(grid, BIG[:500])
    assert grid.store.count_states(sid)[TaskState.PENDING] == 500
    assert counts(grid) == (before[0] + 1, before[1] + 500)


def test_the_api_answers_507_for_a_full_disk(grid: GridService, small_fs: Path) -> None:
    fill(small_fs)
    body = json.dumps({"tasks": BIG})
    with TestClient(create_app(grid), raise_server_exceptions=False) as http:
        answer = http.post(
            "/v1/sessions", content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 507, answer.text
    assert answer.json()["error"]["code"] == "storage_full"


def test_an_agent_backs_off_on_a_full_disk_and_carries_on_when_freed(
    grid: GridService, small_fs: Path
) -> None:
    sid = submit(grid, [{"n": i} for i in range(20)])
    filler = fill(small_fs)
    worker = WorkerConfig(handler="sample_handlers.echo", paths=(HERE,))
    with running(Agent(grid.store, grid.data, FAST, worker, 2)) as agent:
        until(lambda: agent.retry.outages >= 1, 30, "the agent to meet the full disk")
        with pytest.raises(StorageFull):
            submit(grid, BIG)
        filler.unlink()
        until(lambda: grid.session(sid).complete, 60, "the session to finish")
        later = submit(grid, [{"n": -1}])
        until(lambda: grid.session(later).complete, 60, "a session submitted after")
    records = grid.results(sid, 0, 100).results
    assert sorted(json.loads(r.output or b"")["n"] for r in records) == list(range(20))


def test_a_read_only_file_is_unavailable_not_full(grid: GridService, small_fs: Path) -> None:
    """A file system that went read-only under the grid, as SQLite meets it (a file opened
    read-only: a tmpfs cannot be remounted read-only while the store holds it open)."""
    path = small_fs / "grid.db"
    uri = f"file:{path}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, factory=sqlite_errors.Connection)
    conn.database_path = path
    try:
        with pytest.raises(BackendUnavailable) as refused:
            conn.execute("INSERT INTO meta VALUES ('k', 'v')")
    finally:
        conn.close()
    assert not isinstance(refused.value, StorageFull)
    assert str(path) in str(refused.value) and "writable" in str(refused.value)


def test_a_file_locked_past_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    """A writer that holds the file longer than the busy timeout (a big purge on a loaded
    machine) makes others' writes unavailable, to be retried: never a raw error, which
    killed an agent's heartbeat thread in a long run."""
    path = tmp_path / "grid.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    holder.execute("BEGIN IMMEDIATE")
    conn = sqlite3.connect(
        path, isolation_level=None, timeout=0.01, factory=sqlite_errors.Connection
    )
    conn.database_path = path
    try:
        with pytest.raises(BackendUnavailable) as refused:
            conn.execute("INSERT INTO meta VALUES ('k', 'v')")
    finally:
        conn.close()
        holder.close()
    assert str(path) in str(refused.value) and "locked" in str(refused.value)
