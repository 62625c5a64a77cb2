"""Chaos around the control plane: the server killed during a large submit, the backend
restarted mid-run, and 50 clients at once. Every scenario ends with ``harness.check``."""

from __future__ import annotations

import random
import signal
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from harness import LONG, Row, check, done, events, grid, kind, scale
from own_servers import OwnPostgres, OwnRedis
from own_servers import own_server as started
from procs import until

import htcgrid
from htcgrid.store import open_store

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::htcgrid.errors.NoAgentWarning"),
]
TIMING = ["--heartbeat-seconds", "0.5", "--lease-seconds", "2"]


def all_or_nothing(url: str, session_id: str, task_count: int) -> bool:
    """Whether the session is absent, or present with every one of its tasks."""
    store = open_store(url)
    try:
        if store.get_session(session_id) is None:
            return False
        assert sum(store.count_states(session_id).values()) == task_count, "a partial session"
        return True
    finally:
        store.close()


def test_server_killed_during_a_large_submit(
    url: str, tmp_path: Path, report: Callable[[Row], None]
) -> None:
    tasks, kills = scale(5000, 50_000), scale(1, 4)
    row = Row(f"server SIGKILLed during a {tasks}-task submit, then retried", kind(url))
    with grid(url, tmp_path, TIMING) as g:
        g.start_agent()
        g.start_agent()
        body = {"session_id": str(uuid.uuid4()), "tasks": events(g.runs, tasks)}
        for _ in range(kills):
            sender = threading.Thread(target=_post, args=(g.api, body), daemon=True)
            sender.start()
            time.sleep(random.uniform(0.05, 0.8))  # the fault lands at a random point
            assert g.server is not None
            g.server.send_signal(signal.SIGKILL)
            g.server.wait(timeout=10)
            sender.join(timeout=60)
            row.faults += 1
            all_or_nothing(url, body["session_id"], tasks)
            g.start_server()
        answer = _post(g.api, body)  # the same id again: created now, or already there
        assert answer is not None and answer.status_code in (200, 201), answer
        assert all_or_nothing(url, body["session_id"], tasks)
        until(lambda: done(url, body["session_id"]) >= tasks, 600, "every task")
        report(check(g, [body["session_id"]], row))


def _post(api: str, body: dict[str, object]) -> httpx.Response | None:
    try:
        return httpx.post(f"{api}/v1/sessions", json=body, timeout=120)
    except httpx.HTTPError:
        return None  # the server died under us


@pytest.fixture(params=["postgresql", "redis"])
def own_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OwnPostgres | OwnRedis]:
    with started(request.param, tmp_path) as server:
        yield server


def test_backend_restarted_mid_run(
    own_backend: OwnPostgres | OwnRedis, tmp_path: Path, report: Callable[[Row], None]
) -> None:
    url = own_backend.url
    tasks, blinks = scale(600, 5000), scale(1, 2)
    row = Row("backend restarted mid-run", kind(url))
    with grid(url, tmp_path, ["--heartbeat-seconds", "0.5", "--lease-seconds", "5"]) as g:
        g.start_agent()
        g.start_agent()
        with htcgrid.connect(url) as client:
            session = client.submit(events(g.runs, tasks, sleep_ms=10))
        for k in range(1, blinks + 1):
            until(lambda k=k: done(url, session.id) >= tasks * k // (blinks + 2), 120, "progress")
            own_backend.stop()
            row.faults += 1
            own_backend.start()
        until(lambda: done(url, session.id) >= tasks, 300, "every task")
        report(check(g, [session.id], row))


@pytest.mark.skipif(not LONG, reason="a long run: make chaos")
def test_fifty_clients_at_once(url: str, tmp_path: Path, report: Callable[[Row], None]) -> None:
    seconds, clients = scale(5, 30), 50
    row = Row(f"{clients} concurrent clients for {seconds} s", kind(url))
    latencies: list[float] = []
    statuses: list[int] = []
    sessions: list[str] = []
    lock = threading.Lock()
    with grid(url, tmp_path, TIMING) as g:
        g.start_agent()
        g.start_agent()
        deadline = time.monotonic() + seconds

        def client() -> None:
            with httpx.Client(base_url=g.api, timeout=60) as http:
                while time.monotonic() < deadline:
                    sid = str(uuid.uuid4())
                    calls = [
                        ("POST", "/v1/sessions", {"session_id": sid, "tasks": events(g.runs, 5)}),
                        ("GET", f"/v1/sessions/{sid}", None),
                        ("GET", f"/v1/sessions/{sid}/results", None),
                        ("GET", "/v1/sessions?limit=20", None),
                    ]
                    for method, path, body in calls:
                        started = time.perf_counter()
                        answer = http.request(method, path, json=body)
                        with lock:
                            latencies.append(time.perf_counter() - started)
                            statuses.append(answer.status_code)
                    with lock:
                        sessions.append(sid)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds + 120)
        until(lambda: all(done(url, s) >= 5 for s in sessions), 300, "every session")
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99)] * 1000
        row.notes.append(f"{len(latencies)} requests, p50 {p50:.0f} ms, p99 {p99:.0f} ms")
        row.notes.append(f"5xx: {sum(s >= 500 for s in statuses)}")
        assert all(s < 500 for s in statuses), sorted(set(statuses))
        report(check(g, sessions, row))
