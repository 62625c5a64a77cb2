"""Worker processes of one agent: start, feed, watch, kill and replace them."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections import deque
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from htcgrid.agent.worker import WorkerConfig, main
from htcgrid.models import ErrorInfo, Lease

_CTX = multiprocessing.get_context("spawn")


class WorkerSlot:
    """One worker process and the tasks sent to it, oldest (the running one) first."""

    def __init__(self, number: int, config: WorkerConfig) -> None:
        self.number = number
        self.config = config
        self.inflight: deque[Lease] = deque()
        self.head_started = 0.0  # monotonic time the running task started
        self.ready = False
        self.init_error: ErrorInfo | None = None
        self.tasks_run = 0
        self._start()

    def _start(self) -> None:
        parent, child = _CTX.Pipe()
        self.conn: Connection = parent
        self.process: BaseProcess = _CTX.Process(
            target=main,
            args=(child, self.config),
            name=f"htcgrid-worker-{self.number}",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.ready = False

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def sentinel(self) -> int:
        return self.process.sentinel

    def send(self, lease: Lease, payload: bytes, now: float) -> None:
        if not self.inflight:
            self.head_started = now
        self.inflight.append(lease)
        self.conn.send(
            (lease.task_id, lease.session_id, lease.attempt, payload, lease.timeout_seconds)
        )

    def receive(self) -> list[tuple[Any, ...]]:
        """Every message waiting on the pipe (empty if the worker died)."""
        messages = []
        with contextlib.suppress(EOFError, OSError):
            while self.conn.poll():
                messages.append(self.conn.recv())
        return messages

    def head_done(self, now: float) -> Lease:
        lease = self.inflight.popleft()
        self.head_started = now
        self.tasks_run += 1
        return lease

    def alive(self) -> bool:
        return self.process.is_alive()

    def exit_reason(self) -> str:
        self.process.join(timeout=1)
        code = self.process.exitcode
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                return f"worker process killed by {signal.Signals(-code).name}"
        return f"worker process exited with code {code}"

    def restart(self) -> list[Lease]:
        """Kill the process (if alive) and start a fresh one; returns the tasks it held."""
        self.kill()
        held = list(self.inflight)
        self.inflight.clear()
        self._start()
        return held

    def kill(self) -> None:
        if self.config.runtime == "provided" and self.process.pid:
            # the worker leads a group holding its bootstrap and what that started
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()

    def stop(self, timeout: float = 1.0) -> None:
        """Ask an idle worker to exit, then make sure it has."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(timeout)
        self.kill()


def wait_deadline(now: float, *deadlines: float | None) -> float:
    """Seconds from ``now`` to the earliest of ``deadlines`` (never negative)."""
    chosen = [d for d in deadlines if d is not None]
    return max(0.0, min(chosen) - now) if chosen else 0.5


def monotonic() -> float:
    return time.monotonic()
