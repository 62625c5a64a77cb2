"""``memory://``: blobs in a dict, for tests and in-process grids."""

from __future__ import annotations

import threading

from htcgrid.dataplane.base import DataPlane
from htcgrid.dataplane.keys import check
from htcgrid.errors import NotFound


class MemoryDataPlane(DataPlane):
    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self._blobs[check(key)] = bytes(data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        with self._lock:
            if check(key) in self._blobs:
                return False
            self._blobs[key] = bytes(data)
            return True

    def get(self, key: str) -> bytes:
        with self._lock:
            try:
                return self._blobs[check(key)]
            except KeyError:
                raise NotFound(f"no data at {key}") from None

    def delete(self, key: str) -> None:
        with self._lock:
            self._blobs.pop(check(key), None)

    def delete_prefix(self, prefix: str) -> int:
        with self._lock:
            doomed = [k for k in self._blobs if k.startswith(prefix)]
            for k in doomed:
                del self._blobs[k]
            return len(doomed)
