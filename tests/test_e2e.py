"""End to end: `htcgrid up` as a real process, driven by the CLI, the client and HTC-Grid's example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from grid_process import MOCK, ROOT, htcgrid_up
from procs import descendants, pid_alive, until

import htcgrid
from htcgrid.dataplane import open_data_plane
from htcgrid.functions import FunctionRegistry, zip_directory

pytestmark = pytest.mark.slow


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "htcgrid", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_up_runs_sessions_survives_restart_and_stops_cleanly(tmp_path: Path) -> None:
    tasks = [{"worker_arguments": [str(ms), "1", "1"]} for ms in (5, 10, 15)]
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    with htcgrid_up(tmp_path / "grid") as grid:
        done = cli("submit", str(tmp_path / "tasks.json"), "--url", grid.url, "--wait", "--json")
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        assert [r["output"] for r in lines] == [5, 10, 15]
        assert all(r["state"] == "finished" for r in lines)
        session_id = lines[0]["task_id"].rsplit("_", 1)[0]

        jsonl = "\n".join(json.dumps(t) for t in tasks[:2])
        second = cli("submit", "-", "--url", grid.url, stdin=jsonl).stdout.strip()
        assert cli("wait", second, "--url", grid.url, "--timeout", "60").returncode == 0
        status = json.loads(cli("status", second, "--url", grid.url, "--json").stdout)
        assert status["counts"]["finished"] == 2 and status["complete"]

        family = descendants(grid.proc.pid)
        assert len(family) >= 3  # an agent and its two workers
        assert grid.stop() == 0
        until(lambda: not any(pid_alive(p) for p in family), 10, "every child to exit")

    with htcgrid_up(tmp_path / "grid") as grid:
        listed = cli("sessions", "--url", grid.url).stdout
        assert session_id in listed and second in listed
        results = cli("results", session_id, "--url", grid.url, "--json")
        assert [json.loads(line)["output"] for line in results.stdout.splitlines()] == [5, 10, 15]
        task = json.loads(cli("task", f"{session_id}_1", "--url", grid.url, "--json").stdout)
        assert "Starting task processing... (10)" in task["log"]
        grid.stop()


def test_python_client_cancel_and_bad_input(tmp_path: Path) -> None:
    with htcgrid_up(tmp_path / "grid") as grid, htcgrid.connect(grid.url) as client:
        slow = client.submit([{"worker_arguments": ["60000", "1", "1"]}] * 4)
        until(lambda: slow.status()["counts"]["processing"] >= 1, 30, "a running task")
        answer = slow.cancel()
        assert answer["total_cancelled_tasks"] == 4
        final = slow.wait(timeout=10)
        assert final["counts"]["cancelled"] == 4
        assert cli("cancel", slow.id, "--url", grid.url).returncode == 0  # idempotent

        with pytest.raises(htcgrid.ValidationError):
            client.submit([])
        with pytest.raises(htcgrid.NotFound):
            client.session("no-such-session")
        bad = cli("status", "nope", "--url", grid.url)
        assert bad.returncode == 1 and "no session nope" in bad.stderr
        grid.stop()


def test_htcgrid_example_client_verifies_every_result(tmp_path: Path) -> None:
    with htcgrid_up(tmp_path / "grid") as grid:
        config = tmp_path / "agent_config.json"
        config.write_text(json.dumps({"htcgrid_url": grid.url}))
        run = subprocess.run(
            [sys.executable, str(ROOT / "examples/client/client.py"), "-n", "2", "--job_size", "50",
             "--job_batch_size", "3", "--worker_arguments", "1 1 1", "--nthreads", "2"],
            env={**os.environ, "AGENT_CONFIG_FILE": str(config)}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        assert "All results are verified!" in run.stdout
        rate = float(run.stdout.split("Observed Throughput (tasks/second):")[1].split()[0])
        elapsed = float(run.stdout.split("Time from start:")[1].split()[0])
        assert rate == pytest.approx(600 / elapsed, rel=0.01)
        grid.stop()


def test_the_connector_runs_the_function_its_config_names(tmp_path: Path) -> None:
    from htcgrid.connector import AWSConnector

    with htcgrid_up(tmp_path / "grid") as grid, htcgrid.connect(grid.url) as client:
        blobs = open_data_plane(f"file://{grid.data_dir / 'blobs'}")
        FunctionRegistry(blobs).deploy("other", zip_directory(MOCK), "mock_compute_engine.f")
        connector = AWSConnector()
        connector.init({"htcgrid_url": grid.url, "htcgrid_function": "other"})
        submission = connector.send([{"worker_arguments": ["1", "1", "1"]}])
        assert client.session(submission["session_id"]).status()["function"] == "other"
        plain = AWSConnector()
        plain.init({"htcgrid_url": grid.url})
        answer = plain.get_results(plain.send([{"worker_arguments": ["1", "1", "1"]}]), 60)
        assert answer["finished_OUTPUT"] == ["1"]
        assert (
            client.session(answer["finished"][0].rsplit("_", 1)[0]).status()["function"]
            == "default"
        )
        grid.stop()


def test_ctrl_c_stops_up_and_all_its_children(tmp_path: Path) -> None:
    import signal

    with htcgrid_up(tmp_path / "grid") as grid:
        until(lambda: len(descendants(grid.proc.pid)) >= 3, 30, "the agent and its workers")
        family = descendants(grid.proc.pid)
        grid.proc.send_signal(signal.SIGINT)  # what a terminal sends on Ctrl-C
        assert grid.proc.wait(timeout=60) == 0
        until(lambda: not any(pid_alive(p) for p in family), 10, "every child to exit")
