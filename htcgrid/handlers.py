"""Built-in handlers, handy for trying a grid before writing one's own."""

from __future__ import annotations

import time
from typing import Any


def echo(event: Any, context: Any) -> Any:
    """Return the event unchanged (the default function of ``htcgrid up``)."""
    return event


def mock_compute(event: dict[str, Any], context: Any) -> int:
    """HTC-Grid's mock engine: sleep ``worker_arguments[0]`` ms, return that number."""
    delay_ms = int(event["worker_arguments"][0])
    time.sleep(delay_ms / 1000)
    return delay_ms
