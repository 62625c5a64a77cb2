"""The worker process: imports the handler once, then runs tasks sent by its agent.

Protocol over one duplex pipe (pickled tuples):
  worker → agent  ("ready",) | ("init_error", ErrorInfo)
  agent → worker  (task_id, session_id, attempt, payload_json: bytes, timeout_seconds)
  worker → agent  (task_id, attempt, ok: bool, output_json: bytes | ErrorInfo, log: str)
The worker ignores SIGINT and SIGTERM: only its agent decides when running work stops.
A task's log is what it printed (``sys.stdout``/``sys.stderr``) followed by what reached file
descriptors 1 and 2 meanwhile (C extensions, ``os.system``, subprocesses).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from htcgrid.agent.runtime import Handler, LambdaContext, error_info, load_handler
from htcgrid.models import ErrorInfo

TaskMessage = tuple[str, str, int, bytes, float]


@dataclass(frozen=True)
class WorkerConfig:
    handler: str
    paths: tuple[str, ...] = ()
    function_name: str = "default"
    function_version: str = "$LATEST"
    memory_mb: int = 0
    log_limit_bytes: int = 64 * 1024
    agent_id: str = ""
    runtime: str = "python"  # or "provided": a bootstrap behind the Lambda Runtime API
    timeout_seconds: float | None = None  # the function's own limit, if it was deployed with one


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its agent dies, so no worker outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class FdCapture:
    """Points file descriptors 1 and 2 of this process (and so of anything it starts, C code and
    subprocesses included) at an unnamed file, and hands out what each task added to it."""

    limit_bytes = 1 << 20  # start the file over once it is this big

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
        self.fd = self._file.fileno()
        for target in (1, 2):
            os.dup2(self.fd, target)
        self.mark = 0

    def start(self) -> None:
        self.mark = os.fstat(self.fd).st_size

    def take(self) -> str:
        """What was written since ``start()``."""
        end = os.fstat(self.fd).st_size
        written = os.pread(self.fd, end - self.mark, self.mark) if end > self.mark else b""
        if end > self.limit_bytes:
            os.ftruncate(self.fd, 0)
            os.lseek(self.fd, 0, os.SEEK_SET)  # the offset is shared with fds 1 and 2
        return written.decode(errors="replace")


def main(conn: Connection, config: WorkerConfig) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    if config.runtime == "provided":
        from htcgrid.agent.lambda_api import serve

        serve(conn, config)
        return
    try:
        handler = load_handler(config.handler, list(config.paths))
    except BaseException as exc:
        conn.send(("init_error", error_info(exc)))
        return
    conn.send(("ready",))
    capture = FdCapture()
    while True:
        try:
            message: TaskMessage | None = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        conn.send(run_one(handler, config, message, capture))


def run_one(
    handler: Handler, config: WorkerConfig, message: TaskMessage, capture: FdCapture | None = None
) -> tuple[Any, ...]:
    task_id, session_id, attempt, payload, timeout_seconds = message
    context = LambdaContext(
        function_name=config.function_name,
        function_version=config.function_version,
        memory_limit_in_mb=config.memory_mb,
        session_id=session_id,
        task_id=task_id,
        attempt=attempt,
        deadline=time.monotonic() + timeout_seconds,
        log_stream_name=f"{time.strftime('%Y/%m/%d')}/[{config.function_version}]{config.agent_id}",
    )
    captured = io.StringIO()
    ok = True
    result: bytes | ErrorInfo
    if capture is not None:
        capture.start()
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        try:
            value = handler(json.loads(payload), context)
            result = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        except BaseException as exc:
            ok, result = False, error_info(exc)
    log = captured.getvalue() + (capture.take() if capture is not None else "")
    return (task_id, attempt, ok, result, _tail(log, config.log_limit_bytes))


def _tail(log: str, limit: int) -> str:
    if len(log) <= limit:
        return log
    return f"[… {len(log) - limit} characters dropped …]\n" + log[-limit:]


if __name__ == "__main__":  # pragma: no cover - started through multiprocessing
    sys.exit(os.EX_USAGE)
