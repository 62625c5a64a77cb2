"""The two plain ASGI middlewares that enforce what the API lets in (body size and request rate,
as ``SecurityConfig`` sets them) before any route runs.

Every refusal is JSON ``{"error": {"code", "message"}}`` with a status that says what to do:
413 (send less) or 429 with ``Retry-After`` (come back later).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from starlette.exceptions import HTTPException

from htcgrid.errors import TooManyAttempts as TooManyAttempts  # re-exported: raised here
from htcgrid.errors import TooManyRequests as TooManyRequests

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


async def send_error(
    send: Send, status: int, code: str, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = error_body(code, message)
    start_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


class BodyTooLarge(HTTPException):
    """Raised from ``receive``: an HTTPException, so the framework answers 413 instead of
    reporting a body it could not parse."""


class BodyLimit:
    """Answers 413 to any request body over ``max_body_bytes``, declared or streamed.

    ``uploads`` raise the limit for the paths they match (e.g. one task's payload, which may
    be larger than a JSON request may be): the first pattern that matches the path wins.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        uploads: Sequence[tuple[re.Pattern[str], int]] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.uploads = list(uploads)

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.uploads:
            if pattern.fullmatch(path):
                return limit
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        refusal = f"request body over the limit of {limit} bytes"
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_error(send, 413, "payload_too_large", refusal)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(413, refusal)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if not started:
                await send_error(send, 413, "payload_too_large", refusal)


class TokenBuckets:
    """One token bucket per key, ``rate`` tokens a second up to ``burst``; the least recently
    used keys are forgotten beyond ``max_keys``, so memory stays bounded."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate, self.burst, self.max_keys, self.clock = rate, max(1, burst), max_keys, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token; returns 0 when allowed, else the seconds until one is available."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return wait


def client_key(scope: Scope) -> str:
    """Who is asking, before authentication: a digest of the credential, else the address."""
    credential = _header(scope, b"authorization") or _header(scope, b"x-api-key")
    if credential:
        return "c:" + hashlib.sha256(credential).hexdigest()[:32]
    client = scope.get("client") or ("?", 0)
    return f"a:{client[0]}"


class RateLimit:
    """Answers 429 with ``Retry-After`` when one client sends faster than its bucket refills.
    ``/healthz`` is never limited, so probes keep working under load."""

    def __init__(self, app: ASGIApp, buckets: TokenBuckets) -> None:
        self.app = app
        self.buckets = buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") != "/healthz":
            wait = self.buckets.take(client_key(scope))
            if wait > 0:
                retry = max(1, math.ceil(wait))
                message = (
                    f"more than {self.buckets.rate:g} requests a second "
                    f"(burst {self.buckets.burst}); retry in {retry} s"
                )
                await send_error(
                    send, 429, "rate_limited", message, ((b"retry-after", str(retry).encode()),)
                )
                return
        await self.app(scope, receive, send)
