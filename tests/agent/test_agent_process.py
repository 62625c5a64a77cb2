"""Agents as real processes: graceful SIGTERM, and recovery from a SIGKILLed agent."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from procs import children, pid_alive, until
from sample_handlers_path import HERE

from htcgrid.dataplane import open_data_plane
from htcgrid.models import TaskState
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import Settings
from htcgrid.store import open_store
from htcgrid.ttl import TTLChecker


def start_agent(
    url: str, data_url: str, slots: int | str = 1, grace: float = 10
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "htcgrid", "agent", "--url", url, "--data-url", data_url,
         "--handler", "sample_handlers.sleep", "--path", HERE, "--slots", str(slots),
         "--heartbeat-seconds", "0.2", "--lease-seconds", "1", "--grace-seconds", str(grace)],
    )  # fmt: skip


def make_grid(tmp_path: Path) -> tuple[GridService, str, str]:
    url, data_url = f"sqlite://{tmp_path / 'grid.db'}", f"file://{tmp_path / 'blobs'}"
    settings = Settings(heartbeat_seconds=0.2, lease_seconds=1.0)
    return GridService(open_store(url), open_data_plane(data_url), settings), url, data_url


def test_sigterm_drains_running_tasks_and_claims_nothing_more(tmp_path: Path) -> None:
    grid, url, data_url = make_grid(tmp_path)
    started = tmp_path / "started"
    sid = grid.submit(SubmitRequest([{"seconds": 1.0, "pid_file": str(started)}] * 6)).session_id
    proc = start_agent(url, data_url)
    until(started.exists, what="a running task")
    workers = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    counts = grid.store.count_states(sid)
    assert counts[TaskState.PROCESSING] == 0 and counts[TaskState.FAILED] == 0
    assert counts[TaskState.FINISHED] >= 1 and counts[TaskState.PENDING] >= 3
    assert all(r.attempt == 1 for r in grid.store.results(sid))
    handed_back = [grid.store.get_task(f"{sid}_{i}") for i in range(6)]
    assert all(t.attempt == 0 for t in handed_back if t and t.state is TaskState.PENDING), (
        "a task handed back unstarted must not use an attempt"
    )
    until(lambda: not any(pid_alive(pid) for pid in workers), 10, "the agent's children to exit")


def test_a_killed_agents_task_is_finished_by_another_exactly_once(tmp_path: Path) -> None:
    grid, url, data_url = make_grid(tmp_path)
    pid_file = tmp_path / "pid"
    sid = grid.submit(SubmitRequest([{"seconds": 0.5, "pid_file": str(pid_file)}])).session_id
    doomed = start_agent(url, data_url)
    worker_pid = int(until(lambda: pid_file.exists() and pid_file.read_text(), what="task start"))
    doomed.kill()
    doomed.wait(timeout=10)
    until(lambda: not pid_alive(worker_pid), 10, "the orphaned worker to die")
    ttl = TTLChecker(grid.store, 0.1)
    survivor = start_agent(url, data_url)
    try:
        until(
            lambda: ttl.check_once().requeued or grid.session(sid).complete,
            20,
            "the lease to expire",
        )
        until(lambda: grid.session(sid).complete, 30, "the survivor to finish the task")
    finally:
        survivor.send_signal(signal.SIGTERM)
        survivor.wait(timeout=15)
    (result,) = grid.store.results(sid)
    assert result.state is TaskState.FINISHED and result.attempt == 2 and result.output == b"0.5"
    info = grid.session(sid)
    assert info.done_count == 1
    assert len(grid.store.results(sid)) == 1


def test_an_agent_with_a_slot_range_runs_the_backlog_on_more_workers(tmp_path: Path) -> None:
    grid, url, data_url = make_grid(tmp_path)
    sid = grid.submit(SubmitRequest([{"seconds": 1.0}] * 6)).session_id
    proc = subprocess.Popen(
        [sys.executable, "-m", "htcgrid", "agent", "--url", url, "--data-url", data_url,
         "--handler", "sample_handlers.sleep", "--path", HERE, "--slots", "1:3",
         "--target-backlog", "1", "--cooldown-seconds", "60", "--heartbeat-seconds", "0.2",
         "--lease-seconds", "2"],
    )  # fmt: skip
    try:
        until(lambda: len(children(proc.pid)) >= 3, 30, "the agent to grow to three workers")
        until(lambda: grid.session(sid).complete, 30, "the session")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    assert all(r.state is TaskState.FINISHED and r.attempt == 1 for r in grid.store.results(sid))


def test_a_slot_range_upside_down_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "htcgrid", "agent", "--url", f"sqlite://{tmp_path / 'g.db'}",
         "--slots", "4:2"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "MIN <= MAX" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_sigterm_hands_prefetched_tasks_to_another_agent_within_a_heartbeat(
    tmp_path: Path,
) -> None:
    import json

    grid, url, data_url = make_grid(tmp_path)
    marks = tmp_path / "started"
    marks.mkdir()
    task = {"seconds": 2.0, "mark_dir": str(marks)}
    sid = grid.submit(SubmitRequest([task] * 4, max_attempts=1)).session_id

    def agent(slots: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "htcgrid", "agent", "--url", url, "--data-url", data_url,
             "--handler", "sample_handlers.timed_sleep", "--path", HERE, "--slots", str(slots),
             "--heartbeat-seconds", "0.2", "--lease-seconds", "5", "--grace-seconds", "10"],
        )  # fmt: skip

    first = agent(1)  # a fresh agent prefetches: one task runs, one waits behind it
    until(lambda: any(marks.iterdir()), 30, "the first agent's first task to start")
    held_by_first = grid.store.count_states(sid)[TaskState.PROCESSING]
    second = agent(3)
    try:
        until(lambda: len(list(marks.iterdir())) >= 3, 30, "the second agent to take the rest")
        stopped_at = time.time()
        first.send_signal(signal.SIGTERM)
        until(lambda: grid.session(sid).complete, 30, "the session")
        assert first.wait(timeout=15) == 0
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=15)
    records = grid.store.results(sid)
    assert held_by_first == 2, "the first agent should have held a task it had not started"
    assert [(r.state, r.attempt) for r in records] == [(TaskState.FINISHED, 1)] * 4
    starts = sorted(json.loads(r.output or b"{}")["start"] for r in records)
    assert starts[-1] - stopped_at < 0.2 + 0.8, "the handed-back task waited for its lease"
