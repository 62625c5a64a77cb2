"""What a task leaves running ends with the task.

A Python worker is the subreaper of everything its tasks start: a process a handler spawned and
abandoned (``subprocess.Popen(["sleep", "40"])`` and return) is re-parented to the worker
instead of to init. After each task the worker kills its children, and their children as they
come to it, and reaps them all, so nothing a task started outlives it or stays a zombie.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

PR_SET_CHILD_SUBREAPER = 36
ROUNDS = 20  # a killed child's own children are re-parented to us: take them next round


def become_subreaper() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)


def children(pid: int | str = "self") -> list[int]:
    """A process's children (from every thread of it), zombies included."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                fd = os.open(f"/proc/{pid}/task/{task}/children", os.O_RDONLY)
                try:
                    found += [int(child) for child in os.read(fd, 65536).split()]
                finally:
                    os.close(fd)
    return found


def kill_descendants(pid: int) -> None:
    """SIGKILL everything below ``pid`` (a worker about to be killed: what its running task
    started must not outlive it)."""
    frontier = children(pid)
    seen: set[int] = set()
    while frontier:
        child = frontier.pop()
        if child in seen:
            continue
        seen.add(child)
        frontier += children(child)
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)


def has_children() -> bool:
    """One system call: whether any child, running or exited, is left (reaping none)."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def end_leftovers() -> int:
    """Kill and reap every process the last task left behind; returns how many there were."""
    if not has_children():  # the common case, in microseconds
        return 0
    ended = 0
    for _ in range(ROUNDS):
        pids = children()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)
        ended += len(pids)
    return ended
