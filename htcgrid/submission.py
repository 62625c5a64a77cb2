"""A submission and the rules on what it carries: one copy of each rule, with one wording.

``GridService.submit`` and an upload's commit apply them on every path (the HTTP API, the
in-process client, the command line), so a rule answers with the same error and the same
status wherever a session comes from. The API's schema only documents the shape.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from htcgrid.errors import ValidationError
from htcgrid.models import (
    DEFAULT_FUNCTION,
    MAX_ATTEMPTS,
    MAX_PRIORITY,
    MAX_RETENTION_SECONDS,
    MAX_TIMEOUT_SECONDS,
    MIN_PRIORITY,
    NAME_PATTERN,
    SESSION_ID_PATTERN,
    SessionSpec,
    json_dumps,
)

NO_TASKS = "at least one task is needed"
FROM_PARTS = ("tasks", "task_priorities", "session_id", "deps")  # a commit has them from its upload
INTEGERS = ("priority", "max_attempts", "poison_after", "task_count", "parts")


@dataclass(frozen=True)
class SubmitRequest:
    tasks: Sequence[Any]
    session_id: str | None = None
    priority: int = 0
    task_priorities: Sequence[int] | None = None
    function: str = DEFAULT_FUNCTION
    max_attempts: int | None = None
    timeout_seconds: float | None = None
    retry_on_error: bool = False
    retention_seconds: float | None = None
    poison_after: int | None = None
    cache: bool | float | None = None
    deps: Sequence[Any] | None = None  # per task: the indexes and task ids it depends on

    @classmethod
    def from_json(cls, body: Any) -> SubmitRequest:
        """The submission a decoded JSON body describes. Only its shape is checked here (an
        object, known fields, tasks present); the values are checked when it is submitted."""
        check(isinstance(body, dict), 'the body must be a JSON object: {"tasks": [...], ...}')
        body = json_integers(body)
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(body) - set(known))
        check(
            not unknown, f"unknown field {', '.join(map(str, unknown))} (known: {', '.join(known)})"
        )
        check("tasks" in body, f"tasks: {NO_TASKS}")
        return cls(**body)


def commit_from_json(body: Any, session_id: str) -> tuple[SubmitRequest, Any, Any]:
    """An upload's commit as a decoded JSON body gives it: the session's options, and its
    ``task_count`` and ``parts`` (checked by the commit). Its tasks come from the parts."""
    check(isinstance(body, dict), 'the body must be a JSON object: {"task_count": n, "parts": n}')
    options = json_integers(body)
    task_count, parts = options.pop("task_count", None), options.pop("parts", None)
    misplaced = sorted(set(options) & set(FROM_PARTS))
    check(not misplaced, f"unknown field {', '.join(misplaced)}: a commit's tasks are its parts")
    request = SubmitRequest.from_json({**options, "tasks": (), "session_id": session_id})
    return request, task_count, parts


def json_integers(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with JSON's integers as Python's: in JSON (and so in the OpenAPI schema) 3.0
    is the integer 3, so a whole float of an integer field becomes an int; anything else is
    left as it is, for the rules to refuse."""
    out = dict(body)
    for name in INTEGERS:
        if name in out:
            out[name] = _whole(out[name])
    if isinstance(out.get("task_priorities"), list):
        out["task_priorities"] = [_whole(p) for p in out["task_priorities"]]
    return out


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ValidationError(message)


def int_in(name: str, value: Any, low: int, high: int) -> int:
    """``value`` if it is an integer (not a bool, not 2.0) from ``low`` to ``high``."""
    check(isinstance(value, int) and not isinstance(value, bool), f"{name} must be an integer")
    check(low <= value <= high, f"{name} must be between {low} and {high}, not {value}")
    return int(value)


def check_names(session_id: Any, function: Any) -> None:
    check(
        isinstance(session_id, str) and bool(SESSION_ID_PATTERN.fullmatch(session_id)),
        "session_id must be 1-64 letters, digits or '-'",
    )
    check(
        isinstance(function, str) and bool(NAME_PATTERN.fullmatch(function)),
        "function must be 1-64 letters, digits, '.', '_' or '-'",
    )


def timeout_seconds(given: Any) -> float:
    check(
        isinstance(given, int | float)
        and not isinstance(given, bool)
        and math.isfinite(given)
        and 0 < given <= MAX_TIMEOUT_SECONDS,
        f"timeout_seconds must be a number of seconds between 0 and {MAX_TIMEOUT_SECONDS:.0f}",
    )
    return float(given)


def retention_seconds(given: Any) -> float | None:
    """A session's own retention: None (the server's), or seconds from 0 to ten years."""
    if given is None:
        return None
    check(
        isinstance(given, int | float)
        and not isinstance(given, bool)
        and math.isfinite(given)
        and 0 <= given <= MAX_RETENTION_SECONDS,
        "retention_seconds must be a number of seconds between 0 and "
        f"{MAX_RETENTION_SECONDS:.0f} (ten years)",
    )
    return float(given)


def poison_after(given: Any) -> int | None:
    """A session's own poison rule: None (the agent's), or the worker deaths (1 to
    ``MAX_ATTEMPTS``) after which a task is failed as poison."""
    return None if given is None else int_in("poison_after", given, 1, MAX_ATTEMPTS)


def cache_seconds(given: Any) -> float | None:
    """A session's memoization (``htcgrid.memo``): None or false (off), true (answers of any
    age the grid still keeps), or the age in seconds beyond which an answer is worked out anew."""
    if given is None or given is False:
        return None
    if given is True:
        return MAX_RETENTION_SECONDS
    check(
        isinstance(given, int | float)
        and math.isfinite(given)
        and 0 < given <= MAX_RETENTION_SECONDS,
        "cache must be true, false or a number of seconds above 0 and up to "
        f"{MAX_RETENTION_SECONDS:.0f} (ten years)",
    )
    return float(given)


def task_priorities(given: Any, n: int, default: int) -> list[int]:
    """One priority per task: ``default`` for each, or the ``n`` given."""
    if given is None:
        return [default] * n
    check(
        isinstance(given, list | tuple) and len(given) == n,
        "task_priorities needs one entry per task",
    )
    return [int_in("task_priorities[]", p, MIN_PRIORITY, MAX_PRIORITY) for p in given]


def payload_digest(payload: bytes) -> bytes:
    """What a payload contributes to its session's content hash."""
    return hashlib.sha256(payload).digest()


def content_hash(spec: SessionSpec, tasks: Iterable[tuple[int, bytes]]) -> str:
    """What makes two submissions of one session id the same: the options, and each task's
    priority and ``payload_digest`` in index order. Digests, not payloads, so a session
    uploaded in parts is hashed without holding its payloads."""
    options = [spec.function, spec.priority, spec.max_attempts, spec.timeout_seconds]
    digest = hashlib.sha256(json_dumps([*options, spec.retry_on_error, spec.task_count]))
    for priority, payload in tasks:
        digest.update(bytes((priority,)))
        digest.update(payload)
    return digest.hexdigest()
