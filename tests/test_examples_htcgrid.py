"""HTC-Grid's own client programs, unchanged but for their import, against `htcgrid up`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from grid_process import ROOT, GridProcess, htcgrid_up

import htcgrid
from htcgrid.models import TaskState

pytestmark = pytest.mark.slow
CLIENTS = ROOT / "examples" / "client"
PASSWORD = "examples need a password too"


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GridProcess]:
    with htcgrid_up(tmp_path_factory.mktemp("grid"), "--slots", "1", auth=True) as running:
        with admin(running) as client:
            client._t.call("POST", "/v1/users", json={"name": "carol", "password": PASSWORD})  # type: ignore[attr-defined]
            warm_up = [{"worker_arguments": ["1", "1", "1"]}]  # the agent and its worker are up
            assert client.map(warm_up, timeout=60) == [1]
        yield running


def admin(grid: GridProcess) -> htcgrid.Client:
    return htcgrid.connect(grid.url, api_key=grid.credentials["api_key"])


def run_example(
    grid: GridProcess, tmp_path: Path, script: str, *args: str
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "agent_config.json"
    config.write_text(json.dumps({"public_api_gateway_url": grid.url}))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HTCGRID_")},
        "AGENT_CONFIG_FILE": str(config),
        "USERNAME": "carol",
        "PASSWORD": PASSWORD,
        "HTCGRID_CONFIG_DIR": str(tmp_path / "config"),
    }
    return subprocess.run(
        [sys.executable, str(CLIENTS / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
    )


def sessions_of(grid: GridProcess, owner: str) -> list[dict[str, object]]:
    with admin(grid) as client:
        return [s for s in client.sessions() if s["owner"] == owner]


def test_the_seed_programs_simple_client(grid: GridProcess, tmp_path: Path) -> None:
    before = {s["session_id"] for s in sessions_of(grid, "carol")}
    done = run_example(grid, tmp_path, "simple_client.py")
    assert done.returncode == 0, done.stderr
    (session,) = [s for s in sessions_of(grid, "carol") if s["session_id"] not in before]
    with admin(grid) as client:
        results = client.session(str(session["session_id"])).results(timeout=10)
    assert [(r.state, r.output) for r in results] == [
        (TaskState.FINISHED, 1000),
        (TaskState.FINISHED, 2000),
    ]


def lines(output: str) -> dict[str, dict[str, object]]:
    found = {}
    for line in output.splitlines():
        title, _, value = line.partition(": ")
        found[title] = json.loads(value)
    return found


def test_cancel_many_small_tasks(grid: GridProcess, tmp_path: Path) -> None:
    done = run_example(grid, tmp_path, "cancel_tasks.py", "--test_cancel_many_small_tasks", "1")
    assert done.returncode == 0, done.stderr
    printed = lines(done.stdout)
    sid = printed["Submitted"]["session_id"]
    counts = printed["Cancelled"][sid]
    assert isinstance(counts, dict) and counts["total_cancelled_tasks"] >= 7  # one slot, 2 s
    assert counts["total_cancelled_tasks"] == (
        counts["cancelled_pending"] + counts["cancelled_processing"]
    )
    results = printed["Results"]
    assert results["metadata"] == {"tasks_in_response": 10}
    assert len(results["cancelled"]) == counts["total_cancelled_tasks"]  # type: ignore[arg-type]
    assert results["finished_OUTPUT"] == ["1000"] * len(results["finished"])  # type: ignore[arg-type]


def test_cancel_one_long_task(grid: GridProcess, tmp_path: Path) -> None:
    args = ("--test_cancel_one_long_task", "1", "--cancel_after_sec", "1")
    done = run_example(grid, tmp_path, "cancel_tasks.py", *args)
    assert done.returncode == 0, done.stderr
    printed = lines(done.stdout)
    sid = str(printed["Submitted"]["session_id"])
    assert printed["Cancelled"] == {
        sid: {"cancelled_pending": 0, "cancelled_processing": 1, "total_cancelled_tasks": 1}
    }
    with admin(grid) as client:
        (result,) = client.session(sid).results(timeout=10)
        assert result.state is TaskState.CANCELLED
        # the agent killed the running task: its slot runs the next task right away
        assert client.submit([{"worker_arguments": ["1", "1", "1"]}]).outputs(timeout=20) == [1]


def test_cancel_tasks_without_a_test_prints_help(grid: GridProcess, tmp_path: Path) -> None:
    done = run_example(grid, tmp_path, "cancel_tasks.py")
    assert done.returncode == 2 and "--test_cancel_one_long_task" in done.stdout
