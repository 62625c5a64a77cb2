"""Ray on this machine, its idiomatic fast path: remote functions and ray.get on a list."""

from __future__ import annotations

from typing import Any

from peers import work
from peers.base import System, need


class Ray(System):
    """Ray on this machine: ``num_cpus`` workers, remote functions, ``ray.get`` on a list."""

    name = "ray"
    durable = False

    @classmethod
    def check(cls) -> None:
        need("ray")

    def start(self) -> None:
        import ray

        ray.init(
            num_cpus=self.workers,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        self.ray = ray
        self.remote = {name: ray.remote(fn) for name, fn in work.FUNCTIONS.items()}

    def stop(self) -> None:
        self.ray.shutdown()

    def map(self, fn: str, args: list[Any]) -> list[Any]:
        remote = self.remote[fn]
        return list(self.ray.get([remote.remote(a) for a in args]))
