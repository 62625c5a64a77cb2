"""``redis://host:port/db?prefix=htcgrid:``: blobs as Redis strings under ``<prefix>data:``.

The URL rules, the eviction-policy check and the error mapping are the task store's
(``htcgrid.store.redis``), so one URL can serve both roles; the ``data:`` namespace keeps a
blob key from ever meeting a task store key.
"""

from __future__ import annotations

from typing import cast

from htcgrid.dataplane.base import DataPlane
from htcgrid.dataplane.keys import check
from htcgrid.errors import NotFound
from htcgrid.store.redis_connect import connect, translate_errors

SCAN_COUNT = 1000
UNLINK_BATCH = 500
GLOB_SPECIAL = "\\*?[]"


def escape_glob(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + c if c in GLOB_SPECIAL else c for c in text)


class RedisDataPlane(DataPlane):
    """Durability is the server's: on return the value is in Redis's memory, and on disk as
    far as its ``appendonly``/``appendfsync`` settings promise."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client, prefix = connect(url)
        self.namespace = prefix + "data:"

    @translate_errors
    def put(self, key: str, data: bytes) -> None:
        self._client.set(self.namespace + check(key), data)

    @translate_errors
    def put_if_absent(self, key: str, data: bytes) -> bool:
        return bool(self._client.set(self.namespace + check(key), data, nx=True))

    @translate_errors
    def get(self, key: str) -> bytes:
        value = cast(bytes | None, self._client.get(self.namespace + check(key)))
        if value is None:
            raise NotFound(f"no data at {key}")
        return value

    @translate_errors
    def delete(self, key: str) -> None:
        self._client.unlink(self.namespace + check(key))

    @translate_errors
    def delete_prefix(self, prefix: str) -> int:
        pattern = escape_glob(self.namespace + prefix) + "*"
        removed = 0
        batch: list[bytes] = []
        for key in self._client.scan_iter(match=pattern, count=SCAN_COUNT):
            batch.append(key)
            if len(batch) >= UNLINK_BATCH:
                removed += self._client.unlink(*batch)
                batch.clear()
        if batch:
            removed += self._client.unlink(*batch)
        return removed

    def close(self) -> None:
        self._client.close()
