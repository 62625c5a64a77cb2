"""Handlers the agent tests run in real worker processes."""

from __future__ import annotations

import ctypes
import os
import sys
import time
from pathlib import Path
from typing import Any


def echo(event: Any, context: Any) -> Any:
    print(f"echo {event!r} from task {context.task_id} attempt {context.attempt}")
    print("to stderr", file=sys.stderr)
    return event


def describe(event: Any, context: Any) -> dict[str, Any]:
    return {
        "function_name": context.function_name,
        "aws_request_id": context.aws_request_id,
        "invoked_function_arn": context.invoked_function_arn,
        "log_group_name": context.log_group_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "session_id": context.session_id,
        "task_id": context.task_id,
        "attempt": context.attempt,
        "pid": os.getpid(),
    }


def boom(event: Any, context: Any) -> None:
    raise ValueError(f"bad input {event!r}")


def exit_now(event: Any, context: Any) -> None:
    os._exit(1)


def segfault(event: Any, context: Any) -> None:
    ctypes.string_at(0)


def crash_on_first_attempt(event: Any, context: Any) -> str:
    if context.attempt == 1:
        os._exit(7)
    return "survived"


def sleep(event: dict[str, Any], context: Any) -> float:
    """Write our pid to ``event["pid_file"]`` (if given), then sleep ``event["seconds"]``."""
    if "pid_file" in event:
        Path(event["pid_file"]).write_text(str(os.getpid()))
    time.sleep(event["seconds"])
    return float(event["seconds"])


def big(event: int, context: Any) -> str:
    return "x" * event


def not_json(event: Any, context: Any) -> object:
    return object()


def shell_out(event: Any, context: Any) -> str:
    print("from python")
    os.write(1, b"straight to fd 1\n")
    os.system("echo from a shell; echo to stderr >&2")
    return "done"


def sized(event: str, context: Any) -> str:
    """``"<m>:<filler>"`` → a string whose JSON is ``m`` bytes (m ≥ 2), made from the event."""
    if not event:
        return ""
    wanted = int(event.split(":", 1)[0])
    seed = event or "r"
    return (seed * (wanted // max(len(seed), 1) + 1))[: wanted - 2].replace('"', "q")


def timed_sleep(event: dict[str, Any], context: Any) -> dict[str, float]:
    """Sleep ``seconds``; report when the handler really started and ended (epoch seconds).
    With ``mark_dir``, a file named after the task says it has started."""
    started = time.time()
    if "mark_dir" in event:
        (Path(event["mark_dir"]) / context.task_id).touch()
    time.sleep(event["seconds"])
    return {"start": started, "end": time.time(), "stream": context.log_stream_name}


def abandon(event: Any, context: Any) -> list[int]:
    """Start processes and return without waiting: a child, a grandchild, one that exits."""
    import subprocess

    child = subprocess.Popen(["sleep", "40"])
    shell = subprocess.run(
        ["sh", "-c", "sleep 40 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True
    )
    quick = subprocess.Popen(["true"])
    return [child.pid, int(shell.stdout), quick.pid]


def spawn_and_hang(event: dict[str, Any], context: Any) -> None:
    """Start ``sleep 40``, write its pid to ``event["pid_file"]``, then hang past any timeout."""
    import subprocess

    child = subprocess.Popen(["sleep", "40"])
    Path(event["pid_file"]).write_text(str(child.pid))
    time.sleep(60)


def hog(event: dict[str, Any], context: Any) -> int:
    """Hold ``event["mb"]`` MiB (touched, so resident) for ``event["seconds"]``."""
    block = bytearray(event["mb"] * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(event["seconds"])
    return len(block)
