"""The agent's heartbeat outlives a presence record it cannot write: the leases it holds are
still extended. (A real SQLite store whose ``put_meta`` fails as a locked database once did
during a million-task commit; the failure is injected at the store's own method here.)"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from htcgrid.agent.heartbeat import Heartbeat, LoopWatch
from htcgrid.models import NewTask, SessionSpec
from htcgrid.presence import AgentPresence
from htcgrid.settings import Settings
from htcgrid.store.sqlite import SQLiteTaskStore

LEASE = 5.0


class LockedMeta(SQLiteTaskStore):
    """A store whose presence records always fail, the way a locked file once failed them."""

    def put_meta(self, key: str, value: str) -> None:
        raise sqlite3.OperationalError("database is locked")


def test_leases_are_extended_while_the_presence_record_fails(tmp_path: Path) -> None:
    store = LockedMeta(f"sqlite://{tmp_path}/grid.db")
    spec = SessionSpec(id="s1", task_count=1, content_hash="h", owner="alice")
    store.create_session(spec, [NewTask(0, 0, payload=b"1")], time.time())
    [lease] = store.claim("agent-1", 1, LEASE, time.time())
    heartbeat = Heartbeat(
        "agent-1",
        store,
        Settings(heartbeat_seconds=0.05, lease_seconds=LEASE),
        lambda: [(lease.task_id, lease.attempt)],
        lambda gone: None,
        LoopWatch(),
        presence=AgentPresence(store, "agent-1", 1, min_interval_seconds=0.0),
    )
    heartbeat.start()
    try:
        deadline = time.monotonic() + 30
        while heartbeat.beats < 3:
            assert time.monotonic() < deadline, "the heartbeat stopped beating"
            time.sleep(0.01)
    finally:
        heartbeat.stop()
    record = store.get_task(lease.task_id)
    assert record is not None and record.lease_expires_at is not None
    assert record.lease_expires_at > lease.expires_at
