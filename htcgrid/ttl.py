"""The TTL checker: gives the tasks of dead agents back to the queue (design §2), and now and
then purges the sessions past their retention.

Its writes are the store's ``expire_leases``, a compare-and-set, and ``purge``, which deletes
only ended sessions, so any number of servers may run one at the same time.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sized

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
        purge: Callable[[], Sized] | None = None,
        purge_every_seconds: float = 60.0,
    ) -> None:
        self.store = store
        self.purge = purge
        self.purge_every_seconds = purge_every_seconds
        self._purged_at = -math.inf
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

    def purge_if_due(self) -> int:
        """Run ``purge`` (the retention of ended sessions) if it last ran at least
        ``purge_every_seconds`` ago; returns how many sessions it removed."""
        now = time.monotonic()
        if self.purge is None or now - self._purged_at < self.purge_every_seconds:
            return 0
        self._purged_at = now
        purged = len(self.purge())
        if purged:
            log.info("purged %d session(s) past their retention", purged)
        return purged

    def run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                self._retry(self.check_once)
                self._retry(self.purge_if_due)
            except Exception:
                log.exception("TTL check failed")

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="htcgrid-ttl", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
