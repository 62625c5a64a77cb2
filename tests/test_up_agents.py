"""``htcgrid up --agents MIN:MAX``: agents follow the backlog and leave by draining; an agent
that keeps dying is restarted with backoff. Real processes throughout."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from procs import descendants, until
from sample_handlers_path import HERE

import htcgrid
from htcgrid.local_agents import FIRST_RESTART_SECONDS, MAX_RESTART_SECONDS, restart_delay

ROOT = Path(__file__).resolve().parents[1]


def test_restart_delay_doubles_while_an_agent_dies_young() -> None:
    delays = [restart_delay(n) for n in range(8)]
    assert delays[0] == 0.0  # after a long, healthy run
    assert delays[1:4] == [
        FIRST_RESTART_SECONDS,
        2 * FIRST_RESTART_SECONDS,
        4 * FIRST_RESTART_SECONDS,
    ]
    assert delays[-1] == MAX_RESTART_SECONDS


@contextmanager
def up(tmp_path: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """``htcgrid up`` running sample handlers, its stderr in a file."""
    log = tmp_path / "up.log"
    command = [
        sys.executable, "-m", "htcgrid", "up", "--port", "0", "--no-auth",
        "--data-dir", str(tmp_path / "grid"), "--path", HERE, "--handler", "sample_handlers.sleep",
        "--heartbeat-seconds", "0.5", "--lease-seconds", "3", "--grace-seconds", "20", *extra,
    ]  # fmt: skip
    with log.open("w") as err:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    try:
        assert url.startswith("http://"), log.read_text()
        yield proc, url, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def agent_pids(proc: subprocess.Popen[str]) -> set[int]:
    """The grid's agents: its children that lead their own process group."""
    found = set()
    for pid in descendants(proc.pid):
        try:
            if os.getpgid(pid) == pid:
                found.add(pid)
        except ProcessLookupError:
            continue
    return found


@pytest.mark.slow
def test_agents_scale_out_on_the_backlog_and_back_in_without_interrupting_a_task(
    tmp_path: Path,
) -> None:
    extra = ["--agents", "1:3", "--slots", "1", "--target-backlog", "1", "--cooldown-seconds", "1"]
    with up(tmp_path, *extra) as (proc, url, log):
        until(lambda: len(agent_pids(proc)) == 1, 30, "the first agent")
        client = htcgrid.connect(url)
        session = client.submit([{"seconds": 4}] + [{"seconds": 0.5}] * 8)
        until(lambda: len(agent_pids(proc)) == 3, 30, "three agents")
        session.wait(timeout=90)
        results = session.results()
        assert [r.state.value for r in results] == ["finished"] * 9
        assert {r.attempts for r in results} == {1}, "a task was interrupted and run again"
        until(lambda: len(agent_pids(proc)) == 1, 60, "the grid back at one agent")
        text = log.read_text()
        assert "1..3 agents" in text
        assert re.search(r"agents 1 -> 3 \(backlog \d+, running \d+\)", text), text
        assert re.search(r"agents \d -> 1 ", text), text
        assert "exited with code" not in text, "a retired agent must not be restarted"


@pytest.mark.slow
def test_an_agent_that_keeps_dying_is_restarted_ever_later(tmp_path: Path) -> None:
    with up(tmp_path, "--agents", "1", "--slots", "1") as (proc, _, log):
        starts = []
        for _ in range(3):
            (pid,) = until(lambda: agent_pids(proc), 30, "an agent")
            starts.append(time.monotonic())
            os.killpg(pid, signal.SIGKILL)
            until(lambda p=pid: p not in agent_pids(proc), 10, "the agent gone")
        until(lambda: agent_pids(proc), 30, "the last restart")
        starts.append(time.monotonic())
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert gaps[1] >= 1.5 * FIRST_RESTART_SECONDS and gaps[2] >= 3.5 * FIRST_RESTART_SECONDS, (
            gaps
        )
        lines = [line for line in log.read_text().splitlines() if "exited with code -9" in line]
        assert len(lines) == 3, lines  # one line per restart
        assert "restarting it in 4.0 s" in lines[-1]
