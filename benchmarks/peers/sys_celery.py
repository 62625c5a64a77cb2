"""Celery with Redis as broker and result backend: a prefork worker of N processes; a group of
signatures per batch, ``apply_async().get()``; one ``apply_async().get()`` per round trip."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

from peers.base import Missing, System, need, unlink_matching

URL = os.environ.get("HTCGRID_BENCH_CELERY_URL", "redis://127.0.0.1:6379/12")


class Celery(System):
    name = "celery"
    services = ("redis",)

    @classmethod
    def check(cls) -> None:
        need("celery", "redis")
        import redis

        try:
            redis.Redis.from_url(URL, socket_timeout=2).ping()
        except redis.RedisError as exc:
            raise Missing(f"Redis not reachable at {URL}") from exc

    def start(self) -> None:
        os.environ["PEERS_CELERY_URL"] = URL
        os.environ["PEERS_CELERY_QUEUE"] = self.queue = f"peers-{uuid.uuid4().hex[:8]}"
        worker = ["worker", "--pool", "prefork", "--concurrency", str(self.workers)]
        quiet = ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"]
        cmd = [sys.executable, "-m", "celery", "-A", "peers.celery_app", *worker, *quiet]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        self.app = self._app()

    @staticmethod
    def _app() -> Any:
        from peers.celery_app import make_app

        return make_app()

    def stop(self) -> None:
        import redis

        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.app.close()
        conn = redis.Redis.from_url(URL)
        for pattern in ("celery-task-meta-*", f"{self.queue}*", f"_kombu.binding.{self.queue}*"):
            unlink_matching(conn, pattern)

    def map(self, fn: str, args: list[Any]) -> list[Any]:
        from celery import group

        job = group(self.app.signature(f"peers.{fn}", args=(a,)) for a in args)
        return list(job.apply_async().get(timeout=3600))

    def call(self, fn: str, arg: Any) -> Any:
        return self.app.send_task(f"peers.{fn}", args=(arg,)).get(timeout=3600)

    def client(self) -> System:
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.app = self._app()  # the Redis result consumer is not shared between threads
        return other

    def close_client(self) -> None:
        self.app.close()
