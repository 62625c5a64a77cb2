"""Handlers for the common-data tests. Importing this module in a worker makes the data plane
count what it reads of sessions' common data, at its boundary (its own ``get``), so a test
can tell how often each worker process read it."""

from __future__ import annotations

import os
from typing import Any

from htcgrid.dataplane.sqlite import SQLiteDataPlane

READS = {"common": 0}
_get = SQLiteDataPlane.get


def _counting_get(self: SQLiteDataPlane, key: str) -> bytes:
    if key.endswith("/common"):
        READS["common"] += 1
    return _get(self, key)


SQLiteDataPlane.get = _counting_get  # type: ignore[method-assign]


def common_size(event: Any, context: Any) -> dict[str, Any]:
    common = context.common
    size = None if common is None else len(common)
    return {"pid": os.getpid(), "reads": READS["common"], "size": size}


def common_value(event: Any, context: Any) -> Any:
    return context.common
