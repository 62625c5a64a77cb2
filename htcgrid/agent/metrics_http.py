"""An agent's ``/metrics`` and ``/healthz`` (``htcgrid agent --metrics-port``).

``/healthz`` answers JSON ``{"status": "ok"|"draining", "running": N, "held": N, "slots": N}``
(``running``: tasks in a worker now; ``held``: claimed and not yet settled), so that an
orchestrator sees a draining agent finish its work. ``/metrics`` is Prometheus text: slots by
state (busy, idle), read from the agent when scraped, and what ``AgentMetrics.observe`` counted
(attempts by function and outcome, retries by reason, run time, queue wait).

A stdlib ``ThreadingHTTPServer`` on a daemon thread: nothing here touches the agent's loop
beyond reading its attributes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from htcgrid import metrics as m
from htcgrid.agent.messages import Result
from htcgrid.models import (
    ErrorInfo,
    Lease,
    TaskState,
    after_handler_error,
    after_infrastructure_failure,
)

DEFAULT_HOST = "127.0.0.1"


class Observed(Protocol):
    """What the server reads of an ``Agent``."""

    draining: bool
    held: dict[str, Lease]

    @property
    def slots(self) -> list[Any]: ...


def health(agent: Observed) -> dict[str, Any]:
    slots = list(agent.slots)
    return {
        "status": "draining" if agent.draining else "ok",
        "running": sum(1 for s in slots if s.inflight),
        "held": len(agent.held),
        "slots": len(slots),
    }


class AgentMetrics:
    """One agent's registry. ``observe`` is the ``Agent``'s observer: called once per
    attempt that a worker ended, with its lease, result and run seconds."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.finished = m.counter(m.FINISHED, self.registry)
        self.retries = m.counter(m.RETRIES, self.registry)
        self.run_seconds = m.histogram(m.RUN_SECONDS, self.registry)
        self.queue_wait = m.histogram(m.QUEUE_WAIT_SECONDS, self.registry)
        self.agent: Observed | None = None
        self.registry.register(m.ScrapeCollector(self._read_slots, (m.SLOTS,)))

    def watch(self, agent: Observed) -> None:
        self.agent = agent

    def observe(self, lease: Lease, result: Result, run_seconds: float | None) -> None:
        """``run_seconds`` None: the worker was killed or died (a crash, a timeout, a cancel,
        memory), so the attempt counts as an infrastructure failure without a run time."""
        if run_seconds is not None:
            self.run_seconds.observe(run_seconds)
            if lease.submitted_at is not None:
                wait = time.time() - run_seconds - lease.submitted_at
                self.queue_wait.observe(max(0.0, wait))
        else:
            result = replace(result, infrastructure=True)
        outcome, again = _outcome(lease, result)
        self.finished.labels(lease.function, outcome).inc()
        if again:
            self.retries.labels(outcome).inc()

    def _read_slots(self) -> list[GaugeMetricFamily]:
        slots = list(self.agent.slots) if self.agent is not None else []
        busy = sum(1 for s in slots if s.inflight)
        return [m.gauge(m.SLOTS, [(("busy",), busy), (("idle",), len(slots) - busy)])]


def _outcome(lease: Lease, result: Result) -> tuple[str, bool]:
    """The attempt's outcome label, and whether the task runs again (the models' rule)."""
    if result.ok:
        return "succeeded", False
    error = result.error or ErrorInfo("Error", "")
    if result.infrastructure:
        after = after_infrastructure_failure(lease, error.type, error.message)
        return "infrastructure", after.state is TaskState.PENDING
    return "error", after_handler_error(lease, error).state is TaskState.PENDING


class MetricsServer:
    """Serves ``/metrics`` and ``/healthz`` for ``agent`` on ``host:port`` (port 0: any)."""

    def __init__(self, metrics: AgentMetrics, agent: Observed, host: str, port: int) -> None:
        metrics.watch(agent)
        self.httpd = ThreadingHTTPServer((host, port), _handler(metrics, agent))
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="htcgrid-metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(metrics: AgentMetrics, agent: Observed) -> Callable[..., BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, m.CONTENT_TYPE, m.exposition(metrics.registry))
            elif path == "/healthz":
                self._answer(200, "application/json", json.dumps(health(agent)).encode())
            else:
                self._answer(404, "text/plain", b"not found: try /metrics or /healthz\n")

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a scrape every few seconds is not worth a log line

    return Handler
