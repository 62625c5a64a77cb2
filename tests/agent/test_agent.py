"""The agent with real worker processes: outcomes, crashes, timeouts and cancellation."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from agent_thread import running
from procs import pid_alive, until
from sample_handlers_path import HERE

from htcgrid.agent.agent import Agent
from htcgrid.agent.worker import WorkerConfig
from htcgrid.dataplane import DataPlane, open_data_plane
from htcgrid.models import TaskState
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import Settings
from htcgrid.store import TaskStore, open_store

FAST = Settings(heartbeat_seconds=0.2, lease_seconds=2.0, ttl_check_seconds=0.2, grace_seconds=5)


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[GridService]:
    store = open_store(f"sqlite://{tmp_path / 'grid.db'}")
    data = open_data_plane(f"file://{tmp_path / 'blobs'}")
    yield GridService(store, data, FAST)
    store.close()


@contextmanager
def agent(
    store: TaskStore, data: DataPlane, handler: str, slots: int = 2, settings: Settings = FAST
) -> Iterator[Agent]:
    worker = WorkerConfig(handler=f"sample_handlers.{handler}", paths=(HERE,))
    with running(Agent(store, data, settings, worker, slots)) as runner:
        yield runner


def submit(grid: GridService, tasks: list[Any], **options: Any) -> str:
    return grid.submit(SubmitRequest(tasks=tasks, **options)).session_id


def finished(grid: GridService, session_id: str, timeout: float = 60) -> list[Any]:
    grid.store.wait_for_session(session_id, 0, 0)
    until(lambda: grid.session(session_id).complete, timeout, f"session {session_id}")
    records = grid.results(session_id, 0, 10_000).results
    return sorted(records, key=lambda r: r.index)


def test_tasks_finish_with_outputs_and_logs(grid: GridService) -> None:
    sid = submit(grid, [{"n": i} for i in range(50)])
    with agent(grid.store, grid.data, "echo"):
        results = finished(grid, sid)
    assert [r.state for r in results] == [TaskState.FINISHED] * 50
    assert [r.output for r in results] == [b'{"n":%d}' % i for i in range(50)]
    task = grid.task(f"{sid}_3")
    assert f"echo {{'n': 3}} from task {sid}_3 attempt 1" in task.log
    assert "to stderr" in task.log


def test_logs_include_output_that_bypasses_python(grid: GridService) -> None:
    sid = submit(grid, [1, 2])
    with agent(grid.store, grid.data, "shell_out", slots=1):
        finished(grid, sid)
    for i in (0, 1):
        log = grid.task(f"{sid}_{i}").log
        assert log.startswith("from python\n")
        for line in ("straight to fd 1", "from a shell", "to stderr"):
            assert log.count(line) == 1, f"{line!r} not exactly once in task {i}'s log: {log!r}"


def test_lambda_context(grid: GridService) -> None:
    import json

    sid = submit(grid, [None], timeout_seconds=100)
    with agent(grid.store, grid.data, "describe", slots=1):
        (result,) = finished(grid, sid)
    ctx = json.loads(result.output)
    assert ctx["task_id"] == f"{sid}_0" and ctx["session_id"] == sid and ctx["attempt"] == 1
    assert ctx["function_name"] == "default" and ctx["log_group_name"] == "/aws/lambda/default"
    assert ctx["invoked_function_arn"].endswith(":function:default")
    assert 90_000 < ctx["remaining_ms"] <= 100_000
    assert len(ctx["aws_request_id"]) == 36 and ctx["pid"] != os.getpid()


def test_handler_exception_fails_the_task_with_its_traceback(grid: GridService) -> None:
    sid = submit(grid, [1, 2])
    with agent(grid.store, grid.data, "boom"):
        results = finished(grid, sid)
    assert all(r.state is TaskState.FAILED and r.attempt == 1 for r in results)
    error = results[1].error
    assert error is not None and error.type == "ValueError" and error.message == "bad input 2"
    assert "Traceback" in error.traceback and "raise ValueError" in error.traceback


def test_unserialisable_output_is_a_failure(grid: GridService) -> None:
    sid = submit(grid, [1])
    with agent(grid.store, grid.data, "not_json", slots=1):
        (result,) = finished(grid, sid)
    assert result.state is TaskState.FAILED and result.error is not None
    assert result.error.type == "TypeError"


def test_retry_on_error_retries_handler_exceptions(grid: GridService) -> None:
    sid = submit(grid, [1], retry_on_error=True, max_attempts=3)
    with agent(grid.store, grid.data, "boom", slots=1):
        (result,) = finished(grid, sid)
    assert result.state is TaskState.FAILED and result.attempt == 3


def test_a_crashing_worker_is_replaced_and_the_task_retried(grid: GridService) -> None:
    sid = submit(grid, ["a", "b", "c"])
    with agent(grid.store, grid.data, "crash_on_first_attempt") as runner:
        results = finished(grid, sid)
        assert runner.counts["crashed"] == 3
    assert [(r.state, r.attempt, r.output) for r in results] == [
        (TaskState.FINISHED, 2, b'"survived"')
    ] * 3


def test_a_task_sent_to_a_worker_that_died_unnoticed_runs_elsewhere(grid: GridService) -> None:
    """A worker can die between two turns of the loop; the next task sent to it finds it dead.
    That crash hands the worker's tasks back, and they must stay in the backlog (they were lost,
    held forever, when the dispatch pass overwrote the backlog after its sends)."""
    submit(grid, ["a", "b"])
    worker = WorkerConfig(handler="sample_handlers.crash_on_first_attempt", paths=(HERE,))
    runner = Agent(grid.store, grid.data, FAST, worker, 1)
    runner.pools.start(runner.worker)
    (slot,) = runner.slots
    try:
        until(lambda: [runner._on_message(slot, m, 0.0) for m in slot.receive()] and slot.ready)
        first, second = grid.store.claim(runner.agent_id, 2, 30.0, time.time())
        runner.held = {first.task_id: first, second.task_id: second}
        runner.backlog.append(first)
        runner._dispatch(time.monotonic())  # the first starts, and its worker dies at once
        slot.process.join(10)
        assert not slot.alive()
        runner.backlog.append(second)
        runner._dispatch(time.monotonic())  # sent to the dead worker: the crash is seen here
        assert runner.counts["crashed"] == 1
        assert [o.task_id for o in runner.outcomes] == [first.task_id]  # retried
        assert [le.task_id for le in runner.backlog] == [second.task_id]
        assert second.task_id in runner.held
    finally:
        runner.pools.stop_all()
        os.close(runner._wake_r)
        os.close(runner._wake_w)


def test_crashes_fail_the_task_after_max_attempts(grid: GridService) -> None:
    sid = submit(grid, [1], max_attempts=2)  # below poison_after: an ordinary crash
    with agent(grid.store, grid.data, "exit_now", slots=1):
        (result,) = finished(grid, sid)
    assert result.state is TaskState.FAILED and result.attempt == 2
    assert result.error is not None and result.error.type == "WorkerCrashed"
    assert "exited with code 1" in result.error.message and "attempt 2 of 2" in result.error.message


def test_a_task_that_keeps_crashing_its_worker_is_poison(grid: GridService) -> None:
    sid = submit(grid, [1], max_attempts=6)
    with agent(grid.store, grid.data, "exit_now", slots=1):
        (result,) = finished(grid, sid)
    assert result.state is TaskState.FAILED and result.attempt == FAST.poison_after
    assert result.error is not None and result.error.type == "PoisonTask"
    assert "exited with code 1" in result.error.message


def test_a_segfault_is_a_crash(grid: GridService) -> None:
    sid = submit(grid, [1], max_attempts=1)
    with agent(grid.store, grid.data, "segfault", slots=1):
        (result,) = finished(grid, sid)
    assert result.state is TaskState.FAILED and result.error is not None
    assert "SIGSEGV" in result.error.message


def test_a_task_over_its_timeout_is_killed_and_retried(grid: GridService) -> None:
    sid = submit(grid, [{"seconds": 30}], timeout_seconds=0.5, max_attempts=2)
    started = time.monotonic()
    with agent(grid.store, grid.data, "sleep", slots=1):
        (result,) = finished(grid, sid)
    assert time.monotonic() - started < 15
    assert result.state is TaskState.FAILED and result.attempt == 2
    assert result.error is not None and result.error.type == "TaskTimeout"
    assert "timed out after 0.5 s" in result.error.message


def test_cancel_kills_a_running_task_within_a_heartbeat(grid: GridService, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    sid = submit(grid, [{"seconds": 60, "pid_file": str(pid_file)}, {"seconds": 60}])
    with agent(grid.store, grid.data, "sleep", slots=1) as runner:
        pid = int(until(lambda: pid_file.exists() and pid_file.read_text(), what="task start"))
        assert pid_alive(pid)
        cancelled_at = time.monotonic()
        counts = grid.cancel(sid)
        assert counts.total == 2
        until(lambda: not pid_alive(pid), 5, "the worker to be killed")
        assert time.monotonic() - cancelled_at < 3 * FAST.heartbeat_seconds + 1
        until(lambda: runner.slots[0].ready, 30, "a replacement worker")
    states = grid.store.count_states(sid)
    assert states[TaskState.CANCELLED] == 2


def test_large_outputs_go_to_the_data_plane(grid: GridService) -> None:
    n = FAST.inline_limit_bytes + 10
    sid = submit(grid, [n, 5])
    with agent(grid.store, grid.data, "big"):
        results = finished(grid, sid)
    stored = grid.store.get_task(f"{sid}_0")
    assert stored is not None and stored.output is None and stored.output_ref is not None
    assert results[0].output == b'"' + b"x" * n + b'"'
    assert results[1].output == b'"xxxxx"'


def test_large_payloads_travel_through_the_data_plane(grid: GridService) -> None:
    payload = {"blob": "y" * (FAST.inline_limit_bytes + 1)}
    sid = submit(grid, [payload])
    stored = grid.store.get_task(f"{sid}_0")
    assert stored is not None and stored.payload is None and stored.payload_ref is not None
    with agent(grid.store, grid.data, "echo", slots=1):
        (result,) = finished(grid, sid)
    assert result.output is not None and len(result.output) > FAST.inline_limit_bytes


def test_an_unloadable_handler_fails_its_tasks_until_it_is_fixed(
    grid: GridService, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "editable.py").write_text("def other(event, context):\n    return 0\n")
    worker = WorkerConfig(handler="editable.handler", paths=(str(code),))
    runner = Agent(grid.store, grid.data, FAST, worker, 1)
    runner.reload_seconds = 0.0  # retry the load at once, so the fix is seen by the next task
    with running(runner):
        broken = finished(grid, submit(grid, [1, 2]))
        (code / "editable.py").write_text("def handler(event, context):\n    return event * 10\n")
        fixed = finished(grid, submit(grid, [3]))
    assert [r.state for r in broken] == [TaskState.FAILED] * 2
    assert broken[0].error is not None and "has no function 'handler'" in broken[0].error.message
    assert broken[0].attempt == 1  # a load error is the handler's fault: not retried
    assert [(r.state, r.output) for r in fixed] == [(TaskState.FINISHED, b"30")]


def test_priorities_run_first(grid: GridService) -> None:
    low = submit(grid, [{"seconds": 0}] * 5, priority=0)
    high = submit(grid, [{"seconds": 0}] * 5, priority=9)
    with agent(grid.store, grid.data, "sleep", slots=1):
        finished(grid, low)
    first_low = min(r.started_at or 0 for r in grid.store.results(low))
    last_high = max(r.started_at or 0 for r in grid.store.results(high))
    assert last_high <= first_low


def test_processes_a_task_leaves_behind_are_ended_and_reaped(grid: GridService) -> None:
    sid = submit(grid, [1, 2])
    with agent(grid.store, grid.data, "abandon", slots=1):
        results = finished(grid, sid)
        pids = [pid for r in results for pid in json.loads(r.output or b"[]")]
        assert len(pids) == 6
        until(
            lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids),
            10,
            "the task's processes to be ended and reaped (no zombie left)",
        )


def test_a_killed_worker_takes_what_its_task_started_with_it(
    grid: GridService, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    sid = submit(grid, [{"pid_file": str(pid_file)}], timeout_seconds=1, max_attempts=1)
    with agent(grid.store, grid.data, "spawn_and_hang", slots=1):
        (result,) = finished(grid, sid)
        child = int(pid_file.read_text())
        until(lambda: not pid_alive(child), 10, "the task's child to die with its worker")
    assert result.error is not None and result.error.type == "TaskTimeout"


def test_a_worker_over_its_memory_limit_is_killed_and_a_task_that_keeps_doing_it_is_poison(
    grid: GridService,
) -> None:
    small, big = (
        submit(grid, [{"mb": 8, "seconds": 0}]),
        submit(grid, [{"mb": 300, "seconds": 5}], max_attempts=6),
    )
    worker = WorkerConfig(handler="sample_handlers.hog", paths=(HERE,))
    runner = Agent(grid.store, grid.data, FAST, worker, 1, worker_memory_mb=200)
    with running(runner):
        (fine,) = finished(grid, small)
        (poison,) = finished(grid, big)
    assert fine.state is TaskState.FINISHED
    assert poison.state is TaskState.FAILED and poison.error is not None
    assert poison.error.type == "PoisonTask"
    assert poison.attempt == FAST.poison_after < 6, "stopped before max_attempts"
    assert "over its limit of 200 MiB" in poison.error.message
