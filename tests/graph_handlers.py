"""The handler of the task graph tests: ``event["op"]`` says what a task does; each task notes
its run in the file ``event["runs"]`` names, so a test counts which tasks ran."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def handle(event: Any, context: Any) -> Any:
    if isinstance(event, dict) and event.get("runs"):
        with open(event["runs"], "a") as f:
            f.write(f"{event.get('name')}\n")
    op = event.get("op", "add") if isinstance(event, dict) else "echo"
    return OPS[op](event, context)


def add(event: Any, context: Any) -> Any:
    """``event["value"]`` plus the totals of its inputs, the names it saw, and whether the
    event carried the same inputs."""
    if event.get("fail"):
        raise ValueError(f"{event.get('name')} was told to fail")
    inputs = context.inputs
    return {
        "name": event.get("name"),
        "total": event.get("value", 0) + sum(i["total"] for i in inputs),
        "seen": [i["name"] for i in inputs],
        "in_event": event.get("inputs") == inputs,
    }


def wait_file(event: Any, context: Any) -> Any:
    """Runs until the file ``event["path"]`` exists (60 s at most)."""
    deadline = time.monotonic() + 60
    while not Path(event["path"]).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"name": event.get("name"), "total": 0}


def big(event: Any, context: Any) -> Any:
    """An output of ``event["size"]`` characters; with inputs, their sizes."""
    if "size" in event:
        return {"name": event["name"], "total": 0, "blob": "x" * event["size"]}
    return {"sizes": [len(i["blob"]) for i in context.inputs]}


def echo(event: Any, context: Any) -> Any:
    return {"event": event, "inputs": context.inputs, "pid": os.getpid()}


OPS = {"add": add, "wait_file": wait_file, "big": big, "echo": echo}
