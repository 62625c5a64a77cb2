"""Helpers for tests that watch real processes: bounded polling and the process table."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def until(
    predicate: Callable[[], Any],
    timeout: float = 30,
    what: str = "condition",
    every_seconds: float = 0.02,
) -> Any:
    """Poll ``predicate`` every ``every_seconds`` until it returns something truthy; fail
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_seconds)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        for child in children(frontier.pop()):
            found.add(child)
            frontier.append(child)
    return found


def signal_each(pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to each pid that still exists: a process listed a moment ago may since
    have been reaped (a zombie child is listed, and takes a signal, until its parent waits)."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue


def stop_all(procs: Iterable[subprocess.Popen[Any]], grace: float = 30) -> None:
    """SIGTERM every process still running (SIGCONT first: a frozen one cannot stop), then
    wait for each; one that outlives ``grace`` seconds is killed."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
