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
from htcgrid.dataplane import open_data_plane
from htcgrid.errors import BackendUnavailable
from htcgrid.local_agents import (
    FIRST_RESTART_SECONDS,
    MAX_RESTART_SECONDS,
    AgentPool,
    PoolScaler,
    restart_delay,
)
from htcgrid.scaling import ScalingPolicy
from htcgrid.service import GridService, SubmitRequest
from htcgrid.store import open_store

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


class CountingPool(AgentPool):
    """An AgentPool whose agents are only counted: what the scaler asks for, without processes."""

    def __init__(self, size: int) -> None:
        super().__init__(lambda n: [], grace_seconds=1)
        self.count = size
        self.calls: list[tuple[str, int]] = []

    def size(self) -> int:
        return self.count

    def grow(self, count: int) -> None:
        self.calls.append(("grow", count))
        self.count += count

    def shrink(self, count: int) -> None:
        self.calls.append(("shrink", count))
        self.count -= count


def test_the_scaler_grows_at_once_and_shrinks_after_the_cool_down() -> None:
    now = [0.0]
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    pool = CountingPool(1)
    said: list[str] = []
    policy = ScalingPolicy(1, 4, target_backlog=2, slots_per_unit=1, cooldown_seconds=10)
    scaler = PoolScaler(pool, service.store, policy, clock=lambda: now[0], announce=said.append)
    first = service.submit(SubmitRequest(tasks=list(range(20))))
    scaler.tick()
    assert pool.calls == [("grow", 3)] and said == ["agents 1 -> 4 (backlog 20, running 0)"]
    service.store.claim("a1", 18, 10.0, 0.0)  # 2 pending, 18 running: no agent is idle
    now[0] = 20.0
    scaler.tick()  # long after the cool-down, but the running tasks hold the agents
    assert pool.calls == [("grow", 3)]
    service.cancel(first.session_id)
    scaler.tick()
    assert pool.calls[-1] == ("shrink", 3) and pool.size() == 1
    second = service.submit(SubmitRequest(tasks=list(range(20))))
    now[0] = 21.0
    scaler.tick()  # out at once, cool-down or not
    assert pool.calls[-1] == ("grow", 3)
    service.cancel(second.session_id)
    now[0] = 30.0
    scaler.tick()  # 9 s after the change: not yet
    assert pool.calls[-1] == ("grow", 3)
    now[0] = 31.0
    scaler.tick()
    assert pool.calls[-1] == ("shrink", 3) and len(said) == 4


def test_the_scaler_waits_out_a_store_it_cannot_read(caplog: pytest.LogCaptureFixture) -> None:
    class Down:
        def queue_depth(self, functions: object = None) -> int:
            raise BackendUnavailable("the store is away")

    pool = CountingPool(2)
    scaler = PoolScaler(pool, Down(), ScalingPolicy(1, 4), announce=lambda text: None)  # type: ignore[arg-type]
    for _ in range(3):
        scaler.tick()
    assert pool.calls == []
    assert caplog.text.count("cannot read the backlog") == 1  # once per outage


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
