"""An idle agent asks the task store for work when there is news of work, not after every
wake-up of its loop: a recorded outcome or a cancel seen by the heartbeat puts no task in the
queue."""

from __future__ import annotations

from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from agent_thread import running
from procs import until
from sample_handlers_path import HERE

from htcgrid.agent.agent import Agent
from htcgrid.agent.messages import Task
from htcgrid.agent.worker import WorkerConfig
from htcgrid.dataplane import open_data_plane
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import Settings
from htcgrid.store import open_store

FAST = Settings(heartbeat_seconds=0.2, lease_seconds=2.0, ttl_check_seconds=0.2, grace_seconds=5)
ROUND_TRIPS = 20


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[GridService]:
    store = open_store(f"sqlite://{tmp_path / 'grid.db'}")
    yield GridService(store, open_data_plane(f"file://{tmp_path / 'blobs'}"), FAST)
    store.close()


def count_claims(grid: GridService) -> list[int]:
    """From now on, each claim of ``grid``'s store adds how many tasks it took to the list."""
    claimed: list[int] = []
    real_claim = grid.store.claim

    def counting(*args: Any, **kwargs: Any) -> Any:
        leases = real_claim(*args, **kwargs)
        claimed.append(len(leases))
        return leases

    grid.store.claim = counting  # type: ignore[method-assign]
    return claimed


def test_one_claim_per_task_on_a_quiet_grid(grid: GridService) -> None:
    worker = WorkerConfig(handler="sample_handlers.echo", paths=(HERE,))
    with running(Agent(grid.store, grid.data, FAST, worker, 2)) as runner:
        until(lambda: all(s.ready for s in runner.slots), 30, "ready workers")
        claimed = count_claims(grid)
        for i in range(ROUND_TRIPS):
            sid = grid.submit(SubmitRequest(tasks=[i])).session_id
            until(lambda: grid.session(sid).complete, 30, f"session {sid}")  # noqa: B023
            until(lambda: runner.completer.unrecorded == 0, 30, "the outcome recorded")
    assert sum(claimed) == ROUND_TRIPS
    # before: every recorded outcome woke the loop into a claim that found nothing
    assert claimed.count(0) <= 2, f"{claimed.count(0)} claims found nothing: {claimed}"


def test_claims_of_a_busy_agent_come_in_batches(grid: GridService) -> None:
    """Tasks of a few ms keep both slots busy with a few queued behind: the agent tops up once
    half its capacity is free, not with a write transaction after every finished task."""
    claimed = count_claims(grid)
    tasks = 300
    worker = WorkerConfig(handler="sample_handlers.sleep", paths=(HERE,))
    with running(Agent(grid.store, grid.data, FAST, worker, 2)):
        sid = grid.submit(SubmitRequest(tasks=[{"seconds": 0.002}] * tasks)).session_id
        until(lambda: grid.session(sid).complete, 60, "the session")
    assert sum(claimed) == tasks
    taking = [n for n in claimed if n]
    # 2 ms tasks: 51 a slot in flight (100 ms of prefetch), top-ups of 51 or more; a slow
    # machine stretches the tasks and shrinks them (a claim per task was ~4 in 5 claims)
    assert len(taking) <= tasks // 3, f"{len(taking)} claims took tasks: {taking}"


def test_the_tasks_of_a_dispatch_pass_go_to_a_worker_in_one_message(
    grid: GridService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of short tasks is one pickle and one write to each worker, not one each."""
    messages: list[int] = []  # tasks in each message the agent sent to a worker
    real_send = Connection.send

    def counting(conn: Connection, message: Any) -> None:
        if isinstance(message, Task | list):
            messages.append(len(message) if isinstance(message, list) else 1)
        real_send(conn, message)

    monkeypatch.setattr(Connection, "send", counting)
    tasks = 2000
    worker = WorkerConfig(handler="sample_handlers.echo", paths=(HERE,))
    with running(Agent(grid.store, grid.data, FAST, worker, 2)):
        sid = grid.submit(SubmitRequest(tasks=list(range(tasks)))).session_id
        until(lambda: grid.session(sid).complete, 60, "the session")
        records = grid.results(sid, 0, tasks).results
    by_index = {int(r.task_id.rpartition("_")[2]): r.output for r in records}
    assert by_index == {i: str(i).encode() for i in range(tasks)}
    assert sum(messages) >= tasks  # a task taken back for an idle worker is sent again
    assert len(messages) <= tasks // 4, f"{len(messages)} messages for {tasks} tasks"
