"""A handler for the retry tests: odd tasks fail until a switch file exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def flaky(event: dict[str, Any], context: Any) -> int:
    if event["i"] % 2 and not Path(event["switch"]).exists():
        raise ValueError(f"task {event['i']} is not fixed yet")
    return int(event["i"]) * 10
