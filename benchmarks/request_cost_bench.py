"""CPU of the pieces of a round trip, in process, away from the machine's other work:

    python benchmarks/request_cost_bench.py

- a request through the API app (ASGI, no socket: the middlewares, the route, the thread hop,
  an API key checked, a memory store), submit and a results page, each through the plain
  answers of ``htcgrid.api.hot`` and through FastAPI's routes (the app without them);
- one wait on the SQLite store's wake-up board (``WakeBoard.listening``: what an idle agent and
  a long poll pay per wait) and ``wait_for_tasks(0)``.

Each figure is CPU time (``time.process_time``) per call, the median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from htcgrid.api import create_app
from htcgrid.api.hot import HotRoutes
from htcgrid.auth.principals import Authenticator
from htcgrid.dataplane import open_data_plane
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import SecurityConfig
from htcgrid.store import open_store
from htcgrid.store.sqlite_wake import WORK, WakeBoard


def api_app(plain: bool) -> tuple[FastAPI, str, str]:
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    auth = Authenticator(service.data)
    auth.add_user("bench", "a password long enough", "user")
    _, key = auth.create_key("bench")
    app = create_app(service, auth=auth, security=SecurityConfig(rate_limit_per_second=0))
    if not plain:  # before the first request builds the middleware stack
        app.user_middleware = [m for m in app.user_middleware if m.cls is not HotRoutes]
    sid = service.submit(SubmitRequest.from_json({"tasks": [1]}), owner="bench").session_id
    return app, key, sid


def caller(app: FastAPI, key: str) -> Callable[[str, str, bytes], Awaitable[int]]:
    headers = [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode())]

    async def call(method: str, path: str, body: bytes = b"") -> int:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2), "state": {},
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }  # fmt: skip
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return int(sent[0]["status"])

    return call


def per_request(plain: bool, count: int) -> tuple[float, float]:
    """CPU microseconds of a submit and of a results page."""
    app, key, sid = api_app(plain)
    call = caller(app, key)

    async def run() -> tuple[float, float]:
        for _ in range(100):  # warm up
            await call("GET", f"/v1/sessions/{sid}/results")
        start = time.process_time()
        for i in range(count):
            assert await call("POST", "/v1/sessions", json.dumps({"tasks": [i]}).encode()) == 201
        submit = time.process_time() - start
        start = time.process_time()
        for _ in range(count):
            assert await call("GET", f"/v1/sessions/{sid}/results") == 200
        return submit / count * 1e6, (time.process_time() - start) / count * 1e6

    return asyncio.run(run())


def per_wait(count: int) -> tuple[float, float]:
    """CPU microseconds of a wake-up board's wait set-up, and of ``wait_for_tasks(0)``."""
    with tempfile.TemporaryDirectory() as tmp:
        board = WakeBoard(Path(tmp) / "wake", poll_seconds=0.01)
        start = time.process_time()
        for _ in range(count):
            with board.listening(WORK):
                pass
        listening = (time.process_time() - start) / count * 1e6
        board.close()
        store = open_store(f"sqlite://{tmp}/grid.db")
        store.wait_for_tasks(0)
        start = time.process_time()
        for _ in range(count):
            store.wait_for_tasks(0)
        waiting = (time.process_time() - start) / count * 1e6
        store.close()
    return listening, waiting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for plain, name in ((True, "plain (htcgrid.api.hot)"), (False, "FastAPI routes")):
        runs = [per_request(plain, args.requests) for _ in range(args.repeat)]
        submit = statistics.median(r[0] for r in runs)
        page = statistics.median(r[1] for r in runs)
        print(f"API request, {name}: submit {submit:.0f} us, results page {page:.0f} us of CPU")
    waits = [per_wait(args.requests) for _ in range(args.repeat)]
    print(
        f"SQLite wake-up board: a wait's set-up {statistics.median(w[0] for w in waits):.0f} us, "
        f"wait_for_tasks(0) {statistics.median(w[1] for w in waits):.0f} us of CPU"
    )


if __name__ == "__main__":
    main()
