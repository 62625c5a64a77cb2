"""CPU and memory of a system's whole process tree, found by snapshotting every process.

A system's processes are those whose environment carries this run's marker (every process the
harness starts inherits it, including those a system starts in sessions of their own, as Ray's
raylet and GCS), plus the database servers it talks to: the Redis server, and the PostgreSQL
postmaster's helpers and the backends whose client port belongs to one of the system's
processes. A snapshot maps each process (pid, start time) to its CPU seconds, counting the
children it has reaped (so a process forked per task, as RQ's work horse, is not lost); a
window's CPU is the growth of the processes present at its end.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable

import psutil

MARKER = "HTCGRID_PEERS_RUN"
Key = tuple[int, float]


def mark_this_run() -> None:
    os.environ.setdefault(MARKER, uuid.uuid4().hex)


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


class Tree:
    """The processes of one system under test; ``services`` names the servers it uses."""

    def __init__(self, services: Iterable[str] = ()) -> None:
        self.services = set(services)
        self._marked: dict[Key, bool] = {}
        self.me = os.getpid()

    def _is_marked(self, proc: psutil.Process, key: Key, kids: set[int]) -> bool:
        if key not in self._marked and proc.pid in kids:
            self._marked[key] = True  # forked, not executed: its environ is the parent's at exec
        if key not in self._marked:
            try:
                env = proc.environ()
            except (psutil.Error, OSError):
                env = {}
            self._marked[key] = env.get(MARKER) == os.environ[MARKER]
        return self._marked[key]

    def _descendants(self) -> set[int]:
        return {p.pid for p in psutil.Process(self.me).children(recursive=True)}

    def processes(self) -> list[psutil.Process]:
        """The system's live processes, the harness (the client) included."""
        mine, postgres = [], []
        kids = self._descendants()
        for proc in psutil.process_iter(["name", "create_time"]):
            name = proc.info["name"] or ""
            if proc.pid == self.me or (
                "redis" in self.services and name.startswith("redis-server")
            ):
                mine.append(proc)
            elif "postgres" in self.services and name.startswith("postgres"):
                postgres.append(proc)
            elif self._is_marked(proc, (proc.pid, proc.info["create_time"] or 0.0), kids):
                mine.append(proc)
        return mine + _our_postgres(postgres, mine)

    def marked(self) -> list[psutil.Process]:
        """The processes this run started (never the database servers, never the harness)."""
        found, kids = [], self._descendants()
        for proc in psutil.process_iter(["create_time"]):
            key = (proc.pid, proc.info["create_time"] or 0.0)
            if proc.pid != self.me and self._is_marked(proc, key, kids):
                found.append(proc)
        return found

    def snapshot(self) -> dict[Key, float]:
        found = {}
        for proc in self.processes():
            try:
                found[(proc.pid, proc.create_time())] = _cpu(proc)
            except psutil.Error:
                continue
        return found

    def rss_bytes(self) -> int:
        """Resident memory of the processes the system started (its servers, agents, workers):
        neither the harness (the client) nor the database servers, whose processes share memory
        that a sum of RSS would count once per process."""
        total = 0
        for proc in self.marked():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total


def cpu_between(before: dict[Key, float], after: dict[Key, float]) -> float:
    return sum(cpu - before.get(key, 0.0) for key, cpu in after.items())


def _our_postgres(
    postgres: list[psutil.Process], mine: list[psutil.Process]
) -> list[psutil.Process]:
    """The postmaster and its helpers, and the backends serving one of ``mine``."""
    ports = set()
    for proc in mine:
        try:
            ports.update(c.laddr.port for c in proc.net_connections("tcp") if c.raddr)
        except psutil.Error:
            continue
    chosen = []
    for proc in postgres:
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "(" not in cmdline:  # the postmaster and its background workers
            chosen.append(proc)
            continue
        port = cmdline.split("(", 1)[1].split(")", 1)[0]
        if port.isdigit() and int(port) in ports:
            chosen.append(proc)
    return chosen


class PeakRss:
    """Samples the system's resident memory on a thread while a block runs."""

    def __init__(self, tree: Tree, every_seconds: float = 0.1) -> None:
        self.tree, self.every_seconds = tree, every_seconds
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.tree.rss_bytes())
            if self._stop.wait(self.every_seconds):
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.tree.rss_bytes())
