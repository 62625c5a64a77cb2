"""Issue 17's features used as a new user uses them, from the README's words: what broke.

- ``htcgrid submit --deps FILE`` with FILE in JSON lines whose first line is a list (``[1]``,
  ``[0, 2]``: the usual first line of a graph whose task 0 has dependencies) was read as one
  JSON document and refused ("not valid JSON: Extra data").
- ``Executor.shutdown(cancel_futures=True)`` on an executor that owns its client cancelled
  its futures one request each, and the last request raced the collector thread closing the
  client: ``RuntimeError: Cannot send a request, as the client has been closed``.
- ``session.cancel(tasks="12")`` cancelled tasks 1 and 2 (a string is an iterable of
  characters) instead of refusing the call.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cloudpickle
import pytest
from backends import backend_url
from click.testing import CliRunner
from grid_process import GridProcess, htcgrid_up

import htcgrid
from htcgrid.cli import main
from htcgrid.cli.tasks_file import read_tasks
from htcgrid.errors import ValidationError

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # as a user's own script travels


def until(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# ---- htcgrid submit --deps: JSON lines whose lines are lists -------------------------------


def test_a_deps_file_in_json_lines_may_start_with_a_list(tmp_path: Path) -> None:
    deps = tmp_path / "deps.jsonl"
    deps.write_text('[1]\nnull\n[0, "s_3"]\n')
    assert read_tasks(str(deps)) == [[1], None, [0, "s_3"]]


def test_tasks_in_json_lines_may_be_lists_and_a_json_list_still_reads_whole(
    tmp_path: Path,
) -> None:
    lines = tmp_path / "tasks.jsonl"
    lines.write_text("[1, 2]\n[3, 4]\n")
    assert read_tasks(str(lines)) == [[1, 2], [3, 4]]
    whole = tmp_path / "tasks.json"
    whole.write_text('[\n  {"x": 1},\n  [2]\n]\n')
    assert read_tasks(str(whole)) == [{"x": 1}, [2]]


def test_a_bad_json_list_is_still_named_as_one_document(tmp_path: Path) -> None:
    broken = tmp_path / "tasks.json"
    broken.write_text('[\n  {"x": 1},\n  {"x": \n]\n')
    with pytest.raises(ValidationError, match=r"tasks.json: not valid JSON"):
        read_tasks(str(broken))
    bad_line = tmp_path / "deps.jsonl"
    bad_line.write_text("[1]\nnot json\n")
    with pytest.raises(ValidationError, match=r"deps.jsonl:2: not valid JSON"):
        read_tasks(str(bad_line))


def test_submit_takes_a_graph_whose_first_task_has_dependencies(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"report": true}\n{"trade": 1}\n{"curve": "eur"}\n')
    deps = tmp_path / "deps.jsonl"
    deps.write_text("[1]\n[2]\nnull\n")
    with backend_url("sqlite", tmp_path) as url, pytest.warns(htcgrid.NoAgentWarning):
        result = CliRunner().invoke(main, ["submit", str(tasks), "--deps", str(deps), "--url", url])
        assert result.exit_code == 0, result.output
        cycle = tmp_path / "cycle.jsonl"
        cycle.write_text("[1]\n[0]\nnull\n")
        refused = CliRunner().invoke(
            main, ["submit", str(tasks), "--deps", str(cycle), "--url", url]
        )
        assert refused.exit_code == 1
        assert "cycle" in refused.output and "Traceback" not in refused.output


# ---- Session.cancel / retry refuse a string --------------------------------------------------


def test_cancel_and_retry_refuse_a_string_in_place_of_a_list(tmp_path: Path) -> None:
    with backend_url("sqlite", tmp_path) as url, pytest.warns(htcgrid.NoAgentWarning):
        grid = htcgrid.connect(url)
        session = grid.submit([{"i": i} for i in range(3)])
        with pytest.raises(ValidationError, match="a list of task ids or indexes"):
            session.cancel(tasks="12")
        with pytest.raises(ValidationError, match="a list of task ids or indexes"):
            session.retry(f"{session.id}_1")
        assert session.status()["counts"]["cancelled"] == 0
        grid.close()


# ---- Executor.shutdown(cancel_futures=True) over HTTP ---------------------------------------


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GridProcess]:
    with htcgrid_up(tmp_path_factory.mktemp("grid")) as grid:
        yield grid
        assert grid.stop() == 0


def nap(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def test_shutdown_cancel_futures_of_an_executor_that_owns_its_client(
    up: GridProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="htcgrid.client")
    grid = htcgrid.connect(up.url)
    for _ in range(3):  # the race lost at once on a quiet machine; three rounds to be sure
        executor = htcgrid.Executor(up.url, batch_seconds=0.05)
        futures = [executor.submit(nap, 30) for _ in range(4)]
        until(lambda fs=futures: all(f.session_id for f in fs))  # type: ignore[attr-defined]
        executor.shutdown(wait=True, cancel_futures=True)
        assert all(f.cancelled() for f in futures)
        for session_id in {f.session_id for f in futures}:  # type: ignore[attr-defined]
            session = grid.session(session_id)
            until(lambda s=session: s.status()["complete"])
            assert session.status()["counts"]["cancelled"] == session.task_count
    assert not [r for r in caplog.records if "cannot reach" in r.getMessage()]
    grid.close()


# ---- htcgrid results: a cancelled task has no error to show -------------------------------


def test_the_results_table_shows_no_empty_error_for_a_cancelled_task() -> None:
    from htcgrid.cli.output import results_table
    from htcgrid.client.session import TaskResult
    from htcgrid.models import TaskState

    cancelled = TaskResult("s_1", 1, TaskState.CANCELLED, None, None, 0)
    failed = TaskResult("s_2", 2, TaskState.FAILED, None, {"type": "E", "message": "m"}, 1)
    rows = results_table([cancelled, failed]).splitlines()
    assert rows[1].split() == ["1", "s_1", "cancelled", "0"]  # no ":" for an absent error
    assert rows[2].endswith("E: m")
