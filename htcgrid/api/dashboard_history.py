"""The overview's throughput history, kept in the store so that it outlives a restart of the
server and is the same on every server of one backend.

Each server, while someone looks at its dashboard, samples the grid's totals (tasks counted,
tasks ended) and writes them once per minute as a meta record ``throughput/<minute>`` with
``set_meta_if_absent``: the first server to sample a minute writes it, the others keep its
value. The chart is the difference between consecutive minutes' totals, read back from the
store; records older than ``KEEP_SECONDS`` are deleted by whichever server writes a new one.
A minute nobody sampled is a gap, and the rate across it is averaged over the gap.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from htcgrid.store.base import TaskStore

PREFIX = "throughput/"
BUCKET_SECONDS = 60.0
HISTORY_SECONDS = 3600.0
KEEP_SECONDS = 3 * 3600.0


def bucket_key(now: float) -> str:
    return f"{PREFIX}{int(now // BUCKET_SECONDS):012d}"


class ThroughputHistory:
    """Grid-wide totals per minute in the store, and the rates drawn from them."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self._written = ""

    def record(self, now: float, total: int, ended: int) -> None:
        """Note the totals for ``now``'s minute unless this or another server already did."""
        key = bucket_key(now)
        if key == self._written:
            return
        value = json.dumps({"t": now, "submitted": total, "finished": ended})
        self.store.set_meta_if_absent(key, value)
        self._written = key
        oldest = bucket_key(now - KEEP_SECONDS)
        for old in self.store.list_meta(PREFIX):
            if old < oldest:
                self.store.delete_meta(old)

    def series(self, now: float) -> list[dict[str, float]]:
        """Tasks/s submitted and finished between consecutive recorded minutes of the last
        hour, oldest first."""
        points: list[tuple[float, int, int]] = []
        since = bucket_key(now - HISTORY_SECONDS - BUCKET_SECONDS)
        for key, value in sorted(self.store.list_meta(PREFIX).items()):
            if key < since:
                continue
            try:
                found: dict[str, Any] = json.loads(value)
                points.append((float(found["t"]), int(found["submitted"]), int(found["finished"])))
            except (ValueError, KeyError, TypeError):
                continue  # a record this version cannot read: a gap in the chart
        series = []
        for (t0, total0, ended0), (t1, total1, ended1) in itertools.pairwise(points):
            span = max(t1 - t0, 1e-9)
            series.append(
                {
                    "t": t1,
                    "submitted_per_second": max(0, total1 - total0) / span,
                    "finished_per_second": max(0, ended1 - ended0) / span,
                }
            )
        return series
