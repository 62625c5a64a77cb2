"""The SQLite file under the task store: its schema, one connection per thread in WAL mode,
write transactions, waiting for another connection's commit (woken by ``sqlite_wake``), and
the grid's metadata table. Its WAL is checkpointed off the commits' path
(``sqlite_checkpoint``)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from htcgrid.errors import BackendUnavailable, ConfigurationError, GridError, StorageFull
from htcgrid.store.sqlite_checkpoint import CHECKPOINTS
from htcgrid.store.sqlite_errors import Connection, connect
from htcgrid.store.sqlite_wake import WakeBoard, wake_folder

# SQLite reuses its WAL from the start after a checkpoint but never shrinks it: without a limit
# the file stays at the high-water mark of the busiest moment between two checkpoints. With
# one, a WAL that a burst grew past it is cut back to it when the next writer restarts it.
WAL_LIMIT_BYTES = 16 * 1024 * 1024
RESTART_FRAMES = 256  # a WAL of this many pages, all checkpointed, is started over
INLINE_FRAMES = 4000  # past this, a commit checkpoints too (a burst outruns the checkpointer)

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    function TEXT NOT NULL,
    priority INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    timeout_seconds REAL NOT NULL,
    retry_on_error INTEGER NOT NULL,
    task_count INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    done_count INTEGER NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0,
    retried INTEGER NOT NULL DEFAULT 0,
    retention_seconds REAL,
    poison_after INTEGER,
    cache_seconds REAL
);
CREATE INDEX IF NOT EXISTS sessions_by_time ON sessions (created_at);
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    function TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    timeout_seconds REAL NOT NULL,
    retry_on_error INTEGER NOT NULL,
    owner TEXT,
    lease_expires_at REAL,
    payload BLOB,
    payload_ref TEXT,
    output BLOB,
    output_ref TEXT,
    error TEXT,
    log TEXT,
    done_seq INTEGER,
    submitted_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    evidence TEXT,
    cached INTEGER NOT NULL DEFAULT 0,
    tenant TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS tasks_by_session ON tasks (session_id, idx);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks (session_id, state);
CREATE INDEX IF NOT EXISTS tasks_leases ON tasks (lease_expires_at) WHERE state = 'processing';
CREATE INDEX IF NOT EXISTS tasks_done ON tasks (session_id, done_seq) WHERE done_seq IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


NEW_COLUMNS = [
    ("sessions", "retried", "INTEGER NOT NULL DEFAULT 0"),
    ("sessions", "retention_seconds", "REAL"),
    ("sessions", "poison_after", "INTEGER"),
    ("tasks", "evidence", "TEXT"),
    ("sessions", "cache_seconds", "REAL"),
    ("tasks", "cached", "INTEGER NOT NULL DEFAULT 0"),
    ("tasks", "tenant", "TEXT NOT NULL DEFAULT ''"),
]

# The queue, by owner (``sqlite_share``). It replaced ``tasks_queue`` (priority DESC, seq);
# made after the new columns, as a file from before fair share lacks ``tenant`` until then.
QUEUE_INDEX = """
DROP INDEX IF EXISTS tasks_queue;
CREATE INDEX IF NOT EXISTS tasks_queue_by_tenant ON tasks (tenant, priority DESC, seq)
    WHERE state = 'pending';
"""


class SQLiteFile:
    """One grid's SQLite file, opened (and its schema created) by every process that uses it."""

    def __init__(self, path: Path, poll_seconds: float) -> None:
        self.path = path
        self.poll_seconds = poll_seconds
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._checkpoint_lock = threading.Lock()
        self._checkpoint_conn: Connection | None = None
        self._closed = False
        self.wakes = WakeBoard(wake_folder(path), poll_seconds)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.is_file() or self.path.stat().st_size == 0:
                _create(self.path)
            self._conn().executescript(SCHEMA)
            _add_new_columns(self._conn())
            self._conn().executescript(QUEUE_INDEX)
        except StorageFull:
            raise
        except (OSError, sqlite3.Error, BackendUnavailable) as exc:
            raise ConfigurationError(
                f"cannot open the task store {self.path}: {exc}; check that its folder exists "
                "and you can write to it"
            ) from exc

    # ---- connections --------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, timeout_seconds=30)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=30000")
                conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
                conn.execute(f"PRAGMA wal_autocheckpoint={INLINE_FRAMES}")
            except BaseException:
                conn.close()  # a full or failing disk: no half-set-up connection is kept
                raise
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
            with self._checkpoint_lock:
                self._closed = False  # a store used again after close()
            CHECKPOINTS.add(self)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (a full disk)
                conn.execute("ROLLBACK")
            raise
        CHECKPOINTS.committed()

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the file, as far as no reader needs it (``PASSIVE``:
        waits for nobody); called by the process's checkpointer."""
        with self._checkpoint_lock:
            if self._closed:
                return
            if self._checkpoint_conn is None:
                self._checkpoint_conn = connect(self.path, timeout_seconds=30)
                self._checkpoint_conn.execute("PRAGMA busy_timeout=0")  # never wait for a lock
            conn = self._checkpoint_conn
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if busy or frames < RESTART_FRAMES or copied < frames:
                return
            # All of the WAL is in the file. Only a writer that began after that may start it
            # over, and here one rarely does (another has begun before, or a reader is on
            # it): without this write of the header's own value the WAL grew without end.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            with contextlib.suppress(GridError, sqlite3.Error):  # locked: the next pass
                conn.execute(f"PRAGMA user_version={int(version)}")

    def vacuum(self) -> None:
        """Rewrite the file without its free pages, and make later purges shrink it at once
        (``auto_vacuum=INCREMENTAL``, which a file made before htcgrid set it lacks). Needs
        free disk space about the size of the file, and blocks writers while it runs."""
        conn = self._conn()
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("VACUUM")

    def close(self) -> None:
        CHECKPOINTS.remove(self)
        with self._checkpoint_lock:
            self._closed = True
            if self._checkpoint_conn is not None:
                self._checkpoint_conn.close()
                self._checkpoint_conn = None
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
        self.wakes.close()

    def _poll(self, probe: Any, timeout_seconds: float, topic: str) -> Any:
        """Evaluate ``probe`` now and again after every commit by another connection,
        until it returns something truthy or the timeout passes; returns its last value.
        Commits of ``topic`` wake the wait at once (``WakeBoard.notify``); others are seen
        within the board's fallback period."""
        conn = self._conn()
        deadline = time.monotonic() + timeout_seconds
        version = None
        with self.wakes.listening(topic) as listener:
            while True:
                current = conn.execute("PRAGMA data_version").fetchone()[0]
                if current != version:
                    version = current
                    value = probe()
                    if value:
                        return value
                left = deadline - time.monotonic()
                if left <= 0:
                    return value
                listener.wait(left)

    # ---- grid metadata ------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta_if_absent(self, key: str, value: str) -> str:
        self._conn().execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
        found = self.get_meta(key)
        return value if found is None else found

    def put_meta(self, key: str, value: str) -> None:
        self._conn().execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def list_meta(self, prefix: str) -> dict[str, str]:
        rows = self._conn().execute(
            "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
        )
        return {str(k): str(v) for k, v in rows}

    def delete_meta(self, key: str) -> None:
        self._conn().execute("DELETE FROM meta WHERE key = ?", (key,))


def _create(path: Path) -> None:
    """Make a new file that gives the pages a purge frees back to the file system: SQLite
    takes ``auto_vacuum`` only before the first table and before WAL mode."""
    conn = connect(path, timeout_seconds=30)
    try:
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def _add_new_columns(db: sqlite3.Connection) -> None:
    """Columns added since a grid file was made (``CREATE TABLE IF NOT EXISTS`` leaves an old
    table as it is); two processes opening an old file at once may both try: one wins."""
    present = {
        (table, row[1])
        for table in ("sessions", "tasks")
        for row in db.execute(f"PRAGMA table_info({table})")
    }
    for table, name, declaration in NEW_COLUMNS:
        if (table, name) not in present:
            try:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")
                if name == "tenant":  # live tasks of an older file: their session's owner
                    db.execute(
                        "UPDATE tasks SET tenant = (SELECT owner FROM sessions "
                        "WHERE id = tasks.session_id) WHERE state IN ('pending', 'processing')"
                    )
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):
                    raise
