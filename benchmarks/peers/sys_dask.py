"""Dask distributed: a LocalCluster of process workers (one thread each), map + gather."""

from __future__ import annotations

from typing import Any

from peers import work
from peers.base import System, need


class Dask(System):
    """Dask distributed: a LocalCluster of process workers, one thread each; map + gather."""

    name = "dask"
    durable = False

    @classmethod
    def check(cls) -> None:
        need("dask", "distributed")

    def start(self) -> None:
        from distributed import Client, LocalCluster

        self.cluster = LocalCluster(
            n_workers=self.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        )
        self.dask = Client(self.cluster)

    def stop(self) -> None:
        self.dask.close()
        self.cluster.close()

    def map(self, fn: str, args: list[Any]) -> list[Any]:
        futures = self.dask.map(work.FUNCTIONS[fn], args, pure=False)
        return list(self.dask.gather(futures))
