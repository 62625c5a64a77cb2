"""Handlers of the memoization tests: each run leaves a line in the file its event names, so a
test sees which tasks ran and which were answered from the cache."""

from __future__ import annotations

from typing import Any


def logged(event: dict[str, Any], context: Any) -> Any:
    """Note the run, then answer: ``{"x", "twice"}``, ``"y" * big`` for ``big``, or raise
    for ``fail``. ``version`` tells two deployed packages of this handler apart."""
    with open(event["log"], "a") as runs:
        runs.write(f"{event['x']}\n")
    if event.get("fail"):
        raise ValueError(f"refused {event['x']}")
    if event.get("big"):
        return "y" * int(event["big"])
    return {"x": event["x"], "twice": 2 * event["x"], "version": VERSION}


VERSION = 1
