"""Prometheus metrics: every name issue 13 lists is exported with its type, by the server
(``GET /metrics`` through the API app) and by a real agent (``htcgrid agent --metrics-port``)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from agent_thread import running
from fastapi.testclient import TestClient
from procs import until
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sample_handlers_path import HERE

from htcgrid import metrics as m
from htcgrid.agent.agent import Agent
from htcgrid.agent.messages import Result
from htcgrid.agent.metrics_http import AgentMetrics
from htcgrid.agent.worker import WorkerConfig
from htcgrid.api import create_app
from htcgrid.auth.principals import Authenticator
from htcgrid.dataplane import open_data_plane
from htcgrid.models import ErrorInfo, Lease
from htcgrid.presence import AgentPresence
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import SecurityConfig, Settings
from htcgrid.store import open_store

EXPECTED = {  # as the issue names them (a counter's samples end in _total)
    "htcgrid_tasks": "gauge",
    "htcgrid_tasks_submitted": "counter",
    "htcgrid_tasks_finished": "counter",
    "htcgrid_task_retries": "counter",
    "htcgrid_queue_depth": "gauge",
    "htcgrid_task_run_seconds": "histogram",
    "htcgrid_task_queue_wait_seconds": "histogram",
    "htcgrid_agents": "gauge",
    "htcgrid_slots": "gauge",
    "htcgrid_api_request_seconds": "histogram",
    "htcgrid_desired_agents": "gauge",
}
IDS = ("task_id", "session_id", "agent_id")
LOOPBACK = ("127.0.0.1", 50000)
PASSWORD = "correct horse battery"


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(found: dict[str, Any], name: str) -> list[Sample]:
    return list(found[name].samples)


def value(found: dict[str, Any], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples(found, name)
        if s.name in (name, f"{name}_total") and labels.items() <= s.labels.items()
    )


def observations(found: dict[str, Any], name: str) -> float:
    """A histogram's count of observations, over all its labels."""
    return sum(s.value for s in samples(found, name) if s.name == f"{name}_count")


def check_types(found: dict[str, Any], expected: tuple[m.Metric, ...]) -> None:
    for metric in expected:
        assert metric.name in found, f"{metric.name} is not exported"
        assert found[metric.name].type == EXPECTED[metric.name], metric.name
        for sample in found[metric.name].samples:
            assert not set(IDS) & set(sample.labels), sample


def test_every_metric_of_the_issue_is_defined_once_with_its_type() -> None:
    assert {x.name: x.kind for x in m.ALL} == EXPECTED
    assert {x.name for x in m.SERVER} | {x.name for x in m.AGENT} == set(EXPECTED)
    assert not {x.name for x in m.SERVER} & {x.name for x in m.AGENT}


# ---- the server ---------------------------------------------------------------------------


@pytest.fixture
def service() -> GridService:
    return GridService(open_store("memory://"), open_data_plane("memory://"))


def test_the_server_exports_the_grids_gauges_and_its_own_counters(service: GridService) -> None:
    http = TestClient(create_app(service), client=LOOPBACK)
    sid = http.post("/v1/sessions", json={"tasks": [1, 2, 3], "priority": 4}).json()["session_id"]
    assert http.get(f"/v1/sessions/{sid}").status_code == 200
    service.store.claim("agent-1", 1, 30.0, 0.0)
    AgentPresence(service.store, "agent-1", 2).beat(time.time())
    answer = http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    found = families(answer.text)
    check_types(found, m.SERVER)
    assert value(found, "htcgrid_tasks", state="pending", function="default") == 2
    assert value(found, "htcgrid_tasks", state="processing") == 1
    assert value(found, "htcgrid_queue_depth", function="default", priority="4") == 2
    assert value(found, "htcgrid_tasks_submitted") == 3
    assert value(found, "htcgrid_agents") == 1
    assert value(found, "htcgrid_desired_agents") == 1
    routes = {s.labels["route"] for s in samples(found, "htcgrid_api_request_seconds")}
    assert "/v1/sessions/{session_id}" in routes
    assert sid not in answer.text  # neither as a label nor anywhere else


def test_servers_on_one_store_agree_on_the_grid(service: GridService) -> None:
    service.submit(SubmitRequest(tasks=list(range(5)), priority=7))
    first, second = (TestClient(create_app(service), client=LOOPBACK) for _ in range(2))
    one, two = (families(h.get("/metrics").text) for h in (first, second))
    for name in ("htcgrid_tasks", "htcgrid_queue_depth"):
        assert samples(one, name) == samples(two, name)
    assert value(one, "htcgrid_queue_depth", function="default", priority="7") == 5
    assert value(one, "htcgrid_tasks_submitted") == 0  # submitted in-process, not through them


def test_the_grids_gauges_are_read_once_per_cache_period() -> None:
    now = [0.0]
    reads: list[float] = []

    def read() -> list[Any]:
        reads.append(now[0])
        return [m.gauge(m.AGENTS, [((), len(reads))])]

    collector = m.ScrapeCollector(read, (m.AGENTS,), cache_seconds=1.5, clock=lambda: now[0])
    for now[0] in (0.0, 1.0, 1.4, 1.5, 2.0, 3.1):
        collector.collect()
    assert reads == [0.0, 1.5, 3.1]


def test_off_loopback_a_scrape_needs_a_caller(service: GridService) -> None:
    auth = Authenticator(service.data)
    auth.add_user("prometheus", PASSWORD, "user")
    token = auth.login("prometheus", PASSWORD).access_token
    app = create_app(service, auth=auth, security=SecurityConfig(rate_limit_per_second=0))
    remote = TestClient(app)
    assert remote.get("/metrics").status_code == 401
    signed_in = remote.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert signed_in.status_code == 200 and "htcgrid_tasks" in signed_in.text
    assert TestClient(app, client=LOOPBACK).get("/metrics").status_code == 200


# ---- the agent ----------------------------------------------------------------------------


def lease(attempt: int = 1, retry_on_error: bool = False) -> Lease:
    return Lease("s_0", "s", 0, attempt, 3, 60.0, "price", retry_on_error, 0.0)


def test_an_agents_outcomes_and_retries_follow_the_lifecycle_rules() -> None:
    agent = AgentMetrics()
    error = ErrorInfo("ValueError", "bad")
    agent.observe(lease(), Result("s_0", 1, ok=True), 0.2)
    agent.observe(lease(), Result("s_0", 1, ok=False, error=error), 0.1)
    agent.observe(lease(1, True), Result("s_0", 1, ok=False, error=error), 0.1)
    agent.observe(lease(3), Result("s_0", 3, ok=False, error=error, infrastructure=True), 0.1)
    agent.observe(lease(2), Result("s_0", 2, ok=False, error=error, infrastructure=True), 0.1)
    found = families(m.exposition(agent.registry).decode())
    assert value(found, "htcgrid_tasks_finished", function="price", outcome="succeeded") == 1
    assert value(found, "htcgrid_tasks_finished", outcome="error") == 2
    assert value(found, "htcgrid_tasks_finished", outcome="infrastructure") == 2
    assert value(found, "htcgrid_task_retries", reason="error") == 1  # retry_on_error
    assert value(found, "htcgrid_task_retries", reason="infrastructure") == 1  # attempt 2 of 3
    assert observations(found, "htcgrid_task_run_seconds") == 5
    assert value(found, "htcgrid_slots", state="busy") == 0  # no agent watched yet


def test_a_killed_worker_counts_a_retry_and_a_lease_gives_the_queue_wait() -> None:
    agent = AgentMetrics()
    crash = Result("s_0", 1, ok=False, error=ErrorInfo("WorkerCrashed", "exit 9"))
    agent.observe(lease(1), crash, None)  # attempt 1 of 3: it runs again
    agent.observe(lease(3), crash, None)  # the last attempt: failed, not retried
    waited = replace(lease(), submitted_at=time.time() - 5.0)
    agent.observe(waited, Result("s_0", 1, ok=True), 1.0)
    found = families(m.exposition(agent.registry).decode())
    assert value(found, "htcgrid_task_retries", reason="infrastructure") == 1
    assert value(found, "htcgrid_tasks_finished", outcome="infrastructure") == 2
    assert observations(found, "htcgrid_task_run_seconds") == 1  # a killed one has no run time
    assert observations(found, "htcgrid_task_queue_wait_seconds") == 1
    family = samples(found, "htcgrid_task_queue_wait_seconds")
    wait = sum(s.value for s in family if s.name.endswith("_sum"))
    assert 3.9 < wait < 4.5


def test_a_worker_that_crashes_reaches_the_retries_counter(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path / 'grid.db'}")
    grid = GridService(store, open_data_plane(f"file://{tmp_path / 'blobs'}"), Settings())
    metrics = AgentMetrics()
    worker = WorkerConfig(handler="sample_handlers.crash_on_first_attempt", paths=(HERE,))
    sid = grid.submit(SubmitRequest(tasks=["a", "b"])).session_id
    with running(Agent(store, grid.data, Settings(), worker, 2, observer=metrics.observe)):
        until(lambda: grid.session(sid).complete, 60, "the session to finish")
    store.close()
    found = families(m.exposition(metrics.registry).decode())
    assert value(found, "htcgrid_task_retries", reason="infrastructure") == 2
    assert value(found, "htcgrid_tasks_finished", outcome="succeeded") == 2
    assert observations(found, "htcgrid_task_queue_wait_seconds") == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return str(answer.read().decode())
    except OSError:
        return None


@pytest.fixture
def agent_grid(tmp_path: Path) -> Iterator[tuple[GridService, str, subprocess.Popen[bytes]]]:
    url, data_url = f"sqlite://{tmp_path / 'grid.db'}", f"file://{tmp_path / 'blobs'}"
    grid = GridService(open_store(url), open_data_plane(data_url), Settings())
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "htcgrid", "agent", "--url", url, "--data-url", data_url,
         "--handler", "sample_handlers.echo", "--path", HERE, "--slots", "2",
         "--metrics-port", str(port)],
    )  # fmt: skip
    try:
        yield grid, f"http://127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


@pytest.mark.slow
def test_a_real_agent_serves_its_metrics_and_health(
    agent_grid: tuple[GridService, str, subprocess.Popen[bytes]],
) -> None:
    grid, base, proc = agent_grid

    def healthy() -> dict[str, Any] | None:
        found = json.loads(_get(f"{base}/healthz") or "{}")
        return found if found.get("slots") == 2 else None  # its workers started

    health = until(healthy, 30, "the agent's /healthz with two worker slots")
    assert health == {"status": "ok", "running": 0, "held": 0, "slots": 2}
    sid = grid.submit(SubmitRequest(tasks=[1, 2, 3, 4], function="default")).session_id
    until(lambda: grid.session(sid).complete, 30, "the session to finish")

    def scraped() -> dict[str, Any] | None:
        found = families(_get(f"{base}/metrics") or "")
        done = found.get("htcgrid_tasks_finished") and value(found, "htcgrid_tasks_finished")
        return found if done == 4 else None

    found = until(scraped, 10, "the agent to count four outcomes")
    check_types(found, m.AGENT)
    assert value(found, "htcgrid_tasks_finished", function="default", outcome="succeeded") == 4
    assert observations(found, "htcgrid_task_run_seconds") == 4
    assert observations(found, "htcgrid_task_queue_wait_seconds") == 4  # leases carry submitted_at
    assert value(found, "htcgrid_slots") == 2  # busy and idle
    assert _get(f"{base}/nothing-here") is None  # a 404
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
