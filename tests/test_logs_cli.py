"""``htcgrid logs TASK_ID [--follow]`` over a real grid (SQLite and files)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from htcgrid.cli import main
from htcgrid.cli.logs import follow
from htcgrid.client import connect
from htcgrid.dataplane import open_data_plane
from htcgrid.models import Outcome, TaskState, task_id
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import Settings
from htcgrid.store import open_store

NOW = 1_000_000.0


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[tuple[GridService, str]]:
    url = f"sqlite://{tmp_path / 'grid.db'}"
    service = GridService(open_store(url), open_data_plane(f"file://{tmp_path / 'blobs'}"))
    service.settings = Settings(max_attempts=3)
    yield service, url
    service.store.close()


def attempt_ends(service: GridService, state: TaskState, log: str) -> None:
    (lease,) = service.store.claim("agent-1", 1, 30.0, NOW)
    outcome = Outcome(lease.task_id, lease.attempt, state, output=b"1", log=log)
    assert service.store.complete("agent-1", [outcome], NOW) == [True]


def test_logs_prints_a_tasks_log(grid: tuple[GridService, str]) -> None:
    service, url = grid
    sid = service.submit(SubmitRequest(tasks=[1])).session_id
    attempt_ends(service, TaskState.FINISHED, "hello\nfrom the handler\n")
    done = CliRunner().invoke(main, ["logs", task_id(sid, 0), "--url", url])
    assert done.exit_code == 0, done.output
    assert done.stdout == "hello\nfrom the handler\n"
    missing = CliRunner().invoke(main, ["logs", task_id(sid, 9), "--url", url])
    assert missing.exit_code == 1 and "htcgrid:" in missing.stderr


def test_follow_prints_each_attempts_log_once_and_stops_when_the_task_ends(
    grid: tuple[GridService, str],
) -> None:
    service, url = grid
    sid = service.submit(SubmitRequest(tasks=[1], max_attempts=3)).session_id
    tid = task_id(sid, 0)
    steps = [
        lambda: None,  # still pending: nothing new
        lambda: attempt_ends(service, TaskState.PENDING, "first attempt\n"),  # retried
        lambda: None,
        lambda: attempt_ends(service, TaskState.FINISHED, "second attempt\n"),
    ]
    written: list[str] = []
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        steps.pop(0)()

    with connect(url, create=False) as client:
        last = follow(lambda: client.task(tid), written.append, wait, 0.5)
    assert last["state"] == "finished" and not steps
    assert waits == [0.5] * 4
    assert "".join(written) == "first attempt\n--- attempt 2 ---\nsecond attempt\n"


def test_follow_ends_with_a_line_on_stderr(grid: tuple[GridService, str]) -> None:
    service, url = grid
    sid = service.submit(SubmitRequest(tasks=[1])).session_id
    attempt_ends(service, TaskState.FINISHED, "done\n")
    tid = task_id(sid, 0)
    done = CliRunner().invoke(main, ["logs", tid, "--follow", "--url", url])
    assert done.exit_code == 0, done.output
    assert done.stdout == "done\n"
    assert done.stderr.strip() == f"--- task {tid} finished (attempt 1) ---"


def test_json_gives_the_log_with_the_tasks_state(grid: tuple[GridService, str]) -> None:
    service, url = grid
    sid = service.submit(SubmitRequest(tasks=[1])).session_id
    attempt_ends(service, TaskState.FINISHED, "done\n")
    tid = task_id(sid, 0)
    shown = CliRunner().invoke(main, ["logs", tid, "--json", "--url", url])
    assert json.loads(shown.stdout) == {
        "task_id": tid,
        "state": "finished",
        "attempts": 1,
        "log": "done\n",
    }
    followed = CliRunner().invoke(main, ["logs", tid, "--follow", "--json", "--url", url])
    lines = [json.loads(line) for line in followed.stdout.splitlines()]
    assert lines == [
        {"task_id": tid, "log": "done\n"},
        {"task_id": tid, "state": "finished", "attempts": 1},
    ]
