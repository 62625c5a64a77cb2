"""The WAL of a grid file is checkpointed by a thread of each process, not by the commits of
a steady load: a commit that took the WAL past 1,000 pages copied it into the file and synced
both first (a few ms in one round trip out of ~40). A burst of commits that outruns the thread
still checkpoints inline, past 4,000 pages, so the WAL stays bounded."""

from __future__ import annotations

import gc
from pathlib import Path

from procs import until

from htcgrid.models import NewTask, SessionSpec
from htcgrid.store.sqlite import SQLiteTaskStore
from htcgrid.store.sqlite_checkpoint import Checkpointer
from htcgrid.store.sqlite_db import INLINE_FRAMES


def test_commits_leave_the_wal_to_the_checkpointer(tmp_path: Path) -> None:
    store = SQLiteTaskStore(f"sqlite://{tmp_path / 'grid.db'}")
    try:
        inline = store._conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert inline == INLINE_FRAMES > 1000  # SQLite's own: every 1,000 pages
        small = (tmp_path / "grid.db").stat().st_size
        tasks = [NewTask(i, 0, b'"' + b"x" * 200 + b'"') for i in range(5000)]
        store.create_session(SessionSpec("s", len(tasks), owner="alice"), tasks, 0.0)
        # the commit left its pages in the WAL; the checkpointer copies them into the file
        grown = lambda: (tmp_path / "grid.db").stat().st_size > small + 1_000_000  # noqa: E731
        until(grown, 10, "the WAL checkpointed into the grid file")
    finally:
        store.close()


def test_a_burst_of_writes_keeps_the_wal_bounded(tmp_path: Path) -> None:
    """Back-to-back write transactions leave the checkpointer no moment to start the WAL
    over; the commits' own checkpoint, past INLINE_FRAMES pages, does."""
    store = SQLiteTaskStore(f"sqlite://{tmp_path / 'grid.db'}")
    wal = tmp_path / "grid.db-wal"
    largest = 0
    try:
        for i in range(6000):  # ~15 KB of WAL each: 90 MB in all
            store.put_meta(f"k{i % 10}", "x" * 3000)
            if i % 50 == 0:
                largest = max(largest, wal.stat().st_size)
    finally:
        store.close()
    assert largest <= 2 * INLINE_FRAMES * 4096, f"the WAL grew to {largest:,} bytes"


class File:
    def __init__(self, failures: int = 0) -> None:
        self.calls = 0
        self.failures = failures

    def checkpoint(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError("database or disk is full")


def test_the_thread_runs_while_a_file_is_open_and_outlives_failures() -> None:
    checkpoints = Checkpointer(period_seconds=0.01)
    failing, other = File(failures=3), File()
    checkpoints.add(failing)
    checkpoints.add(other)
    assert checkpoints.running()
    until(lambda: failing.calls > 4 and other.calls > 4, 10, "passes after the failures")
    checkpoints.remove(failing)
    calls = failing.calls
    until(lambda: other.calls > 10, 10, "more passes")
    assert failing.calls <= calls + 1  # at most the pass that had already begun
    checkpoints.remove(other)
    until(lambda: not checkpoints.running(), 10, "the thread to end with the last file")
    checkpoints.add(other)  # and start again with a new one
    before = other.calls
    until(lambda: other.calls > before, 10, "a pass of the new thread")
    checkpoints.remove(other)


def test_a_file_nobody_holds_is_let_go() -> None:
    checkpoints = Checkpointer(period_seconds=0.01)
    held = [File()]  # the test's only reference
    checkpoints.add(held[0])
    until(lambda: held[0].calls > 0, 10, "a pass")
    held.clear()
    gc.collect()
    until(lambda: not checkpoints.running(), 10, "the thread to end")


def test_a_burst_of_commits_brings_the_pass_forward() -> None:
    checkpoints = Checkpointer(period_seconds=3600)
    file = File()
    checkpoints.add(file)
    try:
        for _ in range(64):
            checkpoints.committed()
        until(lambda: file.calls > 0, 10, "a pass before the period")
    finally:
        checkpoints.remove(file)
