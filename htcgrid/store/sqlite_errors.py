"""SQLite's errors at the edge of the task store: a full disk becomes ``StorageFull``, and a
file that cannot be opened, read or written, or that another writer held locked past the busy
timeout, becomes ``BackendUnavailable``, each in one line naming the database file and what to
do (callers retry an unavailable store). Everything else passes unchanged."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from htcgrid.errors import BackendUnavailable, GridError, StorageFull

# primary result codes (the low byte of an extended code)
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
UNAVAILABLE = {SQLITE_READONLY, SQLITE_IOERR, SQLITE_CANTOPEN}


def mount_point(path: Path) -> Path:
    """The root of the file system that holds ``path`` (or would, once it exists)."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    while not os.path.ismount(current) and current != current.parent:
        current = current.parent
    return current


def free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(mount_point(path)).free
    except OSError:
        return None


def translate(path: Path, exc: sqlite3.Error) -> GridError | None:
    """The grid's error for SQLite's ``exc`` on the database file ``path``; None for others."""
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    if code == SQLITE_FULL:
        free = free_bytes(path)
        left = "" if free is None else f" ({free // 1024} KiB free)"
        return StorageFull(
            f"the task store {path} is out of space: its file system {mount_point(path)} is "
            f"full{left}; free space on it or delete finished sessions, then retry"
        )
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        return BackendUnavailable(
            f"the task store {path} stayed locked by another writer past the busy timeout "
            f"({exc}): a long purge or vacuum, or a machine too loaded to finish a write; retry"
        )
    if code in UNAVAILABLE:
        return BackendUnavailable(
            f"the task store {path} cannot be used ({exc}): check the file system "
            f"{mount_point(path)} is mounted, writable and healthy"
        )
    return None


class Connection(sqlite3.Connection):
    """A connection whose statements raise the grid's errors (see ``translate``)."""

    database_path: Path = Path()

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as exc:
            error = translate(self.database_path, exc)
            if error is None:
                raise
            raise error from exc

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.Error as exc:
            error = translate(self.database_path, exc)
            if error is None:
                raise
            raise error from exc

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(sql_script)
        except sqlite3.Error as exc:
            error = translate(self.database_path, exc)
            if error is None:
                raise
            raise error from exc


def connect(path: Path, timeout_seconds: float) -> Connection:
    """Open ``path`` with statements that raise the grid's errors."""
    try:
        conn = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            timeout=timeout_seconds,
            factory=Connection,
        )
    except sqlite3.Error as exc:
        error = translate(path, exc)
        if error is None:
            raise
        raise error from exc
    conn.database_path = path
    return conn
