"""The worker function of benchmarks/features_bench.py: a no-op that answers its event's
``i``, and first reads the session's common data when the event asks (``"common": true``), as
a handler that uses it would (read once per worker per session, then cached)."""

from __future__ import annotations

import os
import time
from typing import Any


def work(event: Any, context: Any) -> Any:
    if not isinstance(event, dict):
        return event
    if "nap_ms" in event:  # the warm-ups: which worker ran it
        time.sleep(event["nap_ms"] / 1000)
        return os.getpid()
    if event.get("common"):
        common = context.common
        return len(common) if common is not None else -1
    return event.get("i")


def noop(x: int) -> int:
    """The Python function of the Executor rows (pickled; workers find this module too)."""
    return x


def nap(x: int) -> int:
    """The Executor rows' warm-up: which worker ran it."""
    time.sleep(0.02)
    return os.getpid()
