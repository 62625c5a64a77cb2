"""``GET /metrics``: the server's Prometheus metrics (names and types in ``htcgrid.metrics``).

Grid-wide gauges (tasks by state and function, queue depth by function and priority, agents,
desired agents) are read from the task store when scraped and kept ``CACHE_SECONDS``, so
servers on one backend agree and a busy scraper costs one store read per period. The API
request histogram and the submitted-task counter are this process's own.

Who may scrape: anyone connecting from this machine (loopback), as a Prometheus or an agent
beside the server does; from elsewhere, a signed-in caller (an API key as bearer token or
``X-Api-Key``, as Prometheus's ``authorization`` setting sends it). With ``--no-auth``,
everyone. The answer holds counts only, never a task, session or agent id.
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from htcgrid import metrics as m
from htcgrid.api.auth import API_KEY, BEARER
from htcgrid.api.middleware import ASGIApp, Message, Receive, Scope, Send
from htcgrid.auth.principals import Authenticator
from htcgrid.models import TaskState
from htcgrid.presence import list_agents
from htcgrid.scaling import ScalingPolicy, desired_capacity
from htcgrid.store.base import TaskStore

CACHE_SECONDS = 1.5
UNMATCHED = "<unmatched>"  # a request no route answers: one label value, not its path
SUBMIT_ROUTE = "/v1/sessions"


class ServerMetrics:
    """One server's registry: its own counters, and the grid's gauges read from ``store``."""

    def __init__(
        self,
        store: TaskStore,
        clock: Callable[[], float] = time.time,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self.store = store
        self.clock = clock
        self.registry = CollectorRegistry()
        self.submitted = m.counter(m.SUBMITTED, self.registry)
        self.api_seconds = m.histogram(m.API_SECONDS, self.registry, m.API_SECONDS_BUCKETS)
        grid = (m.TASKS, m.QUEUE_DEPTH, m.AGENTS, m.DESIRED_AGENTS)
        self.registry.register(m.ScrapeCollector(self.read_grid, grid, cache_seconds))

    def read_grid(self) -> list[GaugeMetricFamily]:
        counts = self.store.task_counts()
        by_state: dict[tuple[str, str], int] = defaultdict(int)
        pending: dict[tuple[str, str], int] = defaultdict(int)
        for (function, state, priority), n in counts.items():
            by_state[state.value, function] += n
            if state is TaskState.PENDING:
                pending[function, str(priority)] += n
        backlog = sum(pending.values())
        running = sum(n for (_, state, _), n in counts.items() if state is TaskState.PROCESSING)
        desired = desired_capacity(ScalingPolicy(), backlog, running, 0, math.inf)
        return [
            m.gauge(m.TASKS, by_state.items()),
            m.gauge(m.QUEUE_DEPTH, pending.items()),
            m.gauge(m.AGENTS, [((), len(list_agents(self.store, self.clock())))]),
            m.gauge(m.DESIRED_AGENTS, [((), desired)]),
        ]


class RequestTimer:
    """ASGI middleware: times every request into ``htcgrid_api_request_seconds`` by route
    template, and counts the tasks of every created session into the submitted total."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]
        body: list[bytes] = []

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            elif status[0] == 201 and _route(scope) == SUBMIT_ROUTE:
                body.append(bytes(message.get("body", b"")))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            labels = (_route(scope), str(scope.get("method", "")), str(status[0]))
            self.metrics.api_seconds.labels(*labels).observe(time.perf_counter() - started)
            if body and scope.get("method") == "POST":
                self.metrics.submitted.inc(_task_count(b"".join(body)))


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return str(getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED)


def _task_count(body: bytes) -> int:
    try:
        return int(json.loads(body)["task_count"])
    except (ValueError, KeyError, TypeError):
        return 0


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def install_metrics(app: FastAPI, store: TaskStore, auth: Authenticator | None) -> ServerMetrics:
    """Add ``GET /metrics`` and the request timer to ``app``."""
    metrics = ServerMetrics(store)
    app.add_middleware(RequestTimer, metrics=metrics)
    router = APIRouter(tags=["ops"])

    # Not in the OpenAPI document: a scrape endpoint in Prometheus's text format, whose
    # access rule (open on loopback) a JSON API's security scheme cannot state.
    @router.get("/metrics", response_class=Response, include_in_schema=False)
    def scrape(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = BEARER,
        api_key: str | None = API_KEY,
    ) -> Response:
        """The server's metrics in Prometheus text format (open on loopback)."""
        if auth is not None and not _loopback(request):
            auth.authenticate(credentials.credentials if credentials else None, api_key)
        return Response(m.exposition(metrics.registry), media_type=m.CONTENT_TYPE)

    app.include_router(router)
    return metrics
