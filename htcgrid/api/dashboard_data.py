"""What the dashboard's pages show, computed by the server with bounded reads.

Whoever asks, and however many viewers poll, the store is read at most once per period:

- The overview counts the tasks of the newest sessions (the running ones' counts, and the
  ended ones' read once) at most once per ``CACHE_SECONDS``, from the first look at the
  dashboard for an hour, and records the totals once a minute in the store to draw
  throughput (``dashboard_history``: it survives a restart and agrees between servers).
- A running session's counts are read at most once per ``COUNTS_SECONDS``, an ended one's
  once (``session_pages.EndedCounts``); its charts and failed-task scan at most once per
  ``REFRESH_SECONDS``.
- A session's charts come from ``PROBES`` short reads of its results at evenly spaced
  completion numbers: the completion number of a result *is* how many tasks had ended when it
  ended, so the probes draw the completion curve, and their tasks are a sample for the
  duration and queue-wait histograms. A session of 1,000,000 tasks costs what one of 1,000
  does.
- Failed tasks are the first ``LISTED`` of ``TaskStore.tasks_in_state``, read through the
  store's index of a session's tasks by state (a few reads however big the session), at most
  once per ``REFRESH_SECONDS``; the page pages on through ``GET /v1/sessions/{id}/tasks``.
- Retried tasks (any state, more than one attempt) are found by reading the session's results
  onwards from where the last look stopped, at most ``SCAN_PER_CALL`` per call, so a big
  session's list fills in over a few calls instead of one unbounded read.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from htcgrid.api.dashboard_history import HISTORY_SECONDS, ThroughputHistory
from htcgrid.models import SessionInfo, TaskRecord, TaskState
from htcgrid.presence import list_agents
from htcgrid.session_pages import counts_of
from htcgrid.store.base import TaskStore

CACHE_SECONDS = 10.0
MAX_SESSIONS = 10_000  # the overview counts the tasks of the newest sessions
PAGE = 1000
REFRESH_SECONDS = 10.0  # a running session's charts and failed-task scan, at most this often
COUNTS_SECONDS = 1.0  # a running session's counts, shared by every viewer
SAMPLE_SECONDS = CACHE_SECONDS
PROBES = 30
PROBE_TASKS = 10
SCAN_PER_CALL = 2000
SCAN_PAGE = 1000
LISTED = 100  # failed or retried tasks kept per session
SESSIONS_KEPT = 64
BINS = 20
TERMINAL = (TaskState.FINISHED, TaskState.FAILED, TaskState.CANCELLED)


class Grid:
    """The overview's numbers, shared by every viewer of one server."""

    def __init__(
        self,
        store: TaskStore,
        lost_after_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.lost_after_seconds = lost_after_seconds
        self.clock = clock
        self.history = ThroughputHistory(store)
        self._series: list[dict[str, float]] = []
        self._lock = threading.Lock()
        self._read_at = -CACHE_SECONDS
        self._counts: dict[tuple[str, TaskState, int], int] = {}
        self._viewed_at = -HISTORY_SECONDS
        self._sampler: threading.Thread | None = None
        self.ended = counts_of(store)

    def counts(self) -> dict[tuple[str, TaskState, int], int]:
        """The tasks of the newest ``MAX_SESSIONS`` sessions by (function, state, priority),
        read at most once per ``CACHE_SECONDS``. Built from the sessions, not from
        ``TaskStore.task_counts`` (a GROUP BY over every task on the SQL stores, half a second
        of CPU on a grid of a million tasks): an ended session's counts are read once, so each
        look reads the session list and the counts of the running sessions only. A task is
        counted at its session's priority."""
        with self._lock:
            now = self.clock()
            if not 0 <= now - self._read_at < CACHE_SECONDS:
                self._counts = self._count()
                self._read_at = now
                self._sample(now)
            return self._counts

    def _count(self) -> dict[tuple[str, TaskState, int], int]:
        found: Counter[tuple[str, TaskState, int]] = Counter()
        offset = 0
        while offset < MAX_SESSIONS:
            page = self.store.list_sessions(limit=PAGE, offset=offset)
            for info in page:
                for state, n in self.ended(info).items():
                    if n:
                        found[info.spec.function, state, info.spec.priority] += n
            if len(page) < PAGE:
                break
            offset += PAGE
        return dict(found)

    def _sample(self, now: float) -> None:
        total = sum(self._counts.values())
        ended = sum(n for (_, state, _), n in self._counts.items() if state in TERMINAL)
        self.history.record(now, total, ended)
        self._series = self.history.series(now)

    def viewed(self) -> None:
        """Someone looks at the dashboard: keep sampling for the next hour."""
        self._viewed_at = self.clock()
        if self._sampler is None:
            self._sampler = threading.Thread(
                target=self._run, name="htcgrid-dashboard", daemon=True
            )
            self._sampler.start()

    def _run(self) -> None:
        while True:
            time.sleep(SAMPLE_SECONDS)
            if self.clock() - self._viewed_at < HISTORY_SECONDS:
                try:
                    self.counts()
                except Exception:  # an outage of the store: the next sample tries again
                    continue

    def throughput(self) -> list[dict[str, float]]:
        """Tasks/s submitted and finished per minute over the last hour, from the store."""
        return self._series

    def overview(self) -> dict[str, Any]:
        self.viewed()
        counts = self.counts()
        by_state = dict.fromkeys((s.value for s in TaskState), 0)
        queue: dict[tuple[str, int], int] = {}
        for (function, state, priority), n in counts.items():
            by_state[state.value] += n
            if state is TaskState.PENDING:
                queue[function, priority] = queue.get((function, priority), 0) + n
        ended = by_state["finished"] + by_state["failed"]
        agents = self.agents()
        alive = [a for a in agents if not a["lost"]]
        return {
            "now": self.clock(),
            "counted_at": self._read_at,
            "tasks": by_state,
            "queue": [
                {"function": f, "priority": p, "pending": n}
                for (f, p), n in sorted(queue.items(), key=lambda kv: (kv[0][0], -kv[0][1]))
            ],
            "agents": len(alive),
            "lost_agents": len(agents) - len(alive),
            "slots": sum(a["slots"] for a in alive),
            "busy_slots": by_state["processing"],
            "failure_rate": by_state["failed"] / ended if ended else None,
            "throughput": self.throughput(),
        }

    def agents(self) -> list[dict[str, Any]]:
        now = self.clock()
        found = []
        for agent in list_agents(self.store, now):
            age = max(0.0, now - agent.last_seen)
            found.append(
                {**agent.as_dict(), "heartbeat_age": age, "lost": age > self.lost_after_seconds}
            )
        return found


@dataclass
class Scan:
    """How far the failed/retried scan of one session has read, and what it found."""

    cursor: int = 0
    read: int = 0
    at: float = -REFRESH_SECONDS
    failed: list[dict[str, Any]] = field(default_factory=list)
    failed_cursor: str | None = None
    retried: list[dict[str, Any]] = field(default_factory=list)


class Sessions:
    """A session's charts and lists, cached while its completion number stays the same."""

    def __init__(self, store: TaskStore, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()
        self._scans: OrderedDict[str, Scan] = OrderedDict()
        self._charts: OrderedDict[str, tuple[int, float, dict[str, Any]]] = OrderedDict()
        self._counts: dict[str, tuple[float, dict[TaskState, int]]] = {}
        self.ended = counts_of(store)

    def counts(self, info: SessionInfo) -> dict[TaskState, int]:
        """The session's counts per state: a running one's read at most once per
        ``COUNTS_SECONDS`` whoever watches it, an ended one's once."""
        if info.complete:
            return self.ended(info)
        now = self.clock()
        with self._lock:
            found = self._counts.get(info.id)
            if found is not None and 0 <= now - found[0] < COUNTS_SECONDS:
                return found[1]
        counts = self.store.count_states(info.id)
        with self._lock:
            self._counts = {k: v for k, v in self._counts.items() if now - v[0] < COUNTS_SECONDS}
            self._counts[info.id] = (now, counts)
        return counts

    def detail(self, info: SessionInfo) -> dict[str, Any]:
        with self._lock:
            charts = self._charts_of(info)
            scan = self._scan(info)
            return {
                **charts,
                "failed": scan.failed,
                "failed_cursor": scan.failed_cursor,
                "retried": scan.retried,
                "scanned": scan.read,
                "scan_complete": scan.cursor >= info.cursor,
            }

    def _charts_of(self, info: SessionInfo) -> dict[str, Any]:
        cached = self._charts.get(info.id)
        now = self.clock()
        if cached is not None and (cached[0] == info.cursor or now - cached[1] < REFRESH_SECONDS):
            self._charts.move_to_end(info.id)
            return cached[2]
        charts = self._probe(info)
        self._charts[info.id] = (info.cursor, now, charts)
        while len(self._charts) > SESSIONS_KEPT:
            self._charts.popitem(last=False)
        return charts

    def _probe(self, info: SessionInfo) -> dict[str, Any]:
        last = info.cursor
        curve: list[tuple[float, int]] = [(info.spec.created_at, 0)]
        sample: dict[str, TaskRecord] = {}
        positions = sorted({round(k * last / PROBES) for k in range(PROBES)} - {last})
        for position in positions:
            page = self.store.results(info.id, position, PROBE_TASKS)
            for record in page:
                sample[record.task_id] = record
            if page and page[0].finished_at is not None:
                curve.append((page[0].finished_at, page[0].cursor or position + 1))
        if last:
            tail = self.store.results(info.id, last - 1, 1)
            if tail and tail[0].finished_at is not None:
                curve.append((tail[0].finished_at, tail[0].cursor or last))
        runs, waits = [], []
        for record in sample.values():
            if record.started_at is not None and record.finished_at is not None:
                runs.append(max(0.0, record.finished_at - record.started_at))
            if record.started_at is not None and record.submitted_at:
                waits.append(max(0.0, record.started_at - record.submitted_at))
        return {
            "completion": sorted(curve),
            "durations": histogram(runs),
            "queue_waits": histogram(waits),
        }

    def _scan(self, info: SessionInfo) -> Scan:
        scan = self._scans.pop(info.id, None) or Scan()
        self._scans[info.id] = scan
        while len(self._scans) > SESSIONS_KEPT:
            self._scans.popitem(last=False)
        now = self.clock()
        if 0 <= now - scan.at < REFRESH_SECONDS:
            return scan
        scan.at = now
        failed, scan.failed_cursor = self.store.tasks_in_state(
            info.id, TaskState.FAILED, None, LISTED
        )
        scan.failed = [_brief(record) for record in failed]
        budget = SCAN_PER_CALL
        while budget > 0 and scan.cursor < info.cursor:
            page = self.store.results(info.id, scan.cursor, min(SCAN_PAGE, budget))
            if not page:
                break
            for record in page:
                _note(scan, record)
            scan.read += len(page)
            scan.cursor = page[-1].cursor or scan.cursor + len(page)
            budget -= len(page)
        return scan


def _note(scan: Scan, record: TaskRecord) -> None:
    if record.attempt > 1 and len(scan.retried) < LISTED:
        scan.retried.append(_brief(record))


def _brief(record: TaskRecord) -> dict[str, Any]:
    return {
        "task_id": record.task_id,
        "index": record.index,
        "state": record.state.value,
        "attempts": record.attempt,
        "error": (
            {"type": record.error.type, "message": record.error.message} if record.error else None
        ),
    }


def histogram(values: list[float], bins: int = BINS) -> dict[str, Any]:
    """``bins`` equal bins from the smallest value to the largest: their left edges (plus the
    last right edge) and counts."""
    if not values:
        return {"edges": [], "counts": [], "sampled": 0}
    low, high = min(values), max(values)
    width = (high - low) / bins or 1e-3
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, int((value - low) / width))] += 1
    edges = [low + i * width for i in range(bins + 1)]
    return {"edges": edges, "counts": counts, "sampled": len(values)}
