"""A session's common data: one value (a dict, any JSON value, or bytes) stored once in the
data plane and given to every task of the session as ``context.common``.

Stored as one blob: ``b"b"`` + the bytes, or ``b"j"`` + the value's JSON. A worker reads it
at most once per session (``WorkerCommon``), on a task's first use of ``context.common``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from htcgrid.models import json_dumps, json_loads

SESSIONS_KEPT = 4  # sessions whose common data a worker keeps
BYTES, JSON = b"b", b"j"  # the blob's first byte: what follows


def encode(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return BYTES + bytes(value)
    return JSON + json_dumps(value)


def decode(blob: bytes) -> Any:
    kind, body = blob[:1], memoryview(blob)[1:]
    if kind == BYTES:
        return bytes(body)
    if kind == JSON:
        return json_loads(bytes(body))
    raise ValueError("not common data")


class WorkerCommon:
    """The common data of the last few sessions a worker ran, each read once: ``read`` gets
    a session's blob, or None when it has none."""

    def __init__(self, read: Callable[[str], bytes | None]) -> None:
        self.read = read
        self._kept: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session_id: str) -> Any:
        with self._lock:
            if session_id in self._kept:
                self._kept.move_to_end(session_id)
                return self._kept[session_id]
            blob = self.read(session_id)
            value = None if blob is None else decode(blob)
            self._kept[session_id] = value
            while len(self._kept) > SESSIONS_KEPT:
                self._kept.popitem(last=False)
            return value
