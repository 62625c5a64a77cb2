"""The TTL checker: gives the tasks of dead agents back to the queue (design §2).

Its only write is the store's ``expire_leases``, a compare-and-set, so any number of servers
may run one at the same time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from htcgrid.models import ExpiryReport
from htcgrid.retry import Retrier
from htcgrid.store import TaskStore

log = logging.getLogger("htcgrid.ttl")


class TTLChecker:
    def __init__(
        self,
        store: TaskStore,
        interval_seconds: float = 2.0,
        batch: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.interval_seconds = interval_seconds
        self.batch = batch
        self.clock = clock
        self.requeued = 0
        self.failed = 0
        self._stop = threading.Event()
        self._retry = Retrier(log, give_up=self._stop.is_set)

    def check_once(self) -> ExpiryReport:
        """Expire every lease that is over, in batches; returns what was done."""
        total = ExpiryReport()
        while True:
            report = self.store.expire_leases(self.clock(), self.batch)
            total.requeued.extend(report.requeued)
            total.failed.extend(report.failed)
            if len(report.requeued) + len(report.failed) < self.batch:
                break
        self.requeued += len(total.requeued)
        self.failed += len(total.failed)
        if total.requeued or total.failed:
            log.info(
                "requeued %d and failed %d expired task(s)", len(total.requeued), len(total.failed)
            )
        return total

    def run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                self._retry(self.check_once)
            except Exception:
                log.exception("TTL check failed")

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="htcgrid-ttl", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
