"""Control-plane logic shared by the HTTP API and the in-process client.

Everything a client can ask of a grid is here, in plain Python: validate and submit a session,
report its progress, page through its results, cancel, list and delete sessions. The HTTP layer
only translates; the direct client calls this class.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from htcgrid import memo
from htcgrid.auth.code_policy import PickledCode
from htcgrid.dataplane import DataPlane, keys
from htcgrid.errors import Conflict, NotFound, PayloadTooLarge, ValidationError
from htcgrid.functions import FunctionRegistry
from htcgrid.graph import Graph, from_lists
from htcgrid.graph_release import GraphReleaser
from htcgrid.graph_submit import check_graph, store_graph, with_graph
from htcgrid.models import (
    MAX_ATTEMPTS,
    MAX_CURSOR,
    MAX_PRIORITY,
    MIN_PRIORITY,
    SESSION_ID_PATTERN,
    CancelCounts,
    NewTask,
    SessionInfo,
    SessionSpec,
    TaskRecord,
    TaskState,
    split_task_id,
    task_json,
)
from htcgrid.pickled import PYTHON_FUNCTION
from htcgrid.presence import PresenceCheck
from htcgrid.session_create import create_unread, offload_large
from htcgrid.settings import Settings
from htcgrid.store import TaskStore
from htcgrid.submission import NO_TASKS as NO_TASKS  # importable from here, as before
from htcgrid.submission import SubmitRequest as SubmitRequest
from htcgrid.submission import (
    cache_seconds,
    check,
    check_names,
    int_in,
    poison_after,
    retention_seconds,
    task_priorities,
    timeout_seconds,
)
from htcgrid.submission import content_hash as content_hash  # importable from here, as before
from htcgrid.submission import payload_digest as payload_digest
from htcgrid.task_names import task_indexes
from htcgrid.uploads import SessionUploads, refuse_others_common
from htcgrid.wire import cancel_dict as cancel_dict  # the answers' shapes, importable from here too
from htcgrid.wire import result_dict as result_dict
from htcgrid.wire import results_json as results_json
from htcgrid.wire import status_dict
from htcgrid.wire import task_dict as task_dict

MAX_WAIT_SECONDS = 60.0
MAX_PAGE = 10_000
LINGER_SECONDS = 0.05  # how long a waiting read with new results waits for a fuller page
PURGE_BATCH = 100  # sessions per store call when purging: bounded transactions
PAGE_BYTES = 8 * 1024 * 1024  # outputs and logs in one results page, give or take one task


@dataclass(frozen=True)
class SubmitResult:
    session_id: str
    task_count: int
    created: bool
    warning: str | None = None  # e.g. that no agent has been seen on this grid for a while

    def as_dict(self) -> dict[str, Any]:
        """The submit answer, on every path."""
        answer: dict[str, Any] = {
            "session_id": self.session_id,
            "task_count": self.task_count,
            "created": self.created,
        }
        if self.warning:
            answer["warning"] = self.warning
        return answer


@dataclass(frozen=True)
class SessionStatus:
    info: SessionInfo
    counts: dict[TaskState, int]

    def as_dict(self) -> dict[str, Any]:
        return status_dict(self)


@dataclass(frozen=True)
class ResultsPage:
    results: list[TaskRecord]  # outputs resolved from the data plane
    cursor: int
    complete: bool


class GridService:
    def __init__(
        self,
        store: TaskStore,
        data: DataPlane,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.time,
        agent_grace_seconds: float = 0.0,
    ) -> None:
        """``agent_grace_seconds``: how long after start a submit may go without an agent
        seen on the grid before it warns (a server starting beside its agents waits)."""
        self.store = store
        self.data = data
        self.settings = settings or Settings()
        self.clock = clock
        self.functions = FunctionRegistry(data)
        self.presence = PresenceCheck(store, grace_seconds=agent_grace_seconds)
        self.pickled = PickledCode(store, data, clock)
        self.uploads = SessionUploads(self)
        self.releaser = GraphReleaser(store, data, clock)

    # ---- submit ------------------------------------------------------------------------

    def submit(self, request: SubmitRequest, owner: str = "") -> SubmitResult:
        spec, tasks, graph = self._prepare(request, owner)
        limit = self.settings.inline_limit_bytes
        if graph is None and all(len(t.payload or b"") <= limit for t in tasks):
            created = create_unread(self.store, spec, tasks, owner, self.clock())
            return SubmitResult(spec.id, spec.task_count, created, self.presence.warning())
        existing = self.store.get_session(spec.id)
        if existing is None:
            tasks = offload_large(self.data, limit, spec.id, tasks)
        elif existing.spec.owner != owner:
            raise Conflict(f"session id {spec.id} is already in use")
        return self.create(spec, tasks, graph, existing is None)

    def create(
        self, spec: SessionSpec, tasks: Sequence[NewTask], graph: Graph | None, new: bool
    ) -> SubmitResult:
        """Create a checked session (its graph stored first, when it is ``new``)."""
        if graph is not None and new:
            store_graph(self.store, self.data, spec.id, graph, self.clock())
        created = self.store.create_session(spec, tasks, self.clock())
        if graph is not None and created:
            self.releaser.notify(spec.id)
        return SubmitResult(spec.id, spec.task_count, created, self.presence.warning())

    def _prepare(
        self, request: SubmitRequest, owner: str
    ) -> tuple[SessionSpec, list[NewTask], Graph | None]:
        """Validate a submission: its session spec, its tasks and its graph (None: no deps)."""
        self._check_tasks(request.tasks)
        spec = self.spec(request, owner, len(request.tasks))
        priorities = task_priorities(request.task_priorities, len(request.tasks), spec.priority)
        payloads = [self.encode(i, t) for i, t in enumerate(request.tasks)]
        graph = check_graph(self.store, from_lists(spec.id, request.deps, len(payloads)), owner)
        digests = zip(priorities, map(payload_digest, payloads), strict=True)
        spec = replace(spec, content_hash=with_graph(content_hash(spec, digests), graph))
        held = [bool(graph and graph.has_deps(i)) for i in range(len(payloads))]
        tasks = [NewTask(i, priorities[i], p, held=held[i]) for i, p in enumerate(payloads)]
        return spec, tasks, graph

    def spec(self, request: SubmitRequest, owner: str, task_count: int) -> SessionSpec:
        """The session ``request`` describes, its options checked; ``content_hash`` is left
        empty for the caller, who has the tasks (``request.tasks`` is not read)."""
        session_id = request.session_id or str(uuid.uuid4())
        check_names(session_id, request.function)
        refuse_others_common(self.data, request.session_id, owner)
        self.functions.require(request.function)
        if request.function == PYTHON_FUNCTION:
            self.pickled.check(owner)
        priority = int_in("priority", request.priority, MIN_PRIORITY, MAX_PRIORITY)
        attempts = request.max_attempts
        attempts = self.settings.max_attempts if attempts is None else attempts
        max_attempts = int_in("max_attempts", attempts, 1, MAX_ATTEMPTS)
        check(isinstance(request.retry_on_error, bool), "retry_on_error must be true or false")
        timeout = request.timeout_seconds
        timeout = self.settings.task_timeout_seconds if timeout is None else timeout
        return SessionSpec(
            id=session_id,
            task_count=task_count,
            function=request.function,
            priority=priority,
            max_attempts=max_attempts,
            timeout_seconds=timeout_seconds(timeout),
            retry_on_error=request.retry_on_error,
            owner=owner,
            content_hash="",
            created_at=self.clock(),
            retention_seconds=retention_seconds(request.retention_seconds),
            poison_after=poison_after(request.poison_after),
            cache_seconds=cache_seconds(request.cache),
        )

    def _check_tasks(self, tasks: Sequence[Any]) -> None:
        check(isinstance(tasks, list | tuple), "tasks must be a list")
        self.check_task_count(len(tasks))

    def check_task_count(self, count: int) -> None:
        """The one rule on a session's size, however it is sent: 400 for none, 413 (send
        fewer) for more than ``max_tasks_per_submit``."""
        check(count > 0, f"tasks: {NO_TASKS}")
        limit = self.settings.max_tasks_per_submit
        if count > limit:
            raise PayloadTooLarge(f"at most {limit} tasks per submit, not {count}")

    def encode(self, index: int, task: Any) -> bytes:
        """Task ``index`` as its JSON payload; refused if over the payload limit."""
        return self.within_limit(index, task_json(index, task))

    def within_limit(self, index: int, payload: bytes) -> bytes:
        """``payload`` (task ``index``'s JSON), or PayloadTooLarge if over the payload limit."""
        limit = self.settings.max_payload_bytes
        if len(payload) > limit:
            raise PayloadTooLarge(f"task {index} is {len(payload)} bytes; the limit is {limit}")
        return payload

    # ---- read --------------------------------------------------------------------------

    def session(self, session_id: str, owner: str | None = None) -> SessionInfo:
        info = (
            self.store.get_session(session_id) if SESSION_ID_PATTERN.fullmatch(session_id) else None
        )
        if info is None or (owner is not None and info.spec.owner != owner):
            raise NotFound(f"no session {session_id}")
        return info

    def status(
        self, session_id: str, owner: str | None = None, wait_seconds: float = 0
    ) -> SessionStatus:
        info = self.session(session_id, owner)
        if wait_seconds > 0 and not info.complete:
            wait = min(wait_seconds, MAX_WAIT_SECONDS)
            self.store.wait_for_session(session_id, info.last_cursor - 1, wait)
            info = self.session(session_id, owner)
        return SessionStatus(info, self.store.count_states(session_id))

    def results(
        self,
        session_id: str,
        cursor: int = 0,
        limit: int = 1000,
        wait_seconds: float = 0,
        owner: str | None = None,
    ) -> ResultsPage:
        info = self.session(session_id, owner)
        check(0 <= cursor <= MAX_CURSOR, f"cursor must be between 0 and {MAX_CURSOR}")
        limit = max(1, min(limit, MAX_PAGE))
        if wait_seconds > 0 and not info.complete:
            waited = min(wait_seconds, MAX_WAIT_SECONDS)
            if cursor >= info.cursor:
                self.store.wait_for_session(session_id, cursor, waited)
                info = self.session(session_id, owner)  # for ``complete`` below
            info = self._linger(info, cursor, limit, min(LINGER_SECONDS, waited), owner)
        records = self._page_by_bytes(self.store.results(session_id, cursor, limit))
        cursor = records[-1].cursor or cursor if records else cursor
        return ResultsPage(records, cursor, info.complete and cursor >= info.cursor)

    def _linger(
        self, info: SessionInfo, cursor: int, limit: int, seconds: float, owner: str | None
    ) -> SessionInfo:
        """A waiting reader with new results but not a full page waits a little longer for
        more (up to ``seconds``, or until the session completes), so a client that pages a
        stream of results asks once per batch, not once per result."""
        deadline = time.monotonic() + seconds
        while info.cursor > cursor and info.cursor - cursor < limit and not info.complete:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.store.wait_for_session(info.spec.id, info.cursor, left)
            info = self.session(info.spec.id, owner)
        return info

    def _page_by_bytes(self, found: list[TaskRecord]) -> list[TaskRecord]:
        """Resolve outputs from the data plane while the page stays within PAGE_BYTES; a
        page ends before an output that would not fit, and an output bigger than a whole
        page is left as its ``output_ref``, for ``task_output`` to send on its own."""
        page: list[TaskRecord] = []
        size = 0
        for record in found:
            if record.output_ref is not None:
                output = self.data.get(record.output_ref)
                if len(output) > PAGE_BYTES and not page:
                    page.append(record)
                    break
                record = replace(record, output=output)
            size += len(record.output or b"") + len(record.log) + 200
            if size > PAGE_BYTES and page:
                break
            page.append(record)
        return page

    def tasks_in_state(
        self,
        session_id: str,
        state: str,
        cursor: str | None = None,
        limit: int = 100,
        owner: str | None = None,
    ) -> tuple[list[TaskRecord], str | None]:
        """A page of the session's tasks in ``state`` and the next page's cursor (None at the
        end); see ``TaskStore.tasks_in_state``."""
        self.session(session_id, owner)
        try:
            wanted = TaskState(state)
        except ValueError:
            raise ValidationError(f"unknown task state {state!r}") from None
        limit = max(1, min(limit, MAX_PAGE))
        return self.store.tasks_in_state(session_id, wanted, cursor or None, limit)

    def task(self, tid: str, owner: str | None = None) -> TaskRecord:
        try:
            session_id, _ = split_task_id(tid)
        except ValueError:
            raise NotFound(f"no task {tid}") from None
        self.session(session_id, owner)
        record = self.store.get_task(tid)
        if record is None:
            raise NotFound(f"no task {tid}")
        return record

    def task_output(self, tid: str, owner: str | None = None) -> bytes:
        """A finished task's output as JSON bytes, however big (``output_ref`` resolved)."""
        record = self.task(tid, owner)
        if record.output_ref is not None:
            return self.data.get(record.output_ref)
        if record.output is None:
            raise NotFound(f"task {tid} has no output ({record.state.value})")
        return record.output

    def task_payload(self, tid: str, owner: str | None = None) -> bytes:
        """A task's payload as JSON bytes, however big (``payload_ref`` resolved)."""
        record = self.task(tid, owner)
        if record.payload_ref is not None:
            return self.data.get(record.payload_ref)
        return record.payload if record.payload is not None else b"null"

    def sessions(
        self, owner: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[SessionStatus]:
        limit = max(1, min(limit, 1000))
        return [
            SessionStatus(info, self.store.count_states(info.id))
            for info in self.store.list_sessions(owner, limit, max(0, offset))
        ]

    # ---- change ------------------------------------------------------------------------

    def cancel(
        self,
        session_id: str,
        owner: str | None = None,
        tasks: Sequence[str | int] | None = None,
    ) -> CancelCounts:
        """Cancel what is not terminal yet: every task, or only those ``tasks`` name (ids or
        indexes, ``htcgrid.task_names``; the session is then not marked cancelled). A
        complete session has nothing to cancel, and is left exactly as it is."""
        info = self.session(session_id, owner)
        if tasks is not None:
            return self.store.cancel_tasks(info.id, task_indexes(info, tasks), self.clock())
        if info.complete:
            return CancelCounts()
        return self.store.cancel_session(session_id, self.clock())

    def retry(
        self, session_id: str, task_ids: Sequence[str] | None = None, owner: str | None = None
    ) -> list[str]:
        """Run the session's failed tasks (all, or those of ``task_ids``) again, in place."""
        return self.store.retry(self.session(session_id, owner).id, task_ids, self.clock())

    def delete(self, session_id: str, owner: str | None = None) -> None:
        """Forget a session: cancel what still runs, then remove its tasks and data."""
        self.session(session_id, owner)
        self.store.cancel_session(session_id, self.clock())
        self.store.delete_session(session_id)
        self._delete_data(session_id)
        memo.forget_quietly(self.store, [session_id])

    def purge(
        self, older_than_seconds: float | None = None, max_sessions: int = 10_000
    ) -> list[str]:
        """Delete the sessions that ended more than ``older_than_seconds`` ago (default: each
        session's own ``retention_seconds``, else the server's), their data-plane objects
        included, ``PURGE_BATCH`` at a time and at most ``max_sessions``; returns their ids.
        Sessions not yet ended are never touched."""
        own = older_than_seconds is None  # the sessions' own retention counts
        if older_than_seconds is None:
            older_than_seconds = self.settings.retention_seconds
        if older_than_seconds < 0:
            raise ValidationError("older_than must not be negative")
        now = self.clock()
        before = now - older_than_seconds
        gone: list[str] = []
        while len(gone) < max_sessions:
            size = min(PURGE_BATCH, max_sessions - len(gone))
            batch = self.store.purge(before, size, now if own else None)
            for session_id in batch:
                self._delete_data(session_id)
            memo.forget_quietly(self.store, batch)
            gone.extend(batch)
            if len(batch) < PURGE_BATCH:
                break
        return gone

    def _delete_data(self, session_id: str) -> None:
        self.data.delete_prefix(keys.session_prefix(session_id))
        self.data.delete_prefix(keys.upload_prefix(session_id))

    def queue_depth(self) -> int:
        return self.store.queue_depth()
