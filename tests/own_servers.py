"""Database servers of a test's own, on free loopback ports, to stop and start mid-run.

A Redis server (append-only file, so a restart keeps the data) or a PostgreSQL cluster made
with initdb in a folder of the test's; used by the outage tests and the chaos suite.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from backends import require_module
from procs import until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnRedis:
    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        until(self.answers, 10, "redis to start")

    def answers(self) -> bool:
        """True once the server answers PING (not while it is still loading its data)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # redis flushes its AOF and exits
            self.proc.wait(timeout=20)

    def remove(self) -> None:
        self.stop()


class OwnPostgres:
    """A cluster made with initdb in a folder of the test's, run as the postgres user."""

    def __init__(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not bins or os.geteuid() != 0 or shutil.which("runuser") is None:
            pytest.skip("needs PostgreSQL's server binaries and root (to run them as postgres)")
        self.bin, self.port = bins[-1], free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="htcgrid-pg-"))
        shutil.chown(self.folder, "postgres")
        self.data = self.folder / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def _as_postgres(self, tool: str, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / tool), *args],
                       check=True, capture_output=True, timeout=60)  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        log = str(self.folder / "log")
        self._as_postgres("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        until(self.answers, 20, "postgres to start")

    def answers(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def own_server(kind: str, folder: Path) -> Iterator[OwnRedis | OwnPostgres]:
    """A started server of ``kind`` ("redis" or "postgresql"), removed afterwards; skips the
    test when the server's binaries (or, for PostgreSQL, root) are missing."""
    server: OwnRedis | OwnPostgres
    if kind == "redis":
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server not installed")
        require_module("htcgrid.store.redis")
        server = OwnRedis(folder)
    else:
        require_module("htcgrid.store.postgres")
        server = OwnPostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()
