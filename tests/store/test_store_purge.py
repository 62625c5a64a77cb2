"""Retention (issue 12, found 5): ``purge`` removes old complete sessions and nothing else,
on every backend, and leaves no row or key of them behind."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from backends import POSTGRES_URL, REDIS_URL

from htcgrid.models import NewTask, Outcome, SessionSpec, TaskState
from htcgrid.store import TaskStore, open_store


def make(
    store: TaskStore, sid: str, n: int, now: float, pad: bytes = b"", priority: int = 0
) -> None:
    """A session whose tasks are claimed before those of lower ``priority``."""
    spec = SessionSpec(id=sid, task_count=n, priority=priority, content_hash="h", owner="alice")
    tasks = [NewTask(i, priority, payload=b'{"i":%d,"p":"%s"}' % (i, pad)) for i in range(n)]
    assert store.create_session(spec, tasks, now)


def run(store: TaskStore, n: int, now: float, finish: bool = True) -> None:
    leases = store.claim("agent", n, 60.0, now)
    assert len(leases) == n
    if finish:
        outcomes = [Outcome(x.task_id, x.attempt, TaskState.FINISHED, output=b"1") for x in leases]
        assert all(store.complete("agent", outcomes, now))


def raw_count(store: TaskStore) -> int | None:
    """Rows or keys the backend holds, counted beside the store's own API; None for AWS."""
    url = store.url
    query = parse_qs(urlsplit(url).query)
    if url.startswith("memory"):
        return len(store._sessions) + len(store._tasks)  # type: ignore[attr-defined]
    if url.startswith("sqlite"):
        with sqlite3.connect(urlsplit(url).path) as db:
            return int(
                db.execute(
                    "SELECT (SELECT count(*) FROM sessions) + count(*) FROM tasks"
                ).fetchone()[0]
            )
    if url.startswith("postgres"):
        import psycopg

        schema = query["schema"][0]
        with psycopg.connect(POSTGRES_URL) as conn:
            row = conn.execute(
                f'SELECT (SELECT count(*) FROM "{schema}".sessions) + count(*) FROM "{schema}".tasks'
            ).fetchone()
            return int(row[0]) if row else 0
    if url.startswith("redis"):
        import redis

        client: Any = redis.Redis.from_url(REDIS_URL)
        return sum(1 for _ in client.scan_iter(match=query["prefix"][0] + "*", count=1000))
    return None


def test_purge_removes_old_complete_sessions_and_nothing_else(store: TaskStore) -> None:
    make(store, "recent", 3, 100.0)
    run(store, 3, 500.0)
    make(store, "running", 3, 100.0)
    run(store, 1, 150.0, finish=False)
    before = raw_count(store)

    make(store, "old", 4, 100.0, priority=5)
    run(store, 4, 200.0)
    assert store.purge(before=300.0, limit=10) == ["old"]

    assert store.get_session("old") is None
    assert store.get_task("old_0") is None and store.results("old") == []
    assert raw_count(store) == before
    assert store.get_session("recent") is not None and len(store.results("recent")) == 3
    assert sum(store.count_states("running").values()) == 3
    assert store.purge(before=10_000.0, limit=10) == ["recent"]  # running: never
    assert store.get_session("running") is not None


def test_purge_takes_bounded_batches_oldest_first(store: TaskStore) -> None:
    for i in range(5):
        make(store, f"s{i}", 1, 100.0 + i)
        run(store, 1, 200.0)
    assert store.purge(before=300.0, limit=2) == ["s0", "s1"]
    assert store.purge(before=300.0, limit=10) == ["s2", "s3", "s4"]
    assert store.purge(before=300.0, limit=10) == []


@pytest.mark.slow
def test_the_sqlite_file_shrinks_after_a_purge(tmp_path: Path) -> None:
    path = tmp_path / "grid.db"
    store = open_store(f"sqlite://{path}")
    try:
        make(store, "big", 5000, 100.0, pad=b"x" * 1000)
        run(store, 5000, 200.0)

        def size() -> int:
            with sqlite3.connect(path) as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return path.stat().st_size

        full = size()
        assert store.purge(before=300.0) == ["big"]
        assert size() < full / 5, (full, size())
    finally:
        store.close()


def test_the_sqlite_wal_is_cut_back_after_a_burst(tmp_path: Path) -> None:
    """A burst between two checkpoints grows the WAL; once it is checkpointed, the next write
    restarts it and hands the space back down to the limit (SQLite alone never shrinks it)."""
    from htcgrid.store.sqlite_db import WAL_LIMIT_BYTES

    path = tmp_path / "grid.db"
    wal = tmp_path / "grid.db-wal"
    store = open_store(f"sqlite://{path}")
    try:
        pad = b"x" * 4000
        make(store, "burst", 6000, 100.0, pad=pad)  # one transaction of ~24 MiB and more
        burst = wal.stat().st_size
        assert burst > WAL_LIMIT_BYTES, burst
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0] == 0
        make(store, "after", 1, 200.0)  # the next writer restarts the WAL from its start
        assert wal.stat().st_size <= WAL_LIMIT_BYTES, (burst, wal.stat().st_size)
    finally:
        store.close()
