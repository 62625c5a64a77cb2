"""The HTTP client rides out a grid that restarts: a real ``htcgrid server`` stopped and started
again on the same port while the client asks, and while it waits in a long poll."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from procs import until

import htcgrid
from htcgrid.client.http import HTTPTransport
from htcgrid.errors import BackendUnavailable
from htcgrid.models import Outcome, TaskState
from htcgrid.store import open_store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def api_server(db: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    """``htcgrid server`` on ``db`` (no agents: tasks stay pending) until the block ends."""
    command = [sys.executable, "-m", "htcgrid", "server", "--url", f"sqlite://{db}",
               "--port", str(port), "--no-auth"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("http://")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_calls_ride_out_a_restart_and_say_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port, db = free_port(), tmp_path / "grid.db"
    url = f"http://127.0.0.1:{port}"
    naps: list[float] = []
    with ExitStack() as stack:
        with api_server(db, port):
            grid = htcgrid.connect(url, retry_seconds=30)
            session = grid.submit(["a", "b"])
        transport: HTTPTransport = grid._t  # type: ignore[assignment]

        def nap(seconds: float) -> None:  # the grid comes back during the client's 3rd nap
            naps.append(seconds)
            if len(naps) == 3:
                stack.enter_context(api_server(db, port))
                until(lambda: answers(url), 30, "the restarted server")

        transport.sleep = nap
        with caplog.at_level(logging.WARNING, logger="htcgrid.client"):
            assert session.status()["task_count"] == 2
            assert grid.sessions()[0]["session_id"] == session.id
        assert len(naps) == 3 and naps[0] <= 0.1 and naps[1] <= 0.2 and naps[2] <= 0.4
        waiting = [r for r in caplog.records if "retrying for up to 30 s" in r.getMessage()]
        assert len(waiting) == 1 and "cannot reach the grid" in waiting[0].getMessage()
        again = grid.submit(["a", "b"], session_id=session.id)  # a repeated submit: a no-op
        assert again.id == session.id


def test_a_grid_never_reached_fails_at_once_and_retries_stop_at_the_deadline() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    now = [0.0]
    transport = HTTPTransport(url, retry_seconds=5, sleep=lambda s: now.__setitem__(0, now[0] + s),
                              clock=lambda: now[0])  # fmt: skip
    with pytest.raises(BackendUnavailable, match="cannot reach"):
        transport.sessions(10, 0)
    assert now[0] == 0  # never reached: a wrong URL, not a restart
    transport.reached = True
    with pytest.raises(BackendUnavailable):
        transport.sessions(10, 0)
    assert 5 <= now[0] < 5.1
    now[0] = 0
    with pytest.raises(BackendUnavailable):  # a delete is never repeated
        transport.delete("some-session")
    assert now[0] == 0


def test_a_long_wait_outlives_a_restart(tmp_path: Path) -> None:
    port, db = free_port(), tmp_path / "grid.db"
    url = f"http://127.0.0.1:{port}"
    polling = threading.Event()
    outcome: list[Any] = []
    with ExitStack() as stack:
        first = stack.enter_context(api_server(db, port))
        grid = htcgrid.connect(url, retry_seconds=60)
        session = grid.submit(["only"])
        transport: HTTPTransport = grid._t  # type: ignore[assignment]
        status = transport.status

        def watched_status(session_id: str, wait: float) -> dict[str, Any]:
            if wait > 0:
                polling.set()
            return status(session_id, wait)

        transport.status = watched_status  # type: ignore[method-assign]
        waiter = threading.Thread(target=lambda: outcome.append(session.wait(timeout=120)))
        waiter.start()
        assert polling.wait(30), "the client never long-polled"
        first.send_signal(signal.SIGTERM)  # while the long poll runs: 503 or a dropped line
        first.wait(timeout=30)
        stack.enter_context(api_server(db, port))
        until(lambda: answers(url), 30, "the restarted server")
        finish_every_task(db)
        waiter.join(timeout=90)
        assert outcome and outcome[0]["complete"], "the wait did not come back"


def finish_every_task(db: Path) -> None:
    """Play an agent on the store itself: claim and finish what is pending."""
    store = open_store(f"sqlite://{db}")
    try:
        leases = store.claim("test-agent", 10, 60, time.time())
        done = [
            Outcome(lease.task_id, lease.attempt, TaskState.FINISHED, output=b"1")
            for lease in leases
        ]
        assert store.complete("test-agent", done, time.time()) == [True] * len(done)
    finally:
        store.close()


def test_a_backend_closed_under_a_request_is_503_not_500() -> None:
    import sqlite3

    from htcgrid.api.app import _closed_backend

    conn = sqlite3.connect(":memory:")
    conn.close()
    with pytest.raises(sqlite3.ProgrammingError) as closed:
        conn.execute("SELECT 1")  # what a long poll meets when the server closes its store
    assert _closed_backend(closed.value)
    assert not _closed_backend(sqlite3.ProgrammingError("syntax error near FROM"))
    assert not _closed_backend(ValueError("the file is closed"))


def test_a_busy_grid_is_asked_again_after_its_retry_after() -> None:
    answers = [(429, "rate_limited"), (200, ""), (429, "too_many_attempts")]

    def grid(request: httpx.Request) -> httpx.Response:
        status, code = answers.pop(0)
        if status == 429:
            body = {"error": {"code": code, "message": "slow down"}}
            return httpx.Response(429, json=body, headers={"Retry-After": "2"})
        return httpx.Response(200, json={"sessions": []})

    naps: list[float] = []
    transport = HTTPTransport("http://grid", retry_seconds=30, sleep=naps.append)
    transport.http = httpx.Client(base_url="http://grid", transport=httpx.MockTransport(grid))
    transport.reached = True
    assert transport.sessions(10, 0) == {"sessions": []}
    assert naps == [2.0]
    with pytest.raises(htcgrid.TooManyAttempts):  # wrong passwords: waiting is the user's call
        transport.sessions(10, 0)
