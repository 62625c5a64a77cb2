"""The two threads behind ``htcgrid.Executor``: one gathers calls into sessions, one collects
the results of every open session by paging through them (``Transport.results``), and
settles each task's future.

A future stays pending until its task's result is in, so ``Future.cancel()`` works until
then, and reaches the grid once its task is there: that task alone is cancelled (a running one
is stopped by its agent), or the whole session once every future left in it is cancelled (a
lone call, or ``shutdown(cancel_futures=True)``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

from htcgrid import pickled
from htcgrid.client.session import Client
from htcgrid.errors import GridError
from htcgrid.models import json_loads, task_id

log = logging.getLogger("htcgrid.client")
PAGE = 5000
LONG_POLL_SECONDS = 0.5  # the wait of one results call while a single session is open
MAX_IDLE_SECONDS = 0.2  # the longest pause between rounds over several sessions


class GridFuture(futures.Future[Any]):
    """A future whose ``cancel()`` also cancels its task on the grid, when it can."""

    def __init__(self, batches: Batches, event: Any, unpack: bool) -> None:
        super().__init__()
        self.batches = batches
        self.event = event
        self.unpack = unpack  # one call: its value; else the task's list of values
        self.session_id: str | None = None
        self.index = 0  # its task's index in the session, once sent
        self.deps: list[GridFuture] = []  # the futures it takes as arguments

    def cancel(self) -> bool:
        if not self.cancel_here():
            return False
        self.batches.cancelled(self)
        return True

    def cancel_here(self) -> bool:
        """Cancel this future, not (yet) its task on the grid."""
        if not super().cancel():
            return False
        self.set_running_or_notify_cancel()  # wakes as_completed() and wait() at once
        return True


@dataclass
class OpenSession:
    session_id: str
    futures: list[GridFuture]
    cursor: int = 0
    left: int = field(init=False)

    def __post_init__(self) -> None:
        self.left = len(self.futures)


class Batches:
    def __init__(
        self, client: Client, options: dict[str, Any], batch_seconds: float, max_batch: int
    ) -> None:
        self.client = client
        self.options = {k: v for k, v in options.items() if v is not None}
        self.batch_seconds = batch_seconds
        self.max_batch = max_batch
        self.close_client = False
        self.cv = threading.Condition()
        self.pending: list[GridFuture] = []
        self.first_at = 0.0
        self.last_add_at = -batch_seconds
        self.open: dict[str, OpenSession] = {}
        self.closing = False
        self.sending = 0  # batches taken from pending, not yet open
        self.cancelling = 0  # cancel requests on their way: the client stays open for them
        self.in_flight: list[GridFuture] = []  # their futures
        self.threads = [
            threading.Thread(target=self._send_loop, name="htcgrid-executor-send", daemon=True),
            threading.Thread(target=self._collect_loop, name="htcgrid-executor", daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    # ---- called by the executor and the futures ----------------------------------------

    def add(self, event: Any, unpack: bool, deps: list[GridFuture] | None = None) -> GridFuture:
        future = GridFuture(self, event, unpack)
        future.deps = deps or []
        with self.cv:
            if self.closing:
                raise RuntimeError("cannot submit after shutdown")
            now = time.monotonic()
            if not self.pending:
                # a call after a quiet spell goes at once; the calls that follow it gather
                quiet = now - self.last_add_at > self.batch_seconds and not self.sending
                self.first_at = now - self.batch_seconds if quiet else now
            self.last_add_at = now
            self.pending.append(future)
            if len(self.pending) == 1 or len(self.pending) >= self.max_batch:
                self.cv.notify_all()
        return future

    def cancelled(self, *doomed: GridFuture) -> None:
        """Cancel the tasks of ``doomed`` (futures of one session) on the grid: the whole
        session when nothing else of it is wanted."""
        with self.cv:
            found = self.open.get(doomed[0].session_id or "")
            if found is None:
                return  # not sent yet (it never will be), or its results are all in
            whole = all(f.done() for f in found.futures)
            if whole:
                del self.open[found.session_id]
            self.cancelling += 1
        session = self.client.session(found.session_id, len(found.futures))
        try:
            session.cancel(None if whole else [f.index for f in doomed])
        except GridError as exc:
            log.warning("could not cancel tasks of session %s: %s", found.session_id, exc)
        finally:
            with self.cv:
                self.cancelling -= 1
                self.cv.notify_all()

    def shutdown(self, wait: bool, cancel_futures: bool) -> None:
        with self.cv:
            self.closing = True
            doomed = [*self.pending, *self.in_flight]
            doomed += [f for found in self.open.values() for f in found.futures]
            self.cv.notify_all()
        if cancel_futures:  # one cancel request per session, not one per future
            by_session: dict[str, list[GridFuture]] = {}
            for future in doomed:
                if future.cancel_here() and future.session_id is not None:
                    by_session.setdefault(future.session_id, []).append(future)
            for group in by_session.values():
                self.cancelled(*group)
        if wait:
            for thread in self.threads:
                thread.join()

    # ---- the sender ---------------------------------------------------------------------

    def _send_loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._send(batch)
            with self.cv:
                self.sending -= 1
                self.cv.notify_all()

    def _next_batch(self) -> list[GridFuture] | None:
        with self.cv:
            while not self.pending and not self.closing:
                self.cv.wait()
            if not self.pending:
                return None
            while len(self.pending) < self.max_batch and not self.closing:
                left = self.first_at + self.batch_seconds - time.monotonic()
                if left <= 0:
                    break
                self.cv.wait(left)
            batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
            self.first_at = time.monotonic()
            self.sending += 1
            self.in_flight += batch
            return batch

    def _send(self, batch: list[GridFuture]) -> None:
        try:
            self._submit([f for f in batch if not f.done()])
        finally:
            with self.cv:
                gone = set(map(id, batch))
                self.in_flight = [f for f in self.in_flight if id(f) not in gone]

    def _submit(self, live: list[GridFuture]) -> None:
        live, deps = graph_of(live)
        if not live:
            return
        try:
            events = [f.event for f in live]
            session = self.client.submit(events, **self.options, deps=deps)
        except BaseException as exc:  # every caller learns why, from result()
            for future in live:
                _settle(future, exc=exc)
            return
        for future in live:
            future.session_id = session.id
            future.event = None  # sent: let the payload go
        with self.cv:
            self.open[session.id] = OpenSession(session.id, live)
            self.cv.notify_all()
        if doomed := [f for f in live if f.cancelled()]:  # cancelled on their way: there too
            self.cancelled(*doomed)

    # ---- the collector ------------------------------------------------------------------

    def _collect_loop(self) -> None:
        idle = 0.01
        while (sessions := self._sessions_to_collect()) is not None:
            wait = LONG_POLL_SECONDS if len(sessions) == 1 else 0.0
            progressed = False
            for found in sessions:
                progressed |= self._collect(found, wait)
            if progressed or len(sessions) == 1:
                idle = 0.01
                continue
            with self.cv:
                self.cv.wait(idle)  # several sessions, none moved: a short, growing pause
            idle = min(idle * 2, MAX_IDLE_SECONDS)
        if self.close_client:
            self.client.close()

    def _sessions_to_collect(self) -> list[OpenSession] | None:
        """The open sessions, waiting for one; None once shut down and all collected."""
        with self.cv:
            while not self.open:
                if self.closing and not (self.pending or self.sending or self.cancelling):
                    return None
                self.cv.wait()
            return list(self.open.values())

    def _collect(self, found: OpenSession, wait: float) -> bool:
        transport = self.client._t
        try:
            page = transport.results(found.session_id, found.cursor, PAGE, wait)
        except Exception as exc:  # every future of the session learns why, from result()
            for future in found.futures:
                _settle(future, exc=exc)
            self._close(found)
            return True
        for item in page["results"]:
            future = found.futures[item["index"]]
            try:
                if item.get("output_url"):
                    item = {**item, "output": json_loads(transport.task_json(item["output_url"]))}
                _settle_from(future, item)
            except Exception as exc:  # e.g. an output this client cannot unpickle
                _settle(future, exc=exc)
            found.left -= 1
        found.cursor = page.get("cursor", page.get("next", found.cursor))
        if found.left <= 0 or page.get("complete"):
            self._close(found)
        return bool(page["results"])

    def _close(self, found: OpenSession) -> None:
        with self.cv:
            self.open.pop(found.session_id, None)
            self.cv.notify_all()


def graph_of(batch: list[GridFuture]) -> tuple[list[GridFuture], list[list[Any]] | None]:
    """The futures of ``batch`` that can be sent, each at its index, and their dependencies
    (None: no edges): the futures they take as arguments, by index in this batch or by task id
    when sent before. One whose argument can never be sent (it failed to submit, or was
    cancelled first) fails with that reason, and so, in turn, do its own dependents here."""
    sent: list[GridFuture] = []
    deps: list[list[Any]] = []
    position: dict[int, int] = {}
    for future in batch:
        named: list[Any] = []
        for dep in future.deps:
            if id(dep) in position:
                named.append(position[id(dep)])
            elif dep.session_id is not None:
                named.append(task_id(dep.session_id, dep.index))
            else:
                _settle(future, exc=_unsent(dep))
                break
        else:
            future.index = position[id(future)] = len(sent)
            sent.append(future)
            deps.append(named)
    return sent, deps if any(deps) else None


def _unsent(dep: GridFuture) -> BaseException:
    if dep.done() and not dep.cancelled() and dep.exception() is not None:
        return dep.exception()  # type: ignore[return-value]
    return futures.CancelledError("a future it takes as an argument was cancelled or not sent")


def _settle_from(future: GridFuture, item: dict[str, Any]) -> None:
    state = item["state"]
    if state == "finished":
        output = item["output"]
        if _is_pickled(future):
            output = pickled.read_results(output)
            output = output[0] if future.unpack else output
        _settle(future, value=output)
    elif state == "cancelled":  # by someone else, or by our own cancel of its session
        with contextlib.suppress(RuntimeError):  # already cancelled and notified here
            if not future.done() and futures.Future.cancel(future):
                future.set_running_or_notify_cancel()
    else:
        _settle(future, exc=pickled.rebuild_exception(item.get("error") or {}))


def _is_pickled(future: GridFuture) -> bool:
    return future.batches.options.get("function") == pickled.PYTHON_FUNCTION


def _settle(future: GridFuture, value: Any = None, exc: BaseException | None = None) -> None:
    """Set a result or exception unless the future was cancelled meanwhile."""
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)
    except futures.InvalidStateError:
        pass
