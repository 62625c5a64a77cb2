"""Memoization on an agent: the tasks of sessions submitted with ``cache`` are looked up before
they go to a worker, on threads of their own (``LOOKUPS`` at a time, a batch's answers handed
back together so the Completer records them in one call), and the answers of those that ran
are recorded once the store accepted their results.

    claim ─▶ takes? ─no──────────────────────────────▶ backlog (every other session's task)
               │yes                              ┌─miss─▶ backlog, its key remembered
               └─▶ thread: hash the input, lookup ┤
                                                  └─hit──▶ settled FINISHED, cached
    Completer ─accepted FINISHED with a key─▶ thread: memo.record (AFTER the store took it)

A session's spec is read once per agent (``get_session``) the first time one of its tasks is
claimed; for a session without ``cache`` nothing else happens. While memoized tasks come, the
agent may claim up to ``BATCH`` tasks beyond its slots (``room``): a lookup needs no slot.
The function's version (the deployed package, or the agent's own handler) is part of the key,
so a new version runs anew.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from htcgrid import memo
from htcgrid.agent.worker import WorkerConfig
from htcgrid.dataplane import DataPlane, keys
from htcgrid.errors import GridError
from htcgrid.models import Lease, Outcome, SessionSpec, TaskRecord, TaskState
from htcgrid.store import TaskStore

log = logging.getLogger("htcgrid.agent")
KNOWN_SESSIONS = 4096  # session specs an agent keeps (the newest)
LOOKUPS = 8  # lookups at once: each is a few round trips to the store
BATCH = 256  # lookups and records taken from the queue at a time
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
    """A task that missed: its answer is recorded once the store accepts its result."""

    spec: SessionSpec
    key: str
    attempt: int
    submitted_at: float
    computed_at: float  # when its run began: the lookup's time


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
        self._pending: dict[str, _Pending] = {}  # under _lock: lookups and the Completer
        self._lock = threading.Lock()
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

    @property
    def room(self) -> int:
        """How many tasks the agent may claim beyond what its slots take while memoized
        sessions' tasks come (the last claim had some): their lookups wait for no slot,
        so answers from the cache do not go at the pace of the workers."""
        return max(0, BATCH - self.asked) if self.asked else 0

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
        with self._lock:
            for outcome, ok in zip(batch, applied, strict=True):
                pending = self._pending.get(outcome.task_id)
                if pending is None or pending.attempt != outcome.attempt:
                    continue
                del self._pending[outcome.task_id]
                if ok and outcome.state is TaskState.FINISHED:
                    done.append((pending, outcome.task_id))
        if done:
            self._work.put(done)

    # ---- on the desk's thread ----------------------------------------------------------

    def _run(self) -> None:
        """Take what waits, up to ``BATCH``: records first (answers that came before these
        lookups), then the lookups side by side on ``LOOKUPS`` threads, since each is a few
        round trips to the store spent waiting."""
        with ThreadPoolExecutor(LOOKUPS, thread_name_prefix="htcgrid-memo") as pool:
            stopping = False
            while not stopping:
                batch = [self._work.get()]
                while len(batch) < BATCH:
                    try:
                        batch.append(self._work.get_nowait())
                    except queue.Empty:
                        break
                stopping = None in batch  # close(): the rest is done first
                for done in batch:
                    if isinstance(done, list):
                        self._record(done, pool)
                asked = [a for a in batch if isinstance(a, _Asked)]
                if asked:  # together: their outcomes are recorded in one batch
                    outcomes = pool.map(self._answer_or_run, asked)
                    self._answers.extend(zip((a.lease for a in asked), outcomes, strict=True))
                    self.wake()

    def _record_part(self, part: tuple[SessionSpec, list[memo.Entry]]) -> None:
        spec, entries = part
        try:
            slot = self._slots.get(spec.id, 0)
            self._slots[spec.id] = memo.record(self.store, spec, entries, slot)
        except Exception as exc:  # a lost record costs a later run, never a wrong answer
            log.warning("session %s: answers not cached: %s", spec.id, exc)

    def _answer_or_run(self, asked: _Asked) -> Outcome | None:
        try:
            return self._answer(asked)
        except Exception:  # never lose the thread: a miss runs the task
            log.exception("memoization")
            return None

    def _answer(self, asked: _Asked) -> Outcome | None:
        lease, spec = asked.lease, asked.spec
        outcome: Outcome | None = None
        now = self.clock()
        try:
            payload = lease.payload
            if payload is None:
                payload = self.data.get(lease.payload_ref or "")
            digest = memo.input_digest(payload)
            key = memo.memo_key(spec.owner, lease.function, asked.version, digest)
            found = memo.lookup(self.store, key, spec.cache_seconds or 0.0, now)
            if found is not None:
                outcome = self._reuse(lease, found.task)
            elif lease.submitted_at is not None:  # a run: its answer is as old as the run
                pending = _Pending(spec, key, lease.attempt, lease.submitted_at, now)
                with self._lock:
                    self._pending[lease.task_id] = pending
                    if len(self._pending) > MAX_PENDING:  # cancelled or lost tasks never report
                        self._pending.pop(next(iter(self._pending)))
        except GridError as exc:
            log.warning("task %s: cache lookup failed, running it: %s", lease.task_id, exc)
        return outcome

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

    def _record(self, done: list[tuple[_Pending, str]], pool: ThreadPoolExecutor) -> None:
        """Record the answers of ``done``, per session in up to ``LOOKUPS`` parts at once
        (one index record each): a record is a write per answer."""
        parts: list[tuple[SessionSpec, list[memo.Entry]]] = []
        by_session: dict[str, list[memo.Entry]] = {}
        for pending, tid in done:
            entry = memo.Entry(pending.key, tid, pending.submitted_at, pending.computed_at)
            if pending.spec.id not in by_session:
                by_session[pending.spec.id] = []
                parts.append((pending.spec, by_session[pending.spec.id]))
            by_session[pending.spec.id].append(entry)
        split = [
            (spec, entries[i::LOOKUPS])
            for spec, entries in parts
            for i in range(min(LOOKUPS, len(entries)))
        ]
        for _ in pool.map(self._record_part, split):
            pass
        while len(self._slots) > KNOWN_SESSIONS:
            self._slots.pop(next(iter(self._slots)))
