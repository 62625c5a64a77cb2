"""A worker process's side of the pipe to its agent.

A thread reads the pipe as fast as the agent writes, into a local queue, so the agent never
blocks on a send however long the running task takes; it also answers ``Withdraw`` for tasks
still queued. Payloads and results above the inline limit are read from and written to the
data plane here, in the worker, so big data never crosses the pipe or the agent's loop.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, TypeVar

from htcgrid.agent.inputs import read_inputs, running_with, with_inputs
from htcgrid.agent.messages import Result, Task, ToAgent, Withdraw, Withdrawn
from htcgrid.errors import GridError
from htcgrid.models import ErrorInfo, json_dumps, json_loads
from htcgrid.retry import Retrier

if TYPE_CHECKING:
    from htcgrid.dataplane import DataPlane

log = logging.getLogger("htcgrid.worker")
T = TypeVar("T")

# How long a worker waits out an outage of the data plane before it gives the task up as an
# infrastructure failure: a database restart or a failover takes seconds, not minutes.
OUTAGE_PATIENCE_SECONDS = 120.0


class AgentChannel:
    def __init__(
        self,
        conn: Connection,
        data_url: str | None,
        inline_limit_bytes: int = 64 * 1024,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn = conn
        self.sleep = sleep
        self.clock = clock
        self.data_url = data_url
        self.inline_limit_bytes = inline_limit_bytes
        self._data: DataPlane | None = None
        self._queue: deque[Task] = deque()
        self._closed = False
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()

    def send(self, message: ToAgent) -> None:
        with self._send_lock:
            self.conn.send(message)

    def start(self) -> None:
        """Start draining the pipe (after ``Ready``: until then the agent sends nothing)."""
        threading.Thread(target=self._read, name="htcgrid-inbox", daemon=True).start()

    def next_task(self) -> Task | None:
        """The next task to run; None when the agent asked us to exit or went away."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            return self._queue.popleft() if self._queue else None

    def payload(self, task: Task) -> bytes:
        """The task's event as JSON bytes; raises GridError if the data plane fails."""
        if task.payload is not None:
            return task.payload
        ref = task.payload_ref
        assert ref is not None
        return self._patiently(lambda: self._data_plane().get(ref))

    def finished(self, task: Task, output: bytes, log: str) -> Result:
        """The result message for ``output``; a big one is written to the data plane."""
        if len(output) <= self.inline_limit_bytes or self.data_url is None:
            return Result(task.task_id, task.attempt, True, output=output, log=log)
        ref = self._patiently(lambda: self._data_plane().put_ref(task.output_key, output))
        return Result(task.task_id, task.attempt, True, output_ref=ref, log=log)

    def run(self, task: Task, execute: ExecuteFn) -> Result:
        """Fetch the payload, ``execute`` it and build the result, whatever fails."""
        try:
            payload = self.payload(task)
            inputs = self.inputs(task) if task.has_inputs else None
        except GridError as exc:
            error = ErrorInfo(type(exc).__name__, f"cannot read the task's payload: {exc}")
            return Result(task.task_id, task.attempt, False, error=error, infrastructure=True)
        if inputs is not None:
            payload = json_dumps(with_inputs(json_loads(payload), inputs))
        with running_with(inputs):
            ok, value, log = execute(task, payload)
        if not ok:
            assert isinstance(value, ErrorInfo)
            return Result(task.task_id, task.attempt, False, error=value, log=log)
        assert isinstance(value, bytes)
        try:
            return self.finished(task, value, log)
        except GridError as exc:
            error = ErrorInfo(type(exc).__name__, f"cannot store the task's result: {exc}")
            return Result(task.task_id, task.attempt, False, error=error, infrastructure=True)

    def inputs(self, task: Task) -> list[Any]:
        """A graph task's inputs, big ones read from the data plane (``htcgrid.agent.inputs``)."""

        def read(key: str) -> bytes:
            return self._patiently(lambda: self._data_plane().get(key))

        return read_inputs(task.inputs, task.inputs_ref, read)

    def common(self, session_id: str) -> bytes | None:
        """The session's common data blob, or None if it has none (one data-plane read)."""
        from htcgrid.dataplane import keys
        from htcgrid.errors import ConfigurationError, NotFound

        if self.data_url is None:
            raise ConfigurationError(
                "context.common needs a data plane the workers can open (not memory://)"
            )
        try:
            return self._data_plane().get(keys.session_common(session_id))
        except NotFound:
            return None

    def _patiently(self, call: Callable[[], T]) -> T:
        """``call()``, waiting out an outage of the data plane (BackendUnavailable) for up
        to OUTAGE_PATIENCE_SECONDS: an outage of the grid's own storage is not the task's
        fault, and a task that already ran should not run again for it (nor lose an
        attempt). Reads and writes of a key are idempotent, so a retry is safe."""
        deadline = self.clock() + OUTAGE_PATIENCE_SECONDS
        retry = Retrier(log, sleep=self.sleep, give_up=lambda: self.clock() >= deadline)
        return retry(call)

    def _data_plane(self) -> DataPlane:
        if self._data is None:
            from htcgrid.dataplane import open_data_plane

            assert self.data_url is not None, "big data without a shared data plane"
            self._data = open_data_plane(self.data_url)
        return self._data

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                message = None
            with self._cond:
                if message is None:
                    self._closed = True
                    self._cond.notify()
                    return
                if isinstance(message, Withdraw):
                    self._withdraw(message.task_id)
                else:  # a task, or the tasks of one dispatch pass
                    self._queue.extend(message if isinstance(message, list) else [message])
                    self._cond.notify()

    def _withdraw(self, task_id: str) -> None:
        """Called with the lock held, so the task is either still queued or already taken."""
        found = next((t for t in self._queue if t.task_id == task_id), None)
        if found is not None:
            self._queue.remove(found)
        with contextlib.suppress(OSError):
            self.send(Withdrawn(task_id, found is not None))


if TYPE_CHECKING:
    from collections.abc import Callable

    ExecuteFn = Callable[[Task, bytes], tuple[bool, bytes | ErrorInfo, str]]
