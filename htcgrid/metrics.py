"""Every Prometheus metric htcgrid exports, defined once: names, types, help and labels.

The server (``GET /metrics``) and each agent (``htcgrid agent --metrics-port``) export the
ones that are theirs, each into its own ``CollectorRegistry`` (never the process-wide default
one, so that several apps or agents in one process, as in tests, do not collide).

Two kinds of number:

- grid-wide gauges (tasks by state, queue depth, agents, desired agents) are read from the task
  store when scraped, so every server on one backend reports the same values;
- counters and histograms (API requests, submitted tasks, task outcomes, run and queue-wait
  times, retries) count what this process saw.

A label never holds a task, session or agent id: only functions, states, priorities,
outcomes, reasons and route templates, whose number stays small.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

Kind = Literal["counter", "gauge", "histogram"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
TASK_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)
API_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60)


@dataclass(frozen=True)
class Metric:
    name: str  # as exposed; a counter's samples add ``_total``
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()


TASKS = Metric("htcgrid_tasks", "gauge", "Tasks in the grid by state.", ("state", "function"))
SUBMITTED = Metric("htcgrid_tasks_submitted", "counter", "Tasks submitted through this server.")
FINISHED = Metric(
    "htcgrid_tasks_finished",
    "counter",
    "Task attempts ended by this agent, by outcome (succeeded, error, infrastructure).",
    ("function", "outcome"),
)
RETRIES = Metric(
    "htcgrid_task_retries", "counter", "Task attempts that will run again, by reason.", ("reason",)
)
QUEUE_DEPTH = Metric(
    "htcgrid_queue_depth",
    "gauge",
    "Pending tasks by function and priority.",
    ("function", "priority"),
)
RUN_SECONDS = Metric("htcgrid_task_run_seconds", "histogram", "Run time of a task attempt.")
QUEUE_WAIT_SECONDS = Metric(
    "htcgrid_task_queue_wait_seconds", "histogram", "Time from submission to the attempt's start."
)
AGENTS = Metric("htcgrid_agents", "gauge", "Agents seen on the grid recently.")
SLOTS = Metric("htcgrid_slots", "gauge", "This agent's worker slots by state.", ("state",))
API_SECONDS = Metric(
    "htcgrid_api_request_seconds",
    "histogram",
    "API requests served by this server, by route template, method and status.",
    ("route", "method", "status"),
)
DESIRED_AGENTS = Metric(
    "htcgrid_desired_agents",
    "gauge",
    "Agents the grid's backlog asks for (the autoscaling signal, default policy).",
)

ALL = (
    TASKS,
    SUBMITTED,
    FINISHED,
    RETRIES,
    QUEUE_DEPTH,
    RUN_SECONDS,
    QUEUE_WAIT_SECONDS,
    AGENTS,
    SLOTS,
    API_SECONDS,
    DESIRED_AGENTS,
)
SERVER = (TASKS, SUBMITTED, QUEUE_DEPTH, AGENTS, API_SECONDS, DESIRED_AGENTS)
AGENT = (FINISHED, RETRIES, RUN_SECONDS, QUEUE_WAIT_SECONDS, SLOTS)


def counter(metric: Metric, registry: CollectorRegistry) -> Counter:
    assert metric.kind == "counter"
    return Counter(metric.name, metric.help, metric.labels, registry=registry)


def histogram(
    metric: Metric, registry: CollectorRegistry, buckets: Sequence[float] = TASK_SECONDS_BUCKETS
) -> Histogram:
    assert metric.kind == "histogram"
    return Histogram(metric.name, metric.help, metric.labels, registry=registry, buckets=buckets)


def gauge(metric: Metric, values: Iterable[tuple[Sequence[str], float]]) -> GaugeMetricFamily:
    """A gauge read at scrape time, one sample per ``(label values, value)``."""
    assert metric.kind == "gauge"
    family = GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)
    for labels, value in values:
        family.add_metric(list(labels), value)
    return family


class ScrapeCollector(Collector):
    """Gauges computed by ``read`` when scraped, the answer kept ``cache_seconds`` so that
    several scrapers (or a dashboard) cost the store one read per period."""

    def __init__(
        self,
        read: Callable[[], list[GaugeMetricFamily]],
        described: Sequence[Metric],
        cache_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read = read
        self.described = described
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._at: float | None = None
        self._families: list[GaugeMetricFamily] = []

    def describe(self) -> list[Any]:
        return [gauge(m, ()) for m in self.described]

    def collect(self) -> list[Any]:
        now = self.clock()
        if self._at is None or now - self._at >= self.cache_seconds or now < self._at:
            self._families = self.read()
            self._at = now
        return self._families


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus text format."""
    return generate_latest(registry)
