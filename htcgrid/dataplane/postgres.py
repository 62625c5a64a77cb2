"""``postgresql://…?schema=htcgrid``: blobs in the ``blobs`` table beside the task store.

The table comes from the same versioned migrations as the task store's (see
``htcgrid.store.postgres_migrations``), so either role may be opened first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import TupleRow

from htcgrid.dataplane.base import DataPlane
from htcgrid.dataplane.keys import check
from htcgrid.errors import NotFound
from htcgrid.store.postgres_migrations import Database
from htcgrid.urls import redact

Connection = psycopg.Connection[TupleRow]


def _prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (byte-wise order),
    or None if there is none."""
    stem = prefix.rstrip("\U0010ffff")
    return stem[:-1] + chr(ord(stem[-1]) + 1) if stem else None


class PostgresDataPlane(DataPlane):
    """Blobs by key; ``BackendUnavailable`` from every method when the server is gone."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._db = Database(url, "htcgrid-blobs", workers=1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.url)!r})"

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        with self._db.connection() as conn:
            yield conn

    def put(self, key: str, data: bytes) -> None:
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO blobs (key, data) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET data = excluded.data",
                (check(key), bytes(data)),
            )

    def put_if_absent(self, key: str, data: bytes) -> bool:
        with self._connection() as conn:
            cur = conn.execute(
                "INSERT INTO blobs (key, data) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                (check(key), bytes(data)),
            )
            return cur.rowcount == 1

    def get(self, key: str) -> bytes:
        with self._connection() as conn:
            row = conn.execute("SELECT data FROM blobs WHERE key = %s", (check(key),)).fetchone()
        if row is None:
            raise NotFound(f"no data at {key}")
        return bytes(row[0])

    def delete(self, key: str) -> None:
        with self._connection() as conn:
            conn.execute("DELETE FROM blobs WHERE key = %s", (check(key),))

    def delete_prefix(self, prefix: str) -> int:
        if not prefix:
            raise ValueError("refusing to delete the whole data plane")
        # starts_with() takes the prefix literally (LIKE would read _ and % as wildcards);
        # the range lets the primary key find the rows.
        end = _prefix_end(prefix)
        bound = "" if end is None else "AND key < %(end)s"
        with self._connection() as conn:
            cur = conn.execute(
                f"DELETE FROM blobs WHERE key >= %(p)s {bound} AND starts_with(key, %(p)s)",
                {"p": prefix, "end": end},
            )
            return cur.rowcount

    def close(self) -> None:
        self._db.close()
