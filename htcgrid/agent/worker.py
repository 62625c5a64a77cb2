"""The worker process: imports the handler once, then runs the tasks its agent sends.

The messages are in ``htcgrid.agent.messages``; ``htcgrid.agent.channel`` drains the pipe on a
thread and moves big payloads and results through the data plane. The worker ignores SIGINT
and SIGTERM: only its agent decides when running work stops. A task's log is what reached file
descriptors 1 and 2 while it ran, in the order it was written: what it printed (``sys.stdout``
and ``sys.stderr`` write through to them, unbuffered, so a worker that dies keeps what it
printed), C extensions, ``os.system``, subprocesses.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

from htcgrid.agent import lambda_env
from htcgrid.agent.channel import AgentChannel
from htcgrid.agent.leftovers import become_subreaper, end_leftovers
from htcgrid.agent.messages import InitError, Ready, Task
from htcgrid.agent.runtime import Handler, LambdaContext, error_info, load_handler
from htcgrid.common_data import WorkerCommon
from htcgrid.models import ErrorInfo, json_dumps, json_loads


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
    data_url: str | None = None  # the data plane big payloads and results go through, if shared
    inline_limit_bytes: int = 64 * 1024
    region: str = lambda_env.DEFAULT_REGION  # AWS_REGION and the context's ARN


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its agent dies, so no worker outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class FdCapture:
    """Points file descriptors 1 and 2 of this process (and so of anything it starts, C code and
    subprocesses included) at an unnamed file, and hands out what each task added to it.
    ``sys.stdout`` and ``sys.stderr`` become unbuffered writers over those descriptors: what a
    task prints is in the file at once, where its agent reads it even after the worker died
    (poison evidence). A task that prints nothing pays nothing for it."""

    limit_bytes = 1 << 20  # start the file over once it is this big

    def __init__(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(AttributeError, OSError, ValueError):
                stream.flush()  # what loading the handler printed goes where it was meant to
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
        self.fd = self._file.fileno()
        for target in (1, 2):
            os.dup2(self.fd, target)
        self.stdout, self.stderr = _write_through(1), _write_through(2)
        self.mark = 0

    def start(self) -> None:
        sys.stdout, sys.stderr = self.stdout, self.stderr  # whatever the last task did to them
        self.mark = os.fstat(self.fd).st_size

    def take(self) -> str:
        """What was written since ``start()``."""
        end = os.fstat(self.fd).st_size
        written = os.pread(self.fd, end - self.mark, self.mark) if end > self.mark else b""
        if end > self.limit_bytes:
            os.ftruncate(self.fd, 0)
            os.lseek(self.fd, 0, os.SEEK_SET)  # the offset is shared with fds 1 and 2
        return written.decode(errors="replace")


def _write_through(fd: int) -> io.TextIOWrapper:
    """A text stream whose every write is one ``write(2)`` to ``fd``: nothing waits in Python."""
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", write_through=True)


def main(conn: Connection, config: WorkerConfig) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    lambda_env.enter(config)
    channel = AgentChannel(conn, config.data_url, config.inline_limit_bytes)
    if config.runtime == "provided":
        from htcgrid.agent.lambda_api import serve

        serve(channel, config)
        return
    try:
        handler = load_handler(config.handler, list(config.paths))
    except BaseException as exc:
        channel.send(InitError(error_info(exc)))
        return
    capture = FdCapture()  # before Ready: the agent opens the file as soon as the worker is ready
    channel.send(Ready())
    channel.start()
    become_subreaper()
    common = WorkerCommon(channel.common)
    while (task := channel.next_task()) is not None:
        result = channel.run(task, lambda t, p: run_one(handler, config, t, p, capture, common))
        channel.send(result)
        end_leftovers()  # before the next task starts; the result need not wait for it


def run_one(
    handler: Handler,
    config: WorkerConfig,
    task: Task,
    payload: bytes,
    capture: FdCapture,
    common: WorkerCommon | None = None,
) -> tuple[bool, bytes | ErrorInfo, str]:
    """Call the handler on one task: (True, output JSON, log) or (False, error, log)."""
    context = LambdaContext(
        **lambda_env.context_fields(config),
        session_id=task.session_id,
        task_id=task.task_id,
        attempt=task.attempt,
        deadline=time.monotonic() + task.timeout_seconds,
        common_loader=None if common is None else lambda: common.get(task.session_id),
    )
    ok = True
    result: bytes | ErrorInfo
    capture.start()
    try:
        value = handler(json_loads(payload), context)
        try:
            result = json_dumps(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise TypeError(
                f"the handler's return value ({type(value).__name__}) is not "
                f"JSON-serialisable: {exc}; return JSON values (dict, list, str, number)"
            ) from None
    except BaseException as exc:
        ok, result = False, error_info(exc)
    return ok, result, _tail(capture.take(), config.log_limit_bytes)


def _tail(log: str, limit: int) -> str:
    if len(log) <= limit:
        return log
    return f"[… {len(log) - limit} characters dropped …]\n" + log[-limit:]


if __name__ == "__main__":  # pragma: no cover - started through multiprocessing
    sys.exit(os.EX_USAGE)
