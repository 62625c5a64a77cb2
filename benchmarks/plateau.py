"""A long run with retention on: do memory and disk plateau?

    nice -n 19 python benchmarks/plateau.py --tasks 1000000
    nice -n 19 python benchmarks/plateau.py --tasks 10000000 --samples plateau-10m.tsv

Starts ``htcgrid up`` (SQLite) with a short ``--retention-seconds`` and a purge every few
seconds, then runs ``--tasks`` no-op tasks in sessions of ``--session-tasks``, a few sessions in
flight at a time, never reading their results: the server's purge is what keeps the grid
small. Every ``--every`` seconds it samples the RSS of the server (the ``htcgrid up`` process)
and of the agents and their workers, and the size of the SQLite file, its WAL and the whole
data folder; each sample is printed and appended to ``--samples`` as it is taken, so a run
stopped early still gives its figures. At the end it says whether each figure plateaued: the
median of the last third of the run is within ``--slack`` of the median of the middle third
(a figure that keeps growing with the tasks done fails that).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import htcgrid

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from grid_bench import tree  # noqa: E402

COLUMNS = ["seconds", "done", "server_mib", "agents_mib", "db_mib", "wal_mib", "dir_mib"]


@contextlib.contextmanager
def local_grid(
    data_dir: Path, args: argparse.Namespace
) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    env = {**os.environ, "HTCGRID_PURGE_CHECK_SECONDS": str(args.purge_every)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "htcgrid", "up", "--port", "0", "--data-dir", str(data_dir),
         "--slots", str(args.slots), "--agents", str(args.agents),
         "--retention-seconds", str(args.retention_seconds)],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    key = json.loads((data_dir / "admin-credentials.json").read_text())["api_key"]
    try:
        yield proc, url, key
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def mib(path: Path) -> float:
    with contextlib.suppress(OSError):
        return path.stat().st_size / 2**20
    return 0.0


def folder_mib(folder: Path) -> float:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total / 2**20


class Sampler:
    """Samples the grid every ``every`` seconds on a thread, printing and appending each."""

    def __init__(self, server: int, data_dir: Path, every: float, out: Path) -> None:
        self.server, self.data_dir, self.every, self.out = server, data_dir, every, out
        self.done = 0
        self.rows: list[list[float]] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        with self.out.open("a") as f:
            f.write("\t".join(COLUMNS) + "\n")
        print("\t".join(COLUMNS), flush=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def sample(self) -> None:
        below = [p for p in tree(self.server) if p != self.server]  # agents and workers
        db = self.data_dir / "grid.db"
        row = [
            round(time.monotonic() - self.started, 1),
            self.done,
            round(rss_mib(self.server), 1),
            round(sum(rss_mib(p) for p in below), 1),
            round(mib(db), 1),
            round(mib(db.with_name("grid.db-wal")), 1),
            round(folder_mib(self.data_dir), 1),
        ]
        self.rows.append(row)
        line = "\t".join(str(v) for v in row)
        print(line, flush=True)
        with self.out.open("a") as f:
            f.write(line + "\n")


def run(grid: htcgrid.Client, sampler: Sampler, args: argparse.Namespace) -> None:
    """Sessions of ``session_tasks`` no-op tasks, at most ``in_flight`` unfinished at once."""
    left, running = args.tasks, []
    while left or running:
        while left and len(running) < args.in_flight:
            n = min(args.session_tasks, left)
            running.append((grid.submit([{}] * n), n))
            left -= n
        session, n = running.pop(0)
        status = session.wait()
        assert status["done_count"] == n, f"session {session.id} ended with {status}"
        sampler.done += n


def plateau(rows: list[list[float]], column: int, slack: float) -> tuple[float, float, bool]:
    """Median value of the middle and of the last third of the run, and whether the last
    stays within ``slack`` (a fraction) of the middle. Medians, because the store's size
    swings with each purge and with the throughput of the moment (what finished within the
    retention period is kept): a peak is noise, a level that keeps rising is growth."""
    third = len(rows) // 3
    middle = statistics.median(r[column] for r in rows[third : 2 * third])
    last = statistics.median(r[column] for r in rows[2 * third :])
    return middle, last, last <= middle * (1 + slack) + 1.0  # 1 MiB: noise of a small file


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--session-tasks", type=int, default=50_000)
    parser.add_argument("--in-flight", type=int, default=2, help="sessions submitted at once")
    parser.add_argument("--retention-seconds", type=float, default=20.0)
    parser.add_argument("--purge-every", type=float, default=5.0, help="the server's purge period")
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--agents", type=int, default=1)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--slack", type=float, default=0.25, help="plateau tolerance")
    parser.add_argument("--samples", type=Path, default=Path("plateau-samples.tsv"))
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        with (
            local_grid(data_dir, args) as (proc, url, key),
            htcgrid.connect(url, token=key) as grid,
        ):
            print(
                f"grid {url}: {args.tasks:,} tasks in sessions of {args.session_tasks:,}, "
                f"retention {args.retention_seconds:g} s, purge every {args.purge_every:g} s",
                flush=True,
            )
            with Sampler(proc.pid, data_dir, args.every, args.samples) as sampler:
                run(grid, sampler, args)
            rows = sampler.rows
    seconds = time.monotonic() - started
    print(f"{args.tasks:,} tasks in {seconds:,.0f} s ({args.tasks / seconds:,.0f} tasks/s)")
    if len(rows) < 6:
        print("too few samples to judge a plateau")
        return
    for name in COLUMNS[2:]:
        middle, last, flat = plateau(rows, COLUMNS.index(name), args.slack)
        verdict = "plateau" if flat else "GROWS"
        top = max(r[COLUMNS.index(name)] for r in rows)
        print(
            f"{name}: median {middle:.1f} in the middle third, {last:.1f} in the last "
            f"(highest {top:.1f}): {verdict}"
        )


if __name__ == "__main__":
    main()
