"""concurrent.futures.ProcessPoolExecutor: the floor, with no durability at all."""

from __future__ import annotations

import concurrent.futures
from typing import Any

from peers import work
from peers.base import System


class ProcessPool(System):
    """concurrent.futures.ProcessPoolExecutor.map: the floor, with no durability at all."""

    name = "ppe"
    durable = False

    def start(self) -> None:
        self.pool = concurrent.futures.ProcessPoolExecutor(self.workers)

    def stop(self) -> None:
        self.pool.shutdown()

    def map(self, fn: str, args: list[Any]) -> list[Any]:
        return list(self.pool.map(work.FUNCTIONS[fn], args))

    def call(self, fn: str, arg: Any) -> Any:
        return self.pool.submit(work.FUNCTIONS[fn], arg).result()
