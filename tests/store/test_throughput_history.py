"""The dashboard's throughput history on every backend: written once a minute by whichever
server samples first, read back by another (or a restarted) one, pruned after KEEP_SECONDS."""

from __future__ import annotations

import pytest

from htcgrid.api.dashboard_history import BUCKET_SECONDS, KEEP_SECONDS, PREFIX, ThroughputHistory
from htcgrid.store import TaskStore

T0 = 1_700_000_040.0  # a minute's start


def test_history_is_shared_through_the_store_and_pruned(store: TaskStore) -> None:
    one, two = ThroughputHistory(store), ThroughputHistory(store)
    one.record(T0, total=100, ended=10)
    two.record(T0 + 5, total=999, ended=999)  # the same minute: the first value stays
    two.record(T0 + BUCKET_SECONDS, total=160, ended=70)
    [point] = ThroughputHistory(store).series(T0 + BUCKET_SECONDS)  # a restarted server
    assert point["submitted_per_second"] == pytest.approx(60 / BUCKET_SECONDS)
    assert point["finished_per_second"] == pytest.approx(60 / BUCKET_SECONDS)
    assert one.series(T0 + BUCKET_SECONDS) == [point]
    later = T0 + KEEP_SECONDS + 2 * BUCKET_SECONDS
    one.record(later, total=160, ended=160)
    assert list(store.list_meta(PREFIX)) == [f"{PREFIX}{int(later // BUCKET_SECONDS):012d}"]
