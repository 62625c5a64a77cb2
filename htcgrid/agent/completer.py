"""Recording outcomes on a thread of their own.

A completion is a round trip to the task store: microseconds for SQLite in process, a few
milliseconds for a database server on a busy machine. Handing batches to this thread lets the
agent's loop keep feeding its workers meanwhile; the store call releases the GIL while it waits.
A result too big for the task store that arrived inline (its worker could not reach the data
plane itself) is written to the data plane here too, never on the agent's loop.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace

from htcgrid.dataplane import DataPlane, keys
from htcgrid.models import Outcome, TaskState, split_task_id
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
        inline_limit_bytes: int = 64 * 1024,
    ) -> None:
        self.agent_id = agent_id
        self.store = store
        self.data = data
        self.clock = clock
        self.on_recorded = on_recorded
        self.inline_limit_bytes = inline_limit_bytes
        self.counts: Counter[str] = Counter()
        # told of each batch the store answered, with what it applied (memoization)
        self.on_applied: Callable[[Sequence[Outcome], list[bool]], None] | None = None
        self._retry = Retrier(log)
        self._lock = threading.Lock()
        self._unrecorded = 0
        self._batches: queue.Queue[Sequence[Outcome] | str | None] = queue.Queue()
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

    def discard(self, output_ref: str) -> None:
        """Delete a result blob nobody will read (its task was cancelled or lost)."""
        self._batches.put(output_ref)

    def close(self, timeout_seconds: float | None = None) -> None:
        """Record everything submitted so far (waiting at most ``timeout_seconds``, after
        which the TTL checker takes care of what is left), then stop the thread."""
        self._batches.put(None)
        self._thread.join(timeout_seconds)
        if self._thread.is_alive():
            log.warning("%d outcome(s) not recorded: the store did not answer", self.unrecorded)

    def _run(self) -> None:
        while (batch := self._batches.get()) is not None:
            if isinstance(batch, str):
                self._delete(batch)
                continue
            try:
                self._record(batch)
            except Exception:  # never lose the thread; the TTL checker retries what is lost
                log.exception("could not record %d outcome(s)", len(batch))
            finally:
                with self._lock:
                    self._unrecorded -= len(batch)
                self.on_recorded()

    def _delete(self, key: str) -> None:
        try:
            self.data.delete(key)
        except Exception:  # an orphan blob is garbage, not a failure: deleting the session frees it
            log.warning("could not delete %s", key)

    def _offload(self, outcome: Outcome) -> Outcome:
        if outcome.output is None or len(outcome.output) <= self.inline_limit_bytes:
            return outcome
        session_id, index = split_task_id(outcome.task_id)
        key = keys.task_output(session_id, index, outcome.attempt)
        self._retry(lambda: self.data.put(key, outcome.output or b""))
        return replace(outcome, output=None, output_ref=key)

    def _record(self, batch: Sequence[Outcome]) -> None:
        batch = [self._offload(o) for o in batch]
        applied = self._retry(lambda: self.store.complete(self.agent_id, batch, self.clock()))
        if self.on_applied is not None:
            self.on_applied(batch, applied)
        refused = [o.task_id for o, ok in zip(batch, applied, strict=True) if not ok]
        if refused:
            log.warning(
                "%d result(s) refused, e.g. %s: the task was cancelled, or its lease was lost "
                "and the attempt given to another agent (its result is the one recorded)",
                len(refused),
                refused[0],
            )
        for outcome, ok in zip(batch, applied, strict=True):
            if not ok:
                self.counts["refused"] += 1
                if outcome.output_ref:
                    self._delete(outcome.output_ref)  # a zombie's upload: nobody will read it
            elif outcome.state is TaskState.PENDING:
                self.counts["retried"] += 1
            else:
                self.counts[outcome.state.value] += 1
