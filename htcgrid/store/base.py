"""The task store role: HTC-Grid's state table and task queue as one transactional store.

Every method that changes state is one atomic compare-and-set in the backend. The rules are
those of design §2 (see ``htcgrid.models``); ``tests/store`` runs the same contract suite over
every backend. Times are epoch seconds passed in by the caller, so tests control the clock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence

from htcgrid.models import (
    CancelCounts,
    ErrorInfo,
    ExpiryReport,
    HeartbeatStatus,
    Lease,
    NewTask,
    Outcome,
    SessionInfo,
    SessionSpec,
    TaskRecord,
    TaskState,
    split_task_id,
)


def wanted_indexes(session_id: str, task_ids: Sequence[str] | None) -> set[int] | None:
    """The indexes of ``task_ids`` that belong to ``session_id`` (None: every task), for
    ``retry``; ids of other sessions and malformed ids name nothing."""
    if task_ids is None:
        return None
    found: set[int] = set()
    for tid in task_ids:
        try:
            sid, index = split_task_id(tid)
        except ValueError:
            continue
        if sid == session_id:
            found.add(index)
    return found


def purge_cutoff(spec: SessionSpec, before: float, now: float | None) -> float:
    """When a session's retention ends: ``before``, or with ``now`` its own retention's end."""
    if now is None or spec.retention_seconds is None:
        return before
    return now - spec.retention_seconds


class TaskStore(ABC):
    """Sessions, tasks and leases. Thread-safe; one instance per process."""

    url: str = ""

    # ---- clients ------------------------------------------------------------------------

    @abstractmethod
    def create_session(self, spec: SessionSpec, tasks: Sequence[NewTask], now: float) -> bool:
        """Create the session and all its tasks as ``pending``, all or nothing.

        ``tasks`` have the indexes ``0 … task_count - 1``, each once (the service ensures it).
        A task with ``held=True`` is ``pending`` in ``count_states`` and ``tasks_in_state``
        but no claim takes it (nor does ``queue_depth`` count it) until ``release``.

        Returns True when created, False when a session with this id and the same
        ``content_hash`` already exists (an idempotent re-submit: nothing changes).
        Raises ``Conflict`` when the id exists with a different content hash.
        """

    @abstractmethod
    def get_session(self, session_id: str) -> SessionInfo | None:
        """The session, or None if unknown."""

    @abstractmethod
    def list_sessions(
        self, owner: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[SessionInfo]:
        """Sessions newest first; only ``owner``'s when given."""

    @abstractmethod
    def count_states(self, session_id: str) -> dict[TaskState, int]:
        """Number of the session's tasks in each state (every state present, zeros included)."""

    @abstractmethod
    def results(self, session_id: str, cursor: int = 0, limit: int = 1000) -> list[TaskRecord]:
        """Terminal tasks whose completion number is above ``cursor``, in completion order.

        Every terminal transition gives the task the session's next completion number
        (1, 2, …, no gaps, in commit order), so paging with the last number seen never
        misses or repeats a task. Payloads are not loaded.
        """

    @abstractmethod
    def tasks_in_state(
        self, session_id: str, state: TaskState, cursor: str | None = None, limit: int = 100
    ) -> tuple[list[TaskRecord], str | None]:
        """A page of the session's tasks now in ``state``, and the cursor of the next page
        (None after the last). The cursor is opaque: pass back what was returned. A page may
        hold fewer than ``limit`` tasks, even none, where a store bounds one call's work; only
        a None cursor ends the listing. Each store reads through an index of the session's
        tasks by state, so ten failed tasks of a session of a million take a few reads.
        Payloads are not loaded; an unknown session is an empty last page."""

    @abstractmethod
    def get_task(self, task_id: str) -> TaskRecord | None:
        """One task with its payload, output, error and log; None if unknown."""

    @abstractmethod
    def cancel_session(self, session_id: str, now: float) -> CancelCounts:
        """Move every pending (held ones included) and processing task of the session to
        ``cancelled``.

        Idempotent: a second call cancels nothing more and returns zero counts.
        Raises ``NotFound`` for an unknown session.
        """

    @abstractmethod
    def retry(self, session_id: str, task_ids: Sequence[str] | None, now: float) -> list[str]:
        """Send the session's ``failed`` tasks (all, or those of ``task_ids`` that are
        failed; other ids are ignored) back to the queue as if new: ``pending``, attempt 0, no
        owner, output, error, log or completion number, at their original queue place. The
        session's ``done_count`` drops by their number and its ``retried`` count rises by it,
        so the completion numbers they take when they end again follow the last one given
        (a client paging results sees their new outcome). Atomic; returns the ids sent back,
        in index order. A task that ``fail_held`` failed comes back as an ordinary pending
        task, claimable at once (no longer held). Raises ``NotFound`` for an unknown session."""

    @abstractmethod
    def release(self, session_id: str, indexes: Sequence[int], now: float) -> list[int]:
        """Make the session's held tasks of ``indexes`` claimable, at their original queue
        place (priority, then FIFO by index), and wake waiting agents. Idempotent: indexes
        not held now (released already, ended, unknown) are ignored. Atomic (on AWS: per
        task, a conditional write each); costs in
        proportion to ``len(indexes)``, not to the session. Returns the indexes released,
        ascending."""

    @abstractmethod
    def fail_held(
        self, session_id: str, failures: Sequence[tuple[int, ErrorInfo]], now: float
    ) -> list[int]:
        """Fail the session's held tasks of ``failures`` with their error, without running
        them (attempt stays 0): each takes the session's next completion number, so results
        paging, ``done_count`` and ``wait_for_session`` see them. Idempotent: tasks not held
        now are ignored. Atomic; returns the indexes failed, ascending."""

    @abstractmethod
    def cancel_tasks(self, session_id: str, indexes: Sequence[int], now: float) -> CancelCounts:
        """Cancel the session's tasks of ``indexes`` that are pending (held or not) or
        processing, as ``cancel_session`` does for all (a running task's agent learns it from
        its heartbeat); terminal and unknown indexes are left alone. The session itself is not
        marked cancelled. Atomic; returns the counts cancelled. Raises ``NotFound`` for an
        unknown session."""

    @abstractmethod
    def delete_session(self, session_id: str) -> bool:
        """Forget a session and its tasks. Returns False if it was unknown."""

    def purge(self, before: float, limit: int = 100, now: float | None = None) -> list[str]:
        """Delete up to ``limit`` sessions that are complete and whose every task ended before
        ``before``, with all their tasks; returns their ids (oldest first) so the caller can
        delete their data-plane objects. With ``now``, a session with its own
        ``retention_seconds`` ends its retention at ``now - retention_seconds`` instead. A
        session with any task not yet terminal is never purged. This default is built from the
        other methods (it reads every session); backends override it with one query."""
        old = [s for s in self._all_sessions() if s.spec.created_at < before and s.complete]
        if now is not None:  # sessions kept for less than the default are candidates too
            old = [s for s in self._all_sessions() if s.complete]
        old.sort(key=lambda s: s.spec.created_at)
        gone: list[str] = []
        for info in old:
            if len(gone) >= limit:
                break
            cutoff = purge_cutoff(info.spec, before, now)
            old_enough = info.spec.created_at < cutoff and self._ended_before(info.id, cutoff)
            if old_enough and self.delete_session(info.id):
                gone.append(info.id)
        return gone

    def _all_sessions(self) -> list[SessionInfo]:
        found: list[SessionInfo] = []
        while page := self.list_sessions(limit=1000, offset=len(found)):
            found.extend(page)
        return found

    def _ended_before(self, session_id: str, before: float) -> bool:
        cursor = 0
        while page := self.results(session_id, cursor, 1000):
            if any((t.finished_at or before) >= before for t in page):
                return False
            cursor = page[-1].cursor or cursor + len(page)
        return True

    # ---- agents ------------------------------------------------------------------------

    @abstractmethod
    def claim(
        self,
        agent_id: str,
        max_tasks: int,
        lease_seconds: float,
        now: float,
        functions: Sequence[str] | None = None,
    ) -> list[Lease]:
        """Lease up to ``max_tasks`` pending tasks: highest priority first, FIFO within one.

        Each claimed task becomes ``processing`` with ``attempt + 1``, owner ``agent_id`` and
        a lease until ``now + lease_seconds``. A task is never handed to two claimers.
        ``functions`` restricts the claim to those functions (None: any).
        """

    @abstractmethod
    def heartbeat(
        self,
        agent_id: str,
        leases: Sequence[tuple[str, int]],
        lease_seconds: float,
        now: float,
    ) -> dict[str, HeartbeatStatus]:
        """Extend the leases ``(task_id, attempt)`` that ``agent_id`` still holds.

        Answers, per task: OK (extended), CANCELLED (the task was cancelled) or LOST
        (no longer this agent's attempt: expired, retried elsewhere, or unknown).
        """

    @abstractmethod
    def complete(self, agent_id: str, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        """Record outcomes; each applies only if the task is still ``processing`` under
        ``agent_id`` with the same attempt (a zombie's late result is refused).

        FINISHED and FAILED record exactly one result per task; PENDING puts the task back in
        the queue at its original place (FIFO position within its priority). Returns, in
        order, whether each outcome was applied.
        """

    # ---- TTL checker -------------------------------------------------------------------

    @abstractmethod
    def expire_leases(self, now: float, limit: int = 1000) -> ExpiryReport:
        """Take back up to ``limit`` tasks whose lease expired before ``now``.

        With attempts left a task returns to ``pending`` (owner cleared, original queue place);
        otherwise it becomes
        ``failed`` with ``models.expired_error(attempt)``. Safe to run from many servers.
        """

    # ---- waiting and metrics ------------------------------------------------------------

    @abstractmethod
    def wait_for_tasks(
        self, timeout_seconds: float, functions: Sequence[str] | None = None
    ) -> bool:
        """Block until there may be pending tasks to claim, or the timeout passes.

        Returns True when there may be work (spurious wake-ups are allowed), False on timeout.
        """

    @abstractmethod
    def wait_for_session(self, session_id: str, cursor: int, timeout_seconds: float) -> int:
        """Block until the session's last completion number (``SessionInfo.cursor``)
        exceeds ``cursor`` or the timeout passes; returns it then. Raises ``NotFound`` for an
        unknown session."""

    @abstractmethod
    def queue_depth(self, functions: Sequence[str] | None = None) -> int:
        """Number of pending tasks (of those functions)."""

    def task_counts(self, max_sessions: int = 10_000) -> dict[tuple[str, TaskState, int], int]:
        """Tasks grid-wide by ``(function, state, priority)``, zero counts left out: what
        ``/metrics`` exports as ``htcgrid_tasks`` and ``htcgrid_queue_depth``.

        This default counts the newest ``max_sessions`` sessions with ``count_states``, each
        task under its session's function and priority; a backend that can count all its
        tasks in one query (a GROUP BY) does so instead.
        """
        found: Counter[tuple[str, TaskState, int]] = Counter()
        offset = 0
        while offset < max_sessions:
            page = self.list_sessions(limit=min(1000, max_sessions - offset), offset=offset)
            for session in page:
                spec = session.spec
                for state, count in self.count_states(session.id).items():
                    if count:
                        found[spec.function, state, spec.priority] += count
            if len(page) < 1000:
                break
            offset += len(page)
        return dict(found)

    # ---- grid metadata -------------------------------------------------------------------
    # Small grid-wide records beside the tasks (the grid's data-plane URL, agent presence).
    # Keys are short strings such as ``data_url`` or ``agents/<id>``; values are text.

    @abstractmethod
    def get_meta(self, key: str) -> str | None:
        """The value of ``key``, or None if it was never set."""

    @abstractmethod
    def set_meta_if_absent(self, key: str, value: str) -> str:
        """Set ``key`` to ``value`` unless it already has a value, atomically (of racing
        callers exactly one sets it); returns the value stored now, whoever set it."""

    @abstractmethod
    def put_meta(self, key: str, value: str) -> None:
        """Set ``key`` to ``value``, replacing any earlier value."""

    @abstractmethod
    def list_meta(self, prefix: str) -> dict[str, str]:
        """Every key that starts with ``prefix``, with its value."""

    @abstractmethod
    def delete_meta(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. The store must not be used afterwards."""
