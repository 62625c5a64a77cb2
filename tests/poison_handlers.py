"""Handlers that kill their own worker, for the poison-evidence tests."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

BALLAST_MB = 80


def die_loudly(event: Any, context: Any) -> None:
    """Writes a line to file descriptor 1 (what the worker captures), holds ``BALLAST_MB`` MiB
    for a second (the agent samples its memory meanwhile), then kills its worker by SIGKILL."""
    os.write(1, f"task {event} holds {BALLAST_MB} MiB and is about to die\n".encode())
    ballast = b"x" * (BALLAST_MB << 20)
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGKILL)
    del ballast  # pragma: no cover - never reached


def print_then_exit(event: Any, context: Any) -> None:
    """Prints (to ``sys.stdout`` and ``sys.stderr``, the last line unfinished) and writes to
    file descriptor 1 in between, then ends its worker at once: nothing is flushed."""
    print(f"task {event} printed this")
    os.write(1, b"then wrote to fd 1\n")
    print("and its last words", end="", file=sys.stderr)
    os._exit(3)
