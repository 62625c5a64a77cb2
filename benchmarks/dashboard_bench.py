"""What the dashboard costs the server of a busy grid, as a share of the server's CPU.

    python benchmarks/dashboard_bench.py                    # 4 viewers, 30 s phases, 3 rounds
    python benchmarks/dashboard_bench.py --viewers 8 --preload 1000000

Starts ``htcgrid up`` (SQLite, two agents of two slots), stores ``--preload`` tasks of ended
sessions (the grid's history), then keeps it busy as its users do: ``--clients`` clients each
submit a session of ``--session-tasks`` short tasks, wait for it, read its results and delete
it, one session after the other (so the store keeps its size from one phase to the next). Phases of
``--seconds`` alternate, without and with ``--viewers`` dashboards open; each viewer has one
page open and asks what that page asks every 2 s (as the page does): viewers take the
overview, the sessions list, the running session's page and the agents in turn.

The server's CPU is the ``htcgrid up`` process's own (API, TTL checker; its agents are other
processes), from /proc. Prints the CPU per second of each phase and the dashboard's share:
(with - without) / with, the median over the rounds (the phases without the dashboard all
come first). Other work on the machine moves it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

import htcgrid

POLL_SECONDS = 2.0
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` itself (not its children), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@contextmanager
def grid_up(slots: int, agents: int) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "htcgrid", "up", "--port", "0", "--data-dir", tmp,
             "--slots", str(slots), "--agents", str(agents),
             "--handler", "htcgrid.handlers.mock_compute"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        key = json.loads((Path(tmp) / "admin-credentials.json").read_text())["api_key"]
        try:
            yield proc, url, key
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def preload(client: htcgrid.Client, tasks: int) -> None:
    """``tasks`` tasks of history: sessions that run and end before the measure starts."""
    left = tasks
    while left > 0:
        size = min(left, 100_000)
        client.submit({"worker_arguments": [0]} for _ in range(size)).wait()
        left -= size


class Load:
    """Sessions submitted, awaited and read by ``clients`` clients, until stopped."""

    def __init__(self, client: htcgrid.Client, tasks: int, clients: int) -> None:
        self.client = client
        self.tasks = tasks
        self.current: str | None = None
        self.done = 0
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                session = self.client.submit([{"worker_arguments": [0]}] * self.tasks)
                self.current = session.id
                session.wait()
                assert sum(1 for _ in session.results()) == self.tasks
                self.client.delete(session.id)  # the store keeps its size from phase to phase
                self.done += self.tasks
        except Exception:
            if not self.stopping.is_set():  # the grid stopping under it is the end, not news
                raise


PAGES = ("overview", "sessions", "session", "agents")


class Viewer:
    """One dashboard open on one page, polling as the page does."""

    def __init__(self, url: str, token: str, load: Load, page: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=60)
        self.load = load
        self.page = page
        self.requests = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            path = {
                "overview": "/v1/dashboard/overview",
                "sessions": "/v1/sessions?cursor=0&limit=25",
                "session": f"/v1/dashboard/sessions/{self.load.current}",
                "agents": "/v1/dashboard/agents",
            }[self.page]
            self.http.get(path).raise_for_status()
            self.requests += 1
            self.stopping.wait(max(0.0, POLL_SECONDS - (time.monotonic() - started)))


def phase(pid: int, seconds: float, viewers: list[Viewer]) -> float:
    for viewer in viewers:
        viewer.stopping.clear()
        viewer.thread = threading.Thread(target=viewer._run, daemon=True)
        viewer.thread.start()
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    used = (cpu_seconds(pid) - before) / (time.monotonic() - started)
    for viewer in viewers:
        viewer.stopping.set()
    for viewer in viewers:
        viewer.thread.join()
    return used


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--viewers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--preload", type=int, default=200_000, help="tasks of history")
    parser.add_argument("--session-tasks", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    with grid_up(slots=2, agents=2) as (proc, url, key), htcgrid.connect(url, api_key=key) as c:
        preload(c, args.preload)
        load = Load(c, args.session_tasks, args.clients)
        load.start()
        viewers = [Viewer(url, key, load, PAGES[i % 4]) for i in range(args.viewers)]
        while load.current is None:  # the load under way
            time.sleep(0.1)
        # Every phase without the dashboard comes first: once viewed, the server samples the
        # grid's counts for an hour (the throughput chart), a cost of the dashboard's.
        without = [phase(proc.pid, args.seconds, []) for _ in range(args.rounds)]
        with_ = [phase(proc.pid, args.seconds, viewers) for _ in range(args.rounds)]
        shares = []
        for round_, (off, on) in enumerate(zip(without, with_, strict=True)):
            shares.append((on - off) / on if on else 0.0)
            print(
                f"round {round_ + 1}: server CPU {off:.3f} s/s without the dashboard, "
                f"{on:.3f} s/s with {args.viewers} viewer(s): "
                f"dashboard share {100 * shares[-1]:.1f} %",
                flush=True,
            )
        load.stopping.set()
        done = load.done
        requests = sum(v.requests for v in viewers)
        print(
            f"dashboard share of the server's CPU: {100 * statistics.median(shares):.1f} % "
            f"(median of {args.rounds} rounds; {requests} dashboard requests; "
            f"{done:,} tasks run during the measure; {args.preload:,} tasks of history)"
        )


if __name__ == "__main__":
    main()
