"""The Python client: one ``Client`` over HTTP (``http(s)://``) or a backend URL (in-process).

grid = htcgrid.connect("http://127.0.0.1:8080")      # or "sqlite:///var/grid.db"
session = grid.submit([{"n": i} for i in range(1000)])
session.wait(progress=True)
outputs = [r.output for r in session.results()]
"""

from __future__ import annotations

import json
import logging
import os
import random
import ssl
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from htcgrid.client_upload import PartTask, part_body, part_entries, send_session
from htcgrid.credentials import choose_auth
from htcgrid.errors import (
    BY_CODE,
    BY_STATUS,
    BackendUnavailable,
    GridError,
    RemoteError,
    TaskFailed,
)
from htcgrid.limits import TooManyAttempts, TooManyRequests
from htcgrid.models import DEFAULT_FUNCTION, TaskState, task_id
from htcgrid.progress import Progress

POLL_SECONDS = 30.0  # one long poll; the server caps it at 60
RETRY_SECONDS = 60.0  # how long calls ride out a grid that is down or restarting
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 5.0
RETRIED = {("POST", "sessions"), ("POST", "commit"), ("POST", "cancel")}  # safe to repeat
TRANSIENT_STATUSES = {502, 503, 504}
JSON = {"Content-Type": "application/json"}
log = logging.getLogger("htcgrid.client")
PAGE = 5000


@dataclass(frozen=True)
class TaskResult:
    task_id: str
    index: int
    state: TaskState
    output: Any
    error: dict[str, str] | None
    attempts: int

    @property
    def ok(self) -> bool:
        return self.state is TaskState.FINISHED

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskResult:
        return cls(
            d["task_id"], d["index"], TaskState(d["state"]), d["output"], d["error"], d["attempts"]
        )


class Transport(Protocol):
    def submit(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def status(self, session_id: str, wait: float) -> dict[str, Any]: ...
    def results(self, session_id: str, after: int, limit: int, wait: float) -> dict[str, Any]: ...
    def cancel(self, session_id: str) -> dict[str, Any]: ...
    def delete(self, session_id: str) -> None: ...
    def sessions(self, limit: int, offset: int) -> dict[str, Any]: ...
    def task(self, tid: str) -> dict[str, Any]: ...
    def task_json(self, url: str) -> bytes: ...
    def stage_payload(self, session_id: str, index: int, payload: bytes) -> dict[str, Any]: ...
    def stage_part(self, session_id: str, part: int, tasks: list[PartTask]) -> dict[str, Any]: ...
    def commit(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]: ...
    def close(self) -> None: ...


def _transient(exc: GridError) -> bool:
    """An unreachable grid, or a proxy or grid that says to come back (502, 503, 504, or
    429 for too many requests; not too many wrong passwords)."""
    if isinstance(exc, TooManyRequests):
        return not isinstance(exc, TooManyAttempts)
    return isinstance(exc, BackendUnavailable) or (
        isinstance(exc, RemoteError) and exc.status in TRANSIENT_STATUSES
    )


def _raise_for(response: httpx.Response, body: Any) -> None:
    error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
    error = error if isinstance(error, dict) else {}
    message = error.get("message") or response.text[:200] or response.reason_phrase
    code = error.get("code", "")
    if response.status_code == 429:
        retry = float(response.headers.get("retry-after", "1") or 1)
        cls429 = TooManyAttempts if code == TooManyAttempts.code else TooManyRequests
        raise cls429(message, retry)
    cls = BY_CODE.get(code) or BY_STATUS.get(response.status_code)
    if cls is not None:
        raise cls(message)
    raise RemoteError(message, response.status_code, code or "remote_error")


class Chunks:
    """A big body sent a slice at a time: httpx copies a ``bytes`` body whole on its way out,
    and a body it can iterate again survives a retry."""

    def __init__(self, data: bytes, size: int = 1024 * 1024) -> None:
        self.data = data
        self.size = size

    def __iter__(self) -> Iterator[bytes]:
        with memoryview(self.data) as view:
            for start in range(0, len(view), self.size):
                yield bytes(view[start : start + self.size])


class HTTPTransport:
    """The API over HTTP(S). ``auth`` (an httpx auth flow) wins over a plain ``token``."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout_seconds: float = 30.0,
        auth: httpx.Auth | None = None,
        verify: bool | str | ssl.SSLContext = True,
        retry_seconds: float = RETRY_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token and auth is None else {}
        if isinstance(verify, str):  # a CA bundle, e.g. a self-signed server's certificate
            verify = ssl.create_default_context(cafile=verify)
        self.url = url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.retry_seconds = retry_seconds
        self.sleep = sleep
        self.clock = clock
        self.reached = False  # a grid never reached is a wrong URL, not a restart: no retries
        self.waiting = False  # told the user already that we wait for the grid
        self.http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout_seconds, auth=auth, verify=verify
        )

    def call(
        self, method: str, path: str, wait: float = 0, raw: bool = False, **kwargs: Any
    ) -> Any:
        """One API call; JSON answer decoded (``raw``: the bytes). GET, PUT and the POSTs
        that are safe to repeat (``RETRIED``) ride out an unreachable, restarting or busy
        grid: retried with capped, jittered exponential backoff for ``retry_seconds``."""
        retried = method in ("GET", "PUT") or (method, path.rsplit("/", 1)[-1]) in RETRIED
        deadline = self.clock() + self.retry_seconds
        delay = FIRST_RETRY_SECONDS
        while True:
            try:
                return self._call_once(method, path, wait, raw, **kwargs)
            except (BackendUnavailable, RemoteError, TooManyRequests) as exc:
                if not (retried and self.reached and _transient(exc)):
                    raise
                left = deadline - self.clock()
                if left <= 0:
                    raise
                if not self.waiting:
                    self.waiting = True
                    log.warning("%s; retrying for up to %.0f s", exc, self.retry_seconds)
                pause = delay * random.uniform(0.5, 1.0)
                if isinstance(exc, TooManyRequests):  # the grid says how long to slow down
                    pause = max(pause, exc.retry_after_seconds)
                self.sleep(min(left, pause))
                delay = min(delay * 2, MAX_RETRY_SECONDS)

    def _call_once(self, method: str, path: str, wait: float, raw: bool, **kwargs: Any) -> Any:
        timeout = self.timeout_seconds + wait
        try:
            request = self.http.build_request(method, path, timeout=timeout, **kwargs)
            response = self.http.send(request, stream=True)
            try:  # a raw body is joined here, never kept by the response (in a cycle with it)
                content = b"".join(response.iter_bytes()) if raw and response.is_success else b""
                if not content:
                    response.read()
            finally:
                response.close()
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"cannot reach the grid at {self.url}: {exc}") from exc
        self.reached = True
        if response.is_success:
            if self.waiting:
                self.waiting = False
                log.warning("the grid at %s answers again", self.url)
            if raw:
                return content
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not response.is_success:
            _raise_for(response, body)
        return body

    _call = call

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/sessions", json=body)  # type: ignore[no-any-return]

    def status(self, session_id: str, wait: float) -> dict[str, Any]:
        return self._call("GET", f"/v1/sessions/{session_id}", wait, params={"wait": wait})  # type: ignore[no-any-return]

    def results(self, session_id: str, after: int, limit: int, wait: float) -> dict[str, Any]:
        params = {"after": after, "limit": limit, "wait": wait}
        return self._call("GET", f"/v1/sessions/{session_id}/results", wait, params=params)  # type: ignore[no-any-return]

    def cancel(self, session_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/sessions/{session_id}/cancel")  # type: ignore[no-any-return]

    def delete(self, session_id: str) -> None:
        self._call("DELETE", f"/v1/sessions/{session_id}")

    def sessions(self, limit: int, offset: int) -> dict[str, Any]:
        return self._call("GET", "/v1/sessions", params={"limit": limit, "offset": offset})  # type: ignore[no-any-return]

    def task(self, tid: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/tasks/{tid}")  # type: ignore[no-any-return]

    def task_json(self, url: str) -> bytes:
        return self._call("GET", url, raw=True)  # type: ignore[no-any-return]

    def stage_payload(self, session_id: str, index: int, payload: bytes) -> dict[str, Any]:
        return self._put_big(f"/v1/sessions/{session_id}/payloads/{index}", payload)

    def _put_big(self, path: str, body: bytes) -> dict[str, Any]:
        headers = {**JSON, "Content-Length": str(len(body))}
        chunks = Chunks(body)
        try:
            return self._call("PUT", path, content=chunks, headers=headers)  # type: ignore[no-any-return]
        finally:
            chunks.data = b""  # httpx's request and answer form a cycle: let go of the body

    def stage_part(self, session_id: str, part: int, tasks: list[PartTask]) -> dict[str, Any]:
        return self._put_big(f"/v1/sessions/{session_id}/parts/{part}", part_body(tasks))

    def commit(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/v1/sessions/{session_id}/commit", json=body)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.http.close()


class DirectTransport:
    """Calls the control-plane logic in this process, straight on the backends."""

    def __init__(self, url: str, data_url: str | None = None, create: bool = True) -> None:
        from htcgrid.backends import open_grid
        from htcgrid.service import GridService

        store, data = open_grid(url, data_url or default_data_url(), create=create)
        self.service = GridService(store, data)

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        from htcgrid.service import SubmitRequest

        result = self.service.submit(SubmitRequest(**body))
        answer: dict[str, Any] = {
            "session_id": result.session_id,
            "task_count": result.task_count,
            "created": result.created,
        }
        if result.warning:
            answer["warning"] = result.warning
        return answer

    def status(self, session_id: str, wait: float) -> dict[str, Any]:
        return self.service.status(session_id, wait_seconds=wait).as_dict()

    def results(self, session_id: str, after: int, limit: int, wait: float) -> dict[str, Any]:
        from htcgrid.service import result_dict

        page = self.service.results(session_id, after, limit, wait)
        return {
            "results": [result_dict(r) for r in page.results],
            "next": page.next_seq,
            "complete": page.complete,
        }

    def cancel(self, session_id: str) -> dict[str, Any]:
        from htcgrid.service import cancel_dict

        return cancel_dict(session_id, self.service.cancel(session_id))

    def delete(self, session_id: str) -> None:
        self.service.delete(session_id)

    def sessions(self, limit: int, offset: int) -> dict[str, Any]:
        return {"sessions": [s.as_dict() for s in self.service.sessions(None, limit, offset)]}

    def task(self, tid: str) -> dict[str, Any]:
        from htcgrid.service import task_dict

        return task_dict(self.service.task(tid))

    def task_json(self, url: str) -> bytes:
        tid, what = url.rstrip("/").split("/")[-2:]
        if what == "payload":
            return self.service.task_payload(tid)
        return self.service.task_output(tid)

    def stage_payload(self, session_id: str, index: int, payload: bytes) -> dict[str, Any]:
        return self.service.uploads.stage_payload(session_id, index, payload, "")

    def stage_part(self, session_id: str, part: int, tasks: list[PartTask]) -> dict[str, Any]:
        count = self.service.uploads.stage_part(session_id, part, part_entries(tasks), "")
        return {"part": part, "tasks": count}

    def commit(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
        from htcgrid.service import SubmitRequest

        options = dict(body)
        count, parts = options.pop("task_count"), options.pop("parts")
        request = SubmitRequest(tasks=(), session_id=session_id, **options)
        result = self.service.uploads.commit(request, count, parts, "")
        answer: dict[str, Any] = {
            "session_id": result.session_id,
            "task_count": result.task_count,
            "created": result.created,
        }
        if result.warning:
            answer["warning"] = result.warning
        return answer

    def close(self) -> None:
        self.service.store.close()
        self.service.data.close()


def default_data_url() -> str | None:
    """The data plane the environment names, if any; else the grid's own is used (the one
    its store records, see ``htcgrid.backends``)."""
    return os.environ.get("HTCGRID_DATA_URL") or None


class Session:
    """One submitted session. Cheap to create: it holds only an id and a transport."""

    def __init__(self, transport: Transport, session_id: str, task_count: int) -> None:
        self._t = transport
        self.id = session_id
        self.task_count = task_count

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

    def as_completed(self, timeout: float | None = None, after: int = 0) -> Iterator[TaskResult]:
        """Yield each task's result as soon as it is terminal, until all are.

        ``after`` skips the first results already seen (results come in completion order).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while after < self.task_count:
            left = POLL_SECONDS if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"session {self.id} not complete after {timeout} s")
            page = self._t.results(self.id, after, PAGE, min(left, POLL_SECONDS))
            for item in page["results"]:
                if item.get("output_url"):  # too big for a page: fetched on its own, now
                    item = {**item, "output": json.loads(self._t.task_json(item["output_url"]))}
                yield TaskResult.from_dict(item)
            after = page["next"]

    def results(self, timeout: float | None = None) -> list[TaskResult]:
        """Every task's result in submission order, waiting for the session to complete."""
        collected = list(self.as_completed(timeout))
        collected.sort(key=lambda r: r.index)
        return collected

    def outputs(self, timeout: float | None = None) -> list[Any]:
        """Every task's output in order; raises ``TaskFailed`` if any task did not finish."""
        results = self.results(timeout)
        bad = [r for r in results if not r.ok]
        if bad:
            raise TaskFailed(bad)
        return [r.output for r in results]

    def cancel(self) -> dict[str, Any]:
        """Cancel every task not yet terminal; running ones are killed by their agents."""
        return self._t.cancel(self.id)


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
        max_attempts: int = 6,
        timeout_seconds: float = 3600,
        retry_on_error: bool = False,
        session_id: str | None = None,
    ) -> Session:
        """Submit one session of tasks (each a JSON value, the handler's ``event``).

        ``tasks`` may be any iterable, a generator too: it is read once, one task at a time,
        and a session too big for one request is uploaded in parts (``htcgrid.client_upload``)
        that become visible together. ``session_id`` (default: a new UUID) makes a repeated
        submit of the same tasks a no-op, so a submit interrupted by an outage is retried.
        """
        options = {
            "priority": priority,
            "function": function,
            "max_attempts": max_attempts,
            "timeout_seconds": timeout_seconds,
            "retry_on_error": retry_on_error,
        }
        answer = send_session(self._t, tasks, task_priorities, options, session_id)
        if answer.get("warning"):
            from htcgrid.presence import NoAgentWarning

            warnings.warn(answer["warning"], NoAgentWarning, stacklevel=2)
        return Session(self._t, answer["session_id"], answer["task_count"])

    def session(self, session_id: str, task_count: int | None = None) -> Session:
        """A handle on a session; asks the grid for its size unless ``task_count`` is given."""
        if task_count is None:
            task_count = self._t.status(session_id, 0)["task_count"]
        return Session(self._t, session_id, task_count)

    def sessions(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        return self._t.sessions(limit, offset)["sessions"]  # type: ignore[no-any-return]

    def task(self, tid: str) -> dict[str, Any]:
        """One task in full; a payload or output too big for the answer is fetched on its own."""
        found = self._t.task(tid)
        for name in ("payload", "output"):
            url = found.pop(f"{name}_url", None)
            if url:
                found[name] = json.loads(self._t.task_json(url))
        return found

    def map(
        self, events: Sequence[Any], function: str = DEFAULT_FUNCTION, timeout: float | None = None
    ) -> list[Any]:
        """Run ``events`` as one session and return their outputs in order."""
        return self.submit(events, function=function).outputs(timeout)


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
