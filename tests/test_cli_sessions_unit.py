"""``htcgrid submit``, ``status``, ``wait``, ``results``, ``cancel``, ``sessions`` and ``task``
in process: CliRunner over a SQLite grid that the test's own ``GridService`` runs tasks on,
so each command's output, options and exit code are pinned without starting a server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from htcgrid.cli import main
from htcgrid.cli.options import EXIT_TASK_CANCELLED, EXIT_TASK_FAILED, EXIT_TIMEOUT
from htcgrid.dataplane import open_data_plane
from htcgrid.models import ErrorInfo, Outcome, TaskState
from htcgrid.service import GridService
from htcgrid.store import open_store

pytestmark = pytest.mark.filterwarnings("ignore:no agent has been seen")


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[tuple[GridService, str]]:
    url = f"sqlite://{tmp_path / 'grid.db'}"
    service = GridService(open_store(url), open_data_plane(f"file://{tmp_path / 'blobs'}"))
    yield service, url
    service.store.close()


def cli(url: str, *args: str, stdin: str | None = None, **env: str) -> Result:
    return CliRunner().invoke(main, [*args, "--url", url], input=stdin, env=env)


def end_all(service: GridService, states: dict[int, TaskState] | None = None) -> int:
    """Claim every pending task and end it: finished with ``{"i": index}`` unless ``states``
    names another state for its index; returns how many there were."""
    leases = service.store.claim("agent", 1000, 60, time.time())
    outcomes = []
    for lease in leases:
        state = (states or {}).get(lease.index, TaskState.FINISHED)
        if state is TaskState.FINISHED:
            output = json.dumps({"i": lease.index}).encode()
            outcomes.append(Outcome(lease.task_id, lease.attempt, state, output=output))
        else:
            error = ErrorInfo("ValueError", f"no good: {lease.index}", "Traceback: here")
            outcomes.append(Outcome(lease.task_id, lease.attempt, state, error=error))
    assert service.store.complete("agent", outcomes, time.time()) == [True] * len(leases)
    return len(leases)


def submitted(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_submit_reads_a_json_list_file_and_prints_the_session_id(
    grid: tuple[GridService, str], tmp_path: Path
) -> None:
    service, url = grid
    source = tmp_path / "tasks.json"
    source.write_text(json.dumps([{"x": 1}, {"x": 2}, {"x": 3}]))
    sid = submitted(cli(url, "submit", str(source), "--priority", "7"))
    spec = service.session(sid).spec
    assert (spec.task_count, spec.priority) == (3, 7)
    record = service.store.get_task(f"{sid}_2")
    assert record is not None and json.loads(record.payload or b"") == {"x": 3}


def test_submit_reads_json_lines_from_stdin_with_every_option(
    grid: tuple[GridService, str],
) -> None:
    service, url = grid
    lines = '{"x": 1}\n{"x": 2}\n'
    options = ["--max-attempts", "2", "--timeout-seconds", "30", "--session-id", "mine"]
    answer = cli(url, "submit", "-", *options, "--json", stdin=lines)
    assert json.loads(submitted(answer)) == {"session_id": "mine"}
    spec = service.session("mine").spec
    assert (spec.task_count, spec.max_attempts, spec.timeout_seconds) == (2, 2, 30.0)


def test_submit_options_come_from_the_environment_too(grid: tuple[GridService, str]) -> None:
    service, url = grid
    sid = submitted(cli(url, "submit", stdin="[1]", HTCGRID_PRIORITY="4"))
    assert service.session(sid).spec.priority == 4


def test_submit_refuses_a_priority_out_of_range_before_sending(
    grid: tuple[GridService, str],
) -> None:
    service, url = grid
    refused = cli(url, "submit", "--priority", "10", stdin="[1]")
    assert refused.exit_code == 2 and "0<=x<=9" in refused.stderr
    assert service.store.list_sessions() == []


def test_status_shows_the_counts_and_json_the_apis_shape(grid: tuple[GridService, str]) -> None:
    service, url = grid
    sid = submitted(cli(url, "submit", stdin="[1, 2, 3]"))
    service.store.claim("agent", 1, 60, time.time())
    text = cli(url, "status", sid)
    assert text.exit_code == 0, text.output
    assert f"session:  {sid}" in text.stdout
    assert "tasks:    3: 2 pending, 1 processing" in text.stdout
    assert "state:    running" in text.stdout
    shown = json.loads(cli(url, "status", sid, "--json").stdout)
    assert shown == service.status(sid).as_dict()


def test_results_print_a_table_and_exit_zero_when_all_finished(
    grid: tuple[GridService, str],
) -> None:
    service, url = grid
    sid = submitted(cli(url, "submit", stdin="[1, 2]"))
    end_all(service)
    printed = cli(url, "results", sid)
    assert printed.exit_code == 0, printed.output
    lines = printed.stdout.splitlines()
    assert lines[0].split() == ["#", "TASK", "STATE", "ATTEMPTS", "OUTPUT", "OR", "ERROR"]
    assert lines[1].split() == ["0", f"{sid}_0", "finished", "1", '{"i":0}']
    as_json = [json.loads(line) for line in cli(url, "results", sid, "--json").stdout.splitlines()]
    assert [(r["task_id"], r["output"], r["state"]) for r in as_json] == [
        (f"{sid}_0", {"i": 0}, "finished"),
        (f"{sid}_1", {"i": 1}, "finished"),
    ]


def test_results_exit_4_when_a_task_failed_and_5_when_one_was_only_cancelled(
    grid: tuple[GridService, str],
) -> None:
    service, url = grid
    failed = submitted(cli(url, "submit", stdin="[1, 2]"))
    end_all(service, {1: TaskState.FAILED})
    printed = cli(url, "results", failed)
    assert printed.exit_code == EXIT_TASK_FAILED
    assert "ValueError: no good: 1" in printed.stdout
    cancelled = submitted(cli(url, "submit", stdin="[1]"))
    assert cli(url, "cancel", cancelled).exit_code == 0
    assert cli(url, "results", cancelled).exit_code == EXIT_TASK_CANCELLED
    assert cli(url, "wait", cancelled).exit_code == EXIT_TASK_CANCELLED


def test_wait_exits_124_at_its_timeout_and_0_once_complete(grid: tuple[GridService, str]) -> None:
    service, url = grid
    sid = submitted(cli(url, "submit", stdin="[1]"))
    assert cli(url, "wait", sid, "--timeout", "0.05").exit_code == EXIT_TIMEOUT
    end_all(service)
    done = cli(url, "wait", sid, "--json")
    assert done.exit_code == 0 and json.loads(done.stdout)["complete"] is True


def test_submit_wait_prints_the_results_once_an_agent_ran_them(
    grid: tuple[GridService, str],
) -> None:
    service, url = grid
    ran: list[int] = []

    def agent() -> None:  # runs the session as soon as it appears, for at most 20 s
        deadline = time.monotonic() + 20
        try:
            while not ran and time.monotonic() < deadline:
                if service.store.wait_for_tasks(timeout_seconds=0.1):
                    ran.append(end_all(service))
        finally:
            if not ran:  # let the command stop waiting: the test fails on ``ran``
                for info in service.store.list_sessions():
                    service.store.cancel_session(info.spec.id, time.time())

    runner = threading.Thread(target=agent)
    runner.start()
    answer = cli(url, "submit", "--wait", "--json", stdin="[5, 6]")
    runner.join(timeout=30)
    assert ran == [2] and answer.exit_code == 0, answer.output
    lines = [json.loads(line) for line in answer.stdout.splitlines()]
    assert [r["output"] for r in lines] == [{"i": 0}, {"i": 1}]
    assert "2 task(s)" in answer.stderr


def test_cancel_says_what_it_cancelled(grid: tuple[GridService, str]) -> None:
    service, url = grid
    sid = submitted(cli(url, "submit", stdin="[1, 2, 3]"))
    service.store.claim("agent", 1, 60, time.time())
    said = cli(url, "cancel", sid)
    assert said.stdout.strip() == f"cancelled 3 task(s) of {sid} (2 pending, 1 running)"
    again = json.loads(cli(url, "cancel", sid, "--json").stdout)
    assert again["total_cancelled_tasks"] == 0  # cancelling twice changes nothing


def test_sessions_lists_newest_first(grid: tuple[GridService, str]) -> None:
    _, url = grid
    first = submitted(cli(url, "submit", "--session-id", "first", stdin="[1]"))
    second = submitted(cli(url, "submit", "--session-id", "second", stdin="[1, 2]"))
    listed = cli(url, "sessions").stdout.splitlines()
    assert listed[0].split() == ["SESSION", "TASKS", "PROGRESS", "FUNCTION", "OWNER", "CREATED"]
    assert [line.split()[0] for line in listed[1:]] == [second, first]
    assert "2 pending" in listed[1]
    limited = json.loads(cli(url, "sessions", "--limit", "1", "--json").stdout)
    assert [s["session_id"] for s in limited] == [second]


def test_task_shows_payload_error_traceback_and_log(grid: tuple[GridService, str]) -> None:
    service, url = grid
    sid = submitted(cli(url, "submit", stdin='[{"k": "Zürich"}]'))
    end_all(service, {0: TaskState.FAILED})
    text = cli(url, "task", f"{sid}_0").stdout
    shown = dict(line.split(":", 1) for line in text.split("\n\n")[0].splitlines())
    assert shown["payload"].strip() == '{"k":"Zürich"}'
    assert shown["error"].strip() == "ValueError: no good: 0"
    assert shown["state"].strip() == "failed"
    assert text.rstrip().endswith("traceback:\nTraceback: here")
    detail = json.loads(cli(url, "task", f"{sid}_0", "--json").stdout)
    assert (detail["state"], detail["payload"]) == ("failed", {"k": "Zürich"})


def test_read_commands_refuse_an_unknown_session_with_one_line(
    grid: tuple[GridService, str],
) -> None:
    _, url = grid
    for command in ("status", "results", "cancel"):
        refused = cli(url, command, "nosuch")
        assert refused.exit_code == 1, command
        assert refused.stderr.startswith("htcgrid:") and "nosuch" in refused.stderr
        assert "Traceback" not in refused.output
