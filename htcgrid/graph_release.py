"""The releaser: makes a task graph's held tasks claimable once their dependencies finished,
and fails, without running them, the dependents of a task that failed or was cancelled.

Each session with a graph has a marker in the store's meta records (``graphs/<session_id>``,
written at submit). A releaser follows every marked session's results by completion number
(and those of the other sessions its tasks depend on), counts each task's dependencies still
to finish, and calls the store's ``release`` and ``fail_held``; when the session is complete
it removes the marker. Its state is rebuilt from the graph blob and the results after a
restart, and ``release`` and ``fail_held`` are idempotent, so any number of servers may run
one. It runs wherever the TTL checker runs (``htcgrid server``, ``htcgrid up``) and in a
process whose in-process service submitted a graph.

Push, then poll: with one session to follow it waits on the store's ``wait_for_session``, so
a chain of tasks moves as each link ends, not at a polling pace.
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from collections.abc import Callable, Iterator

from htcgrid.dataplane import DataPlane, keys
from htcgrid.errors import GridError, NotFound
from htcgrid.graph import Graph
from htcgrid.graph_submit import MARKER_PREFIX, load_graph, marker
from htcgrid.models import ErrorInfo, TaskRecord, TaskState, split_task_id
from htcgrid.store import TaskStore

log = logging.getLogger("htcgrid.graph")
PAGE = 5000
CHUNK = 1000  # tasks per release or fail_held call: bounded transactions
SCAN_SECONDS = 2.0  # how often the marked sessions are listed (a submit here wakes it at once)
WAIT_SECONDS = 0.5  # one wait on a session's results
MAX_IDLE_SECONDS = 0.2  # the longest pause between rounds over several sessions
ORPHAN_SECONDS = 3600.0  # a marker whose session never appeared: a submit that failed
FINISHED, ENDED = 1, 2  # a task's mark once its outcome was counted


def dependency_error(tid: str, state: TaskState) -> ErrorInfo:
    """Why a dependent fails without running: its dependency ``tid`` ended in ``state``."""
    word = "cancelled" if state is TaskState.CANCELLED else "failed"
    return ErrorInfo("DependencyFailed", f"dependency {tid} {word}")


class Followed:
    """One graph session as the releaser follows it."""

    def __init__(self, store: TaskStore, session_id: str, graph: Graph) -> None:
        self.store = store
        self.session_id = session_id
        self.graph = graph
        n = graph.task_count
        self.waiting = array("i", bytes(4 * n))  # dependencies each task still waits for
        for i in range(n):
            self.waiting[i] = graph.offsets[i + 1] - graph.offsets[i]
        self.rev_offsets, self.rev = graph.dependents()
        self.marks = bytearray(n)  # FINISHED / ENDED once counted
        self.doomed = bytearray(n)  # failed here, or about to be
        self.cursor = 0
        self.outside: dict[str, dict[int, list[int]]] = {}  # session → index → dependents
        self.outside_cursor: dict[str, int] = {}
        for i in range(n):
            for t in graph.deps(i):
                if t < 0:
                    sid, index = split_task_id(graph.externals[-t - 1])
                    self.outside.setdefault(sid, {}).setdefault(index, []).append(i)
        self.outside_cursor = dict.fromkeys(self.outside, 0)
        self.outside_seen: set[tuple[str, int]] = set()

    def step(self, now: float) -> bool:
        """Take in what ended since the last step, a page at a time (a restart reads a big
        session's results in bounded memory); returns whether anything did."""
        moved = False
        for page in self._pages(self.session_id):
            moved = True
            release: list[int] = []
            fail: list[tuple[int, ErrorInfo]] = []
            for record in page:
                self._own(record, release, fail)
            self._apply(release, fail, now)
        for sid, named in list(self.outside.items()):
            for page in self._pages(sid):
                moved = True
                release, fail = [], []
                for record in page:
                    self._outside(sid, named, record, release, fail)
                self._apply(release, fail, now)
            if all((sid, index) in self.outside_seen for index in named):
                del self.outside[sid]  # every task named there ended: nothing more to read
        return moved

    def _pages(self, sid: str) -> Iterator[list[TaskRecord]]:
        """The session's results past its cursor, a page at a time, moving the cursor."""
        own = sid == self.session_id
        while True:
            cursor = self.cursor if own else self.outside_cursor[sid]
            page = self.store.results(sid, cursor, PAGE)
            if not page:
                return
            yield page
            cursor = page[-1].cursor or cursor + len(page)
            if own:
                self.cursor = cursor
            else:
                self.outside_cursor[sid] = cursor
            if len(page) < PAGE:
                return

    def _outside(
        self,
        sid: str,
        named: dict[int, list[int]],
        record: TaskRecord,
        release: list[int],
        fail: list[tuple[int, ErrorInfo]],
    ) -> None:
        if (sid, record.index) in self.outside_seen or record.index not in named:
            return
        self.outside_seen.add((sid, record.index))
        for v in named[record.index]:
            self._one_dep(v, record.task_id, record.state, release, fail)

    def _own(
        self, record: TaskRecord, release: list[int], fail: list[tuple[int, ErrorInfo]]
    ) -> None:
        i = record.index
        if self.marks[i]:
            return  # counted already (a retried task ends twice)
        self.marks[i] = FINISHED if record.state is TaskState.FINISHED else ENDED
        for e in range(self.rev_offsets[i], self.rev_offsets[i + 1]):
            self._one_dep(self.rev[e], record.task_id, record.state, release, fail)

    def _one_dep(
        self,
        v: int,
        dep_id: str,
        state: TaskState,
        release: list[int],
        fail: list[tuple[int, ErrorInfo]],
    ) -> None:
        if state is TaskState.FINISHED:
            self.waiting[v] -= 1
            if self.waiting[v] == 0 and not self.doomed[v]:
                release.append(v)
            return
        self._doom(v, dependency_error(dep_id, state), fail)

    def _doom(self, first: int, error: ErrorInfo, fail: list[tuple[int, ErrorInfo]]) -> None:
        """Fail ``first`` and, transitively, every task that depends on it (iteratively)."""
        if self.doomed[first]:
            return
        self.doomed[first] = 1
        stack = [(first, error)]
        while stack:
            v, why = stack.pop()
            fail.append((v, why))
            failed = dependency_error(self.graph.target_id(self.session_id, v), TaskState.FAILED)
            for e in range(self.rev_offsets[v], self.rev_offsets[v + 1]):
                w = self.rev[e]
                if not self.doomed[w]:
                    self.doomed[w] = 1
                    stack.append((w, failed))

    def _apply(self, release: list[int], fail: list[tuple[int, ErrorInfo]], now: float) -> None:
        fail.sort(key=lambda f: f[0])
        for start in range(0, len(fail), CHUNK):
            self.store.fail_held(self.session_id, fail[start : start + CHUNK], now)
        release.sort()
        for start in range(0, len(release), CHUNK):
            self.store.release(self.session_id, release[start : start + CHUNK], now)

    @property
    def waits_outside(self) -> bool:
        return bool(self.outside)


def orphaned(marked: str, now: float) -> bool:
    """Whether a marker written at ``marked`` (epoch seconds) outlived any submit."""
    try:
        return now - float(marked) > ORPHAN_SECONDS
    except ValueError:
        return True


class GraphReleaser:
    """Follows every open graph session of a grid (see the module's docstring)."""

    def __init__(
        self,
        store: TaskStore,
        data: DataPlane,
        clock: Callable[[], float] = time.time,
        scan_seconds: float = SCAN_SECONDS,
    ) -> None:
        self.store = store
        self.data = data
        self.clock = clock
        self.scan_seconds = scan_seconds
        self.followed: dict[str, Followed] = {}
        self._scanned_at = -scan_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ---- one round ------------------------------------------------------------------------

    def scan(self) -> None:
        """Start following the marked sessions not followed yet."""
        self._scanned_at = time.monotonic()
        for key, value in self.store.list_meta(MARKER_PREFIX).items():
            session_id = key[len(MARKER_PREFIX) :]
            if session_id not in self.followed:
                self._follow(session_id, value)

    def _follow(self, session_id: str, marked: str) -> None:
        """Follow a marked session; a session not created yet (its submit is inserting its
        tasks) is left for a later scan, and a marker whose session is gone is removed: its
        blob went with it, or its submit failed long ago (``ORPHAN_SECONDS``)."""
        if self.store.get_session(session_id) is None:
            if orphaned(marked, self.clock()):
                self.data.delete(keys.session_graph(session_id))
            if orphaned(marked, self.clock()) or load_graph(self.data, session_id) is None:
                self.store.delete_meta(marker(session_id))
            return
        graph = load_graph(self.data, session_id)
        if graph is None:  # deleted since
            self.store.delete_meta(marker(session_id))
            return
        self.followed[session_id] = Followed(self.store, session_id, graph)

    def step(self) -> bool:
        """One round over every followed session; returns whether any moved."""
        if time.monotonic() - self._scanned_at >= self.scan_seconds or self._wake.is_set():
            self._wake.clear()
            self.scan()
        moved = False
        for session_id, followed in list(self.followed.items()):
            try:
                moved |= followed.step(self.clock())
            except NotFound:  # deleted while followed
                moved = True
            except BaseException:
                # what was counted may not have been released: start this one over (from
                # the blob and the results, as after a restart) on the next scan
                del self.followed[session_id]
                self._scanned_at = -self.scan_seconds
                raise
            if self._ended(session_id, followed):
                del self.followed[session_id]
                self.store.delete_meta(marker(session_id))
        return moved

    def _ended(self, session_id: str, followed: Followed) -> bool:
        info = self.store.get_session(session_id)
        return info is None or (info.complete and followed.cursor >= info.cursor)

    def run_until_idle(self, max_rounds: int = 1000) -> None:
        """Rounds until nothing moves (tests drive the releaser this way)."""
        for _ in range(max_rounds):
            if not self.step():
                return

    # ---- the thread -----------------------------------------------------------------------

    def notify(self, session_id: str) -> None:
        """A graph session was submitted here: follow it now (starting the thread if need be)."""
        del session_id  # the scan finds it by its marker
        self._wake.set()
        self.start()

    def waiting_on(self, session_id: str) -> None:
        """Someone in this process waits for ``session_id``: if it is an open graph and no
        releaser runs here yet, start one (an in-process client waiting for a graph another
        process submitted)."""
        running = self._thread is not None and self._thread.is_alive()
        if not running and self.store.get_meta(marker(session_id)) is not None:
            self.notify(session_id)

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self.run, name="htcgrid-graph-releaser", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def run(self) -> None:
        idle = 0.01
        while not self._stop.is_set():
            try:
                moved = self.step()
            except GridError as exc:
                log.warning("graph releaser: %s", exc)
                moved = False
            except Exception:
                log.exception("graph releaser failed a round")
                moved = False
            if moved:
                idle = 0.01
                continue
            self._pause(idle)
            idle = min(idle * 2, MAX_IDLE_SECONDS)

    def _pause(self, idle: float) -> None:
        """Until something may have moved: on the one session followed, a wait on its
        results (woken by the store); otherwise a short, growing pause."""
        followed = list(self.followed.values())
        if len(followed) == 1 and not followed[0].waits_outside and not self._wake.is_set():
            one = followed[0]
            try:
                self.store.wait_for_session(one.session_id, one.cursor, WAIT_SECONDS)
            except GridError:
                self._wake.wait(idle)
            return
        self._wake.wait(idle if followed else self.scan_seconds)
