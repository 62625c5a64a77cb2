"""A slow task store slows an agent's claims instead of letting unrecorded work pile up.

The store is the real SQLite store; only its ``complete`` is made slow (50 ms a call), as a
database server far away or overloaded would be.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from sample_handlers_path import HERE

from htcgrid.agent.agent import Agent
from htcgrid.agent.core import MAX_DEPTH
from htcgrid.agent.worker import WorkerConfig
from htcgrid.dataplane import open_data_plane
from htcgrid.models import Outcome, TaskState
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import Settings
from htcgrid.store.sqlite import SQLiteTaskStore


class SlowCompletions(SQLiteTaskStore):
    def complete(self, agent_id: str, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        time.sleep(0.05)
        return super().complete(agent_id, outcomes, now)


def test_unrecorded_outcomes_hold_back_claims(tmp_path: Path) -> None:
    store = SlowCompletions(f"sqlite://{tmp_path / 'grid.db'}")
    grid = GridService(store, open_data_plane("memory://"))
    tasks = 4000
    sid = grid.submit(SubmitRequest([0] * tasks)).session_id
    slots = 2
    runner = Agent(
        store, grid.data, Settings(), WorkerConfig("sample_handlers.echo", (HERE,)), slots
    )
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    most_processing = 0
    deadline = time.monotonic() + 120
    while not grid.session(sid).complete and time.monotonic() < deadline:
        most_processing = max(most_processing, store.count_states(sid)[TaskState.PROCESSING])
        time.sleep(0.01)
    runner.stop()
    thread.join(timeout=30)
    assert grid.session(sid).complete
    capacity = slots * MAX_DEPTH
    assert most_processing <= 6 * capacity < tasks
    assert runner.counts["finished"] == tasks
