"""Every process of the grid leaves with its supervisor: SIGKILL `htcgrid up` while an agent is
busy, or stuck on a locked store, and nothing of the grid is left running."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest
from grid_process import htcgrid_up
from procs import descendants, pid_alive, until
from sample_handlers_path import HERE

import htcgrid

pytestmark = pytest.mark.slow


def group_members(pgids: set[int]) -> set[int]:
    """Live processes whose process group is one of ``pgids``."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in pgids and fields[0] not in ("Z", "X"):
            found.add(int(stat.parent.name))
    return found


@pytest.mark.parametrize("stuck", [False, True], ids=["busy", "stuck"])
def test_killing_up_leaves_no_process_behind(tmp_path: Path, stuck: bool) -> None:
    pid_file = tmp_path / "worker.pid"
    extra = ["--path", HERE, "--handler", "sample_handlers.sleep", "--grace-seconds", "30"]
    with htcgrid_up(tmp_path / "grid", *extra) as grid:
        client = htcgrid.connect(grid.url)
        client.submit([{"seconds": 120, "pid_file": str(pid_file)}])
        worker = int(until(lambda: pid_file.exists() and pid_file.read_text(), 60, "a task"))
        grid_pids = descendants(grid.proc.pid)
        agents = {pid for pid in grid_pids if os.getpgid(pid) == pid}
        assert worker in grid_pids and agents, "the task should run under an agent of this grid"
        lock = None
        if stuck:  # every store call of the agent now waits on the lock, for as long as we hold it
            lock = sqlite3.connect(tmp_path / "grid" / "grid.db", timeout=30)
            lock.execute("BEGIN EXCLUSIVE")
        try:
            os.kill(grid.proc.pid, signal.SIGKILL)
            grid.proc.wait(10)
            until(lambda: not any(pid_alive(p) for p in grid_pids), 10, "the grid's processes")
            assert not group_members(agents), "a process is left in an agent's group"
        finally:
            if lock is not None:
                lock.rollback()
                lock.close()
