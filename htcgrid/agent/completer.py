"""Recording outcomes on a thread of their own.

A completion is a round trip to the task store: microseconds for SQLite in process, a few
milliseconds for a database server on a busy machine. Handing batches to this thread lets the
agent's loop keep feeding its workers meanwhile; the store call releases the GIL while it waits.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Sequence

from htcgrid.dataplane import DataPlane
from htcgrid.models import Outcome, TaskState
from htcgrid.retry import Retrier
from htcgrid.store import TaskStore

log = logging.getLogger("htcgrid.agent")


class Completer:
    def __init__(
        self,
        agent_id: str,
        store: TaskStore,
        data: DataPlane,
        clock: Callable[[], float],
        on_recorded: Callable[[], None] = lambda: None,
    ) -> None:
        self.agent_id = agent_id
        self.store = store
        self.data = data
        self.clock = clock
        self.on_recorded = on_recorded
        self.counts: Counter[str] = Counter()
        self._retry = Retrier(log)
        self._lock = threading.Lock()
        self._unrecorded = 0
        self._batches: queue.Queue[Sequence[Outcome] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="htcgrid-completer", daemon=True)
        self._thread.start()

    @property
    def unrecorded(self) -> int:
        """Outcomes handed over but not yet recorded. The agent counts them as held, so a slow
        store slows its claims instead of letting finished-but-unrecorded work pile up."""
        return self._unrecorded

    def submit(self, batch: Sequence[Outcome]) -> None:
        """Record ``batch`` soon; batches are recorded in the order they were submitted."""
        with self._lock:
            self._unrecorded += len(batch)
        self._batches.put(batch)

    def close(self) -> None:
        """Record everything submitted so far, then stop the thread."""
        self._batches.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (batch := self._batches.get()) is not None:
            try:
                self._record(batch)
            except Exception:  # never lose the thread; the TTL checker retries what is lost
                log.exception("could not record %d outcome(s)", len(batch))
            finally:
                with self._lock:
                    self._unrecorded -= len(batch)
                self.on_recorded()

    def _record(self, batch: Sequence[Outcome]) -> None:
        applied = self._retry(lambda: self.store.complete(self.agent_id, batch, self.clock()))
        for outcome, ok in zip(batch, applied, strict=True):
            if not ok:
                self.counts["refused"] += 1
                if outcome.output_ref:
                    self.data.delete(outcome.output_ref)  # a zombie's upload: nobody will read it
            elif outcome.state is TaskState.PENDING:
                self.counts["retried"] += 1
            else:
                self.counts[outcome.state.value] += 1
