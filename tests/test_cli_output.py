"""What read commands print against a real grid: tables and text for people, --json for
programs, and exit codes that say whether every task finished."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from grid_process import GridProcess, htcgrid_up

pytestmark = pytest.mark.slow
TESTS = Path(__file__).parent
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GridProcess]:
    folder = tmp_path_factory.mktemp("grid")
    with htcgrid_up(folder, "--path", str(TESTS), "--handler", "cli_handlers.handler") as g:
        yield g
        g.stop()


def cli(
    grid: GridProcess, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "htcgrid", *args, "--url", grid.url],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_all_finished_is_exit_0_with_a_readable_table(grid: GridProcess) -> None:
    tasks = [{"do": "echo", "text": "héllo ✓"}, {"do": "echo", "text": "two"}]
    done = cli(grid, "submit", "--wait", stdin=json.dumps(tasks))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["#", "TASK", "STATE", "ATTEMPTS", "OUTPUT", "OR", "ERROR"]
    assert "héllo ✓" in lines[1] and "finished" in lines[1]
    assert lines[1].index("finished") == lines[2].index("finished")  # aligned


def test_a_failed_task_is_exit_4_and_its_error_reads_as_text(grid: GridProcess) -> None:
    tasks = [{"do": "echo", "text": "fine"}, {"do": "fail", "name": "Zürich"}, {"do": "set"}]
    done = cli(grid, "submit", "--wait", "--json", stdin=json.dumps(tasks))
    assert done.returncode == 4, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["state"] for r in results] == ["finished", "failed", "failed"]
    assert "Zürich" in done.stdout  # non-ASCII as is, in JSON too
    returned = results[2]["error"]
    assert returned["type"] == "TypeError"
    assert "return value (dict) is not JSON-serialisable" in returned["message"]
    assert "json" not in returned["traceback"].split("\n")[-2]  # not the encoder's insides
    session_id = results[0]["task_id"].rsplit("_", 1)[0]

    assert cli(grid, "results", session_id).returncode == 4
    assert cli(grid, "wait", session_id).returncode == 4
    shown = cli(grid, "task", f"{session_id}_1")
    assert shown.returncode == 0, shown.stderr
    assert "error:     ValueError: no price for Zürich" in shown.stdout
    assert "\ntraceback:\nTraceback (most recent call last):\n" in shown.stdout
    assert "\\n" not in shown.stdout
    log = cli(grid, "task", f"{session_id}_0").stdout
    assert "log:\nfirst line of the log\nsecond: fine" in log
    assert len(ISO.findall(log)) == 3  # submitted, started, finished


def test_a_cancelled_session_is_exit_5(grid: GridProcess) -> None:
    submitted = cli(grid, "submit", stdin=json.dumps([{"do": "sleep", "seconds": 60, "text": ""}]))
    session_id = submitted.stdout.strip()
    cancelled = cli(grid, "cancel", session_id)
    assert cancelled.returncode == 0 and "cancelled 1 task(s)" in cancelled.stdout
    waited = cli(grid, "wait", session_id, "--timeout", "60")
    assert waited.returncode == 5, waited.stderr
    assert "cancelled" in waited.stdout


def test_status_and_sessions_read_well_and_as_json(grid: GridProcess) -> None:
    session_id = cli(grid, "submit", stdin='{"do": "echo", "text": "x"}').stdout.strip()
    assert cli(grid, "wait", session_id, "--timeout", "60").returncode == 0
    status = cli(grid, "status", session_id).stdout
    assert f"session:  {session_id}" in status and "1: 1 finished" in status
    assert ISO.search(status)
    as_json = json.loads(cli(grid, "status", session_id, "--json").stdout)
    assert as_json["counts"]["finished"] == 1 and isinstance(as_json["created_at"], float)
    listed = cli(grid, "sessions").stdout.splitlines()
    assert listed[0].split() == ["SESSION", "TASKS", "PROGRESS", "FUNCTION", "OWNER", "CREATED"]
    assert any(line.startswith(session_id) and ISO.search(line) for line in listed)
    assert session_id in [
        s["session_id"] for s in json.loads(cli(grid, "sessions", "--json").stdout)
    ]


def test_read_commands_all_have_json() -> None:
    from click.testing import CliRunner

    from htcgrid.cli import main

    for command in (
        ["status"], ["wait"], ["results"], ["sessions"], ["task"], ["cancel"],
        ["functions"], ["function", "show"], ["user", "list"], ["key", "list"], ["agents"],
        ["logs"],
    ):  # fmt: skip
        shown = CliRunner().invoke(main, [*command, "--help"]).output
        assert "--json" in shown, command
