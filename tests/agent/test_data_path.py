"""The data path between store, agent and workers: any payload and result size on every data
plane, no deadlock whatever fills a pipe, and dispatch that never leaves a slot idle while a
task of its function waits."""

from __future__ import annotations

import heapq
import json
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from agent_thread import running
from backends import DATA_KINDS, backend_url
from procs import until
from sample_handlers_path import HERE

from htcgrid.agent.agent import Agent
from htcgrid.agent.heartbeat import LoopWatch
from htcgrid.agent.packages import PackageCache
from htcgrid.agent.worker import WorkerConfig
from htcgrid.dataplane import open_data_plane
from htcgrid.functions import FunctionRegistry
from htcgrid.models import TaskRecord, TaskState, json_dumps
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import Settings
from htcgrid.store import open_store

FAST = Settings(heartbeat_seconds=0.2, lease_seconds=5.0, ttl_check_seconds=0.2, grace_seconds=5)
KIB, MIB = 1024, 1024 * 1024
SIZES = [2, KIB, 63 * KIB, 64 * KIB + 1, MIB, 32 * MIB]  # JSON bytes; "" is the least there is


def event_of(payload_bytes: int, result_bytes: int) -> str:
    """A JSON string of ``payload_bytes`` (or as few as can say it) asking ``sized`` for a
    result of ``result_bytes``; the empty string asks for the empty string."""
    if payload_bytes == result_bytes == 2:
        return ""
    head = f"{result_bytes}:"
    return head + "p" * max(0, payload_bytes - 2 - len(head))


def expected_output(event: str) -> bytes:
    if not event:
        return b'""'
    wanted = int(event.split(":", 1)[0])
    return json_dumps((event * (wanted // len(event) + 1))[: wanted - 2].replace('"', "q"))


@contextmanager
def grid_on(data_kind: str, tmp_path: Path) -> Iterator[GridService]:
    store = open_store(f"sqlite://{tmp_path / 'grid.db'}")
    with backend_url(data_kind, tmp_path, role="data") as data_url:
        data = open_data_plane(data_url)
        yield GridService(store, data, FAST.with_(max_payload_bytes=64 * MIB))
        data.close()
    store.close()


def production_agent(grid: GridService, handler: str, slots: int, tmp_path: Path) -> Agent:
    """An agent built as `htcgrid agent` builds it: with a package cache."""
    worker = WorkerConfig(handler=f"sample_handlers.{handler}", paths=(HERE,))
    packages = PackageCache(FunctionRegistry(grid.data), tmp_path / "cache", worker)
    return Agent(grid.store, grid.data, grid.settings, worker, slots, packages=packages)


def wait_done(grid: GridService, session_id: str, timeout: float = 120) -> list[TaskRecord]:
    until(lambda: grid.session(session_id).complete, timeout, f"session {session_id}")
    records: list[TaskRecord] = []
    after = 0
    while True:
        page = grid.results(session_id, after, 1000)
        records += [
            replace(r, output=grid.task_output(r.task_id)) if r.output_ref else r
            for r in page.results
        ]
        if not page.results:
            return sorted(records, key=lambda r: r.index)
        after = page.cursor


@pytest.mark.parametrize("slots", [1, 2])
@pytest.mark.parametrize("data_kind", DATA_KINDS)
def test_every_payload_and_result_size_round_trips(
    data_kind: str, slots: int, tmp_path: Path
) -> None:
    pairs = [(s, s) for s in SIZES] + [(12, 32 * MIB), (32 * MIB, 4), (MIB, 64 * KIB + 1)]
    events = [event_of(p, r) for p, r in pairs]
    assert [len(json_dumps(e)) for e in events] == [p for p, _ in pairs]
    assert [len(expected_output(e)) for e in events] == [r for _, r in pairs]
    with grid_on(data_kind, tmp_path) as grid:
        # short tasks first, so the agent prefetches deeply when the big ones come
        warm = grid.submit(SubmitRequest(tasks=[event_of(2, 2)] * 200)).session_id
        sid = grid.submit(SubmitRequest(tasks=events)).session_id
        with running(production_agent(grid, "sized", slots, tmp_path)):
            wait_done(grid, warm)
            records = wait_done(grid, sid)
    assert [r.state for r in records] == [TaskState.FINISHED] * len(events)
    for record, event in zip(records, events, strict=True):
        assert record.output == expected_output(event), f"task {record.index} differs"


@pytest.mark.parametrize("data_kind", ["memory", "file"])
def test_big_payloads_and_results_never_deadlock_the_agent(data_kind: str, tmp_path: Path) -> None:
    blob = "b" * (137 * KIB)
    with grid_on(data_kind, tmp_path) as grid:
        sid = grid.submit(SubmitRequest(tasks=[blob + str(i) for i in range(40)])).session_id
        runner = production_agent(grid, "echo", 2, tmp_path)
        with running(runner):
            records = wait_done(grid, sid, timeout=60)
    assert [r.output for r in records] == [json_dumps(blob + str(i)) for i in range(40)]
    assert all(r.attempt == 1 for r in records), "a lease expired: heartbeats were starved"


def spans(records: list[TaskRecord]) -> list[tuple[float, float]]:
    out = []
    for r in records:
        assert r.state is TaskState.FINISHED and r.output is not None
        reported = json.loads(r.output)
        out.append((reported["start"], reported["end"]))
    return out


def test_long_tasks_do_not_queue_behind_each_other_after_short_ones(tmp_path: Path) -> None:
    with grid_on("file", tmp_path) as grid:
        runner = production_agent(grid, "timed_sleep", 2, tmp_path)
        with running(runner):
            short = grid.submit(SubmitRequest(tasks=[{"seconds": 0.001}] * 1000)).session_id
            wait_done(grid, short)
            assert runner._depth() > 2, "short tasks should have deepened the prefetch"
            sid = grid.submit(SubmitRequest(tasks=[{"seconds": 3}] * 2)).session_id
            (a, b) = spans(wait_done(grid, sid))
    assert max(a[0], b[0]) < min(a[1], b[1]), f"the two long tasks ran one after the other: {a} {b}"


def list_schedule(lengths: list[float], slots: int) -> float:
    """The makespan of running ``lengths`` in order, each on the first free slot, with no
    overhead: what a perfectly work-conserving dispatcher achieves."""
    free = [0.0] * slots
    for length in lengths:
        heapq.heappush(free, heapq.heappop(free) + length)
    return max(free)


def test_mixed_lengths_keep_every_slot_busy(tmp_path: Path) -> None:
    rng = random.Random(7)
    lengths = [rng.choice([0.001, 0.01, 0.2, 0.5, 1.0, 2.0]) for _ in range(20)]
    with grid_on("file", tmp_path) as grid:
        runner = production_agent(grid, "timed_sleep", 4, tmp_path)
        with running(runner):
            until(lambda: all(s.ready for s in runner.slots), 30, "four ready workers")
            warm = grid.submit(SubmitRequest(tasks=[{"seconds": 0.001}] * 200)).session_id
            wait_done(grid, warm)
            sid = grid.submit(SubmitRequest(tasks=[{"seconds": s} for s in lengths])).session_id
            ran = spans(wait_done(grid, sid))
    makespan = max(end for _, end in ran) - min(start for start, _ in ran)
    ideal = list_schedule(lengths, 4)
    assert ideal / makespan >= 0.9, f"efficiency {ideal / makespan:.2f} (makespan {makespan:.2f} s)"


def test_a_queued_task_moves_to_a_slot_that_becomes_idle(tmp_path: Path) -> None:
    with grid_on("file", tmp_path) as grid:
        runner = production_agent(grid, "timed_sleep", 2, tmp_path)
        runner.avg_task_seconds = 1e-4  # as after a run of tiny tasks: deep prefetch
        with running(runner):
            until(lambda: all(s.ready for s in runner.slots), 30, "two ready workers")
            sid = grid.submit(SubmitRequest(tasks=[{"seconds": 2}] + [{"seconds": 0.3}] * 4))
            ran = spans(wait_done(grid, sid.session_id))
    long_end = ran[0][1]
    assert all(start < long_end for start, _ in ran[1:]), "a short task waited for the long one"


def test_what_waits_behind_a_task_that_turns_out_long_moves_on_while_no_slot_is_idle(
    tmp_path: Path,
) -> None:
    """Deep prefetch puts a second long task behind the first; the other slot never falls
    idle (short tasks keep coming), so only seeing the first run long moves the second."""
    lengths = [2.0, 0.05, 2.0] + [0.05] * 30
    with grid_on("file", tmp_path) as grid:
        runner = production_agent(grid, "timed_sleep", 2, tmp_path)
        runner.avg_task_seconds = 1e-4  # as after a run of tiny tasks: deep prefetch
        with running(runner):
            until(lambda: all(s.ready for s in runner.slots), 30, "two ready workers")
            sid = grid.submit(SubmitRequest(tasks=[{"seconds": s} for s in lengths]))
            ran = spans(wait_done(grid, sid.session_id))
    makespan = max(end for _, end in ran) - min(start for start, _ in ran)
    ideal = list_schedule(lengths, 2)
    assert ideal / makespan >= 0.9, f"efficiency {ideal / makespan:.2f} (makespan {makespan:.2f} s)"


def test_heartbeats_go_on_while_the_loop_is_blocked(tmp_path: Path) -> None:
    with grid_on("file", tmp_path) as grid:
        sid = grid.submit(SubmitRequest(tasks=[{"seconds": 1.5}])).session_id
        runner = production_agent(grid, "timed_sleep", 1, tmp_path)
        release = threading.Event()
        real_claim = grid.store.claim

        def slow_claim(*args: Any, **kwargs: Any) -> Any:
            release.wait(30)  # the loop is stuck in a store call, as on a hung server
            return real_claim(*args, **kwargs)

        with running(runner):
            until(lambda: runner.held, 30, "the task to be claimed")
            grid.store.claim = slow_claim  # type: ignore[method-assign]
            runner.queue_empty = False
            beats = runner.heartbeat.beats
            until(lambda: runner.heartbeat.beats >= beats + 3, 10, "heartbeats while blocked")
            assert "claiming" in runner.watch.doing
            release.set()
            (record,) = wait_done(grid, sid)
    assert record.state is TaskState.FINISHED and record.attempt == 1


def test_a_stalled_loop_is_reported_once_per_stall() -> None:
    now = [100.0]
    watch = LoopWatch(clock=lambda: now[0])
    watch.doing = "claiming tasks from the task store"
    now[0] += 1.0
    assert watch.report(2.0) is None
    now[0] += 1.5
    assert (
        watch.report(2.0)
        == "agent loop has not turned for 2.5 s: claiming tasks from the task store"
    )
    now[0] += 5
    assert watch.report(2.0) is None  # said once
    watch.turn()
    now[0] += 3
    assert watch.report(2.0) is not None  # a new stall is reported again


def test_a_draining_agent_hands_unstarted_tasks_to_another_at_once(tmp_path: Path) -> None:
    with grid_on("file", tmp_path) as grid:
        first = production_agent(grid, "timed_sleep", 1, tmp_path)
        first.avg_task_seconds = 1e-4  # deep prefetch: it takes every task of the session
        second = production_agent(grid, "timed_sleep", 1, tmp_path)
        sid = grid.submit(SubmitRequest(tasks=[{"seconds": 1.0}] * 4, max_attempts=1))
        with running(first):
            until(
                lambda: len(first.held) == 4 and any(s.inflight for s in first.slots),
                30,
                "all held",
            )
            with running(second):
                until(lambda: any(s.ready for s in second.slots), 30, "the second agent's worker")
                stopped_at = time.time()
                first.stop()
                records = wait_done(grid, sid.session_id)
    assert [(r.state, r.attempt) for r in records] == [(TaskState.FINISHED, 1)] * 4
    ran = [json.loads(r.output or b"{}") for r in records]
    by_first = [r for r in ran if first.agent_id in r["stream"]]
    by_second = [r for r in ran if second.agent_id in r["stream"]]
    assert len(by_first) == 1, "only the running task stays with the draining agent"
    assert len(by_second) == 3
    assert min(r["start"] for r in by_second) - stopped_at < FAST.heartbeat_seconds + 0.5


def test_slots_grow_with_the_backlog_and_shrink_by_retiring_idle_workers(tmp_path: Path) -> None:
    from htcgrid.scaling import ScalingPolicy

    policy = ScalingPolicy(min_capacity=1, max_capacity=4, target_backlog=1, cooldown_seconds=0.3)
    with grid_on("file", tmp_path) as grid:
        worker = WorkerConfig(handler="sample_handlers.timed_sleep", paths=(HERE,))
        runner = Agent(grid.store, grid.data, grid.settings, worker, 4, autoscale=policy)
        seen: list[int] = []
        with running(runner):
            until(lambda: len(runner.slots) == 1, 30, "one worker to start with")
            sid = grid.submit(SubmitRequest(tasks=[{"seconds": 0.4}] * 16)).session_id
            until(lambda: seen.append(len(runner.slots)) or grid.session(sid).complete, 60, "done")
            records = wait_done(grid, sid)
            until(lambda: len(runner.slots) == 1, 30, "idle workers to be retired")
    assert max(seen) == 4, f"slots seen: {sorted(set(seen))}"
    assert [(r.state, r.attempt) for r in records] == [(TaskState.FINISHED, 1)] * 16
