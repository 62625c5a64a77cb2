"""The API over HTTP(S): one call with the grid's errors raised as htcgrid's, retried with
backoff while the grid restarts or is busy; big bodies sent in slices."""

from __future__ import annotations

import http.client
import json
import logging
import random
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx

from htcgrid import __version__ as htcgrid_version_text
from htcgrid import frames
from htcgrid.client.auth import HeaderAuth
from htcgrid.client.plain_http import PlainHTTP, usable
from htcgrid.client.upload import PartTask, part_frames
from htcgrid.errors import (
    BY_CODE,
    BY_STATUS,
    BackendUnavailable,
    GridError,
    RemoteError,
    StorageFull,
    TooManyAttempts,
    TooManyRequests,
)
from htcgrid.models import json_loads

RETRY_SECONDS = 60.0  # how long calls ride out a grid that is down or restarting
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 5.0
COMMIT_TASKS_PER_SECOND = 20_000  # the least a commit's timeout allows for, beyond the usual
RETRIED = {("POST", "sessions"), ("POST", "commit"), ("POST", "cancel")}  # safe to repeat
TRANSIENT_STATUSES = {502, 503, 504}
FRAMED = {"Accept": f"{frames.MEDIA_TYPE}, application/json;q=0.5"}  # pages of results
log = logging.getLogger("htcgrid.client")


def _transient(exc: GridError) -> bool:
    """An unreachable grid, or a proxy or grid that says to come back (502, 503, 504, or
    429 for too many requests; not too many wrong passwords, nor a full disk, which waiting
    does not free)."""
    if isinstance(exc, StorageFull):
        return False
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
        # submit, status and results: http.client, while this client is the one made here
        fixed = auth is None or isinstance(auth, HeaderAuth)  # a flow that only sets headers
        self._plain = PlainHTTP(self.url) if fixed and usable(self.url) else None
        self._plain_for, self._plain_auth = self.http, self.http.auth
        self._plain_headers = {**headers, "User-Agent": f"htcgrid/{htcgrid_version_text}"}
        if isinstance(auth, HeaderAuth):
            self._plain_headers.update(auth.headers)

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

    def _call_once(
        self, method: str, path: str, wait: float, raw: bool, plain: bool = False, **kwargs: Any
    ) -> Any:
        if plain:
            return self._call_plain(
                method, path, wait, kwargs.get("json"), kwargs.get("params"), kwargs.get("headers")
            )
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
            body = _decode(response.content, response.headers.get("content-type"))
        except ValueError:
            body = None
        if not response.is_success:
            _raise_for(response, body)
        return body

    _call = call

    def _hot(self, method: str, path: str, wait: float = 0, **kwargs: Any) -> Any:
        """A call of the hot path (no raw body, no headers of its own): over http.client
        when it may be, else as any other call; retried alike."""
        swapped = self.http is not self._plain_for or self.http.auth is not self._plain_auth
        if self._plain is None or swapped:
            return self.call(method, path, wait, **kwargs)
        return self.call(method, path, wait, plain=True, **kwargs)

    def _call_plain(
        self,
        method: str,
        path: str,
        wait: float,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> Any:
        assert self._plain is not None
        headers = (
            self._plain_headers if not extra_headers else {**self._plain_headers, **extra_headers}
        )
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers = {**headers, "Content-Type": "application/json"}
        if params:
            path = f"{path}?{urllib.parse.urlencode(params)}"
        try:
            status, found, content = self._plain.request(
                method, path, body, headers, self.timeout_seconds + wait
            )
        except (OSError, http.client.HTTPException) as exc:
            raise BackendUnavailable(f"cannot reach the grid at {self.url}: {exc}") from exc
        self.reached = True
        if 200 <= status < 300:
            if self.waiting:
                self.waiting = False
                log.warning("the grid at %s answers again", self.url)
            if status == 204:
                return None
            return _decode(
                content, next((v for k, v in found if k.lower() == "content-type"), None)
            )
        response = httpx.Response(status, headers=found, content=content)
        try:
            answer = json_loads(content)
        except ValueError:
            answer = None
        _raise_for(response, answer)

    def submit(self, body: dict[str, Any], wait: float = 0.0) -> dict[str, Any]:
        params = {"wait": wait} if wait > 0 else None
        return self._hot("POST", "/v1/sessions", wait, json=body, params=params)  # type: ignore[no-any-return]

    def status(self, session_id: str, wait: float) -> dict[str, Any]:
        return self._hot("GET", f"/v1/sessions/{session_id}", wait, params={"wait": wait})  # type: ignore[no-any-return]

    def results(self, session_id: str, cursor: int, limit: int, wait: float) -> dict[str, Any]:
        params = {"cursor": cursor, "limit": limit, "wait": wait}
        path = f"/v1/sessions/{session_id}/results"
        return self._hot("GET", path, wait, params=params, headers=FRAMED)  # type: ignore[no-any-return]

    def tasks(self, session_id: str, state: str, cursor: str | None, limit: int) -> dict[str, Any]:
        params: dict[str, Any] = {"state": state, "limit": limit, "cursor": cursor or ""}
        return self._call("GET", f"/v1/sessions/{session_id}/tasks", params=params)  # type: ignore[no-any-return]

    def cancel(self, session_id: str, tasks: Sequence[str | int] | None = None) -> dict[str, Any]:
        body = None if tasks is None else {"tasks": list(tasks)}
        return self._call("POST", f"/v1/sessions/{session_id}/cancel", json=body)  # type: ignore[no-any-return]

    def delete(self, session_id: str) -> None:
        self._call("DELETE", f"/v1/sessions/{session_id}")

    def retry(self, session_id: str, task_ids: list[str] | None) -> dict[str, Any]:
        body = {"task_ids": task_ids}
        return self._call("POST", f"/v1/sessions/{session_id}/retry", json=body)  # type: ignore[no-any-return]

    def purge(self, older_than_seconds: float) -> dict[str, Any]:
        return self._call("POST", "/v1/purge", params={"older_than": older_than_seconds})  # type: ignore[no-any-return]

    def sessions(self, limit: int, offset: int) -> dict[str, Any]:
        return self._call("GET", "/v1/sessions", params={"limit": limit, "offset": offset})  # type: ignore[no-any-return]

    def task(self, tid: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/tasks/{tid}")  # type: ignore[no-any-return]

    def task_json(self, url: str) -> bytes:
        return self._call("GET", url, raw=True)  # type: ignore[no-any-return]

    def stage_payload(self, session_id: str, index: int, payload: bytes) -> dict[str, Any]:
        return self._put_big(f"/v1/sessions/{session_id}/payloads/{index}", payload)

    def _put_big(
        self, path: str, body: bytes, media_type: str = "application/json"
    ) -> dict[str, Any]:
        headers = {"Content-Type": media_type, "Content-Length": str(len(body))}
        chunks = Chunks(body)
        try:
            return self._call("PUT", path, content=chunks, headers=headers)  # type: ignore[no-any-return]
        finally:
            chunks.data = b""  # httpx's request and answer form a cycle: let go of the body

    def stage_part(self, session_id: str, part: int, tasks: list[PartTask]) -> dict[str, Any]:
        path = f"/v1/sessions/{session_id}/parts/{part}"
        return self._put_big(path, part_frames(tasks), frames.MEDIA_TYPE)

    def commit(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
        # the server inserts every task of the session in one transaction: give it time
        wait = int(body.get("task_count", 0)) / COMMIT_TASKS_PER_SECOND
        path = f"/v1/sessions/{session_id}/commit"
        return self._call("POST", path, wait=wait, json=body)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.http.close()
        if self._plain is not None:
            self._plain.close()


def _decode(content: bytes, content_type: str | None) -> Any:
    """An answer's body: framed (a page of results, ``htcgrid.frames``) or JSON."""
    if content_type is not None and content_type.startswith(frames.MEDIA_TYPE):
        return frames.results(content)
    return json_loads(content)
