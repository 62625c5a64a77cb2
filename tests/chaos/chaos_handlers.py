"""The worker function of the chaos suite: it records every run, then misbehaves on request.

Each run appends ``"<task_id> <attempt> <pid>"`` to the file named in the event (one short
``O_APPEND`` write, atomic between processes), so the suite counts executions independently of
the grid. The answer depends on the input only (``expected``), so the suite can check each
recorded result. Faults (``"fault"`` in the event) strike on the first attempt only, so a task
that the grid retries correctly always ends up finished.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

BIG_EVERY = 25  # every 25th task answers with more than the inline limit (data plane)


def expected(index: int) -> Any:
    """What the handler returns for task ``index``, whatever happened on the way."""
    if index % BIG_EVERY == BIG_EVERY - 1:
        return {"i": index, "pad": "p" * 70_000}
    return {"i": index, "square": index * index}


def counted(event: dict[str, Any], context: Any) -> Any:
    line = f"{context.task_id} {context.attempt} {os.getpid()}\n".encode()
    fd = os.open(event["runs"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    if context.attempt == 1 and event.get("fault"):
        _fault(event["fault"])
    if event.get("sleep_ms"):
        time.sleep(event["sleep_ms"] / 1000)
    return expected(event["i"])


def _fault(kind: str) -> None:
    if kind == "crash":
        os._exit(3)
    elif kind == "memory":
        hog = bytearray(600 * 1024 * 1024)  # over the agent's --worker-memory-mb
        for page in range(0, len(hog), 4096):
            hog[page] = 1
        time.sleep(30)
    elif kind == "hang":
        time.sleep(3600)  # past the session's timeout
    elif kind == "spew":
        chunk = "x" * 1023 + "\n"
        for _ in range(4 * 1024):  # 4 MiB of output
            sys.stdout.write(chunk)
        sys.stdout.flush()
    elif kind == "fork":
        subprocess.Popen(["sleep", "600"], start_new_session=True)  # must not outlive the task
    else:
        raise ValueError(f"unknown fault {kind!r}")
