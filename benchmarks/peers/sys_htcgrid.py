"""htcgrid over HTTP with authentication on, through the Python client (one session per batch).

``htcgrid-sqlite`` is ``htcgrid up`` (the embedded default); ``htcgrid-postgresql`` and
``htcgrid-redis`` are ``htcgrid server`` and one ``htcgrid agent`` sharing the backend URL, as on
separate machines, with an admin and an API key made by the CLI before the server starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from peers.base import Missing, System, need, unlink_matching

HERE = Path(__file__).resolve().parent
WORKER = ["--handler", "peers.work.handler", "--path", str(HERE.parent)]
POSTGRES = os.environ.get("HTCGRID_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("HTCGRID_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
HTCGRID = [sys.executable, "-m", "htcgrid"]


class _Htcgrid(System):
    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.procs: list[subprocess.Popen[str]] = []
        self.url, self.token = "", ""
        self.last: str | None = None  # the session of the last map

    def _connect(self) -> Any:
        import htcgrid

        return htcgrid.connect(self.url, token=self.token)

    def _serve(self, args: list[str]) -> str:
        proc = subprocess.Popen([*HTCGRID, *args, "--port", "0"], stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"htcgrid {args[0]} did not start (exit {proc.poll()})")
        return url

    def start(self) -> None:
        self._start()
        self.grid = self._connect()

    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if hasattr(self, "grid"):
            self.grid.close()
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=60)

    def map(self, fn: str, args: list[Any]) -> list[Any]:
        session = self.grid.submit([[fn, a] for a in args])
        self.last = session.id
        outputs: list[Any] = session.outputs()
        return outputs

    def call(self, fn: str, arg: Any) -> Any:
        (output,) = self.grid.map([[fn, arg]])  # one request: the submit waits for its result
        return output

    def forget(self) -> None:
        if self.last is not None:
            self.grid.delete(self.last)
            self.last = None

    def client(self) -> System:
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.grid = self._connect()
        return other

    def close_client(self) -> None:
        self.grid.close()


class HtcgridSqlite(_Htcgrid):
    name = "htcgrid-sqlite"

    @classmethod
    def check(cls) -> None:
        need("htcgrid")

    def _start(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        up = ["up", "--data-dir", self.tmp.name, "--slots", str(self.workers), "--agents", "1"]
        self.url = self._serve([*up, *WORKER])
        creds = json.loads((Path(self.tmp.name) / "admin-credentials.json").read_text())
        self.token = creds["api_key"]

    def stop(self) -> None:
        super().stop()
        self.tmp.cleanup()


class _Shared(_Htcgrid):
    backend = ""

    def _start(self) -> None:
        where = ["--url", self.backend]
        _cli("user", "add", "bench", "--admin", "--password", uuid.uuid4().hex, *where)
        self.token = _cli("key", "create", "--user", "bench", *where).strip().splitlines()[-1]
        self.url = self._serve(["server", *where])
        agent = ["agent", *where, "--slots", str(self.workers), *WORKER]
        self.procs.append(subprocess.Popen([*HTCGRID, *agent], text=True))


def _cli(*args: str) -> str:
    return subprocess.run([*HTCGRID, *args], check=True, capture_output=True, text=True).stdout


class HtcgridPostgres(_Shared):
    name = "htcgrid-postgresql"
    services = ("postgres",)

    @classmethod
    def check(cls) -> None:
        need("htcgrid", "psycopg")
        import psycopg

        try:
            psycopg.connect(POSTGRES, connect_timeout=2).close()
        except psycopg.Error as exc:
            raise Missing(f"PostgreSQL not reachable at {POSTGRES}") from exc

    def _start(self) -> None:
        self.schema = f"htcgrid_peers_{uuid.uuid4().hex[:8]}"
        self.backend = f"{POSTGRES}?schema={self.schema}"
        super()._start()

    def stop(self) -> None:
        import psycopg

        super().stop()
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


class HtcgridRedis(_Shared):
    name = "htcgrid-redis"
    services = ("redis",)

    @classmethod
    def check(cls) -> None:
        need("htcgrid", "redis")
        import redis

        try:
            redis.Redis.from_url(REDIS, socket_timeout=2).ping()
        except redis.RedisError as exc:
            raise Missing(f"Redis not reachable at {REDIS}") from exc

    def _start(self) -> None:
        self.prefix = f"htcgrid-peers-{uuid.uuid4().hex[:8]}:"
        self.backend = f"{REDIS}?prefix={self.prefix}"
        super()._start()

    def stop(self) -> None:
        import redis

        super().stop()
        conn = redis.Redis.from_url(REDIS)
        unlink_matching(conn, self.prefix + "*")
