"""``sqlite:///path/grid.db``: blobs in a table of the same file as the task store."""

from __future__ import annotations

import sqlite3
import threading

from htcgrid.dataplane.base import DataPlane
from htcgrid.dataplane.keys import check
from htcgrid.errors import NotFound
from htcgrid.urls import local_path


class SQLiteDataPlane(DataPlane):
    def __init__(self, url: str) -> None:
        self.url = url
        self.path = local_path(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().execute("CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, data BLOB)")

    def _db(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def put(self, key: str, data: bytes) -> None:
        self._db().execute("INSERT OR REPLACE INTO blobs VALUES (?, ?)", (check(key), data))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        cur = self._db().execute("INSERT OR IGNORE INTO blobs VALUES (?, ?)", (check(key), data))
        return cur.rowcount == 1

    def get(self, key: str) -> bytes:
        row = self._db().execute("SELECT data FROM blobs WHERE key = ?", (check(key),)).fetchone()
        if row is None:
            raise NotFound(f"no data at {key}")
        return bytes(row[0])

    def delete(self, key: str) -> None:
        self._db().execute("DELETE FROM blobs WHERE key = ?", (check(key),))

    def delete_prefix(self, prefix: str) -> int:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        cur = self._db().execute("DELETE FROM blobs WHERE key LIKE ? ESCAPE '\\'", (escaped + "%",))
        return cur.rowcount
