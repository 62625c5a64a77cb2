"""A handler for the CLI output tests: what it does is in the event."""

from __future__ import annotations

import time
from typing import Any


def handler(event: Any, context: Any) -> Any:
    if event["do"] == "set":
        return {"values": {1, 2}}
    if event["do"] == "fail":
        raise ValueError(f"no price for {event['name']}")
    if event["do"] == "sleep":
        time.sleep(event["seconds"])
    print("first line of the log")
    print(f"second: {event['text']}")
    return event["text"]
