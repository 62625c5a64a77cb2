"""Memoization on an agent: the tasks of sessions submitted with ``cache`` are looked up before
they go to a worker, on a thread of their own, and their answers recorded once accepted.

    claim ─▶ takes? ─no──────────────────────────────▶ backlog (every other session's task)
               │yes                              ┌─miss─▶ backlog, its key remembered
               └─▶ thread: hash the input, lookup ┤
                                                  └─hit──▶ settled FINISHED, cached
    Completer ─accepted FINISHED with a key─▶ thread: memo.record (AFTER the store took it)

A session's spec is read once per agent (``get_session``) the first time one of its tasks is
claimed; for a session without ``cache`` nothing else happens. The function's version (the
deployed package, or the agent's own handler) is part of the key, so a new version runs anew.
An output kept in the data plane is copied to the new task's own key: purging the session
that worked it out never breaks the one that reused it. Store or data-plane errors make a
lookup a miss (the task runs) and a record a loss (a later task runs): never a wrong answer.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from htcgrid import memo
from htcgrid.agent.worker import WorkerConfig
from htcgrid.dataplane import DataPlane, keys
from htcgrid.errors import GridError
from htcgrid.models import Lease, Outcome, SessionSpec, TaskRecord, TaskState
from htcgrid.store import TaskStore

log = logging.getLogger("htcgrid.agent")
KNOWN_SESSIONS = 4096  # session specs an agent keeps (the newest)
MAX_PENDING = 100_000  # looked-up tasks whose outcome is awaited (the oldest are dropped)


def code_version(config: WorkerConfig) -> str:
    """What identifies the code that runs a task: the function's version, its handler and its
    package folder (named by the package's version and sha256), the same on every agent."""
    where = ",".join(p.rstrip("/").rsplit("/", 1)[-1] for p in config.paths)
    code = hashlib.sha256(f"{config.handler}|{config.runtime}|{where}".encode()).hexdigest()
    return f"{config.function_version}-{code[:16]}"


@dataclass(frozen=True)
class _Asked:
    lease: Lease
    spec: SessionSpec
    version: str


@dataclass(frozen=True)
class _Pending:
    spec: SessionSpec
    key: str
    attempt: int
    computed_at: float  # when its run began; a hit keeps the time of the run it copies


class MemoDesk:
    def __init__(
        self,
        store: TaskStore,
        data: DataPlane,
        clock: Callable[[], float],
        wake: Callable[[], None],
    ) -> None:
        self.store = store
        self.data = data
        self.clock = clock
        self.wake = wake
        self.asked = 0  # tasks handed to the thread and not answered yet
        self._specs: OrderedDict[str, SessionSpec | None] = OrderedDict()
        self._pending: dict[str, _Pending] = {}
        self._slots: dict[str, int] = {}  # per session: where its next index record may go
        self._work: queue.Queue[_Asked | list[tuple[_Pending, str]] | None] = queue.Queue()
        self._answers: deque[tuple[Lease, Outcome | None]] = deque()
        self._thread: threading.Thread | None = None

    # ---- on the agent's loop -----------------------------------------------------------

    def takes(self, lease: Lease, config_for: Callable[[str], WorkerConfig]) -> bool:
        """Whether ``lease`` belongs to a memoized session: then the desk looks it up and
        hands it back through ``answers``; otherwise it is the caller's, untouched."""
        spec = self._spec(lease.session_id)
        if spec is None or spec.cache_seconds is None:
            return False
        try:
            version = code_version(config_for(lease.function))
        except GridError:
            return False  # dispatch reports the function's trouble as it does for any task
        self._start()
        self.asked += 1
        self._work.put(_Asked(lease, spec, version))
        return True

    def answers(self) -> list[tuple[Lease, Outcome | None]]:
        """Looked-up tasks: with the outcome that answers them, or None to run them."""
        found: list[tuple[Lease, Outcome | None]] = []
        while self._answers:
            found.append(self._answers.popleft())
        self.asked -= len(found)
        return found

    def close(self, timeout_seconds: float | None = None) -> None:
        if self._thread is not None:
            self._work.put(None)
            self._thread.join(timeout_seconds)

    def _spec(self, session_id: str) -> SessionSpec | None:
        if session_id in self._specs:
            return self._specs[session_id]
        try:
            info = self.store.get_session(session_id)
        except GridError:
            return None  # not remembered: asked again with its next task
        self._specs[session_id] = None if info is None else info.spec
        if len(self._specs) > KNOWN_SESSIONS:
            self._specs.popitem(last=False)
        return self._specs[session_id]

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="htcgrid-memo", daemon=True)
            self._thread.start()

    # ---- on the Completer's thread -----------------------------------------------------

    def recorded(self, batch: Sequence[Outcome], applied: Sequence[bool]) -> None:
        """The store accepted (or refused) ``batch``: accepted answers of memoized sessions
        are recorded, on the desk's thread."""
        if not self._pending:
            return
        done: list[tuple[_Pending, str]] = []
        for outcome, ok in zip(batch, applied, strict=True):
            pending = self._pending.get(outcome.task_id)
            if pending is None or pending.attempt != outcome.attempt:
                continue
            self._pending.pop(outcome.task_id, None)
            if ok and outcome.state is TaskState.FINISHED:
                done.append((pending, outcome.task_id))
        if done:
            self._work.put(done)

    # ---- on the desk's thread ----------------------------------------------------------

    def _run(self) -> None:
        while (work := self._work.get()) is not None:
            try:
                if isinstance(work, _Asked):
                    self._answer(work)
                else:
                    self._record(work)
            except Exception:  # never lose the thread: a miss runs the task
                log.exception("memoization")
                if isinstance(work, _Asked):
                    self._answers.append((work.lease, None))
                    self.wake()

    def _answer(self, asked: _Asked) -> None:
        lease, spec = asked.lease, asked.spec
        outcome: Outcome | None = None
        computed_at = now = self.clock()  # a run's answer is as old as the run
        try:
            payload = lease.payload
            if payload is None:
                payload = self.data.get(lease.payload_ref or "")
            digest = memo.input_digest(payload)
            key = memo.memo_key(spec.owner, lease.function, asked.version, digest)
            found = memo.lookup(self.store, key, spec.owner, spec.cache_seconds or 0.0, now)
            if found is not None:
                outcome = self._reuse(lease, found.task)
                computed_at = found.computed_at
            self._pending[lease.task_id] = _Pending(spec, key, lease.attempt, computed_at)
            if len(self._pending) > MAX_PENDING:  # tasks cancelled or lost never report back
                self._pending.pop(next(iter(self._pending)), None)
        except GridError as exc:
            log.warning("task %s: cache lookup failed, running it: %s", lease.task_id, exc)
        self._answers.append((lease, outcome))
        self.wake()

    def _reuse(self, lease: Lease, source: TaskRecord) -> Outcome:
        """``lease`` finished with ``source``'s output: inline as it is, or a copy of its
        data-plane object under ``lease``'s own output key."""
        output, ref = source.output, None
        if output is None and source.output_ref is not None:
            ref = keys.task_output(lease.session_id, lease.index, lease.attempt)
            self.data.put(ref, self.data.get(source.output_ref))
        return Outcome(
            lease.task_id,
            lease.attempt,
            TaskState.FINISHED,
            output=output,
            output_ref=ref,
            cached=True,
        )

    def _record(self, done: list[tuple[_Pending, str]]) -> None:
        by_session: dict[str, list[memo.Entry]] = {}
        specs: dict[str, SessionSpec] = {}
        for pending, tid in done:
            entry = memo.Entry(pending.key, tid, pending.computed_at)
            by_session.setdefault(pending.spec.id, []).append(entry)
            specs[pending.spec.id] = pending.spec
        for session_id, entries in by_session.items():
            try:
                slot = self._slots.get(session_id, 0)
                self._slots[session_id] = memo.record(self.store, specs[session_id], entries, slot)
            except GridError as exc:
                log.warning("session %s: answers not cached: %s", session_id, exc)
        while len(self._slots) > KNOWN_SESSIONS:
            self._slots.pop(next(iter(self._slots)))
