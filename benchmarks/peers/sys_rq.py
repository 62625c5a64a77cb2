"""RQ with Redis: N ``rq worker`` processes (the default worker: a work horse forked per job);
``enqueue_many`` per batch, then each job's result, read as RQ's results API gives it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

from peers import work
from peers.base import Missing, System, need, unlink_matching

URL = os.environ.get("HTCGRID_BENCH_RQ_URL", "redis://127.0.0.1:6379/13")


class RQ(System):
    name = "rq"
    services = ("redis",)

    @classmethod
    def check(cls) -> None:
        need("rq", "redis")
        import redis

        try:
            redis.Redis.from_url(URL, socket_timeout=2).ping()
        except redis.RedisError as exc:
            raise Missing(f"Redis not reachable at {URL}") from exc

    def start(self) -> None:
        self.queue_name = f"peers-{uuid.uuid4().hex[:8]}"
        cmd = [sys.executable, "-m", "rq.cli", "worker", "--url", URL, "--quiet", self.queue_name]
        self.procs = [
            subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(self.workers)
        ]
        self._connect()

    def _connect(self) -> None:
        import redis
        from rq import Queue

        self.conn = redis.Redis.from_url(URL, socket_timeout=None)  # results wait on XREAD BLOCK
        self.queue = Queue(self.queue_name, connection=self.conn)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=60)
        unlink_matching(self.conn, "rq:*")
        self.conn.close()

    def map(self, fn: str, args: list[Any]) -> list[Any]:
        from rq.results import Result

        func = work.FUNCTIONS[fn]
        jobs = self.queue.enqueue_many([self.queue.prepare_data(func, args=(a,)) for a in args])
        outputs = []
        for job in jobs:
            result = job.latest_result(timeout=3600)
            if result is None or result.type != Result.Type.SUCCESSFUL:
                raise RuntimeError(f"rq job {job.id} did not succeed")
            outputs.append(result.return_value)
        return outputs

    def client(self) -> System:
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other._connect()
        return other

    def close_client(self) -> None:
        self.conn.close()
