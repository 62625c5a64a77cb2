"""Records that cross every boundary, and the lifecycle rules of a task (design §2).

The rules here are pure: backends apply them atomically in their own language (SQL, Lua,
conditional writes), and the contract suites in ``tests/store`` pin down that they do.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from htcgrid.evidence import describe as describe_evidence
from htcgrid.settings import Settings

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - a dependency; the standard library still works
    _orjson = None  # type: ignore[assignment]


class TaskState(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({TaskState.FINISHED, TaskState.FAILED, TaskState.CANCELLED})


class HeartbeatStatus(StrEnum):
    """What a heartbeat tells the agent about one of its leases."""

    OK = "ok"  # still ours; the lease was extended
    CANCELLED = "cancelled"  # the task was cancelled: kill the work
    LOST = "lost"  # no longer ours (expired and taken back): stop, the result would be refused


MIN_PRIORITY, MAX_PRIORITY = 0, 9
MAX_ATTEMPTS = 100  # the most runs a session may ask for one task
MAX_TIMEOUT_SECONDS = 7 * 86400.0  # the longest time limit a session may set for one run
MAX_RETENTION_SECONDS = 10 * 366 * 86400.0  # the longest a session may ask to be kept
MAX_CURSOR = 2**53 - 1  # a page cursor: the largest integer JSON carries exactly
DEFAULT_FUNCTION = "default"
SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def task_id(session_id: str, index: int) -> str:
    return f"{session_id}_{index}"


_DIGITS = re.compile(r"[0-9]+")


def split_task_id(tid: str) -> tuple[str, int]:
    """``"<session_id>_<i>"`` → ``(session_id, i)``; raises ValueError for anything else."""
    session_id, sep, index = tid.rpartition("_")
    if not sep or not SESSION_ID_PATTERN.fullmatch(session_id) or not _DIGITS.fullmatch(index):
        raise ValueError(f"not a task id: {tid!r}")
    return session_id, int(index)


@dataclass(frozen=True)
class ErrorInfo:
    """Why a task failed: the handler's exception, or the infrastructure's reason."""

    type: str
    message: str
    traceback: str = ""

    def to_json(self) -> str:
        return json.dumps({"type": self.type, "message": self.message, "traceback": self.traceback})

    @classmethod
    def from_json(cls, text: str | None) -> ErrorInfo | None:
        if not text:
            return None
        data = json.loads(text)
        return cls(str(data["type"]), str(data["message"]), str(data.get("traceback", "")))

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}


@dataclass(frozen=True)
class SessionSpec:
    """Everything fixed at submit time about a session."""

    id: str
    task_count: int
    function: str = DEFAULT_FUNCTION
    priority: int = 0
    max_attempts: int = Settings.max_attempts
    timeout_seconds: float = Settings.task_timeout_seconds
    retry_on_error: bool = False
    owner: str = ""
    content_hash: str = ""
    created_at: float = 0.0
    retention_seconds: float | None = None  # its own; None: the server's retention_seconds
    poison_after: int | None = None  # its own; None: the agent's poison_after
    cache_seconds: float | None = None  # memoization (htcgrid.memo): how old an answer may be


@dataclass(frozen=True)
class NewTask:
    """One task as submitted: its JSON payload inline, or a data-plane key for a big one.

    A ``held`` task is created ``pending`` but is not claimable until the store's ``release``
    (or ends without running through ``fail_held`` or a cancel): what a task graph's task
    waiting for its dependencies is.
    """

    index: int
    priority: int
    payload: bytes | None = None
    payload_ref: str | None = None
    held: bool = False


@dataclass(frozen=True)
class Lease:
    """A claimed task: what an agent needs to run it and to report on it."""

    task_id: str
    session_id: str
    index: int
    attempt: int
    max_attempts: int
    timeout_seconds: float
    function: str
    retry_on_error: bool
    expires_at: float
    payload: bytes | None = None
    payload_ref: str | None = None
    submitted_at: float | None = None  # when the session was submitted (the queue wait's start)


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as reported by its agent.

    ``state`` is FINISHED (output recorded), FAILED (error recorded) or PENDING (an
    infrastructure failure with attempts left: the task goes back to the queue). A PENDING
    outcome that is ``released`` hands back a task the agent never started: its claim does not
    count as an attempt (the attempt number goes back to what it was before the claim).
    """

    task_id: str
    attempt: int
    state: TaskState
    output: bytes | None = None
    output_ref: str | None = None
    error: ErrorInfo | None = None
    log: str = ""
    released: bool = False
    evidence: str = ""  # poison evidence, the task's whole new list (htcgrid.evidence); "" keeps it
    cached: bool = False  # FINISHED with an earlier task's output, without running (htcgrid.memo)


def released(lease: Lease) -> Outcome:
    """Give back a claimed task that never started (a draining or stopping agent)."""
    return Outcome(lease.task_id, lease.attempt, TaskState.PENDING, released=True)


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    session_id: str
    index: int
    state: TaskState
    attempt: int
    max_attempts: int
    priority: int
    owner: str | None = None
    output: bytes | None = None
    output_ref: str | None = None
    error: ErrorInfo | None = None
    log: str = ""
    # The results cursor: the task's completion number in its session (1, 2, … in commit
    # order), set when it ends. Stored as ``done_seq`` (SQLite and PostgreSQL column,
    # DynamoDB attribute and index) and ``ds`` (Redis): renaming those would migrate live data.
    cursor: int | None = None
    submitted_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    lease_expires_at: float | None = None
    payload: bytes | None = None
    payload_ref: str | None = None
    evidence: str = ""  # the attempts that killed their worker, JSON (htcgrid.evidence)
    cached: bool = False  # answered from an earlier task's output without running (htcgrid.memo)


@dataclass(frozen=True)
class SessionInfo:
    spec: SessionSpec
    done_count: int = 0  # tasks terminal now
    cancelled: bool = False
    retried: int = 0  # terminal tasks that ``retry`` sent back to the queue, over all retries

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def cursor(self) -> int:
        """The last completion number given: every terminal transition took one, and a
        retried task gives its number up (``done_count`` drops) but takes a new one."""
        return self.done_count + self.retried

    @property
    def last_cursor(self) -> int:
        """The completion number that will complete the session (unless tasks are retried)."""
        return self.cursor + self.spec.task_count - self.done_count

    @property
    def complete(self) -> bool:
        return self.done_count >= self.spec.task_count


@dataclass(frozen=True)
class CancelCounts:
    pending: int = 0
    processing: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.processing


@dataclass(frozen=True)
class ExpiryReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


# ---- lifecycle rules -------------------------------------------------------------------------


def expired_reason(attempts: int) -> str:
    return f"lease expired after {attempts} attempts"


def expired_error(attempts: int) -> ErrorInfo:
    return ErrorInfo("LeaseExpired", expired_reason(attempts))


def runs_again(attempt: int, max_attempts: int) -> bool:
    """Whether a task whose run ``attempt`` went wrong is queued again: the one retry rule
    (the Redis and AWS backends state it in their own language)."""
    return attempt < max_attempts


def after_lease_expired(tid: str, attempt: int, max_attempts: int) -> Outcome:
    """What the TTL checker records for an expired lease (design §2): the task goes back to
    the queue while it has attempts left, else it fails with ``LeaseExpired``."""
    if runs_again(attempt, max_attempts):
        return Outcome(tid, attempt, TaskState.PENDING)
    return Outcome(tid, attempt, TaskState.FAILED, error=expired_error(attempt))


WORKER_DEATHS = frozenset({"WorkerCrashed", "MemoryLimitExceeded"})  # the task killed its worker


def after_infrastructure_failure(
    lease: Lease,
    kind: str,
    reason: str,
    log: str = "",
    poison_after: int | None = None,
    evidence: str = "",
) -> Outcome:
    """A crash, a timeout or a lost worker: retried until ``max_attempts``, then failed.

    A task whose attempt number ``poison_after`` (or a later one) killed its worker is
    failed at once as ``PoisonTask``: a task that crashes its worker every time would
    otherwise take a worker down ``max_attempts`` times."""
    if poison_after is not None and kind in WORKER_DEATHS and lease.attempt >= poison_after:
        message = (
            f"poison task: attempt {lease.attempt} killed its worker too ({reason}); "
            f"not retried after {poison_after} attempts"
        )
        if seen := describe_evidence(evidence):
            message += "\n" + seen
        error = ErrorInfo("PoisonTask", message)
        return Outcome(
            lease.task_id, lease.attempt, TaskState.FAILED, error=error, log=log, evidence=evidence
        )
    if runs_again(lease.attempt, lease.max_attempts):
        return Outcome(lease.task_id, lease.attempt, TaskState.PENDING, log=log, evidence=evidence)
    message = f"{reason} (attempt {lease.attempt} of {lease.max_attempts})"
    error = ErrorInfo(kind, message)
    return Outcome(
        lease.task_id, lease.attempt, TaskState.FAILED, error=error, log=log, evidence=evidence
    )


def after_handler_error(lease: Lease, error: ErrorInfo, log: str = "") -> Outcome:
    """A handler exception is an outcome: failed, unless the session asked to retry errors."""
    if lease.retry_on_error and runs_again(lease.attempt, lease.max_attempts):
        return Outcome(lease.task_id, lease.attempt, TaskState.PENDING, log=log)
    return Outcome(lease.task_id, lease.attempt, TaskState.FAILED, error=error, log=log)


def json_dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, exactly as the standard library writes it (floats aside, which may
    be spelled differently but read back the same). orjson writes what is plain JSON data;
    anything else (NaN, subclasses, dates, UUIDs, non-text keys…) takes the standard path,
    which writes it or refuses it as it always did."""
    if _orjson is not None and _plain(value):
        try:
            encoded: bytes = _orjson.dumps(value)
        except TypeError:  # integers beyond 64 bits, nesting deeper than orjson goes
            pass
        else:
            return encoded
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


_SCALARS = frozenset({str, int, bool, type(None)})


def _plain(value: Any) -> bool:
    """Whether ``value`` is built only of JSON's own types, with finite floats and text keys."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is float:
            if not math.isfinite(item):
                return False
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif kind is dict:
            if not all(type(k) is str for k in item):
                return False
            stack.extend(item.values())
        else:
            return False
    return True


_INT64_LIMIT = float(2**63)


def json_loads(data: bytes) -> Any:
    """``json.loads``, sped up by orjson where it gives the same value. orjson reads an
    integer beyond 64 bits as a float and refuses NaN: such documents take the standard path."""
    if _orjson is None:
        return json.loads(data)
    try:
        value = _orjson.loads(data)
    except ValueError:
        return json.loads(data)
    return json.loads(data) if _has_huge_float(value) else value


def _has_huge_float(value: Any) -> bool:
    """Whether ``value`` holds an integral float of 2**63 or more: maybe a big integer."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is float:
            if abs(item) >= _INT64_LIMIT and item.is_integer():
                return True
        elif kind is list:
            stack.extend(item)
        elif kind is dict:
            stack.extend(item.values())
    return False


def task_json(index: int, value: Any) -> bytes:
    """Task ``index`` as its JSON payload; a ``ValidationError`` saying why when it is not
    JSON (a lone surrogate in its text, nesting too deep for the encoder, a Python object)."""
    from htcgrid.errors import ValidationError

    try:
        return json_dumps(value)
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end].encode("unicode_escape").decode()
        raise ValidationError(
            f"task {index} holds text that is not valid Unicode (a lone surrogate {bad}); "
            "send UTF-8 text"
        ) from None
    except RecursionError:
        raise ValidationError(f"task {index} is nested too deeply; flatten it") from None
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"task {index} is not JSON-serialisable: {exc}") from None
