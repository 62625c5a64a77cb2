"""The Python client: one ``Client`` over HTTP (``http(s)://``) or a backend URL (in-process).

grid = htcgrid.connect("http://127.0.0.1:8080")      # or "sqlite:///var/grid.db"
session = grid.submit([{"n": i} for i in range(1000)])
session.wait(progress=True)
outputs = [r.output for r in session.results()]
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from htcgrid.client.auth import choose_auth
from htcgrid.client.common import put_common
from htcgrid.client.direct import DirectTransport
from htcgrid.client.http import RETRY_SECONDS, HTTPTransport
from htcgrid.client.progress import Progress
from htcgrid.client.upload import PartTask, send_session
from htcgrid.errors import NoAgentWarning, TaskFailed, ValidationError
from htcgrid.models import DEFAULT_FUNCTION, TaskState, json_loads, task_id

POLL_SECONDS = 30.0  # one long poll; the server caps it at 60
PAGE = 5000


@dataclass(frozen=True)
class TaskResult:
    task_id: str
    index: int
    state: TaskState
    output: Any
    error: dict[str, str] | None
    attempts: int
    cached: bool = False  # answered from an earlier task's output without running

    @property
    def ok(self) -> bool:
        return self.state is TaskState.FINISHED

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskResult:
        return cls(
            d["task_id"],
            d["index"],
            TaskState(d["state"]),
            d["output"],
            d["error"],
            d["attempts"],
            bool(d.get("cached", False)),
        )


class Transport(Protocol):
    def submit(self, body: dict[str, Any], wait: float = 0.0) -> dict[str, Any]: ...
    def status(self, session_id: str, wait: float) -> dict[str, Any]: ...
    def results(self, session_id: str, cursor: int, limit: int, wait: float) -> dict[str, Any]: ...
    def tasks(
        self, session_id: str, state: str, cursor: str | None, limit: int
    ) -> dict[str, Any]: ...
    def cancel(
        self, session_id: str, tasks: Sequence[str | int] | None = None
    ) -> dict[str, Any]: ...
    def delete(self, session_id: str) -> None: ...
    def retry(self, session_id: str, task_ids: list[str] | None) -> dict[str, Any]: ...
    def purge(self, older_than_seconds: float) -> dict[str, Any]: ...
    def sessions(self, limit: int, offset: int) -> dict[str, Any]: ...
    def task(self, tid: str) -> dict[str, Any]: ...
    def task_json(self, url: str) -> bytes: ...
    def stage_payload(self, session_id: str, index: int, payload: bytes) -> dict[str, Any]: ...
    def stage_part(self, session_id: str, part: int, tasks: list[PartTask]) -> dict[str, Any]: ...
    def commit(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]: ...
    def close(self) -> None: ...


class Session:
    """One submitted session. Cheap to create: it holds only an id and a transport."""

    def __init__(
        self,
        transport: Transport,
        session_id: str,
        task_count: int,
        first_page: dict[str, Any] | None = None,
    ) -> None:
        self._t = transport
        self.id = session_id
        self.task_count = task_count
        self._first_page = first_page  # results a submit that waited came back with

    def __repr__(self) -> str:
        return f"<Session {self.id} ({self.task_count} tasks)>"

    @property
    def task_ids(self) -> list[str]:
        return [task_id(self.id, i) for i in range(self.task_count)]

    def status(self) -> dict[str, Any]:
        """Counts per state (``status()["counts"]``) and whether the session is ``complete``."""
        return self._t.status(self.id, 0)

    def wait(self, timeout: float | None = None, progress: bool = False) -> dict[str, Any]:
        """Block until every task is finished, failed or cancelled; returns the final status.

        Raises ``TimeoutError`` if that takes longer than ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = Progress(self.task_count) if progress else None
        status = self._t.status(self.id, 0)
        while not status["complete"]:
            if bar is not None:
                bar.show(status["counts"])
            left = POLL_SECONDS if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"session {self.id} not complete after {timeout} s")
            step = min(left, POLL_SECONDS, 0.5 if bar is not None else POLL_SECONDS)
            status = self._t.status(self.id, step)
        if bar is not None:
            bar.finish(status["counts"])
        return status

    def as_completed(self, timeout: float | None = None, cursor: int = 0) -> Iterator[TaskResult]:
        """Yield each task's result as soon as it is terminal, until all are.

        ``cursor`` skips the first results already seen (results come in completion order).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        complete = False  # the grid says so: after a retry, numbers run past task_count
        while not complete:
            left = POLL_SECONDS if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"session {self.id} not complete after {timeout} s")
            page, self._first_page = self._first_page, None
            if page is None or cursor != 0:
                page = self._t.results(self.id, cursor, PAGE, min(left, POLL_SECONDS))
            for item in page["results"]:
                if item.get("output_url"):  # too big for a page: fetched on its own, now
                    item = {**item, "output": json_loads(self._t.task_json(item["output_url"]))}
                yield TaskResult.from_dict(item)
            cursor, complete = page["cursor"], page["complete"]

    def results(self, timeout: float | None = None) -> list[TaskResult]:
        """Every task's result in submission order, waiting for the session to complete."""
        latest = {r.index: r for r in self.as_completed(timeout)}  # a retried task's last
        return [latest[i] for i in sorted(latest)]

    def outputs(self, timeout: float | None = None) -> list[Any]:
        """Every task's output in order; raises ``TaskFailed`` if any task did not finish."""
        results = self.results(timeout)
        bad = [r for r in results if not r.ok]
        if bad:
            raise TaskFailed(bad)
        return [r.output for r in results]

    def tasks(self, state: str = "failed", page_size: int = 100) -> Iterator[TaskResult]:
        """The session's tasks now in ``state`` (failed by default), with their errors, read a
        page at a time through the grid's index of tasks by state: listing the ten failed
        tasks of a session of a million is a few requests, not a read of its results."""
        cursor: str | None = None
        while True:
            page = self._t.tasks(self.id, state, cursor, page_size)
            yield from map(TaskResult.from_dict, page["tasks"])
            cursor = page["cursor"]
            if cursor is None:
                return

    def cancel(self, tasks: Iterable[str | int] | None = None) -> dict[str, Any]:
        """Cancel every task not yet terminal, or only those of ``tasks`` (ids or indexes);
        running ones are killed by their agents. Tasks already ended are left as they are."""
        return self._t.cancel(self.id, None if tasks is None else _names(tasks))

    def retry(self, tasks: Iterable[str | int] | None = None) -> list[str]:
        """Run the failed tasks again, in place: all of them, or those of ``tasks`` (ids or
        indexes) that failed; returns the ids sent back. Cancelled and finished tasks are
        left as they are. The session's results then show each retried task's new outcome."""
        ids = (
            None
            if tasks is None
            else [t if isinstance(t, str) else task_id(self.id, t) for t in _names(tasks)]
        )
        return self._t.retry(self.id, ids)["retried"]  # type: ignore[no-any-return]


def _names(tasks: Iterable[str | int]) -> list[str | int]:
    """``tasks`` as a list; a lone string is refused rather than read as its characters."""
    if isinstance(tasks, (str, bytes)):
        raise ValidationError(f"give a list of task ids or indexes, not the string {tasks!r}")
    return list(tasks)


class Client:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._t.close()

    def submit(
        self,
        tasks: Iterable[Any],
        *,
        priority: int = 0,
        task_priorities: Iterable[int] | None = None,
        function: str = DEFAULT_FUNCTION,
        max_attempts: int | None = None,
        timeout_seconds: float | None = None,
        retry_on_error: bool = False,
        session_id: str | None = None,
        retention_seconds: float | None = None,
        poison_after: int | None = None,
        common: Any = None,
        deps: Iterable[Iterable[int | str] | None] | None = None,
        cache: bool | float = False,
        wait: float = 0.0,
    ) -> Session:
        """Submit one session of tasks (each a JSON value, the handler's ``event``).

        ``tasks`` may be any iterable, a generator too: it is read once, one task at a time,
        and a session too big for one request is uploaded in parts (``htcgrid.client.upload``)
        that become visible together. ``session_id`` (default: a new UUID) makes a repeated
        submit of the same tasks a no-op, so a submit interrupted by an outage is retried.
        ``max_attempts`` and ``timeout_seconds`` left None are the grid's (its settings);
        ``retention_seconds`` is how long the grid keeps the session once it has ended
        (None: the server's ``retention_seconds``), and ``poison_after`` how many times a task
        may kill its worker before it fails as poison (None: the agents' setting).
        ``common`` (a JSON value or bytes) is stored once and is every task's ``context.common``.
        ``deps`` makes a task graph: one entry per task, the tasks it depends on (indexes in
        this session, or task ids of this or an earlier session of yours) or None; a task runs
        once they all finished, with their outputs as ``context.inputs``, and fails without
        running if one of them fails or is cancelled.
        ``cache`` (memoization): True answers a task from an earlier finished task of yours
        with the same function version and input, without running it; a number of seconds
        does so only with an answer at most that old. Such a task's result says ``cached``.
        ``wait`` (seconds, at most 60): the submit itself waits that long for the first
        results and brings them back, so a short session you then read (``results()``,
        ``outputs()``, ``as_completed()``) costs one request instead of two; the submit
        returns as soon as a result is there, or when ``wait`` is up.
        """
        options: dict[str, Any] = {
            "priority": priority,
            "function": function,
            "retry_on_error": retry_on_error,
        }
        if max_attempts is not None:
            options["max_attempts"] = max_attempts
        if timeout_seconds is not None:
            options["timeout_seconds"] = timeout_seconds
        if retention_seconds is not None:
            options["retention_seconds"] = retention_seconds
        if poison_after is not None:
            options["poison_after"] = poison_after
        if cache is not False:
            options["cache"] = cache
        if common is not None:
            session_id = session_id or str(uuid.uuid4())
            put_common(self._t, session_id, common)
        answer = send_session(self._t, tasks, task_priorities, options, session_id, deps, wait)
        if answer.get("warning"):
            warnings.warn(answer["warning"], NoAgentWarning, stacklevel=2)
        first = answer.get("results")
        return Session(self._t, answer["session_id"], answer["task_count"], first)

    def session(self, session_id: str, task_count: int | None = None) -> Session:
        """A handle on a session; asks the grid for its size unless ``task_count`` is given."""
        if task_count is None:
            task_count = self._t.status(session_id, 0)["task_count"]
        return Session(self._t, session_id, task_count)

    def sessions(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        return self._t.sessions(limit, offset)["sessions"]  # type: ignore[no-any-return]

    def delete(self, session_id: str) -> None:
        """Forget a session: cancel what still runs, then remove its tasks and data."""
        self._t.delete(session_id)

    def purge(self, older_than_seconds: float) -> list[str]:
        """Delete every session that ended more than ``older_than_seconds`` ago, its tasks
        and data included (admins only); the ids of those deleted."""
        return self._t.purge(older_than_seconds)["purged"]  # type: ignore[no-any-return]

    def task(self, tid: str) -> dict[str, Any]:
        """One task in full; a payload or output too big for the answer is fetched on its own."""
        found = self._t.task(tid)
        for name in ("payload", "output"):
            url = found.pop(f"{name}_url", None)
            if url:
                found[name] = json_loads(self._t.task_json(url))
        return found

    def map(
        self, events: Sequence[Any], function: str = DEFAULT_FUNCTION, timeout: float | None = None
    ) -> list[Any]:
        """Run ``events`` as one session and return their outputs in order (a short session
        in one request: the submit waits for its results)."""
        wait = min(POLL_SECONDS, timeout) if timeout is not None else POLL_SECONDS
        return self.submit(events, function=function, wait=wait).outputs(timeout)


def connect(
    url: str | None = None,
    *,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
    api_key: str | None = None,
    data_url: str | None = None,
    timeout_seconds: float = 30.0,
    verify: bool | str = True,
    create: bool = True,
    retry_seconds: float = RETRY_SECONDS,
) -> Client:
    """A client for ``url`` (default ``$HTCGRID_URL``, else ``http://127.0.0.1:8080``).

    Over HTTP(S) it authenticates with, in this order: ``username``/``password`` (logging in,
    and refreshing the token as it nears expiry), ``token`` or ``api_key``, ``$HTCGRID_TOKEN``,
    or the token ``htcgrid login`` stored for this URL. ``verify`` is False or a CA bundle for
    a server with a self-signed certificate. A backend URL needs no credentials: whoever can
    open the backend already holds everything; its data plane is the one the grid recorded
    (``data_url`` must match it), and ``create`` False refuses a grid that does not exist.

    Over HTTP(S), calls ride out a grid that restarts or cannot be reached for up to
    ``retry_seconds`` (0: fail at once), saying once on the ``htcgrid.client`` log that they wait.
    """
    url = url or os.environ.get("HTCGRID_URL") or "http://127.0.0.1:8080"
    if url.startswith(("http://", "https://")):
        auth = choose_auth(url, token, username, password, api_key)
        return Client(HTTPTransport(url, None, timeout_seconds, auth, verify, retry_seconds))
    return Client(DirectTransport(url, data_url, create))
