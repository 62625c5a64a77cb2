"""A small JSON document on the data plane that many writers change safely.

Every change is a new immutable *generation* claimed with ``put_if_absent``, so of two writers
that read generation g and both try to write g + 1, exactly one wins and the other reads again
and re-applies its change: no update is ever lost, on any backend. Layout, for a base key K::

    K        the head: {"generation": g, "value": ...}, a cache of the latest generation
    K.<g>    generation g (1, 2, …), written once and never changed

The head may lag behind (a slow winner can write it after a faster one), so a reader starts
from the head and follows ``K.<g+1>`` until it finds none. A head without a ``generation``
field is read as generation 0 holding the whole content, so documents written before
generations existed stay readable.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from htcgrid.dataplane.base import DataPlane
from htcgrid.errors import Conflict, NotFound

MAX_ATTEMPTS = 1000


class Document:
    def __init__(self, data: DataPlane, key: str) -> None:
        self.data = data
        self.key = key

    def read(self) -> Any:
        """The latest value, or None if the document was never written."""
        return self._latest()[1]

    def update(self, change: Callable[[Any], Any]) -> Any:
        """Apply ``change`` (old value or None → new value) atomically; returns the new value.

        ``change`` may run more than once (after a lost race) and may raise to abort."""
        for _ in range(MAX_ATTEMPTS):
            generation, value = self._latest()
            new = change(value)
            claimed = self.data.put_if_absent(
                f"{self.key}.{generation + 1}", json.dumps(new, sort_keys=True).encode()
            )
            if claimed:
                head = {"generation": generation + 1, "value": new}
                self.data.put(self.key, json.dumps(head, sort_keys=True).encode())
                return new
        raise Conflict(f"{self.key}: too many concurrent writers; try again")

    def _latest(self) -> tuple[int, Any]:
        generation, value = self._head()
        while True:
            try:
                raw = self.data.get(f"{self.key}.{generation + 1}")
            except NotFound:
                return generation, value
            generation, value = generation + 1, json.loads(raw)

    def _head(self) -> tuple[int, Any]:
        try:
            head = json.loads(self.data.get(self.key))
        except NotFound:
            return 0, None
        if isinstance(head, dict) and isinstance(head.get("generation"), int):
            return head["generation"], head.get("value")
        return 0, head
